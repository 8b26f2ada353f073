"""The group-by-band LSH on a Dask cluster (rows exchanged through files) gives the local
search's pairs, exactly."""

from __future__ import annotations

import numpy as np
import pytest

from pcbforge.curate.candidates import CandidatePairs, SearchConfig, find_candidate_pairs
from pcbforge.curate.candidates_dask import find_candidate_pairs_dask, range_bits
from tests.curate.test_candidates import identical_plus_random, planted, tight_cluster


def assert_same_pairs(got: CandidatePairs, expected: CandidatePairs) -> None:
    for name in ("i", "j", "variant", "distance"):
        np.testing.assert_array_equal(getattr(got, name), getattr(expected, name), name)


@pytest.fixture(scope="module")
def hashes():
    return planted(n=4000, per_distance=30, max_distance=12, seed=3)


@pytest.mark.parametrize(
    "config",
    [SearchConfig(max_distance=12),  # the default bands, 3-bit multi-probe
     SearchConfig.for_size(4000, max_distance=12, n_bands=18),
     SearchConfig(max_distance=10, probe_bits=0),  # no multi-probe
     SearchConfig(max_distance=10, band_bits=28, n_bands=6),  # sparse buckets
     SearchConfig(max_distance=12, band_bits=8, max_bucket=40)],  # buckets set aside
    ids=["default", "for_size", "no_probes", "wide_bands", "dropped_buckets"],
)
def test_equals_the_local_search(dask_engine, hashes, tmp_path, config) -> None:
    expected = find_candidate_pairs(hashes.codes, hashes.variants, hashes.weak, config)
    got = find_candidate_pairs_dask(dask_engine.client, hashes.codes, hashes.variants,
                                    hashes.weak, config, workdir=tmp_path,
                                    images_per_partition=2048)
    assert len(expected) > 200  # planted pairs found: the comparison is not vacuous
    assert_same_pairs(got, expected)
    assert list(tmp_path.iterdir()) == []  # the staged hashes and piece files are removed


def test_identity_only_and_a_dense_cluster(dask_engine, tmp_path) -> None:
    # 1,200 identical codes: their buckets are dropped in every band (size x queries over a
    # million comparisons) and searched exhaustively, as the local search does.
    codes, same = identical_plus_random(1200, 1800, seed=4)
    expected = find_candidate_pairs(codes)
    got = find_candidate_pairs_dask(dask_engine.client, codes, workdir=tmp_path,
                                    images_per_partition=512)
    assert len(expected) >= 1200 * 1199 // 2
    assert_same_pairs(got, expected)


def test_a_tight_cluster_over_max_bucket(dask_engine, tmp_path) -> None:
    codes, variants, _ = tight_cluster()
    config = SearchConfig(max_bucket=20)
    assert_same_pairs(
        find_candidate_pairs_dask(dask_engine.client, codes, variants, None, config,
                                  workdir=tmp_path, images_per_partition=256),
        find_candidate_pairs(codes, variants, None, config))


def test_the_set_aside_limit_gives_the_local_result(dask_engine, tmp_path) -> None:
    codes, variants, _ = tight_cluster()
    config = SearchConfig(max_bucket=20, max_set_aside=100)
    got = find_candidate_pairs_dask(dask_engine.client, codes, variants, None, config,
                                    workdir=tmp_path, images_per_partition=256)
    expected = find_candidate_pairs(codes, variants, None, config)
    assert_same_pairs(got, expected)
    assert got.unsearched == expected.unsearched >= 300


@pytest.mark.parametrize("n", [0, 1])
def test_empty_and_single(dask_engine, tmp_path, n) -> None:
    codes = np.arange(n, dtype=np.uint64)
    assert len(find_candidate_pairs_dask(dask_engine.client, codes, workdir=tmp_path)) == 0


def test_key_ranges_grow_with_the_corpus_not_the_partitions() -> None:
    # About images_per_partition codes per destination, whatever the corpus size.
    assert range_bits(1000, 16, 16384) == 0
    assert range_bits(100_000, 17, 16384) == 3
    assert range_bits(10_000_000, 24, 16384) == 10
    assert range_bits(10_000_000, 8, 16384) == 8  # never more than the band's bits


