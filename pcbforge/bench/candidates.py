"""Candidate defects of an inspection pair, as a reference-based AOI finds them.

Align the template to the tested image (a whole-pixel shift by phase correlation),
binarize both, and keep the copper that one side has and the other lacks within a
positional tolerance (so registration and edge noise of a pixel or two vanish).
What remains, grouped by proximity, are the candidates; a classifier then says
which defect each one is, or that it is none.

Pure functions of the two images.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class CandidateParams:
    """How candidates are found (pixel sizes at DeepPCB's ~48 px/mm)."""

    tolerance_px: int = 0  # copper present within this distance on the other side: no change
    max_shift_px: int = 6  # larger misregistration is not corrected
    merge_px: int = 6  # changes closer than this form one candidate
    min_area_px: int = 6  # smaller changes (after the tolerance) are noise
    pad_px: int = 10  # box margin, as DeepPCB's annotation tool draws


def copper(image: np.ndarray) -> np.ndarray:
    """uint8 0/1 copper of a DeepPCB-style board (dark copper, Otsu on gray)."""
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    _, mask = cv2.threshold(gray, 0, 1, cv2.THRESH_BINARY_INV | cv2.THRESH_OTSU)
    return mask


def estimate_shift(tested: np.ndarray, template: np.ndarray, max_shift: int) -> tuple[int, int]:
    """Whole-pixel ``(dx, dy)`` that moves the template onto the tested image."""
    a = tested.astype(np.float32)
    b = template.astype(np.float32)
    (dx, dy), _ = cv2.phaseCorrelate(b, a)
    dx, dy = int(round(dx)), int(round(dy))
    if abs(dx) > max_shift or abs(dy) > max_shift:
        return 0, 0
    return dx, dy


def shift_image(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """``image`` moved by whole pixels, the border replicated."""
    if dx == 0 and dy == 0:
        return image
    matrix = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(image, matrix, image.shape[1::-1], flags=cv2.INTER_NEAREST,
                          borderMode=cv2.BORDER_REPLICATE)


def changes(tested_cu: np.ndarray, template_cu: np.ndarray, tolerance: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """(added, removed) copper beyond ``tolerance`` px, uint8 0/1 each."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * tolerance + 1,) * 2)
    added = tested_cu & (1 - cv2.dilate(template_cu, kernel))
    removed = template_cu & (1 - cv2.dilate(tested_cu, kernel))
    return added, removed


def find_candidates(tested: np.ndarray, template: np.ndarray,
                    params: CandidateParams | None = None
                    ) -> tuple[list[tuple[int, int, int, int]], np.ndarray]:
    """Padded ``x1, y1, x2, y2`` boxes of the changes between ``template`` and ``tested``,
    and the template aligned to the tested image."""
    params = params or CandidateParams()
    if tested.shape[:2] != template.shape[:2]:
        raise ValueError(f"tested {tested.shape[:2]} and template {template.shape[:2]} "
                         f"differ in size")
    t_cu, r_cu = copper(tested), copper(template)
    dx, dy = estimate_shift(t_cu, r_cu, params.max_shift_px)
    r_cu = shift_image(r_cu, dx, dy)
    aligned = shift_image(template, dx, dy)
    added, removed = changes(t_cu, r_cu, params.tolerance_px)
    # Only changes more than 2 px thick: registration leaves thin bands along edges.
    kernel3 = np.ones((3, 3), np.uint8)
    changed = cv2.morphologyEx(added | removed, cv2.MORPH_OPEN, kernel3,
                               borderType=cv2.BORDER_CONSTANT, borderValue=0)
    if not changed.any():
        return [], aligned
    # Group nearby pieces, but measure each group on the changed pixels themselves; the
    # tolerance ate tolerance_px of every edge, so the extent grows back by that much.
    grouped = cv2.dilate(changed, cv2.getStructuringElement(
        cv2.MORPH_ELLIPSE, (2 * (params.merge_px // 2) + 1,) * 2))
    n, labels = cv2.connectedComponents(grouped, connectivity=8)
    grow = params.tolerance_px + params.pad_px
    return component_boxes(changed, labels, n, params.min_area_px, grow), aligned


def component_boxes(changed: np.ndarray, labels: np.ndarray, n: int, min_area_px: int,
                    grow: int) -> list[tuple[int, int, int, int]]:
    """Boxes ``x1, y1, x2, y2`` (exclusive ends, grown by ``grow`` px, clipped to the
    image, sorted top to bottom) of the groups ``labels`` (``n`` labels, 0 the background)
    over the ``changed`` pixels, each measured on its changed pixels; a group with fewer
    than ``min_area_px`` of them is left out."""
    height, width = changed.shape
    boxes = []
    ys, xs = np.nonzero(changed)
    ids = labels[ys, xs]
    for k in range(1, n):
        pick = ids == k
        if pick.sum() < min_area_px:
            continue
        x1, x2 = int(xs[pick].min()), int(xs[pick].max()) + 1
        y1, y2 = int(ys[pick].min()), int(ys[pick].max()) + 1
        boxes.append((max(x1 - grow, 0), max(y1 - grow, 0), min(x2 + grow, width),
                      min(y2 + grow, height)))
    boxes.sort(key=lambda b: (b[1], b[0]))
    return boxes


__all__ = ["CandidateParams", "changes", "copper", "estimate_shift", "find_candidates",
           "shift_image"]
