"""Tests for the non-defect nuisance of synthetic tested images (pcbforge.synth.nuisance)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from pcbforge.synth.boards import DEFECT_KINDS, add_local_defect, draw_board
from pcbforge.synth.nuisance import (
    NuisanceParams,
    apply_nuisance,
    sample_nuisance,
    thick_difference,
    warp_mask,
)

BOARD_SEEDS = range(6)
NUISANCE_SEEDS = range(25)
K3 = np.ones((3, 3), np.uint8)


@pytest.fixture(scope="module")
def boards() -> dict[int, np.ndarray]:
    return {s: draw_board(np.random.default_rng(100 + s)) for s in BOARD_SEEDS}


def _sample(seed: int, shape=(640, 640), **overrides) -> dict:
    return sample_nuisance(np.random.default_rng(seed), NuisanceParams(**overrides), shape)


def _opened_diff(a: np.ndarray, b: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
    """The requirement's own check: binarize at 128, XOR, open with a 3x3 square."""
    diff = ((a >= 128) != (b >= 128)).astype(np.uint8)
    if keep is not None:
        diff &= keep.astype(np.uint8)
    return cv2.morphologyEx(diff, cv2.MORPH_OPEN, K3)


# --- sampling -----------------------------------------------------------------------------


def test_sample_is_plain_json_and_reproducible() -> None:
    sampled = _sample(0)
    assert json.loads(json.dumps(sampled)) == sampled
    assert all(type(v) in (bool, int, float, type(None)) for v in sampled.values())
    assert isinstance(sampled["noise_seed"], int) and sampled["noise_seed"] < 2**32
    assert _sample(0) == sampled
    assert _sample(1) != sampled


def test_sample_respects_caps() -> None:
    params = NuisanceParams(shift_std_x_px=2, shift_std_y_px=2, max_shift_px=1.0,
                            rotation_std_deg=1, max_rotation_deg=0.5)
    rng = np.random.default_rng(0)
    for _ in range(200):
        s = sample_nuisance(rng, params, (640, 480))
        assert abs(s["dx"]) <= 1.0 and abs(s["dy"]) <= 1.0
        # rotation shares the shift budget: far-corner displacement stays within the cap
        radius = 0.5 * np.hypot(640, 480)
        turn = np.radians(abs(s["angle_deg"])) * radius
        assert max(abs(s["dx"]), abs(s["dy"])) + turn <= 1.0 + 1e-9
        assert 73 <= s["jpeg_quality"] <= 77


def test_sample_rejects_bad_shape() -> None:
    with pytest.raises(ValueError, match="shape"):
        sample_nuisance(np.random.default_rng(0), NuisanceParams(), (0, 640))


# --- determinism --------------------------------------------------------------------------


def test_same_dict_same_bytes(boards: dict[int, np.ndarray]) -> None:
    board = boards[0]
    sampled = _sample(3)
    first = apply_nuisance(board, sampled, binary=True)
    again = apply_nuisance(board.copy(), json.loads(json.dumps(sampled)), binary=True)
    assert first.tobytes() == again.tobytes()
    assert np.array_equal(warp_mask(board, sampled), warp_mask(board, sampled))


def test_different_seeds_differ(boards: dict[int, np.ndarray]) -> None:
    board = boards[0]
    outs = [apply_nuisance(board, _sample(seed), binary=True) for seed in range(4)]
    for i in range(len(outs)):
        for j in range(i + 1, len(outs)):
            assert not np.array_equal(outs[i], outs[j])


def test_input_not_modified(boards: dict[int, np.ndarray]) -> None:
    board = boards[1]
    before = board.copy()
    apply_nuisance(board, _sample(0), binary=True)
    warp_mask(board, _sample(0))
    assert np.array_equal(board, before)


# --- the hard bound -----------------------------------------------------------------------


