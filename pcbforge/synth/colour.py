"""Procedural colour boards: a board's copper layout rendered as a photograph of it.

A colour board is drawn in two steps, as everywhere in pcbforge: :func:`sample_colour`
draws every random number (mask and finish colours, illumination, silkscreen, noise
seed) into a JSON-serialisable dict, and :func:`render_colour` draws the board from the
layout and that dict, deterministically.

The board is a map of :class:`Region` per pixel: solder mask over bare laminate,
copper under the mask (traces, pours: a lighter, warmer tint of the mask), exposed
copper (pads and vias' annular rings, in the finish's colour: ENIG gold, HASL silver or
bare copper), drilled holes, and silkscreen ink (white; black on a white mask) on mask
areas only, kept clear of copper. Each region has one colour (:data:`MASK_COLOURS`,
:data:`FINISHES`), with grain, a soft optical blur, a smooth illumination gain across
the board and sensor noise.

The region map travels with the board: :func:`embed_layout` writes it, with the sampled
colours, into a private chunk of the board's PNG (``pcLY``, ancillary and unsafe to copy:
an editor that changes the pixels drops it), and :func:`layout_from_png` reads it back.
Synthesis then knows where the copper is instead of guessing it from the colours
(:class:`ColourLayout`): where a defect adds copper it paints the copper of that place
(under the mask: the covered tint; inside a mask opening: the finish) and where one
removes copper, what lies under it (mask over laminate; inside an opening, a void:
the bare laminate at the bottom of a pit in the plating, in shadow).
:meth:`ColourLayout.copper_of` recovers the copper of a tested image from its
colours by the nearest palette colour (and, next to silkscreen and where a trace meets a
pad, the nearest blend of the two), with the illumination divided out.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from enum import IntEnum
from functools import cached_property
from typing import Any

import cv2
import numpy as np

from pcbforge.synth.boards import COPPER, BoardLayout

__all__ = ["BOARD_STYLES", "FINISHES", "LAYOUT_CHUNK", "MASK_COLOURS", "ColourBoard",
           "ColourLayout", "Region", "colour_separation", "embed_layout", "finishes_for",
           "gain_field", "layout_from_png", "render_colour", "sample_colour"]


class Region(IntEnum):
    """What one pixel of a colour board shows (the values of the region map)."""

    mask = 0  # solder mask over bare laminate
    covered = 1  # copper under the solder mask: traces, pours
    finish = 2  # exposed copper: pads, vias' rings (ENIG, HASL or bare copper)
    void = 3  # a pit in exposed copper, down to the laminate (only where a defect removed it)
    hole = 4  # a drilled hole
    silk = 5  # silkscreen ink, on mask over laminate only


#: Regions that are copper.
COPPER_REGIONS = (Region.covered, Region.finish)
#: ``pcbforge synth boards --style``: DeepPCB-like binarized tiles, or colour photographs.
BOARD_STYLES = ("binary", "colour")

#: A bright, clean copper colour (BGR): what shows through a translucent mask.
_BRIGHT_COPPER = np.array([70.0, 140.0, 215.0])
#: Solder mask colours (BGR): the mask, its silkscreen ink and how much of the copper's
#: colour shows through it (the covered tint is ``(1 - w) * mask + w * copper``). Green is
#: the default; ``any`` draws one by :data:`MASK_WEIGHTS`.
MASK_COLOURS: dict[str, dict[str, Any]] = {
    "green": {"mask": (45, 105, 25), "silk": (235, 235, 235), "copper_shows": 0.42},
    "blue": {"mask": (135, 55, 15), "silk": (235, 235, 235), "copper_shows": 0.42},
    "red": {"mask": (35, 30, 150), "silk": (235, 235, 235), "copper_shows": 0.5},
    "black": {"mask": (28, 28, 28), "silk": (235, 235, 235), "copper_shows": 0.45},
    "white": {"mask": (222, 226, 226), "silk": (35, 35, 35), "copper_shows": 0.5},
}
#: How often ``--mask any`` draws each mask colour (green boards are most of them).
MASK_WEIGHTS = {"green": 0.55, "blue": 0.15, "red": 0.1, "black": 0.1, "white": 0.1}
#: Finishes of exposed copper (BGR): ENIG gold, HASL silver (tin-lead grey), bare copper.
FINISHES: dict[str, tuple[int, int, int]] = {
    "enig": (105, 185, 220), "hasl": (200, 198, 196), "copper": (75, 125, 205)}
#: A void in exposed copper (the laminate at the bottom of a pit, in shadow) and a drilled
#: hole (BGR). Dark: a tan laminate would lie on the line from a dark mask to a gold finish,
#: and its blend with the mask around a bitten pad would read as the pad's edge.
VOID = (38, 42, 48)
HOLE = (22, 22, 24)
#: The least distance (BGR units) between a copper colour and a colour that is not copper,
#: and between each and the blends it must be told from (mask with silkscreen; covered
#: copper with the finish). A finish that comes closer on some mask is not drawn there.
MIN_SEPARATION = 30.0
#: Grain (std before the blur, grey levels) of each region's surface.
_GRAIN = {Region.mask: 2.5, Region.covered: 3.0, Region.finish: 5.0, Region.void: 3.0,
          Region.hole: 1.5, Region.silk: 2.0}
#: Pairs of regions that meet on a board, whose edges blend (the optical blur, the
#: acquisition warp, JPEG): silkscreen on mask, a trace entering its pad, a pad's edge,
#: a drilled hole in its pad.
_BLENDS = ((Region.mask, Region.silk), (Region.covered, Region.finish),
           (Region.mask, Region.finish), (Region.finish, Region.hole))
#: Silkscreen keeps more than this (px) from copper and holes.
SILK_CLEARANCE_PX = 6
#: How far (px) around a silkscreen edge, or around the joint of a trace and a pad, a
#: pixel may be a blend of the two colours (the blur, the acquisition warp, JPEG).
BLEND_ZONE_PX = 3
#: Private PNG chunk that carries a board's layout: ancillary (lower-case first letter),
#: private (lower-case second), unsafe to copy (upper-case last).
LAYOUT_CHUNK = b"pcLY"
_LAYOUT_FORMAT = "pcbforge.layout"
_LAYOUT_VERSION = 1
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _palette(mask: str, finish: str, jitter: np.ndarray) -> dict[str, list[float]]:
    """Every region's colour (BGR) for a mask and finish; ``jitter`` (2, 3) moves the mask's
    and the finish's colour a little, as boards from different batches differ."""
    spec = MASK_COLOURS[mask]
    mask_bgr = np.clip(np.asarray(spec["mask"], np.float64) + jitter[0], 0, 255)
    w = float(spec["copper_shows"])
    covered = (1 - w) * mask_bgr + w * _BRIGHT_COPPER
    finish_bgr = np.clip(np.asarray(FINISHES[finish], np.float64) + jitter[1], 0, 255)
    colours = {Region.mask: mask_bgr, Region.covered: covered, Region.finish: finish_bgr,
               Region.void: np.asarray(VOID, np.float64),
               Region.hole: np.asarray(HOLE, np.float64),
               Region.silk: np.asarray(spec["silk"], np.float64)}
    return {region.name: [round(float(v), 2) for v in colours[region]] for region in Region}


