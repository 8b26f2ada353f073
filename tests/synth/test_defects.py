"""Tests for the defect generators: sample (random, JSON-ready), then draw (deterministic)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pcbforge.synth.analysis import BoardAnalysis, analyze_board
from pcbforge.synth.boards import draw_board
from pcbforge.synth.defects import (
    GENERATORS,
    defect_region,
    draw_strokes,
    stroke_bounds,
)
from pcbforge.synth.topology import ADDS_COPPER, DefectClass

BOARD_SEEDS = (0, 1, 2)
SAMPLE_SEEDS = (0, 1, 2, 3)
CLASSES = list(GENERATORS)
CLASS_IDS = [c.value for c in CLASSES]


@pytest.fixture(scope="module")
def analyses() -> dict[int, BoardAnalysis]:
    return {k: analyze_board(draw_board(np.random.default_rng(k), 640)) for k in BOARD_SEEDS}


def _sample(a: BoardAnalysis, name: DefectClass, seed: int) -> dict | None:
    return GENERATORS[name](a, np.random.default_rng(seed))


def test_one_generator_per_class() -> None:
    assert set(GENERATORS) == set(DefectClass)
    assert all(isinstance(key, DefectClass) for key in GENERATORS)


@pytest.mark.parametrize("name", CLASSES, ids=CLASS_IDS)
def test_every_class_samples_json_ready_params(analyses, name) -> None:
    for board_seed, a in analyses.items():
        for seed in SAMPLE_SEEDS:
            params = _sample(a, name, seed)
            assert params is not None, (name, board_seed, seed)
            # Plain JSON types only: a round trip gives back the same dict.
            assert json.loads(json.dumps(params)) == params
            assert params["strokes"], params
            for stroke in params["strokes"]:
                assert len(stroke["points"]) == len(stroke["radii"]) >= 1
                assert all(r > 0 for r in stroke["radii"])
            h, w = a.shape
            x0, y0, x1, y1 = stroke_bounds(params)
            assert x1 > 0 and y1 > 0 and x0 < w and y0 < h, (name, params)


@pytest.mark.parametrize("name", CLASSES, ids=CLASS_IDS)
def test_same_seed_same_params(analyses, name) -> None:
    a = analyses[BOARD_SEEDS[0]]
    for seed in SAMPLE_SEEDS:
        assert _sample(a, name, seed) == _sample(a, name, seed)
    distinct = {json.dumps(_sample(a, name, seed), sort_keys=True) for seed in SAMPLE_SEEDS}
    assert len(distinct) == len(SAMPLE_SEEDS)


@pytest.mark.parametrize("name", CLASSES, ids=CLASS_IDS)
def test_drawing_is_deterministic(analyses, name) -> None:
    a = analyses[BOARD_SEEDS[1]]
    params = _sample(a, name, 5)
    assert params is not None
    x0, y0, x1, y1 = stroke_bounds(params)
    size = (y1 - y0, x1 - x0)
    first = draw_strokes(params, (x0, y0), size)
    again = draw_strokes(json.loads(json.dumps(params)), (x0, y0), size)
    assert first.dtype == np.uint8 and first.shape == size
    assert set(np.unique(first).tolist()) == {0, 1}
    np.testing.assert_array_equal(first, again)
    region, origin = defect_region(a, name, params)
    region2, origin2 = defect_region(a, name, params)
    assert origin == origin2
    np.testing.assert_array_equal(region, region2)


def test_drawing_does_not_consume_randomness(analyses) -> None:
    a = analyses[BOARD_SEEDS[0]]
    params = _sample(a, DefectClass.spur, 0)
    state = np.random.get_state()[1].copy()
    draw_strokes(params, (0, 0), a.shape)
    np.testing.assert_array_equal(np.random.get_state()[1], state)


def test_window_origin_only_moves_the_drawing(analyses) -> None:
    a = analyses[BOARD_SEEDS[0]]
    params = _sample(a, DefectClass.copper, 1)
    x0, y0, x1, y1 = stroke_bounds(params)
    tight = draw_strokes(params, (x0, y0), (y1 - y0, x1 - x0))
    wide = draw_strokes(params, (x0 - 7, y0 - 3), (y1 - y0 + 10, x1 - x0 + 20))
    np.testing.assert_array_equal(wide[3:3 + tight.shape[0], 7:7 + tight.shape[1]], tight)
    assert wide.sum() == tight.sum()


@pytest.mark.parametrize("name", CLASSES, ids=CLASS_IDS)
def test_adds_change_substrate_and_removes_change_copper_only(analyses, name) -> None:
    for board_seed, a in analyses.items():
        for seed in SAMPLE_SEEDS:
            params = _sample(a, name, seed)
            drawn = defect_region(a, name, params)
            assert drawn is not None, (name, board_seed, seed)
            region, (x, y) = drawn
            h, w = region.shape
            assert region.any()
            assert 0 <= x and 0 <= y and x + w <= a.shape[1] and y + h <= a.shape[0]
            under = a.copper[y:y + h, x:x + w][region > 0]
            if name in ADDS_COPPER:
                assert not under.any(), (name, board_seed, seed)
            else:
                assert under.all(), (name, board_seed, seed)
            # The region is the brush, cut to the side it changes.
            brush = draw_strokes(params, (x, y), (h, w))
            assert not (region & (1 - brush)).any()


def test_no_spot_gives_none() -> None:
    """A board of bare substrate has no conductor for any generator but copper's."""
    a = analyze_board(np.full((128, 128), 255, np.uint8))
    for name, sample in GENERATORS.items():
        params = sample(a, np.random.default_rng(0))
        if name is DefectClass.copper:
            assert params is not None
        else:
            assert params is None, name
