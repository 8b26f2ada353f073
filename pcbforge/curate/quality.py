"""Image quality scores and the low-quality verdict.

Scores are computed on the grey analysis thumbnail, so they cost the same for
a 640 px tile and a 16k line-scan image. Thresholds are deliberately loose:
binarised PCB tiles are mostly white or mostly black by nature, so "too dark"
means nothing in the image is bright, not that the mean is low.
"""

from __future__ import annotations

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class QualityThresholds(BaseModel):
    """When an image counts as low quality (all on the 0-255 grey scale)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_side: int = Field(32, ge=1, description="Smaller width/height is `too_small`.")
    blank_range: float = Field(
        8.0, ge=0, description="p99 - p1 grey range below this is `blank` (uniform frame)."
    )
    dark_p99: float = Field(
        38.0, ge=0, le=255, description="99th percentile below this is `too_dark`."
    )
    bright_p1: float = Field(
        242.0, ge=0, le=255, description="1st percentile above this is `too_bright`."
    )


#: Columns written by :func:`quality_scores`, all floats.
SCORE_COLUMNS = (
    "brightness_score",
    "contrast_score",
    "dark_score",
    "bright_score",
    "range_score",
    "sharpness_score",
)


def quality_scores(thumb: np.ndarray) -> dict[str, float]:
    """Scores of a grey uint8 thumbnail (percentiles are whole grey levels).

    - ``brightness_score``: mean grey / 255
    - ``contrast_score``: standard deviation / 255
    - ``dark_score``: 99th percentile (the brightest content) / 255
    - ``bright_score``: 1st percentile (the darkest content) / 255
    - ``range_score``: (p99 - p1) / 255; near 0 for a uniform frame
    - ``sharpness_score``: variance of the Laplacian / 255^2 (low = blurred)
    """
    histogram = np.bincount(thumb.ravel(), minlength=256)
    cumulative = np.cumsum(histogram)
    # Percentiles from the histogram: exact grey levels, no sort of the pixels.
    p1 = float(np.searchsorted(cumulative, 0.01 * thumb.size))
    p99 = float(np.searchsorted(cumulative, 0.99 * thumb.size))
    mean, std = (float(v[0, 0]) for v in cv2.meanStdDev(thumb))
    laplacian_std = float(cv2.meanStdDev(cv2.Laplacian(thumb, cv2.CV_16S))[1][0, 0])
    return {
        "brightness_score": mean / 255.0,
        "contrast_score": std / 255.0,
        "dark_score": p99 / 255.0,
        "bright_score": p1 / 255.0,
        "range_score": (p99 - p1) / 255.0,
        "sharpness_score": laplacian_std**2 / 255.0**2,
    }


def low_quality_reason(
    scores: dict[str, float], width: int, height: int, thresholds: QualityThresholds
) -> str:
    """The first low-quality reason that applies, or ``""``.

    Order: too_small, blank, too_dark, too_bright (a black frame is `blank`,
    not `too_dark`: it has no content at all).
    """
    if min(width, height) < thresholds.min_side:
        return "too_small"
    if scores["range_score"] * 255.0 < thresholds.blank_range:
        return "blank"
    if scores["dark_score"] * 255.0 < thresholds.dark_p99:
        return "too_dark"
    if scores["bright_score"] * 255.0 > thresholds.bright_p1:
        return "too_bright"
    return ""
