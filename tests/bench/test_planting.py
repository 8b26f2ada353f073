"""Planted errors for the qa benchmark: seeded sampling, deterministic application, a
source folder never touched, and the scoring of hand-made findings tables."""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from pcbforge.bench.planting import (
    MOVE_PX,
    PLANT_KINDS,
    ROTATE_DEG,
    SHIFT_PX,
    SWAP,
    PlantKind,
    annotation_text,
    choose_plan,
    finding_matches,
    layout_pairs,
    plant_boxes,
    plant_kind,
    plant_template,
    registration_errors,
    sample_plant,
    score_findings,
    select_pairs,
    unchanged_under,
    with_registration_flags,
    write_planted_copy,
)
from pcbforge.core.boxes import iou
from pcbforge.datasets.qa_tables import findings_table
from pcbforge.synth.boards import add_local_defect, draw_board
from tests.conftest import write_deeppcb_layout

SIZE = 320


def _pair(seed: int, kinds=("spur", "open")) -> tuple[np.ndarray, np.ndarray, list]:
    """A binarized board, the same with real drawn defects, and their loose boxes."""
    rng = np.random.default_rng(seed)
    template = draw_board(rng, SIZE)
    tested, boxes = template, []
    for kind in kinds:
        tested, (x1, y1, x2, y2) = add_local_defect(tested, rng, kind)
        boxes.append((max(x1 - 10, 0), max(y1 - 10, 0), min(x2 + 10, SIZE),
                      min(y2 + 10, SIZE), kind))
    return template, tested, boxes


def _write_layout(root: Path, tiles: dict[str, int]) -> None:
    ids = {"open": 1, "short": 2, "mousebite": 3, "spur": 4, "copper": 5, "pin-hole": 6}

    def make_pair(index: int):
        template, tested, boxes = _pair(index)
        text = "".join(f"{x1} {y1} {x2} {y2} {ids[k]}\n" for x1, y1, x2, y2, k in boxes)
        return template, tested, text, len(boxes)

    write_deeppcb_layout(root, tiles, np.random.default_rng(0), make_pair=make_pair)


def _digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("layout") / "src"
    _write_layout(root, {"group00001": 8, "group00002": 4})
    return root


# --- sampling ---------------------------------------------------------------------------

def test_plan_draws_pairs_without_replacement_and_kinds_in_equal_shares() -> None:
    plan = choose_plan(100, np.random.default_rng(0), share=0.5)
    assert len(plan) == 50
    assert len({p for p, _ in plan}) == 50
    counts = Counter(k for _, k in plan)
    assert set(counts) == set(PLANT_KINDS)
    assert max(counts.values()) - min(counts.values()) <= 1
    assert plan == choose_plan(100, np.random.default_rng(0), share=0.5)
    assert plan != choose_plan(100, np.random.default_rng(1), share=0.5)


@pytest.mark.parametrize("share", [0.0, -0.1, 1.5], ids=["none", "negative", "over-one"])
def test_plan_share_bounds(share: float) -> None:
    if share == 0.0:
        assert choose_plan(10, np.random.default_rng(0), share=share) == []
    else:
        with pytest.raises(ValueError, match="share"):
            choose_plan(10, np.random.default_rng(0), share=share)


def test_unknown_kind_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="valid kinds: moved, phantom"):
        plant_kind("bent")


def test_swap_is_an_involution_across_polarities() -> None:
    removes = {"open", "mousebite", "pin-hole"}
    for name, other in SWAP.items():
        assert SWAP[other] == name
        assert (name in removes) != (other in removes)


@pytest.mark.parametrize("seed", range(5))
def test_moved_box_lands_far_on_unchanged_pixels(seed: int) -> None:
    template, tested, boxes = _pair(seed)
    plant, why = sample_plant(PlantKind.MOVED, np.random.default_rng(seed), template, tested,
                              boxes)
    assert plant is not None, why
    before, after = plant["before"], plant["after"]
    offset = math.hypot(after[0] - before[0], after[1] - before[1])
    assert MOVE_PX[0] - 1 <= offset <= MOVE_PX[1] + 1
    assert (after[2] - after[0], after[3] - after[1]) == (before[2] - before[0],
                                                           before[3] - before[1])
    assert 0 <= after[0] and 0 <= after[1] and after[2] <= SIZE and after[3] <= SIZE
    assert unchanged_under(template, tested, after)
    assert all(iou(after, b) == 0 for b in boxes)
    moved = plant_boxes(boxes, plant)
    assert moved[plant["box_index"]] == (*after, boxes[plant["box_index"]][4])
    assert len(moved) == len(boxes)


