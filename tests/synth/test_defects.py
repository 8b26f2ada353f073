"""Tests for the defect samplers: sample (random, JSON-ready), then draw (deterministic)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from pcbforge.synth import defects
from pcbforge.synth.analysis import BoardAnalysis, analyze_board
from pcbforge.synth.boards import draw_board
from pcbforge.synth.defects import draw_strokes, stroke_bounds
from pcbforge.synth.registry import DEFECTS, DefectClass
from pcbforge.synth.topology import check_topology

BOARD_SEEDS = (0, 1, 2)
SAMPLE_SEEDS = (0, 1, 2, 3)
CLASSES = list(DefectClass)
CLASS_IDS = [c.value for c in CLASSES]


def defect_region(a: BoardAnalysis, name: DefectClass, params: dict
                  ) -> tuple[np.ndarray, tuple[int, int]] | None:
    return DEFECTS[name].region(a, params)


@pytest.fixture(scope="module")
def analyses() -> dict[int, BoardAnalysis]:
    return {k: analyze_board(draw_board(np.random.default_rng(k), 640)) for k in BOARD_SEEDS}


def _sample(a: BoardAnalysis, name: DefectClass, seed: int) -> dict | None:
    return DEFECTS[name].sample(a, np.random.default_rng(seed))


def test_one_spec_per_class_in_deeppcb_order() -> None:
    """The registry holds DeepPCB's six classes in DeepPCB's order (the class list every
    synthetic dataset records), each under its own label."""
    assert list(DEFECTS) == [c.value for c in DefectClass]
    assert list(DEFECTS) == ["open", "short", "mousebite", "spur", "copper", "pin-hole"]
    assert all(spec.name == name and type(spec.name) is str for name, spec in DEFECTS.items())
    assert {name for name, spec in DEFECTS.items() if spec.adds_copper} == {
        "short", "spur", "copper"}


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
            if DEFECTS[name].adds_copper:
                assert not under.any(), (name, board_seed, seed)
            else:
                assert under.all(), (name, board_seed, seed)
            # The region is the brush, cut to the side it changes.
            brush = draw_strokes(params, (x, y), (h, w))
            assert not (region & (1 - brush)).any()


def test_no_spot_gives_none() -> None:
    """A board of bare substrate has no conductor for any sampler but copper's."""
    a = analyze_board(np.full((128, 128), 255, np.uint8))
    for name, spec in DEFECTS.items():
        params = spec.sample(a, np.random.default_rng(0))
        if name == DefectClass.copper:
            assert params is not None
        else:
            assert params is None, name


def _bands_board() -> np.ndarray:
    """Copper (black) on substrate (white): a 10 px trace, a 40 px band and a pour."""
    board = np.full((400, 640), 255, np.uint8)
    board[60:70, 20:620] = 0  # trace, rows 60-69
    board[140:180, 20:620] = 0  # band, rows 140-179 (centre 159.5)
    board[230:390, 100:540] = 0  # pour, 160 x 440
    return board


def _topology(a: BoardAnalysis, name: DefectClass, params: dict, pad: int = 12
              ) -> tuple[bool, str]:
    """:func:`check_topology` of ``params`` drawn on the board, in a window ``pad`` px
    around the drawing."""
    region, (x, y) = defect_region(a, name, params)
    after = a.copper.copy()
    h, w = region.shape
    window = after[y:y + h, x:x + w]
    if DEFECTS[name].adds_copper:
        window |= region
    else:
        window &= 1 - region
    x0, y0 = max(x - pad, 0), max(y - pad, 0)
    x1, y1 = min(x + w + pad, a.shape[1]), min(y + h + pad, a.shape[0])
    return check_topology(name, a.copper[y0:y1, x0:x1], after[y0:y1, x0:x1])


def _thickness(region: np.ndarray) -> float:
    """Twice the largest distance from a region pixel to the region's outside."""
    padded = np.pad(region.astype(np.uint8), 1)
    return 2.0 * float(cv2.distanceTransform(padded, cv2.DIST_L2, 5).max())


