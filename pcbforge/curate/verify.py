"""Pixel-level verification of a candidate pair: duplicate, variant or different.

Perceptual hashes only say two images look alike at 8x8 frequencies. A PCB
tile with a 15-pixel spur hashes like its clean template, and generic tools
merge the pair, throwing away exactly the scarce defect image. Here every
candidate is compared pixel by pixel on aligned thumbnails the way an AOI
machine compares a board to its golden template:

1. the second image is mapped onto the first with a linear grey-level fit
   (absorbs brightness/contrast changes of a copy);
2. a *tolerant* difference is taken: a pixel differs only if it lies outside
   the min/max envelope of the other image's 3x3 neighbourhood, so edges that
   moved by resampling, re-encoding or 1-2 px of misregistration do not count;
3. differences above a contrast threshold, opened with a 2x2 kernel so
   one-pixel-wide edge residue vanishes, are *local changes*.

No local change: duplicate. A few small local changes on an otherwise equal
image, touching a small share of the image's content: the same scene with a
defect (a *variant*: same group, not a duplicate). Anything else: different
images.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from enum import Enum

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pcbforge.curate.hashing import dihedral, grey_levels

#: (p1, median, p99) grey levels, as :func:`pcbforge.curate.hashing.grey_levels` gives.
GreyLevels = tuple[float, float, float]


class Relation(str, Enum):
    DUPLICATE = "duplicate"
    VARIANT = "variant"
    DIFFERENT = "different"


class VerifyParams(BaseModel):
    """Thresholds of the pixel-level check (fractions are of the thumbnail)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tolerance_px: int = Field(1, ge=0, le=3, description="Envelope radius in thumbnail pixels.")
    min_contrast: float = Field(
        24.0, ge=1, description="A local change differs by at least this many grey levels..."
    )
    relative_contrast: float = Field(
        0.22, gt=0, lt=1, description="...and by this share of the image's grey range."
    )
    max_duplicate_changed_px: int = Field(
        0, ge=0, description="Local-change pixels a duplicate may still have."
    )
    max_variant_changed_fraction: float = Field(
        0.16, gt=0, lt=1, description="Largest changed area of a defect variant."
    )
    max_variant_content_fraction: float = Field(
        0.35, gt=0, le=1, description="Largest share of the image's content a variant changes."
    )
    max_mean_difference: float = Field(
        0.16, gt=0, lt=1, description="Largest mean |difference| / range of same-scene images."
    )
    max_aspect_change: float = Field(
        0.04, ge=0, description="Largest |log aspect ratio| change of a copy."
    )


@dataclass(frozen=True)
class Comparison:
    relation: Relation
    changed_px: int  # local-change pixels in the thumbnail
    changed_fraction: float
    mean_difference: float  # mean |a - fitted b| / grey range
    changed_content_fraction: float = 0.0  # changed pixels / content pixels

    @property
    def same_scene(self) -> bool:
        return self.relation is not Relation.DIFFERENT


def compare_thumbnails(
    a: np.ndarray,
    b: np.ndarray,
    params: VerifyParams | None = None,
    aspect_change: float = 0.0,
    sharpness: tuple[float, float] | None = None,
    min_source_side: int | None = None,
    coarse: tuple[CoarseView, CoarseView] | None = None,
) -> Comparison:
    """Compare two aligned grey uint8 thumbnails of equal shape (``b`` already
    transformed into ``a``'s orientation). ``aspect_change`` is
    ``|log(aspect_a / aspect_b)|`` of the original images; ``sharpness`` the
    thumbnails' Laplacian variances when already known (they do not change
    under rotation or mirroring). ``min_source_side``, the smallest side of
    the two original images, widens the tolerance when a source pixel spans
    several thumbnail pixels (a small image blown up to thumbnail size).
    ``coarse``: the two images' :func:`coarse_view`, when already computed.

    All steps are saturating uint8 OpenCV operations (about 0.3 ms for two
    256 x 256 thumbnails): ``max(0, a - dilate(b))`` is ``cv2.subtract``.
    :func:`pair_relation` gives the same relation, skipping what it does not need.
    """
    params = params or VerifyParams()
    if a.shape != b.shape:
        raise ValueError(f"thumbnails must have equal shapes, got {a.shape} and {b.shape}")
    a, b = _as_uint8(a), _as_uint8(b)
    if aspect_change > params.max_aspect_change:
        return Comparison(Relation.DIFFERENT, 0, 0.0, float("nan"))
    views = coarse if coarse is not None else (coarse_view(a), coarse_view(b))
    quick = coarse_comparison(*views, params)
    if quick is not None:
        return quick
    return _full_comparison(a, b, params, sharpness, min_source_side, None, relation_only=False)


