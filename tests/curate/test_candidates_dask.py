"""The group-by-band LSH on a Dask cluster gives the local search's pairs, exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pcbforge.curate.candidates import CandidatePairs, SearchConfig, find_candidate_pairs
from pcbforge.curate.candidates_dask import find_candidate_pairs_dask, range_bits
from tests.curate.test_candidates import identical_plus_random, planted, random_masks


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
    assert list(tmp_path.iterdir()) == []  # the staged hashes are removed


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
    rng = np.random.default_rng(8)
    variants = rng.integers(0, 2**64, size=(1500, 8), dtype=np.uint64)
    cluster = rng.choice(1500, 300, replace=False)
    variants[cluster, 0] = random_masks(rng, (300,), 3)
    codes = variants[:, 0].copy()
    config = SearchConfig(max_bucket=20)
    assert_same_pairs(
        find_candidate_pairs_dask(dask_engine.client, codes, variants, None, config,
                                  workdir=tmp_path, images_per_partition=256),
        find_candidate_pairs(codes, variants, None, config))


@pytest.mark.parametrize("n", [0, 1])
def test_empty_and_single(dask_engine, tmp_path, n) -> None:
    codes = np.arange(n, dtype=np.uint64)
    assert len(find_candidate_pairs_dask(dask_engine.client, codes, workdir=tmp_path)) == 0


def test_key_ranges_grow_with_the_corpus_not_the_partitions() -> None:
    # About images_per_partition codes per shuffled partition, whatever the corpus size.
    assert range_bits(1000, 16, 16384) == 0
    assert range_bits(100_000, 17, 16384) == 3
    assert range_bits(10_000_000, 24, 16384) == 10
    assert range_bits(10_000_000, 8, 16384) == 8  # never more than the band's bits


def test_joining_in_small_blocks_finds_the_same_pairs(hashes, tmp_path, monkeypatch) -> None:
    # The join expands a partition's comparisons in blocks of _EXPAND_BLOCK (what bounds a
    # worker's memory on crowded partitions); the blocks must not change what is found.
    import pcbforge.curate.candidates_dask as cd
    from pcbforge.curate.candidates import _band_positions

    config = SearchConfig(max_distance=12)
    np.save(tmp_path / "variants.npy", hashes.variants)
    np.save(tmp_path / "weak.npy", hashes.weak)
    bands = _band_positions(config).tolist()
    rows = cd.band_rows((tuple(range(len(bands))), 0, len(hashes.codes)), str(tmp_path),
                        bands, config.probe_bits, 0)
    part = rows[rows["dest"] == 0].set_index("dest")
    kwargs = dict(n_images=len(hashes.codes), radius=config.max_distance,
                  max_bucket=config.max_bucket, probe_bits=config.probe_bits,
                  band_bits=config.band_bits, range_bits=0)
    whole = cd.join_buckets(part, **kwargs)
    monkeypatch.setattr(cd, "_EXPAND_BLOCK", 97)
    blocked = cd.join_buckets(part, **kwargs)
    assert (whole["kind"] == 0).sum() > 100  # pairs found in this band: not vacuous
    pd.testing.assert_frame_equal(blocked, whole)
