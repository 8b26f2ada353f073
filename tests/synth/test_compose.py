"""Tests for synthesize_image: placed, checked, drawn and labelled defects on good boards."""

from __future__ import annotations

from collections import defaultdict

import cv2
import numpy as np
import pydantic
import pytest

from pcbforge.synth.analysis import analyze_board, copper_mask, etch_board
from pcbforge.synth.boards import draw_board
from pcbforge.synth.compose import (
    MAX_DEFECTS,
    SynthConfig,
    SynthImage,
    defect_count_range,
    draw_etch,
    synthesize_image,
)
from pcbforge.synth.nuisance import thick_difference
from pcbforge.synth.registry import DEFECTS, DefectClass
from pcbforge.synth.topology import check_topology, describe_change

BOARD_SEEDS = tuple(range(10))
#: Median changed pixels per class (3x3-opened difference inside the padded box) measured
#: on DeepPCB trainval at 48 px/mm; synthetic medians must stay within 40 %.
DEEPPCB_MEDIAN_PX = {"open": 107, "short": 147, "mousebite": 74, "spur": 83, "copper": 170,
                     "pin-hole": 112}
_KERNEL3 = np.ones((3, 3), np.uint8)


@pytest.fixture(scope="module")
def boards() -> dict[int, np.ndarray]:
    return {k: draw_board(np.random.default_rng(k), 640) for k in BOARD_SEEDS}


@pytest.fixture(scope="module")
def made(boards) -> dict[int, SynthImage]:
    """Default config, board k with seed 100 + k (first five boards)."""
    return {k: synthesize_image(boards[k], np.random.default_rng(100 + k)) for k in range(5)}


def _binary(image: np.ndarray) -> np.ndarray:
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return (gray < 128).astype(np.uint8)  # copper is dark on procedural boards


def _opened_difference(template: np.ndarray, tested: np.ndarray) -> np.ndarray:
    diff = _binary(template) ^ _binary(tested)
    return cv2.morphologyEx(diff, cv2.MORPH_OPEN, _KERNEL3)


def _boxes_overlap(a, b) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def test_result_shape_and_counts(made, boards) -> None:
    total = 0
    for k, result in made.items():
        assert result.image.shape == boards[k].shape and result.image.dtype == np.uint8
        np.testing.assert_array_equal(result.template, boards[k])
        assert result.binary
        assert 3 <= result.requested <= 12
        assert len(result.labels) + sum(result.dropped.values()) == result.requested
        total += len(result.labels)
    assert total >= 20  # defects are placed, not mostly dropped


def test_every_label_passes_its_topology_rule(made) -> None:
    for k, result in made.items():
        before, after = _binary(result.template), _binary(result.image)
        for label in result.labels:
            x1, y1, x2, y2 = label["box"]
            ok, why = check_topology(label["label"], before[y1:y2, x1:x2], after[y1:y2, x1:x2])
            assert ok, (k, label["label"], label["box"], why)


def test_masks_lie_inside_their_boxes_and_give_the_tight_box(made) -> None:
    for result in made.values():
        for label in result.labels:
            mask = label["mask"]
            assert mask.shape == result.image.shape[:2] and mask.dtype == bool
            x1, y1, x2, y2 = label["box"]
            assert mask.any()
            inside = np.zeros_like(mask)
            inside[y1:y2, x1:x2] = True
            assert not (mask & ~inside).any()
            rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
            tight = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
            assert tuple(label["tight"]) == tight
            assert label["changed_px"] == int(mask.sum())


def test_no_two_boxes_overlap(made) -> None:
    for result in made.values():
        boxes = [label["box"] for label in result.labels]
        for i, a in enumerate(boxes):
            for b in boxes[i + 1:]:
                assert not _boxes_overlap(a, b), (a, b)


def _uncovered_thick(result: SynthImage) -> np.ndarray:
    """The 3x3-opened difference outside every label box and nuisance region box."""
    thick = _opened_difference(result.template, result.image)
    for box in [label["box"] for label in result.labels] + [
            region["box"] for region in result.nuisance_regions]:
        x1, y1, x2, y2 = box
        thick[y1:y2, x1:x2] = 0
    return thick


def test_thick_differences_lie_in_label_or_nuisance_boxes(made) -> None:
    """The guarantee: <= 2 px differences anywhere; thicker ones only inside a defect's
    box or a recorded nuisance region's box."""
    regions = 0
    for k, result in made.items():
        assert not _uncovered_thick(result).any(), k
        regions += len(result.nuisance_regions)
    assert regions  # the default config draws background nuisance