def test_unchanged_under_sees_a_defect() -> None:
    template, tested, boxes = _pair(0)
    assert not unchanged_under(template, tested, boxes[0])


def test_phantom_has_a_size_of_the_pool_and_an_unchanged_place() -> None:
    template, tested, boxes = _pair(1)
    plant, why = sample_plant("phantom", np.random.default_rng(3), template, tested, boxes,
                              [(25, 31)])
    assert plant is not None, why
    x1, y1, x2, y2 = plant["after"]
    assert (x2 - x1, y2 - y1) == (25, 31)
    assert unchanged_under(template, tested, plant["after"])
    assert plant["new_label"] in SWAP
    assert plant_boxes(boxes, plant)[-1] == (x1, y1, x2, y2, plant["new_label"])


def test_no_place_on_a_changed_image_is_a_skip() -> None:
    template = np.full((200, 200), 255, np.uint8)
    tested = np.zeros_like(template)  # every pixel differs
    plant, why = sample_plant("phantom", np.random.default_rng(0), template, tested,
                              [(10, 10, 40, 40, "open")])
    assert plant is None and "no unchanged place" in why
    plant, why = sample_plant("deleted", np.random.default_rng(0), template, tested, [])
    assert plant is None and "no box" in why


def test_deleted_and_swapped_change_one_box() -> None:
    template, tested, boxes = _pair(2, ("spur", "open", "short"))
    deleted, _ = sample_plant("deleted", np.random.default_rng(0), template, tested, boxes)
    after = plant_boxes(boxes, deleted)
    assert len(after) == len(boxes) - 1
    assert tuple(deleted["before"]) + (deleted["label"],) not in after
    swapped, _ = sample_plant("swapped", np.random.default_rng(0), template, tested, boxes)
    after = plant_boxes(boxes, swapped)
    index = swapped["box_index"]
    assert after[index][4] == SWAP[boxes[index][4]] == swapped["new_label"]
    assert [b for i, b in enumerate(after) if i != index] == \
        [b for i, b in enumerate(boxes) if i != index]


@pytest.mark.parametrize("seed", range(8))
def test_template_kinds_draw_magnitudes_in_range(seed: int) -> None:
    template, tested, boxes = _pair(0)
    shifted, _ = sample_plant("shifted", np.random.default_rng(seed), template, tested, boxes)
    assert all(SHIFT_PX[0] <= abs(v) <= SHIFT_PX[1] for v in shifted["shift"])
    assert shifted["expected"] == [-shifted["shift"][0], -shifted["shift"][1], 0.0]
    rotated, _ = sample_plant("rotated", np.random.default_rng(seed), template, tested, boxes)
    assert ROTATE_DEG[0] <= abs(rotated["rotation_deg"]) <= ROTATE_DEG[1]
    assert rotated["expected"] == [0.0, 0.0, -rotated["rotation_deg"]]
    assert plant_boxes(boxes, shifted) == boxes == plant_boxes(boxes, rotated)


def test_shift_moves_the_content_and_replicates_the_border() -> None:
    template, _, _ = _pair(0)
    plant = {"kind": "shifted", "shift": [3.0, -2.0], "rotation_deg": 0.0}
    shifted = plant_template(template, plant)
    # Content at (x, y) moves to (x + 3, y - 2).
    assert np.array_equal(shifted[0:SIZE - 2, 3:], template[2:, :SIZE - 3])
    assert np.array_equal(shifted[:SIZE - 2, 0], template[2:, 0])  # border replicated


