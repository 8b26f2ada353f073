"""Non-defect differences between a synthetic tested image and its template.

A real tested image never equals its template outside the defects: the second scan is
registered a pixel or two off (sometimes with a sub-pixel rotation), its edges are rough and
binarized again, and JPEG adds edge noise. A reference-based model trained on pairs that
differ *only* at the defects floods real pairs with false positives, so every synthetic
tested image goes through the same kind of nuisance, matched to DeepPCB in distribution
(``benchmarks/nuisance_bench.py``).

Two steps, as everywhere in pcbforge: :func:`sample_nuisance` draws every random number
from the caller's generator into a JSON-serialisable dict (written with the labels), and
:func:`apply_nuisance` / :func:`warp_mask` are deterministic given that dict.

The model:

* a rigid warp: translation plus a tiny rotation about the image centre, applied with
  ``cv2.warpAffine`` (border replicated) to the image and, by :func:`warp_mask`, to masks;
* an *edge offset* field ``o`` in px (positive: copper grows), the sum of a global bias, a
  long-scale smooth field and a short-scale roughness field. A binarized template has lost
  where its edges really were inside their pixels, so in a second scan an edge moves by a
  pixel when its true position plus the shift crosses a pixel centre, anywhere along a
  straight edge or in dashes; the long field plays that role and gives DeepPCB's bands of
  1-2 px, the short one their ragged ends. On binary images the offset is a per-pixel
  threshold on the softened, warped board (exact for straight edges, via the blurred step
  profile); on other images it is ``v - o |grad v|``, the first-order edge displacement.
  Far from edges nothing changes;
* an in-memory JPEG round trip (DeepPCB tested images are quality-75 JPEGs of binary
  images: a few grey pixels along edges).

Guarantee: compared with the input, the output binarized at 128 (the luminance of BGR)
differs by bands at most 2 px thick, i.e. opening the difference with a 3x3 square leaves
nothing (:func:`thick_difference`). Sampling caps the total edge displacement at
``MAX_EDGE_MOVE_PX`` so this holds by construction almost everywhere; the rest (a few pixels
in ~5 % of images: jogs, features 2 px apart, bands along the image border, which the
opening counts as thicker) is put back to the input, which cannot leave a 3x3 square.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "MAX_EDGE_MOVE_PX",
    "NuisanceParams",
    "apply_nuisance",
    "jpeg_round_trip_of",
    "sample_nuisance",
    "thick_difference",
    "warp_mask",
]

#: Grey level that splits copper (0) from substrate (255) when binarizing.
THRESHOLD = 128
#: Cap on an edge's displacement (shift plus offset): below 2.5 px it rounds to a 2-px band;
#: the margin covers jogs and corners, where the blurred profile is not a straight edge's.
MAX_EDGE_MOVE_PX = 2.2
_OPEN_KERNEL = np.ones((3, 3), np.uint8)
# Nodes uniform on [-0.5, 0.5] have std 1/sqrt(12); OpenCV's cubic upsampling (a = -0.75)
# keeps on average sum(w_i^2) = 6/7 of the variance per axis, i.e. 6/7 of the std in 2-D.
# Scaling the nodes by this factor gives a field of std 1.
_UNIT_FIELD = math.sqrt(12.0) * 7.0 / 6.0
# Edge offsets travel as uint8 codes: code = 128 + 64 * offset_px (1/64 px, +-2 px).
_CODE_ZERO = 128.0
_CODE_PER_PX = 64.0


class NuisanceParams(BaseModel):
    """Distribution of the nuisance applied to a synthetic tested image (lengths in px).

    Defaults are calibrated on DeepPCB trainval (~48 px/mm) with
    ``benchmarks/nuisance_bench.py``: outside the labelled boxes real pairs differ on a
    median ~1 % of pixels (~0.27 per template edge pixel), half of it copper added, with
    ~0.02 % grey pixels from DeepPCB's quality-75 JPEG.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="False: sample returns {'enabled': False}; "
                          "apply and warp return unchanged copies.")
    shift_std_x_px: float = Field(0.45, ge=0, le=2, description="Scale of the x translation "
                                  "(a Student t with shift_dof degrees of freedom).")
    shift_std_y_px: float = Field(0.32, ge=0, le=2, description="Scale of the y translation.")
    shift_dof: float = Field(2.0, ge=1, le=1000, description="Degrees of freedom of the "
                             "translation's t distribution: small gives DeepPCB's heavy "
                             "tail of 1-2 px misregistrations, large is Gaussian.")
    max_shift_px: float = Field(
        1.8, ge=0, le=2,
        description="Cap on |translation| per axis plus the rotation's displacement at the "
                    "far corner. Edge offsets are capped at MAX_EDGE_MOVE_PX (2.2) minus this "
                    "displacement, so bands stay <= 2 px thick.",
    )
    rotation_prob: float = Field(0.3, ge=0, le=1, description="Probability that the image "
                                 "is also rotated (DeepPCB: sometimes, sub-pixel); unrotated "
                                 "images take a faster path.")
    rotation_std_deg: float = Field(0.03, ge=0, le=1, description="Std of the rotation about "
                                    "the image centre (degrees, counter-clockwise).")
    max_rotation_deg: float = Field(0.1, ge=0, le=1, description="Cap on |rotation|.")
    offset_min_px: float = Field(0.3, ge=0, le=1.5, description="Std of the long-scale edge "
                                 "offset field, drawn per image uniformly from "
                                 "[offset_min_px, offset_max_px].")
    offset_max_px: float = Field(0.9, ge=0, le=1.5, description="See offset_min_px.")
    offset_scale_px: float = Field(40.0, ge=2, le=1024, description="Correlation length of "
                                   "the long-scale offset field (spacing of its grid).")
    roughness_px: float = Field(0.2, ge=0, le=1, description="Std of the short-scale edge "
                                "roughness field.")
    roughness_scale_px: float = Field(3.0, ge=1, le=64, description="Correlation length of "
                                      "the roughness field.")
    bias_std_px: float = Field(0.1, ge=0, le=1, description="Std of a global copper grow "
                               "(+) / shrink (-).")
    max_bias_px: float = Field(0.3, ge=0, le=1, description="Cap on |bias|.")
    blur_sigma_px: float = Field(0.8, ge=0.5, le=1.5, description="Gaussian that softens "
                                 "binary edges before resampling, so sub-pixel shifts and "
                                 "offsets move them continuously (binary images only).")
    jpeg_prob: float = Field(1.0, ge=0, le=1, description="Probability of the JPEG round "
                             "trip.")
    jpeg_quality_min: int = Field(73, ge=30, le=100, description="JPEG quality is drawn "
                                  "uniformly from [jpeg_quality_min, jpeg_quality_max].")
    jpeg_quality_max: int = Field(77, ge=30, le=100, description="See jpeg_quality_min.")

    @model_validator(mode="after")
    def _ranges(self) -> NuisanceParams:
        for lo, hi in (("offset_min_px", "offset_max_px"),
                       ("jpeg_quality_min", "jpeg_quality_max")):
            if getattr(self, lo) > getattr(self, hi):
                raise ValueError(f"{lo} must be <= {hi}, got {getattr(self, lo)} > "
                                 f"{getattr(self, hi)}")
        return self