def _nuisance_cases(boards):
    """(config, board) pairs of binary, gray and colour boards, many seeds."""
    for k in range(8):
        yield SynthConfig(), boards[k]
    for kind, side in COLOUR_KINDS.items():
        for k in range(4):
            yield SynthConfig(copper=side), _coloured(boards[k], 60 + k, kind)


def test_guarantee_holds_on_many_seeds_binary_gray_and_colour(boards) -> None:
    thick_regions = 0
    for seed, (config, board) in enumerate(_nuisance_cases(boards)):
        result = synthesize_image(board, np.random.default_rng(500 + seed), config)
        gray = board if board.ndim == 2 else cv2.cvtColor(board, cv2.COLOR_BGR2GRAY)
        template_gray = (result.template if result.template.ndim == 2
                         else cv2.cvtColor(result.template, cv2.COLOR_BGR2GRAY))
        image_gray = (result.image if result.image.ndim == 2
                      else cv2.cvtColor(result.image, cv2.COLOR_BGR2GRAY))
        assert gray.shape == image_gray.shape
        thick = thick_difference(result.image, result.template)
        covered = np.zeros(thick.shape, bool)
        for box in [label["box"] for label in result.labels] + [
                region["box"] for region in result.nuisance_regions]:
            x1, y1, x2, y2 = box
            covered[y1:y2, x1:x2] = True
        assert not (thick.astype(bool) & ~covered).any(), seed
        # Nuisance regions are really thick somewhere (a detector that opens sees them).
        for region in result.nuisance_regions:
            x1, y1, x2, y2 = region["box"]
            thick_regions += bool(thick[y1:y2, x1:x2].any())
        assert template_gray.shape == image_gray.shape
    assert thick_regions >= 10


def test_nuisance_regions_never_overlap_label_boxes_and_keep_topology(boards) -> None:
    seen = 0
    for seed in range(10):
        result = synthesize_image(boards[seed % len(boards)], np.random.default_rng(700 + seed))
        before, after = _binary(result.template), _binary(result.image)
        for region in result.nuisance_regions:
            assert region["kind"] in ("misregistration", "speck", "broken_edge")
            assert region["area"] > 0
            for label in result.labels:
                assert not _boxes_overlap(region["box"], label["box"]), (seed, region, label)
            x1, y1, x2, y2 = region["box"]
            facts = describe_change(before[y1:y2, x1:x2], after[y1:y2, x1:x2])
            assert not (facts["merges"] or facts["splits"] or facts["island"]
                        or facts["hole"]), (seed, region, facts)
            seen += 1
    assert seen >= 10


def test_defect_free_images_have_no_labels_and_keep_the_bound() -> None:
    board = draw_board(np.random.default_rng(3), 320)
    config = SynthConfig(defect_free_share=1.0)
    for seed in range(4):
        result = synthesize_image(board, np.random.default_rng(seed), config)
        assert result.defect_free and result.labels == [] and result.requested == 0
        assert not _uncovered_thick(result).any()
    none = [synthesize_image(board, np.random.default_rng(s), SynthConfig(defect_free_share=0))
            for s in range(4)]
    assert not any(r.defect_free for r in none)


def test_defect_free_share_is_about_the_share_asked() -> None:
    board = draw_board(np.random.default_rng(4), 200)
    a = analyze_board(board)
    config = SynthConfig(defect_free_share=0.3, defects_per_image=(1, 1),
                         background={"enabled": False}, nuisance={"enabled": False})
    free = [synthesize_image(board, np.random.default_rng(s), config, analysis=a).defect_free
            for s in range(200)]
    assert 0.2 < np.mean(free) < 0.4


def test_background_off_records_no_region(boards) -> None:
    config = SynthConfig(background={"enabled": False})
    result = synthesize_image(boards[0], np.random.default_rng(100), config)
    assert result.nuisance_regions == [] and result.background == {"enabled": False}
    assert not _uncovered_thick(result).any()


def test_padded_box_is_tight_box_grown_by_the_margin(made) -> None:
    config = SynthConfig()
    margin = round(config.margin_px)
    assert margin == 10  # DeepPCB's margin at 48 px/mm
    for result in made.values():
        h, w = result.image.shape[:2]
        for label in result.labels:
            x1, y1, x2, y2 = label["tight"]
            expected = (max(x1 - margin, 0), max(y1 - margin, 0), min(x2 + margin, w),
                        min(y2 + margin, h))
            assert tuple(label["box"]) == expected


