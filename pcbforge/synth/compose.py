"""One defective board from one good board: place, check, draw, disturb, label.

:func:`synthesize_image` is pure: board pixels and a ``numpy.random.Generator``
in, the tested image, its template and exact labels out. Every defect is
checked twice against its class's topology rule (:mod:`pcbforge.synth.topology`):
on the clean drawing (a failure is redrawn elsewhere) and on the final pair
after acquisition nuisance (a failure is taken out of the image again, never
kept with a wrong label).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pcbforge.synth.analysis import (
    DEEPPCB_PX_PER_MM,
    BoardAnalysis,
    analyze_board,
    copper_mask,
    etch_board,
    etch_layout_board,
    local_threshold,
    paint_side,
    side_fill,
)
from pcbforge.synth.augment import AugmentConfig
from pcbforge.synth.background import (
    BackgroundParams,
    sample_and_render_background,
)
from pcbforge.synth.brush import BrushConfig, image_probabilities, sample_style
from pcbforge.synth.colour import ColourLayout
from pcbforge.synth.defects import Params
from pcbforge.synth.nuisance import (
    NuisanceParams,
    apply_nuisance,
    jpeg_round_trip_of,
    sample_nuisance,
    thick_difference,
    warp_mask,
)
from pcbforge.synth.registry import DefectSpec, class_names, defect_spec
from pcbforge.synth.topology import check_topology

#: DeepPCB's boxes are the defect plus about this margin on each side (at 48 px/mm).
DEEPPCB_BOX_MARGIN_PX = 10.0
#: The most copper ``etch_px`` may grow or shrink a board by, in px.
ETCH_MAX_PX = 8
#: The most defects one image can hold: their instance ids are uint8.
MAX_DEFECTS = 255


def density_replaces_count(data: Any) -> Any:
    """A config's raw fields with ``defects_per_image`` set to ``None`` when only
    ``defects_per_mp`` is given: a density alone replaces the default count per image
    (and a config written with every default filled in, ``defects_per_image: null``,
    loads again). For the ``mode="before"`` validators of the configs that hold both."""
    if (isinstance(data, dict) and data.get("defects_per_mp") is not None
            and "defects_per_image" not in data):
        data = {**data, "defects_per_image": None}
    return data


class SynthConfig(BaseModel):
    """What to generate on each board."""

    model_config = ConfigDict(extra="forbid")

    #: Class names (:data:`~pcbforge.synth.registry.DEFECTS`); by default every registered
    #: class, in registry order.
    classes: tuple[str, ...] = Field(default_factory=lambda: tuple(class_names()))
    #: Relative weight of each class in ``classes`` when a defect's class is drawn
    #: (``None``: every class alike, the original draw, so earlier seeds keep their bytes).
    class_weights: tuple[float, ...] | None = None
    #: Where ``class_weights`` came from (e.g. ``from-evaluation NAME``); with the weight of
    #: its class, recorded in each synthetic label's ``params`` ("" : not recorded).
    balance: str = ""
    #: Defects asked of one image, min and max (at most :data:`MAX_DEFECTS`); ``None`` when
    #: ``defects_per_mp`` is given instead.
    defects_per_image: tuple[int, int] | None = (3, 12)
    #: Defects per megapixel instead, min and max: an image of ``W x H`` px asks for between
    #: ``round(min * W * H / 1e6)`` and ``round(max * W * H / 1e6)`` defects, each end kept
    #: within 1..:data:`MAX_DEFECTS` (see :func:`defect_count_range`). ``(7.3, 29.3)`` asks
    #: 3-12 of a 640 x 640 tile (0.4096 MP), as ``defects_per_image`` does by default, and
    #: 48-192 of a 2560 x 2560 board. ``None``: a count per image (give one of the two).
    defects_per_mp: tuple[float, float] | None = None
    px_per_mm: float = Field(DEEPPCB_PX_PER_MM, gt=0)
    #: ``padded``: the defect's extent plus DeepPCB's margin; ``tight``: the extent.
    box: Literal["padded", "tight"] = "padded"
    #: Margin of padded boxes in mm (DeepPCB: 10 px at 48 px/mm).
    box_margin_mm: float = Field(DEEPPCB_BOX_MARGIN_PX / DEEPPCB_PX_PER_MM, ge=0)
    #: ``dark``: copper darker than substrate (DeepPCB); ``light``: the opposite.
    copper: Literal["dark", "light"] = "dark"
    #: Spots tried for one defect before it is dropped.
    tries: int = Field(6, ge=1, le=100)
    #: Etch variation: before any defect is drawn, each image grows the good board's copper
    #: by a whole number of px drawn from this range (both ends included; negative
    #: shrinks it), and that board is the image's template. Under-etching and finer design
    #: rules narrow clearances, so shorts and spurious copper meet fine pitch even on
    #: boards that have little. ``(0, 0)``: boards as they are.
    etch_px: tuple[int, int] = (0, 0)
    nuisance: NuisanceParams = Field(default_factory=NuisanceParams)
    #: Background nuisance: thick non-defect changes (a feature displaced locally, specks,
    #: broken edges) drawn on every tested image and recorded in ``nuisance_regions``
    #: (:mod:`pcbforge.synth.background`).
    background: BackgroundParams = Field(default_factory=BackgroundParams)
    #: Share of tested images drawn without any defect: the template with background and
    #: acquisition nuisance only, no labels (drawn per image from its own generator).
    defect_free_share: float = Field(0.1, ge=0, le=1)
    #: Binary boards: ``True`` paints each defect pixel-exact on the scanned image (after
    #: the acquisition warp and re-binarization, before its JPEG step), as DeepPCB's defects
    #: were drawn on its tested images; ``False`` draws them on the board before the scan,
    #: so they get its blur and edge noise. Grey and colour boards always take the second
    #: way (their defects are blended into the board's texture).
    painted_defects: bool = True
    #: Brush styles (:mod:`pcbforge.synth.brush`): per class the share of defects drawn as
    #: stamped cross-brush hatching or a stamped outline instead of solid strokes, and how
    #: much that share varies from image to image (``{"probabilities": {}, "heavy_share":
    #: 0}``: every defect solid).
    brush: BrushConfig = Field(default_factory=BrushConfig)
    #: Optional albumentations stage on the finished pair (``preset=None``: off).
    augment: AugmentConfig = Field(default_factory=AugmentConfig)

    @model_validator(mode="before")
    @classmethod
    def _density_replaces_count(cls, data: Any) -> Any:
        return density_replaces_count(data)

    @field_validator("classes", mode="before")
    @classmethod
    def _classes(cls, value: object) -> object:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not value:
            raise ValueError("at least one defect class is needed")
        return tuple(defect_spec(v).name for v in value)  # type: ignore[union-attr]

    @model_validator(mode="after")
    def _weights(self) -> SynthConfig:
        weights = self.class_weights
        if weights is not None:
            if len(weights) != len(self.classes):
                raise ValueError(f"class_weights has {len(weights)} values for "
                                 f"{len(self.classes)} classes")
            if any(not np.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
                raise ValueError(f"class_weights must be >= 0 with a positive sum, got "
                                 f"{list(weights)}")
        return self

    @model_validator(mode="after")
    def _one_count(self) -> SynthConfig:
        if self.defects_per_image is not None and self.defects_per_mp is not None:
            raise ValueError(f"give defects_per_image or defects_per_mp, not both (got "
                             f"{list(self.defects_per_image)} per image and "
                             f"{list(self.defects_per_mp)} per megapixel)")
        if self.defects_per_image is None and self.defects_per_mp is None:
            raise ValueError("give defects_per_image or defects_per_mp (got neither)")
        return self

    @field_validator("defects_per_image")
    @classmethod
    def _range(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is None:
            return value
        lo, hi = value
        if not 1 <= lo <= hi <= MAX_DEFECTS:
            raise ValueError(f"must be 1 <= min <= max <= {MAX_DEFECTS}, got {lo}-{hi}")
        return value

    @field_validator("defects_per_mp")
    @classmethod
    def _density(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is None:
            return value
        lo, hi = value
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi):
            raise ValueError(f"must be 0 < min <= max defects per megapixel, got {lo}, {hi}")
        return value

    @field_validator("etch_px")
    @classmethod
    def _etch(cls, value: tuple[int, int]) -> tuple[int, int]:
        lo, hi = value
        if not -ETCH_MAX_PX <= lo <= hi <= ETCH_MAX_PX:
            raise ValueError(f"must be {-ETCH_MAX_PX} <= min <= max <= {ETCH_MAX_PX}, "
                             f"got {lo}, {hi}")
        return value

    @property
    def margin_px(self) -> float:
        return self.box_margin_mm * self.px_per_mm


@dataclass
class Defect:
    """One placed defect: its class, sampled parameters and changed pixels."""

    spec: DefectSpec
    params: Params
    region: np.ndarray  # uint8 0/1, in a window at ``origin``
    origin: tuple[int, int]  # x, y of the window's top-left pixel
    box: tuple[int, int, int, int]  # padded box on the clean drawing, exclusive ends


@dataclass
class SynthImage:
    """The outcome for one board."""

    image: np.ndarray
    template: np.ndarray
    binary: bool
    labels: list[dict] = field(default_factory=list)  # class, box, tight, mask, params
    nuisance: dict = field(default_factory=dict)
    #: The sampled background nuisance (:func:`~pcbforge.synth.background.sample_background`).
    background: dict = field(default_factory=dict)
    #: Background regions as they lie in ``image``: ``{"kind", "box", "area"}`` each, the
    #: box moved with the acquisition warp.
    nuisance_regions: list[dict] = field(default_factory=list)
    defect_free: bool = False
    requested: int = 0
    redrawn: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # class -> count


def _tight(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def pad_box(box: tuple[int, int, int, int], margin: float, shape: tuple[int, int]
         ) -> tuple[int, int, int, int]:
    m = int(round(margin))
    h, w = shape
    return max(box[0] - m, 0), max(box[1] - m, 0), min(box[2] + m, w), min(box[3] + m, h)


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int], gap: int) -> bool:
    return not (a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1]
                or b[3] + gap <= a[1])


def _place(a: BoardAnalysis, spec: DefectSpec, rng: np.random.Generator,
           boxes: list[tuple[int, int, int, int]], margin: float,
           styles: dict[str, dict[str, float]] | None = None) -> Defect | None:
    """One defect of class ``spec`` sampled, drawn and checked on the clean board;
    ``None`` when this try failed (no spot, too small, too close, wrong topology).
    ``styles``: the image's brush-style probabilities (``None``: brushing off)."""
    params = spec.sample(a, rng)
    if params is None:
        return None
    if styles is not None:
        params["brush"] = sample_style(rng, spec.name, a.scale, styles)
    drawn = spec.region(a, params)
    if drawn is None:
        return None
    region, (x0, y0) = drawn
    tight = _tight(region)
    if tight is None or int(region.sum()) < 12 * a.scale ** 2:
        return None
    region = region[tight[1]:tight[3], tight[0]:tight[2]]
    x0, y0 = x0 + tight[0], y0 + tight[1]
    tight = (x0, y0, x0 + region.shape[1], y0 + region.shape[0])
    box = pad_box(tight, margin, a.shape)
    # Boxes keep apart by a few px more than misregistration can move them.
    if any(_overlap(box, other, 4) for other in boxes):
        return None
    if not spec.clearance(a, params, region, (x0, y0)):
        return None
    bx0, by0, bx1, by1 = box
    before = a.copper[by0:by1, bx0:bx1]
    after = before.copy()
    h, w = region.shape
    window = after[y0 - by0:y0 - by0 + h, x0 - bx0:x0 - bx0 + w]
    if spec.adds_copper:
        window |= region
    else:
        window &= 1 - region
    if not check_topology(spec.name, before, after)[0]:
        return None
    return Defect(spec, params, region, (x0, y0), box)