class _Sampled(BaseModel):
    """Validated form of the dict returned by :func:`sample_nuisance` (enabled case)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool
    height: int = Field(ge=1)
    width: int = Field(ge=1)
    dx: float = Field(ge=-2, le=2)
    dy: float = Field(ge=-2, le=2)
    angle_deg: float = Field(ge=-1, le=1)
    offset_px: float = Field(ge=0, le=1.5)
    offset_scale_px: float = Field(ge=2, le=1024)
    roughness_px: float = Field(ge=0, le=1)
    roughness_scale_px: float = Field(ge=1, le=64)
    bias_px: float = Field(ge=-1, le=1)
    max_offset_px: float = Field(ge=0, le=MAX_EDGE_MOVE_PX)
    blur_sigma_px: float = Field(ge=0.5, le=1.5)
    noise_seed: int = Field(ge=0, lt=2**32)
    jpeg_quality: int | None = Field(ge=30, le=100)


def sample_nuisance(
    rng: np.random.Generator, params: NuisanceParams, shape: tuple[int, ...]
) -> dict[str, Any]:
    """Draw one nuisance for an image of ``shape`` ((height, width[, channels])).

    Returns a JSON-serialisable dict of plain floats/ints. Every random number is drawn
    here, including the seed of the noise fields, so the dict alone reproduces the output
    of :func:`apply_nuisance` and :func:`warp_mask`. Keys: ``enabled``, ``height``,
    ``width``, ``dx``/``dy`` (px, content moves right/down), ``angle_deg``
    (counter-clockwise about the centre), ``offset_px``/``offset_scale_px`` (long-scale
    edge offset std and correlation length), ``roughness_px``/``roughness_scale_px``,
    ``bias_px`` (copper grow), ``max_offset_px`` (cap on the summed offset that keeps bands
    <= 2 px), ``blur_sigma_px``, ``noise_seed`` (uint32) and ``jpeg_quality`` (None: no JPEG).
    """
    if len(shape) < 2 or int(shape[0]) < 1 or int(shape[1]) < 1:
        raise ValueError(f"shape must be (height, width) with positive sides, got {shape!r}")
    if not params.enabled:
        return {"enabled": False}
    height, width = int(shape[0]), int(shape[1])
    cap = params.max_shift_px
    dx = float(np.clip(params.shift_std_x_px * rng.standard_t(params.shift_dof), -cap, cap))
    dy = float(np.clip(params.shift_std_y_px * rng.standard_t(params.shift_dof), -cap, cap))
    rotate = bool(rng.random() < params.rotation_prob)
    angle = float(np.clip(rng.normal(0.0, params.rotation_std_deg),
                          -params.max_rotation_deg, params.max_rotation_deg)) if rotate else 0.0
    # The rotation moves the far corner by angle * radius: keep it inside the shift budget.
    radius = 0.5 * math.hypot(height, width)
    shift = max(abs(dx), abs(dy))
    angle_cap = math.degrees(max(cap - shift, 0.0) / radius)
    angle = float(np.clip(angle, -angle_cap, angle_cap))
    turn = math.radians(abs(angle)) * radius
    # Room left for edge offsets: a straight edge already moves by up to shift + turn. (A
    # diagonal band needs ~2.8 px before it holds a 3x3 square, so it is never tighter.)
    room = MAX_EDGE_MOVE_PX - shift - turn
    offset = float(rng.uniform(params.offset_min_px, params.offset_max_px))
    bias = float(np.clip(rng.normal(0.0, params.bias_std_px),
                         -params.max_bias_px, params.max_bias_px))
    noise_seed = int(rng.integers(0, 2**32))
    use_jpeg = bool(rng.random() < params.jpeg_prob)
    quality = int(rng.integers(params.jpeg_quality_min, params.jpeg_quality_max + 1))
    return {
        "enabled": True,
        "height": height,
        "width": width,
        "dx": dx,
        "dy": dy,
        "angle_deg": angle,
        "offset_px": offset,
        "offset_scale_px": float(params.offset_scale_px),
        "roughness_px": float(params.roughness_px),
        "roughness_scale_px": float(params.roughness_scale_px),
        "bias_px": bias,
        "max_offset_px": round(max(room, 0.0), 6),
        "blur_sigma_px": float(params.blur_sigma_px),
        "noise_seed": noise_seed,
        "jpeg_quality": quality if use_jpeg else None,
    }


def _parse(sampled: dict[str, Any]) -> _Sampled | None:
    if not isinstance(sampled, dict):
        raise ValueError(f"sampled must be the dict from sample_nuisance, got "
                         f"{type(sampled).__name__}")
    if sampled.get("enabled") is False:
        return None
    try:
        return _Sampled.model_validate(sampled)
    except ValidationError as err:
        raise ValueError(f"invalid nuisance dict: {err}") from err


def _check_shape(name: str, array: np.ndarray, s: _Sampled) -> None:
    if array.shape[:2] != (s.height, s.width):
        raise ValueError(f"{name} is {array.shape[0]}x{array.shape[1]} but the nuisance was "
                         f"sampled for {s.height}x{s.width}")


def _warp(image: np.ndarray, s: _Sampled, interpolation: int) -> np.ndarray:
    """Rotation about the image centre, then translation (border replicated)."""
    centre = ((s.width - 1) / 2.0, (s.height - 1) / 2.0)
    forward = cv2.getRotationMatrix2D(centre, s.angle_deg, 1.0)
    forward[:, 2] += (s.dx, s.dy)
    return cv2.warpAffine(image, forward, (s.width, s.height), flags=interpolation,
                          borderMode=cv2.BORDER_REPLICATE)


def _unit_nodes(noise: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Random float32 grid, one node per ``scale`` px (2 spare), whose cubic upsampling to
    ``shape`` is a smooth field of std ~1 and correlation length ~``scale`` px.

    Uniform nodes are cheaper than normal ones; the interpolated field is close to Gaussian.
    """
    h, w = shape
    grid = noise.random((math.ceil(h / scale) + 2, math.ceil(w / scale) + 2), dtype=np.float32)
    grid -= np.float32(0.5)
    grid *= np.float32(_UNIT_FIELD)
    return grid