def test_tight_boxes_when_asked(boards) -> None:
    config = SynthConfig(box="tight", box_margin_mm=0.5, defect_free_share=0)
    result = synthesize_image(boards[0], np.random.default_rng(3), config)
    assert result.labels
    for label in result.labels:
        assert tuple(label["box"]) == tuple(label["tight"])


def test_box_margin_scales_with_the_config(boards) -> None:
    config = SynthConfig(box_margin_mm=0.25, defects_per_image=(4, 4))
    assert round(config.margin_px) == 12
    result = synthesize_image(boards[1], np.random.default_rng(4), config)
    h, w = result.image.shape[:2]
    for label in result.labels:
        x1, y1, x2, y2 = label["tight"]
        assert tuple(label["box"]) == (max(x1 - 12, 0), max(y1 - 12, 0), min(x2 + 12, w),
                                       min(y2 + 12, h))


def test_padded_boxes_are_clipped_to_the_image() -> None:
    board = draw_board(np.random.default_rng(11), 160)
    config = SynthConfig(box_margin_mm=1.0, defects_per_image=(2, 2))  # 48 px margin
    clipped = 0
    for seed in range(4):
        result = synthesize_image(board, np.random.default_rng(seed), config)
        for label in result.labels:
            x1, y1, x2, y2 = label["tight"]
            box = (max(x1 - 48, 0), max(y1 - 48, 0), min(x2 + 48, 160), min(y2 + 48, 160))
            assert tuple(label["box"]) == box
            clipped += box != (x1 - 48, y1 - 48, x2 + 48, y2 + 48)
    assert clipped > 0


def _same(a: SynthImage, b: SynthImage) -> bool:
    if a.image.tobytes() != b.image.tobytes() or len(a.labels) != len(b.labels):
        return False
    for la, lb in zip(a.labels, b.labels, strict=True):
        if {k: v for k, v in la.items() if k != "mask"} != {
                k: v for k, v in lb.items() if k != "mask"}:
            return False
        if not np.array_equal(la["mask"], lb["mask"]):
            return False
    return a.nuisance == b.nuisance


def test_same_seed_same_bytes_and_labels(boards) -> None:
    first = synthesize_image(boards[2], np.random.default_rng(42))
    again = synthesize_image(boards[2], np.random.default_rng(42))
    assert _same(first, again)
    other = synthesize_image(boards[2], np.random.default_rng(43))
    assert other.image.tobytes() != first.image.tobytes()
    assert [lab["box"] for lab in other.labels] != [lab["box"] for lab in first.labels]


def test_a_given_analysis_gives_the_same_result_and_stays_unchanged(boards) -> None:
    analysis = analyze_board(boards[2])
    for value in vars(analysis).values():
        if isinstance(value, np.ndarray):
            value.flags.writeable = False  # any write into it would raise
    shared = synthesize_image(boards[2], np.random.default_rng(42), analysis=analysis)
    assert _same(shared, synthesize_image(boards[2], np.random.default_rng(42)))


def test_board_is_not_modified(boards) -> None:
    board = boards[3].copy()
    synthesize_image(board, np.random.default_rng(0))
    np.testing.assert_array_equal(board, boards[3])


@pytest.fixture(scope="module")
def changed_px(boards) -> dict[str, list[int]]:
    """Per class, each defect's size as DeepPCB's pairs show it: the 3x3-opened
    template/tested difference inside its box (12 defects asked on each of 60 images,
    none of them defect-free)."""
    config = SynthConfig(defects_per_image=(12, 12), defect_free_share=0.0)
    sizes: dict[str, list[int]] = defaultdict(list)
    for k, board in boards.items():
        for rep in range(6):
            result = synthesize_image(board, np.random.default_rng([k, rep]), config)
            thick = _opened_difference(result.template, result.image)
            for label in result.labels:
                x1, y1, x2, y2 = label["box"]
                sizes[label["label"]].append(int(thick[y1:y2, x1:x2].sum()))
    return sizes


