"""Banded LSH candidate search on a Dask cluster: group by band value, through files.

Same problem, same bands, same multi-probe keys and the same answer as
:func:`pcbforge.curate.candidates.find_candidate_pairs` (its docstring explains the
method); only the grouping is distributed. Per band, the single-process search sorts the
band keys of all codes into an index and looks every probe key of every query up in it.
Here the key space of each band is cut into ``R = 2**r`` ranges by the key's top ``r``
bits, one *destination* per (band, range), and the rows are exchanged through files in a
folder of the run's work folder, which every worker reads at the same path:

1. One task per *piece* (a few bands of a chunk of images) emits rows: one ``index`` row
   per image (the band key of its code, sent to the key's destination) and, per variant
   hash (a ``query``), one row for each distinct destination among its probe keys,
   carrying its unflipped key and weak-bit mask rather than the keys themselves. A
   flipped weak bit changes the destination only when it is one of the top ``r`` bits,
   so a query travels about 1.5 times instead of once per probe key (about 5 times).
   The task sorts its rows by destination (stable) and writes them as one file: where
   each of its destinations' rows start, then the rows (two ``.npy`` arrays back to
   back, written under a temporary name and renamed). Only the file's name and row
   count go back through the scheduler.
2. Once every piece is written, one task per destination reads its slice of each file
   of its band's pieces (a seek and a read per file), so it holds the whole buckets of
   its destination: about ``images_per_partition`` codes on average whatever the corpus
   size (the key bits are not uniform, so destinations are uneven: in the 100k
   benchmark's occupancy search the largest held 42,898 codes, 368,231 rows or 7.7 MB,
   against a median of 9,364). It expands its queries' probe keys a block of rows at a
   time, keeps those of its own destination, and joins them with its buckets in numpy,
   a block of comparisons at a time: each query hash is compared with the codes of its
   bucket, and pairs within ``max_distance`` are kept. A bucket the local search would
   drop (over ``max_bucket`` codes, or size x unflipped queries over about a million
   comparisons) is dropped here too: its codes and the images of every query landing in
   it are set aside, as there.
3. Back here: the pieces' files are removed, the pairs (small) deduplicated, the
   set-aside images searched exhaustively among themselves, and every pair resolved
   exactly over all variants (``_resolve_pairs``), as the local search ends.

Why files and not a Dask dataframe shuffle (``set_index`` on the destination, which this
module used before): a worker's memory. In the peer-to-peer shuffle a worker's peak RSS
grew with the corpus (+26-38% from 10,000 to 100,000 images) while it held under 25 MB
of task data: serialized shards waiting to be sent and native buffers. Here a task holds
one piece's rows or one destination's rows plus a block's temporaries, and nothing is
buffered between tasks but the files (``benchmarks/RESULTS.md``, engine_bench: +7-8%).

Each step follows the local rules to the letter, so the output equals the local
function's, pair for pair, on the same input (tested).
"""

from __future__ import annotations

import contextlib
import math
import os
import uuid
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from pcbforge.curate.candidates import (
    _HOT_TRIPLES,
    CandidatePairs,
    SearchConfig,
    _band_positions,
    _BitGather,
    _pair_codes,
    _popcount64,
    _probe_keys,
    _resolve_pairs,
    _sorted_unique,
    _validate_inputs,
    search_set_aside,
)
from pcbforge.engine.dask import drain_and_cancel

#: Images per piece task (over its bands), and about the codes per destination; with 8
#: variants a destination holds 9-14 rows per code (21 bytes each; the benchmark's 10k
#: and 100k pHash searches), whatever the corpus size.
IMAGES_PER_PARTITION = 16384
BANDS_PER_TASK = 4
#: Comparisons expanded at once while joining a destination's buckets, and query rows
#: whose probe keys are expanded at once. Small enough that a block's temporaries (128
#: KiB per int64 array) stay about at glibc's mmap threshold: Dask starts its workers
#: with ``MALLOC_TRIM_THRESHOLD_`` set, which pins that threshold at 128 KiB, and every
#: larger temporary is then mapped and faulted in afresh (measured on 32 joins of the
#: 100k benchmark's hashes under that setting: 4.6 s with 2^17 and 2^14, 3.0 s with these).
_EXPAND_BLOCK = 1 << 14
_QUERY_BLOCK = 1 << 12

#: One row of a piece file (packed: 21 bytes).
ROW_DTYPE = np.dtype([("key", "<u4"), ("weak", "<u4"), ("hash", "<u8"), ("image", "<u4"),
                      ("kind", "i1")])
