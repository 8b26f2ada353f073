"""The changes of a registered pair, and how far local shifts of the template explain them.

A tested pixel has changed when it is darker, or brighter, than every template pixel
within ``edge_tolerance_px`` by more than the change threshold (``diff_threshold``, or a
quarter of the pair's copper/substrate contrast); changes more than 2 px thick (what a
3x3 opening keeps) within ``merge_px`` of each other form a :class:`Region`. A scan often
displaces features locally by a few pixels: :func:`shift_fit` moves the template around a
region to the shift that explains it best, and :func:`aligned_change` counts a box's
change with the template moved as the features around the box moved. Pure functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from pcbforge.qa.params import QAParams

KERNEL3 = np.ones((3, 3), np.uint8)
#: The automatic change threshold: this share of the copper/substrate grey distance, and
#: at least this many grey levels.
AUTO_SHARE = 0.25
AUTO_MIN = 16


@dataclass
class Region:
    """A group of changed pixels."""

    mask: np.ndarray  # bool, the region's changed px inside ``window``
    window: tuple[slice, slice]
    area: int
    added: int
    removed: int
    bbox: tuple[int, int, int, int]  # x1, y1, x2, y2 (exclusive) of the changed px

    @property
    def adds(self) -> bool:
        return self.added >= self.removed

    @property
    def centre(self) -> tuple[float, float]:
        x1, y1, x2, y2 = self.bbox
        return (x1 + x2) / 2.0, (y1 + y2) / 2.0


# --- differences --------------------------------------------------------------------------


@dataclass
class Difference:
    """The changes of a registered pair."""

    tested: np.ndarray  # uint8 grey
    template: np.ndarray  # uint8 grey, registered
    added: np.ndarray  # uint8 0/1: copper in tested, not near it in the template
    removed: np.ndarray
    changed: np.ndarray  # uint8 0/1: the changes more than 2 px thick
    threshold: int  # copper/substrate grey level (Otsu of the tested image)
    params: QAParams
    min_change: int  # grey levels a pixel must differ by (diff_threshold, or its auto value)
    low: np.ndarray  # the template eroded (darkest within the edge tolerance)
    high: np.ndarray  # and dilated (brightest)
    _padded: dict = field(default_factory=dict)

    def bounds(self, pad: int) -> tuple[np.ndarray, np.ndarray]:
        """``low`` and ``high`` with a replicated border of ``pad`` px (made once)."""
        if pad not in self._padded:
            self._padded[pad] = tuple(cv2.copyMakeBorder(image, pad, pad, pad, pad,
                                                         cv2.BORDER_REPLICATE)
                                      for image in (self.low, self.high))
        return self._padded[pad]

    def copper(self, image: np.ndarray) -> np.ndarray:
        # Otsu's threshold is the last level of the dark class (OpenCV: above it is bright).
        if self.params.copper == "dark":
            return (image <= self.threshold).view(np.uint8)
        return (image > self.threshold).view(np.uint8)


def template_bounds(template: np.ndarray, params: QAParams) -> tuple[np.ndarray, np.ndarray]:
    """The darkest and the brightest template grey level within ``edge_tolerance_px``."""
    size = 2 * params.edge_tolerance_px + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    return cv2.erode(template, kernel), cv2.dilate(template, kernel)


def tolerant_changes(tested: np.ndarray, low: np.ndarray, high: np.ndarray, threshold: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """``(darker, brighter)``: uint8 0/1 masks of the tested pixels darker than ``low`` (or
    brighter than ``high``) by more than ``threshold`` grey levels."""
    darker = (cv2.subtract(low, tested) > threshold).view(np.uint8)
    brighter = (cv2.subtract(tested, high) > threshold).view(np.uint8)
    return darker, brighter


def difference(tested: np.ndarray, template: np.ndarray, params: QAParams,
               valid: np.ndarray | None = None) -> Difference:
    """The changes from ``template`` (registered) to ``tested``; only where ``valid``
    (uint8 0/1) is set when given: the part of the image the registered template covers
    with its own pixels."""
    low, high = template_bounds(template, params)
    min_change = params.diff_threshold or auto_threshold(template, tested)
    darker, brighter = tolerant_changes(tested, low, high, min_change)
    if valid is not None:
        darker, brighter = darker & valid, brighter & valid
    added, removed = (darker, brighter) if params.copper == "dark" else (brighter, darker)
    threshold, _ = cv2.threshold(tested, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    # Only changes more than 2 px thick: registration leaves thinner bands along edges.
    changed = cv2.morphologyEx(added | removed, cv2.MORPH_OPEN, KERNEL3,
                               borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return Difference(tested, template, added, removed, changed, int(threshold), params,
                      min_change, low, high)


def auto_threshold(*images: np.ndarray) -> int:
    """The default ``diff_threshold``: :data:`AUTO_SHARE` of the grey distance between the
    two Otsu classes (copper and substrate) of the image that shows them best (a blank
    template's classes are two shades of its noise), at least :data:`AUTO_MIN`: 64 on a
    binarized scan, about 30 on a soft grey or colour one."""
    contrast = 0.0
    for image in images:
        level, _ = cv2.threshold(image, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
        dark, bright = image[image <= level], image[image > level]
        if dark.size and bright.size:
            contrast = max(contrast, float(bright.mean()) - float(dark.mean()))
    return max(AUTO_MIN, int(round(AUTO_SHARE * contrast)))


def regions_of(diff: Difference) -> list[Region]:
    """The change regions: significant changes within ``merge_px`` of each other."""
    return _regions(diff.changed, diff.added, diff.removed, diff.params)


def _regions(changed: np.ndarray, added: np.ndarray, removed: np.ndarray, params: QAParams,
             origin: tuple[int, int] = (0, 0), min_area: int = 1) -> list[Region]:
    """The regions of ``changed`` (uint8 0/1, its top-left pixel at ``origin`` of the
    image) that have at least ``min_area`` px, in image coordinates."""
    if not changed.any():
        return []
    merge = params.merge_px
    grouped = changed if merge <= 1 else cv2.dilate(
        changed, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (merge | 1, merge | 1)))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(grouped, connectivity=8)
    oy, ox = origin
    regions = []
    for k in range(1, n):
        x, y, w, h = (int(v) for v in stats[k, :4])
        local = (slice(y, y + h), slice(x, x + w))
        mask = (labels[local] == k) & (changed[local] > 0)
        area = int(mask.sum())
        if area < min_area:
            continue
        ys, xs = np.nonzero(mask)
        window = (slice(oy + y, oy + y + h), slice(ox + x, ox + x + w))
        bbox = (ox + x + int(xs.min()), oy + y + int(ys.min()), ox + x + int(xs.max()) + 1,
                oy + y + int(ys.max()) + 1)
        regions.append(Region(mask, window, area, int(added[local][mask].sum()),
                              int(removed[local][mask].sum()), bbox))
    return regions


@dataclass
class ShiftFit:
    """How well a local shift of the template explains a region."""

    share: float  # of the changes around the region that the best shift removes
    residual: list[Region]  # what of the region stays changed at that shift (defects)
    shift: tuple[int, int] = (0, 0)  # the best shift (dx, dy), px


def explained_by_shift(diff: Difference, region: Region, limit: int) -> float:
    """The share of the changes around ``region`` that moving the template by at most
    ``limit`` px (whole pixels, locally) removes: near 1 for a feature displaced in the
    second scan, near 0 for a defect."""
    return shift_fit(diff, region, limit).share


class _Shifts(dict):
    """Whole-pixel shifts up to a limit, shortest first (the search's tie-break)."""

    def __missing__(self, limit: int) -> list[tuple[int, int]]:
        shifts = sorted(((sx, sy) for sy in range(-limit, limit + 1)
                         for sx in range(-limit, limit + 1)),
                        key=lambda s: (s[0] ** 2 + s[1] ** 2, s[1], s[0]))
        self[limit] = shifts
        return shifts


_SHIFTS = _Shifts()


class _Local:
    """The changes around one region under local shifts of the template."""

    def __init__(self, diff: Difference, region: Region, limit: int, ring: int = 0):
        height, width = diff.tested.shape
        ry, rx = region.window
        grow = limit + diff.params.edge_tolerance_px + 1 + ring
        self.diff, self.limit = diff, limit
        self.wy = slice(max(0, ry.start - grow), min(height, ry.stop + grow))
        self.wx = slice(max(0, rx.start - grow), min(width, rx.stop + grow))
        self.mask = np.zeros((self.wy.stop - self.wy.start, self.wx.stop - self.wx.start),
                             np.uint8)
        self.mask[ry.start - self.wy.start:ry.stop - self.wy.start,
                  rx.start - self.wx.start:rx.stop - self.wx.start] = region.mask
        if ring:  # the surroundings only: how the features next to the region moved
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * ring + 1,) * 2)
            self.around = cv2.dilate(self.mask, kernel) & (1 - self.mask)
        else:
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * limit + 1,) * 2)
            self.around = cv2.dilate(self.mask, kernel)

    def changes(self, sx: int, sy: int) -> tuple[np.ndarray, np.ndarray]:
        """``(added, removed)`` in the window with the template moved by ``(sx, sy)``."""
        limit, wy, wx = self.limit, self.wy, self.wx
        low, high = self.diff.bounds(limit)
        part = (slice(wy.start + limit - sy, wy.stop + limit - sy),
                slice(wx.start + limit - sx, wx.stop + limit - sx))
        darker, brighter = tolerant_changes(self.diff.tested[wy, wx], low[part], high[part],
                                            self.diff.min_change)
        return (darker, brighter) if self.diff.params.copper == "dark" else (brighter, darker)

    def best(self) -> tuple[float, tuple[int, int]]:
        """The share of the changes around the region the best shift removes, and it (of
        shifts that fit equally well, the shortest)."""
        base, best, best_shift = 0, math.inf, (0, 0)
        for sx, sy in _SHIFTS[self.limit]:
            added, removed = self.changes(sx, sy)
            count = int(cv2.countNonZero((added | removed) & self.around))
            if sx == 0 and sy == 0:
                base = count
            if count < best:
                best, best_shift = count, (sx, sy)
        if not base:
            return 0.0, (0, 0)
        return max(0.0, 1.0 - best / base), best_shift