def test_rotation_is_undone_by_the_expected_registration() -> None:
    template, _, _ = _pair(0)
    plant = {"kind": "rotated", "shift": [0.0, 0.0], "rotation_deg": 1.2}
    rotated = plant_template(template, plant)
    assert (rotated != template).mean() > 0.02
    back = cv2.warpAffine(rotated, cv2.getRotationMatrix2D(((SIZE - 1) / 2, (SIZE - 1) / 2),
                                                           -1.2, 1.0), (SIZE, SIZE))
    inner = slice(20, SIZE - 20)
    assert (np.abs(back[inner, inner].astype(int) - template[inner, inner]) > 128).mean() < 0.01


def test_label_kinds_leave_the_template_alone() -> None:
    template, _, _ = _pair(0)
    assert plant_template(template, {"kind": "moved"}) is template


# --- label files --------------------------------------------------------------------------

TEXT = "10 10 40 40 1\n\n50,50,80,90,4\n100 100 120 130 6\n"
BOXES = [(10, 10, 40, 40, "open"), (50, 50, 80, 90, "spur"), (100, 100, 120, 130, "pin-hole")]


@pytest.mark.parametrize(("plant", "expected"), [
    ({"kind": "moved", "box_index": 1, "after": [150, 60, 180, 100], "new_label": "spur"},
     "10 10 40 40 1\n\n150,60,180,100,4\n100 100 120 130 6\n"),
    ({"kind": "swapped", "box_index": 0, "after": [10, 10, 40, 40], "new_label": "short"},
     "10 10 40 40 2\n\n50,50,80,90,4\n100 100 120 130 6\n"),
    ({"kind": "deleted", "box_index": 2},
     "10 10 40 40 1\n\n50,50,80,90,4\n"),
    ({"kind": "phantom", "box_index": -1, "after": [200, 200, 230, 220],
      "new_label": "copper"},
     TEXT + "200 200 230 220 5\n"),
], ids=["moved", "swapped", "deleted", "phantom"])
def test_annotation_text_changes_one_line_only(plant: dict, expected: str) -> None:
    assert annotation_text(TEXT, BOXES, plant) == expected


# --- the folder ---------------------------------------------------------------------------

def test_planted_copy_is_seeded_and_leaves_the_source_alone(layout: Path,
                                                            tmp_path: Path) -> None:
    before = _digest(layout)
    pairs = layout_pairs(layout)
    assert len(pairs) == 12
    assert layout_pairs(layout, {"group00002"}) == [p for p in pairs if "group00002" in p]
    assert select_pairs(pairs, 5) == [pairs[i] for i in (0, 3, 6, 8, 11)]
    truth_a = write_planted_copy(layout, tmp_path / "a", pairs, seed=4, share=1.0)
    truth_b = write_planted_copy(layout, tmp_path / "b", pairs, seed=4, share=1.0)
    truth_c = write_planted_copy(layout, tmp_path / "c", pairs, seed=5, share=1.0)
    assert truth_c != truth_a
    assert _digest(layout) == before
    assert truth_a == truth_b
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")
    assert len(truth_a) == 12 and {t["pair"] for t in truth_a} == set(pairs)
    assert Counter(t["kind"] for t in truth_a) == {k.value: 2 for k in PLANT_KINDS}
    planted = [t for t in truth_a if t["status"] == "planted"]
    assert len(planted) >= 10
    changed = {name for name, digest in _digest(tmp_path / "a").items()
               if before.get(name) != digest}
    # Every planted pair changed exactly one file: its labels or its template.
    expected = set()
    for t in planted:
        group, tile, name = t["pair"].split("/")
        expected.add(f"{group}/{tile}/{name}_temp.jpg" if t["kind"] in ("shifted", "rotated")
                     else f"{group}/{tile}_not/{name}.txt")
    assert changed == expected
    from pcbforge.datasets.deeppcb import read_deeppcb

    read = read_deeppcb(tmp_path / "a")
    assert not read.problems
    assert (read.samples["role"] == "tested").sum() == 12


def test_half_share_plants_half_and_copies_the_rest(layout: Path, tmp_path: Path) -> None:
    pairs = layout_pairs(layout)
    truth = write_planted_copy(layout, tmp_path / "a", pairs, seed=0, share=0.5)
    assert len(truth) == 6
    assert (tmp_path / "a" / "trainval.txt").read_text() == (layout / "trainval.txt").read_text()
    kept = select_pairs(pairs, 3)
    write_planted_copy(layout, tmp_path / "b", kept, seed=0, share=0.0)
    assert len((tmp_path / "b" / "trainval.txt").read_text().splitlines()) == 3


