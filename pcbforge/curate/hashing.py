"""Hashes of decoded pixels: exact (pixel hash) and perceptual (DCT pHash).

Pure functions over arrays; no file I/O, no randomness.

Dihedral variants: ``v = k + 4 * f`` names the transform
``np.rot90(np.fliplr(img) if f else img, k)``; variant 0 is the identity.
A transformed copy of an image has, as its identity hash, one of the
original's variant hashes, so a search over variants finds rotated and
mirrored copies without decoding anything twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import xxhash

#: Side of the square grey thumbnail kept per image for pixel-level checks.
THUMB_SIZE = 256
#: Number of dihedral transforms (4 rotations x optional mirror).
N_VARIANTS = 8
#: Bits flagged as least reliable per hash (used by multi-probe search).
WEAK_BITS = 8

_HASH_SIDE = 32  # pHash works on a 32x32 image...
_DCT_SIDE = 8  # ...and keeps its 8x8 lowest frequencies: 64 bits
_BIT_WEIGHTS = (np.uint64(1) << np.arange(64, dtype=np.uint64)).astype(np.uint64)


def pixel_hash(pixels: np.ndarray) -> str:
    """Hash of decoded pixels (shape, dtype and values): equal for the same
    pixels stored in different files or encodings."""
    digest = xxhash.xxh3_128(f"{pixels.dtype.str}{pixels.shape}".encode())
    digest.update(np.ascontiguousarray(pixels).data)
    return digest.hexdigest()


def thumbnail(gray: np.ndarray, size: int = THUMB_SIZE) -> np.ndarray:
    """Square ``size`` x ``size`` grey thumbnail (area-averaged).

    The aspect ratio is not kept on purpose: copies are compared thumbnail
    to thumbnail, and a square keeps rotations by 90 degrees exact.
    """
    if gray.shape == (size, size):
        return gray.copy()
    height, width = gray.shape
    factor = min(height, width) // size
    if factor >= 2:
        # Box-average by a whole factor (OpenCV's fast path for INTER_AREA)...
        gray = cv2.resize(gray, (width // factor, height // factor), interpolation=cv2.INTER_AREA)
    # ...then cover the remaining factor (< 2) bilinearly: a fractional
    # INTER_AREA pass costs 3x more and changes no verification result.
    height, width = gray.shape
    shrink = max(height, width) >= 2 * size
    return cv2.resize(
        gray, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    )


def dihedral(image: np.ndarray, variant: int) -> np.ndarray:
    """Apply dihedral transform ``variant`` (0-7) to an image (a view): the mirror
    (``variant >= 4``), then ``variant % 4`` quarter turns counter-clockwise, the view
    ``np.rot90`` gives, without its argument handling (a third of the cost of a coarse
    comparison in the duplicate check)."""
    k, flip = variant % 4, variant // 4
    if flip:
        image = image[:, ::-1]
    if k == 1:
        return np.swapaxes(image[:, ::-1], 0, 1)
    if k == 2:
        return image[::-1, ::-1]
    if k == 3:
        return np.swapaxes(image, 0, 1)[:, ::-1]
    return image


_INVERSE = np.array([0, 3, 2, 1, 4, 5, 6, 7], dtype=np.int64)


def dihedral_inverse(variant: int | np.ndarray) -> int | np.ndarray:
    """The variant that undoes ``variant`` (int or integer array, values 0-7).

    A pure rotation by ``k`` quarter turns is undone by ``(4 - k) % 4``; a mirror
    followed by a rotation is a reflection, which is its own inverse.
    """
    values = np.asarray(variant)
    if values.dtype.kind not in "iu" or np.any((values < 0) | (values >= N_VARIANTS)):
        raise ValueError(f"variant: expected integers in [0, {N_VARIANTS - 1}], got {variant!r}")
    inverse = _INVERSE[values]
    return int(inverse) if inverse.ndim == 0 else inverse


#: DCT-domain form of each dihedral variant: (transpose, negate odd rows, negate
#: odd columns). Mirroring a signal negates its odd DCT-II coefficients, so all
#: eight hashes come from one DCT (checked against real transforms in the tests).
_DCT_VARIANTS = (
    (False, False, False), (True, True, False), (False, True, True), (True, False, True),
    (False, False, True), (True, False, False), (False, True, False), (True, True, True),
)


def _variant_tables() -> tuple[np.ndarray, np.ndarray]:
    """Index and sign arrays (8, 64): variant v's coefficients are
    ``block.ravel()[index[v]] * sign[v]``."""
    rows, cols = np.mgrid[0:_DCT_SIDE, 0:_DCT_SIDE]
    index, sign = [], []
    for transpose, odd_rows, odd_cols in _DCT_VARIANTS:
        r, c = (cols, rows) if transpose else (rows, cols)
        index.append((r * _DCT_SIDE + c).ravel())
        negate = ((rows % 2 == 1) & odd_rows) ^ ((cols % 2 == 1) & odd_cols)
        sign.append(np.where(negate, -1.0, 1.0).ravel())
    return np.array(index), np.array(sign, dtype=np.float32)


_VARIANT_INDEX, _VARIANT_SIGN = _variant_tables()


def perceptual_hashes(thumb: np.ndarray, variants: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """DCT perceptual hash of a thumbnail and of its dihedral variants.

    Returns ``(codes, weak)``: two uint64 arrays of length 8 (or 1 when
    ``variants`` is False). Bit ``r * 8 + c`` is set when DCT coefficient
    ``(r, c)`` lies above the median of the 63 AC coefficients. ``weak`` masks
    the :data:`WEAK_BITS` bits whose coefficient is closest to that median:
    the bits a re-encoded or resized copy is most likely to flip.
    """
    small = cv2.resize(thumb, (_HASH_SIDE, _HASH_SIDE), interpolation=cv2.INTER_AREA)
    block = cv2.dct(small.astype(np.float32))[:_DCT_SIDE, :_DCT_SIDE].ravel()
    count = N_VARIANTS if variants else 1
    coeffs = block[_VARIANT_INDEX[:count]] * _VARIANT_SIGN[:count]
    # Median of 63 AC values: the 32nd smallest (index 31).
    median = np.partition(coeffs[:, 1:], 31, axis=1)[:, 31:32]
    bits = coeffs > median
    margin = np.abs(coeffs - median)
    margin[:, 0] = np.inf  # the DC bit never flips
    weakest = np.argpartition(margin, WEAK_BITS, axis=1)[:, :WEAK_BITS]
    weak = np.bitwise_or.reduce(_BIT_WEIGHTS[weakest], axis=1)
    return _pack(bits), weak


_GRID = 8
#: Index arrays (8, 64): block order of each dihedral variant of the 8x8 grid.
_GRID_VARIANT_INDEX = np.stack([
    np.ascontiguousarray(dihedral(np.arange(_GRID * _GRID).reshape(_GRID, _GRID), v)).ravel()
    for v in range(8)
])


def grey_levels(image: np.ndarray) -> tuple[float, float, float]:
    """(p1, median, p99) of a uint8 image, whole grey levels from its histogram."""
    cumulative = np.cumsum(cv2.calcHist([image], [0], None, [256], [0, 256]).ravel())
    p1, p50, p99 = np.searchsorted(cumulative, np.array([0.01, 0.5, 0.99]) * image.size)
    return float(p1), float(p50), float(p99)


def content_hashes(thumb: np.ndarray) -> tuple[np.ndarray, float]:
    """Occupancy hash: which of 8x8 blocks hold content, for each dihedral variant.

    Content is a pixel away from the background (the median grey) by a quarter
    of the grey range. On a sparse tile (or a fine periodic pattern) the
    pHash's low frequencies hang on little, so a defect or a 1-pixel shift
    flips many bits; here a defect flips at most the blocks it touches, while
    two unrelated tiles differ in where their content is. Returns the 8
    variant codes (bit ``r * 8 + c`` = block ``(r, c)``) and the content
    fraction of the frame.
    """
    occupancy = occupancy_of(thumb)
    return occupancy.codes, occupancy.fraction


@dataclass(frozen=True)
class Occupancy:
    """What :func:`content_hashes` computes, with the view it computes it on: the
    ``small`` 64 x 64 shrink of the thumbnail, its :func:`grey_levels` and
    ``distance`` (``|small - median|``). Pixel verification's coarse view of a 256 px
    thumbnail is the same shrink, so inspection hands these on instead of redoing them."""

    codes: np.ndarray
    fraction: float
    small: np.ndarray
    levels: tuple[float, float, float]
    distance: np.ndarray


def occupancy_of(thumb: np.ndarray) -> Occupancy:
    """:func:`content_hashes` of ``thumb``, with the intermediate results."""
    # On an 8x-per-block view (64 x 64 for a 256 thumbnail): a block's
    # occupancy is about where content sits, not about the smallest specks.
    side = _GRID * 8
    small = cv2.resize(thumb, (side, side), interpolation=cv2.INTER_AREA)
    levels = grey_levels(small)
    p1, p50, p99 = levels
    level = max(0.25 * (p99 - p1), 8.0)
    distance = cv2.absdiff(small, np.full_like(small, int(p50)))
    content = cv2.threshold(distance, level, 255, cv2.THRESH_BINARY)[1]
    fraction = float(cv2.countNonZero(content)) / content.size
    blocks = cv2.resize(content, (_GRID, _GRID), interpolation=cv2.INTER_AREA) > 0
    variants = blocks.ravel()[_GRID_VARIANT_INDEX]
    return Occupancy(_pack(variants), fraction, small, levels, distance)


def _pack(bits: np.ndarray) -> np.ndarray:
    """Pack rows of 64 booleans (bit i = column i) into uint64 values."""
    return np.packbits(bits[:, ::-1], axis=1).view(">u8").astype(np.uint64).ravel()


def hash_to_hex(code: np.uint64 | int) -> str:
    """16-digit hex form of a 64-bit hash, as stored in tables."""
    return f"{int(code):016x}"


def hex_to_hash(text: str) -> np.uint64:
    return np.uint64(int(text, 16))
