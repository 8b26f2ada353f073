"""Box geometry shared by every layer."""

from __future__ import annotations

import math

import pytest

from pcbforge.core.boxes import iou


def test_iou_of_exclusive_end_boxes() -> None:
    box = (0, 0, 100, 100)
    assert iou(box, box) == 1.0
    assert iou(box, (0, 0, 50, 100)) == pytest.approx(0.5)
    assert iou(box, (100, 0, 200, 100)) == 0.0  # touching edges share no area
    assert iou(box, (50, 50, 150, 150)) == pytest.approx(2500 / 17500)
    assert iou((0, 0, 10, 10, "ignored", 0.9), (0, 0, 10, 5)) == pytest.approx(0.5)


def test_iou_of_nothing_is_zero() -> None:
    assert iou((5, 5, 5, 5), (5, 5, 5, 5)) == 0.0  # empty boxes
    assert iou((math.nan, 0, 10, 10), (0, 0, 10, 10)) == 0.0  # a finding with no region
