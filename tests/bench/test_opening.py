"""The ``opening`` design's data preparation: thin changes vanish, thick ones are
candidates, crops carry tested, template and XOR."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from pcbforge.bench.opening import (
    CHANNELS,
    OpeningParams,
    difference,
    find_candidates,
    opened,
    pair_candidates,
    pair_samples,
)
from pcbforge.bench.reference import BACKGROUND, CROP
from pcbforge.datasets.deeppcb import DEEPPCB_CLASSES


def _blank(size: int = 200) -> np.ndarray:
    return np.full((size, size), 255, np.uint8)


def test_opening_drops_a_2px_band_but_keeps_a_4x4_blob() -> None:
    template = _blank()
    template[40:160, 50:80] = 0  # a pad
    tested = template.copy()
    tested[40:160, 80:82] = 0  # its edge 2 px further right: misregistration noise
    tested[120:124, 140:144] = 0  # a 4x4 speck of copper
    assert difference(tested, template).sum() == 120 * 2 + 16
    boxes, diff = find_candidates(tested, template)
    assert boxes == [(130, 110, 154, 134)]  # the blob, padded by 10 px
    assert diff.max() == 255 and (diff[40:160, 80:82] == 255).all()  # the XOR is unopened


def test_a_3px_band_survives_and_the_kernel_is_a_parameter() -> None:
    changed = np.zeros((50, 50), np.uint8)
    changed[10:40, 20:23] = 1
    assert opened(changed).sum() == 90
    assert opened(changed, 5).sum() == 0
    template = _blank(100)
    tested = template.copy()
    tested[10:40, 20:23] = 0
    assert len(find_candidates(tested, template)[0]) == 1
    assert find_candidates(tested, template, OpeningParams(kernel_px=5))[0] == []


def test_nearby_changes_group_into_one_padded_box_clipped_to_the_image() -> None:
    template = _blank(100)
    tested = template.copy()
    tested[0:5, 0:5] = 0
    tested[0:5, 9:14] = 0  # 4 px apart: one candidate
    tested[60:70, 60:70] = 0
    boxes, _ = find_candidates(tested, template)
    assert boxes == [(0, 0, 24, 15), (50, 50, 80, 80)]
    with pytest.raises(ValueError, match="differ in size"):
        find_candidates(tested, template[:50])


def test_pair_samples_label_the_truths_and_their_candidates_and_the_rest_is_background(
        tmp_path: Path) -> None:
    template = _blank()
    tested = template.copy()
    tested[30:40, 30:40] = 0  # a labelled speck
    tested[150:160, 150:160] = 0  # an unlabelled one: background
    cv2.imwrite(str(tmp_path / "temp.png"), template)
    cv2.imwrite(str(tmp_path / "test.png"), tested)
    truth = (20, 20, 50, 50, "copper")
    samples = pair_samples((str(tmp_path / "temp.png"), str(tmp_path / "test.png"), [truth]))
    copper = DEEPPCB_CLASSES.index("copper")
    assert samples.crops.shape == (3, CHANNELS, CROP, CROP)
    assert sorted(samples.labels.tolist()) == sorted([copper, copper, BACKGROUND])
    assert np.allclose(samples.sizes[0], [30 / 64, 30 / 64])
    # A defect-free pair: background only.
    free = pair_samples((str(tmp_path / "temp.png"), str(tmp_path / "test.png"), []))
    assert free.labels.tolist() == [BACKGROUND, BACKGROUND]
    boxes, crops = pair_candidates((str(tmp_path / "temp.png"), str(tmp_path / "test.png")))
    assert len(boxes) == 2 and crops.labels.tolist() == [-1, -1]
    # Channel 2 is the XOR: dark substrate, the changes white.
    assert crops.crops[0, 2].max() == 255 and crops.crops[0, 2].min() == 0
    same = pair_candidates((str(tmp_path / "temp.png"), str(tmp_path / "temp.png")))
    assert same[0] == [] and same[1].crops.shape == (0, CHANNELS, CROP, CROP)
