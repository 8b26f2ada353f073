"""Tests for the banded-LSH candidate search (pcbforge.curate.candidates)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pytest

from pcbforge.curate import candidates as cand
from pcbforge.curate.candidates import (
    CandidatePairs,
    SearchConfig,
    find_candidate_pairs,
    find_candidate_pairs_exhaustive,
    hamming,
    near_pair_recall_probability,
)
from pcbforge.curate.hashing import dihedral, dihedral_inverse

BIT = np.uint64(1) << np.arange(64, dtype=np.uint64)


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


@dataclass
class Planted:
    codes: np.ndarray
    variants: np.ndarray
    weak: np.ndarray
    pairs: np.ndarray  # (P, 2) sorted planted pairs
    distance: np.ndarray  # planted distance of each pair


def random_masks(rng: np.random.Generator, shape: tuple[int, ...], n_bits: int) -> np.ndarray:
    masks = np.zeros(shape, dtype=np.uint64)
    for _ in range(n_bits):
        masks |= BIT[rng.integers(0, 64, size=shape)]
    return masks


def tight_cluster(n: int = 1500, size: int = 300, seed: int = 8):
    """``(codes, variants, cluster)``: random hashes with 8 variants each, ``size`` of whose
    identity codes (the rows ``cluster``) are blank-ish frames, 3 bits set at most, all
    within 6 bits of each other: they crowd every band's buckets."""
    rng = np.random.default_rng(seed)
    variants = rng.integers(0, 2**64, size=(n, 8), dtype=np.uint64)
    cluster = rng.choice(n, size, replace=False)
    variants[cluster, 0] = random_masks(rng, (size,), 3)
    return variants[:, 0].copy(), variants, cluster


def exact_flips(rng: np.random.Generator, distance: np.ndarray) -> np.ndarray:
    """One mask per entry of ``distance`` with exactly that many random bits set."""
    ranks = rng.random((len(distance), 64)).argsort(axis=1).argsort(axis=1)
    return np.bitwise_or.reduce(np.where(ranks < distance[:, None], BIT, np.uint64(0)), axis=1)


def planted(
    n: int = 4000,
    per_distance: int = 40,
    max_distance: int = 10,
    n_variants: int = 8,
    weak: str = "flipped",
    seed: int = 0,
) -> Planted:
    """Random hashes plus ``per_distance`` planted pairs at each distance 0..max_distance.

    Pair (a, b): variant v of b is codes[a] with d bits flipped (v random, 0 when
    there is one variant). ``weak``: "flipped" marks the flipped bits (plus 2 random
    ones) as weak, the realistic case; "random" gives 8 random weak bits; "none".
    """
    rng = np.random.default_rng(seed)
    variants = rng.integers(0, 2**64, size=(n, n_variants), dtype=np.uint64)
    weak_bits = random_masks(rng, (n, n_variants), 8)
    distance = np.repeat(np.arange(max_distance + 1), per_distance)
    images = rng.choice(n, size=2 * len(distance), replace=False)
    a, b = images[: len(distance)], images[len(distance) :]
    flips = exact_flips(rng, distance)
    v = rng.integers(0, n_variants, size=len(distance))
    variants[b, v] = variants[a, 0] ^ flips
    if weak == "flipped":
        weak_bits[b, v] = flips | random_masks(rng, (len(distance),), 2)
    pairs = np.sort(np.stack([a, b], axis=1), axis=1)
    return Planted(
        variants[:, 0].copy(),
        variants,
        None if weak == "none" else weak_bits,
        pairs,
        distance,
    )


def as_dict(pairs: CandidatePairs) -> dict[tuple[int, int], tuple[int, int]]:
    return {
        (i, j): (v, d)
        for i, j, v, d in zip(
            pairs.i.tolist(),
            pairs.j.tolist(),
            pairs.variant.tolist(),
            pairs.distance.tolist(),
            strict=True,
        )
    }


def recall(found: CandidatePairs, data: Planted, max_d: int) -> float:
    keys = set(zip(found.i.tolist(), found.j.tolist(), strict=True))
    sel = data.distance <= max_d
    return float(np.mean([(int(i), int(j)) in keys for i, j in data.pairs[sel]]))


