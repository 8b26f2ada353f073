"""Tests for procedural boards, photo-like images and the simple test defects."""

from __future__ import annotations

from itertools import pairwise

import cv2
import numpy as np
import pytest

from pcbforge.synth.boards import (
    COPPER_FRACTION_RANGE,
    DEFECT_KINDS,
    add_local_defect,
    draw_board,
    render_photo_like,
)

SEEDS = range(8)


@pytest.fixture(scope="module")
def boards() -> dict[int, np.ndarray]:
    return {s: draw_board(np.random.default_rng(s)) for s in SEEDS}


def test_board_is_binary_uint8_square(boards: dict[int, np.ndarray]) -> None:
    for board in boards.values():
        assert board.shape == (640, 640)
        assert board.dtype == np.uint8
        assert set(np.unique(board).tolist()) == {0, 255}


def test_copper_fraction_in_range(boards: dict[int, np.ndarray]) -> None:
    lo, hi = COPPER_FRACTION_RANGE
    for seed, board in boards.items():
        frac = float(np.mean(board == 0))
        assert lo <= frac <= hi, (seed, frac)


def test_board_deterministic_per_seed(boards: dict[int, np.ndarray]) -> None:
    again = draw_board(np.random.default_rng(3))
    assert np.array_equal(again, boards[3])


def test_different_seeds_differ_visibly(boards: dict[int, np.ndarray]) -> None:
    for a, b in pairwise(SEEDS):
        assert np.mean(boards[a] != boards[b]) > 0.15


def test_other_size() -> None:
    board = draw_board(np.random.default_rng(0), size=320)
    assert board.shape == (320, 320)
    assert set(np.unique(board).tolist()) <= {0, 255}


def test_photo_like_shape_and_distinct() -> None:
    a = render_photo_like(np.random.default_rng(0), 360, 480)
    b = render_photo_like(np.random.default_rng(1), 360, 480)
    assert a.shape == (360, 480, 3) and a.dtype == np.uint8
    assert np.array_equal(a, render_photo_like(np.random.default_rng(0), 360, 480))
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 20
    assert a.std() > 10  # not flat


@pytest.mark.parametrize("kind", DEFECT_KINDS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_local_defect(boards: dict[int, np.ndarray], kind: str, seed: int) -> None:
    board = boards[seed]
    before = board.copy()
    out, (x1, y1, x2, y2) = add_local_defect(board, np.random.default_rng(seed), kind)
    assert np.array_equal(board, before), "input must not be modified"
    assert out.shape == board.shape and out.dtype == np.uint8
    changed = out != board
    assert changed.sum() >= 40
    assert changed[y1:y2, x1:x2].sum() == changed.sum()
    # The box is tight: every edge row/column of it holds a change.
    assert changed[y1, x1:x2].any() and changed[y2 - 1, x1:x2].any()
    assert changed[y1:y2, x1].any() and changed[y1:y2, x2 - 1].any()
    assert 4 <= x2 - x1 <= 40 and 4 <= y2 - y1 <= 40
    copper_before = board[changed] == 0
    if kind in ("spur", "short"):
        assert not copper_before.any(), "spur/short only add copper"
    else:
        assert copper_before.all(), "pinhole/open only remove copper"
    if kind == "pinhole":
        # Strictly inside copper: the new hole is an island, not joined to the old substrate.
        _, labels = cv2.connectedComponents((out == 255).astype(np.uint8), connectivity=8)
        hole_ids = set(np.unique(labels[changed]).tolist())
        assert not hole_ids & set(np.unique(labels[board == 255]).tolist())


def test_local_defect_deterministic(boards: dict[int, np.ndarray]) -> None:
    a = add_local_defect(boards[0], np.random.default_rng(5), "short")
    b = add_local_defect(boards[0], np.random.default_rng(5), "short")
    assert np.array_equal(a[0], b[0]) and a[1] == b[1]


def test_unknown_defect_kind(boards: dict[int, np.ndarray]) -> None:
    with pytest.raises(ValueError, match="spur.*pinhole.*short.*open"):
        add_local_defect(boards[0], np.random.default_rng(0), "mousebite")


def test_defect_needs_copper() -> None:
    blank = np.full((64, 64), 255, np.uint8)
    with pytest.raises(ValueError, match="no place"):
        add_local_defect(blank, np.random.default_rng(0), "pinhole")