@pytest.mark.parametrize(
    "name",
    list(DEEPPCB_MEDIAN_PX),
)
def test_changed_pixel_median_is_within_40_percent_of_deeppcb(changed_px, name) -> None:
    sizes = changed_px[name]
    assert len(sizes) >= 80, len(sizes)
    ratio = float(np.median(sizes)) / DEEPPCB_MEDIAN_PX[name]
    assert 0.6 <= ratio <= 1.4, ratio


def test_every_class_is_placed(changed_px) -> None:
    assert set(changed_px) == set(DEEPPCB_MEDIAN_PX)


def test_only_the_configured_classes(boards) -> None:
    config = SynthConfig(classes="spur,short", defects_per_image=(6, 6))
    assert config.classes == (DefectClass.spur, DefectClass.short)
    seen = set()
    for k in range(3):
        result = synthesize_image(boards[k], np.random.default_rng(k), config)
        seen |= {label["label"] for label in result.labels}
        assert set(result.dropped) <= {"spur", "short"}
    assert seen == {"spur", "short"}


def test_class_weights_set_the_share_of_each_class(boards) -> None:
    config = SynthConfig(classes="spur,short,open", class_weights=(1.0, 0.0, 3.0),
                         defects_per_image=(8, 8), nuisance={"enabled": False})
    wanted = {"spur": 0, "short": 0, "open": 0}
    for k in range(4):
        result = synthesize_image(boards[k], np.random.default_rng(k), config)
        for label in result.labels:
            wanted[label["label"]] += 1
        for name, count in result.dropped.items():
            wanted[name] += count
    assert wanted["short"] == 0
    assert wanted["open"] > 2 * wanted["spur"] > 0


def test_no_class_weights_keeps_the_uniform_draw(boards) -> None:
    """``class_weights=None`` is the original draw: the same seed, the same bytes."""
    plain = synthesize_image(boards[0], np.random.default_rng(5), SynthConfig())
    uniform = synthesize_image(boards[0], np.random.default_rng(5),
                               SynthConfig(class_weights=None))
    assert np.array_equal(plain.image, uniform.image)


@pytest.mark.parametrize("weights", [(1.0,), (1.0, -1.0, 1.0, 1.0, 1.0, 1.0), (0.0,) * 6])
def test_bad_class_weights_are_refused(weights) -> None:
    with pytest.raises(pydantic.ValidationError, match="class_weights"):
        SynthConfig(class_weights=weights)


def _bars(gap: int, copper: str = "dark") -> np.ndarray:
    """Two 20 px copper bars ``gap`` px apart on substrate (gray, 0 and 255)."""
    on, off = (0, 255) if copper == "dark" else (255, 0)
    image = np.full((60, 80), off, np.uint8)
    image[10:50, 10:30] = on
    image[10:50, 30 + gap:50 + gap] = on
    return image


def _gap(image: np.ndarray, copper: str = "dark") -> int:
    row = image[30] < 128 if copper == "dark" else image[30] >= 128
    cols = np.flatnonzero(row)
    return int(np.diff(cols).max() - 1)


@pytest.mark.parametrize("copper", ["dark", "light"])
def test_etch_board_narrows_or_widens_the_clearance(copper) -> None:
    board = _bars(10, copper)
    assert _gap(etch_board(board, 2, copper), copper) == 6  # copper grew 2 px on each side
    assert _gap(etch_board(board, -2, copper), copper) == 14
    assert set(np.unique(etch_board(board, 3, copper))) <= {0, 255}  # levels kept
    assert etch_board(board, 0, copper) is board
    np.testing.assert_array_equal(board, _bars(10, copper))  # the input is not modified
    with pytest.raises(ValueError, match="copper"):
        etch_board(board, 1, "shiny")


def test_draw_etch_draws_only_from_a_range() -> None:
    rng = np.random.default_rng(0)
    assert draw_etch(SynthConfig(etch_px=(2, 2)), rng) == 2
    assert draw_etch(SynthConfig(), rng) == 0
    assert rng.integers(1 << 30) == np.random.default_rng(0).integers(1 << 30)  # untouched
    drawn = {draw_etch(SynthConfig(etch_px=(-1, 1)), rng) for _ in range(60)}
    assert drawn == {-1, 0, 1}