def assert_consistent_with_exhaustive(lsh: CandidatePairs, exhaustive: CandidatePairs) -> None:
    """Every LSH pair is in the exhaustive result, with the same variant and distance."""
    reference = as_dict(exhaustive)
    for key, value in as_dict(lsh).items():
        assert reference.get(key) == value, (key, value, reference.get(key))


def assert_well_formed(pairs: CandidatePairs) -> None:
    assert pairs.i.dtype == np.int64 and pairs.j.dtype == np.int64
    assert pairs.variant.dtype == np.int8 and pairs.distance.dtype == np.int8
    assert np.all(pairs.i < pairs.j)
    # Strictly increasing in (i, j): sorted and each pair once.
    i, j = pairs.i, pairs.j
    assert np.all((i[1:] > i[:-1]) | ((i[1:] == i[:-1]) & (j[1:] > j[:-1])))


# --------------------------------------------------------------------------------------
# Hamming, dihedral helpers, analytic recall
# --------------------------------------------------------------------------------------


def test_hamming_golden_values() -> None:
    assert hamming(0, 0) == 0
    assert hamming(0, 2**64 - 1) == 64
    assert hamming(0b1011, 0b0001) == 2
    assert hamming(np.uint64(0x8000_0000_0000_0000), 0) == 1
    assert hamming(np.int64(-1), 0) == 64  # signed hashes are reinterpreted bitwise
    table = hamming(np.array([0, 1, 3], np.uint64)[:, None], np.array([0, 7], np.uint64))
    assert table.dtype == np.uint8
    np.testing.assert_array_equal(table, [[0, 3], [1, 2], [2, 1]])


def test_popcount_table_fallback_matches() -> None:
    rng = np.random.default_rng(3)
    x = rng.integers(0, 2**64, size=(50, 7), dtype=np.uint64)
    expected = np.array([[bin(int(v)).count("1") for v in row] for row in x])
    np.testing.assert_array_equal(cand._popcount64_table(x), expected)
    np.testing.assert_array_equal(cand._popcount64(x), expected)


def test_search_without_bitwise_count(realistic, monkeypatch) -> None:
    # numpy < 2 has no np.bitwise_count: the byte-table popcount must give the same result.
    data, _, lsh = realistic
    monkeypatch.setattr(cand, "_HAS_BITWISE_COUNT", False)
    assert as_dict(find_candidate_pairs(data.codes, data.variants, data.weak)) == as_dict(lsh)


def test_hamming_rejects_floats() -> None:
    with pytest.raises(ValueError, match="expected an integer"):
        hamming(np.array([1.0]), 0)


def test_dihedral_inverse_undoes_transform() -> None:
    image = np.arange(15).reshape(3, 5)  # non-square: a wrong inverse changes the shape
    for v in range(8):
        inverse = dihedral_inverse(v)
        once = dihedral(image, v)
        np.testing.assert_array_equal(dihedral(once, inverse), image)
        np.testing.assert_array_equal(
            dihedral(dihedral(image, inverse), v), image
        )
        assert dihedral_inverse(inverse) == v
    expected = np.rot90(np.fliplr(image), 3)  # v = 3 + 4
    np.testing.assert_array_equal(dihedral(image, 7), expected)
    shapes_and_values = {dihedral(image, v).tobytes() for v in range(8)}
    assert len(shapes_and_values) == 8
    np.testing.assert_array_equal(dihedral_inverse(np.arange(8)), [0, 3, 2, 1, 4, 5, 6, 7])
    with pytest.raises(ValueError, match="expected"):
        dihedral_inverse(8)


def test_recall_probability_matches_band_layout() -> None:
    config = SearchConfig()
    probability = near_pair_recall_probability(np.arange(65), config)
    assert probability[0] == 1.0
    assert np.all(np.diff(probability) <= 1e-12)
    # 4 disjoint 16-bit bands: pairs closer than 4 bits are always caught (pigeonhole).
    np.testing.assert_allclose(probability[:4], 1.0)
    # Monte Carlo over the real band layout.
    bands = cand._band_positions(config)
    band_masks = np.bitwise_or.reduce(BIT[bands], axis=1)
    rng = np.random.default_rng(4)
    for d in (6, 10, 14):
        flips = exact_flips(rng, np.full(20_000, d))
        caught = ((flips[:, None] & band_masks[None, :]) == 0).any(axis=1).mean()
        assert abs(caught - near_pair_recall_probability(d, config)) < 0.02
    assert isinstance(near_pair_recall_probability(3), float)