def _render(a: BoardAnalysis, defects: list[Defect], base: np.ndarray) -> np.ndarray:
    """``base`` (the board, background regions applied away from every defect) with every
    defect drawn in the board's own colours: a binarized board's two levels, exactly;
    on other boards the other side's colour *at that place* (:func:`side_fill`) with its
    texture, blended over a pixel so the edge looks like the board's own edges."""
    out = base.copy()
    for d in defects:
        x, y = d.origin
        h, w = d.region.shape
        adds = d.spec.adds_copper
        if a.binary:
            target = a.copper_colour if adds else a.substrate_colour
            out[y:y + h, x:x + w][d.region > 0] = np.uint8(np.clip(round(float(target[0])),
                                                                   0, 255))
            continue
        paint_side(out, d.region, d.origin,
                   lambda box, adds=adds: side_fill(a, adds, box),
                   int(d.params["texture_seed"]))  # type: ignore[arg-type]
    return out


def copper_of(a: BoardAnalysis, image: np.ndarray, *, in_place: bool = True) -> np.ndarray:
    """Copper of a tested image of ``a``'s board.

    A board that carries its layout: by its palette
    (:meth:`~pcbforge.synth.colour.ColourLayout.copper_of`), which knows more than two
    colours (mask, covered copper, finish, silkscreen, holes). Any other board: thresholded
    halfway between its two sides' colours in grey, on a binarized board the two levels,
    on a grey or colour one the two local colours at each place
    (:func:`~pcbforge.synth.analysis.local_threshold`). ``in_place=False``: ``image`` was
    moved off the board's frame (an augmentation), so nothing is taken from where a pixel
    is (the board-wide colours and illumination only)."""
    if a.layout is not None:
        return a.layout.copper_of(image, in_place=in_place)
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if a.image.ndim == 3:
        cu = cv2.cvtColor(a.copper_colour.reshape(1, 1, 3).astype(np.uint8), cv2.COLOR_BGR2GRAY)
        sub = cv2.cvtColor(a.substrate_colour.reshape(1, 1, 3).astype(np.uint8),
                           cv2.COLOR_BGR2GRAY)
        cu_v, sub_v = float(cu[0, 0]), float(sub[0, 0])
    else:
        cu_v, sub_v = float(a.copper_colour[0]), float(a.substrate_colour[0])
    local = local_threshold(a) if in_place and gray.shape == a.shape else None
    threshold = 0.5 * (cu_v + sub_v) if local is None else local
    return ((gray < threshold) if cu_v < sub_v else (gray > threshold)).astype(np.uint8)


