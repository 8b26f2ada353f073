"""Sub-quadratic near-duplicate candidate search over 64-bit perceptual hashes.

Problem
-------
Each image ``n`` has a 64-bit hash ``codes[n]`` and, optionally, the hashes of
its ``V`` dihedral variants ``variants[n, v]`` (``variants[:, 0] == codes``).
An unordered pair ``{i, j}`` is a candidate when, for some variant ``v``,
``hamming(codes[a], variants[b, v]) <= max_distance`` with ``(a, b)`` either
``(i, j)`` or ``(j, i)``. Comparing every pair is ``O(N^2 V)``; at a million
images that is 8e12 popcounts.

Variant convention (shared with :mod:`pcbforge.curate.hashing`): ``v = k + 4*f``
names the transform ``np.rot90(np.fliplr(img) if f else img, k)``. Every pair is
reported once as ``i < j`` with the minimum distance over all variants and both
directions, and ``variant`` is the transform that brings image ``j`` into image
``i``'s frame: a match of ``variants[j, v]`` against ``codes[i]`` reports ``v``;
a match of ``variants[i, v]`` against ``codes[j]`` reports
``dihedral_inverse(v)``. Ties on distance go to the smallest reported variant.

Algorithm (:func:`find_candidate_pairs`)
----------------------------------------
Banded LSH with multi-probe, one band at a time so memory stays ``O(N V)``:

1. A band is a fixed random subset of ``band_bits`` of the 64 bit positions.
   Bands come from random permutations of the 64 positions (constant seed), cut
   into ``64 // band_bits`` disjoint pieces each, so the first ``64 // band_bits``
   bands alone guarantee that every pair at distance ``< 64 // band_bits`` is
   found (pigeonhole), and the rest behave like independent random bands.
2. Index: the band key (the band's bits gathered into a small integer, via
   lookup tables on the four 16-bit words) of every ``codes[n]``, sorted by key.
3. Queries: the band key of every ``variants[n, v]``, plus multi-probe keys:
   the key with every non-empty subset of up to ``probe_bits`` of the query's
   weak bits that fall inside the band flipped. Weak bits are where a noisy copy
   most likely differs, so probing them rescues bands that a near pair misses by
   a few bits, at a cost of ``sum_s C(c, s)`` extra keys for ``c`` weak bits in
   the band.
4. Every query key is matched to its bucket of index entries (the key itself
   indexes per-bucket tables for keys up to 24 bits, ``np.searchsorted`` finds
   its row beyond), and the query hash is compared with every code in the
   bucket; the exact Hamming distance of the full 64-bit hashes keeps the
   ``(index image, query)`` matches within radius. The queries are taken in
   blocks that share a number of weak bits in the band, so that each block's
   keys form a (queries x probes) array and a key's query is its row; each
   key reads its bucket's size and first two codes (one cache line) and
   compares both at once, and only keys whose bucket holds more (under 10%
   when ``2**band_bits`` is near N) go on, one bucket offset at a time.
5. Survivors are accumulated as pair codes ``i * N + j`` and deduplicated after
   each band. Finally every found pair is resolved exactly over all ``2V``
   (direction, variant) combinations, which is what makes LSH and
   :func:`find_candidate_pairs_exhaustive` agree exactly on every pair LSH finds.

Degenerate buckets: an index bucket with more than ``max_bucket`` entries (e.g.
thousands of identical hashes), or one whose expansion would cost more than
about a million comparisons (its size times the queries landing in it), would
be expanded, and its pairs deduplicated, once per band. Instead it is dropped
from the band: its members, and every image with a query key landing in it, are
set aside and, once after all bands, searched exhaustively among themselves.
That is exact, so those images lose no pairs; it costs ``O(H^2 V)`` for ``H``
set-aside images, which is inherent when they really are near each other (the
output itself is then ``O(H^2)``), but wasteful when several unrelated dense
clusters are set aside together, since they are compared with each other too.

Cost and recall
---------------
With ``N`` images, ``V`` variants and ``P`` query keys per hash (1 + probes),
each band costs ``O(N V P)`` for the keys plus ``O(N V P * N / 2**band_bits)``
for the random collisions that must be verified. A fixed ``band_bits`` is
therefore still quadratic in the limit; keeping ``2**band_bits`` near ``N``
(:meth:`SearchConfig.for_size`) keeps collisions at about one per key and the
search close to linear. Recall without multi-probe is given analytically by
:func:`near_pair_recall_probability`; a wider band lowers it, more bands or
good weak bits raise it. Pairs are never invented: every reported pair has its
exact distance.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import lru_cache
from itertools import combinations

import numpy as np

from pcbforge.curate.hashing import N_VARIANTS as N_DIHEDRAL
from pcbforge.curate.hashing import dihedral_inverse

__all__ = [
    "CandidatePairs",
    "SearchConfig",
    "dihedral_inverse",
    "find_candidate_pairs",
    "find_candidate_pairs_exhaustive",
    "hamming",
    "near_pair_recall_probability",
]

#: Bits per hash.
N_BITS = 64
#: Number of dihedral transforms (4 rotations x optional mirror).

# Constant so the band layout, hence the result, is identical on every run and machine.
_BAND_SEED = 20_240_611
# Above this band width a bucket start table (2**bits entries) gets too large; use searchsorted.
_TABLE_MAX_BITS = 24
# Queries grouped by weak-bit count at a time, and lookup keys searched at once: small
# enough that a chunk's temporaries stay in cache (a few MB), large enough to amortise
# numpy's per-call cost.
_QUERY_BLOCK = 1 << 20
_CHUNK_KEYS = 1 << 18
# Values per block of _BitGather (its temporaries stay in L1/L2).
_GATHER_BLOCK = 1 << 14
# Bucket tag (uint8) of a bucket whose size does not fit it, or a dropped one.
_TAG_SPECIAL = 255
# Codes per bucket read with its slot (_BandIndex.heads).
_HEAD_CODES = 2
# Buckets whose expansion would exceed this many comparisons per band are set aside.
_HOT_TRIPLES = 1 << 20
# Below this many buckets left to scan, expand the rest with np.repeat (see _match_runs).
_TAIL_KEYS = 1024
# Pairs resolved at once: 2V distances each.
_RESOLVE_CHUNK = 1 << 20

_HAS_BITWISE_COUNT = hasattr(np, "bitwise_count")  # numpy >= 2.0
_BYTE_POPCOUNT = np.array([bin(value).count("1") for value in range(256)], dtype=np.uint8)
_INVERSE = np.array([dihedral_inverse(v) for v in range(N_DIHEDRAL)], dtype=np.int64)
# Per bucket tag, per head code: 0 where the bucket holds that code and its tag vouches
# for it, else a bit that puts any distance (<= 64) out of range.
_HEAD_MASK = np.array(
    [
        [0 if offset < tag < _TAG_SPECIAL else 0x80 for offset in range(_HEAD_CODES)]
        for tag in range(256)
    ],
    dtype=np.uint8,
)


# --------------------------------------------------------------------------------------
# Public data types
# --------------------------------------------------------------------------------------


def _check_int(name: str, value: object, low: int, high: int | None = None) -> None:
    """Raise ValueError unless ``value`` is an int in ``[low, high]``."""
    expected = f"an int >= {low}" if high is None else f"an int in [{low}, {high}]"
    # bool is an int subclass; True as a band width is a bug, not a 1.
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or value < low
        or (high is not None and value > high)
    ):
        raise ValueError(f"{name}: expected {expected}, got {value!r}")


@dataclass(frozen=True)
class SearchConfig:
    """Parameters of :func:`find_candidate_pairs`.

    Attributes:
        max_distance: Hamming radius (on 64 bits) within which a pair is reported.
        band_bits: Bits per LSH band (1-32). Wider bands mean fewer random
            collisions but lower recall per band; see :meth:`for_size`.
        n_bands: Number of bands searched (work and recall grow with it).
        probe_bits: Multi-probe depth: flip every subset of up to this many of a
            query's weak bits inside the band. 0 disables multi-probe.
        max_bucket: Index buckets larger than this (or costing over about 1e6
            comparisons) are not expanded; their images are searched
            exhaustively among themselves instead (still exact).
        max_set_aside: None (the default): that exhaustive search always runs. A
            number: it runs only when at most this many images were set aside; above,
            they are left unsearched (counted in ``CandidatePairs.unsearched``). The
            exhaustive pass costs the square of their number, and codes that crowd
            into large buckets (look-alike images, e.g. occupancy codes of dense tiles
            in a corpus of one product) can number tens of thousands.
    """

    max_distance: int = 10
    band_bits: int = 16
    n_bands: int = 16
    probe_bits: int = 3
    max_bucket: int = 5000
    max_set_aside: int | None = None

    def __post_init__(self) -> None:
        _check_int("max_distance", self.max_distance, 0, N_BITS)
        _check_int("band_bits", self.band_bits, 1, 32)
        _check_int("n_bands", self.n_bands, 1)
        _check_int("probe_bits", self.probe_bits, 0, self.band_bits)
        _check_int("max_bucket", self.max_bucket, 1)
        if self.max_set_aside is not None:
            _check_int("max_set_aside", self.max_set_aside, 0)

    @classmethod
    def for_size(cls, n_images: int, **overrides: int) -> SearchConfig:
        """A config whose band width grows with the collection, keeping the search near-linear.

        ``band_bits = clip(ceil(log2(n_images)), 16, 24)`` keeps the expected
        number of random collisions per query key at about one; with the fixed
        default of 16 bits it grows as ``n_images / 65536`` and the search turns
        quadratic beyond a few hundred thousand images. Wider bands lower recall
        without multi-probe (see :func:`near_pair_recall_probability`); raise
        ``n_bands`` through ``overrides`` to buy it back. Any field may be
        overridden.
        """
        _check_int("n_images", n_images, 0)
        bits = int(np.clip(math.ceil(math.log2(max(n_images, 2))), 16, _TABLE_MAX_BITS))
        return cls(**{"band_bits": bits, **overrides})


@dataclass(frozen=True)
class CandidatePairs:
    """Candidate pairs, sorted by ``(i, j)``, each once with ``i < j``.

    Attributes:
        i, j: Image indices (int64), ``i < j``.
        variant: Dihedral variant (int8) that brings image ``j`` into image
            ``i``'s frame at the best match.
        distance: Minimum Hamming distance (int8) over variants and directions.
        unsearched: Images set aside in crowded buckets and left out of the
            exhaustive pass (``SearchConfig.max_set_aside``); 0 when the search is
            complete.
    """

    i: np.ndarray
    j: np.ndarray
    variant: np.ndarray
    distance: np.ndarray
    unsearched: int = 0

    def __len__(self) -> int:
        return len(self.i)

    @classmethod
    def empty(cls) -> CandidatePairs:
        """No pairs, with the documented dtypes."""
        return cls(
            np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int8), np.empty(0, np.int8)
        )


# --------------------------------------------------------------------------------------
# Small public helpers
# --------------------------------------------------------------------------------------


def hamming(a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
    """Hamming distance between 64-bit hashes: popcount of ``a ^ b`` (broadcasting, uint8)."""
    return _popcount64(np.bitwise_xor(_as_u64(a, "a"), _as_u64(b, "b")))


def near_pair_recall_probability(
    distance: int | np.ndarray, config: SearchConfig | None = None
) -> float | np.ndarray:
    """Probability that the bands of ``config`` catch a pair at ``distance``, without multi-probe.

    A band catches a pair when none of the ``distance`` differing bits falls in
    it. Bands are cut from independent random permutations, ``g = 64 // band_bits``
    disjoint bands per permutation, so by inclusion-exclusion one permutation
    catches the pair with ``sum_s (-1)**(s+1) C(g, s) C(64 - s*band_bits, d) / C(64, d)``
    and permutations miss independently. Multi-probe only adds to this, by how
    much depends on how well the weak bits predict the differing ones.
    """
    config = SearchConfig() if config is None else config
    values = np.asarray(distance)
    if values.dtype.kind not in "iu" or np.any((values < 0) | (values > N_BITS)):
        raise ValueError(f"distance: expected integers in [0, {N_BITS}], got {distance!r}")
    k = config.band_bits
    per_perm = N_BITS // k
    full, rest = divmod(config.n_bands, per_perm)

    def group_catch(n_disjoint: int, d: int) -> float:
        return sum(
            (-1) ** (s + 1) * math.comb(n_disjoint, s) * math.comb(N_BITS - s * k, d)
            for s in range(1, n_disjoint + 1)
        ) / math.comb(N_BITS, d)

    # 65 possible distances: tabulate once rather than vectorise math.comb.
    table = np.array(
        [
            1.0 - (1.0 - group_catch(per_perm, d)) ** full * (1.0 - group_catch(rest, d))
            for d in range(N_BITS + 1)
        ]
    )
    result = table[values]
    return float(result) if result.ndim == 0 else result


# --------------------------------------------------------------------------------------
# Search
# --------------------------------------------------------------------------------------


def find_candidate_pairs_exhaustive(
    codes: np.ndarray, variants: np.ndarray | None = None, max_distance: int = 10
) -> CandidatePairs:
    """Brute-force reference: every pair within ``max_distance``, same semantics as LSH.

    ``O(N^2 V)`` popcounts, in tiles of the distance matrix so memory stays
    bounded; fine up to a few tens of thousands of images.
    """
    _check_int("max_distance", max_distance, 0, N_BITS)
    codes, variants, _ = _validate_inputs(codes, variants, None)
    i, j = _exhaustive_pairs(codes, variants, max_distance)
    return _resolve_pairs(codes, variants, i, j, max_distance)


def find_candidate_pairs(
    codes: np.ndarray,
    variants: np.ndarray | None = None,
    weak_bits: np.ndarray | None = None,
    config: SearchConfig | None = None,
) -> CandidatePairs:
    """Pairs of images whose hashes are within ``config.max_distance`` (banded LSH).

    Args:
        codes: (N,) uint64 identity hashes.
        variants: (N, V) uint64 hashes of each image under ``V <= 8`` dihedral
            transforms, column 0 equal to ``codes``; None searches identity only.
        weak_bits: (N, V) uint64 masks of each hash's least reliable bits, for
            multi-probe; (N,) is accepted when there is one variant. None
            disables multi-probe.
        config: Search parameters; defaults to ``SearchConfig()``.

    Returns:
        Every pair found, with its exact minimum distance and variant; a subset
        of :func:`find_candidate_pairs_exhaustive` that agrees with it exactly
        on each pair it contains. Deterministic.
    """
    config = SearchConfig() if config is None else config
    if not isinstance(config, SearchConfig):
        raise TypeError(f"config: expected SearchConfig, got {type(config).__name__}")
    codes, variants, weak_bits = _validate_inputs(codes, variants, weak_bits)
    n_images, n_variants = variants.shape
    if n_images < 2:
        return CandidatePairs.empty()

    radius = config.max_distance
    query_hashes = variants.reshape(-1)  # query q is variant q % V of image q // V
    query_weak = None if weak_bits is None or config.probe_bits == 0 else weak_bits.reshape(-1)
    set_aside = np.zeros(n_images, dtype=bool)  # images met in dropped buckets
    found = np.empty(0, dtype=np.int64)  # pair codes i * N + j, sorted, unique

    for positions in _band_positions(config):
        gather = _BitGather(positions)
        index = _BandIndex(gather(codes), codes, config.band_bits)
        base_keys = gather(query_hashes)
        set_aside[index.drop(_buckets_to_drop(index, base_keys, config.max_bucket))] = True
        # Weak bits inside the band: a query's probe count depends only on how many.
        weak_keys = None if query_weak is None else gather(query_weak)
        n_weak = None if weak_keys is None else _popcount32(weak_keys)
        band_found = [found]
        for start in range(0, len(query_hashes), _QUERY_BLOCK):
            stop = min(start + _QUERY_BLOCK, len(query_hashes))
            for n_flip, rows in _rows_by_weak_count(n_weak, start, stop):
                patterns = _probe_patterns(n_flip, config.probe_bits)
                step = max(1, _CHUNK_KEYS // patterns.shape[1])
                for piece in range(0, len(rows), step):
                    part = rows[piece : piece + step]
                    a, query, aside = _search_queries(
                        index,
                        base_keys[part],
                        None if weak_keys is None else weak_keys[part],
                        patterns,
                        query_hashes[part],
                        radius,
                    )
                    set_aside[part[aside] // n_variants] = True
                    b = part[query] // n_variants
                    distinct = a != b  # every identity query finds its own code
                    band_found.append(_pair_codes(a[distinct], b[distinct], n_images))
        # Dedupe per band: a near pair recurs in most bands and in up to 2V (direction,
        # variant) combinations, so deferring this would multiply memory by n_bands.
        found = _sorted_unique(np.concatenate(band_found))

    found, unsearched = search_set_aside(found, codes, variants, np.flatnonzero(set_aside),
                                         config)
    i, j = np.divmod(found, n_images)
    return replace(_resolve_pairs(codes, variants, i, j, radius), unsearched=unsearched)


def search_set_aside(found: np.ndarray, codes: np.ndarray, variants: np.ndarray,
                     members: np.ndarray, config: SearchConfig) -> tuple[np.ndarray, int]:
    """The pair codes ``found`` (sorted, unique, ``i * N + j``) with the pairs among the
    images ``members`` set aside in dropped buckets, found exhaustively, unless they are
    more than ``config.max_set_aside``; returns them and how many images went unsearched."""
    if len(members) < 2:
        return found, 0
    if config.max_set_aside is not None and len(members) > config.max_set_aside:
        return found, len(members)
    sub_i, sub_j = _exhaustive_pairs(codes[members], variants[members], config.max_distance)
    set_aside_pairs = _pair_codes(members[sub_i], members[sub_j], len(codes))
    return _sorted_unique(np.concatenate([found, set_aside_pairs])), 0


# --------------------------------------------------------------------------------------
# Internals
# --------------------------------------------------------------------------------------


def _popcount64(x: np.ndarray) -> np.ndarray:
    """Set bits per element of a uint64 array, as uint8."""
    if _HAS_BITWISE_COUNT:
        return np.bitwise_count(x)
    return _popcount64_table(x)


def _popcount64_table(x: np.ndarray) -> np.ndarray:
    """Popcount via a byte lookup table, for numpy < 2 (no ``np.bitwise_count``)."""
    x = np.asarray(x, dtype=np.uint64)
    raw = np.ascontiguousarray(x.reshape(-1), dtype="<u8").view(np.uint8).reshape(-1, 8)
    return _BYTE_POPCOUNT[raw].sum(axis=1, dtype=np.uint8).reshape(x.shape)


def _as_u64(values: object, name: str) -> np.ndarray:
    """``values`` as uint64, reinterpreting signed 64-bit hashes (e.g. from Parquet) bitwise."""
    array = np.asarray(values)
    if array.dtype.kind not in "iu":
        raise ValueError(f"{name}: expected an integer (uint64) array, got dtype {array.dtype}")
    # astype wraps negative int64 modulo 2**64, i.e. keeps the bit pattern.
    return array.astype(np.uint64, copy=False)


def _validate_inputs(
    codes: np.ndarray, variants: np.ndarray | None, weak_bits: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Check shapes and dtypes; return contiguous uint64 ``codes`` (N,), ``variants`` (N, V)."""
    codes = np.ascontiguousarray(_as_u64(codes, "codes"))
    if codes.ndim != 1:
        raise ValueError(f"codes: expected shape (N,), got {codes.shape}")
    n_images = len(codes)
    if variants is None:
        variants = codes[:, None]
    else:
        variants = np.ascontiguousarray(_as_u64(variants, "variants"))
        if variants.ndim != 2 or variants.shape[0] != n_images:
            raise ValueError(f"variants: expected shape ({n_images}, V), got {variants.shape}")
        if not 1 <= variants.shape[1] <= N_DIHEDRAL:
            raise ValueError(
                f"variants: expected 1 to {N_DIHEDRAL} columns, got {variants.shape[1]}"
            )
        if not np.array_equal(variants[:, 0], codes):
            raise ValueError(
                "variants: expected column 0 (identity) equal to codes, got a mismatch"
            )
    if weak_bits is not None:
        weak_bits = np.ascontiguousarray(_as_u64(weak_bits, "weak_bits"))
        if weak_bits.ndim == 1 and variants.shape[1] == 1:
            weak_bits = weak_bits[:, None]
        if weak_bits.shape != variants.shape:
            raise ValueError(f"weak_bits: expected shape {variants.shape}, got {weak_bits.shape}")
    return codes, variants, weak_bits


