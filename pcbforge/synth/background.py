"""Background nuisance: thick differences between a tested image and its template that are
not defects, recorded per image.

A real second scan differs from its template by more than thin edge bands: a pad, a hole
or a stretch of conductor is displaced locally by a few whole pixels (line-scan
misregistration), a copper edge is eaten or grown a few px along a short run, a speck
sticks to an edge. These differences survive a 3x3 opening, so a detector that filters
thin noise still sees them, and must learn that they are not defects. On DeepPCB
trainval (five calibration boards) 62 % of pairs hold at least one such region outside
every labelled box, 6.2 per pair on average (median 1), 3-4 px thick, ~170 px each.

Two steps, as everywhere in pcbforge: :func:`sample_background` draws every random number
(how many regions, their kind, place, size, seeds) into a JSON-serialisable dict and
checks each region on the board's copper; :func:`apply_background` is deterministic
given that dict. Kinds live in :data:`KINDS` (``misregistration``, ``speck``,
``broken_edge``).

What a region guarantees (checked when it is sampled, redrawn elsewhere or skipped when it
would not hold):

* every pixel it changes lies inside its recorded ``box`` (padded by ``BOX_PAD_PX``, so the
  acquisition warp and its 2-px bands stay inside too);
* it does not change the conductors' topology inside its window: no join, no cut, no new
  island or hole (:func:`pcbforge.synth.topology.keeps_topology`), also with its change
  grown or shrunk by 2 px, so the acquisition's thin bands cannot complete one;
* its box keeps ``AVOID_GAP_PX`` from every box in ``avoid_boxes`` (the defects' padded
  boxes) and from the other regions' boxes.
"""

from __future__ import annotations

import math
from enum import Enum
from typing import Any

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from pcbforge.synth.analysis import BoardAnalysis, paint_side, side_fill
from pcbforge.synth.topology import keeps_topology

__all__ = ["AVOID_GAP_PX", "BOX_PAD_PX", "KINDS", "BackgroundKind", "BackgroundParams",
           "apply_background", "background_changes", "render_background",
           "sample_and_render_background", "sample_background"]

#: A region's box is the extent of its changed pixels grown by this much: the acquisition
#: warp moves content < 2.5 px and its bands are <= 2 px thick.
BOX_PAD_PX = 5
#: Gap kept between a region's box and every defect box or other region box (px): the
#: warp moves both by < 2.5 px, and a defect's box is recomputed after it.
AVOID_GAP_PX = 8
_K5 = np.ones((5, 5), np.uint8)


class BackgroundKind(str, Enum):
    misregistration = "misregistration"
    speck = "speck"
    broken_edge = "broken_edge"


