"""Read a good board's geometry before drawing on it.

Defects are placed where their class really occurs, so every generator starts
from one :class:`BoardAnalysis`: the copper mask, its conductors (connected
components), distance transforms on both sides of every edge, the candidate
spots of each kind (conductor edges seen from either side, trace
centrelines; clear substrate and deep copper come from the distances) and the
board's own colours.

Where a defect adds or removes copper it shows the colour of the other side *at that
place* (:func:`side_fill`): a binarized board's two levels; a procedural colour board's
palette by place (:class:`~pcbforge.synth.colour.ColourLayout`, which it carries); and on
any other grey or colour board the local colour of each side, measured around the place
(an illumination gradient or a vignette keeps its level).

Everything here is a pure function of the image (and of the layout a board carries).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pcbforge.synth.colour import ColourLayout, Region

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
    #: The copper layout a procedural colour board carries (its copper is then ``copper``,
    #: not guessed from the colours); ``None`` for any other board.
    layout: ColourLayout | None = None
    #: Grey or colour boards without a layout: each side's local colour, float32
    #: (h, w, C) on a grid of :data:`FIELD_STEP_PX` px cells (copper, substrate).
    side_fields: tuple[np.ndarray, np.ndarray] | None = None

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
                  copper: str = "dark", layout: ColourLayout | None = None) -> BoardAnalysis:
    """Analyse a defect-free board image (uint8 gray or BGR). ``layout``: the copper layout
    the board carries (a procedural colour board's): its copper is taken from it, not from
    the colours, and ``copper`` is not used."""
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or min(image.shape[:2]) < 32:
        raise ValueError(
            f"expected a uint8 gray or BGR image of at least 32x32 px, got dtype {image.dtype} "
            f"shape {image.shape}"
        )
    if px_per_mm <= 0:
        raise ValueError(f"px_per_mm must be > 0, got {px_per_mm}")
    if layout is not None:
        if image.ndim != 3 or layout.shape != image.shape[:2]:
            raise ValueError(f"the board's layout is {layout.shape[1]}x{layout.shape[0]} px "
                             f"but its image has shape {image.shape}")
        binary = False
        cu = layout.copper.copy()
    else:
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
    fields = None if binary or layout is not None else _side_fields(image, cu, cu_colour,
                                                                     sub_colour)
    return BoardAnalysis(
        image=image, binary=binary, copper=cu, nets=nets, dist_copper=dist_cu,
        dist_substrate=dist_sub, ridge=trace, ridge_wide=wide,
        edge_out=np.flatnonzero(edge_out), edge_in=np.flatnonzero(edge_in),
        copper_colour=cu_colour, substrate_colour=sub_colour, copper_noise=cu_noise,
        substrate_noise=sub_noise, px_per_mm=float(px_per_mm), layout=layout,
        side_fields=fields,
    )


# --- the colour of each side, by place ----------------------------------------------------

#: Cell of the local colour fields (px) and their smoothing (cells): each side's colour
#: at a place is its mean over about 2 x 4 x 8 = 64 px around it.
FIELD_STEP_PX = 8
FIELD_SIGMA_CELLS = 4.0
#: Weight (in cells' worth of pixels) of the wider colour in a local one: where a side is
#: rare nearby, its colour leans on the side's colour farther around.
FIELD_PRIOR = 0.05


def _side_fields(image: np.ndarray, cu: np.ndarray, cu_colour: np.ndarray,
                 sub_colour: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each side's local colour on a grid of :data:`FIELD_STEP_PX` cells: the mean of its
    pixels (a pixel in from its edges, off the blended edge) around each cell, smoothed."""
    h, w = cu.shape
    size = (max(1, -(-w // FIELD_STEP_PX)), max(1, -(-h // FIELD_STEP_PX)))
    pixels = image.reshape(h, w, -1).astype(np.float32)
    kernel = np.ones((3, 3), np.uint8)
    fields = []
    for side, overall in ((cu, cu_colour), (1 - cu, sub_colour)):
        inner = cv2.erode(side, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=1)
        weight = inner.astype(np.float32)
        total = cv2.resize(pixels * weight[..., None], size, interpolation=cv2.INTER_AREA)
        total = total.reshape(size[1], size[0], -1)
        count = cv2.resize(weight, size, interpolation=cv2.INTER_AREA)
        # Where a side is rare nearby (substrate inside a wide pour), its colour comes from
        # farther around (four times the reach), and where it is rare there too, from the
        # whole board.
        field = overall.astype(np.float32).reshape(1, 1, -1)
        for sigma in (4 * FIELD_SIGMA_CELLS, FIELD_SIGMA_CELLS):
            near = cv2.GaussianBlur(total, (0, 0), sigma).reshape(total.shape)
            weight_near = cv2.GaussianBlur(count, (0, 0), sigma)[..., None]
            field = (near + FIELD_PRIOR * field) / (weight_near + FIELD_PRIOR)
        fields.append(field.astype(np.float32))
    return fields[0], fields[1]


def _field_window(field: np.ndarray, shape: tuple[int, int],
                  box: tuple[int, int, int, int]) -> np.ndarray:
    """``field`` (a grid over an image of ``shape``) at each pixel of ``box``, bilinear, as
    ``cv2.resize`` to the full size would give it; float32 (h, w, C)."""
    x0, y0, x1, y1 = box
    gh, gw = field.shape[:2]
    map_x = ((np.arange(x0, x1, dtype=np.float32) + 0.5) * (gw / shape[1]) - 0.5)
    map_y = ((np.arange(y0, y1, dtype=np.float32) + 0.5) * (gh / shape[0]) - 0.5)
    map_x, map_y = np.meshgrid(map_x, map_y)
    out = cv2.remap(field, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(y1 - y0, x1 - x0, -1)


def side_fill(a: BoardAnalysis, adds_copper: bool, box: tuple[int, int, int, int]
              ) -> tuple[np.ndarray, np.ndarray]:
    """What a change of side shows at each pixel of ``box`` (x0, y0, x1, y1): its colour,
    float32 (h, w, C), and the std of its texture, float32 (h, w, 1). ``adds_copper``:
    the copper of that place, else the substrate. A binarized board: its two levels, no
    texture; a board with a layout: its palette by place
    (:meth:`~pcbforge.synth.colour.ColourLayout.fill`); any other grey or colour board: the
    side's local colour (:func:`_side_fields`) and the board's texture of that side."""
    x0, y0, x1, y1 = box
    h, w = y1 - y0, x1 - x0
    if a.layout is not None:
        return a.layout.fill(adds_copper, box)
    target = a.copper_colour if adds_copper else a.substrate_colour
    noise = a.copper_noise if adds_copper else a.substrate_noise
    if a.side_fields is None:
        colour = np.broadcast_to(target.reshape(1, 1, -1), (h, w, target.size))
        return colour.astype(np.float32), np.zeros((h, w, 1), np.float32)
    field = a.side_fields[0] if adds_copper else a.side_fields[1]
    return _field_window(field, a.shape, box), np.full((h, w, 1), noise, np.float32)


def local_threshold(a: BoardAnalysis) -> np.ndarray | None:
    """Grey or colour boards without a layout: the grey level halfway between the two
    sides' local colours at each pixel (float32, the board's shape); ``None`` otherwise."""
    if a.side_fields is None:
        return None
    halves = []
    for field in a.side_fields:
        halves.append(field[..., 0] if field.shape[2] == 1
                      else cv2.cvtColor(np.ascontiguousarray(field), cv2.COLOR_BGR2GRAY))
    grid = 0.5 * (halves[0] + halves[1])
    return cv2.resize(grid, (a.shape[1], a.shape[0]), interpolation=cv2.INTER_LINEAR)


def paint_side(out: np.ndarray, region: np.ndarray, origin: tuple[int, int],
               fill, seed: int) -> None:
    """Paint ``region`` (0/1, its top-left pixel at ``origin`` (x, y)) into ``out`` (in
    place) in ``fill(box) -> (colour, texture std)`` (see :func:`side_fill`) with a texture
    seeded by ``seed``, blended over a pixel so the edge looks like the board's own edges,
    not pasted. The blend reaches ~3 px past the region."""
    x, y = origin
    h, w = region.shape
    height, width = out.shape[:2]
    x0, y0 = max(x - 3, 0), max(y - 3, 0)
    x1, y1 = min(x + w + 3, width), min(y + h + 3, height)
    window = np.zeros((y1 - y0, x1 - x0), np.float32)
    window[y - y0:y - y0 + h, x - x0:x - x0 + w] = region
    colour, noise_sd = fill((x0, y0, x1, y1))
    texture = np.random.default_rng(seed).standard_normal(window.shape + (1,)) * noise_sd
    alpha = np.maximum(cv2.GaussianBlur(window, (0, 0), 0.8), window)[..., None]
    patch = out[y0:y1, x0:x1].astype(np.float32)
    patch = patch if patch.ndim == 3 else patch[..., None]
    blended = np.clip(np.round(patch * (1 - alpha) + (colour + texture) * alpha), 0,
                      255).astype(np.uint8)
    out[y0:y1, x0:x1] = blended if out.ndim == 3 else blended[..., 0]


def etch_layout_board(image: np.ndarray, layout: ColourLayout, px: int
                      ) -> tuple[np.ndarray, ColourLayout]:
    """:func:`etch_board` for a board that carries its layout: the layout's copper grown by
    ``px`` px (``px`` < 0: shrunk; drilled holes stay open), each pixel that changes side
    painted as a defect that adds (removes) copper there would be
    (:meth:`~pcbforge.synth.colour.ColourLayout.fill`), with the layout changed to match.
    ``px`` = 0 returns both as they are."""
    if px == 0:
        return image, layout
    side = 2 * abs(int(px)) + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
    holes = layout.regions == Region.hole
    copper = (cv2.dilate(layout.copper, kernel) if px > 0
              else cv2.erode(layout.copper, kernel)) & (~holes).view(np.uint8)
    changed = (copper != layout.copper).view(np.uint8)
    out = image.copy()
    if changed.any():
        paint_side(out, changed, (0, 0),
                   lambda box: layout.fill(px > 0, box), seed=1_000 + int(px))
    return out, layout.with_copper(copper)
