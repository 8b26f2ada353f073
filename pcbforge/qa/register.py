"""Registration of a tested image to its template: global shift and rotation (sub-pixel),
and the local displacement left after them.

Phase correlation, with its peak searched near zero only (a board's repeated traces put
strong peaks further out), gives the global shift; ECC refines it to a rigid motion
(shift and rotation). Phase correlation on tiles of the registered pair then measures
what is left: a second scan stretched, or features displaced locally. Only tiles whose
gradients run both ways are measured (a tile of parallel traces cannot tell a shift
along them). Pure functions of the two images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

#: Phase correlation peaks weaker than this say nothing reliable.
MIN_RESPONSE = 0.05
#: Tiles whose gradients run less both ways than this (smallest over summed eigenvalue of
#: the structure tensor) are not measured: their shift along the traces is unknown.
MIN_STRUCTURE = 0.15
#: Grey images are smoothed this much (sigma, px) first: binary scans have no gradient
#: between their two levels for ECC to follow.
BLUR_SIGMA = 1.5
#: ECC runs at this scale of the image, for speed.
ECC_SCALE = 0.5
ECC_ITERATIONS = 50
#: Local displacement searched per tile after the global fit (px).
RESIDUAL_LIMIT_PX = 8.0


@dataclass(frozen=True)
class Registration:
    """How the template sits on the tested image.

    ``matrix`` (2x3) maps template pixel coordinates to tested ones. ``dx, dy`` is how far
    it moves the image centre, ``rotation_deg`` how far it turns the image about it
    (counter-clockwise on screen positive, as OpenCV counts)."""

    dx: float
    dy: float
    rotation_deg: float
    residual_p95: float  # px, over the measured tiles (0 when none)
    tiles: int
    found: bool  # False: nothing to register on (a blank image)
    matrix: np.ndarray

    @property
    def shift(self) -> float:
        return math.hypot(self.dx, self.dy)


def gray_float(image: np.ndarray) -> np.ndarray:
    """The image as float32 grey (registration needs structure, not colour)."""
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY if image.shape[2] == 3
                             else cv2.COLOR_RGBA2GRAY)
    return image.astype(np.float32)


def rigid_matrix(dx: float, dy: float, rotation_deg: float, shape: tuple[int, int]
                 ) -> np.ndarray:
    """2x3 matrix: rotate by ``rotation_deg`` about the centre of an image of ``shape``
    (height, width), then shift by ``dx, dy``."""
    height, width = shape
    centre = ((width - 1) / 2.0, (height - 1) / 2.0)
    matrix = cv2.getRotationMatrix2D(centre, rotation_deg, 1.0)
    matrix[0, 2] += dx
    matrix[1, 2] += dy
    return matrix


def _spectrum(image: np.ndarray, window: np.ndarray) -> np.ndarray:
    return cv2.dft((image - image.mean()) * window, flags=cv2.DFT_COMPLEX_OUTPUT)


def phase_shift(a: np.ndarray, b: np.ndarray, window: np.ndarray, limit: float
                ) -> tuple[float, float, float]:
    """``(dx, dy, response)``: the shift of at most ``limit`` px in x and y that moves
    ``b`` onto ``a`` (float32, one shape), by phase correlation."""
    cross = cv2.mulSpectrums(_spectrum(a, window), _spectrum(b, window), 0, conjB=True)
    cross /= (cv2.magnitude(cross[..., 0], cross[..., 1]) + 1e-9)[..., None]
    surface = np.fft.fftshift(cv2.idft(cross, flags=cv2.DFT_REAL_OUTPUT | cv2.DFT_SCALE))
    height, width = surface.shape
    cy, cx = height // 2, width // 2
    r = int(min(limit, cy - 2, cx - 2))
    near = surface[cy - r:cy + r + 1, cx - r:cx + r + 1]
    py, px = np.unravel_index(int(np.argmax(near)), near.shape)
    py, px = int(py) + cy - r, int(px) + cx - r
    # Sub-pixel: the centroid of the peak's 3x3 neighbourhood (its positive part).
    patch = np.clip(surface[py - 1:py + 2, px - 1:px + 2], 0, None)
    total = float(patch.sum())
    sx = sy = 0.0
    if total > 0:
        offsets = np.arange(-1.0, 2.0)
        sy = float((patch.sum(axis=1) * offsets).sum() / total)
        sx = float((patch.sum(axis=0) * offsets).sum() / total)
    return px - cx + sx, py - cy + sy, total


def _structured(gx2: np.ndarray, gy2: np.ndarray, gxy: np.ndarray) -> bool:
    """Whether a tile's gradients run both ways (a corner, a pad), so that its shift is
    measurable along x and y."""
    sxx, syy, sxy = float(gx2.sum()), float(gy2.sum()), float(gxy.sum())
    trace = sxx + syy
    if trace <= 0:
        return False
    smallest = trace / 2 - math.sqrt(max((sxx - syy) ** 2 / 4 + sxy ** 2, 0.0))
    return smallest / trace >= MIN_STRUCTURE


def _starts(size: int, tile: int) -> list[int]:
    """Tile origins covering ``size`` (the last tile flush with the end)."""
    if size < tile:
        return []
    count = max(1, round(size / tile))
    return [round(i * (size - tile) / max(count - 1, 1)) for i in range(count)]


def tile_displacements(tested: np.ndarray, template: np.ndarray, tile: int, limit: float
                       ) -> np.ndarray:
    """Rows ``(cx, cy, dx, dy, response)`` for the tiles with structure both ways: the
    displacement moving the template tile onto the tested tile, at the tile centre."""
    height, width = tested.shape
    window = cv2.createHanningWindow((tile, tile), cv2.CV_32F)
    gx = cv2.Sobel(template, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(template, cv2.CV_32F, 0, 1, ksize=3)
    gx2, gy2, gxy = gx * gx, gy * gy, gx * gy
    rows = []
    for y in _starts(height, tile):
        for x in _starts(width, tile):
            part = (slice(y, y + tile), slice(x, x + tile))
            if not _structured(gx2[part], gy2[part], gxy[part]):
                continue
            dx, dy, response = phase_shift(tested[part], template[part], window, limit)
            if response >= MIN_RESPONSE:
                rows.append((x + (tile - 1) / 2.0, y + (tile - 1) / 2.0, dx, dy, response))
    return np.array(rows, np.float64).reshape(-1, 5)


def _ecc(small_a: np.ndarray, small_b: np.ndarray, dx: float, dy: float
         ) -> np.ndarray | None:
    """2x3 template -> tested matrix (full scale) refined by ECC (Euclidean) on the images
    at :data:`ECC_SCALE`, starting from the shift ``dx, dy`` (full scale); ``None`` when
    ECC does not converge."""
    # ECC's warp maps tested coordinates to template ones: it starts from the inverse shift.
    warp = np.array([[1, 0, -dx * ECC_SCALE], [0, 1, -dy * ECC_SCALE]], np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, ECC_ITERATIONS, 1e-5)
    try:
        _, warp = cv2.findTransformECC(small_a, small_b, warp, cv2.MOTION_EUCLIDEAN,
                                       criteria, None, 1)
    except cv2.error:
        return None
    warp = warp.astype(np.float64)
    warp[:, 2] /= ECC_SCALE
    return cv2.invertAffineTransform(warp)


def register(tested: np.ndarray, template: np.ndarray, *, tile: int = 128,
             max_shift: float = 32.0) -> Registration:
    """Register ``template`` to ``tested`` (same size; grey, colour or binary)."""
    a = cv2.GaussianBlur(gray_float(tested), (0, 0), BLUR_SIGMA)
    b = cv2.GaussianBlur(gray_float(template), (0, 0), BLUR_SIGMA)
    shape = a.shape
    if float(a.std()) < 1.0 or float(b.std()) < 1.0:
        return Registration(0.0, 0.0, 0.0, 0.0, 0, False, rigid_matrix(0, 0, 0, shape))
    # The global shift and the rigid fit at ECC_SCALE (ECC refines to sub-pixel); the
    # local displacement at full scale.
    small_a = cv2.resize(a, None, fx=ECC_SCALE, fy=ECC_SCALE, interpolation=cv2.INTER_AREA)
    small_b = cv2.resize(b, None, fx=ECC_SCALE, fy=ECC_SCALE, interpolation=cv2.INTER_AREA)
    window = cv2.createHanningWindow(small_a.shape[::-1], cv2.CV_32F)
    dx, dy, response = phase_shift(small_a, small_b, window, max_shift * ECC_SCALE)
    if response < MIN_RESPONSE:
        return Registration(0.0, 0.0, 0.0, 0.0, 0, False, rigid_matrix(0, 0, 0, shape))
    dx, dy = dx / ECC_SCALE, dy / ECC_SCALE
    matrix = _ecc(small_a, small_b, dx, dy)
    if matrix is None or math.hypot(matrix[0, 2] - dx, matrix[1, 2] - dy) > max_shift:
        matrix = rigid_matrix(dx, dy, 0.0, shape)
    rotation_deg = math.degrees(math.atan2(matrix[0, 1], matrix[0, 0]))
    centre = np.array([(shape[1] - 1) / 2.0, (shape[0] - 1) / 2.0])
    cdx, cdy = matrix[:, :2] @ centre + matrix[:, 2] - centre
    moved = cv2.warpAffine(b, matrix, shape[::-1], flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
    rows = tile_displacements(a, moved, min(tile, min(shape)), RESIDUAL_LIMIT_PX)
    residual_p95 = (float(np.percentile(np.hypot(rows[:, 2], rows[:, 3]), 95))
                    if len(rows) else 0.0)
    return Registration(float(cdx), float(cdy), float(rotation_deg), residual_p95, len(rows),
                        True, matrix)


def apply_registration(template: np.ndarray, registration: Registration, *,
                       binary: bool = False) -> np.ndarray:
    """``template`` moved onto the tested image (same size, border replicated)."""
    height, width = template.shape[:2]
    flags = cv2.INTER_NEAREST if binary else cv2.INTER_LINEAR
    return cv2.warpAffine(template, registration.matrix, (width, height), flags=flags,
                          borderMode=cv2.BORDER_REPLICATE)


__all__ = ["Registration", "apply_registration", "gray_float", "phase_shift", "register",
           "rigid_matrix", "tile_displacements"]
