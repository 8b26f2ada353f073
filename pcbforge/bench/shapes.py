"""Shape statistics of defects, measured from an image pair only, and a real/synthetic test.

A defect's outline is read from the binarized template and tested images alone (0/1
copper, see :func:`copper_of_gray`), the same way for real and synthetic pairs: the
change inside the box (template XOR tested), restricted to its significant part
(:func:`pcbforge.synth.topology.significant`: more than 2 px thick, plus the thin parts
connected to such a part), so the 1-2 px edge bands of misregistration do not count.

Statistics of one box (:data:`STATS`):

- ``area``: significant changed pixels;
- ``longest``: the longer side of their extent (px);
- ``circularity``: ``4 pi A / P^2`` of the largest fragment, ``A`` its pixel count and
  ``P`` the length of its whole boundary (outer contour and the contours of its holes,
  through pixel centres); ~1 for a disc, small for a crack or a ragged shape;
- ``solidity``: the largest fragment's pixel count over the pixel count of its filled
  convex hull (at most 1);
- ``fragments``: 8-connected components of the significant change;
- ``roughness``: the largest fragment's outer contour length over its convex hull's
  perimeter (both through pixel centres): 1 for a convex outline, more the more the
  outline zigzags in and out.

:func:`compare` tests a synthetic sample of these against a real one per class and
statistic: the medians' ratio must lie in :data:`MEDIAN_RATIO` and the two-sample
Kolmogorov-Smirnov distance must be at most :data:`KS_MAX`. Pure numpy/OpenCV/pandas.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import cv2
import numpy as np
import pandas as pd

from pcbforge.synth.topology import significant

#: Gray level that splits copper from substrate in a DeepPCB-style (binarized) scan.
THRESHOLD = 128
#: The statistics of one box, in the order tables list them.
STATS = ("area", "longest", "circularity", "solidity", "fragments", "roughness")
#: Tolerance on the ratio synthetic median / real median (within 15%).
MEDIAN_RATIO = (0.85, 1.15)
#: Largest two-sample Kolmogorov-Smirnov distance that passes.
KS_MAX = 0.2
#: Fewest values a side needs for its row to be judged (fewer: ``passed`` is ``None``).
MIN_SAMPLES = 5


def copper_of_gray(gray: np.ndarray, *, dark: bool = True,
                   threshold: int = THRESHOLD) -> np.ndarray:
    """0/1 uint8 copper of a gray image: below ``threshold`` when copper is ``dark``
    (DeepPCB), at or above it otherwise."""
    gray = np.asarray(gray)
    if gray.ndim != 2:
        raise ValueError(f"expected a 2-D gray image, got shape {gray.shape}")
    return ((gray < threshold) if dark else (gray >= threshold)).astype(np.uint8)


def _empty() -> dict[str, float]:
    return {"area": 0.0, "longest": 0.0, "circularity": math.nan, "solidity": math.nan,
            "fragments": 0.0, "roughness": math.nan}


def shape_stats(change: np.ndarray) -> dict[str, float]:
    """The statistics of :data:`STATS` of a 0/1 change mask taken as it is (no
    significance filter). An empty mask has area, longest side and fragments 0 and NaN
    for the outline statistics."""
    mask = (np.asarray(change) > 0).astype(np.uint8)
    if mask.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {mask.shape}")
    if not mask.any():
        return _empty()
    ys, xs = np.nonzero(mask)
    longest = max(int(xs.max() - xs.min()) + 1, int(ys.max() - ys.min()) + 1)
    n, labels, sizes, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    big = 1 + int(np.argmax(sizes[1:, cv2.CC_STAT_AREA]))
    x, y, w, h = (int(v) for v in sizes[big, :4])
    # A 1-px frame so contours of shapes touching the crop's edge close properly.
    part = np.zeros((h + 2, w + 2), np.uint8)
    part[1:-1, 1:-1] = labels[y:y + h, x:x + w] == big
    area = float(sizes[big, cv2.CC_STAT_AREA])
    contours, hierarchy = cv2.findContours(part, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    outer = [c for c, hh in zip(contours, hierarchy[0], strict=True) if hh[3] < 0]
    outer_contour = max(outer, key=len)
    perimeter = float(sum(_length(c) for c in contours))
    hull = cv2.convexHull(outer_contour)
    filled = np.zeros_like(part)
    cv2.fillConvexPoly(filled, hull, 1)
    hull_perimeter = _length(hull)
    return {
        "area": float(mask.sum()),
        "longest": float(longest),
        "circularity": float(min(1.0, 4.0 * math.pi * area / max(perimeter, 1.0) ** 2)),
        "solidity": float(area / max(int(filled.sum()), 1)),
        "fragments": float(n - 1),
        "roughness": float(_length(outer_contour) / hull_perimeter) if hull_perimeter > 0
        else 1.0,
    }


def _length(contour: np.ndarray) -> float:
    """Closed length of a contour; a single pixel (or a one-pixel-wide run traced there
    and back) counts the way ``cv2.arcLength`` does, with at least 1 px."""
    return max(1.0, float(cv2.arcLength(contour, True)))


def box_change(template_copper: np.ndarray, tested_copper: np.ndarray,
               box: tuple[int, int, int, int]) -> np.ndarray:
    """The significant change (0/1 uint8) of the pair inside ``box`` (x1, y1, x2, y2,
    exclusive ends, clipped to the image)."""
    before = np.asarray(template_copper) > 0
    after = np.asarray(tested_copper) > 0
    if before.shape != after.shape or before.ndim != 2:
        raise ValueError(f"template and tested copper must be 2-D of one shape, got "
                         f"{before.shape} and {after.shape}")
    h, w = before.shape
    x1, y1, x2, y2 = (int(v) for v in box[:4])
    x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    if x2 <= x1 or y2 <= y1:
        return np.zeros((0, 0), np.uint8)
    diff = (before[y1:y2, x1:x2] != after[y1:y2, x1:x2]).astype(np.uint8)
    return significant(diff)


def box_shape_stats(template_copper: np.ndarray, tested_copper: np.ndarray,
                    box: tuple[int, int, int, int]) -> dict[str, float]:
    """The statistics of :data:`STATS` of the defect in ``box``, from the pair's copper
    (0/1, any non-zero is copper) only. Pure."""
    return shape_stats(box_change(template_copper, tested_copper, box))


def pair_shape_stats(template_copper: np.ndarray, tested_copper: np.ndarray,
                     boxes: Iterable[tuple]) -> list[dict[str, object]]:
    """One row per box of ``boxes`` (``(x1, y1, x2, y2, label)``): ``label`` and the
    statistics of :func:`box_shape_stats`. Pure: any engine can map it over pairs."""
    rows: list[dict[str, object]] = []
    for box in boxes:
        row: dict[str, object] = {"label": str(box[4])}
        row.update(box_shape_stats(template_copper, tested_copper, box[:4]))
        rows.append(row)
    return rows


def ks_distance(a: Iterable[float], b: Iterable[float]) -> float:
    """Two-sample Kolmogorov-Smirnov distance: the largest gap between the empirical
    distribution functions of ``a`` and ``b`` (NaN values left out); 0 for identical
    samples, 1 for samples that do not overlap. NaN when either side is empty."""
    x = np.asarray(list(a), np.float64)
    y = np.asarray(list(b), np.float64)
    x, y = np.sort(x[~np.isnan(x)]), np.sort(y[~np.isnan(y)])
    if not len(x) or not len(y):
        return math.nan
    grid = np.concatenate([x, y])
    fx = np.searchsorted(x, grid, side="right") / len(x)
    fy = np.searchsorted(y, grid, side="right") / len(y)
    return float(np.abs(fx - fy).max())


def compare(real: pd.DataFrame, synth: pd.DataFrame, *,
            median_ratio: tuple[float, float] = MEDIAN_RATIO,
            ks_max: float = KS_MAX, stats: Iterable[str] = STATS) -> pd.DataFrame:
    """Per class (``label``) and statistic: ``n_real``, ``n_synth``, ``real_median``,
    ``synth_median``, ``ratio`` (synthetic / real), ``ks`` and ``passed`` (ratio within
    ``median_ratio`` and ``ks <= ks_max``; ``None`` when a side has fewer than
    :data:`MIN_SAMPLES` values). Classes in the real table's order of first appearance,
    then any only the synthetic one has. NaN values (empty changes) are left out."""
    labels = list(dict.fromkeys([*real["label"], *synth["label"]])) if len(real) or len(
        synth) else []
    rows = []
    for label in labels:
        r_rows, s_rows = real[real["label"] == label], synth[synth["label"] == label]
        for stat in stats:
            r = r_rows[stat].dropna().to_numpy(np.float64) if len(r_rows) else np.zeros(0)
            s = s_rows[stat].dropna().to_numpy(np.float64) if len(s_rows) else np.zeros(0)
            r_med = float(np.median(r)) if len(r) else math.nan
            s_med = float(np.median(s)) if len(s) else math.nan
            ratio = s_med / r_med if r_med else math.nan
            ks = ks_distance(r, s)
            judged = len(r) >= MIN_SAMPLES and len(s) >= MIN_SAMPLES
            passed = (bool(median_ratio[0] <= ratio <= median_ratio[1] and ks <= ks_max)
                      if judged else None)
            rows.append({"label": label, "stat": stat, "n_real": len(r), "n_synth": len(s),
                         "real_median": r_med, "synth_median": s_med, "ratio": ratio,
                         "ks": ks, "passed": passed})
    return pd.DataFrame(rows, columns=["label", "stat", "n_real", "n_synth", "real_median",
                                       "synth_median", "ratio", "ks", "passed"])


def verdicts(table: pd.DataFrame) -> dict[str, str]:
    """One line per class of a :func:`compare` table: ``pass`` when every judged statistic
    passes, else the failing ones (``name (ratio r, KS k)``)."""
    out: dict[str, str] = {}
    for label, rows in table.groupby("label", sort=False):
        judged = rows[rows["passed"].notna()]
        if not len(judged):
            out[str(label)] = "too few samples to judge"
            continue
        failed = judged[~judged["passed"].astype(bool)]
        out[str(label)] = "pass" if not len(failed) else "fail: " + ", ".join(
            f"{r.stat} (ratio {r.ratio:.2f}, KS {r.ks:.2f})" for r in failed.itertuples())
    return out