def defect_count_range(config: SynthConfig, shape: tuple[int, ...]) -> tuple[int, int]:
    """Min and max defects an image of ``shape`` (height, width, ...) asks for: the config's
    count per image, or its density per megapixel times the image's megapixels, rounded
    half up and kept within 1..:data:`MAX_DEFECTS`."""
    if config.defects_per_image is not None:  # the config holds one of the two
        return config.defects_per_image
    megapixels = shape[0] * shape[1] / 1e6
    lo, hi = (min(max(math.floor(density * megapixels + 0.5), 1), MAX_DEFECTS)
              for density in config.defects_per_mp or ())
    return lo, hi


def draw_etch(config: SynthConfig, rng: np.random.Generator) -> int:
    """The px one image grows its board's copper by (see ``SynthConfig.etch_px``); a
    fixed range draws nothing from ``rng``, so ``(0, 0)`` leaves every later draw as is."""
    lo, hi = config.etch_px
    return lo if lo == hi else int(rng.integers(lo, hi + 1))


def synthesize_image(board: np.ndarray, rng: np.random.Generator,
                     config: SynthConfig | None = None, *,
                     analysis: BoardAnalysis | None = None,
                     layout: ColourLayout | None = None) -> SynthImage:
    """Draw defects on ``board`` (a good board, uint8 gray or BGR) and label them exactly.

    Order: defects placed and drawn, background nuisance (:mod:`~.background`) away from
    them, then acquisition nuisance (:mod:`~.nuisance`) over the whole image. With
    probability ``config.defect_free_share`` the image gets no defect at all.

    What may differ between ``image`` and ``template`` (binarized at 128; the luminance of
    colour images), the guarantee the tests check:

    * differences at most 2 px thick (nothing left by a 3x3 opening,
      :func:`~pcbforge.synth.nuisance.thick_difference`) may be anywhere;
    * every difference thicker than that lies inside a label's box or a recorded
      ``nuisance_regions`` box (anything else is put back to the template);
    * every pixel a defect changes is inside its label's box, and the box shows the class's
      topology (checked on the clean drawing and again on the final pair);
    * nuisance region boxes never overlap a label's box, and a region never joins or cuts
      conductors nor adds an island or a hole.

    The board is first etched by :func:`draw_etch` px (``config.etch_px``), and the
    result's template is that board. ``analysis``: when the caller already has it (several
    images from one board), the analysis of the board as etched, with the config's px/mm
    and copper side, after it drew the etch from ``rng`` the same way; never modified.
    ``layout``: the copper layout ``board`` carries (a procedural colour board's,
    :func:`~pcbforge.synth.colour.layout_from_png`), so its copper is known rather than
    guessed from the colours; not used with ``analysis`` (which holds it).
    """
    config = config or SynthConfig()
    if analysis is None:
        board, layout = etch_any(board, layout, draw_etch(config, rng), config.copper)
    a = analysis or analyze_board(board, px_per_mm=config.px_per_mm, copper=config.copper,
                                  layout=layout)
    defect_free = bool(rng.random() < config.defect_free_share)
    wanted = [] if defect_free else _draw_classes(config, rng, a.shape)
    result = SynthImage(image=a.image, template=a.image, binary=a.binary, requested=len(wanted),
                        defect_free=defect_free)
    defects = _place_all(a, wanted, rng, config, result)
    result.background, base, region_ids = sample_and_render_background(
        rng, config.background, a, [d.box for d in defects], a.image)
    result.nuisance = sample_nuisance(rng, config.nuisance, a.shape)
    result.image, result.labels = _disturb_and_label(a, defects, config, result, base)
    result.nuisance_regions = _warped_regions(a, result.background, region_ids,
                                              result.nuisance)
    result.image = _restore_outside(result.image, a, result.labels, result.nuisance_regions)
    return result