# --- matching -----------------------------------------------------------------------------

def _finding(sample: str, kind: str, box, **extra) -> dict:
    nan = float("nan")
    x1, y1, x2, y2 = box if box is not None else (nan,) * 4
    row = {"finding_id": f"{sample}-{kind}-{x1}", "sample_id": sample, "kind": kind,
           "detail": "", "score": 0.9, "reason": "", "label_row": -1, "label": "",
           "x1": x1, "y1": y1, "x2": x2, "y2": y2, "action": "none", "proposed_label": "",
           "px1": nan, "py1": nan, "px2": nan, "py2": nan}
    row.update(extra)
    return row


def _truth() -> list[dict]:
    base = {"status": "planted", "shift": None, "rotation_deg": None, "expected": None}
    return [
        {**base, "sample_id": "s1", "pair": "p1", "kind": "moved", "before": [10, 10, 40, 40],
         "after": [200, 10, 230, 40], "label": "open", "new_label": "open"},
        {**base, "sample_id": "s2", "pair": "p2", "kind": "moved", "before": [10, 10, 40, 40],
         "after": [10, 200, 40, 230], "label": "open", "new_label": "open"},
        {**base, "sample_id": "s3", "pair": "p3", "kind": "deleted", "before": [50, 50, 80, 80],
         "after": None, "label": "short", "new_label": ""},
        {**base, "sample_id": "s4", "pair": "p4", "kind": "swapped", "before": [5, 5, 25, 25],
         "after": [5, 5, 25, 25], "label": "spur", "new_label": "mousebite"},
        {**base, "sample_id": "s5", "pair": "p5", "kind": "phantom", "before": None,
         "after": [300, 300, 330, 330], "label": "", "new_label": "copper"},
        {**base, "sample_id": "s6", "pair": "p6", "kind": "shifted", "shift": [3.0, -4.0],
         "rotation_deg": 0.0, "expected": [-3.0, 4.0, 0.0], "before": None, "after": None},
        {**base, "sample_id": "s7", "pair": "p7", "kind": "rotated", "shift": [0.0, 0.0],
         "rotation_deg": 1.0, "expected": [0.0, 0.0, -1.0], "before": None, "after": None},
        {"sample_id": "s8", "pair": "p8", "kind": "phantom", "status": "skipped"},
    ]