def shift_fit(diff: Difference, region: Region, limit: int) -> ShiftFit:
    """:func:`explained_by_shift`'s share, and the parts of ``region`` still changed at the
    best shift (after a 3x3 opening, at least ``min_region_px``): a defect on a feature
    the scan displaced, which the displacement would otherwise hide."""
    if limit <= 0:
        return ShiftFit(0.0, [])
    local = _Local(diff, region, limit)
    share, shift = local.best()
    if share < diff.params.local_shift_share:
        return ShiftFit(share, [], shift)
    added, removed = local.changes(*shift)
    left = cv2.morphologyEx((added | removed) & local.mask, cv2.MORPH_OPEN, KERNEL3,
                            borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return ShiftFit(share, _regions(left, added, removed, diff.params,
                                    (local.wy.start, local.wx.start),
                                    diff.params.min_region_px), shift)


def aligned_change(diff: Difference, part: tuple[slice, slice], limit: int
                   ) -> tuple[int, int]:
    """Copper added and removed inside the box ``part`` (its rows and columns) once the
    template is moved, by at most
    ``limit`` px, as the features around the box moved in the scan (the shift that best
    fits a ring of ``2 * limit`` px around it, not the box itself, whose defect any shift
    would partly fit): an edge the scan displaced stops changing, a defect on it does
    not."""
    whole = np.ones((part[0].stop - part[0].start, part[1].stop - part[1].start), bool)
    region = Region(whole, part, int(whole.sum()), 0, 0,
                    (part[1].start, part[0].start, part[1].stop, part[0].stop))
    local = _Local(diff, region, limit, ring=2 * limit)
    _, shift = local.best()
    added, removed = local.changes(*shift)
    window = (slice(part[0].start - local.wy.start, part[0].stop - local.wy.start),
              slice(part[1].start - local.wx.start, part[1].stop - local.wx.start))
    return int(added[window].sum()), int(removed[window].sum())


__all__ = ["AUTO_MIN", "AUTO_SHARE", "KERNEL3", "Difference", "Region", "ShiftFit",
           "aligned_change", "auto_threshold", "difference", "explained_by_shift",
           "regions_of", "shift_fit", "template_bounds", "tolerant_changes"]