def test_ridge_wide_marks_wide_bands_only() -> None:
    a = analyze_board(_bands_board())
    assert len(a.ridge_wide)
    ys, xs = np.divmod(a.ridge_wide, a.shape[1])
    assert ((ys >= 157) & (ys <= 162)).all(), sorted(set(ys.tolist()))
    assert xs.min() >= 40 and xs.max() < 600  # the board's border is left out
    # The thin trace is a trace, not a band.
    ty, _ = np.divmod(a.ridge, a.shape[1])
    assert ((ty >= 62) & (ty <= 67)).any() and not ((ty >= 140) & (ty < 180)).any()


def test_wide_opens_cut_the_band_with_a_narrow_stroke(monkeypatch) -> None:
    monkeypatch.setattr(defects, "WIDE_OPEN_SHARE", 1.0)
    a = analyze_board(_bands_board())
    for seed in range(12):
        params = _sample(a, DefectClass.open, seed)
        assert params is not None and params.get("wide") is True, params
        assert 140 <= params["host"][0] < 180
        ok, reason = _topology(a, DefectClass.open, params)
        assert ok, (seed, reason)
        region, _ = defect_region(a, DefectClass.open, params)
        radius = max(params["strokes"][0]["radii"])
        # Thin: its brush, and the ragged outline's reach on both sides.
        reach = 2 * radius + 4 + 2 * defects.ROUGH_GROW
        assert _thickness(region) <= reach, (seed, _thickness(region), radius)
        # Right across the band, so its removed copper is at least the band's width long.
        assert region.sum() >= 40 * 2 * 2.0 * 0.7


def test_boards_without_bands_still_get_trace_opens(monkeypatch) -> None:
    monkeypatch.setattr(defects, "WIDE_OPEN_SHARE", 1.0)
    board = _bands_board()
    board[100:400] = 255  # the trace only
    a = analyze_board(board)
    assert not len(a.ridge_wide)
    params = _sample(a, DefectClass.open, 0)
    assert params is not None and "wide" not in params
    assert _topology(a, DefectClass.open, params)[0]


def test_mousebite_slits_bite_the_edge_without_cutting(monkeypatch) -> None:
    monkeypatch.setattr(defects, "MOUSEBITE_SLIT_SHARE", 1.0)
    a = analyze_board(_bands_board())
    slits = 0
    for seed in range(16):
        params = _sample(a, DefectClass.mousebite, seed)
        assert params is not None
        ok, reason = _topology(a, DefectClass.mousebite, params)
        assert ok, (seed, reason, params)
        if params.get("slit"):
            slits += 1
            region, _ = defect_region(a, DefectClass.mousebite, params)
            radii = params["strokes"][0]["radii"]
            # A slit: thin (cv2 draws a slanted band up to ~3 px wider than its brush),
            # and longer than it is thick.
            assert _thickness(region) <= 2 * max(radii) + 4
            ys, xs = np.nonzero(region)
            extent = max(np.ptp(ys), np.ptp(xs)) + 1
            assert extent >= 1.5 * 2 * min(radii), (seed, extent, radii)
    # The 10 px trace is too narrow for a slit, the band and the pour are not.
    assert slits >= 10


def test_spur_slivers_and_fingers_both_pass_the_spur_rule(monkeypatch) -> None:
    a = analyze_board(_bands_board())
    monkeypatch.setattr(defects, "SPUR_RAGGED_SHARE", 0.0)
    for share in (0.0, 1.0):
        monkeypatch.setattr(defects, "SPUR_SLIVER_SHARE", share)
        angles = []
        for seed in range(12):
            params = _sample(a, DefectClass.spur, seed)
            assert params is not None
            ok, reason = _topology(a, DefectClass.spur, params)
            assert ok, (share, seed, reason)
            tx, ty = params["strokes"][0]["points"][-1]
            hy, hx = params["host"]
            normal = -np.array(np.gradient(a.dist_copper.astype(float)))[:, hy, hx][::-1]
            normal /= np.hypot(*normal)
            grow = np.array([tx - hx, ty - hy]) / np.hypot(tx - hx, ty - hy)
            angles.append(float(np.arccos(np.clip(grow @ normal, -1, 1))))
        # Fingers stand about square to the edge, slivers lean well over.
        if share == 0.0:
            assert max(angles) < 0.75, angles
        else:
            assert min(angles) > 0.45, angles