def test_etched_board_is_the_template_and_labels_hold_on_it(boards) -> None:
    config = SynthConfig(etch_px=(2, 2))
    result = synthesize_image(boards[1], np.random.default_rng(7), config)
    np.testing.assert_array_equal(result.template, etch_board(boards[1], 2))
    assert _binary(result.template).sum() > _binary(boards[1]).sum()  # more copper
    assert result.labels
    before, after = _binary(result.template), _binary(result.image)
    for label in result.labels:
        x1, y1, x2, y2 = label["box"]
        ok, why = check_topology(label["label"], before[y1:y2, x1:x2], after[y1:y2, x1:x2])
        assert ok, (label["label"], label["box"], why)
    # An analysis of the etched board, given, gives the same result.
    rng = np.random.default_rng(7)
    etched = etch_board(boards[1], draw_etch(config, rng))
    shared = synthesize_image(etched, rng, config, analysis=analyze_board(etched))
    assert _same(shared, result)
    # No etch is the default draw: the same seed, the same bytes.
    plain = synthesize_image(boards[0], np.random.default_rng(5), SynthConfig())
    assert _same(plain, synthesize_image(boards[0], np.random.default_rng(5),
                                         SynthConfig(etch_px=(0, 0))))


@pytest.mark.parametrize("etch", [(1, 0), (-9, 0), (0, 9)])
def test_bad_etch_ranges_are_refused(etch) -> None:
    with pytest.raises(pydantic.ValidationError, match="etch_px"):
        SynthConfig(etch_px=etch)


def _coloured(board: np.ndarray, seed: int, kind: str) -> np.ndarray:
    """A procedural board as a textured, blurred gray or BGR image."""
    rng = np.random.default_rng(seed)
    copper = board == 0
    if kind == "bgr":  # light copper on a green substrate
        image = np.where(copper[..., None], np.float32([60, 120, 180]),
                         np.float32([40, 90, 30]))
    else:  # dark copper on light substrate
        image = np.where(copper, np.float32(70), np.float32(190))
    image = image + rng.normal(0.0, 6.0, image.shape)
    image = cv2.GaussianBlur(image.astype(np.float32), (0, 0), 1.0)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


COLOUR_KINDS = {"bgr": "light", "gray": "dark"}  # image kind -> which side copper is


@pytest.mark.parametrize("kind", list(COLOUR_KINDS))
def test_gray_and_colour_boards_pass_topology_by_their_own_threshold(boards, kind) -> None:
    side = COLOUR_KINDS[kind]
    config = SynthConfig(copper=side)
    placed = 0
    for k in range(3):
        image = _coloured(boards[k], 50 + k, kind)
        result = synthesize_image(image, np.random.default_rng(k), config)
        assert not result.binary
        assert result.image.dtype == np.uint8 and result.image.shape == image.shape
        np.testing.assert_array_equal(result.template, image)
        before, after = copper_mask(result.template, side), copper_mask(result.image, side)
        for label in result.labels:
            x1, y1, x2, y2 = label["box"]
            ok, why = check_topology(label["label"], before[y1:y2, x1:x2], after[y1:y2, x1:x2])
            assert ok, (kind, k, label["label"], why)
        placed += len(result.labels)
    assert placed >= 12


def _colour_case(boards, kind: str):
    side = COLOUR_KINDS[kind]
    image = _coloured(boards[4], 7, kind)
    result = synthesize_image(image, np.random.default_rng(1),
                              SynthConfig(copper=side, nuisance={"enabled": False}))
    assert result.labels
    return analyze_board(image, copper=side), result


def _as_pixels(image: np.ndarray) -> np.ndarray:
    """(H, W, C) float view of a gray or BGR image."""
    return image.reshape(*image.shape[:2], -1).astype(np.float64)


@pytest.mark.parametrize("kind", list(COLOUR_KINDS))
def test_defects_on_colour_boards_take_the_board_colours(boards, kind) -> None:
    a, result = _colour_case(boards, kind)
    tested = _as_pixels(result.image)
    for label in result.labels:
        adds = DEFECTS[label["label"]].adds_copper
        target = a.copper_colour if adds else a.substrate_colour
        # Inside: the colour of the other side, with its texture (not a flat fill).
        inside = tested[label["mask"]]
        assert np.abs(inside.mean(axis=0) - target).max() < 8.0, label["label"]
        assert inside.std(axis=0).max() > 0.5 * (a.copper_noise if adds else a.substrate_noise)