def _segment_position(points: np.ndarray, a: np.ndarray, b: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Where each of ``points`` (..., 3) lies along the segment from ``a`` to ``b`` (0 at
    ``a``, 1 at ``b``) and its squared distance to the segment."""
    d = (b - a).astype(points.dtype if points.dtype.kind == "f" else np.float64)
    t = np.clip(((points - a) @ d) / float(d @ d), 0.0, 1.0)
    return t, ((points - (a + t[..., None] * d)) ** 2).sum(axis=-1)


def _segment_distance(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared distance of each of ``points`` (..., 3) to the segment from ``a`` to ``b``."""
    return _segment_position(points, a, b)[1]


def colour_separation(palette: dict[str, list[float]]) -> float:
    """The least distance between what :meth:`ColourLayout.copper_of` must tell apart: a
    copper colour and a colour that is not, the covered tint and a blend of mask and
    silkscreen, the mask and a blend of covered copper and finish."""
    p = {name: np.asarray(value, np.float64) for name, value in palette.items()}
    copper = [p["covered"], p["finish"]]
    other = [p["mask"], p["void"], p["hole"], p["silk"]]
    gaps = [float(np.linalg.norm(c - o)) for c in copper for o in other]
    gaps.append(float(np.sqrt(_segment_distance(p["covered"], p["mask"], p["silk"]))))
    gaps.append(float(np.sqrt(_segment_distance(p["mask"], p["covered"], p["finish"]))))
    return min(gaps)


def finishes_for(mask: str) -> list[str]:
    """The finishes drawn on a mask colour: those whose palette keeps
    :data:`MIN_SEPARATION` (:func:`colour_separation`; today every finish on every mask)."""
    zero = np.zeros((2, 3))
    return [f for f in FINISHES if colour_separation(_palette(mask, f, zero)) >= MIN_SEPARATION]


# --- silkscreen --------------------------------------------------------------------------

_DESIGNATORS = ("R", "C", "U", "J", "D", "Q", "L", "TP", "SW", "Y", "FB", "IC")
_FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_PLAIN, cv2.FONT_HERSHEY_DUPLEX)