def etch_any(board: np.ndarray, layout: ColourLayout | None, px: int, copper: str
             ) -> tuple[np.ndarray, ColourLayout | None]:
    """``board`` (and the layout it carries, if any) etched by ``px`` px: see
    :func:`~pcbforge.synth.analysis.etch_board` and
    :func:`~pcbforge.synth.analysis.etch_layout_board`."""
    if layout is not None:
        return etch_layout_board(board, layout, px)
    return etch_board(board, px, copper), None


def _warped_regions(a: BoardAnalysis, background: dict, ids: np.ndarray | None,
                    nuisance: dict) -> list[dict]:
    """The background regions' records on the final image: each box covers the region's
    changed pixels before and after the acquisition warp, padded like the sampled box."""
    regions = background.get("regions", []) if background.get("enabled") else []
    if not regions or ids is None:
        return []
    warped = warp_mask(ids, nuisance)
    records = []
    for k, region in enumerate(regions, 1):
        x0, y0, x1, y1 = region["box"]
        wx0, wy0, wx1, wy1 = pad_box((x0, y0, x1, y1), 4, a.shape)
        moved = _tight(warped[wy0:wy1, wx0:wx1] == k)
        box = list(region["box"])
        if moved is not None:
            pad = pad_box((moved[0] + wx0, moved[1] + wy0, moved[2] + wx0, moved[3] + wy0),
                          5, a.shape)
            box = [min(box[0], pad[0]), min(box[1], pad[1]), max(box[2], pad[2]),
                   max(box[3], pad[3])]
        records.append({"kind": region["kind"], "box": [int(v) for v in box],
                        "area": int(region["area"])})
    return records