@pytest.mark.parametrize("kind", list(COLOUR_KINDS))
def test_defect_edges_blend_all_round(boards, kind) -> None:
    a, result = _colour_case(boards, kind)
    tested, template = _as_pixels(result.image), _as_pixels(result.template)
    for label in result.labels:
        mask = label["mask"].astype(np.uint8)
        adds = DEFECTS[label["label"]].adds_copper
        target = a.copper_colour if adds else a.substrate_colour
        # The 1 px ring round the defect, on the side it grows into, moves part way to
        # the defect's colour: the edge looks like the board's own edges, not pasted.
        ring = (cv2.dilate(mask, _KERNEL3) > 0) & (mask == 0)
        ring &= (a.copper == 0) if adds else (a.copper == 1)
        before, after = template[ring], tested[ring]
        towards = target - before
        moved = ((after - before) * towards).sum(axis=1) / (towards ** 2).sum(axis=1)
        assert 0.05 < float(np.median(moved)) < 0.95, (label["label"], np.median(moved))
        # The outermost ring pixels (beyond the defect's bounding box) blend too.
        x1, y1, x2, y2 = label["tight"]
        outside = ring.copy()
        outside[y1:y2, x1:x2] = False
        assert (np.abs(tested[outside] - template[outside]).max(axis=1) > 0).mean() > 0.5


@pytest.mark.parametrize(
    "kwargs",
    [
        {"classes": "spur,scratch"},
        {"classes": ["open", "Open"]},
        {"classes": ""},
        {"defects_per_image": (5, 2)},
        {"defects_per_image": (0, 3)},
        {"px_per_mm": 0},
        {"box_margin_mm": -1},
        {"box": "loose"},
        {"copper": "shiny"},
        {"tries": 0},
        {"colour": "red"},
        {"nuisance": {"enabled": True, "shake": 1}},
        {"augment": {"preset": "nonexistent"}},
    ],
    ids=["unknown_class", "wrong_case_class", "no_class", "min_above_max", "zero_min",
         "zero_px_per_mm", "negative_margin", "bad_box", "bad_copper", "zero_tries",
         "extra_key", "extra_nuisance_key", "unknown_augment_preset"],
)
def test_config_rejects_bad_values(kwargs) -> None:
    with pytest.raises(pydantic.ValidationError):
        SynthConfig(**kwargs)


def test_unknown_class_error_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown defect class 'scratch'") as err:
        SynthConfig(classes="spur,scratch")
    assert all(c.value in str(err.value) for c in DefectClass)


# --- defects per megapixel ------------------------------------------------------------

#: The density that asks of a 640 x 640 tile (0.4096 MP) what the default count does.
TILE_DENSITY = (7.3, 29.3)


@pytest.mark.parametrize(
    ("density", "shape", "expected"),
    [(TILE_DENSITY, (640, 640), (3, 12)), (TILE_DENSITY, (2560, 2560), (48, 192)),
     (TILE_DENSITY, (3200, 3840), (90, MAX_DEFECTS)), (TILE_DENSITY, (64, 64), (1, 1)),
     ((10.0, 10.0), (500, 500), (3, 3)), ((2.0, 6.0), (1000, 1000, 3), (2, 6))],
    ids=["tile", "16_tiles", "large_board_capped", "tiny_at_least_one", "half_rounds_up",
         "colour_shape"],
)
def test_defect_count_range_is_density_times_megapixels(density, shape, expected) -> None:
    assert defect_count_range(SynthConfig(defects_per_mp=density), shape) == expected


def test_a_count_per_image_ignores_the_size() -> None:
    config = SynthConfig(defects_per_image=(2, 5))
    assert defect_count_range(config, (640, 640)) == defect_count_range(config, (4000, 4000))


def test_count_scales_with_the_board_area(board) -> None:
    """The same density asks ~16 times as many defects of a 2560 x 2560 board as of a
    640 x 640 tile (to the rounding), and they are placed."""
    config = SynthConfig(defects_per_mp=(20.0, 20.0), defect_free_share=0.0)
    large = np.tile(board, (4, 4))  # 16 tiles: a board with the tile's density of features
    small_made = synthesize_image(board, np.random.default_rng(5), config)
    large_made = synthesize_image(large, np.random.default_rng(5), config)
    assert small_made.requested == round(20 * 0.4096) == 8
    assert large_made.requested == round(20 * 6.5536) == 131
    assert abs(large_made.requested - 16 * 20 * 0.4096) <= 0.5
    assert len(large_made.labels) >= 0.9 * large_made.requested
    assert len(large_made.labels) / max(len(small_made.labels), 1) > 12


