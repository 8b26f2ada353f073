"""Read a good board's geometry before drawing on it.

Defects are placed where their class really occurs, so every generator starts
from one :class:`BoardAnalysis`: the copper mask, its conductors (connected
components), distance transforms on both sides of every edge, the candidate
spots of each kind (conductor edges seen from either side, trace
centrelines; clear substrate and deep copper come from the distances) and the
board's own colours.

Everything here is a pure function of the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: Pixels per millimetre of DeepPCB's line-scan tiles; default sizes are given at this scale.
DEEPPCB_PX_PER_MM = 48.0


@dataclass(frozen=True)
class BoardAnalysis:
    """Geometry and colours of one board image (all arrays share its height x width)."""

    image: np.ndarray  # the board as given: uint8 gray (H, W) or BGR (H, W, 3)
    binary: bool  # only two grey levels (a binarized scan such as DeepPCB's)
    copper: np.ndarray  # uint8 0/1
    nets: np.ndarray  # int32 conductor ids (8-connected copper components), 0 = substrate
    dist_copper: np.ndarray  # float32, inside copper: distance to the nearest substrate
    dist_substrate: np.ndarray  # float32, inside substrate: distance to the nearest copper
    ridge: np.ndarray  # flat indices of trace centreline pixels (not pads or pours)
    ridge_wide: np.ndarray  # flat indices of centreline pixels of wide conductors (bands)
    edge_out: np.ndarray  # flat indices of substrate pixels touching copper
    edge_in: np.ndarray  # flat indices of copper pixels touching substrate
    copper_colour: np.ndarray  # float32 (C,) median colour of copper
    substrate_colour: np.ndarray  # float32 (C,) median colour of substrate
    copper_noise: float  # std of copper pixels around their median (texture)
    substrate_noise: float
    px_per_mm: float

    @property
    def shape(self) -> tuple[int, int]:
        return self.copper.shape  # type: ignore[return-value]

    @property
    def scale(self) -> float:
        """Size factor relative to DeepPCB's 48 px/mm."""
        return self.px_per_mm / DEEPPCB_PX_PER_MM


def is_binary_image(image: np.ndarray) -> bool:
    """True for a gray image whose pixels (almost all) sit at two extreme levels."""
    if image.ndim == 3:
        if image.shape[2] != 1 and not (
            np.array_equal(image[..., 0], image[..., 1])
            and np.array_equal(image[..., 1], image[..., 2])
        ):
            return False
        image = image[..., 0]
    extreme = np.count_nonzero((image <= 40) | (image >= 215))
    return extreme >= 0.995 * image.size


def copper_mask(image: np.ndarray, copper: str = "dark", *,
                binary: bool | None = None) -> np.ndarray:
    """Binarize a board: 1 where copper is. ``copper`` says whether copper is the
    ``dark`` (DeepPCB, backlit scans) or ``light`` (photos of bare copper) side of Otsu's
    threshold. ``binary``: :func:`is_binary_image` of ``image`` when the caller knows it."""
    if copper not in ("dark", "light"):
        raise ValueError(f"copper must be 'dark' or 'light', got {copper!r}")
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if not (is_binary_image(image) if binary is None else binary):
        gray = cv2.GaussianBlur(gray, (3, 3), 0)
    flag = cv2.THRESH_BINARY_INV if copper == "dark" else cv2.THRESH_BINARY
    _, mask = cv2.threshold(gray, 0, 1, flag | cv2.THRESH_OTSU)
    return mask.astype(np.uint8)


def _colour_stats(image: np.ndarray, where: np.ndarray) -> tuple[np.ndarray, float]:
    # A fixed subsample (every 7th row and column): fast and deterministic.
    pixels = image[::7, ::7][where[::7, ::7] > 0].reshape(
        -1, 1 if image.ndim == 2 else image.shape[2])
    if len(pixels) == 0:
        pixels = image[where > 0].reshape(-1, 1 if image.ndim == 2 else image.shape[2])
    if len(pixels) == 0:
        return np.zeros(pixels.shape[1], np.float32), 0.0
    sample = pixels.astype(np.float32)
    median = np.median(sample, axis=0)
    noise = float(np.median(np.abs(sample - median)) * 1.4826)
    return median.astype(np.float32), noise