# --------------------------------------------------------------------------------------
# LSH vs exhaustive
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def realistic() -> tuple[Planted, CandidatePairs, CandidatePairs]:
    data = planted(weak="flipped")
    exhaustive = find_candidate_pairs_exhaustive(data.codes, data.variants, 10)
    lsh = find_candidate_pairs(data.codes, data.variants, data.weak)
    return data, exhaustive, lsh


def test_exhaustive_finds_every_planted_pair(realistic) -> None:
    data, exhaustive, _ = realistic
    assert_well_formed(exhaustive)
    assert recall(exhaustive, data, 10) == 1.0
    found = as_dict(exhaustive)
    for (i, j), d in zip(data.pairs.tolist(), data.distance.tolist(), strict=True):
        assert found[(i, j)][1] <= d


def test_lsh_recall_with_informative_weak_bits(realistic) -> None:
    data, exhaustive, lsh = realistic
    assert_well_formed(lsh)
    assert recall(lsh, data, 6) >= 0.99
    assert recall(lsh, data, 10) >= 0.95
    assert_consistent_with_exhaustive(lsh, exhaustive)


def test_lsh_recall_with_random_weak_bits() -> None:
    # Weak bits unrelated to the flipped ones make multi-probe mostly useless, so recall
    # is close to the analytic no-probe value: about 0.97 at d = 6 and 0.53 at d = 10.
    data = planted(weak="random", per_distance=60, seed=1)
    lsh = find_candidate_pairs(data.codes, data.variants, data.weak)
    assert recall(lsh, data, 3) == 1.0  # pigeonhole over 4 disjoint bands
    assert recall(lsh, data, 6) >= 0.95
    assert recall(lsh, data, 10) >= 0.75
    sel = data.distance == 10
    keys = set(zip(lsh.i.tolist(), lsh.j.tolist(), strict=True))
    exactly_10 = np.mean([(int(i), int(j)) in keys for i, j in data.pairs[sel]])
    assert exactly_10 >= 0.35  # analytic 0.53 without probes
    exhaustive = find_candidate_pairs_exhaustive(data.codes, data.variants, 10)
    assert_consistent_with_exhaustive(lsh, exhaustive)


def test_identity_only_and_probe_switches() -> None:
    data = planted(n=3000, n_variants=1, per_distance=20, weak="flipped", seed=2)
    exhaustive = find_candidate_pairs_exhaustive(data.codes, None, 10)
    lsh = find_candidate_pairs(data.codes, None, data.weak[:, 0])
    assert recall(lsh, data, 10) >= 0.95
    assert np.all(lsh.variant == 0)
    assert_consistent_with_exhaustive(lsh, exhaustive)
    no_probe = find_candidate_pairs(data.codes, None, None)
    zero_depth = find_candidate_pairs(data.codes, None, data.weak, SearchConfig(probe_bits=0))
    assert as_dict(no_probe) == as_dict(zero_depth)
    assert set(as_dict(no_probe)) <= set(as_dict(lsh))


@pytest.mark.parametrize("image_first", [True, False])
def test_variant_is_reported_relative_to_j(image_first: bool) -> None:
    rng = np.random.default_rng(5)
    n = 500
    variants = rng.integers(0, 2**64, size=(n, 8), dtype=np.uint64)
    i, j = (10, 400) if image_first else (400, 10)
    # Variant 3 (rot270) of image j equals image i up to 2 flipped bits.
    variants[j, 3] = variants[i, 0] ^ BIT[5] ^ BIT[40]
    codes = variants[:, 0].copy()
    weak = np.zeros_like(variants)
    weak[j, 3] = BIT[5] | BIT[40]
    lsh = as_dict(find_candidate_pairs(codes, variants, weak))
    exhaustive = as_dict(find_candidate_pairs_exhaustive(codes, variants, 10))
    if image_first:  # found as variant 3 of the later image j: bring j into i's frame by 3
        expected = {(10, 400): (3, 2)}
    else:  # variant 3 of the earlier image matched the later one: j -> i is the inverse
        expected = {(10, 400): (dihedral_inverse(3), 2)}
    assert lsh == expected
    assert exhaustive == expected