def test_scores_of_a_hand_made_findings_table() -> None:
    planted = findings_table([
        # s1: moved, found with the right proposal; s2: only an empty box (wrong kind).
        _finding("s1", "misplaced_box", (200, 10, 230, 40), px1=11, py1=9, px2=41, py2=40),
        _finding("s2", "empty_box", (10, 200, 40, 230), action="delete"),
        # s3: deleted, found by a region inside the old box; its proposal is off.
        _finding("s3", "missing_label", (60, 60, 70, 70), action="add", px1=0, py1=0,
                 px2=10, py2=10),
        # s4: swapped, proposing the original class.
        _finding("s4", "class_suspect", (5, 5, 25, 25), proposed_label="spur"),
        # s5: phantom missed; an empty box elsewhere on an unplanted pair (new FP) and one
        # already found on the clean copy (known).
        _finding("s9", "empty_box", (0, 0, 10, 10)),
        _finding("s10", "empty_box", (100, 100, 130, 130)),
        # Missing labels: one on the shifted pair (FP on a planted pair), one known.
        _finding("s6", "missing_label", (400, 400, 420, 420), action="add"),
        _finding("s10", "missing_label", (1, 1, 9, 9), action="add"),
        # A note (a displaced feature: no label proposed) claims nothing: not counted.
        _finding("s9", "missing_label", (200, 200, 210, 210), detail="misregistration_like"),
        # s7 misregistered from the findings; s6 only from the registration table.
        _finding("s7", "misregistered", None),
        # A misregistered pair that is not planted (new FP).
        _finding("s11", "misregistered", None),
    ])
    clean = findings_table([
        _finding("s10", "empty_box", (101, 101, 131, 131)),
        _finding("s10", "missing_label", (0, 0, 10, 10), action="add"),
    ])
    registration = pd.DataFrame({"sample_id": ["s6", "s7"], "misregistered": [True, True],
                                 "reason": ["shift", "rotation"]})
    planted = with_registration_flags(planted, registration)
    assert (planted["kind"] == "misregistered").sum() == 3
    scores = score_findings(_truth(), planted, clean)
    moved = scores["moved"]
    assert (moved["planted"], moved["found"], moved["found_wrong_kind"]) == (2, 1, 1)
    assert moved["recall"] == 0.5 and moved["proposal_right"] == 1
    assert moved["precision_new"] == 1.0 and moved["missed"] == ["p2"]
    phantom = scores["phantom"]
    assert (phantom["planted"], phantom["found"], phantom["recall"]) == (1, 0, 0.0)
    # The empty box on moved s2 matches another planted error: neither true nor false.
    assert phantom["matched_other_kind"] == 1
    assert (phantom["false_positives_new"], phantom["false_positives_known"]) == (1, 1)
    assert phantom["precision_new"] == 0.0 and phantom["precision_raw"] == 0.0
    deleted = scores["deleted"]
    assert deleted["recall"] == 1.0 and deleted["proposal_right"] == 0
    assert deleted["true_positives"] == 1 and deleted["false_positives_new"] == 1
    assert deleted["fp_on_planted_pairs"] == 1 and deleted["false_positives_known"] == 1
    assert deleted["precision_new"] == 0.5 and deleted["precision_raw"] == pytest.approx(1 / 3)
    swapped = scores["swapped"]
    assert swapped["recall"] == 1.0 and swapped["proposal_right"] == 1
    for kind in ("shifted", "rotated"):
        assert scores[kind]["recall"] == 1.0
        assert scores[kind]["matched_other_kind"] == 1
        assert scores[kind]["false_positives_new"] == 1
        assert scores[kind]["precision_new"] == 0.5


def test_a_deleted_label_reported_only_as_a_note_is_found_wrong_kind() -> None:
    truth = [t for t in _truth() if t["sample_id"] == "s3"]
    note = _finding("s3", "missing_label", (60, 60, 70, 70), detail="misregistration_like")
    scores = score_findings(truth, findings_table([note]), findings_table([]),
                            (plant_kind("deleted"),))
    deleted = scores["deleted"]
    assert (deleted["found"], deleted["found_wrong_kind"], deleted["recall"]) == (0, 1, 0.0)
    assert deleted["missed"] == ["p3"] and deleted["false_positives_new"] == 0


def test_matching_rules() -> None:
    truth = {t["sample_id"]: t for t in _truth()}
    # Deleted: a centre inside counts, a far region does not.
    assert finding_matches(truth["s3"], _finding("s3", "missing_label", (40, 40, 200, 200)))
    assert not finding_matches(truth["s3"], _finding("s3", "missing_label", (90, 90, 120, 120)))
    # Moved: the finding must sit on the moved box, not the original place.
    assert not finding_matches(truth["s1"], _finding("s1", "misplaced_box", (10, 10, 40, 40)))
    # A class suspect is not a deleted box.
    assert not finding_matches(truth["s3"], _finding("s3", "class_suspect", (50, 50, 80, 80)))


def test_registration_errors_use_the_clean_pair_as_zero() -> None:
    truth = _truth()
    clean = pd.DataFrame({"sample_id": ["s6", "s7"], "dx": [0.5, 0.0], "dy": [0.0, 0.0],
                          "rotation_deg": [0.0, 0.05]})
    planted = pd.DataFrame({"sample_id": ["s6", "s7"], "dx": [-2.5, 0.0], "dy": [4.0, 0.0],
                            "rotation_deg": [0.0, -0.80]})
    errors = registration_errors(truth, planted, clean)
    assert errors["shifted"]["n"] == 1
    assert errors["shifted"]["shift_error_px_p50"] == pytest.approx(0.0)
    assert errors["shifted"]["measured_right"] == 1
    assert errors["rotated"]["rotation_error_deg_p50"] == pytest.approx(0.15)
    assert errors["rotated"]["measured_right"] == 0