def _band_positions(config: SearchConfig) -> np.ndarray:
    """(n_bands, band_bits) sorted bit positions: disjoint pieces of seeded random permutations."""
    k = config.band_bits
    per_perm = N_BITS // k
    n_perms = -(-config.n_bands // per_perm)
    rng = np.random.default_rng(_BAND_SEED)
    perms = rng.permuted(np.tile(np.arange(N_BITS), (n_perms, 1)), axis=1)
    bands = perms[:, : per_perm * k].reshape(n_perms * per_perm, k)[: config.n_bands]
    return np.sort(bands, axis=1)


class _BitGather:
    """Gathers fixed bit positions of uint64 values into compact uint32 keys.

    Bit ``positions[t]`` of the input becomes bit ``t`` of the key. One
    65536-entry table per 16-bit word that holds band bits turns the gather into
    at most 4 table lookups per value instead of one shift-and-mask per bit.
    """

    def __init__(self, positions: np.ndarray):
        positions = np.asarray(positions, dtype=np.int64)
        word_of, bit_in_word = np.divmod(positions, 16)
        self.word_columns = np.unique(word_of)
        values = np.arange(1 << 16, dtype=np.uint32)[:, None]
        key_bits = np.arange(len(positions), dtype=np.uint32)
        self.tables = np.zeros((len(self.word_columns), 1 << 16), dtype=np.uint32)
        for row, column in enumerate(self.word_columns):  # at most 4 words
            sel = word_of == column
            bits = (values >> bit_in_word[sel].astype(np.uint32)) & np.uint32(1)
            self.tables[row] = (bits << key_bits[sel]).sum(axis=1, dtype=np.uint32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        words = np.ascontiguousarray(x, dtype="<u8").view("<u2").reshape(-1, 4)
        keys = np.empty(len(words), dtype=np.uint32)
        # In cache-sized blocks, each word column widened to intp once into a reused
        # buffer: indexing with the strided uint16 column itself converts it per lookup
        # and runs about 1.7 times slower.
        buffer = np.empty(min(len(words), _GATHER_BLOCK), dtype=np.intp)
        looked_up = np.empty(len(buffer), dtype=np.uint32)
        for start in range(0, len(words), _GATHER_BLOCK):
            block = words[start : start + _GATHER_BLOCK]
            out, index, value = (
                keys[start : start + len(block)],
                buffer[: len(block)],
                looked_up[: len(block)],
            )
            for row, column in enumerate(self.word_columns.tolist()):
                np.copyto(index, block[:, column])
                np.take(self.tables[row], index, out=value if row else out)
                if row:
                    out |= value
        return keys


class _BandIndex:
    """The codes of one band grouped by key into buckets, with per-bucket tables.

    Keys map to *slots*: the key itself with a start table (``band_bits <=
    _TABLE_MAX_BITS``), else the rank of the key among those present, one extra slot
    standing for every absent key. Per slot, ``start`` locates the bucket in the
    sorted codes (``start[s]:start[s + 1]``), ``heads`` holds its first two codes, so
    that the commonest cases, buckets of at most two codes (over 90% of the keys when
    ``2**band_bits`` is near N), cost a single random read (16 bytes, one cache line),
    and ``tag`` its size clipped to ``_TAG_SPECIAL``, the tag of a dropped bucket too.

    Buckets can be dropped (:meth:`drop`): they then hold no match, and the caller
    sets aside the images involved for the exhaustive pass.
    """

    def __init__(self, keys: np.ndarray, codes: np.ndarray, band_bits: int):
        # Sorting (key << 32 | index) is a stable argsort by key, and np.sort of plain
        # uint64 is several times faster than np.argsort(kind="stable") on uint32.
        packed = (keys.astype(np.uint64) << np.uint64(32)) | np.arange(len(keys), dtype=np.uint64)
        packed.sort()
        self.order = (packed & np.uint64(0xFFFF_FFFF)).astype(np.int64)
        sorted_keys = (packed >> np.uint64(32)).astype(np.uint32)
        del packed
        self.sorted_codes = codes[self.order]
        if band_bits <= _TABLE_MAX_BITS:
            self._present = None
            size = np.bincount(keys, minlength=1 << band_bits)
        else:
            is_first = np.ones(len(keys), dtype=bool)
            is_first[1:] = sorted_keys[1:] != sorted_keys[:-1]
            first = np.flatnonzero(is_first)
            self._present = sorted_keys[first]
            size = np.diff(first, append=len(keys))
            size = np.append(size, 0)  # the slot of every absent key
        self.start = np.zeros(len(size) + 1, dtype=np.int64)
        np.cumsum(size, out=self.start[1:])
        self.tag = np.minimum(size, _TAG_SPECIAL).astype(np.uint8)
        # Slots with fewer codes read some other code there; their tag masks it (_HEAD_MASK).
        first_two = self.start[:-1, None] + np.arange(_HEAD_CODES)
        self.heads = self.sorted_codes[np.minimum(first_two, len(codes) - 1)]
        self.dropped = np.empty(0, dtype=np.int64)  # sorted slots

    @property
    def n_slots(self) -> int:
        return len(self.tag)

    def sizes(self) -> np.ndarray:
        """Codes per slot."""
        return np.diff(self.start)

    def slot_of(self, keys: np.ndarray, widen: bool = True) -> np.ndarray:
        """The slot of each key (intp; with a start table and ``widen=False``, the keys)."""
        if self._present is None:
            return keys.astype(np.intp, copy=False) if widen else keys
        slot = np.searchsorted(self._present, keys)
        found = slot < len(self._present)
        found[found] = self._present[slot[found]] == keys[found]
        return np.where(found, slot, len(self._present))

    def drop(self, slots: np.ndarray) -> np.ndarray:
        """Make the buckets of ``slots`` hold no match; return the images they held."""
        if len(slots) == 0:
            return np.empty(0, dtype=np.int64)
        self.dropped = np.union1d(self.dropped, slots)
        self.tag[slots] = _TAG_SPECIAL
        in_dropped = np.zeros(self.n_slots, dtype=bool)
        in_dropped[self.dropped] = True
        return self.order[np.repeat(in_dropped, self.sizes())]

    def match_rest(
        self, slots: np.ndarray, tags: np.ndarray, hashes: np.ndarray, radius: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Compare ``hashes[k]`` with the codes of bucket ``slots[k]`` that the head check
        left out: all but the first two for tags ``3 .. _TAG_SPECIAL - 1``; all of a
        large bucket; none of a dropped one.

        Returns the index image and ``k`` of every match within ``radius``, and the
        ``k`` that landed in a dropped bucket.
        """
        first = self.start[slots] + _HEAD_CODES
        left = tags.astype(np.int64) - _HEAD_CODES
        special = np.flatnonzero(tags == _TAG_SPECIAL)
        aside = np.empty(0, dtype=np.int64)
        if len(special):
            special_slots = slots[special]
            dropped = np.isin(special_slots, self.dropped)
            aside = special[dropped]
            first[special] -= _HEAD_CODES
            size = self.start[special_slots + 1] - self.start[special_slots]
            left[special] = np.where(dropped, 0, size)
        a, k = _match_runs(self.sorted_codes, self.order, first, left, hashes, radius)
        return a, k, aside


def _buckets_to_drop(index: _BandIndex, base_keys: np.ndarray, max_bucket: int) -> np.ndarray:
    """Slots of buckets too large to expand: over ``max_bucket`` entries, or expected to cost
    over ``_HOT_TRIPLES`` comparisons (size x unprobed queries landing in it).

    The second rule catches dense clusters just under ``max_bucket`` (e.g. 4,000 identical
    hashes), which would otherwise be expanded and deduplicated again in every band.
    """
    size = index.sizes()
    queries = np.bincount(index.slot_of(base_keys, widen=False), minlength=index.n_slots)
    return np.flatnonzero((size > max_bucket) | (size * queries > _HOT_TRIPLES))


def _rows_by_weak_count(
    n_weak: np.ndarray | None, start: int, stop: int
) -> Iterator[tuple[int, np.ndarray]]:
    """The queries ``start:stop`` grouped by weak bits in the band: (count, query indices)."""
    if n_weak is None:
        yield 0, np.arange(start, stop, dtype=np.int64)
        return
    block = n_weak[start:stop]
    for count in np.flatnonzero(np.bincount(block)).tolist():
        yield count, start + np.flatnonzero(block == count)


def _popcount32(x: np.ndarray) -> np.ndarray:
    """Set bits per uint32 key, as uint8 (a table index and a radix-sortable key)."""
    if _HAS_BITWISE_COUNT:
        return np.bitwise_count(x)
    return _popcount64_table(x.astype(np.uint64))


@lru_cache(maxsize=256)
def _subset_patterns(n_weak: int, probe_bits: int) -> np.ndarray:
    """(n_weak, P) 0/1 columns: every non-empty subset of at most ``probe_bits`` of n_weak bits."""
    subsets = [
        subset
        for size in range(1, min(probe_bits, n_weak) + 1)
        for subset in combinations(range(n_weak), size)
    ]
    patterns = np.zeros((n_weak, len(subsets)), dtype=np.uint32)
    for column, subset in enumerate(subsets):  # at most a few thousand, built once per n_weak
        patterns[list(subset), column] = 1
    patterns.flags.writeable = False
    return patterns


@lru_cache(maxsize=256)
def _probe_patterns(n_weak: int, probe_bits: int) -> np.ndarray:
    """:func:`_subset_patterns` after an empty column: column 0 is the unflipped key."""
    patterns = np.zeros((n_weak, 1), dtype=np.uint32)
    if n_weak and probe_bits:
        patterns = np.concatenate([patterns, _subset_patterns(n_weak, probe_bits)], axis=1)
    patterns.flags.writeable = False
    return patterns


def _weak_bit_values(weak: np.ndarray, n_weak: int) -> np.ndarray:
    """(len(weak), n_weak) the set bits of each uint32 mask holding ``n_weak`` of them,
    lowest first."""
    remaining = weak.copy()
    bits = np.empty((len(weak), n_weak), dtype=np.uint32)
    for t in range(n_weak):  # peel the weak bits off, lowest first
        bits[:, t] = remaining & (~remaining + np.uint32(1))
        remaining ^= bits[:, t]
    return bits


def _probe_keys(
    base: np.ndarray, weak: np.ndarray | None, probe_bits: int
) -> tuple[np.ndarray, np.ndarray]:
    """All lookup keys of a chunk of queries and the (chunk-local) query each belongs to.

    Queries are grouped by how many weak bits fall in the band, so that each group
    shares one table of flip patterns: its flips are (queries x weak bits) @
    (weak bits x patterns), the weak bits being distinct powers of two. (The Dask
    search's form; the local search keeps each group's keys as a (queries x probes)
    block instead, see :func:`_search_queries`.)
    """
    local = np.arange(len(base), dtype=np.int64)
    if weak is None or probe_bits == 0:
        return base, local
    n_weak = _popcount32(weak)
    keys, owners = [base], [local]
    by_count = np.argsort(n_weak, kind="stable")  # uint8: radix sort
    bounds = np.concatenate([[0], np.cumsum(np.bincount(n_weak, minlength=33))])
    for c in range(1, 33):
        group = by_count[bounds[c] : bounds[c + 1]]
        if len(group) == 0:
            continue
        patterns = _subset_patterns(c, probe_bits)
        bits = _weak_bit_values(weak[group], c)
        keys.append((base[group, None] ^ (bits @ patterns)).reshape(-1))
        owners.append(np.repeat(group, patterns.shape[1]))
    return np.concatenate(keys), np.concatenate(owners)


def _search_queries(
    index: _BandIndex,
    base: np.ndarray,
    weak: np.ndarray | None,
    patterns: np.ndarray,
    hashes: np.ndarray,
    radius: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Match queries that share a weak-bit count (``patterns`` rows) against one band.

    Each query's probe keys are a row of a (queries x probes) block, its unflipped key
    first, so a key's query is its row: no per-key owner array. Every key's two head
    codes are compared at once; keys whose bucket holds more (tag > 2, under 10% when
    ``2**band_bits`` is near N) go on to :meth:`_BandIndex.match_rest`.

    Returns the index image and the (chunk-local) query of every match within
    ``radius``, and the queries with a key in a dropped bucket.
    """
    n_weak, n_probes = patterns.shape
    keys = base.astype(np.intp)
    if n_weak:
        keys = (keys[:, None] ^ (_weak_bit_values(weak, n_weak) @ patterns)).reshape(-1)
    slots = index.slot_of(keys)
    del keys
    tags = index.tag[slots]
    diff = np.take(index.heads, slots, axis=0)  # (keys, _HEAD_CODES)
    rows = diff.reshape(len(hashes), -1)
    np.bitwise_xor(rows, hashes[:, None], out=rows)
    distance = _popcount64(diff)
    del diff, rows
    distance |= np.take(_HEAD_MASK, tags, axis=0)  # head codes the bucket lacks: out of range
    hits = np.flatnonzero(distance <= radius)
    key, offset = np.divmod(hits, _HEAD_CODES)
    found_a = [index.order[index.start[slots[key]] + offset]]
    found_key = [key]
    aside = np.empty(0, dtype=np.int64)
    more = np.flatnonzero(tags > _HEAD_CODES)
    if len(more):
        a, k, aside_k = index.match_rest(slots[more], tags[more], hashes[more // n_probes], radius)
        found_a.append(a)
        found_key.append(more[k])
        aside = more[aside_k] // n_probes
    return np.concatenate(found_a), np.concatenate(found_key) // n_probes, aside


def _match_runs(
    sorted_codes: np.ndarray,
    order: np.ndarray,
    first: np.ndarray,
    left: np.ndarray,
    hashes: np.ndarray,
    radius: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Compare ``hashes[k]`` with ``sorted_codes[first[k] : first[k] + left[k]]``; return the
    index image (``order``) and ``k`` of every match within ``radius``.

    One vectorised pass per offset into the runs, over the keys whose run is that long
    (few beyond the first offsets when ``2**band_bits`` is near N). Once fewer than
    ``_TAIL_KEYS`` keys remain, the rest is expanded with ``np.repeat`` instead, so a
    rare large bucket costs no long loop.
    """
    which = np.flatnonzero(left > 0)
    first, left, hashes = first[which], left[which], hashes[which]
    found_a, found_k = [np.empty(0, dtype=np.int64)], [np.empty(0, dtype=np.int64)]
    while len(which) >= _TAIL_KEYS:
        hits = np.flatnonzero(_popcount64(sorted_codes[first] ^ hashes) <= radius)
        found_a.append(order[first[hits]])
        found_k.append(which[hits])
        left -= 1
        keep = np.flatnonzero(left > 0)
        which, first, left, hashes = which[keep], first[keep] + 1, left[keep], hashes[keep]
    if len(which):
        ends = np.cumsum(left)
        positions = np.arange(int(ends[-1]), dtype=np.int64)
        positions += np.repeat(first - (ends - left), left)
        near = _popcount64(sorted_codes[positions] ^ np.repeat(hashes, left)) <= radius
        hits = np.flatnonzero(near)
        found_a.append(order[positions[hits]])
        found_k.append(which[np.searchsorted(ends, hits, side="right")])
    return np.concatenate(found_a), np.concatenate(found_k)


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values. np.unique on numpy >= 2.3 hashes first, which is many times
    slower than a plain sort on the millions of repeated pair codes of a dense cluster."""
    values = np.sort(values)
    if len(values) < 2:
        return values
    return values[np.concatenate([[True], values[1:] != values[:-1]])]


def _pair_codes(a: np.ndarray, b: np.ndarray, n_images: int) -> np.ndarray:
    """Unordered pairs as int64 ``min * N + max`` (sorts as (i, j))."""
    a = a.astype(np.int64, copy=False)
    b = b.astype(np.int64, copy=False)
    return np.minimum(a, b) * n_images + np.maximum(a, b)


def _exhaustive_pairs(
    codes: np.ndarray, variants: np.ndarray, radius: int
) -> tuple[np.ndarray, np.ndarray]:
    """All pairs ``i < j`` with some (direction, variant) within ``radius``, by brute force.

    Tiles of the distance matrix small enough to stay in cache, whole images wide, so
    that "any variant within the radius" is one test per image pair: the ``V`` booleans
    of an image pair are adjacent, and read as one integer (measured on 2,000 images
    with 8 variants: 0.03 s against 0.13 s for tiles of 2^22 distances and a
    ``nonzero`` over every variant)."""
    n_images, n_variants = variants.shape
    if n_images < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    flat = variants.reshape(-1)
    col_images = max(1, min(n_images, _EXHAUSTIVE_TILE // n_variants))
    row_step = max(1, _EXHAUSTIVE_TILE // (col_images * n_variants))
    found = []
    for row in range(0, n_images, row_step):
        block = codes[row : row + row_step, None]
        for col in range(0, n_images, col_images):
            columns = flat[None, col * n_variants : (col + col_images) * n_variants]
            near = _any_variant(_popcount64(block ^ columns) <= radius, n_variants)
            a, b = np.nonzero(near)
            a += row
            b += col
            distinct = a != b
            found.append(_sorted_unique(_pair_codes(a[distinct], b[distinct], n_images)))
    pairs = _sorted_unique(np.concatenate(found))
    return np.divmod(pairs, n_images)


#: Distances per tile of the exhaustive search (a few hundred KB of temporaries).
_EXHAUSTIVE_TILE = 1 << 16
#: Integer types as wide as 1, 2, 4 and 8 booleans.
_BOOL_WORDS = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def _any_variant(near: np.ndarray, n_variants: int) -> np.ndarray:
    """(rows, images): whether any of each image's ``n_variants`` adjacent columns of the
    boolean (rows, images * n_variants) array ``near`` is set."""
    word = _BOOL_WORDS.get(n_variants)
    if word is not None:  # the n_variants booleans of an image pair, read as one integer
        return np.ascontiguousarray(near).view(word) != 0
    return near.reshape(near.shape[0], -1, n_variants).any(axis=2)


def _resolve_pairs(
    codes: np.ndarray, variants: np.ndarray, i: np.ndarray, j: np.ndarray, radius: int
) -> CandidatePairs:
    """Exact best (distance, variant) of each pair over both directions and all variants.

    Both the LSH and the exhaustive search end here, so they agree exactly on every
    pair they share regardless of which combination each happened to find first.
    """
    n_variants = variants.shape[1]
    # Reported variant of each column: forward matches of variants[j, v] against codes[i]
    # report v; backward matches of variants[i, v] against codes[j] report its inverse.
    reported = np.concatenate([np.arange(n_variants), _INVERSE[:n_variants]])
    out_d, out_v = [], []
    for start in range(0, len(i), _RESOLVE_CHUNK):
        ci, cj = i[start : start + _RESOLVE_CHUNK], j[start : start + _RESOLVE_CHUNK]
        distance = np.concatenate(
            [
                _popcount64(codes[ci, None] ^ variants[cj]),
                _popcount64(codes[cj, None] ^ variants[ci]),
            ],
            axis=1,
        )
        # Lexicographic (distance, reported variant): the tie-break is the smallest variant.
        best = np.argmin(distance.astype(np.int16) * N_DIHEDRAL + reported, axis=1)
        out_d.append(np.take_along_axis(distance, best[:, None], axis=1)[:, 0])
        out_v.append(reported[best])
    if not out_d:
        return CandidatePairs.empty()
    distance = np.concatenate(out_d).astype(np.int8)
    variant = np.concatenate(out_v).astype(np.int8)
    keep = distance <= radius  # always true for found pairs; a guard, not a filter
    return CandidatePairs(
        i.astype(np.int64)[keep], j.astype(np.int64)[keep], variant[keep], distance[keep]
    )