def etch_board(image: np.ndarray, px: int, copper: str = "dark") -> np.ndarray:
    """``image`` with its copper grown by ``px`` px on every edge (``px`` < 0: shrunk):
    the board under- or over-etched, its clearances ``2 * px`` narrower (or wider).

    Grey-level morphology with a round ``2|px| + 1`` kernel (a min filter grows dark
    copper), so gray, BGR and binarized boards keep their own levels; ``px`` = 0 returns
    ``image`` itself.
    """
    if copper not in ("dark", "light"):
        raise ValueError(f"copper must be 'dark' or 'light', got {copper!r}")
    if px == 0:
        return image
    side = 2 * abs(int(px)) + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
    # A min filter grows the dark side, a max filter the light one.
    min_filter = (px > 0) == (copper == "dark")
    return cv2.erode(image, kernel) if min_filter else cv2.dilate(image, kernel)


def analyze_board(image: np.ndarray, *, px_per_mm: float = DEEPPCB_PX_PER_MM,
                  copper: str = "dark") -> BoardAnalysis:
    """Analyse a defect-free board image (uint8 gray or BGR)."""
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or min(image.shape[:2]) < 32:
        raise ValueError(
            f"expected a uint8 gray or BGR image of at least 32x32 px, got dtype {image.dtype} "
            f"shape {image.shape}"
        )
    if px_per_mm <= 0:
        raise ValueError(f"px_per_mm must be > 0, got {px_per_mm}")
    binary = is_binary_image(image)
    if image.ndim == 3 and binary:
        image = np.ascontiguousarray(image[..., 0])
    cu = copper_mask(image, copper, binary=binary)
    _, nets = cv2.connectedComponents(cu, connectivity=8, ltype=cv2.CV_32S)
    dist_cu = cv2.distanceTransform(cu, cv2.DIST_L2, 5)
    dist_sub = cv2.distanceTransform(1 - cu, cv2.DIST_L2, 5)
    scale = px_per_mm / DEEPPCB_PX_PER_MM
    # Centreline: local maxima of the copper distance on thin conductors only (traces,
    # not pads or pours, whose maxima sit far from any edge). The tests below run on the
    # ridge pixels alone (a few percent of the board), not on whole images.
    local_max = dist_cu >= cv2.dilate(dist_cu, np.ones((3, 3), np.uint8))
    ridge = np.flatnonzero(local_max & (dist_cu >= 2.0))
    depth = dist_cu.ravel()[ridge]
    # Trace centreline: no wider copper (pad, pour) within a few px either.
    k = 2 * int(round(7 * scale)) + 1
    nearby = cv2.dilate(dist_cu, np.ones((k, k), np.uint8)).ravel()[ridge]
    alone = nearby <= depth + 2.0
    ys, xs = np.divmod(ridge, cu.shape[1])

    def away_from_border(px: int) -> np.ndarray:
        return (ys >= px) & (ys < cu.shape[0] - px) & (xs >= px) & (xs < cu.shape[1] - px)

    trace = ridge[alone & (depth >= 2.5 * scale) & (depth <= 9.0 * scale)
                  & away_from_border(int(round(15 * scale)))]
    # Wide conductors (18-64 px at 48 px/mm): the centreline of a band, not the middle of
    # a pour. Real opens cut such bands too (42% of the opens on DeepPCB's five train
    # boards have copper wider than 18 px in their box), with a narrow stroke across.
    wide = ridge[alone & (depth > 9.0 * scale) & (depth <= 32.0 * scale)
                 & away_from_border(int(round(40 * scale)))]
    # Within 1.5 px (DIST_L2, mask 5): the 8 neighbours. Substrate touching copper, and
    # copper touching substrate (outside the image is neither).
    kernel3 = np.ones((3, 3), np.uint8)
    edge_out = cv2.dilate(cu, kernel3, borderType=cv2.BORDER_CONSTANT, borderValue=0) > cu
    edge_in = cv2.erode(cu, kernel3, borderType=cv2.BORDER_CONSTANT, borderValue=1) < cu
    cu_colour, cu_noise = _colour_stats(image, cu)
    sub_colour, sub_noise = _colour_stats(image, 1 - cu)
    return BoardAnalysis(
        image=image, binary=binary, copper=cu, nets=nets, dist_copper=dist_cu,
        dist_substrate=dist_sub, ridge=trace, ridge_wide=wide,
        edge_out=np.flatnonzero(edge_out), edge_in=np.flatnonzero(edge_in),
        copper_colour=cu_colour, substrate_colour=sub_colour, copper_noise=cu_noise,
        substrate_noise=sub_noise, px_per_mm=float(px_per_mm),
    )
