"""Exact, near and transformed duplicates, defect variants, and groups.

Two stages, as in imagededup: hashes are computed once per file (see
:mod:`pcbforge.curate.inspect`), then searched here. The search is
sub-quadratic (banded LSH over the 64-bit pHash, :mod:`.candidates`), and
every candidate is verified pixel by pixel (:mod:`.verify`) before it is
called a duplicate, so a defective board is never merged with its template.

Outcome per image: ``duplicate_of`` (the kept copy of its duplicate cluster),
the duplicate reason, and ``group``: connected components of "same scene"
(duplicates, transformed copies and defect variants of one board region).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from pcbforge.core.unionfind import UnionFind
from pcbforge.curate.candidates import (
    CandidatePairs,
    SearchConfig,
    find_candidate_pairs,
    find_candidate_pairs_exhaustive,
    hamming,
)
from pcbforge.curate.hashing import dihedral
from pcbforge.curate.partitions import PartedCoarse, PartedThumbs
from pcbforge.curate.verify import (
    CoarseView,
    GreyLevels,
    Relation,
    VerifyParams,
    coarse_comparison,
    coarse_view,
    coarse_view_of_record,
    full_relation,
    subsample_levels,
    subsample_parity,
)
from pcbforge.engine import Engine

VARIANT_NAMES = ("identity", "rot90", "rot180", "rot270", "flip", "flip_rot90", "flip_rot180",
                 "flip_rot270")


class DedupeParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_distance: int = Field(12, ge=0, le=32, description="pHash Hamming radius of candidates.")
    transformed: bool = True
    verify: VerifyParams = VerifyParams()


#: Up to this many images, candidates come from the exact all-pairs search: it
#: costs no more than the LSH index's fixed set-up (measured: 0.21 s against
#: 0.25 s at 2,000 images with 8 variants) and misses nothing within the radius.
EXHAUSTIVE_SEARCH_MAX = 2048


@dataclass(frozen=True)
class ImageHashes:
    """Per-image hashes, rows indexed by ``thumb_index`` (all (N, 8) uint64)."""

    codes: np.ndarray  # DCT pHash of each dihedral variant
    weak: np.ndarray  # least reliable pHash bits
    content: np.ndarray  # block-occupancy hash of each variant


@dataclass
class DedupeStats:
    search: str = "none"
    candidate_pairs: int = 0
    occupancy_candidate_pairs: int = 0
    occupancy_unsearched: int = 0  # images the occupancy search left out (crowded codes)
    duplicate_edges: int = 0
    variant_edges: int = 0
    rejected_pairs: int = 0
    #: Every pair found to show one scene: (row_i, row_j, reason, pHash distance, dihedral
    #: variant of j matched to i), reason ``exact``, ``duplicate`` or ``variant`` (a defect
    #: variant); a distance of -1: found by the occupancy hash.
    edges: list[tuple[int, int, str, int, int]] = field(default_factory=list)


def keeper_order(table: pd.DataFrame) -> pd.Series:
    """Rank for choosing the kept copy of a duplicate cluster (lower is kept).

    A file the caller prefers first (``preferred`` column, e.g. the image an
    annotation file names: its copy must not take its labels' place), then
    not low quality, then more pixels, then lossless over lossy, then path
    order. Corrupt files never enter a cluster. The keeper is the first in
    this order among the members in the orientation most members share.
    """
    preferred = table["preferred"] if "preferred" in table.columns else False
    key = pd.DataFrame(
        {
            "not_preferred": (~pd.Series(preferred, index=table.index).astype(bool)).astype(int),
            "low_quality": (table["status"] == "low_quality").astype(int),
            "pixels": -(table["width"].astype(np.int64) * table["height"].astype(np.int64)),
            "lossy": (~table["lossless"].astype(bool)).astype(int),
            "path": table["path"],
        },
        index=table.index,
    )
    order = key.sort_values(["not_preferred", "low_quality", "pixels", "lossy", "path"],
                            kind="stable").index
    return pd.Series(np.arange(len(order)), index=order).reindex(table.index)


def find_duplicates(
    table: pd.DataFrame,
    thumbs: np.ndarray,
    hashes: ImageHashes,
    params: DedupeParams,
    *,
    thumbs_path: Path | None = None,
    coarse_path: Path | PartedCoarse | None = None,
    engine: Engine | None = None,
    workdir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[pd.DataFrame, DedupeStats]:
    """Mark duplicates and groups in ``table`` (returns a new table).

    ``table`` is the samples table; decodable rows carry ``thumb_index``
    pointing into ``thumbs`` (N, S, S) and ``hashes``. With
    an ``engine`` and the ``.npy`` file behind ``thumbs`` (or ``thumbs`` a
    :class:`~pcbforge.curate.partitions.PartedThumbs`), candidate pairs are
    verified in the engine's workers. With a Dask engine, the LSH candidate
    search runs on its cluster too (inputs staged in ``workdir``, a folder the
    workers can read); the result is the same as the local search's.
    ``coarse_path``: the coarse-view store written with the thumbnails (see
    :func:`~pcbforge.curate.inspect.create_coarse_store`, or the per-partition store of
    a Dask run, :class:`~pcbforge.curate.partitions.PartedCoarse`), read instead of
    shrinking every thumbnail again; None: the views are computed from the thumbnails.
    ``progress(done, total)`` is called as candidate pairs are verified.
    """
    table = table.copy()
    table["duplicate_of"] = ""
    table["duplicate_reason"] = ""
    table["duplicate_transform"] = ""
    stats = DedupeStats()
    n_rows = len(table)
    decodable = table.index[table["thumb_index"] >= 0].to_numpy()

    duplicates = UnionFind(n_rows)  # same image
    scenes = UnionFind(n_rows)  # same scene (duplicates + variants)

    # 1. Exact: same bytes or same decoded pixels.
    for column in ("sha256", "pixel_hash"):
        present = table.loc[decodable, column]
        repeated = present[present.duplicated(keep=False)]  # grouping all costs 1000x more
        for _, members in repeated.groupby(repeated, sort=False).groups.items():
            members = list(members)
            for other in members[1:]:
                duplicates.union(members[0], other)
                scenes.union(members[0], other)
                stats.edges.append((int(members[0]), int(other), "exact", 0, 0))

    # 2. Near and transformed: one representative per exact class, no blank frames.
    blank = (table["low_quality_reason"] == "blank").to_numpy()
    searchable = [row for row in decodable if duplicates.find(row) == row and not blank[row]]
    if len(searchable) > 1:
        search = partial(_search, engine=engine, workdir=workdir)
        pairs = _candidates(table, searchable, hashes, params, stats, search)
        stats.candidate_pairs = len(pairs.i)
        rows_i = np.asarray(searchable, dtype=np.int64)[pairs.i]
        rows_j = np.asarray(searchable, dtype=np.int64)[pairs.j]
        relations = _verify(table, thumbs, rows_i, rows_j, pairs.variant, params.verify,
                            thumbs_path, engine, progress, coarse_path)
        for row_i, row_j, relation, variant, distance in zip(
                rows_i, rows_j, relations, pairs.variant, pairs.distance, strict=True):
            if relation is Relation.DUPLICATE:
                stats.duplicate_edges += 1
                duplicates.union(int(row_i), int(row_j))
                scenes.union(int(row_i), int(row_j))
            elif relation is Relation.VARIANT:
                stats.variant_edges += 1
                scenes.union(int(row_i), int(row_j))
            else:
                stats.rejected_pairs += 1
                continue
            stats.edges.append((int(row_i), int(row_j), relation.name.lower(), int(distance),
                                int(variant)))

    _assign_duplicates(table, duplicates.labels(), decodable, hashes.codes)
    _assign_groups(table, scenes.labels())
    return table, stats


#: Occupancy-hash radius: a real defect touches at most a few 32x32-pixel blocks
#: of the thumbnail (DeepPCB template/defect pairs: 0-5, mostly 0-2).
CONTENT_MAX_DISTANCE = 4
#: ...but only between codes with at least this many blocks on their minority side
#: (empty blocks of a dense tile, full ones of a sparse tile); a pair where either code
#: has fewer is held to CONTENT_NEAR_DISTANCE. The few minority blocks are all that tells
#: such codes apart, and 3-4 of them are a quarter or more of it: on 100,000 generated
#: tiles of one product, 85% of the occupancy pairs were such codes 3-4 blocks apart (95%
#: of all were tiles of different boards). On the 2,000 DeepPCB tiles this keeps every
#: template/defect pair that only the occupancy search finds, and drops 476 of its
#: 2,502 other pairs.
CONTENT_MIN_MINORITY = 16
CONTENT_NEAR_DISTANCE = 2
#: Occupancy codes with fewer or more blocks set carry no information (an almost
#: empty or a full frame) and would only fill the search with look-alikes.
CONTENT_BLOCKS = (2, 56)
#: The occupancy search is a second chance for pairs the pHash misses, not the main
#: search: codes crowding into large buckets (dense tiles of one product, whose few
#: empty blocks sit alike) are searched exhaustively among themselves only up to this
#: many images, as many as the exhaustive search takes at once. Measured on 100,000
#: generated tiles: 47,007 codes crowded, their all-pairs pass took 22.7 s of the
#: occupancy search's 23.5 s and added 170 of its 215,398 pairs; on the 2,000 DeepPCB
#: tiles no bucket crowds. Left out: counted in the report
#: (``occupancy_unsearched_images``); their pHash candidates are still searched.
OCCUPANCY_MAX_SET_ASIDE = 2048


def _search(codes, variants, weak, max_distance, engine=None, workdir=None,
            max_set_aside: int | None = None) -> tuple[CandidatePairs, str]:
    """Candidates within ``max_distance``: exhaustive up to EXHAUSTIVE_SEARCH_MAX images,
    else banded LSH, on the Dask cluster when the engine is one (same pairs).
    ``max_set_aside``: see :class:`~pcbforge.curate.candidates.SearchConfig`."""
    if len(codes) <= EXHAUSTIVE_SEARCH_MAX:
        return find_candidate_pairs_exhaustive(codes, variants, max_distance), "exhaustive"
    config = SearchConfig.for_size(len(codes), max_distance=max_distance,
                                   max_set_aside=max_set_aside)
    if getattr(engine, "kind", "local") == "dask":
        from pcbforge.curate.candidates_dask import find_candidate_pairs_dask

        if workdir is None:
            raise ValueError("the Dask candidate search needs a workdir its workers can read")
        pairs = find_candidate_pairs_dask(engine.client, codes, variants, weak, config,
                                          workdir=workdir)
        return pairs, "lsh_dask"
    return find_candidate_pairs(codes, variants, weak, config), "lsh"


def _candidates(table, searchable, hashes: ImageHashes, params, stats, search=_search
                ) -> CandidatePairs:
    """Pairs to verify: pHash neighbours, plus occupancy-hash neighbours (within
    CONTENT_MAX_DISTANCE blocks, or CONTENT_NEAR_DISTANCE for codes with few minority
    blocks).

    The pHash of some tiles (bare substrate with a few traces, or fine
    periodic patterns) moves by 20-30 bits between a board and its defect
    variant; where content sits, block by block, does not.
    """
    slots = table.loc[searchable, "thumb_index"].to_numpy()
    n_variants = 8 if params.transformed else 1
    pairs, stats.search = search(
        hashes.codes[slots, 0], hashes.codes[slots, :n_variants],
        hashes.weak[slots, :n_variants], params.max_distance,
    )
    blocks = np.bitwise_count(hashes.content[slots, 0]).astype(np.int64)
    informative = np.flatnonzero((blocks >= CONTENT_BLOCKS[0]) & (blocks <= CONTENT_BLOCKS[1]))
    if len(informative) > 1:
        content = hashes.content[slots[informative]]
        extra, _ = search(
            content[:, 0], content[:, :n_variants], np.zeros_like(content[:, :n_variants]),
            CONTENT_MAX_DISTANCE, max_set_aside=OCCUPANCY_MAX_SET_ASIDE,
        )
        minority = np.minimum(blocks, 64 - blocks)[informative]
        keep = (extra.distance <= CONTENT_NEAR_DISTANCE) | (
            np.minimum(minority[extra.i], minority[extra.j]) >= CONTENT_MIN_MINORITY)
        stats.occupancy_candidate_pairs = int(keep.sum())
        stats.occupancy_unsearched = extra.unsearched
        pairs = _merge_pairs(pairs, informative[extra.i[keep]], informative[extra.j[keep]],
                             extra.variant[keep])
    return pairs


def _merge_pairs(pairs: CandidatePairs, i, j, variant) -> CandidatePairs:
    """Union of candidate pairs (both lists have i < j; a pair found by both
    keeps the pHash search's variant and distance)."""
    all_i = np.concatenate([pairs.i, i]).astype(np.int64)
    all_j = np.concatenate([pairs.j, j]).astype(np.int64)
    all_v = np.concatenate([pairs.variant, variant]).astype(np.int8)
    keys = all_i * (max(int(all_j.max(initial=0)), 0) + 1) + all_j
    _, first = np.unique(keys, return_index=True)
    distance = np.concatenate([pairs.distance, np.full(len(i), -1)]).astype(np.int8)
    return CandidatePairs(all_i[first], all_j[first], all_v[first], distance[first])


_VERIFY_CHUNK = 64
_VERIFY_CHUNK_MAX = 1024


def _verify(table, thumbs, rows_i, rows_j, variants, params, thumbs_path, engine, progress,
            coarse_path=None):
    """Relation of each candidate pair, computed in chunks (in workers when possible)."""
    thumb_i = table["thumb_index"].to_numpy()[rows_i]
    thumb_j = table["thumb_index"].to_numpy()[rows_j]
    width = table["width"].to_numpy(dtype=np.float64)
    height = table["height"].to_numpy(dtype=np.float64)
    aspect_i = width[rows_i] / height[rows_i]
    aspect_j = width[rows_j] / height[rows_j]
    quarter_turn = np.asarray(variants) % 2 == 1  # swaps width and height
    aspect_j = np.where(quarter_turn, 1.0 / aspect_j, aspect_j)
    aspect_change = np.abs(np.log(aspect_i / aspect_j))
    # The Laplacian variance of each thumbnail was stored at inspection (x 255^2).
    sharpness = table["sharpness_score"].to_numpy(dtype=np.float64) * 255.0**2
    min_side = np.minimum(np.minimum(width[rows_i], height[rows_i]),
                          np.minimum(width[rows_j], height[rows_j])).astype(np.int64)
    columns = (thumb_i, thumb_j, np.asarray(variants), aspect_change, sharpness[rows_i],
               sharpness[rows_j], min_side)
    # About 16 chunks per worker, 64 to 1,024 pairs each: each chunk opens the stores and
    # reads its coarse views once (64 pairs a chunk: 91 us a pair on 40,000 pairs of the
    # scaling benchmark; 512: 66 us).
    workers = max(getattr(engine, "workers", 1), 1)
    size = int(np.clip(len(rows_i) // (16 * workers), _VERIFY_CHUNK, _VERIFY_CHUNK_MAX))
    chunks = [
        tuple(column[k : k + size] for column in columns)
        for k in range(0, len(rows_i), size)
    ]
    # Workers open the thumbnails themselves: the .npy file, or the per-partition files.
    source = str(thumbs_path) if thumbs_path is not None else (
        thumbs if isinstance(thumbs, PartedThumbs) else None)
    distributed = getattr(engine, "kind", "local") == "dask"
    coarse = coarse_path if isinstance(coarse_path, PartedCoarse) else (
        str(coarse_path) if coarse_path is not None else None)
    if engine is not None and source is not None and (engine.workers > 1 or distributed):
        work = partial(verify_chunk, thumbs=source, params=params, coarse=coarse)
        results = engine.map(work, chunks, chunksize=0 if distributed else 1)
    else:
        coarse_views = np.load(coarse, mmap_mode="r") if isinstance(coarse, str) else coarse
        results = (verify_chunk(chunk, thumbs, params, coarse_views) for chunk in chunks)
    relations: list[Relation] = []
    for chunk_result in results:
        relations.extend(chunk_result)
        if progress is not None:
            progress(len(relations), len(rows_i))
    return relations


def verify_chunk(chunk, thumbs, params: VerifyParams, coarse=None) -> list[Relation]:
    """Pure per-chunk work: compare each pair of thumbnails (``thumbs`` may be a
    path to the ``.npy`` file, opened memory-mapped, so workers share it, or a
    :class:`~pcbforge.curate.partitions.PartedThumbs`, read a thumbnail at a time).

    ``coarse``: the coarse-view store written at inspection (a path to its ``.npy``
    file, see :func:`~pcbforge.curate.verify.coarse_record_dtype`, or a
    :class:`~pcbforge.curate.partitions.PartedCoarse`), or None to shrink
    the thumbnails here. Each image's coarse view and subsample grey levels are computed
    once per chunk; the transform is applied to the full thumbnail only for the pairs
    the coarse views do not settle."""
    if isinstance(thumbs, str):
        thumbs = np.load(thumbs, mmap_mode="r")
    if isinstance(coarse, str):
        coarse = np.load(coarse, mmap_mode="r")
    views: dict[int, CoarseView] = {}
    levels: dict[tuple[int, int, int], GreyLevels] = {}
    if coarse is not None:  # every record the chunk needs, read in one gather
        slots = np.unique(np.concatenate([np.asarray(chunk[0]), np.asarray(chunk[1])]))
        records = coarse[slots]
        views = {int(slot): coarse_view_of_record(record)
                 for slot, record in zip(slots.tolist(), records, strict=True)}

    def view(slot: int) -> CoarseView:
        if slot not in views:
            views[slot] = coarse_view(thumbs[slot])
        return views[slot]

    def subsample(slot: int, thumb: np.ndarray, variant: int) -> GreyLevels:
        parity = subsample_parity(thumb.shape, variant)
        key = (slot, *parity)
        if key not in levels:
            levels[key] = subsample_levels(thumb, parity)
        return levels[key]

    relations = []
    for i, j, variant, aspect_change, sharp_i, sharp_j, min_side in zip(*chunk, strict=True):
        i, j, variant = int(i), int(j), int(variant)
        if aspect_change > params.max_aspect_change:
            relations.append(Relation.DIFFERENT)
            continue
        quick = coarse_comparison(view(i), view(j).transformed(variant), params)
        if quick is not None:
            relations.append(quick.relation)
            continue
        thumb_i, thumb_j = np.asarray(thumbs[i]), np.asarray(thumbs[j])
        relations.append(full_relation(
            thumb_i, np.ascontiguousarray(dihedral(thumb_j, variant)), params,
            sharpness=(float(sharp_i), float(sharp_j)), min_source_side=int(min_side),
            levels=(subsample(i, thumb_i, 0), subsample(j, thumb_j, variant)),
        ))
    return relations


def _assign_duplicates(table, labels, decodable, codes) -> None:
    rank = keeper_order(table)
    clusters: dict[int, list[int]] = {}
    for row in decodable:
        clusters.setdefault(int(labels[row]), []).append(int(row))
    for members in clusters.values():
        if len(members) < 2:
            continue
        keeper = _choose_keeper(table, members, rank, codes)
        keeper_code = codes[table.at[keeper, "thumb_index"], 0]
        for row in members:
            if row == keeper:
                continue
            table.at[row, "duplicate_of"] = table.at[keeper, "path"]
            if (
                table.at[row, "sha256"] == table.at[keeper, "sha256"]
                or table.at[row, "pixel_hash"] == table.at[keeper, "pixel_hash"]
            ):
                reason, variant = "exact_duplicate", 0
            else:
                variant = _best_variant(keeper_code, codes[table.at[row, "thumb_index"]])
                reason = "near_duplicate" if variant == 0 else "transformed_duplicate"
            table.at[row, "duplicate_reason"] = reason
            table.at[row, "duplicate_transform"] = VARIANT_NAMES[variant]
            if table.at[row, "status"] == "ok":  # low quality outranks duplicate
                table.at[row, "status"] = "duplicate"
                table.at[row, "reason"] = reason


def _choose_keeper(table, members, rank, codes) -> int:
    """The best-ranked member among those in the orientation most members share.

    A rotated or mirrored copy is rarely the original; without this, a
    lossless rotated copy would outrank its lossy original.
    """
    ordered = sorted(members, key=lambda row: rank[row])
    reference = codes[table.at[ordered[0], "thumb_index"], 0]
    orientation = {
        row: _best_variant(reference, codes[table.at[row, "thumb_index"]]) for row in ordered
    }
    counts: dict[int, int] = {}
    for value in orientation.values():
        counts[value] = counts.get(value, 0) + 1
    majority = max(counts, key=lambda value: (counts[value], -min(
        rank[row] for row in ordered if orientation[row] == value)))
    return next(row for row in ordered if orientation[row] == majority)


def _best_variant(keeper_code: np.uint64, member_codes: np.ndarray) -> int:
    """The transform of the member whose hash is closest to the keeper's (ties: identity)."""
    return int(np.argmin(hamming(np.uint64(keeper_code), member_codes)))


def _assign_groups(table: pd.DataFrame, labels: np.ndarray) -> None:
    """Name each component after its first path (stable as unrelated files come and go)."""
    first_path: dict[int, str] = {}  # a plain loop: pandas' groupby of strings costs 10x
    for label, path in zip(labels.tolist(), table["path"].tolist(), strict=True):
        if label not in first_path or path < first_path[label]:
            first_path[label] = path
    names = {
        label: "g" + hashlib.blake2b(path.encode(), digest_size=5).hexdigest()
        for label, path in first_path.items()
    }
    groups = [names[label] for label in labels.tolist()]
    sizes = Counter(groups)
    table["group"] = groups
    table["group_size"] = np.array([sizes[group] for group in groups], dtype=np.int64)