def _offset_code(s: _Sampled) -> np.ndarray:
    """Edge offset per pixel as uint8 codes (``128 + 64 * px``, saturating at +-2 px).

    Both fields are summed on the roughness grid (a few px per node; the long field is
    smooth there already) and only the uint8 codes are upsampled: one full-size array.
    """
    noise = np.random.default_rng(s.noise_seed)
    shape = (s.height, s.width)
    long_nodes = _unit_nodes(noise, shape, s.offset_scale_px)
    short_nodes = _unit_nodes(noise, shape, s.roughness_scale_px)
    long_at_short = cv2.resize(long_nodes, short_nodes.shape[::-1],
                               interpolation=cv2.INTER_CUBIC)
    codes = cv2.addWeighted(long_at_short, _CODE_PER_PX * s.offset_px, short_nodes,
                            _CODE_PER_PX * s.roughness_px,
                            _CODE_ZERO + _CODE_PER_PX * s.bias_px, dtype=cv2.CV_8U)
    return cv2.resize(codes, (s.width, s.height), interpolation=cv2.INTER_CUBIC)


def _code_offsets(max_offset_px: float) -> np.ndarray:
    """Offset in px of every uint8 code, clipped to the sampled cap."""
    offsets = (np.arange(256, dtype=np.float64) - _CODE_ZERO) / _CODE_PER_PX
    return np.clip(offsets, -max_offset_px, max_offset_px)