def test_ragged_spurs_run_along_the_edge_and_pass_the_spur_rule(monkeypatch) -> None:
    a = analyze_board(_bands_board())
    monkeypatch.setattr(defects, "SPUR_RAGGED_SHARE", 1.0)
    runs, reaches = [], []
    for seed in range(12):
        params = _sample(a, DefectClass.spur, seed)
        assert params is not None
        ok, reason = _topology(a, DefectClass.spur, params)
        assert ok, (seed, reason)
        base, *bumps = params["strokes"]
        assert 2 <= len(bumps) <= 4
        # The base lies along the edge (every point within ~3 px of the copper) and is
        # longer than the bumps reach out of it.
        points = np.array(base["points"])
        near = a.dist_substrate[np.round(points[:, 1]).astype(int),
                                np.round(points[:, 0]).astype(int)]
        assert (near <= 3.5).all(), near
        run = float(np.hypot(*(points[-1] - points[0])))
        region, _ = defect_region(a, DefectClass.spur, params)
        reach = max(float(a.dist_substrate[int(round(b["points"][-1][1])),
                                           int(round(b["points"][-1][0]))]) for b in bumps)
        assert run >= 10 and region.sum() > 0
        runs.append(run)
        reaches.append(reach)
    assert np.median(runs) > np.median(reaches), (runs, reaches)


def test_copper_strands_are_thin_long_islands(monkeypatch) -> None:
    a = analyze_board(_bands_board())
    for share in (0.0, 1.0):
        monkeypatch.setattr(defects, "COPPER_STRAND_SHARE", share)
        thickness, extents = [], []
        for seed in range(12):
            params = _sample(a, DefectClass.copper, seed)
            assert params is not None
            ok, reason = _topology(a, DefectClass.copper, params)
            assert ok, (share, seed, reason)
            region, _ = defect_region(a, DefectClass.copper, params)
            ys, xs = np.nonzero(region)
            thickness.append(_thickness(region))
            extents.append(max(np.ptp(ys), np.ptp(xs)) + 1)
        if share == 1.0:
            # Hairs: ~5 px thick (a bend may fold a little thicker), longer than thick.
            # (plus what the ragged outline adds, up to ROUGH_GROW a side)
            assert np.median(thickness) <= 7.0, thickness
            assert max(thickness) <= 9.0 + 2 * defects.ROUGH_GROW, thickness
            assert min(e / t for e, t in zip(extents, thickness, strict=True)) >= 2.0
        else:
            assert np.median(thickness) >= 6.0, thickness  # blobs


def _stroke_points(params: dict) -> np.ndarray:
    return np.array([p for stroke in params["strokes"] for p in stroke["points"]], float)


def test_wide_gap_shorts_bridge_the_clearance_nearly_straight(monkeypatch) -> None:
    """Two bands 50 px apart (wider than any gap before): every short spans the clearance,
    runs about straight across it and joins the two bands."""
    monkeypatch.setattr(defects, "SHORT_WIDE_KEEP", 1.0)
    board = np.full((360, 640), 255, np.uint8)
    board[100:140, 20:620] = 0
    board[190:230, 20:620] = 0
    a = analyze_board(board)
    for seed in range(12):
        params = _sample(a, DefectClass.short, seed)
        assert params is not None, seed
        assert params["nets"][0] != params["nets"][1]
        ok, reason = _topology(a, DefectClass.short, params)
        assert ok, (seed, reason)
        points = _stroke_points(params)
        first, last = points[0], points[-1]
        assert np.hypot(*(last - first)) >= 50
        # Sideways bends stay within ~8 px of the straight line between its ends.
        along = (last - first) / np.hypot(*(last - first))
        side = np.abs((points - first) @ np.array([-along[1], along[0]]))
        assert side.max() <= 0.35 * 24 + 1, (seed, side)
    monkeypatch.setattr(defects, "SHORT_WIDE_KEEP", 0.0)
    assert all(_sample(a, DefectClass.short, seed) is None for seed in range(4))