def _silk_patch(item: dict) -> np.ndarray:
    """One silkscreen item (text, outline or dot) drawn 0/1 in its own patch."""
    if item["kind"] == "text":
        font, scale, thick = _FONTS[item["font"]], item["scale"], item["thickness"]
        (w, h), base = cv2.getTextSize(item["text"], font, scale, thick)
        patch = np.zeros((h + base + 4, w + 4), np.uint8)
        cv2.putText(patch, item["text"], (2, h + 2), font, scale, 1, thick, cv2.LINE_8)
        return np.ascontiguousarray(np.rot90(patch, item["turns"]))
    if item["kind"] == "outline":
        w, h, t = item["w"], item["h"], item["thickness"]
        patch = np.zeros((h, w), np.uint8)
        cv2.rectangle(patch, (0, 0), (w - 1, h - 1), 1, t)
        if item["pin1"]:
            r = max(2, t)
            cv2.circle(patch, (t + 2 * r, t + 2 * r), r, 1, -1)
        return patch
    r = item["r"]
    patch = np.zeros((2 * r + 1, 2 * r + 1), np.uint8)
    cv2.circle(patch, (r, r), r, 1, -1)
    return patch


def _draw_silk_item(rng: np.random.Generator) -> dict:
    kind = ("text", "text", "text", "outline", "outline", "dot")[int(rng.integers(6))]
    if kind == "text":
        text = (_DESIGNATORS[int(rng.integers(len(_DESIGNATORS)))]
                + str(int(rng.integers(1, 100))))
        scale = round(float(rng.uniform(0.4, 0.75)), 3)
        thickness = 1 if scale < 0.55 else int(rng.integers(1, 3))  # small print stays thin
        return {"kind": kind, "text": text, "font": int(rng.integers(len(_FONTS))),
                "scale": scale, "thickness": thickness, "turns": int(rng.integers(2))}
    if kind == "outline":
        w, h = (int(v) for v in np.round(rng.uniform(18, 90, 2)))
        return {"kind": kind, "w": w, "h": h, "thickness": 2, "pin1": bool(rng.random() < 0.4)}
    return {"kind": kind, "r": int(rng.integers(2, 5))}


def _sample_silk(rng: np.random.Generator, clear: np.ndarray) -> list[dict]:
    """Silkscreen items placed where they (almost) fit in ``clear`` (mask away from copper):
    an item goes where at least 92 % of its ink lands on clear mask and it keeps 3 px from
    the items before it; the rest of its ink is left off, as a real print is clipped at
    the mask's openings."""
    h, w = clear.shape
    taken = np.zeros_like(clear)
    items = []
    for _ in range(int(round(rng.integers(6, 16) * h * w / 640.0 ** 2))):
        item = _draw_silk_item(rng)
        patch = _silk_patch(item)
        ph, pw = patch.shape
        if ph >= h or pw >= w:
            continue
        ink = int(patch.sum())
        for _ in range(12):
            x, y = int(rng.integers(0, w - pw)), int(rng.integers(0, h - ph))
            on = patch > 0
            if (clear[y:y + ph, x:x + pw][on].sum() >= 0.92 * ink
                    and not taken[y:y + ph, x:x + pw][on].any()):
                items.append({**item, "x": x, "y": y})
                taken[max(y - 3, 0):y + ph + 3, max(x - 3, 0):x + pw + 3] = True
                break
    return items


