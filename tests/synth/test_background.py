"""Tests for background nuisance: sampled into a dict, applied deterministically, every
region inside its box, apart from the defects, topology kept."""

from __future__ import annotations

import json

import numpy as np
import pydantic
import pytest

from pcbforge.synth.analysis import analyze_board
from pcbforge.synth.background import (
    AVOID_GAP_PX,
    KINDS,
    BackgroundParams,
    apply_background,
    background_changes,
    sample_background,
)
from pcbforge.synth.boards import draw_board
from pcbforge.synth.nuisance import thick_difference
from pcbforge.synth.topology import describe_change


@pytest.fixture(scope="module")
def analyses():
    return [analyze_board(draw_board(np.random.default_rng(k), 480)) for k in range(4)]


def _sampled(a, seed: int, params: BackgroundParams | None = None, avoid=()):
    return sample_background(np.random.default_rng(seed), params or BackgroundParams(), a,
                             list(avoid))


def test_sample_is_json_and_apply_is_deterministic(analyses) -> None:
    a = analyses[0]
    first = _sampled(a, 1)
    assert json.loads(json.dumps(first)) == first
    assert first == _sampled(a, 1)
    out = apply_background(a.image, first, a)
    np.testing.assert_array_equal(out, apply_background(a.image, first, a))
    assert out is not a.image and a.image.flags.writeable is not None


def test_every_change_lies_inside_its_region_box(analyses) -> None:
    regions = 0
    for seed in range(12):
        a = analyses[seed % len(analyses)]
        sampled = _sampled(a, 100 + seed)
        out = apply_background(a.image, sampled, a)
        covered = np.zeros(a.shape, bool)
        for region in sampled["regions"]:
            x1, y1, x2, y2 = region["box"]
            covered[y1:y2, x1:x2] = True
            regions += 1
        assert not ((out != a.image) & ~covered).any(), seed
        ids = background_changes(sampled, a)
        assert ((ids > 0) == (out != a.image)).all()
        for k, region in enumerate(sampled["regions"], 1):
            assert int((ids == k).sum()) == region["area"]
    assert regions >= 20


def test_regions_are_thick_enough_to_survive_an_opening(analyses) -> None:
    thick = 0
    total = 0
    for seed in range(12):
        a = analyses[seed % len(analyses)]
        sampled = _sampled(a, 200 + seed)
        opened = thick_difference(apply_background(a.image, sampled, a), a.image)
        for region in sampled["regions"]:
            x1, y1, x2, y2 = region["box"]
            thick += bool(opened[y1:y2, x1:x2].any())
            total += 1
    assert total and thick / total > 0.4  # shifts of 1-2 px and small specks stay thin


def test_regions_keep_topology_in_their_box(analyses) -> None:
    for seed in range(12):
        a = analyses[seed % len(analyses)]
        sampled = _sampled(a, 300 + seed)
        after = a.copper.copy()
        ids = background_changes(sampled, a)
        after[ids > 0] = 1 - after[ids > 0]
        for region in sampled["regions"]:
            x1, y1, x2, y2 = region["box"]
            facts = describe_change(a.copper[y1:y2, x1:x2], after[y1:y2, x1:x2])
            assert not (facts["merges"] or facts["splits"] or facts["island"]
                        or facts["hole"]), (seed, region, facts)


def test_regions_keep_apart_from_the_boxes_to_avoid_and_each_other(analyses) -> None:
    a = analyses[1]
    avoid = [(100, 100, 200, 200), (300, 40, 380, 120)]
    for seed in range(8):
        sampled = _sampled(a, 400 + seed, avoid=avoid)
        boxes = [tuple(r["box"]) for r in sampled["regions"]]
        for i, box in enumerate(boxes):
            for other in avoid + boxes[i + 1:]:
                apart = (box[2] + AVOID_GAP_PX <= other[0] or other[2] + AVOID_GAP_PX <= box[0]
                         or box[3] + AVOID_GAP_PX <= other[1]
                         or other[3] + AVOID_GAP_PX <= box[1])
                assert apart, (seed, box, other)


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_can_be_drawn_alone(analyses, kind) -> None:
    params = BackgroundParams(zero_share=0.0, kind_weights={kind: 1.0})
    regions = [r for seed in range(6) for r in _sampled(analyses[2], seed, params)["regions"]]
    assert regions and {r["kind"] for r in regions} == {kind}


def test_grey_images_keep_their_texture_when_a_feature_moves(analyses) -> None:
    a = analyses[3]
    params = BackgroundParams(zero_share=0.0, kind_weights={"misregistration": 1.0})
    sampled = _sampled(a, 7, params)
    grey = np.where(a.copper > 0, 60, 200).astype(np.uint8)
    grey = grey + np.random.default_rng(0).integers(0, 20, grey.shape).astype(np.uint8)
    out = apply_background(grey, sampled, a)
    changed = out != grey
    assert changed.any()
    # Moved pixels come from the image itself: values present in the input's texture.
    assert set(np.unique(out[changed])) <= set(np.unique(grey))


def test_disabled_or_empty_changes_nothing(analyses) -> None:
    a = analyses[0]
    off = sample_background(np.random.default_rng(0), BackgroundParams(enabled=False), a)
    assert off == {"enabled": False}
    np.testing.assert_array_equal(apply_background(a.image, off, a), a.image)
    none = _sampled(a, 0, BackgroundParams(zero_share=1.0))
    assert none["regions"] == [] and none["requested"] == 0


@pytest.mark.parametrize("bad", [{"kind_weights": {"smudge": 1.0}},
                                 {"shift_px": (1, 2), "shift_weights": (1.0,)},
                                 {"zero_share": 1.5}, {"edge_depth_px": (3, 2)}],
                         ids=["unknown_kind", "weights_length", "share", "depth_range"])
def test_bad_params_are_refused(bad) -> None:
    with pytest.raises(pydantic.ValidationError):
        BackgroundParams(**bad)


def test_sample_and_render_equals_sample_then_render(analyses) -> None:
    from pcbforge.synth.background import render_background, sample_and_render_background

    for seed in range(4):
        a = analyses[seed]
        sampled, image, ids = sample_and_render_background(
            np.random.default_rng(seed), BackgroundParams(), a, [(50, 50, 120, 120)], a.image)
        assert sampled == _sampled(a, seed, avoid=[(50, 50, 120, 120)])
        again, again_ids = render_background(a.image, sampled, a)
        np.testing.assert_array_equal(image, again)
        if sampled["regions"]:
            np.testing.assert_array_equal(ids, again_ids)
            np.testing.assert_array_equal(ids, background_changes(sampled, a))
        else:
            assert ids is None and again_ids is None