def test_the_tile_density_draws_what_the_default_count_draws_on_a_tile(boards) -> None:
    """A density that gives a tile the default's 3-12 makes the same draws: same bytes."""
    for seed in (42, 43):
        default = synthesize_image(boards[2], np.random.default_rng(seed))
        density = synthesize_image(boards[2], np.random.default_rng(seed),
                                   SynthConfig(defects_per_mp=TILE_DENSITY))
        assert _same(default, density)


def test_density_replaces_the_default_count_and_not_a_given_one() -> None:
    config = SynthConfig(defects_per_mp=TILE_DENSITY)
    assert config.defects_per_image is None
    assert SynthConfig.model_validate_json(config.model_dump_json()) == config
    assert SynthConfig().defects_per_image == (3, 12) and SynthConfig().defects_per_mp is None
    with pytest.raises(pydantic.ValidationError, match="defects_per_image or defects_per_mp, "
                                                       "not both"):
        SynthConfig(defects_per_image=(3, 12), defects_per_mp=TILE_DENSITY)
    with pytest.raises(pydantic.ValidationError, match="got neither"):
        SynthConfig(defects_per_image=None)


@pytest.mark.parametrize("density", [(0.0, 5.0), (5.0, 2.0), (-1.0, 2.0), (1.0, float("inf"))],
                         ids=["zero", "min_above_max", "negative", "infinite"])
def test_bad_densities_are_refused(density) -> None:
    with pytest.raises(pydantic.ValidationError, match="defects per megapixel"):
        SynthConfig(defects_per_mp=density)


def test_config_round_trips_through_json() -> None:
    config = SynthConfig(classes="pin-hole,open", defects_per_image=(2, 4), box="tight")
    again = SynthConfig.model_validate_json(config.model_dump_json())
    assert again == config
    assert again.classes == (DefectClass.pin_hole, DefectClass.open)


def test_defects_are_painted_pixel_exact_after_the_scan_on_binary_boards(boards) -> None:
    """Painted (the default): every pixel of a label's mask holds the other side's value
    exactly (no JPEG step here to soften it); drawn before the scan, the blur and
    re-threshold of the acquisition nuisance move some of them."""
    nuisance = {"jpeg_prob": 0.0, "offset_min_px": 0.9, "offset_max_px": 0.9}
    off_value = 0
    for seed in range(4):
        for painted in (True, False):
            config = SynthConfig(nuisance=nuisance, painted_defects=painted,
                                 defect_free_share=0.0)
            made = synthesize_image(boards[seed % len(boards)],
                                    np.random.default_rng(seed), config)
            assert made.binary and made.labels
            for label in made.labels:
                expected = 0 if DEFECTS[label["label"]].adds_copper else 255
                wrong = int((made.image[label["mask"]] != expected).sum())
                if painted:
                    assert wrong == 0, label["label"]
                else:
                    off_value += wrong
    assert off_value > 0


def test_brush_styles_reach_the_labels_and_can_be_turned_off(boards) -> None:
    """Every open asked stamped is drawn stamped (its params say so, its mask differs from
    the solid drawing of the same params and still passes the topology rule); with the
    brush off no defect carries a style."""
    from pcbforge.synth.defects import draw_strokes, stroke_bounds

    stamped = SynthConfig(classes="open", defects_per_image=(6, 6), defect_free_share=0.0,
                          brush={"probabilities": {"open": {"stamped": 1.0}},
                                 "heavy_share": 0.0, "spread": 0.0})
    changed = 0
    for seed in range(3):
        made = synthesize_image(boards[seed], np.random.default_rng(seed), stamped)
        assert made.labels
        for label in made.labels:
            params = label["params"]
            assert params["brush"]["name"] == "stamped"
            x0, y0, x1, y1 = stroke_bounds(params)
            solid = dict(params, brush={"name": "solid"})
            drawn = draw_strokes(params, (x0, y0), (y1 - y0, x1 - x0))
            changed += int(not np.array_equal(drawn, draw_strokes(solid, (x0, y0),
                                                                  (y1 - y0, x1 - x0))))
    assert changed > 0
    off = SynthConfig(brush={"probabilities": {}, "heavy_share": 0.0}, defect_free_share=0.0)
    made = synthesize_image(boards[0], np.random.default_rng(0), off)
    assert made.labels and all("brush" not in label["params"] for label in made.labels)