def _silk_mask(items: list[dict], clear: np.ndarray) -> np.ndarray:
    silk = np.zeros(clear.shape, bool)
    for item in items:
        patch = _silk_patch(item) > 0
        ph, pw = patch.shape
        silk[item["y"]:item["y"] + ph, item["x"]:item["x"] + pw] |= patch
    return silk & clear


# --- sampling and rendering --------------------------------------------------------------

def _clear_mask(layout: BoardLayout) -> np.ndarray:
    """Mask over laminate more than :data:`SILK_CLEARANCE_PX` from copper and holes."""
    solid = ((layout.board == COPPER) | layout.holes).astype(np.uint8)
    away = cv2.distanceTransform(1 - solid, cv2.DIST_L2, 5)
    return away > SILK_CLEARANCE_PX


def sample_colour(rng: np.random.Generator, layout: BoardLayout, *, mask: str = "green",
                  finish: str = "any") -> dict[str, Any]:
    """Draw everything random about one colour board of ``layout``: the mask colour
    (``any``: drawn by :data:`MASK_WEIGHTS`), the finish (``any``: drawn among
    :func:`finishes_for` the mask), a little colour jitter, the illumination gain
    (a tilt and a soft bump, within +-10 %), the blur, grain and sensor noise,
    the silkscreen items and the noise seed. JSON-serialisable."""
    if mask != "any" and mask not in MASK_COLOURS:
        raise ValueError(f"unknown mask colour {mask!r}; valid: any, {', '.join(MASK_COLOURS)}")
    if finish != "any" and finish not in FINISHES:
        raise ValueError(f"unknown finish {finish!r}; valid: any, {', '.join(FINISHES)}")
    if mask == "any":
        names = list(MASK_WEIGHTS)
        weights = np.asarray([MASK_WEIGHTS[n] for n in names])
        mask = names[int(rng.choice(len(names), p=weights / weights.sum()))]
    allowed = finishes_for(mask)
    if finish == "any":
        finish = allowed[int(rng.integers(len(allowed)))]
    elif finish not in allowed:
        raise ValueError(f"finish {finish!r} cannot be told from a {mask} mask's colours; "
                         f"on {mask}: {', '.join(allowed)}")
    jitter = rng.uniform(-4.0, 4.0, (2, 3))
    palette = _palette(mask, finish, jitter)
    h, w = layout.board.shape
    gain = {"x": round(float(rng.uniform(-0.06, 0.06)), 4),
            "y": round(float(rng.uniform(-0.06, 0.06)), 4),
            "bump": round(float(rng.uniform(-0.03, 0.04)), 4),
            "cx": round(float(rng.uniform(0, w)), 1), "cy": round(float(rng.uniform(0, h)), 1),
            "sigma": round(float(rng.uniform(0.3, 0.6)) * max(h, w), 1)}
    silk = _sample_silk(rng, _clear_mask(layout))
    return {"style": "colour", "mask": mask, "finish": finish, "palette": palette,
            "gain": gain, "blur_px": round(float(rng.uniform(0.6, 0.9)), 3),
            "sensor_noise": round(float(rng.uniform(1.5, 3.0)), 3),
            "grain": {region.name: _GRAIN[region] for region in Region},
            "silk": silk, "noise_seed": int(rng.integers(2**31))}


def gain_field(gain: dict, shape: tuple[int, int]) -> np.ndarray:
    """The illumination gain (float32, ``shape``) a colour board was lit with."""
    h, w = shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    field = (1.0 + gain["x"] * (xs / max(w - 1, 1) - 0.5) + gain["y"] * (ys / max(h - 1, 1) - 0.5)
             + gain["bump"] * np.exp(-((xs - gain["cx"]) ** 2 + (ys - gain["cy"]) ** 2)
                                     / (2.0 * gain["sigma"] ** 2)))
    return field.astype(np.float32)