_INDEX, _QUERY = 0, 1
_PIECE_SUFFIX = ".rows"


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
    value done on the Dask cluster of ``client``, exchanged through files.

    ``workdir``: a folder every worker can read and write at the same path (the run's
    stage). The hashes go there once as ``.npy`` files that each task reads its slice of,
    and each piece task writes its rows there for the destination tasks to read, instead
    of anything large travelling through the scheduler. All of it is removed again
    before returning, also when the search fails.
    """
    config = SearchConfig() if config is None else config
    if not isinstance(config, SearchConfig):
        raise TypeError(f"config: expected SearchConfig, got {type(config).__name__}")
    codes, variants, weak_bits = _validate_inputs(codes, variants, weak_bits)
    n_images = len(codes)
    if n_images < 2:
        return CandidatePairs.empty()
    probing = weak_bits is not None and config.probe_bits > 0
    probe_bits = config.probe_bits if probing else 0

    folder = Path(workdir) / f"lsh-{uuid.uuid4().hex[:12]}"
    folder.mkdir(parents=True)
    futures: list = []
    try:
        np.save(folder / "variants.npy", variants)
        if probing:
            np.save(folder / "weak.npy", weak_bits)
        bands = _band_positions(config)
        r = range_bits(n_images, config.band_bits, images_per_partition)
        # Each piece: a few bands of a chunk of images (fewer, larger files).
        group = max(1, min(len(bands), BANDS_PER_TASK))
        chunk = max(1, images_per_partition // group)
        pieces = [
            (tuple(range(first, min(first + group, len(bands)))), start,
             min(start + chunk, n_images))
            for first in range(0, len(bands), group)
            for start in range(0, n_images, chunk)
        ]
        futures = client.map(band_rows, pieces, folder=str(folder), bands=bands.tolist(),
                             probe_bits=probe_bits, range_bits=r, key="lsh-band-rows")
        written = client.gather(futures)
        files: dict[int, list[str]] = {}  # first band of a group -> its pieces' files
        for (in_bands, _, _), (name, _) in zip(pieces, written, strict=True):
            files.setdefault(in_bands[0], []).append(name)

        # One join per destination, reading its rows from each file of its band's group:
        # its number among that group's destinations is ``dest - (first band << r)``.
        dests = list(range(len(bands) << r))
        firsts = [(dest >> r) // group * group for dest in dests]
        futures = client.map(
            join_destination, dests, [dest - (first << r) for dest, first
                                      in zip(dests, firsts, strict=True)],
            [files[first] for first in firsts], folder=str(folder), n_images=n_images,
            radius=config.max_distance, max_bucket=config.max_bucket, probe_bits=probe_bits,
            band_bits=config.band_bits, range_bits=r, key="lsh-join")
        found = client.gather(futures)
    except BaseException:
        _cleanup(client, futures, folder, strict=False)
        raise
    _cleanup(client, futures, folder, strict=True)

    pairs = _sorted_unique(np.concatenate([p for p, _ in found]))
    members = _sorted_unique(np.concatenate([a for _, a in found]))
    pairs, unsearched = search_set_aside(pairs, codes, variants, members, config)
    i, j = np.divmod(pairs, n_images)
    return replace(_resolve_pairs(codes, variants, i, j, config.max_distance),
                   unsearched=unsearched)


def _cleanup(client, futures: list, folder: Path, strict: bool) -> None:
    """Forget the tasks (after a failure, once those already running have ended, so none
    writes a piece after the folder is gone), then remove the staged hashes and every
    piece file (and a temporary one a failed task left behind). ``strict``: a file that
    cannot be removed is an error (after a failure it must not hide the first error)."""
    if strict:
        if futures:
            client.cancel(futures)
    else:
        drain_and_cancel(client, futures)
    try:
        for path in folder.iterdir():
            path.unlink(missing_ok=True)
        folder.rmdir()
    except OSError:
        if strict:
            raise


@lru_cache(maxsize=64)
def _gather(positions: tuple[int, ...]) -> _BitGather:
    return _BitGather(np.asarray(positions, dtype=np.int64))


def _top(keys: np.ndarray, shift: int) -> np.ndarray:
    """The bits of uint32 ``keys`` above ``shift`` (its range within the band), as int64."""
    if shift >= 32:
        return np.zeros(len(keys), np.int64)
    return (keys >> np.uint32(shift)).astype(np.int64)


# --------------------------------------------------------------------------------------
# Piece files: offsets (int64, one per destination of the piece's bands, plus the end),
# then the rows (ROW_DTYPE), sorted by destination; two .npy arrays back to back.
# --------------------------------------------------------------------------------------


def band_rows(piece: tuple[tuple[int, ...], int, int], folder: str, bands: list[list[int]],
              probe_bits: int, range_bits: int) -> tuple[str, int]:
    """Task: the index and query rows of images ``start:stop`` in the bands named, sorted
    by destination (see the module docstring) and written as one file in ``folder``.
    Returns the file's name and its number of rows."""
    in_bands, start, stop = piece
    parts = [_band_rows(band, start, stop, folder, bands, probe_bits, range_bits)
             for band in in_bands]
    dest = np.concatenate([d for d, _ in parts]) - (in_bands[0] << range_bits)
    rows = np.concatenate([rows for _, rows in parts])
    del parts
    order = np.argsort(dest, kind="stable")
    counts = np.bincount(dest, minlength=len(in_bands) << range_bits)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    name = f"piece-{in_bands[0]:04d}-{start:010d}{_PIECE_SUFFIX}"
    write_piece(os.path.join(folder, name), offsets, rows[order])
    return name, len(rows)