def _drawn_and_checked(a: BoardAnalysis, name: DefectClass, seeds: range) -> dict[int, dict]:
    """The defects drawn for ``seeds`` (seeds that draw none left out), each asserted to
    pass its class's topology check."""
    drawn = {}
    for seed in seeds:
        params = _sample(a, name, seed)
        if params is None:
            continue
        ok, reason = _topology(a, name, params)
        assert ok, (seed, reason)
        drawn[seed] = params
    return drawn


def test_fine_pitch_shorts_bridge_a_5_px_clearance() -> None:
    """Traces 5 px apart (fine pitch; the previous generator bridged nothing under 6 px):
    shorts are drawn across that clearance, join two different traces and pass the
    topology check."""
    board = np.full((320, 640), 255, np.uint8)
    for top in range(60, 260, 17):  # 12 px traces, 5 px clearance
        board[top:top + 12, 20:620] = 0
    drawn = _drawn_and_checked(analyze_board(board), DefectClass.short, range(8))
    assert all(params["nets"][0] != params["nets"][1] for params in drawn.values())
    assert len(drawn) >= 6


def test_spurious_copper_fits_between_fine_pitch_traces() -> None:
    """Traces 20 px apart and no open substrate: islands are drawn in the channels, apart
    from every trace (at least 2 px of substrate round them) and never touching one."""
    board = np.full((300, 640), 255, np.uint8)
    for top in range(0, 300, 32):  # 12 px traces, 20 px clearance, edge to edge
        board[top:top + 12, :] = 0
    a = analyze_board(board)
    drawn = _drawn_and_checked(a, DefectClass.copper, range(12))
    for seed, params in drawn.items():
        region, (x, y) = defect_region(a, DefectClass.copper, params)
        h, w = region.shape
        assert a.dist_substrate[y:y + h, x:x + w][region > 0].min() >= 2.0, seed
    assert len(drawn) >= 8, len(drawn)


def test_shorts_bridge_a_channel_cut_into_one_conductor(monkeypatch) -> None:
    """A pour with a 10 px channel cut into it (ending inside, so one conductor): a short
    across the channel joins its two sides, apart inside the box, and is drawn only as
    often as SHORT_SAME_NET_KEEP says."""
    board = np.full((400, 640), 255, np.uint8)
    board[60:340, 40:600] = 0
    board[195:205, 40:480] = 255  # channel from the pour's left edge, ending 120 px short
    a = analyze_board(board)
    monkeypatch.setattr(defects, "SHORT_SAME_NET_KEEP", 0.0)
    assert all(_sample(a, DefectClass.short, seed) is None for seed in range(4))
    monkeypatch.setattr(defects, "SHORT_SAME_NET_KEEP", 1.0)
    passed = 0
    for seed in range(12):
        params = _sample(a, DefectClass.short, seed)
        assert params is not None, seed
        assert params["nets"][0] == params["nets"][1]
        ys = _stroke_points(params)[:, 1]
        assert ys.min() < 195 and ys.max() > 205, params  # across the channel
        passed += _topology(a, DefectClass.short, params)[0]
    # Near the channel's end the two sides meet inside the box: the check refuses those
    # (synthesis then draws elsewhere); away from it the bridge is a short.
    assert passed >= 9, passed


@pytest.mark.parametrize("name", [DefectClass.spur, DefectClass.copper, DefectClass.pin_hole],
                         ids=lambda c: c.value)
