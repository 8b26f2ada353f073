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
        5.0, ge=0, description="Content grey range below this is `blank` (uniform frame)."
    )
    dark_max: float = Field(
        38.0, ge=0, le=255, description="Brightest content below this is `too_dark`."
    )
    bright_min: float = Field(
        230.0, ge=0, le=255, description="Darkest content above this is `too_bright`."
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
    """Scores of a grey uint8 thumbnail.

    - ``brightness_score``: mean grey / 255
    - ``contrast_score``: standard deviation / 255
    - ``dark_score``: brightest content (max after a 3x3 median) / 255
    - ``bright_score``: darkest content (min after a 3x3 median) / 255
    - ``range_score``: their difference; near 0 for a uniform frame
    - ``sharpness_score``: variance of the Laplacian / 255^2 (low = blurred)
    """
    # Extremes of a 3x3-median-filtered thumbnail: a speck of sensor noise
    # vanishes, but any real feature (a 10-pixel spurious-copper island on bare
    # substrate, a pin-hole in a copper pour) still counts as content.
    # Percentiles would call such a tile blank and drop a scarce defect image.
    low, high = (float(v) for v in cv2.minMaxLoc(cv2.medianBlur(thumb, 3))[:2])
    mean, std = (float(v[0, 0]) for v in cv2.meanStdDev(thumb))
    laplacian_std = float(cv2.meanStdDev(cv2.Laplacian(thumb, cv2.CV_16S))[1][0, 0])
    return {
        "brightness_score": mean / 255.0,
        "contrast_score": std / 255.0,
        "dark_score": high / 255.0,
        "bright_score": low / 255.0,
        "range_score": (high - low) / 255.0,
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
    if scores["dark_score"] * 255.0 < thresholds.dark_max:
        return "too_dark"
    if scores["bright_score"] * 255.0 > thresholds.bright_min:
        return "too_bright"
    return ""