def _restore_outside(image: np.ndarray, a: BoardAnalysis, labels: list[dict],
                     regions: list[dict]) -> np.ndarray:
    """``image`` with every difference from the template (``a.image``) that is thicker
    than 2 px and lies outside all label and region boxes put back to the template (the
    guarantee's safety net; it almost never finds anything). On a board with a layout a
    difference of its copper (:func:`copper_of`) counts too."""
    template = a.image
    thick = thick_difference(image, template)
    if a.layout is not None:
        moved = (copper_of(a, image) ^ a.copper).view(np.uint8)
        thick |= cv2.morphologyEx(moved, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)) * 255
    for box in [label["box"] for label in labels] + [r["box"] for r in regions]:
        x1, y1, x2, y2 = (int(v) for v in box)
        thick[y1:y2, x1:x2] = 0
    if not cv2.countNonZero(thick):
        return image
    # Put back the whole 8-connected component of the binarized difference around each
    # leftover, so no new 3x3 square forms at the seam.
    where = cv2.dilate(thick, np.ones((5, 5), np.uint8)) > 0
    for box in [label["box"] for label in labels] + [r["box"] for r in regions]:
        x1, y1, x2, y2 = (int(v) for v in box)
        where[y1:y2, x1:x2] = False
    out = image.copy()
    out[where] = template[where]
    return out


