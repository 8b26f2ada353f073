"""COCO RLE mask text: the window encoder gives exactly what pycocotools gives."""

from __future__ import annotations

import numpy as np
import pytest

from pcbforge.datasets.masks import decode_mask, encode_mask, encode_mask_window


def test_window_encoding_equals_the_whole_image_encoding() -> None:
    rng = np.random.default_rng(0)
    for _ in range(300):
        height, width = (int(v) for v in rng.integers(1, 50, 2))
        h, w = int(rng.integers(1, height + 1)), int(rng.integers(1, width + 1))
        y, x = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
        window = rng.random((h, w)) < rng.random()
        whole = np.zeros((height, width), bool)
        whole[y:y + h, x:x + w] = window
        text = encode_mask_window(window, x, y, height, width)
        assert text == encode_mask(whole)
        np.testing.assert_array_equal(decode_mask(text), whole)


@pytest.mark.parametrize("fill", [False, True])
def test_window_over_the_whole_image_and_at_its_last_pixel(fill: bool) -> None:
    whole = np.full((6, 5), fill)
    assert encode_mask_window(whole, 0, 0, 6, 5) == encode_mask(whole)
    corner = np.zeros((6, 5), bool)
    corner[-1, -1] = True
    assert encode_mask_window(corner[-2:, -2:], 3, 4, 6, 5) == encode_mask(corner)


def test_window_outside_the_image_raises() -> None:
    with pytest.raises(ValueError, match="outside a 5x6 image"):
        encode_mask_window(np.ones((3, 3), bool), 4, 0, 6, 5)