def test_sizes_spread_from_specks_to_large_defects(monkeypatch, name) -> None:
    # DeepPCB's five train boards: the 90th percentile of a class's area is 4-6x its 10th
    # (e.g. spurious copper 77 -> 404 px) and of its longest side ~3x. A narrow size band
    # teaches a model one size.
    monkeypatch.setattr(defects, "COPPER_STRAND_SHARE", 0.0)
    a = analyze_board(_bands_board())
    longest, areas = [], []
    for seed in range(150):
        params = _sample(a, name, seed)
        assert params is not None
        region, _ = defect_region(a, name, params)
        ys, xs = np.nonzero(region)
        rect = cv2.minAreaRect(np.stack([xs, ys], 1).astype(np.float32))
        longest.append(max(rect[1]) + 1)
        areas.append(int(region.sum()))
    p10, p90 = np.percentile(areas, [10, 90])
    assert p90 / p10 >= 3.0, (p10, p90)
    p10, p90 = np.percentile(longest, [10, 90])
    assert p90 / p10 >= 2.3, (p10, p90)


# --------------------------------------------------------------------------- ragged outlines


def _disc_params(rough: dict | None = None, radius: float = 9.0) -> dict:
    params: dict = {"strokes": [{"points": [[40.0, 40.0], [40.5, 40.0]],
                                 "radii": [radius, radius]}]}
    if rough is not None:
        params["rough"] = rough
    return params


def _rough(seed: int, amp: float = 2.0, speck: float = 1.0, **more) -> dict:
    return {"seed": seed, "amp": amp, "corr": 1.6, "speck": speck, **more}


def test_roughening_makes_outlines_ragged_and_stays_deterministic() -> None:
    from pcbforge.bench.shapes import shape_stats

    plain = shape_stats(draw_strokes(_disc_params(), (0, 0), (80, 80)))
    rough = [shape_stats(draw_strokes(_disc_params(_rough(seed)), (0, 0), (80, 80)))
             for seed in range(8)]
    assert np.median([r["roughness"] for r in rough]) > plain["roughness"] + 0.05
    assert np.median([r["circularity"] for r in rough]) < plain["circularity"] - 0.1
    # About as large: the noise moves the outline both ways.
    assert np.median([r["area"] for r in rough]) == pytest.approx(plain["area"], rel=0.2)
    again = draw_strokes(_disc_params(_rough(3)), (0, 0), (80, 80))
    np.testing.assert_array_equal(draw_strokes(_disc_params(_rough(3)), (0, 0), (80, 80)),
                                  again)
    other = draw_strokes(_disc_params(_rough(4)), (0, 0), (80, 80))
    assert (other != again).any()
    # No noise, no change.
    np.testing.assert_array_equal(
        draw_strokes(_disc_params(_rough(3, amp=0.0, speck=0.0)), (0, 0), (80, 80)),
        draw_strokes(_disc_params(), (0, 0), (80, 80)))


def test_roughened_drawing_is_the_same_through_any_window() -> None:
    params = _disc_params(_rough(7, dots=0.1))
    x0, y0, x1, y1 = stroke_bounds(params)
    whole = draw_strokes(params, (x0, y0), (y1 - y0, x1 - x0))
    assert stroke_bounds(params)[0] < stroke_bounds(_disc_params())[0]  # room to grow
    part = draw_strokes(params, (x0 + 5, y0 + 9), (12, 30))
    np.testing.assert_array_equal(part, whole[9:21, 5:35])
    board = draw_strokes(params, (0, 0), (100, 100))
    np.testing.assert_array_equal(board[y0:y1, x0:x1], whole)


def test_roughening_never_breaks_a_thin_stroke_nor_leaves_big_crumbs() -> None:
    params = {"strokes": [{"points": [[10.0, 30.0], [40.0, 22.0], [70.0, 34.0]],
                           "radii": [1.8, 1.8, 1.8]}]}
    for seed in range(20):
        params["rough"] = _rough(seed, amp=3.0, speck=1.5, dots=0.15)
        mask = draw_strokes(params, (0, 0), (60, 80))
        n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        sizes = sorted(stats[1:, cv2.CC_STAT_AREA])
        assert sizes[-1] >= 60, seed  # the stroke, in one piece
        assert all(size <= defects.ROUGH_SPECK for size in sizes[:-1]), (seed, sizes)
        # Its centre line is all there, 3 px thick.
        line = {"strokes": [{"points": params["strokes"][0]["points"], "radii": [1.5] * 3}]}
        assert not (draw_strokes(line, (0, 0), (60, 80)) & (1 - mask)).any(), seed