def _blur_std_factor(sigma: float) -> float:
    """How much a 2-D Gaussian blur of ``sigma`` px scales the std of pixel-wise noise:
    the root of the sum of its squared weights, ``sum(k ** 2)`` of the 1-D kernel ``k``."""
    k = cv2.getGaussianKernel(2 * int(np.ceil(4 * sigma)) + 1, sigma).ravel()
    return float((k ** 2).sum())


@dataclass(frozen=True)
class ColourLayout:
    """A colour board's region map (:class:`Region` per pixel) and its sampled colours:
    where its copper is, and what colour each place shows."""

    regions: np.ndarray  # uint8 (H, W)
    params: dict = field(repr=False)  # sample_colour's dict (the silkscreen items optional)

    def __post_init__(self) -> None:
        if self.regions.dtype != np.uint8 or self.regions.ndim != 2:
            raise ValueError(f"regions must be a 2-D uint8 map, got {self.regions.dtype} "
                             f"{self.regions.shape}")
        if int(self.regions.max(initial=0)) >= len(Region):
            raise ValueError(f"regions must hold values 0-{len(Region) - 1}, got "
                             f"{int(self.regions.max())}")
        missing = {"palette", "gain", "blur_px", "sensor_noise", "grain"} - set(self.params)
        if missing:
            raise ValueError(f"layout parameters lack {sorted(missing)}")

    @property
    def shape(self) -> tuple[int, int]:
        return self.regions.shape  # type: ignore[return-value]

    @cached_property
    def copper(self) -> np.ndarray:
        """uint8 0/1: where the copper is."""
        return np.isin(self.regions, COPPER_REGIONS).view(np.uint8)

    @cached_property
    def palette(self) -> np.ndarray:
        """(regions, 3) float32 BGR colours, indexed by :class:`Region`."""
        return np.asarray([self.params["palette"][r.name] for r in Region], np.float32)

    @cached_property
    def noise(self) -> np.ndarray:
        """(regions,) float32: the std of each region's pixels around its colour."""
        norm = _blur_std_factor(float(self.params["blur_px"]))
        grain = np.asarray([self.params["grain"][r.name] for r in Region], np.float32)
        return np.sqrt((grain * norm) ** 2 + float(self.params["sensor_noise"]) ** 2)

    @cached_property
    def gain(self) -> np.ndarray:
        return gain_field(self.params["gain"], self.shape)

    @cached_property
    def _blend_zones(self) -> list[tuple[Region, Region, np.ndarray]]:
        """For each pair of regions in :data:`_BLENDS`, where a pixel may be a blend of
        the two (within :data:`BLEND_ZONE_PX` of both); pairs that do not meet left out."""
        kernel = np.ones((2 * BLEND_ZONE_PX + 1,) * 2, np.uint8)
        near = {region: cv2.dilate((self.regions == region).view(np.uint8), kernel)
                for region in {r for pair in _BLENDS for r in pair}}
        zones = []
        for a, b in _BLENDS:
            zone = (near[a] & near[b]) > 0
            if zone.any():
                zones.append((a, b, zone))
        return zones

    def side(self, adds_copper: bool, box: tuple[int, int, int, int]) -> np.ndarray:
        """uint8 :class:`Region` per pixel of ``box`` (x0, y0, x1, y1) that a defect shows
        there: adding copper, the copper of that place (inside a mask opening, a drilled
        hole here, the finish; elsewhere copper under the mask); removing copper, what lies
        under it (inside an opening, a pad, a dark void; elsewhere mask over laminate)."""
        x0, y0, x1, y1 = box
        here = self.regions[y0:y1, x0:x1]
        opening = (here == Region.finish) | (here == Region.hole)
        if adds_copper:
            return np.where(opening, Region.finish, Region.covered).astype(np.uint8)
        return np.where(opening, Region.void, Region.mask).astype(np.uint8)

    def fill(self, adds_copper: bool, box: tuple[int, int, int, int]
             ) -> tuple[np.ndarray, np.ndarray]:
        """The colour (float32 (h, w, 3), lit as the board is) and the texture std (float32
        (h, w, 1)) of :meth:`side` in ``box``."""
        x0, y0, x1, y1 = box
        side = self.side(adds_copper, box)
        colour = self.palette[side] * self.gain[y0:y1, x0:x1, None]
        return colour, self.noise[side][..., None]

    def copper_of(self, image: np.ndarray, *, in_place: bool = True) -> np.ndarray:
        """uint8 0/1 copper of a BGR image of this board (a tested image: the board, moved
        a pixel or two, with defects and noise): each pixel, the illumination divided out,
        goes to the nearest palette colour, or near silkscreen to the nearest blend of mask
        and silkscreen, and where a trace meets a pad to the nearest blend of covered copper
        and finish; copper when that is a copper colour.

        ``in_place=False``: the image was moved off the board's frame (flipped, rotated,
        scaled by an augmentation), so nothing is taken from where a pixel is: the mean
        illumination, and the palette's colours only."""
        if image.ndim != 3 or image.shape[2] != 3 or (in_place and image.shape[:2]
                                                      != self.shape):
            raise ValueError(f"expected a BGR image of {self.shape}, got shape {image.shape}")
        pixels = image.astype(np.float32)
        if in_place:
            pixels /= self.gain[..., None]
        else:
            pixels /= float(self.gain.mean())
        palette = self.palette
        # |x - p|^2 less |x|^2 (the same for every colour): |p|^2 - 2 x.p, by cv2.transform
        # in threes (one 6-channel transform, or numpy's matmul, is several times slower).
        affine = np.hstack([-2.0 * palette, (palette ** 2).sum(axis=1, keepdims=True)])
        channels = [channel for i in range(0, len(palette), 3)
                    for channel in cv2.split(cv2.transform(pixels, affine[i:i + 3]))]
        to_copper = np.minimum.reduce([channels[r] for r in Region if r in COPPER_REGIONS])
        to_other = np.minimum.reduce([channels[r] for r in Region if r not in COPPER_REGIONS])
        for a, b, zone in self._blend_zones if in_place else ():
            here = pixels[zone]
            t, blend = _segment_position(here, palette[a], palette[b])
            blend -= np.einsum("ij,ij->i", here, here)  # less |x|^2, as the colours' are
            # A blend of two copper colours (or of two others) is that side's; a blend of
            # copper and another colour goes to the nearer end's side (halfway, as the
            # threshold between two colours does).
            a_copper, b_copper = a in COPPER_REGIONS, b in COPPER_REGIONS
            for side, is_copper_side in ((t < 0.5, a_copper), (t >= 0.5, b_copper)):
                target = to_copper if is_copper_side else to_other
                values = target[zone]
                values[side] = np.minimum(values[side], blend[side])
                target[zone] = values
        return (to_copper < to_other).view(np.uint8)

    def with_copper(self, copper: np.ndarray) -> ColourLayout:
        """This layout with its copper changed to ``copper`` (0/1): pixels that become
        copper take :meth:`side`'s region for adding copper, pixels that stop being copper
        its region for removing it (an etched board)."""
        regions = self.regions.copy()
        box = (0, 0, self.shape[1], self.shape[0])
        was = self.copper > 0
        now = copper > 0
        added, removed = now & ~was, was & ~now
        regions[added] = self.side(True, box)[added]
        regions[removed] = self.side(False, box)[removed]
        return ColourLayout(regions, self.params)

    def header(self) -> dict[str, Any]:
        """What the board's PNG records about it (the silkscreen as drawn is in the map)."""
        params = {k: v for k, v in self.params.items() if k != "silk"}
        return {"format": _LAYOUT_FORMAT, "version": _LAYOUT_VERSION,
                "shape": list(self.shape), "regions": [r.name for r in Region], **params}