def test_joining_in_small_blocks_finds_the_same_pairs(hashes, tmp_path, monkeypatch) -> None:
    # The join expands a destination's probe keys _QUERY_BLOCK query rows at a time and its
    # comparisons in blocks of _EXPAND_BLOCK (what bounds a worker's memory on crowded
    # destinations); the blocks must not change what is found.
    import pcbforge.curate.candidates_dask as cd
    from pcbforge.curate.candidates import _band_positions

    config = SearchConfig(max_distance=12)
    np.save(tmp_path / "variants.npy", hashes.variants)
    np.save(tmp_path / "weak.npy", hashes.weak)
    bands = _band_positions(config).tolist()
    name, _ = cd.band_rows(((0,), 0, len(hashes.codes)), str(tmp_path), bands,
                           config.probe_bits, 0)
    rows = cd.read_piece(str(tmp_path / name), 0)
    kwargs = dict(n_images=len(hashes.codes), radius=config.max_distance,
                  max_bucket=config.max_bucket, probe_bits=config.probe_bits,
                  band_bits=config.band_bits, range_bits=0)
    whole = cd.join_buckets(rows, 0, **kwargs)
    assert len(rows) > 3 * 1000
    monkeypatch.setattr(cd, "_EXPAND_BLOCK", 97)
    monkeypatch.setattr(cd, "_QUERY_BLOCK", 1000)
    blocked = cd.join_buckets(rows, 0, **kwargs)
    assert len(whole[0]) > 100  # pairs found in this band: not vacuous
    for got, expected in zip(blocked, whole, strict=True):
        np.testing.assert_array_equal(got, expected)
    # The order of a destination's rows does not matter (the join sorts).
    shuffled = cd.join_buckets(rows[np.random.default_rng(0).permutation(len(rows))], 0,
                               **kwargs)
    for got, expected in zip(shuffled, whole, strict=True):
        np.testing.assert_array_equal(got, expected)


def test_piece_files_hold_each_destination_whole(hashes, tmp_path) -> None:
    # A piece's file: its rows sorted by destination, each destination read back alone;
    # the slices of all pieces of a band group together are all rows of those bands.
    import pcbforge.curate.candidates_dask as cd
    from pcbforge.curate.candidates import _band_positions

    config = SearchConfig(max_distance=12)
    np.save(tmp_path / "variants.npy", hashes.variants)
    np.save(tmp_path / "weak.npy", hashes.weak)
    bands = _band_positions(config).tolist()
    r = 2
    n = len(hashes.codes)
    names = [cd.band_rows(((2, 3), start, min(start + 1500, n)), str(tmp_path), bands,
                          config.probe_bits, r) for start in range(0, n, 1500)]
    assert [f.name for f in tmp_path.iterdir() if f.suffix == ".tmp"] == []
    index_rows = 0
    for slot in range(2 << r):
        dest = (2 << r) + slot
        shift = config.band_bits - r
        got = np.concatenate([cd.read_piece(str(tmp_path / name), slot) for name, _ in names])
        band_dest, band_rows = cd._band_rows(dest >> r, 0, n, str(tmp_path), bands,
                                             config.probe_bits, r)
        expected = band_rows[band_dest == dest]
        np.testing.assert_array_equal(np.sort(got), np.sort(expected))
        index = got[got["kind"] == 0]
        assert ((index["key"] >> shift) == slot % (1 << r)).all()
        index_rows += len(index)
    assert index_rows == 2 * n  # every code once in each of the two bands
    assert sum(count for _, count in names) == sum(
        len(cd.read_piece(str(tmp_path / name), slot)) for name, _ in names
        for slot in range(2 << r))
    with pytest.raises(ValueError, match="not among"):
        cd.read_piece(str(tmp_path / names[0][0]), 2 << r)


def test_many_pieces_and_destinations_leave_no_files(dask_engine, hashes, tmp_path,
                                                     monkeypatch) -> None:
    # Small partitions: 4,000 images over 8 ranges per band (128 destinations) and 32
    # pieces (of 125 images) per group of 4 bands, each destination reading from 32 files.
    config = SearchConfig(max_distance=12)
    assert range_bits(len(hashes.codes), config.band_bits, 500) == 3
    calls = []
    map_ = dask_engine.client.map

    def counting_map(func, *iterables, **kwargs):
        futures = map_(func, *iterables, **kwargs)
        calls.append((func.__name__, len(futures)))
        return futures

    monkeypatch.setattr(dask_engine.client, "map", counting_map)
    got = find_candidate_pairs_dask(dask_engine.client, hashes.codes, hashes.variants,
                                    hashes.weak, config, workdir=tmp_path,
                                    images_per_partition=500)
    assert calls == [("band_rows", 4 * 32), ("join_destination", 16 << 3)]
    assert_same_pairs(got, find_candidate_pairs(hashes.codes, hashes.variants, hashes.weak,
                                                config))
    assert list(tmp_path.iterdir()) == []  # hashes and piece files removed


def test_files_are_removed_when_the_search_fails(dask_engine, hashes, tmp_path,
                                                 monkeypatch) -> None:
    # A join that fails (here: a piece file gone) fails the search, and the folder is
    # still cleaned up.
    import pcbforge.curate.candidates_dask as cd

    gather = dask_engine.client.gather
    state = {"calls": 0}

    def gather_then_lose_a_file(futures, *args, **kwargs):
        result = gather(futures, *args, **kwargs)
        state["calls"] += 1
        if state["calls"] == 1:  # the pieces are written: remove one before the joins
            (folder,) = tmp_path.iterdir()
            next(folder.glob(f"piece-*{cd._PIECE_SUFFIX}")).unlink()
        return result

    monkeypatch.setattr(dask_engine.client, "gather", gather_then_lose_a_file)
    with pytest.raises(FileNotFoundError):
        find_candidate_pairs_dask(dask_engine.client, hashes.codes, hashes.variants,
                                  hashes.weak, SearchConfig(max_distance=12),
                                  workdir=tmp_path, images_per_partition=1000)
    assert list(tmp_path.iterdir()) == []