def _draw_classes(config: SynthConfig, rng: np.random.Generator,
                  shape: tuple[int, ...]) -> list[DefectSpec]:
    """The class of each defect an image of ``shape`` asks for: how many, then which. The
    count is one draw between the ends of :func:`defect_count_range`, so a density that
    gives the same ends as a count per image gives the same draws."""
    lo, hi = defect_count_range(config, shape)
    if config.class_weights is None:
        drawn = rng.integers(0, len(config.classes), int(rng.integers(lo, hi + 1)))
    else:
        weights = np.asarray(config.class_weights, dtype=np.float64)
        drawn = rng.choice(len(config.classes), size=int(rng.integers(lo, hi + 1)),
                           p=weights / weights.sum())
    specs = [defect_spec(name) for name in config.classes]
    return [specs[int(i)] for i in drawn]


def _drop(result: SynthImage, spec: DefectSpec) -> None:
    result.dropped[spec.name] = result.dropped.get(spec.name, 0) + 1


def _place_all(a: BoardAnalysis, wanted: list[DefectSpec], rng: np.random.Generator,
               config: SynthConfig, result: SynthImage) -> list[Defect]:
    """Place each wanted defect on the clean board (``config.tries`` spots each, apart from
    the others' boxes); counts the redrawn spots and dropped defects into ``result``."""
    defects: list[Defect] = []
    brush = config.brush
    styles = image_probabilities(rng, brush.probabilities, brush.spread, brush.heavy_share,
                                 brush.heavy_floor) if wanted and brush.enabled else None
    for spec in wanted:
        placed = None
        for attempt in range(config.tries):
            placed = _place(a, spec, rng, [d.box for d in defects], config.margin_px, styles)
            if placed is not None:
                result.redrawn += attempt
                break
        if placed is None:
            result.redrawn += config.tries - 1
            _drop(result, spec)
            continue
        placed.params["texture_seed"] = int(rng.integers(2**31))
        defects.append(placed)
    return defects


def _disturb_and_label(a: BoardAnalysis, defects: list[Defect], config: SynthConfig,
                       result: SynthImage, base: np.ndarray) -> tuple[np.ndarray, list[dict]]:
    """The tested image (defects rendered, then ``result.nuisance``) and a label per defect
    that still holds its class's topology after the nuisance.

    Nuisance can, rarely, undo a defect's topology (a thin bridge lost to re-binarizing):
    such a defect is taken out (counted dropped) and the image drawn again without it."""
    painted = a.binary and config.painted_defects
    scanned = apply_nuisance(base, result.nuisance, binary=True,
                             jpeg_round_trip=False) if painted else None
    while True:
        warped = _warped_instances(a, defects, result.nuisance)
        if scanned is not None:
            tested = _paint(a, defects, base, scanned, result.nuisance, warped)
        else:
            tested = apply_nuisance(_render(a, defects, base), result.nuisance, binary=a.binary)
        labels, failed = _label_all(a, defects, tested, config, warped)
        if failed is None:
            return tested, labels
        defects.remove(failed)
        _drop(result, failed.spec)


#: How far (px) around a painted defect the board as drawn (moved by the warp's whole
#: pixels, as the masks are) takes over the scanned board on the defect's side: a spur or
#: short still meets its conductor and a cut still cuts where the scan moved an edge away.
PAINT_ZONE_PX = 2