def pair_relation(
    a: np.ndarray,
    b: np.ndarray,
    params: VerifyParams,
    *,
    aspect_change: float = 0.0,
    sharpness: tuple[float, float] | None = None,
    min_source_side: int | None = None,
    coarse: tuple[CoarseView, CoarseView] | None = None,
    levels: tuple[GreyLevels, GreyLevels] | None = None,
) -> Relation:
    """The relation :func:`compare_thumbnails` finds for the same arguments, without
    the measurements nobody reads (see :func:`full_relation`)."""
    if a.shape != b.shape:
        raise ValueError(f"thumbnails must have equal shapes, got {a.shape} and {b.shape}")
    a, b = _as_uint8(a), _as_uint8(b)
    if aspect_change > params.max_aspect_change:
        return Relation.DIFFERENT
    quick = coarse_comparison(*(coarse or (coarse_view(a), coarse_view(b))), params)
    if quick is not None:
        return quick.relation
    return full_relation(a, b, params, sharpness=sharpness, min_source_side=min_source_side,
                         levels=levels)


def full_relation(
    a: np.ndarray,
    b: np.ndarray,
    params: VerifyParams,
    *,
    sharpness: tuple[float, float] | None = None,
    min_source_side: int | None = None,
    levels: tuple[GreyLevels, GreyLevels] | None = None,
) -> Relation:
    """The thumbnail-resolution part of :func:`compare_thumbnails` (for a pair that
    passed its aspect and :func:`coarse_comparison` checks), stopping as soon as the
    relation is decided: a mean difference above the limit is ``different`` whatever
    the local changes, no local change is a ``duplicate`` whatever the content, and
    too large a changed area is ``different`` whatever share of the content it is.
    ``levels``: the :func:`subsample_levels` of ``a`` and ``b``, when already known
    (``b``'s after its transform: see :func:`subsample_parity`)."""
    return _full_comparison(_as_uint8(a), _as_uint8(b), params, sharpness, min_source_side,
                            levels, relation_only=True).relation


def coarse_comparison(view_a: CoarseView, view_b: CoarseView, params: VerifyParams
                      ) -> Comparison | None:
    """``different`` decided on the two coarse views alone, or None (look closer).

    Quick exits for clearly different images (most hash candidates), on 4x smaller
    copies: their mean difference is at most the thumbnails'. The content energy of
    the fitted second view is only computed for pairs the first test leaves open."""
    small_b = _fitgrey_levels(view_b.small, view_a.small, _known_stats(view_b), view_a.mean)
    coarse = float(cv2.mean(cv2.absdiff(view_a.small, small_b))[0])
    coarse_range = max(view_a.grey_range, view_b.grey_range)
    if coarse / coarse_range > 1.5 * params.max_mean_difference:
        return Comparison(Relation.DIFFERENT, 0, 0.0, coarse / coarse_range)
    # Sparse tiles differ little against the whole frame but as much as their
    # content (DeepPCB: unrelated tiles >= 0.97, a board and its defect
    # variant <= 0.46 in 99% of pairs). b's energy after the grey fit, on a's scale.
    median_b = grey_levels(small_b)[1]
    energy_b = float(cv2.mean(cv2.absdiff(small_b, np.full_like(small_b, median_b)))[0])
    content_energy = max(view_a.energy, energy_b, 1.0)
    if coarse > _MAX_COARSE_CONTENT_DIFFERENCE * content_energy:
        return Comparison(Relation.DIFFERENT, 0, 0.0, coarse / coarse_range, 1.0)
    return None


