"""Detector design ``opening``: candidates that survive a 3x3 opening, classified by a small
CNN on three-channel crops.

The design an independent check used, and the kind of reference-based AOI that filters
edge noise by morphology: both images are binarized at a fixed level (128), their XOR is
the change, and a 3x3 opening removes every change thinner than 3 px (registration and
scan noise along edges). What survives, grouped by proximity and padded as DeepPCB pads
its boxes (10 px), are the candidates. There is no alignment step: DeepPCB pairs come
aligned, and so do synthetic ones.

Its training background comes only from *thick* non-defect changes (a feature displaced
by several px, a speck, a broken edge run): a training set whose pairs differ from their
templates only at their defects teaches it nothing about what is not a defect.

Each candidate is cut from the tested image, the template and the (unopened) XOR as a
``(3, CROP, CROP)`` crop with its box size, and classified by
:func:`pcbforge.bench.reference.build_network` with three input channels (same training
and post-processing as reference model A). Pure numpy/OpenCV up to the network.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pcbforge.bench.candidates import component_boxes
from pcbforge.bench.metrics import best_truth
from pcbforge.bench.reference import BACKGROUND, Samples, box_size, crop_stack, read_gray
from pcbforge.datasets.deeppcb import DEEPPCB_CLASSES

Box = tuple[int, int, int, int]
CHANNELS = 3  # tested, template, XOR


@dataclass(frozen=True)
class OpeningParams:
    """How the ``opening`` design finds candidates (pixel sizes at DeepPCB's ~48 px/mm)."""

    threshold: int = 128  # gray below this is copper (DeepPCB: dark copper)
    kernel_px: int = 3  # side of the square opening: thinner changes vanish
    merge_px: int = 6  # opened changes closer than this form one candidate
    min_area_px: int = 9  # smaller groups are dropped (an opened change has at least 9 px)
    pad_px: int = 10  # box margin, as DeepPCB's annotation tool draws


def binarize(image: np.ndarray, threshold: int = 128) -> np.ndarray:
    """uint8 0/1: 1 where the gray image is darker than ``threshold`` (copper)."""
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return (gray < threshold).astype(np.uint8)


def difference(tested: np.ndarray, template: np.ndarray, threshold: int = 128) -> np.ndarray:
    """uint8 0/1 XOR of the two binarized images; ``ValueError`` if their sizes differ."""
    if tested.shape[:2] != template.shape[:2]:
        raise ValueError(f"tested {tested.shape[:2]} and template {template.shape[:2]} "
                         f"differ in size")
    return binarize(tested, threshold) ^ binarize(template, threshold)


def opened(changed: np.ndarray, kernel_px: int = 3) -> np.ndarray:
    """``changed`` (0/1) after a ``kernel_px`` square opening: only the parts where a whole
    ``kernel_px`` square fits survive (a band ``kernel_px - 1`` px thick vanishes)."""
    kernel = np.ones((kernel_px, kernel_px), np.uint8)
    return cv2.morphologyEx(changed, cv2.MORPH_OPEN, kernel, borderType=cv2.BORDER_CONSTANT,
                            borderValue=0)


def group_boxes(changed: np.ndarray, params: OpeningParams) -> list[Box]:
    """Padded ``x1, y1, x2, y2`` boxes (clipped to the image, sorted top to bottom) of the
    groups of ``changed`` pixels closer than ``merge_px``, each measured on its changed
    pixels; groups under ``min_area_px`` changed pixels are dropped."""
    if not changed.any():
        return []
    radius = params.merge_px // 2
    grouped = cv2.dilate(changed, cv2.getStructuringElement(cv2.MORPH_ELLIPSE,
                                                            (2 * radius + 1,) * 2))
    n, labels = cv2.connectedComponents(grouped, connectivity=8)
    return component_boxes(changed, labels, n, params.min_area_px, params.pad_px)


def find_candidates(tested: np.ndarray, template: np.ndarray,
                    params: OpeningParams | None = None) -> tuple[list[Box], np.ndarray]:
    """Candidate boxes of the pair (see the module) and the unopened XOR as uint8 0/255."""
    params = params or OpeningParams()
    changed = difference(tested, template, params.threshold)
    boxes = group_boxes(opened(changed, params.kernel_px), params)
    return boxes, changed * np.uint8(255)


def _crops(tested: np.ndarray, template: np.ndarray, diff: np.ndarray,
           boxes: list[Box], labels: list[int]) -> Samples:
    if not boxes:
        return Samples.empty(CHANNELS)
    return Samples(np.stack([crop_stack((tested, template, diff), b) for b in boxes]),
                   np.asarray([box_size(b) for b in boxes], np.float32),
                   np.asarray(labels, np.int64))


def pair_samples(task: tuple[str, str, list[tuple[int, int, int, int, str]]]) -> Samples:
    """Training crops of one pair (template path, tested path, labelled boxes): every
    labelled box, every candidate matching one (IoU > 0.33, with its label) and every other
    candidate (background). A pair with no labels gives background crops only."""
    template_path, tested_path, truths = task
    tested, template = read_gray(tested_path), read_gray(template_path)
    candidates, diff = find_candidates(tested, template)
    boxes: list[Box] = [(x1, y1, x2, y2) for x1, y1, x2, y2, _ in truths]
    labels = [DEEPPCB_CLASSES.index(name) for *_, name in truths]
    for box in candidates:
        best = best_truth(box, truths)
        boxes.append(box)
        labels.append(DEEPPCB_CLASSES.index(truths[best][4]) if best >= 0 else BACKGROUND)
    return _crops(tested, template, diff, boxes, labels)


def pair_candidates(task: tuple[str, str]) -> tuple[list[Box], Samples]:
    """Candidates of one pair (template path, tested path) to classify: their boxes and
    crops (labels unknown: -1)."""
    template_path, tested_path = task
    tested, template = read_gray(tested_path), read_gray(template_path)
    boxes, diff = find_candidates(tested, template)
    return boxes, _crops(tested, template, diff, boxes, [-1] * len(boxes))


__all__ = ["CHANNELS", "OpeningParams", "binarize", "difference", "find_candidates",
           "group_boxes", "opened", "pair_candidates", "pair_samples"]