def _paint(a: BoardAnalysis, defects: list[Defect], base: np.ndarray, scanned: np.ndarray,
           nuisance: dict, warped: np.ndarray) -> np.ndarray:
    """A binary board's tested image: the ``scanned`` board with every defect painted
    pixel-exact (moved by the warp's whole pixels: ``warped``, the instance ids of
    :func:`_warped_instances`) and, within :data:`PAINT_ZONE_PX` of a defect, the drawn
    board's copper added (a defect that adds copper) or its substrate (one that removes
    copper), so the defect joins the edges it touches; then the sampled JPEG step.
    Elsewhere, and on the other side of each defect, the scan's edges stay."""
    tested = scanned.copy()
    if defects:
        drawn = warp_mask(_render(a, defects, base), nuisance)
        side = 2 * PAINT_ZONE_PX + 1
        kernel = np.ones((side, side), np.uint8)
        copper = np.uint8(np.clip(round(float(a.copper_colour[0])), 0, 255))
        substrate = np.uint8(np.clip(round(float(a.substrate_colour[0])), 0, 255))
        for k, d in enumerate(defects, 1):
            # The warp moves a mask < 2.5 px: its box grown by 4 px, and the zone, hold it.
            x0, y0, x1, y1 = pad_box(d.box, 4 + PAINT_ZONE_PX, a.shape)
            mine = (warped[y0:y1, x0:x1] == k).view(np.uint8)
            zone = cv2.dilate(mine, kernel) > 0
            value = copper if d.spec.adds_copper else substrate
            window = tested[y0:y1, x0:x1]
            window[zone & (drawn[y0:y1, x0:x1] == value)] = value
    return jpeg_round_trip_of(tested, nuisance)


def _copper_views(a: BoardAnalysis, tested: np.ndarray, config: SynthConfig
                  ) -> list[tuple[np.ndarray, np.ndarray]]:
    """(template copper, tested copper) pairs every label must hold under."""
    copper = copper_of(a, tested)
    if a.binary or a.layout is not None:
        # Binarized, or a board whose copper is known: one reading of the pair.
        return [(a.copper, copper)]
    # A grey or colour board has blended edges: a label must hold under Otsu's threshold
    # as well as under the halfway one, or another reader of the pair would see a
    # different defect.
    return [(a.copper, copper),
            (copper_mask(a.image, config.copper), copper_mask(tested, config.copper))]


def _warped_instances(a: BoardAnalysis, defects: list[Defect], nuisance: dict) -> np.ndarray:
    """Defect ``k`` (from 1) painted ``k`` in an instance-id image, warped as the tested
    image was: every mask moves with the warp in one pass."""
    ids = np.zeros(a.shape, np.uint8)
    for k, d in enumerate(defects, 1):
        x, y = d.origin
        h, w = d.region.shape
        ids[y:y + h, x:x + w][d.region > 0] = k
    return warp_mask(ids, nuisance)


def _label_all(a: BoardAnalysis, defects: list[Defect], tested: np.ndarray,
               config: SynthConfig, warped: np.ndarray) -> tuple[list[dict], Defect | None]:
    """The labels of ``defects`` on ``tested`` (``warped``: their instance ids as the
    warp moved them), or the first defect whose label fails."""
    views = _copper_views(a, tested, config)
    labels = []
    for k, d in enumerate(defects, 1):
        label = _label(a, d, warped, k, views, config)
        if label is None:
            return labels, d
        labels.append(label)
    return labels, None


def _label(a: BoardAnalysis, d: Defect, warped: np.ndarray, k: int,
           views: list[tuple[np.ndarray, np.ndarray]], config: SynthConfig) -> dict | None:
    """Defect ``d``'s label from its warped instance ``k``; ``None`` when the warp lost it
    or its box no longer shows its class's topology in every view."""
    wx0, wy0, wx1, wy1 = pad_box(d.box, 4, a.shape)  # the warp moves < 2.5 px
    local = warped[wy0:wy1, wx0:wx1] == k
    tight = _tight(local)
    if tight is None:
        return None
    tight = (tight[0] + wx0, tight[1] + wy0, tight[2] + wx0, tight[3] + wy0)
    box = pad_box(tight, config.margin_px, a.shape)
    bx0, by0, bx1, by1 = box
    if not all(check_topology(d.spec.name, before[by0:by1, bx0:bx1],
                              after[by0:by1, bx0:bx1])[0] for before, after in views):
        return None
    mask = np.zeros(a.shape, bool, order="F")  # column-major, as COCO RLE wants
    mask[wy0:wy1, wx0:wx1] = local
    return {"label": d.spec.name, "box": box if config.box == "padded" else tight,
            "tight": tight, "mask": mask, "params": d.params, "changed_px": int(local.sum())}