class BackgroundParams(BaseModel):
    """Distribution of the background nuisance of one tested image (lengths in px at
    48 px/mm; they scale with the board's px/mm).

    Defaults are measured on the five DeepPCB calibration boards with
    ``benchmarks/nuisance_bench.py`` (regions of the template/tested difference outside
    every labelled box that survive a 3x3 opening): 38 % of pairs have none, 6.2 regions
    per pair on average with a long tail (p90 18); regions 3-4 px thick, median ~170 px
    before the opening and ~60 px after, mostly crescents along pad and conductor edges (a
    feature displaced). The count and size parameters are set so that what synthesis
    makes measures the same way (a sampled region may be skipped, or leave one or two
    crescents, or nothing thick when its shift is 1-2 px).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    #: Share of images with no background region.
    zero_share: float = Field(0.3, ge=0, le=1)
    #: Regions of an image that has some: ``round(lognormal(log(median), sigma))``, >= 1.
    count_median: float = Field(5.5, gt=0, le=100)
    count_sigma: float = Field(1.2, ge=0, le=3)
    count_max: int = Field(40, ge=1, le=200)
    #: Relative weight of each kind.
    kind_weights: dict[BackgroundKind, float] = Field(default_factory=lambda: {
        BackgroundKind.misregistration: 0.6, BackgroundKind.broken_edge: 0.3,
        BackgroundKind.speck: 0.1})
    #: Whole-pixel displacement of a misregistered feature, drawn from these values with
    #: ``shift_weights`` (real crescents are 3-4 px thick; 1-2 px ones are thin).
    shift_px: tuple[int, ...] = (1, 2, 3, 4)
    shift_weights: tuple[float, ...] = (0.05, 0.1, 0.5, 0.35)
    #: Radius of the displaced core (px) and of the smooth fall-off around it (x shift).
    misregistration_radius_px: tuple[float, float] = (10.0, 170.0)
    falloff_per_shift: float = Field(5.0, ge=2, le=10)
    #: Broken edges: depth (px) and length of the run (px).
    edge_depth_px: tuple[int, int] = (2, 4)
    edge_length_px: tuple[float, float] = (5.0, 40.0)
    #: Specks: radius of the blob (px), centred this far into the other side.
    speck_radius_px: tuple[float, float] = (2.0, 3.5)
    #: Spots tried for one region before it is skipped.
    tries: int = Field(6, ge=1, le=50)

    @model_validator(mode="after")
    def _check(self) -> BackgroundParams:
        if len(self.shift_px) != len(self.shift_weights) or not self.shift_px:
            raise ValueError("shift_px and shift_weights need the same non-zero length")
        if any(not 1 <= s <= 8 for s in self.shift_px):
            raise ValueError(f"shift_px values must be 1..8, got {list(self.shift_px)}")
        if any(w < 0 for w in self.shift_weights) or sum(self.shift_weights) <= 0:
            raise ValueError("shift_weights must be >= 0 with a positive sum")
        weights = self.kind_weights
        if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ValueError(f"kind_weights must be >= 0 with a positive sum, got {weights}")
        for name in ("misregistration_radius_px", "edge_length_px", "speck_radius_px",
                     "edge_depth_px"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"{name} must be 0 < min <= max, got {lo}, {hi}")
        return self


# --- regions: one deterministic change per kind ----------------------------------------------

def _window(cx: int, cy: int, reach: int, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    h, w = shape
    return max(cx - reach, 0), max(cy - reach, 0), min(cx + reach + 1, w), min(cy + reach + 1, h)


def _misregistration(a: BoardAnalysis, region: dict) -> tuple[tuple, tuple | None,
                                                             np.ndarray | None]:
    """A local smooth displacement bump: whole-pixel shift inside the core, falling off
    smoothly (smoothstep) around it; nearest-neighbour (pixels stay whole). Only pixels
    within the shift of an edge can change side, so only those are remapped: the move is
    ``(to, from)``, flat indices in the window of the pixels that take another's value."""
    cx, cy, dx, dy = region["cx"], region["cy"], region["dx"], region["dy"]
    core, falloff = region["radius"], region["falloff"]
    reach = int(math.ceil(core + falloff)) + max(abs(dx), abs(dy)) + 1
    x0, y0, x1, y1 = _window(cx, cy, reach, a.shape)
    w, h = x1 - x0, y1 - y0
    limit = math.hypot(dx, dy) + 0.5
    # Each distance is 0 on the other side: their sum is the distance to the edge.
    near = (a.dist_copper[y0:y1, x0:x1] + a.dist_substrate[y0:y1, x0:x1]) <= limit
    ys, xs = np.nonzero(near)
    r = np.hypot(xs + (x0 - cx), ys + (y0 - cy)).astype(np.float32)
    t = np.clip((r - core) / falloff, 0.0, 1.0)
    weight = 1.0 - t * t * (3.0 - 2.0 * t)  # 1 in the core, 0 beyond the fall-off
    sx = np.clip(np.floor(xs - dx * weight + 0.5), 0, w - 1).astype(np.int64)
    sy = np.clip(np.floor(ys - dy * weight + 0.5), 0, h - 1).astype(np.int64)
    to, source = ys.astype(np.int64) * w + xs, sy * w + sx
    moved = to != source
    return (x0, y0, x1, y1), (to[moved], source[moved]), None