def _full_comparison(a: np.ndarray, b: np.ndarray, params: VerifyParams,
                     sharpness: tuple[float, float] | None, min_source_side: int | None,
                     levels: tuple[GreyLevels, GreyLevels] | None, *, relation_only: bool
                     ) -> Comparison:
    """The thumbnail-resolution check of :func:`compare_thumbnails`; with
    ``relation_only``, the measurements left after an early decision are zeros."""
    # The larger range of the two: a blank template has none, its defect variant does.
    # Every other pixel of each row and column: the same grey levels (no
    # averaging, unlike the coarse view) for a quarter of the histogram cost.
    levels_a, levels_b = levels if levels is not None else (
        subsample_levels(a), subsample_levels(b))
    grey_range = max(levels_a[2] - levels_a[0], levels_b[2] - levels_b[0], 1.0)
    a, b = _match_sharpness(a, b, sharpness)
    b = _fitgrey_levels(b, a)
    mean_difference = float(cv2.mean(cv2.absdiff(a, b))[0]) / grey_range
    if relation_only and mean_difference > params.max_mean_difference:
        return Comparison(Relation.DIFFERENT, 0, 0.0, mean_difference)

    tolerance = params.tolerance_px
    if min_source_side:
        tolerance = min(max(tolerance, math.ceil(a.shape[0] / min_source_side)), 3)
    difference = _tolerant_difference(a, b, tolerance)
    threshold = max(params.min_contrast, params.relative_contrast * grey_range)
    changed = cv2.threshold(difference, min(threshold, 254.0), 1, cv2.THRESH_BINARY)[1]
    changed = cv2.morphologyEx(changed, cv2.MORPH_OPEN, _OPEN_KERNEL)
    changed_px = int(cv2.countNonZero(changed))
    changed_fraction = changed_px / changed.size
    if relation_only and (mean_difference <= params.max_mean_difference
                          and changed_px <= params.max_duplicate_changed_px):
        return Comparison(Relation.DUPLICATE, changed_px, changed_fraction, mean_difference)
    if relation_only and changed_fraction > params.max_variant_changed_fraction:
        return Comparison(Relation.DIFFERENT, changed_px, changed_fraction, mean_difference)
    content_fraction = (
        changed_px / _content_pixels(a, b, levels_a[1], levels_b[1], grey_range)
        if changed_px else 0.0
    )

    if mean_difference > params.max_mean_difference:
        relation = Relation.DIFFERENT
    elif changed_px <= params.max_duplicate_changed_px:
        relation = Relation.DUPLICATE
    elif (
        changed_fraction <= params.max_variant_changed_fraction
        and content_fraction <= params.max_variant_content_fraction
    ):
        relation = Relation.VARIANT
    else:
        relation = Relation.DIFFERENT
    return Comparison(relation, changed_px, changed_fraction, mean_difference, content_fraction)


def subsample_levels(thumb: np.ndarray, parity: tuple[int, int] = (0, 0)) -> GreyLevels:
    """Grey levels of every other pixel of every other row, starting at ``parity``
    ((row, column), each 0 or 1)."""
    return grey_levels(np.ascontiguousarray(thumb[parity[0]::2, parity[1]::2]))


@functools.lru_cache(maxsize=64)
def subsample_parity(shape: tuple[int, int], variant: int) -> tuple[int, int]:
    """The parity whose :func:`subsample_levels` of an image of ``shape`` equal those of
    ``dihedral(image, variant)`` at parity (0, 0): the transformed image's every other
    pixel is, as a set, the original's every other pixel from that (row, column)
    offset. So a thumbnail's levels are computed once per parity, not once per pair."""
    rows, cols = np.divmod(dihedral(np.arange(shape[0] * shape[1]).reshape(shape),
                                    variant)[::2, ::2], shape[1])
    parity = (int(rows.flat[0] % 2), int(cols.flat[0] % 2))
    expected = len(range(parity[0], shape[0], 2)) * len(range(parity[1], shape[1], 2))
    if rows.size != expected or np.any(rows % 2 != parity[0]) or np.any(cols % 2 != parity[1]):
        raise AssertionError(f"no single parity for variant {variant} of {shape}")
    return parity