def test_roughened_outlines_grow_at_most_the_stated_reach() -> None:
    params = _disc_params(_rough(1, amp=4.0, speck=2.0, grow=2.0))
    mask = draw_strokes(params, (0, 0), (80, 80))
    plain = draw_strokes(_disc_params(), (0, 0), (80, 80))
    outside = cv2.distanceTransform(1 - plain, cv2.DIST_L2, 3)
    assert outside[mask > 0].max() <= 2.0


@pytest.mark.parametrize("name", CLASSES, ids=CLASS_IDS)
def test_every_class_is_roughened_after_its_table(analyses, name) -> None:
    a = analyses[BOARD_SEEDS[2]]
    most, _, speck, _ = defects.ROUGH[name.value]
    for seed in range(8):
        params = _sample(a, name, seed)
        if params.get("stamp"):
            assert "rough" not in params  # a stamped scribble is pixel-sharp as drawn
            continue
        rough = params["rough"]
        assert 0 <= rough["amp"] <= most and 0 <= rough["speck"] <= speck
        assert rough["amp"] <= defects.ROUGH_THIN * min(params["strokes"][0]["radii"]) + 1e-3


def test_pin_hole_scratches_and_rings_are_pin_holes(monkeypatch) -> None:
    a = analyze_board(_bands_board())
    monkeypatch.setattr(defects, "PIN_HOLE_RING_SHARE", 0.0)
    monkeypatch.setattr(defects, "PIN_HOLE_SCRATCH_SHARE", 1.0)
    scratches = _drawn_and_checked(a, DefectClass.pin_hole, range(12))
    assert len(scratches) >= 10
    for params in scratches.values():
        region, _ = defect_region(a, DefectClass.pin_hole, params)
        assert _thickness(region) <= 9  # thin
        ys, xs = np.nonzero(region)
        assert max(np.ptp(ys), np.ptp(xs)) + 1 >= 10  # and long
    monkeypatch.setattr(defects, "PIN_HOLE_SCRATCH_SHARE", 0.0)
    monkeypatch.setattr(defects, "PIN_HOLE_RING_SHARE", 1.0)
    rings = _drawn_and_checked(a, DefectClass.pin_hole, range(12))
    assert len(rings) >= 10
    kept_inside = 0
    for params in rings.values():
        region, _ = defect_region(a, DefectClass.pin_hole, params)
        # Copper is left inside the ring: the region has a hole of its own.
        n, _ = cv2.connectedComponents((1 - region).astype(np.uint8), connectivity=4)
        kept_inside += n > 2
    assert kept_inside >= len(rings) // 2, kept_inside


def test_spurious_copper_tails_stay_islands(monkeypatch) -> None:
    monkeypatch.setattr(defects, "COPPER_STRAND_SHARE", 0.0)
    monkeypatch.setattr(defects, "COPPER_AXIS_SHARE", 0.0)
    monkeypatch.setattr(defects, "COPPER_TAIL_SHARE", 1.0)
    a = analyze_board(_bands_board())
    drawn = _drawn_and_checked(a, DefectClass.copper, range(12))
    tailed = [p for p in drawn.values() if len(p["strokes"]) == 2]
    assert len(tailed) >= 8
    for params in tailed:
        tail = params["strokes"][1]
        assert max(tail["radii"]) <= max(params["strokes"][0]["radii"])  # thinner


def test_mousebite_edge_bands_keep_the_bite_rule(monkeypatch) -> None:
    monkeypatch.setitem(defects.EDGE_BAND, "mousebite", 1.0)
    a = analyze_board(_bands_board())
    drawn = _drawn_and_checked(a, DefectClass.mousebite, range(12))
    banded = [p for p in drawn.values() if len(p["strokes"]) == 2]
    assert len(banded) >= 8
    for params in banded:
        band = np.array(params["strokes"][1]["points"])
        assert 10 <= np.hypot(*(band[-1] - band[0])) <= 32 + 1


@pytest.mark.parametrize("name", [DefectClass.copper, DefectClass.pin_hole],
                         ids=lambda c: c.value)
