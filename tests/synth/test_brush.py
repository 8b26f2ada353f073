"""Brush styles: bounds, topology of bridges and cuts, determinism, sampling."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from pcbforge.synth.brush import (
    DEFAULT_PROBABILITIES,
    MIN_AREA,
    BrushStyle,
    image_probabilities,
    plus_kernel,
    reach,
    restyle,
    sample_style,
)

STAMPED_SMALL = {"name": "stamped", "arm": 1, "thick": 1, "spacing": 2.0, "pitch": 2.2,
                 "wobble": 0.8, "jitter": 0.0, "trail": True, "reach": 1, "seed": 5}
STAMPED_BIG = {**STAMPED_SMALL, "arm": 2, "thick": 3, "spacing": 4.0, "pitch": 4.6,
               "wobble": 0.4}


def _regions() -> list[np.ndarray]:
    out = []
    r = np.zeros((40, 40), np.uint8)
    cv2.ellipse(r, (20, 20), (13, 7), 25, 0, 360, 1, -1)
    out.append(r)
    r = np.zeros((40, 40), np.uint8)
    cv2.line(r, (5, 30), (34, 9), 1, 6)
    out.append(r)
    r = np.zeros((30, 30), np.uint8)
    cv2.circle(r, (15, 15), 4, 1, -1)
    out.append(r)
    r = np.zeros((30, 30), np.uint8)
    cv2.ellipse(r, (15, 0), (9, 7), 0, 0, 180, 1, -1)  # a bite cut by the crop's edge
    out.append(r)
    return out


def _pockets(mask: np.ndarray) -> int:
    framed = np.pad(1 - mask, 1, constant_values=1)
    n, labels = cv2.connectedComponents(framed, connectivity=4)
    return n - 2  # the background outside is one component


def _all_styles(rng: np.random.Generator, n: int) -> list[dict]:
    styles = []
    for name in ("stamped", "outline", "fringe"):
        for _ in range(n):
            styles.append(sample_style(rng, "spur", 1.0, {"spur": {name: 1.0}}))
    return styles


def test_solid_returns_the_region() -> None:
    for region in _regions():
        out = restyle(region, {"name": "solid"})
        assert out.dtype == np.uint8
        assert out.tobytes() == region.tobytes()


def test_output_stays_within_reach_of_the_region() -> None:
    rng = np.random.default_rng(0)
    for style in _all_styles(rng, 8):
        r = reach(style)
        assert r >= 1
        for region in _regions():
            out = restyle(region, style)
            grown = cv2.dilate(region, np.ones((2 * r + 1, 2 * r + 1), np.uint8))
            assert out.shape == region.shape and out.dtype == np.uint8
            assert set(np.unique(out)) <= {0, 1}
            assert not (out & (1 - grown)).any(), style


def test_stamped_and_outline_stay_within_one_pixel() -> None:
    rng = np.random.default_rng(1)
    for name in ("stamped", "outline"):
        for _ in range(10):
            style = sample_style(rng, "copper", 1.0, {"copper": {name: 1.0}})
            assert reach(style) == 1
            for region in _regions():
                grown = cv2.dilate(region, np.ones((3, 3), np.uint8))
                assert not (restyle(region, style) & (1 - grown)).any()


def test_never_empty_and_tiny_regions_stay_solid() -> None:
    rng = np.random.default_rng(2)
    tiny = np.zeros((10, 10), np.uint8)
    tiny[4:6, 3:8] = 1  # 10 px
    assert tiny.sum() < MIN_AREA
    small = np.zeros((10, 10), np.uint8)
    small[3:6, 3:7] = 1  # 12 px
    for style in _all_styles(rng, 6):
        assert restyle(tiny, style).tobytes() == tiny.tobytes()
        assert restyle(small, style).any()
        for region in _regions():
            assert restyle(region, style).any()
    assert not restyle(np.zeros((8, 8), np.uint8), STAMPED_SMALL).any()


def test_same_style_same_bytes_other_seed_other_bytes() -> None:
    region = _regions()[0]
    a = restyle(region, STAMPED_SMALL)
    b = restyle(region.copy(), dict(STAMPED_SMALL))
    assert a.tobytes() == b.tobytes()
    c = restyle(region, {**STAMPED_SMALL, "seed": 6})
    assert a.tobytes() != c.tobytes()


def test_stamped_leaves_a_lattice_of_small_holes() -> None:
    region = np.zeros((40, 40), np.uint8)
    cv2.rectangle(region, (8, 10), (31, 29), 1, -1)
    out = restyle(region, STAMPED_SMALL)
    assert _pockets(out) >= 3
    assert out.sum() < region.sum()
    assert _pockets(restyle(region, {"name": "solid"})) == 0


def test_outline_is_a_hollow_loop() -> None:
    region = np.zeros((40, 40), np.uint8)
    cv2.ellipse(region, (20, 20), (14, 9), 10, 0, 360, 1, -1)
    style = {**STAMPED_SMALL, "name": "outline"}
    out = restyle(region, style)
    assert _pockets(out) >= 1
    assert out[20, 20] == 0  # the middle is left open
    assert out.sum() < 0.6 * region.sum()


def _bridge(angle_deg: float, bend: float) -> tuple[np.ndarray, np.ndarray]:
    """Two conductors (top and bottom) and a bridge region between them."""
    cu = np.zeros((60, 60), np.uint8)
    cu[:12] = 1
    cu[48:] = 1
    t = np.linspace(0, 1, 20)
    dx = np.tan(np.radians(angle_deg)) * 40
    xs = 30 - dx / 2 + dx * t + bend * np.sin(np.pi * t)
    ys = 8 + 44 * t
    region = np.zeros_like(cu)
    pts = np.stack([xs, ys], axis=1).round().astype(np.int32)
    cv2.polylines(region, [pts.reshape(-1, 1, 2)], False, 1, 7)
    return cu, region & (1 - cu)


@pytest.mark.parametrize("angle", [-35.0, -10.0, 0.0, 20.0, 40.0])
@pytest.mark.parametrize("bend", [0.0, 5.0])
def test_stamped_bridge_still_joins_the_two_conductors(angle: float, bend: float) -> None:
    cu, region = _bridge(angle, bend)
    rng = np.random.default_rng(int(angle * 10 + bend) + 1000)
    for _ in range(12):
        style = sample_style(rng, "short", 1.0, {"short": {"stamped": 1.0}})
        after = cu | restyle(region, style)
        _, labels = cv2.connectedComponents(after, connectivity=4)
        assert labels[0, 0] == labels[-1, 0] != 0, style


@pytest.mark.parametrize("angle", [-30.0, 0.0, 15.0, 35.0])
def test_stamped_cut_still_cuts_the_trace(angle: float) -> None:
    trace = np.zeros((40, 60), np.uint8)
    trace[12:28] = 1
    cut = np.zeros_like(trace)
    c = np.array([30.0, 20.0])
    d = np.array([np.sin(np.radians(angle)), np.cos(np.radians(angle))]) * 16
    cv2.line(cut, tuple((c - d).round().astype(int)), tuple((c + d).round().astype(int)), 1, 6)
    region = cut & trace
    rng = np.random.default_rng(int(angle) + 100)
    for _ in range(12):
        style = sample_style(rng, "open", 1.0, {"open": {"stamped": 1.0}})
        after = trace & (1 - restyle(region, style))
        _, labels = cv2.connectedComponents(after, connectivity=8)
        assert labels[20, 0] != labels[20, -1], style


def test_restyle_is_translation_equivariant() -> None:
    region = _regions()[1]
    big = np.zeros((80, 90), np.uint8)
    big[17:57, 23:63] = region
    for style in (STAMPED_SMALL, STAMPED_BIG, {**STAMPED_SMALL, "name": "outline"}):
        small_out = restyle(region, style)
        big_out = restyle(big, style)
        assert big_out[17:57, 23:63].tobytes() == small_out.tobytes()


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown brush style"):
        restyle(_regions()[0], {"name": "crayon"})
    with pytest.raises(ValueError, match="2-D"):
        restyle(np.zeros((4, 4, 3), np.uint8), STAMPED_SMALL)
    with pytest.raises(ValueError, match="unknown brush style"):
        sample_style(np.random.default_rng(0), "open", 1.0, {"open": {"crayon": 1.0}})


def test_sample_style_is_json_ready_and_follows_probabilities() -> None:
    rng = np.random.default_rng(3)
    names = [sample_style(rng, "open", 1.0, {"open": {"stamped": 0.5}})["name"]
             for _ in range(2000)]
    share = names.count("stamped") / len(names)
    assert 0.45 < share < 0.55
    assert set(names) == {"solid", "stamped"}
    assert sample_style(rng, "open", 1.0, {"open": {}}) == {"name": "solid"}
    assert sample_style(rng, "toy", 1.0) == {"name": "solid"}  # not in the defaults
    style = sample_style(rng, "copper", 2.0, {"copper": {"outline": 1.0}})
    assert json.loads(json.dumps(style)) == style
    assert style["name"] == BrushStyle.OUTLINE.value and style["arm"] >= 2


def test_sample_style_same_seed_same_style() -> None:
    a = [sample_style(np.random.default_rng(7), c) for c in DEFAULT_PROBABILITIES]
    b = [sample_style(np.random.default_rng(7), c) for c in DEFAULT_PROBABILITIES]
    assert a == b


def test_image_probabilities_keep_the_mean_and_vary_per_image() -> None:
    rng = np.random.default_rng(4)
    draws = [image_probabilities(rng, heavy_share=0.0) for _ in range(4000)]
    for name, styles in DEFAULT_PROBABILITIES.items():
        for style, p in styles.items():
            values = np.array([d[name][style] for d in draws])
            assert abs(values.mean() - p) < 0.01 * max(1.0, 10 * p), (name, style)
    opens = np.array([d["open"]["stamped"] for d in draws])
    assert opens.std() > 0.05
    fixed = image_probabilities(rng, {"open": {"stamped": 0.3}}, spread=0.0, heavy_share=0.0)
    assert fixed == {"open": {"stamped": 0.3}}


def test_a_heavy_drawer_stamps_every_class() -> None:
    rng = np.random.default_rng(5)
    probs = {"short": {"stamped": 0.01}, "copper": {"outline": 0.02}, "toy": {}}
    heavy = image_probabilities(rng, probs, spread=0.0, heavy_share=1.0, heavy_floor=0.3)
    assert heavy == {"short": {"stamped": 0.3}, "copper": {"outline": 0.3},
                     "toy": {"stamped": 0.3}}
    shares = [image_probabilities(rng, probs, heavy_share=0.2)["short"]["stamped"]
              for _ in range(2000)]
    assert 0.15 < np.mean(np.array(shares) >= 0.25) < 0.25


def test_plus_kernel_shapes() -> None:
    assert plus_kernel(1, 1).tolist() == [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    k = plus_kernel(2, 3)
    assert k.shape == (5, 5) and k.sum() == 21 and k[0, 0] == 0 and k[2, 2] == 1


def test_brush_config_validates_and_defaults_to_the_measured_shares() -> None:
    from pydantic import ValidationError

    from pcbforge.synth.brush import BrushConfig

    config = BrushConfig()
    assert config.probabilities == DEFAULT_PROBABILITIES and config.enabled
    assert not BrushConfig(probabilities={}, heavy_share=0.0).enabled
    with pytest.raises(ValidationError, match="unknown brush style"):
        BrushConfig(probabilities={"open": {"crayon": 0.1}})
    with pytest.raises(ValidationError, match="at most 1"):
        BrushConfig(probabilities={"open": {"stamped": 0.7, "outline": 0.5}})
    with pytest.raises(ValidationError):
        BrushConfig(colour="red")