def write_piece(path: str, offsets: np.ndarray, rows: np.ndarray) -> None:
    """Write a piece file atomically: under a temporary name in the same folder, then
    renamed (a retried task, or a reader, never sees half a file)."""
    temporary = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(temporary, "wb") as f:
            np.lib.format.write_array(f, np.ascontiguousarray(offsets, "<i8"), version=(1, 0))
            np.lib.format.write_array(f, np.ascontiguousarray(rows, ROW_DTYPE), version=(1, 0))
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _array_header(f, dtype: np.dtype) -> int:
    """Read one ``.npy`` header at the file's position; the array's length (the data
    follows)."""
    version = np.lib.format.read_magic(f)
    if version != (1, 0):
        raise ValueError(f"{f.name}: unexpected .npy version {version}")
    shape, fortran_order, found = np.lib.format.read_array_header_1_0(f)
    if len(shape) != 1 or fortran_order or found != dtype:
        raise ValueError(f"{f.name}: expected a 1-d {dtype} array, found {shape} {found}")
    return shape[0]


def _read_into(f, out: np.ndarray) -> np.ndarray:
    """Fill ``out`` from the file's position; ``ValueError`` when the file ends first."""
    if out.nbytes and f.readinto(out.view(np.uint8)) != out.nbytes:
        raise ValueError(f"{f.name}: truncated")
    return out


def _read_slice(f, slot: int) -> np.ndarray:
    """The rows of one destination (``slot``: its number among the piece's destinations)
    from an open piece file: two offsets and those rows are read, nothing else."""
    n_offsets = _array_header(f, np.dtype("<i8"))
    if not 0 <= slot < n_offsets - 1:
        raise ValueError(f"{f.name}: destination {slot} not among its {n_offsets - 1}")
    offsets_at = f.tell()
    f.seek(offsets_at + 8 * slot)
    lo, hi = (int(v) for v in _read_into(f, np.empty(2, "<i8")))
    f.seek(offsets_at + 8 * n_offsets)
    n_rows = _array_header(f, ROW_DTYPE)
    if not 0 <= lo <= hi <= n_rows:
        raise ValueError(f"{f.name}: bad offsets {lo}:{hi} of {n_rows} rows")
    f.seek(f.tell() + lo * ROW_DTYPE.itemsize)
    return _read_into(f, np.empty(hi - lo, ROW_DTYPE))


def read_pieces(paths: list[str], slot: int) -> np.ndarray:
    """The rows of one destination from each of the piece files ``paths`` (the pieces of
    its band group), as one array; each file is opened once."""
    parts = []
    for path in paths:
        with open(path, "rb") as f:
            parts.append(_read_slice(f, slot))
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts) if parts else np.empty(0, ROW_DTYPE)


def read_piece(path: str, slot: int) -> np.ndarray:
    """The rows of one destination from one piece file."""
    return read_pieces([path], slot)