def test_scribbles_are_stamped_thin_one_piece_and_keep_their_rule(monkeypatch, name) -> None:
    monkeypatch.setitem(defects.SCRIBBLE_SHARE, name.value, 1.0)
    a = analyze_board(_bands_board())
    drawn = _drawn_and_checked(a, name, range(12))
    assert len(drawn) >= 10
    for params in drawn.values():
        assert params["stamp"] > 0 and "rough" not in params
        region, _ = defect_region(a, name, params)
        assert cv2.connectedComponents(region, connectivity=8)[0] == 2  # one piece
        assert _thickness(region) <= 2 * 2 + 3  # discs of radius 2 at most, where they bunch


def test_stamped_strokes_have_beaded_edges() -> None:
    line = {"strokes": [{"points": [[5.0, 10.0], [35.0, 10.0]], "radii": [1.0, 1.0]}]}
    solid = draw_strokes(line, (0, 0), (20, 40))
    beads = draw_strokes({**line, "stamp": 3.0}, (0, 0), (20, 40))
    assert beads[10, 5:36].all()  # the middle row is whole
    assert 0 < beads[9, 5:36].sum() < 0.5 * solid[9, 5:36].sum() + 16  # the edge is beaded
    assert beads[9, 5:36].sum() <= 11


def test_snapped_turns_near_axis_directions_onto_45_degree_steps() -> None:
    for degrees, expected in ((3.0, 0.0), (-8.0, 0.0), (48.0, 45.0), (93.0, 90.0),
                              (-133.0, -135.0), (20.0, 20.0)):
        u = np.array([np.cos(np.radians(degrees)), np.sin(np.radians(degrees))])
        got = np.degrees(np.arctan2(*defects._snapped(u)[::-1]))
        assert got == pytest.approx(expected, abs=1e-9), degrees


def _straight_and_even(stroke: dict) -> bool:
    """Every point on the line through the first and last, every radius the same (the
    last may differ: a mousebite's round end dab)."""
    points = np.asarray(stroke["points"], float)
    ends = points[-1] - points[0]
    normal = np.array([-ends[1], ends[0]]) / np.hypot(*ends)
    off_line = np.abs((points - points[0]) @ normal)
    radii = stroke["radii"][:-1]
    return bool(off_line.max() < 0.05 and max(radii) - min(radii) < 1e-9)


@pytest.mark.parametrize("name", [DefectClass.short, DefectClass.open,
                                  DefectClass.mousebite, DefectClass.spur])
def test_ruled_strokes_are_straight_even_smoother_and_keep_their_rule(
        monkeypatch, analyses, name) -> None:
    """With every stroke of the class ruled: one straight stroke of even width, marked
    ``ruled``, roughened at most RULED_ROUGH of the class's amplitude, topology kept;
    with none ruled, no mark."""
    a = analyses[BOARD_SEEDS[0]]
    monkeypatch.setattr(defects, "SPUR_RAGGED_SHARE", 0.0)
    monkeypatch.setattr(defects, "SPUR_SLIVER_SHARE", 0.0)
    monkeypatch.setattr(defects, "MOUSEBITE_SLIT_SHARE", 1.0)
    most = defects.ROUGH[name.value][0]
    monkeypatch.setitem(defects.RULED_SHARE, name.value, 1.0)
    seen = kept = 0
    for seed in range(20):
        params = _sample(a, name, seed)
        if params is None or params.get("stamp"):
            continue
        seen += 1
        assert params.get("ruled") is True, seed
        assert _straight_and_even(params["strokes"][0]), (seed, params["strokes"][0])
        assert params["rough"]["amp"] <= defects.RULED_ROUGH * most + 1e-3
        # The class's rule on the clean drawing (synthesis redraws the rest elsewhere).
        kept += _topology(a, name, params)[0]
    assert seen >= 12 and kept >= 0.75 * seen, (seen, kept)
    monkeypatch.setitem(defects.RULED_SHARE, name.value, 0.0)
    assert not any((_sample(a, name, seed) or {}).get("ruled") for seed in range(10))
