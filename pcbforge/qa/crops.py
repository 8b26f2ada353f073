"""Crops of findings for people: tested | registered template | difference, side by side,
the finding's box drawn in red and a proposed box in green."""

from __future__ import annotations

import math

import cv2
import numpy as np

from pcbforge.qa.changes import difference
from pcbforge.qa.checks import PairError, read_gray
from pcbforge.qa.params import QAParams
from pcbforge.qa.register import apply_registration, register

#: Context kept around a finding (px), and the side each panel is scaled to.
CONTEXT_PX = 40
PANEL_PX = 200
_RED, _GREEN, _GREY = (0, 0, 255), (0, 200, 0), (128, 128, 128)


def _window(finding: dict, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    height, width = shape
    xs = [finding["x1"], finding["x2"]]
    ys = [finding["y1"], finding["y2"]]
    if not math.isnan(finding.get("px1", math.nan)):
        xs += [finding["px1"], finding["px2"]]
        ys += [finding["py1"], finding["py2"]]
    x1 = max(0, int(min(xs)) - CONTEXT_PX)
    y1 = max(0, int(min(ys)) - CONTEXT_PX)
    x2 = min(width, int(math.ceil(max(xs))) + CONTEXT_PX)
    y2 = min(height, int(math.ceil(max(ys))) + CONTEXT_PX)
    if x2 - x1 < 2 or y2 - y1 < 2:  # a finding about the whole pair
        return 0, 0, width, height
    return x1, y1, x2, y2


def _draw(panel: np.ndarray, finding: dict, origin: tuple[int, int], scale: float) -> None:
    ox, oy = origin

    def corners(x1, y1, x2, y2):
        return ((int(round((x1 - ox) * scale)), int(round((y1 - oy) * scale))),
                (int(round((x2 - ox) * scale)) - 1, int(round((y2 - oy) * scale)) - 1))

    if finding["x2"] > finding["x1"] and finding["y2"] > finding["y1"]:
        cv2.rectangle(panel, *corners(finding["x1"], finding["y1"], finding["x2"],
                                      finding["y2"]), _RED, 1)
    if not math.isnan(finding.get("px1", math.nan)):
        cv2.rectangle(panel, *corners(finding["px1"], finding["py1"], finding["px2"],
                                      finding["py2"]), _GREEN, 1)


def render_crop(tested_path: str, template_path: str, finding: dict,
                params: QAParams | None = None) -> np.ndarray | None:
    """BGR crop of one finding; ``None`` when the pair cannot be read."""
    params = params or QAParams()
    try:
        tested = read_gray(tested_path, "image", 1 << 30)
        template = read_gray(template_path, "template", 1 << 30) if template_path else None
    except PairError:
        return None
    if template is not None and template.shape == tested.shape:
        registered = apply_registration(template, register(
            tested, template, tile=params.tile_px, max_shift=params.max_shift_px))
        diff = difference(tested, registered, params)
        # Added copper red, removed blue, thin (ignored) changes grey.
        colour = np.full(tested.shape + (3,), 255, np.uint8)
        thin = (diff.added | diff.removed) > 0
        colour[thin] = _GREY
        colour[(diff.added > 0) & (diff.changed > 0)] = (0, 0, 220)
        colour[(diff.removed > 0) & (diff.changed > 0)] = (220, 0, 0)
        panels = [tested, registered, colour]
    else:
        panels = [tested]
    x1, y1, x2, y2 = _window(finding, tested.shape)
    scale = PANEL_PX / max(x2 - x1, y2 - y1)
    out = []
    for panel in panels:
        part = panel[y1:y2, x1:x2]
        if part.ndim == 2:
            part = cv2.cvtColor(part, cv2.COLOR_GRAY2BGR)
        part = cv2.resize(part, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        _draw(part, finding, (x1, y1), scale)
        out.append(part)
        out.append(np.full((part.shape[0], 4, 3), 255, np.uint8))
    return np.hstack(out[:-1])


__all__ = ["CONTEXT_PX", "PANEL_PX", "render_crop"]