def _threshold_lut(blur_sigma_px: float, max_offset_px: float) -> np.ndarray:
    """uint8 code -> grey threshold that moves a softened straight edge by the code's offset.

    A 0/255 step blurred by a Gaussian of sigma s reads ``255 Phi(x / s)`` at ``x`` px into
    the substrate, so thresholding at ``255 Phi(o / s)`` turns every pixel centre closer
    than ``o`` into copper (sampled kernels and bilinear resampling agree to ~0.03 px).
    """
    offsets = _code_offsets(max_offset_px) / (blur_sigma_px * math.sqrt(2.0))
    phi = np.array([0.5 * (1.0 + math.erf(z)) for z in offsets])
    # Never 0: a zero threshold would turn pure copper into substrate.
    return np.clip(np.ceil(255.0 * phi), 1, 255).astype(np.uint8)


def _shift_taps(shift: float, sigma: float) -> np.ndarray:
    """1-D kernel for ``cv2.sepFilter2D`` that moves content by ``shift`` px and blurs it by
    a Gaussian of ``sigma`` (``sigma == 0``: linear interpolation, no blur)."""
    half = math.ceil(3.0 * sigma) + math.ceil(abs(shift))
    # sepFilter2D correlates: dst(x) = sum_i k[i] src(x + i - half); centre taps at x - shift.
    lags = half - np.arange(2 * half + 1) - shift
    if sigma > 0:
        taps = np.exp(-0.5 * (lags / sigma) ** 2)
    else:
        taps = np.maximum(1.0 - np.abs(lags), 0.0)
    return (taps / taps.sum()).astype(np.float32).reshape(-1, 1)