def _band_rows(band: int, start: int, stop: int, folder: str, bands: list[list[int]],
               probe_bits: int, range_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """The destinations (int64) and rows (ROW_DTYPE) of images ``start:stop`` in one band."""
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
    n_index = len(codes)
    rows = np.empty(n_index + len(query), ROW_DTYPE)
    rows["key"] = np.concatenate([index_keys, base_keys[query]])
    rows["weak"] = np.concatenate([np.zeros(n_index, np.uint32), weak_keys[query]])
    rows["hash"] = np.concatenate([codes, queries[query]])
    rows["image"] = np.concatenate([images, images[query // n_variants]])
    rows["kind"][:n_index] = _INDEX
    rows["kind"][n_index:] = _QUERY
    dest = first_dest + np.concatenate([_top(index_keys, shift), ranges.astype(np.int64)])
    return dest, rows


def join_destination(dest: int, slot: int, files: list[str], folder: str, n_images: int,
                     radius: int, max_bucket: int, probe_bits: int, band_bits: int,
                     range_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Task: the rows of destination ``dest`` (number ``slot`` in its pieces' files) read
    from each of ``files``, joined (:func:`join_buckets`)."""
    rows = read_pieces([os.path.join(folder, name) for name in files], slot)
    return join_buckets(rows, dest, n_images=n_images, radius=radius, max_bucket=max_bucket,
                        probe_bits=probe_bits, band_bits=band_bits, range_bits=range_bits)


def join_buckets(rows: np.ndarray, dest: int, n_images: int, radius: int, max_bucket: int,
                 probe_bits: int, band_bits: int, range_bits: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The pairs within ``radius`` (pair codes, sorted, distinct) of the whole buckets of
    one destination, whose rows (ROW_DTYPE, in any order) are given, and the images set
    aside by buckets too large to expand (the local search's rule; sorted, distinct).

    The queries are expanded into their probe keys ``_QUERY_BLOCK`` rows at a time, so
    that the memory a destination takes beyond its rows does not grow with them."""
    shift = band_bits - range_bits
    low = np.uint32((1 << shift) - 1)
    own_range = dest & ((1 << range_bits) - 1)
    is_index = rows["kind"] == _INDEX
    queries = np.flatnonzero(~is_index)
    index_rows = rows[is_index]

    # Buckets: the key below the range bits, numbered densely when that fits.
    index_bucket = (index_rows["key"] & low).astype(np.int64)
    n_buckets = 1 << shift
    present_keys = None
    if n_buckets > 4 * len(index_bucket) + (1 << 16):  # sparse: number the buckets present
        present_keys = np.unique(index_bucket)
        n_buckets = len(present_keys) + 1  # the last one stays empty: queries that miss
        index_bucket = np.searchsorted(present_keys, index_bucket)

    def bucket_of(keys: np.ndarray) -> np.ndarray:
        """The bucket of each (uint32) key in this destination's range."""
        bucket = (keys & low).astype(np.int64)
        if present_keys is None:
            return bucket
        slot = np.searchsorted(present_keys, bucket)
        found = slot < len(present_keys)
        found[found] = present_keys[slot[found]] == bucket[found]
        return np.where(found, slot, n_buckets - 1)

    size = np.bincount(index_bucket, minlength=n_buckets)
    first = np.cumsum(size) - size
    order = np.argsort(index_bucket, kind="stable")
    index_image = index_rows["image"][order].astype(np.int64)
    index_hash = np.ascontiguousarray(index_rows["hash"][order])
    del index_rows, index_bucket, order

    # The local rule: a bucket is dropped when it holds over max_bucket codes or when its
    # size times its unflipped queries (a query's own key, where it is in this range)
    # passes _HOT_TRIPLES.
    base = rows["key"][queries]
    base_queries = np.bincount(bucket_of(base[_top(base, shift) == own_range]),
                               minlength=n_buckets)
    del base
    dropped = (size > max_bucket) | (size.astype(np.int64) * base_queries > _HOT_TRIPLES)
    aside = [index_image[np.repeat(dropped, size)]]
    pairs = []
    for lo in range(0, len(queries), _QUERY_BLOCK):
        block = rows[queries[lo : lo + _QUERY_BLOCK]]
        # Every probe key of each query row, kept where it falls in this range.
        probes, local = _probe_keys(np.ascontiguousarray(block["key"]),
                                    np.ascontiguousarray(block["weak"]) if probe_bits
                                    else None, probe_bits)
        here = _top(probes, shift) == own_range
        slot = bucket_of(probes[here])
        local = local[here]
        query_image = block["image"].astype(np.int64)[local]
        query_hash = np.ascontiguousarray(block["hash"])[local]
        lands_in_dropped = dropped[slot]
        aside.append(_sorted_unique(query_image[lands_in_dropped]))
        live = np.flatnonzero((size[slot] > 0) & ~lands_in_dropped)
        pairs.append(_expand_matches(live, slot, first, size, index_image, index_hash,
                                     query_image, query_hash, radius, n_images))
    pairs = _sorted_unique(np.concatenate(pairs)) if pairs else np.empty(0, np.int64)
    return pairs.astype(np.int64), _sorted_unique(np.concatenate(aside)).astype(np.int64)


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

