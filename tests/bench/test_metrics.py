"""DeepPCB's protocol on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from pcbforge.bench.metrics import Detection, Truth, evaluate, match
from pcbforge.core.boxes import iou
from pcbforge.evaluate.metrics import average_precision

CLASSES = ("open", "short")
GT = (0.0, 0.0, 100.0, 100.0)


def test_iou_of_known_boxes() -> None:
    assert iou(GT, GT) == 1.0
    assert iou(GT, (0, 0, 50, 100)) == pytest.approx(0.5)
    assert iou(GT, (100, 0, 200, 100)) == 0.0  # touching edges share no area
    assert iou(GT, (50, 50, 150, 150)) == pytest.approx(2500 / 17500)


def test_iou_of_exactly_033_is_not_a_match_and_just_above_is() -> None:
    truths = [Truth("a", "open", GT)]
    at = Detection("a", "open", 0.9, (0, 0, 33, 100))  # IoU 3300 / 10000 = 0.33
    above = Detection("a", "open", 0.9, (0, 0, 34, 100))  # 0.34
    assert iou(at.box, GT) == pytest.approx(0.33)
    assert match([at], truths).tolist() == [False]
    assert match([above], truths).tolist() == [True]


def test_a_box_of_another_class_is_a_false_positive() -> None:
    truths = [Truth("a", "short", GT)]
    result = evaluate([Detection("a", "open", 0.9, GT)], truths, CLASSES)
    assert result.ap == {"open": None, "short": 0.0}
    assert result.mean_ap == 0.0  # classes without ground truth are left out of the mean
    assert result.f_score == 0.0


def test_a_defect_found_twice_counts_once() -> None:
    truths = [Truth("a", "open", GT)]
    dets = [Detection("a", "open", 0.9, GT), Detection("a", "open", 0.8, (1, 1, 99, 99))]
    assert match(dets, truths).tolist() == [True, False]
    result = evaluate(dets, truths, CLASSES)
    assert result.ap["open"] == pytest.approx(1.0)  # recall 1 reached at precision 1
    # Best F at threshold 0.9: one TP, no FP -> 1.0; at 0.8 it would be 2/3.
    assert (result.f_score, result.threshold) == (pytest.approx(1.0), 0.9)


def test_the_higher_score_takes_the_truth() -> None:
    truths = [Truth("a", "open", GT)]
    dets = [Detection("a", "open", 0.5, GT), Detection("a", "open", 0.7, (0, 0, 60, 100))]
    assert match(dets, truths).tolist() == [False, True]


def test_detections_on_an_image_without_defects_are_false_positives() -> None:
    truths = [Truth("a", "open", GT)]
    dets = [Detection("empty", "open", 0.95, GT), Detection("a", "open", 0.9, GT)]
    result = evaluate(dets, truths, CLASSES)
    # Ranked: FP (p 0), TP (p 1/2, r 1) -> envelope 1/2 over recall 0..1.
    assert result.ap["open"] == pytest.approx(0.5)
    assert result.f_score == pytest.approx(2 * 0.5 * 1 / 1.5)


def test_average_precision_by_hand() -> None:
    # Two truths; ranked TP, FP, TP: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1.
    # Envelope: 1 over recall 0..1/2, 2/3 over 1/2..1 -> 0.5 + 1/3.
    assert average_precision(np.array([True, False, True]), 2) == (
        pytest.approx(0.5 + 1 / 3))
    truths = [Truth("a", "open", GT), Truth("b", "open", GT)]
    dets = [Detection("a", "open", 0.9, GT), Detection("c", "open", 0.8, GT),
            Detection("b", "open", 0.7, GT)]
    result = evaluate(dets, truths, CLASSES)
    assert result.ap["open"] == pytest.approx(0.5 + 1 / 3)
    assert result.counts["open"] == {"truths": 2, "detections": 3}


def test_missed_class_has_zero_ap_and_pulls_the_mean_down() -> None:
    truths = [Truth("a", "open", GT), Truth("a", "short", (200, 200, 260, 260))]
    result = evaluate([Detection("a", "open", 0.9, GT)], truths, CLASSES)
    assert result.ap == {"open": pytest.approx(1.0), "short": 0.0}
    assert result.mean_ap == pytest.approx(0.5)
    assert result.recall == pytest.approx(0.5) and result.precision == pytest.approx(1.0)


def test_no_detections_and_no_truths() -> None:
    assert evaluate([], [Truth("a", "open", GT)], CLASSES).ap["open"] == 0.0
    empty = evaluate([], [], CLASSES)
    assert empty.ap == {"open": None, "short": None} and empty.f_score == 0.0


def test_unknown_detection_class_raises() -> None:
    with pytest.raises(ValueError, match="unknown classes"):
        evaluate([Detection("a", "scratch", 0.9, GT)], [], CLASSES)


def test_average_precision_needs_truths() -> None:
    with pytest.raises(ValueError, match="at least one"):
        average_precision(np.array([True]), 0)


def test_best_truth_takes_the_largest_overlap_above_the_threshold() -> None:
    from pcbforge.bench.metrics import best_truth

    truths = [(0, 0, 50, 100, "open"), (0, 0, 100, 100, "short"), (0, 0, 100, 100, "spur")]
    assert best_truth(GT, truths) == 1  # IoU 1.0; the tie with index 2 goes to the first
    assert best_truth((0, 0, 33, 100), truths[1:]) == -1  # IoU exactly 0.33
    assert best_truth(GT, []) == -1