def _shift_rows(image: np.ndarray, shift: float) -> np.ndarray:
    """Move content down by ``shift`` px: linear interpolation of two row-shifted views of a
    replicate-padded copy (OpenCV's column filter is slow for asymmetric kernels)."""
    whole = math.floor(shift)
    frac = shift - whole
    pad = abs(whole) + 1
    padded = cv2.copyMakeBorder(image, pad, pad, 0, 0, cv2.BORDER_REPLICATE)
    top = pad - whole  # dst(y) = (1 - frac) src(y - whole) + frac src(y - whole - 1)
    height = image.shape[0]
    return cv2.addWeighted(padded[top : top + height], 1.0 - frac,
                           padded[top - 1 : top - 1 + height], frac, 0.0)


def _resample(image: np.ndarray, s: _Sampled, sigma: float) -> np.ndarray:
    """Blur by ``sigma`` (0: none) and warp, border replicated.

    A pure translation avoids ``cv2.warpAffine`` (3x slower): the row filter takes the
    blur and the sub-pixel x shift in one kernel, the y shift blends two row views.
    """
    if s.angle_deg == 0.0:
        column = _shift_taps(0.0, sigma) if sigma > 0 else np.ones((1, 1), np.float32)
        moved = cv2.sepFilter2D(image, -1, _shift_taps(s.dx, sigma), column,
                                borderType=cv2.BORDER_REPLICATE)
        return _shift_rows(moved, s.dy)
    if sigma > 0:
        taps = _shift_taps(0.0, sigma)
        image = cv2.sepFilter2D(image, -1, taps, taps, borderType=cv2.BORDER_REPLICATE)
    return _warp(image, s, cv2.INTER_LINEAR)


def _rebinarize(image: np.ndarray, s: _Sampled) -> np.ndarray:
    """Soften, warp and re-threshold a binary image with the sampled edge offsets."""
    warped = _resample(image, s, s.blur_sigma_px)
    thresh = cv2.LUT(_offset_code(s), _threshold_lut(s.blur_sigma_px, s.max_offset_px))
    if warped.ndim == 3:
        thresh = cv2.merge([thresh, thresh, thresh])
    return cv2.compare(warped, thresh, cv2.CMP_GE)


def _displace_edges(image: np.ndarray, s: _Sampled) -> np.ndarray:
    """Grey images: ``v - o |grad v|`` moves dark regions' edges out by ``o`` px."""
    offset = cv2.LUT(_offset_code(s), _code_offsets(s.max_offset_px).astype(np.float32))
    grad = cv2.magnitude(cv2.Sobel(image, cv2.CV_32F, 1, 0, ksize=3, scale=0.125),
                         cv2.Sobel(image, cv2.CV_32F, 0, 1, ksize=3, scale=0.125))
    if image.ndim == 3:
        offset = cv2.merge([offset, offset, offset])
    cv2.multiply(grad, offset, dst=grad)
    return cv2.subtract(image, grad, dtype=cv2.CV_8U)  # rounds and saturates