_OPEN_KERNEL = np.ones((2, 2), np.uint8)
_DILATE_KERNEL = np.ones((3, 3), np.uint8)
_BLUR_SIGMAS = (0.4, 0.6, 0.8, 1.0, 1.3, 1.7, 2.2)


_MAX_COARSE_CONTENT_DIFFERENCE = 0.8


@dataclass(frozen=True)
class CoarseView:
    """A thumbnail shrunk 4x, with its grey range, content energy (mean
    |pixel - median|), mean and standard deviation. Rotating the view equals the
    view of the rotation, and none of the numbers changes under it (sums of whole
    grey levels, exact in any order)."""

    small: np.ndarray
    grey_range: float
    energy: float
    mean: float = float("nan")
    std: float = float("nan")

    def transformed(self, variant: int) -> CoarseView:
        moved = np.ascontiguousarray(dihedral(self.small, variant))
        return CoarseView(moved, self.grey_range, self.energy, self.mean, self.std)


def coarse_view(thumb: np.ndarray) -> CoarseView:
    size = (max(thumb.shape[1] // 4, 1), max(thumb.shape[0] // 4, 1))
    small = cv2.resize(np.ascontiguousarray(thumb), size, interpolation=cv2.INTER_AREA)
    return coarse_view_of_small(small)


def coarse_view_of_small(small: np.ndarray, levels: GreyLevels | None = None,
                         distance: np.ndarray | None = None) -> CoarseView:
    """:func:`coarse_view` from the shrunk thumbnail itself. ``levels`` (its
    :func:`grey_levels`) and ``distance`` (``|small - median|``), when already known
    (the occupancy hash computes both on the same view)."""
    low, median, high = levels if levels is not None else grey_levels(small)
    if distance is None:
        distance = cv2.absdiff(small, np.full_like(small, median))
    energy = float(cv2.mean(distance)[0])
    mean, std = (float(v[0, 0]) for v in cv2.meanStdDev(small))
    return CoarseView(small, max(high - low, 1.0), max(energy, 1.0), mean, std)


def coarse_record_dtype(thumb_size: int) -> np.dtype:
    """One record of the coarse-view store: a :class:`CoarseView` of a ``thumb_size``
    thumbnail, written at inspection so that verification reads it instead of shrinking
    every thumbnail again in every chunk of pairs."""
    side = max(thumb_size // 4, 1)
    return np.dtype([("small", np.uint8, (side, side)), ("grey_range", "<f8"),
                     ("energy", "<f8"), ("mean", "<f8"), ("std", "<f8")])


def coarse_record(view: CoarseView) -> np.ndarray:
    """``view`` as one record of :func:`coarse_record_dtype`."""
    record = np.zeros((), coarse_record_dtype(view.small.shape[0] * 4))
    record["small"] = view.small
    for name in ("grey_range", "energy", "mean", "std"):
        record[name] = getattr(view, name)
    return record


def coarse_view_of_record(record: np.ndarray) -> CoarseView:
    """The :class:`CoarseView` stored in a :func:`coarse_record`."""
    return CoarseView(np.ascontiguousarray(record["small"]), float(record["grey_range"]),
                      float(record["energy"]), float(record["mean"]), float(record["std"]))


def _known_stats(view: CoarseView) -> tuple[float, float] | None:
    return None if math.isnan(view.mean) else (view.mean, view.std)


def _as_uint8(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image if image.dtype == np.uint8 else np.clip(image, 0, 255)
                                .astype(np.uint8))


def _content_pixels(a, b, median_a: float, median_b: float, grey_range: float) -> int:
    """Pixels that hold something in either image: away from the background
    (the median) by a quarter of the grey range, widened by one pixel.

    A PCB tile of bare substrate with a few traces has little content; two
    such tiles differ in a small share of the frame but in most of their
    content, which is what tells them apart from a board and its defect.
    """
    level = 0.25 * grey_range
    content = cv2.bitwise_or(
        cv2.threshold(cv2.absdiff(a, np.full_like(a, int(median_a))), level, 1,
                      cv2.THRESH_BINARY)[1],
        cv2.threshold(cv2.absdiff(b, np.full_like(b, int(median_b))), level, 1,
                      cv2.THRESH_BINARY)[1],
    )
    return max(int(cv2.countNonZero(cv2.dilate(content, _DILATE_KERNEL))), 1)


def _sharpness(image: np.ndarray) -> float:
    return float(cv2.meanStdDev(cv2.Laplacian(image, cv2.CV_16S))[1][0, 0]) ** 2


def _match_sharpness(
    a: np.ndarray, b: np.ndarray, known: tuple[float, float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Blur the sharper image until it is as sharp as the other one.

    A slightly blurred copy loses the peak contrast of features a few pixels
    wide (vias, thin gaps), which would otherwise read as local changes. Only
    the sharper side is blurred, and only when it is clearly sharper, so two
    equally sharp images (a board and its defect variant) are compared as they
    are.
    """
    sharp_a, sharp_b = known if known is not None else (_sharpness(a), _sharpness(b))
    if min(sharp_a, sharp_b) <= 0 or max(sharp_a, sharp_b) < 1.15 * min(sharp_a, sharp_b):
        return a, b
    swap = sharp_b > sharp_a
    sharper, target = (b, sharp_a) if swap else (a, sharp_b)
    # Sharpness falls monotonically with sigma: walk up the ladder and stop at
    # the first blur that is no sharper than the target (usually 1-3 tries).
    best, best_gap = sharper, np.inf
    for sigma in _BLUR_SIGMAS:
        blurred = cv2.GaussianBlur(sharper, (0, 0), sigma)
        sharpness = _sharpness(blurred)
        gap = abs(np.log(max(sharpness, 1e-6) / target))
        if gap < best_gap:
            best, best_gap = blurred, gap
        if sharpness <= target:
            break
    return (a, best) if swap else (best, b)


def _fitgrey_levels(source: np.ndarray, target: np.ndarray,
                    source_stats: tuple[float, float] | None = None,
                    target_mean: float = float("nan")) -> np.ndarray:
    """Least-squares gain/offset mapping ``source`` onto ``target`` (uint8 out).
    ``source_stats`` (mean, standard deviation) and ``target_mean``: when known."""
    mean_s, std_s = source_stats if source_stats is not None else (
        float(v[0, 0]) for v in cv2.meanStdDev(source))
    mean_t = float(cv2.mean(target)[0]) if math.isnan(target_mean) else target_mean
    if std_s < 1e-3:
        return cv2.convertScaleAbs(source, alpha=1.0, beta=mean_t - mean_s)
    covariance = float(cv2.mean(cv2.multiply(source, target, dtype=cv2.CV_32F))[0]) - (
        mean_s * mean_t
    )
    gain = covariance / std_s**2
    if gain <= 0:  # anti-correlated: no photometric fit makes these alike
        return source
    # convertScaleAbs saturates to 0..255 (|x| is harmless: the result is >= 0
    # wherever it matters, negative values only arise from clipping).
    return cv2.convertScaleAbs(source, alpha=gain, beta=mean_t - gain * mean_s)


def _tolerant_difference(a: np.ndarray, b: np.ndarray, radius: int) -> np.ndarray:
    """How far each pixel of either image lies outside the other's local envelope."""
    if radius == 0:
        return cv2.absdiff(a, b)
    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    b_max, b_min = cv2.dilate(b, kernel), cv2.erode(b, kernel)
    a_max, a_min = cv2.dilate(a, kernel), cv2.erode(a, kernel)
    outside_b = cv2.max(cv2.subtract(a, b_max), cv2.subtract(b_min, a))
    outside_a = cv2.max(cv2.subtract(b, a_max), cv2.subtract(a_min, b))
    return cv2.max(outside_a, outside_b)