def test_min_distance_over_directions_and_tie_break() -> None:
    codes = np.array([0, 2**64 - 1, 0b111], dtype=np.uint64)
    variants = np.tile(codes[:, None], (1, 8))
    variants[1, 1] = 0b1  # forward: variant 1 of image 1 is 1 bit from image 0...
    variants[1, 6] = 0b1  # ...and so is its variant 6
    variants[0, 5] = 2**64 - 2  # backward: variant 5 of image 0 is 1 bit from image 1
    result = as_dict(find_candidate_pairs_exhaustive(codes, variants, 3))
    # Three ways at distance 1 (forward 1 and 6, backward inverse(5) = 5): smallest wins.
    assert result[(0, 1)] == (1, 1)
    assert result[(0, 2)] == (0, 3)  # identity, 3 bits
    # Only backward: variant 1 (rot90) of image 1 is 2 bits from image 2, so image 2
    # comes into image 1's frame by the inverse, rot270 (variant 6 would also give 2 bits).
    assert result[(1, 2)] == (3, 2)
    lsh = as_dict(find_candidate_pairs(codes, variants, None, SearchConfig(max_distance=3)))
    assert lsh == result


def test_deterministic(realistic) -> None:
    data, _, lsh = realistic
    again = find_candidate_pairs(data.codes, data.variants, data.weak)
    for name in ("i", "j", "variant", "distance"):
        np.testing.assert_array_equal(getattr(lsh, name), getattr(again, name))


def test_signed_codes_accepted(realistic) -> None:
    data, _, lsh = realistic
    signed = find_candidate_pairs(
        data.codes.view(np.int64), data.variants.view(np.int64), data.weak.view(np.int64)
    )
    assert as_dict(signed) == as_dict(lsh)


@pytest.mark.parametrize("n", [0, 1])
def test_empty_and_single(n: int) -> None:
    codes = np.arange(n, dtype=np.uint64)
    for result in (
        find_candidate_pairs(codes),
        find_candidate_pairs(codes, np.tile(codes[:, None], (1, 8)), np.zeros((n, 8), np.uint64)),
        find_candidate_pairs_exhaustive(codes),
    ):
        assert len(result) == 0
        assert result.i.dtype == np.int64 and result.variant.dtype == np.int8


def test_wide_bands_use_sorted_lookup() -> None:
    data = planted(n=3000, per_distance=20, weak="flipped", seed=6)
    config = SearchConfig(band_bits=28, n_bands=24)
    assert config.band_bits > cand._TABLE_MAX_BITS
    lsh = find_candidate_pairs(data.codes, data.variants, data.weak, config)
    exhaustive = find_candidate_pairs_exhaustive(data.codes, data.variants, 10)
    assert_consistent_with_exhaustive(lsh, exhaustive)
    assert recall(lsh, data, 10) >= 0.9


# --------------------------------------------------------------------------------------
# Degenerate buckets
# --------------------------------------------------------------------------------------