@pytest.mark.parametrize("board_seed", list(BOARD_SEEDS), ids=lambda s: f"board{s}")
def test_no_band_thicker_than_2px(boards: dict[int, np.ndarray], board_seed: int) -> None:
    board = boards[board_seed]
    rng = np.random.default_rng(board_seed)
    for _ in NUISANCE_SEEDS:
        out = apply_nuisance(board, sample_nuisance(rng, NuisanceParams(), board.shape),
                             binary=True)
        assert not _opened_diff(out, board).any()
        assert not thick_difference(out, board).any()


@pytest.mark.parametrize(
    "overrides",
    [
        {"shift_std_x_px": 2, "shift_std_y_px": 2, "max_shift_px": 2},
        {"offset_min_px": 1.5, "offset_max_px": 1.5, "roughness_px": 1, "bias_std_px": 1,
         "max_bias_px": 1},
        {"rotation_std_deg": 1, "max_rotation_deg": 1, "max_shift_px": 2},
    ],
    ids=["max-shift", "max-offsets", "max-rotation"],
)
def test_bound_holds_at_extreme_params(boards: dict[int, np.ndarray], overrides: dict) -> None:
    rng = np.random.default_rng(7)
    params = NuisanceParams(**overrides)
    for board in boards.values():
        for _ in range(4):
            out = apply_nuisance(board, sample_nuisance(rng, params, board.shape), binary=True)
            assert not _opened_diff(out, board).any()


@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_bound_outside_defects(boards: dict[int, np.ndarray], kind: str) -> None:
    template = boards[2]
    rng = np.random.default_rng(11)
    tested, (x1, y1, x2, y2) = add_local_defect(template, rng, kind)
    keep = np.ones(template.shape, bool)
    keep[max(y1 - 3, 0) : y2 + 3, max(x1 - 3, 0) : x2 + 3] = False  # shift <= 2 px
    for _ in range(10):
        out = apply_nuisance(tested, sample_nuisance(rng, NuisanceParams(), tested.shape),
                             binary=True)
        assert not _opened_diff(out, template, keep).any()


def test_nuisance_is_not_empty_and_balanced(boards: dict[int, np.ndarray]) -> None:
    """Calibration guard: DeepPCB pairs differ on ~0.2-4 % of pixels, about half added."""
    fractions, added = [], []
    rng = np.random.default_rng(5)
    for board in boards.values():
        for _ in range(5):
            out = apply_nuisance(board, sample_nuisance(rng, NuisanceParams(), board.shape),
                                 binary=True)
            diff = (out >= 128) != (board >= 128)
            fractions.append(diff.mean())
            added.append((diff & (board >= 128)).sum() / max(diff.sum(), 1))
    assert 0.001 < np.median(fractions) < 0.03
    assert 0.35 < np.median(added) < 0.65


# --- output kinds -------------------------------------------------------------------------


def test_binary_output_nearly_binary(boards: dict[int, np.ndarray]) -> None:
    board = boards[3]
    for seed in range(5):
        out = apply_nuisance(board, _sample(seed), binary=True)
        assert out.shape == board.shape and out.dtype == np.uint8
        grey = np.mean((out > 30) & (out < 225))
        assert grey < 0.003  # DeepPCB tested images: median 0.02 %, max ~0.3 %
        # JPEG ringing stays faint, as in DeepPCB's quality-75 tested images
        assert np.mean((out <= 40) | (out >= 215)) > 0.995
        assert np.mean((out == 0) | (out == 255)) > 0.8


def test_without_jpeg_exactly_binary(boards: dict[int, np.ndarray]) -> None:
    board = boards[3]
    sampled = _sample(0, jpeg_prob=0.0)
    assert sampled["jpeg_quality"] is None
    out = apply_nuisance(board, sampled, binary=True)
    assert set(np.unique(out).tolist()) <= {0, 255}
    skipped = apply_nuisance(board, _sample(0), binary=True, jpeg_round_trip=False)
    assert set(np.unique(skipped).tolist()) <= {0, 255}