@dataclass(frozen=True)
class ColourBoard:
    """A rendered colour board: the BGR image and its layout."""

    image: np.ndarray
    layout: ColourLayout


def render_colour(layout: BoardLayout, params: dict[str, Any]) -> ColourBoard:
    """Draw the colour board of ``layout`` with :func:`sample_colour`'s ``params``
    (deterministic: the same layout and dict give the same pixels)."""
    copper = layout.board == COPPER
    regions = np.full(copper.shape, Region.mask, np.uint8)
    regions[copper] = Region.covered
    regions[copper & layout.pads] = Region.finish
    regions[layout.holes] = Region.hole
    silk = _silk_mask(params["silk"], _clear_mask(layout))
    regions[silk & (regions == Region.mask)] = Region.silk
    colour_layout = ColourLayout(regions, params)
    noise = np.random.default_rng(int(params["noise_seed"]))
    grain = np.asarray([params["grain"][r.name] for r in Region], np.float32)[regions]
    base = colour_layout.palette[regions]
    base += noise.standard_normal(regions.shape + (1,), np.float32) * grain[..., None]
    base = cv2.GaussianBlur(base, (0, 0), float(params["blur_px"]))
    base *= colour_layout.gain[..., None]
    base += noise.standard_normal(base.shape, np.float32) * float(params["sensor_noise"])
    image = np.clip(np.round(base), 0, 255).astype(np.uint8)
    return ColourBoard(image=image, layout=colour_layout)


