"""Candidate pairs of the duplicate search (pcbforge.curate.dedupe): the occupancy-hash
neighbours it adds to the pHash ones."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pcbforge.curate.dedupe import (
    CONTENT_MIN_MINORITY,
    DedupeParams,
    DedupeStats,
    ImageHashes,
    _candidates,
)
from pcbforge.curate.hashing import dihedral

BIT = np.uint64(1) << np.arange(64, dtype=np.uint64)


def occupancy(blocks: set[int]) -> np.ndarray:
    """The 8 dihedral variants of the occupancy code with ``blocks`` (row * 8 + col) set."""
    grid = np.zeros((8, 8), dtype=np.uint8)
    for block in blocks:
        grid.flat[block] = 1
    return np.array([sum(int(BIT[k]) for k in np.flatnonzero(dihedral(grid, v).ravel()))
                     for v in range(8)], dtype=np.uint64)


def candidate_pairs(contents: list[set[int]]) -> set[tuple[int, int]]:
    """Candidate pairs among images whose pHashes never match (radius 0, random codes):
    those the occupancy codes bring."""
    n = len(contents)
    codes = np.random.default_rng(0).integers(0, 2**63, size=(n, 8), dtype=np.uint64)
    hashes = ImageHashes(codes=codes, weak=np.zeros_like(codes),
                         content=np.stack([occupancy(c) for c in contents]))
    table = pd.DataFrame({"thumb_index": np.arange(n)})
    pairs = _candidates(table, list(range(n)), hashes, DedupeParams(max_distance=0),
                        DedupeStats())
    return set(zip(pairs.i.tolist(), pairs.j.tolist(), strict=True))


def test_occupancy_neighbours_need_more_agreement_when_few_blocks_tell_them_apart() -> None:
    everything = set(range(64))
    dense = everything - {0, 9, 18, 27, 36, 45, 54, 63, 7, 14, 21, 28}  # 12 empty: few
    half = set(range(0, 64, 2))  # 32 set, 32 empty: many
    assert min(len(dense), 64 - len(dense)) < CONTENT_MIN_MINORITY <= 32
    contents = [
        dense, dense | {0, 9},  # 2 blocks apart: a defect's worth, kept
        dense | {18, 27, 36},  # 3 from the first: as far as look-alike dense tiles get
        half, half | {1, 3, 5},  # 3 blocks apart with 32 of each kind: kept
    ]
    pairs = candidate_pairs(contents)
    assert (0, 1) in pairs
    assert (0, 2) not in pairs
    assert (3, 4) in pairs