def identical_plus_random(n_same: int, n_random: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    value = np.uint64(0x0123_4567_89AB_CDEF)
    codes = np.concatenate(
        [np.full(n_same, value, np.uint64), rng.integers(0, 2**64, n_random, np.uint64)]
    )
    codes = codes[rng.permutation(len(codes))]
    return codes, np.flatnonzero(codes == value)


def test_many_identical_codes_are_all_paired_quickly() -> None:
    n_same = 5200  # above the default max_bucket of 5000
    codes, same = identical_plus_random(n_same, 800, seed=7)
    start = time.perf_counter()
    lsh = find_candidate_pairs(codes)
    # About 3 s on a laptop core, most of it writing 13.5 million pairs; a blind
    # per-band expansion took minutes.
    assert time.perf_counter() - start < 30
    assert_well_formed(lsh)
    assert len(lsh) == n_same * (n_same - 1) // 2  # random codes: no other pair within 10
    first = np.searchsorted(same, lsh.i)
    second = np.searchsorted(same, lsh.j)
    assert np.array_equal(same[first], lsh.i) and np.array_equal(same[second], lsh.j)
    assert np.all(lsh.distance == 0) and np.all(lsh.variant == 0)


@pytest.mark.parametrize("band_bits", [16, 28], ids=["start-table", "sorted-lookup"])
@pytest.mark.parametrize("n_same", [2, 3, 254, 255, 400])
def test_buckets_of_every_size_are_expanded_exactly(n_same: int, band_bits: int) -> None:
    # A key reads its bucket's first two codes and a uint8 size tag; larger buckets go on
    # offset by offset, and from 255 codes on the tag no longer holds the size. Identical
    # codes share a bucket in every band. Other images hold the cluster's code, or 1 bit
    # from it, only as a transformed variant: their pairs with the cluster are found only
    # by that variant's query comparing every code of the bucket. Pairs under
    # 64 // band_bits bits apart are always found (disjoint bands), so within 1 bit the
    # search must equal the exhaustive one.
    rng = np.random.default_rng(10 + n_same)
    variants = rng.integers(0, 2**64, size=(700, 8), dtype=np.uint64)
    variants[:n_same, 0] = variants[0, 0]
    holders = np.arange(600, 700)
    flips = np.where(np.arange(100) % 2, BIT[rng.integers(0, 64, 100)], np.uint64(0))
    variants[holders, rng.integers(1, 8, 100)] = variants[0, 0] ^ flips
    codes = variants[:, 0].copy()
    config = SearchConfig(band_bits=band_bits, n_bands=8)
    lsh = find_candidate_pairs(codes, variants, config=config)
    exhaustive = find_candidate_pairs_exhaustive(codes, variants, max_distance=1)
    assert_well_formed(lsh)
    assert len(exhaustive) >= n_same * (n_same - 1) // 2 + 100 * n_same
    near = lsh.distance <= 1
    for name in ("i", "j", "variant", "distance"):
        np.testing.assert_array_equal(getattr(lsh, name)[near], getattr(exhaustive, name))


@pytest.mark.parametrize("band_bits", [16, 28])  # start table and sorted lookup
def test_dense_cluster_below_max_bucket_is_set_aside(band_bits: int) -> None:
    # 2,500 identical codes fit in a bucket, but expanding it costs 6 million comparisons
    # per band: it is set aside as well, and the result is still exact.
    codes, _ = identical_plus_random(2500, 1500, seed=9)
    start = time.perf_counter()
    lsh = find_candidate_pairs(codes, config=SearchConfig(band_bits=band_bits))
    assert time.perf_counter() - start < 20
    exhaustive = find_candidate_pairs_exhaustive(codes)
    for name in ("i", "j", "variant", "distance"):
        np.testing.assert_array_equal(getattr(lsh, name), getattr(exhaustive, name))


def test_oversized_buckets_are_searched_exhaustively() -> None:
    # A tight cluster (blank-ish frames: few bits set) overflows a tiny max_bucket in every
    # band; the set-aside images are then compared all-pairs, so nothing in it is lost.
    codes, variants, cluster = tight_cluster()
    config = SearchConfig(max_bucket=20)
    lsh = find_candidate_pairs(codes, variants, None, config)
    exhaustive = find_candidate_pairs_exhaustive(codes, variants, 10)
    assert_well_formed(lsh)
    in_cluster = np.isin(exhaustive.i, cluster) & np.isin(exhaustive.j, cluster)
    assert in_cluster.sum() == 300 * 299 // 2  # at most 6 bits apart
    lsh_pairs = as_dict(lsh)
    for key, value in as_dict(exhaustive).items():
        if key[0] in cluster and key[1] in cluster:
            assert lsh_pairs[key] == value
    assert_consistent_with_exhaustive(lsh, exhaustive)


def test_set_aside_images_above_the_limit_are_counted_not_searched() -> None:
    # The same cluster, with the exhaustive pass bounded: below the limit it runs as
    # before; above, the images are counted and the pairs only they hold are missing.
    codes, variants, cluster = tight_cluster()
    n = len(codes)
    complete = find_candidate_pairs(codes, variants, None, SearchConfig(max_bucket=20))
    assert complete.unsearched == 0
    roomy = find_candidate_pairs(codes, variants, None,
                                 SearchConfig(max_bucket=20, max_set_aside=n))
    assert roomy.unsearched == 0
    assert as_dict(roomy) == as_dict(complete)
    bounded = find_candidate_pairs(codes, variants, None,
                                   SearchConfig(max_bucket=20, max_set_aside=100))
    assert_well_formed(bounded)
    assert 300 <= bounded.unsearched <= n  # the whole cluster, at least
    assert len(bounded) < len(complete)
    assert set(as_dict(bounded)) <= set(as_dict(complete))


# --------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_distance", -1),
        ("max_distance", 65),
        ("band_bits", 0),
        ("band_bits", 33),
        ("band_bits", True),
        ("n_bands", 0),
        ("probe_bits", -1),
        ("probe_bits", 17),
        ("max_bucket", 0),
        ("max_set_aside", -1),
        ("max_distance", 2.5),
    ],
)
def test_config_validation(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"{field}: expected .*, got {value!r}"):
        SearchConfig(**{field: value})


