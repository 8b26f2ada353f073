"""Banded LSH candidate search on a Dask cluster: group by band value, as a shuffle.

Same problem, same bands, same multi-probe keys and the same answer as
:func:`pcbforge.curate.candidates.find_candidate_pairs` (its docstring explains the
method); only the grouping is distributed. Per band, the single-process search sorts the
band keys of all codes into an index and looks every probe key of every query up in it.
Here the key space of each band is cut into ``R = 2**r`` ranges by the key's top ``r``
bits, one *destination* per (band, range), and:

1. One task per (band, chunk of images) emits rows: one ``index`` row per image (the band
   key of its code, sent to the key's destination) and, per variant hash (a ``query``),
   one row for each distinct destination among its probe keys, carrying its unflipped key
   and weak-bit mask rather than the keys themselves. A flipped weak bit changes the
   destination only when it is one of the top ``r`` bits, so a query travels about 1.5
   times instead of once per probe key (about 5 times).
2. The rows are range-partitioned on the destination (``dask.dataframe.set_index`` with
   known divisions, a peer-to-peer shuffle spilled to disk): every bucket of every band
   lies whole in one partition, and a partition holds about ``images_per_partition``
   codes whatever the corpus size, so a worker's memory does not grow with it.
3. A task per partition expands each query's probe keys, keeps those of its own
   destination, and joins them with its buckets in numpy: each query hash is compared
   with the codes of its bucket, and pairs within ``max_distance`` are kept. A bucket the
   local search would drop (over ``max_bucket`` codes, or size x unflipped queries over
   about a million comparisons) is dropped here too: its codes and the images of every
   query landing in it are set aside, as there.
4. Back here: the pairs (small) are deduplicated, the set-aside images searched
   exhaustively among themselves, and every pair resolved exactly over all variants
   (``_resolve_pairs``), as the local search ends.

Each step follows the local rules to the letter, so the output equals the local
function's, pair for pair, on the same input (tested).
"""

from __future__ import annotations

import math
import os
import uuid
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from pcbforge.curate.candidates import (
    _HOT_TRIPLES,
    CandidatePairs,
    SearchConfig,
    _band_positions,
    _BitGather,
    _exhaustive_pairs,
    _pair_codes,
    _popcount64,
    _probe_keys,
    _resolve_pairs,
    _sorted_unique,
    _validate_inputs,
)

#: Images per (band, chunk) task, and about the codes per shuffled partition; with 8
#: variants a partition holds about 12 rows per code (0.3 MB per 1,000 codes), whatever
#: the corpus size: this is what keeps worker memory flat.
IMAGES_PER_PARTITION = 16384
BANDS_PER_TASK = 4
#: Comparisons expanded at once while joining a partition's buckets.
_EXPAND_BLOCK = 1 << 19

_ROW_META = pd.DataFrame({
    "dest": pd.Series([], dtype=np.int64), "key": pd.Series([], dtype=np.uint32),
    "weak": pd.Series([], dtype=np.uint32), "hash": pd.Series([], dtype=np.uint64),
    "image": pd.Series([], dtype=np.uint32), "kind": pd.Series([], dtype=np.int8),
})
_FOUND_META = pd.DataFrame({"kind": pd.Series([], dtype=np.int8),
                            "value": pd.Series([], dtype=np.int64)})
_INDEX, _QUERY = 0, 1
_PAIR, _ASIDE = 0, 1


def range_bits(n_images: int, band_bits: int, images_per_partition: int) -> int:
    """``r``: each band's key space is cut into ``2**r`` ranges of about
    ``images_per_partition`` codes each."""
    ranges = max(1, math.ceil(n_images / images_per_partition))
    return min(band_bits, max(0, math.ceil(math.log2(ranges))))