# --- the layout in the board's PNG ---------------------------------------------------------

def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def embed_layout(png: bytes, layout: ColourLayout) -> bytes:
    """``png`` (the board's PNG) with ``layout`` in a :data:`LAYOUT_CHUNK` chunk right after
    its header: a JSON header (style, colours, illumination, noise) and the region map as
    a PNG of its own."""
    if not png.startswith(_PNG_SIGNATURE) or png[12:16] != b"IHDR":
        raise ValueError("not a PNG (no signature and IHDR chunk)")
    ok, regions = cv2.imencode(".png", layout.regions, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:  # pragma: no cover - cv2 encodes any uint8 map
        raise ValueError("cannot encode the region map")
    header = json.dumps(layout.header(), separators=(",", ":"), sort_keys=True).encode()
    ihdr_end = 8 + 8 + 13 + 4
    return (png[:ihdr_end] + _chunk(LAYOUT_CHUNK, header + b"\0" + regions.tobytes())
            + png[ihdr_end:])


def layout_from_png(data: bytes) -> ColourLayout | None:
    """The layout a board's PNG carries (:func:`embed_layout`); ``None`` for any other
    image (no chunk, or not a PNG). A damaged chunk raises ``ValueError``."""
    if not data.startswith(_PNG_SIGNATURE):
        return None
    at = len(_PNG_SIGNATURE)
    while at + 8 <= len(data):
        length, kind = struct.unpack(">I", data[at:at + 4])[0], data[at + 4:at + 8]
        if kind in (b"IDAT", b"IEND"):
            return None
        body = data[at + 8:at + 8 + length]
        if kind == LAYOUT_CHUNK:
            crc = data[at + 8 + length:at + 12 + length]
            if len(body) != length or crc != struct.pack(">I", zlib.crc32(kind + body)
                                                         & 0xFFFFFFFF):
                raise ValueError("the board's layout chunk is damaged (length or CRC)")
            return _parse_layout(body)
        at += 12 + length
    return None


def _parse_layout(body: bytes) -> ColourLayout:
    header_bytes, _, regions_png = body.partition(b"\0")
    try:
        header = json.loads(header_bytes)
    except ValueError as err:
        raise ValueError(f"the board's layout header is not JSON ({err})") from err
    if not isinstance(header, dict) or header.get("format") != _LAYOUT_FORMAT:
        raise ValueError("the board's layout chunk is not a pcbforge layout")
    if header.get("version") != _LAYOUT_VERSION:
        raise ValueError(f"layout version {header.get('version')!r} is not supported "
                         f"(expected {_LAYOUT_VERSION})")
    regions = cv2.imdecode(np.frombuffer(regions_png, np.uint8), cv2.IMREAD_UNCHANGED)
    if regions is None or regions.ndim != 2 or list(regions.shape) != header.get("shape"):
        raise ValueError(f"the board's region map does not decode to its recorded shape "
                         f"{header.get('shape')}")
    params = {k: v for k, v in header.items() if k not in ("format", "version", "shape",
                                                              "regions")}
    return ColourLayout(np.ascontiguousarray(regions, np.uint8), params)