def _luma(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image


def thick_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """uint8 mask (255) of the binarized difference of ``a`` and ``b`` opened with 3x3.

    Binarized at 128 (on the luminance for BGR). Empty means every difference is at most
    2 px thick -- the bound :func:`apply_nuisance` guarantees against its input.
    """
    if a.shape != b.shape:
        raise ValueError(f"images must have the same shape, got {a.shape} and {b.shape}")
    diff = cv2.bitwise_xor(cv2.compare(_luma(a), THRESHOLD, cv2.CMP_GE),
                           cv2.compare(_luma(b), THRESHOLD, cv2.CMP_GE))
    return cv2.morphologyEx(diff, cv2.MORPH_OPEN, _OPEN_KERNEL)


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise ValueError(f"image must be a uint8 numpy array, got "
                         f"{getattr(image, 'dtype', type(image).__name__)}")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ValueError(f"image must be gray (H, W) or BGR (H, W, 3), got shape {image.shape}")


def apply_nuisance(
    image: np.ndarray, sampled: dict[str, Any], *, binary: bool, jpeg_round_trip: bool = True
) -> np.ndarray:
    """Apply a sampled nuisance to a uint8 gray (H, W) or BGR (H, W, 3) image.

    Deterministic: the same image and dict give the same bytes. ``binary=True`` (boards in
    DeepPCB style, copper 0 / substrate 255) re-binarizes to 0/255 before the JPEG step, so
    the result is binary but for a few grey edge pixels; ``binary=False`` keeps grey levels.

    Compared with ``image``, the binarized output differs by bands at most 2 px thick (see
    :func:`thick_difference`). Defects drawn on ``image`` move with the warp, and
    :func:`warp_mask` moves their masks the same way.

    ``jpeg_round_trip=False`` skips the JPEG step (the costliest, ~1.4 ms of ~3) for a caller
    that writes the result with ``cv2.imencode`` at ``sampled["jpeg_quality"]`` itself:
    reading that file back gives the same pixels. The 2-px bound is then enforced before
    the JPEG step only (a quality >= 70 JPEG of these binary images flipped no binarized
    pixel on 100 DeepPCB templates).
    """
    _check_image(image)
    s = _parse(sampled)
    if s is None:
        return image.copy()
    _check_shape("image", image, s)
    if binary:
        out = _rebinarize(image, s)
    else:
        out = _displace_edges(_resample(image, s, 0.0), s)
    if jpeg_round_trip:
        out = jpeg_round_trip_of(out, sampled)
    # Safety net for the hard bound: anything 3x3 in the difference goes back to the input.
    thick = thick_difference(out, image)
    if cv2.countNonZero(thick):
        where = thick.astype(bool)
        out[where] = image[where]
    return out


def jpeg_round_trip_of(image: np.ndarray, sampled: dict[str, Any]) -> np.ndarray:
    """``image`` encoded as JPEG at the sampled quality and decoded again (a copy when the
    nuisance is off or drew no JPEG step): the last step of :func:`apply_nuisance`, for a
    caller that draws on the image between the scan and the file (see
    ``SynthConfig.painted_defects``)."""
    _check_image(image)
    s = _parse(sampled)
    if s is None or s.jpeg_quality is None:
        return image.copy()
    _check_shape("image", image, s)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, s.jpeg_quality])
    if not ok:  # pragma: no cover - cv2 encodes any uint8 gray/BGR array
        raise ValueError("JPEG encoding failed")
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE if image.ndim == 2 else cv2.IMREAD_COLOR)


def warp_mask(mask: np.ndarray, sampled: dict[str, Any]) -> np.ndarray:
    """Move a uint8 instance mask or a bool mask with the warp of :func:`apply_nuisance`.

    Nearest-neighbour resampling keeps instance ids; bool in, bool out. (The sub-pixel edge
    offsets are not applied: a mask is a label, not a scan.)
    """
    if not isinstance(mask, np.ndarray) or mask.ndim != 2 or mask.dtype not in (
        np.uint8, np.bool_
    ):
        raise ValueError(f"mask must be a 2-D uint8 or bool array, got "
                         f"{getattr(mask, 'dtype', type(mask).__name__)} "
                         f"{getattr(mask, 'shape', '')}")
    s = _parse(sampled)
    if s is None:
        return mask.copy()
    _check_shape("mask", mask, s)
    src = mask.view(np.uint8) if mask.dtype == np.bool_ else mask
    if s.angle_deg == 0.0:  # a whole-pixel shift: the rounded translation, as nearest does
        dx, dy = math.floor(s.dx + 0.5), math.floor(s.dy + 0.5)
        pad = max(abs(dx), abs(dy))
        padded = cv2.copyMakeBorder(src, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        out = padded[pad - dy : pad - dy + s.height, pad - dx : pad - dx + s.width].copy()
    else:
        out = _warp(src, s, cv2.INTER_NEAREST)
    return out.astype(bool) if mask.dtype == np.bool_ else out