def find_candidate_pairs_dask(
    client,
    codes: np.ndarray,
    variants: np.ndarray | None = None,
    weak_bits: np.ndarray | None = None,
    config: SearchConfig | None = None,
    *,
    workdir: Path | str,
    images_per_partition: int = IMAGES_PER_PARTITION,
) -> CandidatePairs:
    """:func:`~pcbforge.curate.candidates.find_candidate_pairs` with the grouping by band
    value done as a shuffle on the Dask cluster of ``client``.

    ``workdir``: a folder every worker can read at the same path (the run's stage); the
    hashes go there once as ``.npy`` files that each task reads its slice of, instead of
    travelling through the scheduler. Removed again before returning.
    """
    import dask.dataframe as dd

    config = SearchConfig() if config is None else config
    if not isinstance(config, SearchConfig):
        raise TypeError(f"config: expected SearchConfig, got {type(config).__name__}")
    codes, variants, weak_bits = _validate_inputs(codes, variants, weak_bits)
    n_images, n_variants = variants.shape
    if n_images < 2:
        return CandidatePairs.empty()
    probing = weak_bits is not None and config.probe_bits > 0

    folder = Path(workdir) / f"lsh-{uuid.uuid4().hex[:12]}"
    folder.mkdir(parents=True)
    try:
        np.save(folder / "variants.npy", variants)
        if probing:
            np.save(folder / "weak.npy", weak_bits)
        bands = _band_positions(config)
        r = range_bits(n_images, config.band_bits, images_per_partition)
        n_dest = len(bands) << r
        # Each task: a few bands of a chunk of images (fewer, larger shuffle inputs).
        group = max(1, min(len(bands), BANDS_PER_TASK))
        chunk = max(1, images_per_partition // group)
        pieces = [
            (tuple(range(first, min(first + group, len(bands)))), start,
             min(start + chunk, n_images))
            for first in range(0, len(bands), group)
            for start in range(0, n_images, chunk)
        ]
        rows = dd.from_map(
            band_rows, pieces, folder=str(folder), bands=bands.tolist(),
            probe_bits=config.probe_bits if probing else 0, range_bits=r, meta=_ROW_META,
            label="lsh-band-rows", enforce_metadata=False,
        )
        # One partition per destination: divisions 0, 1, ..., n_dest - 1 (the last closed).
        grouped = rows.set_index("dest", divisions=[*range(n_dest), n_dest - 1],
                                 sorted=False, shuffle_method="p2p")
        found = grouped.map_partitions(
            join_buckets, n_images=n_images, radius=config.max_distance,
            max_bucket=config.max_bucket, probe_bits=config.probe_bits if probing else 0,
            band_bits=config.band_bits, range_bits=r, meta=_FOUND_META,
        )
        result = client.compute(found).result()
    finally:
        for name in ("variants.npy", "weak.npy"):
            (folder / name).unlink(missing_ok=True)
        folder.rmdir()

    kind = result["kind"].to_numpy()
    value = result["value"].to_numpy(np.int64)
    pairs = _sorted_unique(value[kind == _PAIR])
    members = _sorted_unique(value[kind == _ASIDE])
    if len(members) > 1:
        sub_i, sub_j = _exhaustive_pairs(codes[members], variants[members], config.max_distance)
        pairs = _sorted_unique(np.concatenate(
            [pairs, _pair_codes(members[sub_i], members[sub_j], n_images)]))
    i, j = np.divmod(pairs, n_images)
    return _resolve_pairs(codes, variants, i, j, config.max_distance)


@lru_cache(maxsize=64)
def _gather(positions: tuple[int, ...]) -> _BitGather:
    return _BitGather(np.asarray(positions, dtype=np.int64))


def _top(keys: np.ndarray, shift: int) -> np.ndarray:
    """The bits of uint32 ``keys`` above ``shift`` (its range within the band), as int64."""
    if shift >= 32:
        return np.zeros(len(keys), np.int64)
    return (keys >> np.uint32(shift)).astype(np.int64)


def band_rows(piece: tuple[tuple[int, ...], int, int], folder: str, bands: list[list[int]],
              probe_bits: int, range_bits: int) -> pd.DataFrame:
    """Task: the index and query rows of images ``start:stop`` in the bands named, each
    with its destination (see the module docstring)."""
    in_bands, start, stop = piece
    return pd.concat([_band_rows(band, start, stop, folder, bands, probe_bits, range_bits)
                      for band in in_bands], ignore_index=True)


def _band_rows(band: int, start: int, stop: int, folder: str, bands: list[list[int]],
               probe_bits: int, range_bits: int) -> pd.DataFrame:
    gather = _gather(tuple(bands[band]))
    shift = len(bands[band]) - range_bits
    first_dest = band << range_bits
    variants = np.array(np.load(os.path.join(folder, "variants.npy"), mmap_mode="r")[start:stop])
    n_variants = variants.shape[1]
    codes = variants[:, 0]
    queries = variants.reshape(-1)
    index_keys = gather(codes)
    base_keys = gather(queries)
    weak_keys = np.zeros_like(base_keys)
    if probe_bits:
        weak = np.load(os.path.join(folder, "weak.npy"), mmap_mode="r")[start:stop]
        weak_keys = gather(np.ascontiguousarray(weak).reshape(-1))
    # The ranges a query's probe keys fall in are its unflipped range with every subset of
    # up to probe_bits of its weak bits above ``shift`` flipped: probe keys of the top bits.
    ranges, query = _probe_keys(_top(base_keys, shift).astype(np.uint32),
                                _top(weak_keys, shift).astype(np.uint32) if probe_bits
                                else None, probe_bits)
    images = np.arange(start, stop, dtype=np.uint32)
    return pd.DataFrame({
        "dest": first_dest + np.concatenate([_top(index_keys, shift),
                                             ranges.astype(np.int64)]),
        "key": np.concatenate([index_keys, base_keys[query]]),
        "weak": np.concatenate([np.zeros(len(codes), np.uint32), weak_keys[query]]),
        "hash": np.concatenate([codes, queries[query]]),
        "image": np.concatenate([images, images[query // n_variants]]),
        "kind": np.concatenate([np.full(len(codes), _INDEX, np.int8),
                                np.full(len(query), _QUERY, np.int8)]),
    })


def join_buckets(part: pd.DataFrame, n_images: int, radius: int, max_bucket: int,
                 probe_bits: int, band_bits: int, range_bits: int) -> pd.DataFrame:
    """Task: the pairs within ``radius`` of the whole buckets of one shuffled partition, and
    the images set aside by buckets too large to expand (the local search's rule)."""
    shift = band_bits - range_bits
    low = np.uint32((1 << shift) - 1)
    dests, dest_of_row = np.unique(part.index.to_numpy(np.int64), return_inverse=True)
    kind = part["kind"].to_numpy()
    key, weak = part["key"].to_numpy(np.uint32), part["weak"].to_numpy(np.uint32)
    image = part["image"].to_numpy(np.int64)
    hashes = part["hash"].to_numpy(np.uint64)
    is_index = kind == _INDEX
    rows = np.flatnonzero(~is_index)

    # Every probe key of each query row, kept where it falls in this row's destination.
    probes, local = _probe_keys(key[rows], weak[rows] if probe_bits else None, probe_bits)
    is_base = np.arange(len(probes)) < len(rows)  # _probe_keys lists unflipped keys first
    row_range = dests[dest_of_row[rows]] & ((1 << range_bits) - 1)
    here = _top(probes, shift) == row_range[local]
    probes, local, is_base = probes[here], local[here], is_base[here]

    # Buckets: (destination, key below the range bits), numbered densely when that fits.
    index_bucket = (dest_of_row[is_index].astype(np.int64) << shift) | (key[is_index] & low)
    query_bucket = (dest_of_row[rows][local].astype(np.int64) << shift) | (probes & low)
    n_buckets = len(dests) << shift
    if n_buckets > 4 * len(index_bucket) + (1 << 16):  # sparse: number the buckets present
        present_keys = np.unique(index_bucket)
        slot = np.searchsorted(present_keys, query_bucket)
        found = slot < len(present_keys)
        found[found] = present_keys[slot[found]] == query_bucket[found]
        n_buckets = len(present_keys) + 1  # the last one stays empty: queries that miss
        index_bucket = np.searchsorted(present_keys, index_bucket)
        query_bucket = np.where(found, slot, n_buckets - 1)
    size = np.bincount(index_bucket, minlength=n_buckets)
    first = np.cumsum(size) - size
    order = np.argsort(index_bucket, kind="stable")
    index_image, index_hash = image[is_index][order], hashes[is_index][order]

    slot = query_bucket
    present = size[slot] > 0
    base_queries = np.bincount(slot[is_base], minlength=n_buckets)
    dropped = (size > max_bucket) | (size.astype(np.int64) * base_queries > _HOT_TRIPLES)
    lands_in_dropped = dropped[slot]
    query_image, query_hash = image[rows][local], hashes[rows][local]
    aside = _sorted_unique(np.concatenate([index_image[np.repeat(dropped, size)],
                                           query_image[lands_in_dropped]]))
    live = np.flatnonzero(present & ~lands_in_dropped)
    pairs = _sorted_unique(_expand_matches(live, slot, first, size, index_image, index_hash,
                                           query_image, query_hash, radius, n_images))
    return pd.DataFrame({
        "kind": np.concatenate([np.full(len(pairs), _PAIR, np.int8),
                                np.full(len(aside), _ASIDE, np.int8)]),
        "value": np.concatenate([pairs, aside]).astype(np.int64),
    })


def _expand_matches(live, slot, first, size, index_image, index_hash, query_image,
                    query_hash, radius, n_images) -> np.ndarray:
    """Pair codes of every (bucket code, query) comparison within ``radius``, in blocks of
    about ``_EXPAND_BLOCK`` comparisons."""
    counts = size[slot[live]].astype(np.int64)
    ends = np.cumsum(counts)
    found = []
    lo = 0
    while lo < len(live):
        done = ends[lo - 1] if lo else 0
        hi = max(lo + 1, int(np.searchsorted(ends, done + _EXPAND_BLOCK, side="right")))
        queries, rest = live[lo:hi], counts[lo:hi]
        offsets = np.arange(int(rest.sum()), dtype=np.int64)
        offsets -= np.repeat(np.cumsum(rest) - rest, rest)
        positions = np.repeat(first[slot[queries]], rest) + offsets
        owners = np.repeat(queries, rest)
        near = _popcount64(index_hash[positions] ^ query_hash[owners]) <= radius
        a, b = index_image[positions[near]], query_image[owners[near]]
        distinct = a != b  # every identity query finds its own code
        found.append(_sorted_unique(_pair_codes(a[distinct], b[distinct], n_images)))
        lo = hi
    return np.concatenate(found) if found else np.empty(0, np.int64)