def test_for_size_scales_band_width() -> None:
    assert SearchConfig.for_size(10_000).band_bits == 16
    assert SearchConfig.for_size(1_000_000).band_bits == 20
    assert SearchConfig.for_size(10**10).band_bits == 24
    assert SearchConfig.for_size(100, max_distance=4).max_distance == 4
    with pytest.raises(ValueError, match="n_images: expected"):
        SearchConfig.for_size(-1)


def test_input_validation() -> None:
    codes = np.arange(10, dtype=np.uint64)
    variants = np.tile(codes[:, None], (1, 8))
    with pytest.raises(ValueError, match="codes: expected shape"):
        find_candidate_pairs(variants)
    with pytest.raises(ValueError, match="column 0"):
        find_candidate_pairs(codes, variants + np.uint64(1))
    with pytest.raises(ValueError, match="variants: expected shape"):
        find_candidate_pairs(codes, variants[:5])
    with pytest.raises(ValueError, match="columns"):
        find_candidate_pairs(codes, np.tile(codes[:, None], (1, 9)))
    with pytest.raises(ValueError, match="weak_bits: expected shape"):
        find_candidate_pairs(codes, variants, np.zeros((10, 4), np.uint64))
    with pytest.raises(ValueError, match="expected an integer"):
        find_candidate_pairs(codes.astype(float))
    with pytest.raises(ValueError, match="max_distance: expected"):
        find_candidate_pairs_exhaustive(codes, None, 100)
    with pytest.raises(TypeError, match="SearchConfig"):
        find_candidate_pairs(codes, config={"max_distance": 3})


def _all_pairs_by_loops(codes: np.ndarray, variants: np.ndarray, radius: int) -> set:
    """The exhaustive search's definition, one image pair at a time."""
    found = set()
    for a in range(len(codes)):
        near = hamming(codes[a], variants) <= radius  # (n, V)
        for b in np.flatnonzero(near.any(axis=1)):
            if a != b:
                found.add((min(a, int(b)), max(a, int(b))))
    return found


@pytest.mark.parametrize("n_variants", [1, 3, 8], ids=["identity", "three", "eight"])
@pytest.mark.parametrize("tile", [1 << 16, 24], ids=["default_tile", "tiny_tile"])
def test_exhaustive_tiles_find_the_pairs_of_the_definition(n_variants, tile, monkeypatch):
    data = planted(n=300, per_distance=4, n_variants=n_variants, seed=5)
    monkeypatch.setattr(cand, "_EXHAUSTIVE_TILE", tile)
    result = find_candidate_pairs_exhaustive(data.codes, data.variants, 10)
    assert set(zip(result.i.tolist(), result.j.tolist(), strict=True)) == _all_pairs_by_loops(
        data.codes, data.variants, 10)
