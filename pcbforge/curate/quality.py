"""Image quality scores and the low-quality verdict: the ``CHECKS`` registry.

Scores are computed on the grey analysis thumbnail, so they cost the same for
a 640 px tile and a 16k line-scan image. Thresholds are deliberately loose:
binarised PCB tiles are mostly white or mostly black by nature, so "too dark"
means nothing in the image is bright, not that the mean is low.

Each check (:class:`QualityCheck`) owns its score, score column, threshold, reason and
CLI help; inspection applies :data:`CHECKS` in order and ``pcbforge curate`` builds one
option per check. Adding a check: a :class:`CheckName`, its entry in :data:`CHECKS`
and its field in :class:`QualityThresholds`, all in this module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Literal

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


class CheckName(str, Enum):
    """The built-in quality checks, in the order they are applied."""

    too_small = "too_small"
    blank = "blank"
    too_dark = "too_dark"
    too_bright = "too_bright"


@dataclass(frozen=True)
class Measured:
    """What a check scores one image on: its grey thumbnail, the shared
    :func:`quality_scores` of it, and the image's full size."""

    thumb: np.ndarray
    scores: Mapping[str, float]
    width: int
    height: int


@dataclass(frozen=True)
class QualityCheck:
    """One low-quality check, in the manner of cleanvision's issue managers.

    ``name`` is the reason written to ``reason`` and ``low_quality_reason`` when the check
    flags an image. ``measure`` scores a :class:`Measured` image; the score goes to the
    samples table's ``score_column`` (None: the table already holds what it reads, as
    ``width``/``height`` for ``too_small``). ``threshold`` names the field of
    :class:`QualityThresholds` holding the limit, which ``pcbforge curate`` offers as
    ``--<threshold>`` with ``help``. An image is flagged when ``score * scale`` is
    ``below`` (or ``above``) the limit; ``scale`` puts a 0-1 score on the limit's scale.
    """

    name: str
    measure: Callable[[Measured], float]
    score_column: str | None
    threshold: str
    flagged_when: Literal["below", "above"]
    help: str
    scale: float = 1.0

    def score(self, measured: Measured) -> float:
        return self.measure(measured)

    def limit(self, thresholds: BaseModel) -> float:
        """This check's limit in ``thresholds``; ``KeyError`` naming the fields when absent."""
        try:
            return getattr(thresholds, self.threshold)
        except AttributeError:
            raise KeyError(
                f"quality check {self.name!r} reads the threshold {self.threshold!r}; expected "
                f"it among the fields of {type(thresholds).__name__}: "
                f"{', '.join(type(thresholds).model_fields)}"
            ) from None

    def is_issue(self, score: float, limit: float) -> bool:
        scaled = score * self.scale
        return scaled < limit if self.flagged_when == "below" else scaled > limit


#: The quality checks, applied in this order: the first that flags an image names its
#: reason (a black frame is ``blank``, not ``too_dark``: it has no content at all). Worker
#: processes import this module, so a check belongs here to run with several workers.
CHECKS: dict[str, QualityCheck] = {
    CheckName.too_small: QualityCheck(
        CheckName.too_small.value, lambda m: min(m.width, m.height), None, "min_side",
        "below", "Smaller side below this is too_small.",
    ),
    CheckName.blank: QualityCheck(
        CheckName.blank.value, lambda m: m.scores["range_score"], "range_score",
        "blank_range", "below", "Grey range of the content below this is blank.", 255.0,
    ),
    CheckName.too_dark: QualityCheck(
        CheckName.too_dark.value, lambda m: m.scores["dark_score"], "dark_score", "dark_max",
        "below", "Brightest content below this grey level is too_dark.", 255.0,
    ),
    CheckName.too_bright: QualityCheck(
        CheckName.too_bright.value, lambda m: m.scores["bright_score"], "bright_score",
        "bright_min", "above", "Darkest content above this grey level is too_bright.", 255.0,
    ),
}


def get_check(name: str) -> QualityCheck:
    """The registered check ``name``; ``KeyError`` listing the valid names otherwise."""
    try:
        return CHECKS[name]
    except KeyError:
        raise KeyError(
            f"unknown quality check {name!r}; expected one of: {', '.join(CHECKS)}"
        ) from None


def register_check(check: QualityCheck) -> QualityCheck:
    """Add ``check`` after the others; ``ValueError`` when its name or score column is
    taken (a score column must end in ``_score``, as the table's score columns do)."""
    if check.name in CHECKS:
        raise ValueError(f"a quality check named {check.name!r} is already registered")
    if check.score_column is not None:
        if not check.score_column.endswith("_score"):
            raise ValueError(f"score column of {check.name!r}: expected a name ending in "
                             f"'_score', got {check.score_column!r}")
        if any(other.score_column == check.score_column for other in CHECKS.values()):
            raise ValueError(f"score column {check.score_column!r} of {check.name!r} is "
                             "already written by another check")
    CHECKS[check.name] = check
    return check


def check_score_columns() -> tuple[str, ...]:
    """Score columns of the registered checks that :func:`quality_scores` does not write."""
    return tuple(dict.fromkeys(
        check.score_column for check in CHECKS.values()
        if check.score_column is not None and check.score_column not in SCORE_COLUMNS
    ))


def apply_checks(measured: Measured, thresholds: BaseModel) -> tuple[dict[str, float], str]:
    """Every registered check's score (by score column) and the first reason that applies,
    or ``""``."""
    scores: dict[str, float] = {}
    reason = ""
    for check in CHECKS.values():
        score, limit = check.score(measured), check.limit(thresholds)  # both, always
        if check.score_column is not None:
            scores[check.score_column] = score
        if not reason and check.is_issue(score, limit):
            reason = check.name
    return scores, reason

