"""The ``single-image`` design's data side: target heatmaps, decoding, crops and turns."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from pcbforge.bench.single_image import (
    STRIDE,
    decode,
    dihedral,
    draw_gaussian,
    encode_targets,
    gaussian_radius,
    image_sample,
    random_crop,
)
from pcbforge.datasets.deeppcb import DEEPPCB_CLASSES

BOXES = np.float32([[10, 20, 50, 44], [100, 100, 121, 133], [200, 40, 230, 70]])
CLASSES = np.int64([0, 4, 4])


def test_heatmap_peaks_at_box_centres_with_the_right_size_and_offset() -> None:
    targets = encode_targets(BOXES, CLASSES, (256, 256))
    assert targets.heatmap.shape == (len(DEEPPCB_CLASSES), 64, 64)
    assert targets.mask.sum() == 3
    for (x1, y1, x2, y2), k in zip(BOXES, CLASSES, strict=True):
        cx, cy = (x1 + x2) / 2 / STRIDE, (y1 + y2) / 2 / STRIDE
        ix, iy = int(cx), int(cy)
        assert targets.heatmap[k, iy, ix] == 1.0 and targets.mask[iy, ix] == 1
        assert targets.size[:, iy, ix] == pytest.approx([(x2 - x1) / STRIDE, (y2 - y1) / STRIDE])
        assert targets.offset[:, iy, ix] == pytest.approx([cx - ix, cy - iy])
    # Exactly one 1 per box; the other classes stay zero; the Gaussian falls off.
    assert (targets.heatmap == 1).sum() == 3
    assert targets.heatmap[[1, 2, 3, 5]].max() == 0
    assert 0 < targets.heatmap[0, 8, 8] < 1  # the cell right of box 0's centre


def test_decoding_the_targets_gives_the_boxes_back() -> None:
    targets = encode_targets(BOXES, CLASSES, (256, 256))
    found = decode(targets.heatmap, targets.size, targets.offset, floor=0.99)
    assert len(found) == 3
    got = sorted((tuple(np.round(f[:4], 3)), f[4], f[5]) for f in found)
    want = sorted((tuple(np.round(b, 3)), int(k), 1.0) for b, k in zip(BOXES, CLASSES,
                                                                        strict=True))
    assert got == want


def test_decode_keeps_local_maxima_only_best_first_and_top_k() -> None:
    heat = np.zeros((2, 16, 16), np.float32)
    heat[0, 4, 4], heat[0, 4, 5] = 0.9, 0.5  # a neighbour of a stronger peak: not a peak
    heat[1, 10, 10] = 0.7
    heat[0, 12, 2] = 0.005  # under the floor
    size = np.ones((2, 16, 16), np.float32)
    offset = np.zeros((2, 16, 16), np.float32)
    found = decode(heat, size, offset)
    assert [(f[4], round(f[5], 3)) for f in found] == [(0, 0.9), (1, 0.7)]
    assert found[0][:4] == (14.0, 14.0, 18.0, 18.0)
    assert len(decode(heat, size, offset, top_k=1)) == 1


def test_gaussian_radius_grows_with_the_box_and_the_gaussian_is_clipped_at_borders() -> None:
    assert 0 < gaussian_radius(2, 2) < gaussian_radius(10, 10) < gaussian_radius(20, 20)
    heat = np.zeros((8, 8), np.float32)
    draw_gaussian(heat, 0, 7, 3)
    assert heat[7, 0] == 1.0 and heat.max() == 1.0 and heat[0, 7] == 0


@pytest.mark.parametrize("k", range(8))
def test_dihedral_moves_the_boxes_with_the_image(k: int) -> None:
    image = np.zeros((64, 64), np.uint8)
    boxes = np.float32([[5, 10, 20, 18], [40, 3, 60, 50]])
    for x1, y1, x2, y2 in boxes.astype(int):
        image[y1:y2, x1:x2] += 1
    image[5:18, 5:20] += 2  # tag the first box so the two do not swap roles
    turned, moved = dihedral(image, boxes, k)
    for box, value in zip(moved.astype(int), (3, 1), strict=True):
        x1, y1, x2, y2 = box
        region = turned[y1:y2, x1:x2]
        assert (region & 1).all() and (region >= value).any()
    assert turned.sum() == image.sum()
    assert np.array_equal((turned & 1) > 0,
                          np.isin(np.arange(64 * 64).reshape(64, 64),
                                  [y * 64 + x for bx in moved.astype(int)
                                   for y in range(bx[1], bx[3]) for x in range(bx[0], bx[2])]))


def test_random_crops_keep_the_boxes_mostly_inside_and_are_seeded() -> None:
    image = np.arange(300 * 300, dtype=np.uint32).reshape(300, 300).astype(np.uint8)
    boxes = np.float32([[0, 0, 300, 300], [10, 10, 20, 20]])
    classes = np.int64([1, 2])
    a = random_crop(image, boxes, classes, np.random.default_rng(3), side=256)
    b = random_crop(image, boxes, classes, np.random.default_rng(3), side=256)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    window, kept, kept_classes = a
    assert window.shape == (256, 256)
    assert kept[0].tolist() == [0, 0, 256, 256] and kept_classes[0] == 1  # clipped
    assert ((kept >= 0) & (kept <= 256)).all()
    small = random_crop(image[:100, :120], boxes[1:], classes[1:], np.random.default_rng(0))
    assert small[0].shape == (256, 256) and small[1].tolist() == [[10, 10, 20, 20]]


def test_image_sample_round_trips_the_image_and_labels(tmp_path: Path) -> None:
    image = np.random.default_rng(0).integers(0, 256, (64, 80), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), image)
    sample = image_sample((str(tmp_path / "a.png"), [(1, 2, 30, 40, "short")]))
    assert np.array_equal(sample.image(), image)
    assert sample.boxes.tolist() == [[1, 2, 30, 40]]
    assert sample.classes.tolist() == [DEEPPCB_CLASSES.index("short")]
    empty = image_sample((str(tmp_path / "a.png"), []))
    assert empty.boxes.shape == (0, 4) and empty.classes.shape == (0,)


def test_training_runs_and_finds_boxes_on_a_whole_image() -> None:
    pytest.importorskip("torch", reason="the benchmark extra: pip install -e .[bench]")
    from pcbforge.bench.single_image import ImageSample, detect, train

    image = np.full((96, 96), 255, np.uint8)
    image[40:50, 40:50] = 0
    ok, png = cv2.imencode(".png", image)
    sample = ImageSample(png.tobytes(), np.float32([[30, 30, 60, 60]]), np.int64([4]))
    model, report = train([sample], epochs=1, crops_per_image=2, batch=2, log=lambda _: None)
    assert report.samples == 1 and report.per_class["copper"] == 1
    found = detect(model, image)
    assert found and all(0 <= f[0] <= f[2] <= 96 and 0 <= f[1] <= f[3] <= 96 for f in found)
    assert all(0 <= f[4] < len(DEEPPCB_CLASSES) for f in found)