def test_bgr_binary_matches_gray(boards: dict[int, np.ndarray]) -> None:
    board = boards[4]
    bgr = cv2.cvtColor(board, cv2.COLOR_GRAY2BGR)
    sampled = _sample(2)
    out = apply_nuisance(bgr, sampled, binary=True)
    assert out.shape == bgr.shape and out.dtype == np.uint8
    gray_out = apply_nuisance(board, sampled, binary=True)
    luma = cv2.cvtColor(out, cv2.COLOR_BGR2GRAY)
    # same geometry and thresholds; only JPEG (colour vs grey encoder) may differ
    assert np.mean((luma >= 128) != (gray_out >= 128)) < 1e-4
    assert not thick_difference(out, bgr).any()


def test_grey_and_bgr_non_binary() -> None:
    rng = np.random.default_rng(0)
    board = draw_board(rng, size=320)
    photo = cv2.GaussianBlur(cv2.cvtColor(board, cv2.COLOR_GRAY2BGR), (0, 0), 1.5)
    photo[..., 2] = np.clip(photo[..., 2].astype(int) // 2 + 60, 0, 255).astype(np.uint8)
    for image in (photo[..., 0].copy(), photo):
        sampled = sample_nuisance(rng, NuisanceParams(), image.shape)
        out = apply_nuisance(image, sampled, binary=False)
        assert out.shape == image.shape and out.dtype == np.uint8
        assert not np.array_equal(out, image)
        assert not thick_difference(out, image).any()
        # grey levels survive: no re-binarization
        assert len(np.unique(out)) > 50


def test_non_square_image() -> None:
    board = draw_board(np.random.default_rng(1), size=320)[:, :200].copy()
    sampled = _sample(0, shape=board.shape)
    out = apply_nuisance(board, sampled, binary=True)
    assert out.shape == (320, 200)
    assert not _opened_diff(out, board).any()
    assert warp_mask(board == 0, sampled).shape == (320, 200)


# --- masks follow the image ---------------------------------------------------------------


@pytest.mark.parametrize("rotation_prob", [0.0, 1.0], ids=["translation", "rotation"])
def test_copper_mask_follows_copper(boards: dict[int, np.ndarray], rotation_prob: float) -> None:
    board = boards[5]
    copper = board < 128
    rotated = 0
    for seed in range(6):
        sampled = _sample(seed, offset_min_px=0, offset_max_px=0, roughness_px=0,
                          bias_std_px=0, shift_std_x_px=0.7, shift_std_y_px=0.7,
                          rotation_prob=rotation_prob, rotation_std_deg=0.1)
        rotated += sampled["angle_deg"] != 0.0
        out_copper = apply_nuisance(board, sampled, binary=True) < 128
        moved = warp_mask(copper, sampled)
        assert moved.dtype == np.bool_
        # The mask moves by whole pixels, the image by the exact sub-pixel warp: they may
        # only disagree by thin slivers (diagonal edges re-quantized), never by a band.
        mismatch = moved != out_copper
        assert mismatch.mean() < 0.01
        assert not cv2.morphologyEx(mismatch.view(np.uint8), cv2.MORPH_OPEN, K3).any()
        if max(abs(sampled["dx"]), abs(sampled["dy"])) > 0.6:
            assert (copper != out_copper).mean() > 2 * mismatch.mean()
    assert (rotated > 0) == (rotation_prob > 0)


def test_translation_fast_path_matches_warp(boards: dict[int, np.ndarray]) -> None:
    """Unrotated images skip warpAffine; a negligible rotation takes it: same result."""
    board = boards[1]
    for seed in range(4):
        sampled = {**_sample(seed), "angle_deg": 0.0, "jpeg_quality": None}
        fast = apply_nuisance(board, sampled, binary=True)
        slow = apply_nuisance(board, {**sampled, "angle_deg": 1e-9}, binary=True)
        assert np.mean(fast != slow) < 2e-3
        fast_mask = warp_mask(board, sampled)
        assert np.array_equal(fast_mask, warp_mask(board, {**sampled, "angle_deg": 1e-9}))


def test_instance_mask_moves_by_the_shift() -> None:
    mask = np.zeros((200, 300), np.uint8)
    mask[50:80, 60:100] = 1
    mask[120:150, 200:230] = 7
    sampled = {**_sample(0, shape=mask.shape), "dx": 2.0, "dy": -2.0, "angle_deg": 0.0}
    moved = warp_mask(mask, sampled)
    assert set(np.unique(moved).tolist()) == {0, 1, 7}
    for label, (y, x) in ((1, (50, 60)), (7, (120, 200))):
        ys, xs = np.nonzero(moved == label)
        assert (ys.min(), xs.min()) == (y - 2, x + 2)
        assert (moved == label).sum() == (mask == label).sum()


def test_defect_mask_tracks_defect(boards: dict[int, np.ndarray]) -> None:
    template = boards[0]
    tested, (x1, y1, x2, y2) = add_local_defect(template, np.random.default_rng(3), "spur")
    defect = np.zeros(template.shape, np.uint8)
    defect[y1:y2, x1:x2] = (tested != template)[y1:y2, x1:x2]
    sampled = {**_sample(4), "dx": 1.5, "dy": 1.0, "angle_deg": 0.0}
    moved = warp_mask(defect, sampled)
    ys, xs = np.nonzero(moved)
    y0, x0 = np.nonzero(defect)
    assert abs(ys.mean() - y0.mean() - 1.0) < 0.6
    assert abs(xs.mean() - x0.mean() - 1.5) < 0.6


# --- disabled and invalid -----------------------------------------------------------------


def test_disabled_is_identity(boards: dict[int, np.ndarray]) -> None:
    board = boards[0]
    sampled = sample_nuisance(np.random.default_rng(0), NuisanceParams(enabled=False),
                              board.shape)
    assert sampled == {"enabled": False}
    out = apply_nuisance(board, sampled, binary=True)
    assert np.array_equal(out, board) and out is not board
    mask = board < 128
    moved = warp_mask(mask, sampled)
    assert np.array_equal(moved, mask) and moved is not mask


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_shift_px": 2.5}, "max_shift_px"),
        ({"shift_std_x_px": -0.1}, "shift_std_x_px"),
        ({"jpeg_quality_min": 101}, "jpeg_quality_min"),
        ({"jpeg_prob": 1.5}, "jpeg_prob"),
        ({"offset_min_px": 0.8, "offset_max_px": 0.5}, "offset_min_px"),
        ({"jpeg_quality_min": 90, "jpeg_quality_max": 80}, "jpeg_quality_max"),
        ({"blur_sigma": 1.0}, "blur_sigma"),
    ],
    ids=["shift-cap", "negative-std", "quality", "prob", "offset-range", "quality-range",
         "unknown-field"],
)
def test_invalid_params_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        NuisanceParams(**kwargs)
    assert issubclass(ValidationError, ValueError)


def test_apply_rejects_bad_inputs(boards: dict[int, np.ndarray]) -> None:
    board = boards[0]
    sampled = _sample(0)
    with pytest.raises(ValueError, match="uint8"):
        apply_nuisance(board.astype(np.float32), sampled, binary=True)
    with pytest.raises(ValueError, match="gray"):
        apply_nuisance(np.zeros((640, 640, 4), np.uint8), sampled, binary=True)
    with pytest.raises(ValueError, match="sampled for 640x640"):
        apply_nuisance(board[:320], sampled, binary=True)
    with pytest.raises(ValueError, match="dx"):
        apply_nuisance(board, {**sampled, "dx": "left"}, binary=True)
    with pytest.raises(ValueError, match="surprise"):
        apply_nuisance(board, {**sampled, "surprise": 1}, binary=True)
    with pytest.raises(ValueError, match="dict"):
        apply_nuisance(board, [("enabled", True)], binary=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mask"):
        warp_mask(board.astype(np.int32), sampled)
    with pytest.raises(ValueError, match="sampled for 640x640"):
        warp_mask(board[:, :10] > 0, sampled)