def _broken_edge(a: BoardAnalysis, region: dict) -> tuple[tuple, np.ndarray | None,
                                                          np.ndarray | None]:
    """A run of an edge eaten (copper side) or grown (substrate side) ``depth`` px deep,
    tapering to nothing at both ends of a ``length`` px run, with a ragged depth."""
    cx, cy, half = region["cx"], region["cy"], region["length"] / 2.0
    reach = int(math.ceil(half)) + region["depth"] + 3
    x0, y0, x1, y1 = _window(cx, cy, reach, a.shape)
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    along = np.clip(1.0 - (np.hypot(xs - cx, ys - cy) / max(half, 1.0)) ** 2, 0.0, 1.0)
    noise = np.random.default_rng(region["seed"]).uniform(-0.6, 0.6, (4, 4)).astype(np.float32)
    rough = cv2.resize(noise, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
    depth = region["depth"] * np.sqrt(along) + rough * (along > 0)
    window = a.copper[y0:y1, x0:x1] > 0
    side = window if region["eat"] else ~window
    dist = (a.dist_copper if region["eat"] else a.dist_substrate)[y0:y1, x0:x1]
    return (x0, y0, x1, y1), None, side & (dist <= depth) & (along > 0)


def _speck(a: BoardAnalysis, region: dict) -> tuple[tuple, np.ndarray | None,
                                                    np.ndarray | None]:
    """A round speck of copper (``adds``) or substrate stuck to an edge."""
    cx, cy, radius = region["cx"], region["cy"], region["radius"]
    reach = int(math.ceil(radius)) + 2
    x0, y0, x1, y1 = _window(cx, cy, reach, a.shape)
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    blob = np.hypot(xs - cx, ys - cy) <= radius
    window = a.copper[y0:y1, x0:x1]
    target = 1 if region["adds"] else 0
    return (x0, y0, x1, y1), None, blob & (window != target)


_APPLY = {
    BackgroundKind.misregistration: _misregistration,
    BackgroundKind.broken_edge: _broken_edge,
    BackgroundKind.speck: _speck,
}
#: Every background kind and the deterministic change it makes.
KINDS = tuple(k.value for k in _APPLY)


def _change(a: BoardAnalysis, region: dict) -> tuple[tuple[int, int, int, int], np.ndarray,
                                                       tuple | None]:
    """``(window, new copper in it, move or None)`` of one region on the board's copper: a
    misregistration moves pixels (``move``: ``(to, from)`` flat indices in the window), the
    other kinds flip the side of some pixels."""
    box, move, flip = _APPLY[BackgroundKind(region["kind"])](a, region)
    x0, y0, x1, y1 = box
    window = a.copper[y0:y1, x0:x1]
    if move is not None:
        after = window.copy()
        to, source = move
        after.ravel()[to] = window.ravel()[source]
        return box, after, move
    return box, np.where(flip, 1 - window, window).astype(np.uint8), None


# --- sampling --------------------------------------------------------------------------------

def _topology_kept(before: np.ndarray, after: np.ndarray) -> bool:
    """No join, cut, new island or new hole, also with the change grown or shrunk 2 px."""
    if not keeps_topology(before, after):
        return False
    # Near the change, both grown (or both shrunk) by 2 px must keep as many conductors:
    # the acquisition's 2-px bands cannot then complete a join or a cut the change began.
    # Only added copper can complete a join and only removed copper a cut, so a change
    # that only adds (or only removes) needs one of the two checks.
    near = cv2.dilate((before != after).view(np.uint8), _K5)  # 0/1
    # Grown (shrunk) only near the change: the board as it is elsewhere. A dilation
    # contains its input and an erosion lies inside it, so one bitwise step does it.
    if (after > before).any():
        if _count(cv2.bitwise_or(before, cv2.bitwise_and(cv2.dilate(before, _K5), near))) \
                != _count(cv2.bitwise_or(after, cv2.bitwise_and(cv2.dilate(after, _K5), near))):
            return False
    if (after < before).any():
        far = 1 - near
        if _count(cv2.bitwise_and(before, cv2.bitwise_or(cv2.erode(before, _K5), far))) \
                != _count(cv2.bitwise_and(after, cv2.bitwise_or(cv2.erode(after, _K5), far))):
            return False
    return True


def _count(copper: np.ndarray) -> int:
    """8-connected copper components (background included)."""
    return cv2.connectedComponents(copper, connectivity=8)[0]


def _tight(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _apart(box: tuple[int, int, int, int], others: list, gap: int) -> bool:
    return all(box[2] + gap <= o[0] or o[2] + gap <= box[0] or box[3] + gap <= o[1]
               or o[3] + gap <= box[1] for o in others)


def _draw_region(kind: BackgroundKind, rng: np.random.Generator, params: BackgroundParams,
                 a: BoardAnalysis) -> dict | None:
    """One region's parameters at a random spot (``None``: the board has no such spot)."""
    s = a.scale
    width = a.shape[1]
    if kind is BackgroundKind.misregistration:
        if not len(a.edge_in):
            return None
        flat = int(a.edge_in[rng.integers(len(a.edge_in))])
        shift = int(rng.choice(params.shift_px, p=np.asarray(params.shift_weights)
                               / sum(params.shift_weights)))
        angle = float(rng.uniform(0, 2 * math.pi))
        dx, dy = round(shift * math.cos(angle)), round(shift * math.sin(angle))
        if dx == 0 and dy == 0:
            dx = shift
        return {"kind": kind.value, "cx": flat % width, "cy": flat // width, "dx": int(dx),
                "dy": int(dy), "radius": round(float(rng.uniform(
                    *params.misregistration_radius_px)) * s, 3),
                "falloff": round(params.falloff_per_shift * max(shift, 1) * s, 3)}
    eat = bool(rng.random() < 0.5)
    edge = a.edge_in if eat else a.edge_out
    if not len(edge):
        return None
    flat = int(edge[rng.integers(len(edge))])
    cx, cy = flat % width, flat // width
    if kind is BackgroundKind.broken_edge:
        lo, hi = params.edge_depth_px
        return {"kind": kind.value, "cx": cx, "cy": cy, "eat": eat,
                "depth": int(rng.integers(lo, hi + 1)),
                "length": round(float(rng.uniform(*params.edge_length_px)) * s, 3),
                "seed": int(rng.integers(2**31))}
    radius = float(rng.uniform(*params.speck_radius_px)) * s
    # Centre the blob ~radius-1 px into the side it grows over, so it stays attached.
    angle = float(rng.uniform(0, 2 * math.pi))
    offset = max(radius - 1.0, 1.0)
    return {"kind": kind.value, "cx": int(round(cx + offset * math.cos(angle))),
            "cy": int(round(cy + offset * math.sin(angle))), "adds": eat is False,
            "radius": round(radius, 3)}


def _room(a: BoardAnalysis, region: dict, avoid: list) -> float:
    """How far (Chebyshev px) a region's change may reach from its centre before its box
    would come within ``AVOID_GAP_PX`` of a box in ``avoid``."""
    cx, cy = region["cx"], region["cy"]
    reach = float(max(a.shape))
    for x1, y1, x2, y2 in avoid:
        away = max(x1 - cx, cx - x2 + 1, y1 - cy, cy - y2 + 1)
        reach = min(reach, away - AVOID_GAP_PX - BOX_PAD_PX - 1)
    if region["kind"] == BackgroundKind.misregistration.value:
        reach -= max(abs(region["dx"]), abs(region["dy"])) + 1
    elif region["kind"] == BackgroundKind.broken_edge.value:
        reach = reach if reach >= region["length"] / 2.0 + region["depth"] else 0.0
    else:
        reach = reach if reach >= region["radius"] + 1 else 0.0
    return reach


def _check_region(a: BoardAnalysis, region: dict, avoid: list) -> tuple[dict, tuple] | None:
    """``region`` with its ``box`` and ``area`` when it changes something, keeps the
    topology and keeps apart from ``avoid``, with its change (see :func:`_change`); else
    ``None``. A misregistration's core is
    first narrowed to what fits between the boxes to avoid (cheap, and most spots of a
    busy image need it)."""
    room = _room(a, region, avoid)
    if room <= 0:
        return None
    if region["kind"] == BackgroundKind.misregistration.value:
        core = min(region["radius"], room - region["falloff"])
        if core < 4:
            return None
        region = {**region, "radius": round(core, 3)}
    change = _change(a, region)
    (x0, y0, x1, y1), after, _ = change
    before = a.copper[y0:y1, x0:x1]
    changed = before != after
    tight = _tight(changed)
    if tight is None:
        return None
    h, w = a.shape
    box = (max(x0 + tight[0] - BOX_PAD_PX, 0), max(y0 + tight[1] - BOX_PAD_PX, 0),
           min(x0 + tight[2] + BOX_PAD_PX, w), min(y0 + tight[3] + BOX_PAD_PX, h))
    if not _apart(box, avoid, AVOID_GAP_PX):
        return None
    # Topology on the recorded box, the window a reader of the record crops: the change
    # plus BOX_PAD_PX of context all round (the board's edge aside).
    bx0, by0, bx1, by1 = box
    box_before = a.copper[by0:by1, bx0:bx1]
    box_after = box_before.copy()
    ix0, iy0 = max(x0, bx0), max(y0, by0)
    ix1, iy1 = min(x1, bx1), min(y1, by1)
    box_after[iy0 - by0:iy1 - by0, ix0 - bx0:ix1 - bx0] = after[iy0 - y0:iy1 - y0,
                                                                ix0 - x0:ix1 - x0]
    if not _topology_kept(box_before, box_after):
        return None
    return {**region, "box": [int(v) for v in box], "area": int(changed.sum())}, change


def sample_background(rng: np.random.Generator, params: BackgroundParams,
                      analysis: BoardAnalysis,
                      avoid_boxes: list[tuple[int, int, int, int]] | tuple = ()
                      ) -> dict[str, Any]:
    """Draw the background regions of one tested image on ``analysis``'s board.

    Every random number is drawn here, so the dict alone reproduces
    :func:`apply_background`. Returns ``{"enabled": False}`` when off, else
    ``{"enabled": True, "requested": n, "regions": [...]}``; each region holds its ``kind``,
    its parameters, ``box`` ([x1, y1, x2, y2], exclusive ends, on the drawing before the
    acquisition warp) and ``area`` (pixels changed). Each region is checked as the module
    says (tried ``params.tries`` times, then skipped), so ``len(regions) <= requested``.
    """
    return _sample(rng, params, analysis, avoid_boxes)[0]


def sample_and_render_background(rng: np.random.Generator, params: BackgroundParams,
                                 analysis: BoardAnalysis, avoid_boxes, image: np.ndarray
                                 ) -> tuple[dict[str, Any], np.ndarray, np.ndarray | None]:
    """:func:`sample_background` then :func:`render_background` on ``image``, each
    region's change worked out once: the same dict, image and instance mask."""
    sampled, changes = _sample(rng, params, analysis, avoid_boxes)
    return (sampled, *_paint(image, analysis, changes))


def _sample(rng: np.random.Generator, params: BackgroundParams, analysis: BoardAnalysis,
            avoid_boxes) -> tuple[dict[str, Any], list[tuple]]:
    if not params.enabled:
        return {"enabled": False}, []
    if rng.random() < params.zero_share:
        n = 0
    else:
        n = int(np.clip(round(rng.lognormal(math.log(params.count_median),
                                            params.count_sigma)), 1, params.count_max))
    kinds = [k for k, w in params.kind_weights.items() if w > 0]
    weights = np.asarray([params.kind_weights[k] for k in kinds], np.float64)
    avoid = [tuple(int(v) for v in b) for b in avoid_boxes]
    regions: list[dict] = []
    changes: list[tuple] = []
    for _ in range(n):
        kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
        for _ in range(params.tries):
            drawn = _draw_region(kind, rng, params, analysis)
            checked = None if drawn is None else _check_region(analysis, drawn, avoid)
            if checked is not None:
                regions.append(checked[0])
                changes.append(checked[1])
                avoid.append(tuple(checked[0]["box"]))
                break
    return {"enabled": True, "requested": n, "regions": regions}, changes


def background_changes(sampled: dict[str, Any], analysis: BoardAnalysis) -> np.ndarray:
    """uint8 instance mask: region ``k`` (from 1, at most 255) painted ``k`` where it
    changes the board's copper. Deterministic given ``sampled``."""
    ids = np.zeros(analysis.shape, np.uint8)
    for k, region in enumerate(sampled.get("regions", [])[:255], 1):
        (x0, y0, x1, y1), after, _ = _change(analysis, region)
        ids[y0:y1, x0:x1][after != analysis.copper[y0:y1, x0:x1]] = k
    return ids


def apply_background(image: np.ndarray, sampled: dict[str, Any], analysis: BoardAnalysis
                     ) -> np.ndarray:
    """``image`` (the board, possibly with defects drawn away from every region) with the
    sampled regions applied; deterministic, a new array.

    A misregistration moves the image's own pixels (grey and colour keep their texture); a
    speck or broken edge paints the pixels that change side in the board's copper or
    substrate colour (on grey and colour boards the other side's colour at that place,
    with its texture, blended over a pixel). Only pixels inside each region's ``box``
    change.
    """
    out = render_background(image, sampled, analysis)[0]
    return out.copy() if out is image else out


def render_background(image: np.ndarray, sampled: dict[str, Any], analysis: BoardAnalysis
                      ) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`apply_background` and :func:`background_changes` in one pass (each region's
    change is worked out once): the image, and the instance mask. With no region, the
    input image itself (not a copy) and ``None``."""
    regions = sampled.get("regions", []) if sampled.get("enabled") else []
    return _paint(image, analysis, [_change(analysis, region) for region in regions])


def _paint(image: np.ndarray, analysis: BoardAnalysis, changes: list[tuple]
           ) -> tuple[np.ndarray, np.ndarray | None]:
    """``image`` with each region's change (from :func:`_change`) applied, and the
    instance mask; the input and ``None`` when there is none."""
    if not changes:
        return image, None
    out = image.copy()
    ids = np.zeros(analysis.shape, np.uint8)
    copper_value = np.clip(np.round(analysis.copper_colour), 0, 255).astype(np.uint8)
    substrate_value = np.clip(np.round(analysis.substrate_colour), 0, 255).astype(np.uint8)
    for k, ((x0, y0, x1, y1), after, move) in enumerate(changes[:255], 1):
        patch = out[y0:y1, x0:x1]
        changed = after != analysis.copper[y0:y1, x0:x1]
        ids[y0:y1, x0:x1][changed] = k
        if move is not None:
            to, source = move
            moved = patch.copy()
            moved.reshape(-1, *patch.shape[2:])[to] = patch.reshape(-1, *patch.shape[2:])[source]
            patch[changed] = moved[changed]
            continue
        grow = changed & (after > 0)
        if analysis.binary:
            patch[grow] = copper_value if patch.ndim == 3 else copper_value[0]
            patch[changed & ~grow] = substrate_value if patch.ndim == 3 else substrate_value[0]
            continue
        # Grey and colour boards: the other side's colour at that place, with its texture
        # (seeded by the region's place: the sampled dict alone gives the same pixels).
        for adds, part in ((True, grow), (False, changed & ~grow)):
            if part.any():
                paint_side(out, part.view(np.uint8), (x0, y0),
                           lambda box, adds=adds: side_fill(analysis, adds, box),
                           seed=(x0 * 7919 + y0) * 2 + adds)
    return out, ids
