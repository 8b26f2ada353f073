"""Brush styles: re-draw a defect's region the way DeepPCB's were hand-drawn.

Many real DeepPCB defects were not painted solid: they were drawn with a small
*stamped cross brush* (a "+", 3 x 3 or 5 x 5 with its corners cut) dabbed every few
pixels along thin hand-drawn strokes, several strokes side by side to fill an area. That
leaves a lattice of 1-6 px holes inside the defect and "+"-shaped teeth along its edge;
some copper and pin-holes are hollow loops drawn with that brush, some spurs feathery
fringes. This module re-draws a solid region (0/1 mask) in such a style.

Randomness lives only in :func:`sample_style` (and :func:`image_probabilities`), which
draw a JSON-ready style dict from the caller's ``numpy.random.Generator``;
:func:`restyle` is deterministic given the region and that dict (its wobble comes from
``style["seed"]``), so a label's params reproduce the defect byte for byte.

Styles (:data:`STYLES`, keyed by :class:`BrushStyle`):

- ``solid``: the region unchanged;
- ``stamped``: hatch strokes along the region's long axis (principal axis of its image
  moments), each following the region's centre line shifted sideways by a multiple of
  ``pitch``, wobbling, the brush stamped every ``spacing`` px with a 1-px trail between
  dabs; strokes overlap partly and leave a lattice of small holes;
- ``outline``: only the region's outer boundary, stamped: a hollow loop;
- ``fringe``: a stamped centre stroke with short stamped branches off it (spurs).

Guarantees of :func:`restyle` (tested):

- the output is a subset of the region dilated by a ``(2 r + 1)`` square, ``r =``
  :func:`reach` ``(style)`` (1 px for every style but ``fringe``, whose branches may
  reach ``style["reach"]`` px): no pixel lies farther than ``r`` px (Chebyshev) from the
  region, so a defect placed with ``r`` px more clearance stays clear;
- ``solid`` returns the region's bytes;
- ``stamped``: a region that spans between two far edges along its long axis (a short's
  bridge, an open's cut, straight or gently bent) keeps a stroke that runs end to end
  (the centre stroke is stamped densely and joined by its trail, and it follows the
  region's centre line), so the class's topology is kept; the caller still re-checks it;
- never empty for a non-empty region (a region under :data:`MIN_AREA` px, or one where a
  style leaves nothing, comes back solid);
- same region and style -> same bytes; translation-equivariant (a region moved by whole
  pixels inside a larger window gives the same pixels, moved), so the drawing does not
  depend on the window it is computed in as long as the region fits it.

Cost on a 30 x 30 ellipse (2 shared cores): solid 0.002 ms, stamped 0.21 ms, outline
0.09 ms, fringe 0.31 ms a call.

Default probabilities (:data:`DEFAULT_PROBABILITIES`) were measured on DeepPCB's five
calibration boards (group00041, group13000, group20085, group77000, group92000) with
:func:`pcbforge.bench.strokes.stroke_style` (how they were fitted is written beside
them). Because the share varies a lot from board to board (one scan's defects were
mostly stamped, another's mostly solid), :func:`image_probabilities` draws one "drawer"
per image: the class probabilities are moved together on the logit scale by one normal
draw per image (:data:`IMAGE_SPREAD`, fitted on the over-dispersion of stamped counts
per image), so some images come out mostly stamped and others mostly solid while the
mean share stays the measured one; and a few images (:data:`HEAVY_SHARE`) get a drawer
who stamps every class.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from enum import Enum
from functools import lru_cache

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

Style = dict[str, object]


class BrushStyle(str, Enum):
    """The registered brush styles."""

    SOLID = "solid"
    STAMPED = "stamped"
    OUTLINE = "outline"
    FRINGE = "fringe"


#: Smallest region (px) that is re-drawn; smaller ones stay solid.
MIN_AREA = 12

#: Per class, the mean probability of each non-solid style (the rest is ``solid``). Fitted
#: on the five calibration boards: the real share of each class classified ``stamped`` /
#: ``outline`` by :func:`pcbforge.bench.strokes.stroke_style` (open 0.196, short 0.008,
#: mousebite 0.105, spur 0.004, copper 0.016 + 0.001, pin-hole 0.079 + 0.003), less what
#: that classifier finds in solid synthetic defects, divided by the share it finds in
#: this module's ``stamped`` output on defects sampled by :mod:`pcbforge.synth.defects`
#: on those boards' templates, weighted to the areas of real stamped defects (open 0.48,
#: short 0.36, mousebite ~0.25, spur ~0.25, copper 0.57, pin-hole 0.41). That assumes a
#: stamped defect is drawn as large as real ones are (:data:`STAMPED_AREA_RATIO`); at
#: today's solid sizes the same shares would need about twice these probabilities.
#: ``fringe`` is not measured (no feature tells it) and off by default.
DEFAULT_PROBABILITIES: dict[str, dict[str, float]] = {
    "open": {"stamped": 0.4},
    "short": {"stamped": 0.02},
    "mousebite": {"stamped": 0.4},
    "spur": {"stamped": 0.02},
    "copper": {"outline": 0.02},
    "pin-hole": {"stamped": 0.17, "outline": 0.02},
}
#: Median area of real defects classified ``stamped`` over that of ``solid`` ones, per
#: class, on the five calibration boards: a stamped defect covers more ground (sizes of a
#: stamped defect's region should scale by the square root).
STAMPED_AREA_RATIO: dict[str, float] = {
    "open": 2.5, "short": 1.4, "mousebite": 1.7, "spur": 1.1, "copper": 1.5, "pin-hole": 1.7,
}
#: Share of images whose drawer stamps every class (:func:`image_probabilities`), and the
#: least non-solid share of each class then. Not fitted on the five calibration boards
#: (none of them stamps shorts, spurs or copper): it keeps such drawers possible, as one
#: train/val board shows (20-30% stamped in every class).
HEAVY_SHARE = 0.08
HEAVY_FLOOR = 0.25
#: Share of stamped styles drawn with the 5 x 5 cut-corner dab (else a 3 x 3 cross).
BIG_SHARE = 0.75
#: Std of the per-image logit shift of :func:`image_probabilities`, fitted on the same
#: boards: the variance over images of (stamped defects - expected from the class shares)
#: was 0.565 against 0.44 without a per-image shift; 0.8 reproduces it in simulation.
IMAGE_SPREAD = 0.8


#: ``SynthConfig.brush`` settings that leave every defect solid.
NO_BRUSH: dict[str, object] = {"probabilities": {}, "heavy_share": 0.0}


class BrushConfig(BaseModel):
    """How defects are brushed (what a ``SynthConfig.brush`` option would hold): per class
    the mean probability of each non-solid style (``{}``: every defect solid, brushing
    off), and the per-image drawer of :func:`image_probabilities`."""

    model_config = ConfigDict(extra="forbid")

    probabilities: dict[str, dict[str, float]] = Field(
        default_factory=lambda: {k: dict(v) for k, v in DEFAULT_PROBABILITIES.items()})
    spread: float = Field(IMAGE_SPREAD, ge=0, le=5)
    heavy_share: float = Field(HEAVY_SHARE, ge=0, le=1)
    heavy_floor: float = Field(HEAVY_FLOOR, ge=0, le=1)

    @field_validator("probabilities")
    @classmethod
    def _styles(cls, value: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        valid = [s.value for s in BrushStyle if s is not BrushStyle.SOLID]
        for name, styles in value.items():
            unknown = sorted(set(styles) - set(valid))
            if unknown:
                raise ValueError(f"class {name!r}: unknown brush style(s) {unknown}; "
                                 f"expected some of {valid}")
            if any(p < 0 for p in styles.values()) or sum(styles.values()) > 1:
                raise ValueError(f"class {name!r}: style probabilities must be >= 0 and sum "
                                 f"to at most 1, got {styles}")
        return value

    @property
    def enabled(self) -> bool:
        """Whether any defect may be brushed at all."""
        return any(p > 0 for styles in self.probabilities.values()
                   for p in styles.values()) or self.heavy_share > 0


# --------------------------------------------------------------------------- sampling


_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(24)
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()


def _sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, np.float64)))


@lru_cache(maxsize=256)
def _base_logit(mean: float, spread: float) -> float:
    """The logit ``b`` with ``E[sigmoid(b + spread Z)] = mean`` (Z standard normal;
    Gauss-Hermite quadrature, bisection)."""
    lo, hi = -30.0, 30.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if float(_WEIGHTS @ _sigmoid(mid + spread * _NODES)) < mean:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def image_probabilities(rng: np.random.Generator,
                        probabilities: Mapping[str, Mapping[str, float]] | None = None,
                        spread: float = IMAGE_SPREAD, heavy_share: float = HEAVY_SHARE,
                        heavy_floor: float = HEAVY_FLOOR) -> dict[str, dict[str, float]]:
    """One image's style probabilities (its "drawer"). Every class's non-solid share is
    moved together on the logit scale by one draw ``spread * Z`` (``Z`` standard normal),
    each style keeping its part of the non-solid share; the base logits are set so that
    over images the mean of each class's moved share equals its share in
    ``probabilities``. With probability ``heavy_share`` (a second draw) the image's drawer
    is one who stamps everything: every class's non-solid share is then at least
    ``heavy_floor`` (split as the class's styles are, ``stamped`` for a class with none),
    so the mean share is ``(1 - heavy_share) p + heavy_share max(p', heavy_floor)``.
    Always two numbers from ``rng``. ``spread == 0`` and ``heavy_share == 0`` return
    ``probabilities`` as they are."""
    probabilities = DEFAULT_PROBABILITIES if probabilities is None else probabilities
    z = float(rng.standard_normal())
    heavy = float(rng.random()) < heavy_share
    out: dict[str, dict[str, float]] = {}
    for name, styles in probabilities.items():
        total = float(sum(styles.values()))
        moved = total
        if 0 < total < 1 and spread > 0:
            moved = float(_sigmoid(_base_logit(total, spread) + spread * z))
        if heavy and moved < heavy_floor:
            parts = dict(styles) if total > 0 else {BrushStyle.STAMPED.value: 1.0}
            norm = float(sum(parts.values()))
            out[name] = {k: round(float(v) / norm * heavy_floor, 6) for k, v in parts.items()}
        elif moved == total:
            out[name] = {k: float(v) for k, v in styles.items()}
        else:
            out[name] = {k: round(float(v) / total * moved, 6) for k, v in styles.items()}
    return out


def sample_style(rng: np.random.Generator, class_name: str, scale: float = 1.0,
                 probabilities: Mapping[str, Mapping[str, float]] | None = None) -> Style:
    """Draw a brush style for one defect of ``class_name``: which style (``solid`` with
    the probability left over by ``probabilities[class_name]``, default
    :data:`DEFAULT_PROBABILITIES`), and for the others the brush (arm, thickness),
    ``spacing`` between dabs, hatch ``pitch``, sideways ``wobble`` (px), ``jitter`` of
    the strokes' angle (radians), ``trail`` and a noise ``seed``. Lengths at 48 px/mm,
    times ``scale``. JSON-ready. Always draws the same count of numbers from ``rng``."""
    probabilities = DEFAULT_PROBABILITIES if probabilities is None else probabilities
    shares = dict(probabilities.get(class_name, {}))
    unknown = set(shares) - {s.value for s in BrushStyle}
    if unknown:
        raise ValueError(f"unknown brush style(s) {sorted(unknown)}; expected one of "
                         f"{[s.value for s in BrushStyle]}")
    u = rng.random(9)
    name = BrushStyle.SOLID.value
    acc = 0.0
    for key, p in shares.items():
        acc += float(p)
        if u[0] < acc:
            name = key
            break
    if name == BrushStyle.SOLID.value:
        return {"name": name}
    # A 5 x 5 cut-corner dab, else a 3 x 3 cross (fringes: always the cross).
    big = bool(u[1] < BIG_SHARE) and name != BrushStyle.FRINGE.value
    arm = max(1, int(round((2 if big else 1) * scale)))
    return {
        "name": name,
        "arm": arm,
        "thick": 2 * arm - 1 if big else 1,
        "spacing": round(float((3.0 + 1.5 * u[2]) if big else (1.2 + 1.0 * u[2])) * scale, 3),
        "pitch": round(float((4.2 + 1.2 * u[3]) if big else (1.8 + 0.8 * u[3])) * scale, 3),
        "wobble": round(float((0.3 + 0.5 * u[4]) if big else (0.3 + 0.9 * u[4])) * scale, 3),
        "jitter": round(float(0.15 * (u[5] - 0.5)), 4),
        "trail": bool(u[6] < 0.7),
        "reach": max(1, int(round((2 + 3 * u[7]) * scale))) if name == "fringe" else 1,
        "seed": int(u[8] * 2**31),
    }


# --------------------------------------------------------------------------- drawing


def reach(style: Mapping[str, object]) -> int:
    """How far (px, Chebyshev) :func:`restyle` may draw outside the region for ``style``:
    0 for ``solid``, ``style["reach"]`` (default 1) otherwise."""
    if style.get("name", BrushStyle.SOLID.value) == BrushStyle.SOLID.value:
        return 0
    return max(1, int(style.get("reach", 1)))  # type: ignore[call-overload]


def plus_kernel(arm: int, thick: int) -> np.ndarray:
    """The stamped brush: a "+" of arms ``arm`` px long around the centre and ``thick``
    px wide (odd, at most ``2 arm + 1``), as a ``(2 arm + 1)`` square 0/1 uint8."""
    size = 2 * arm + 1
    thick = max(1, min(size, thick | 1))
    k = np.zeros((size, size), np.uint8)
    lo = arm - thick // 2
    k[lo:lo + thick, :] = 1
    k[:, lo:lo + thick] = 1
    return k


def _axes(ys: np.ndarray, xs: np.ndarray, jitter: float
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centroid, long-axis unit vector and its normal (x, y) of the pixels."""
    c = np.array([xs.mean(), ys.mean()])
    dx, dy = xs - c[0], ys - c[1]
    mu20, mu02, mu11 = float((dx * dx).mean()), float((dy * dy).mean()), float((dx * dy).mean())
    theta = 0.5 * math.atan2(2 * mu11, mu20 - mu02) + jitter
    u = np.array([math.cos(theta), math.sin(theta)])
    return c, u, np.array([-u[1], u[0]])


def _wobble(rng: np.random.Generator, s: np.ndarray, amp: float) -> np.ndarray:
    """A smooth sideways wobble along ``s`` (1-D, or one row per stroke): two sines of
    random phase and wavelength per row, ``amp`` px at most."""
    rows = s.shape[0] if s.ndim == 2 else 1
    period = rng.uniform(6.0, 18.0, (rows, 2, 1))
    phase = rng.uniform(0, 2 * math.pi, (rows, 2, 1))
    if amp <= 0:
        return np.zeros_like(s)
    w = np.sin(2 * math.pi * np.atleast_2d(s)[:, None, :] / period + phase).sum(axis=1)
    return (w * (amp / 2.0)).reshape(s.shape)


def _stamp(canvas: np.ndarray, points: np.ndarray, trail: np.ndarray | None = None) -> None:
    """Mark dab centres (rounded) on ``canvas`` (the brush is put on them later); with a
    ``trail`` canvas, a 1-px line through them there (left as it is)."""
    if len(points) == 0:
        return
    p = np.round(points).astype(np.int32)
    if trail is not None and len(p) > 1:
        cv2.polylines(trail, [p.reshape(-1, 1, 2)], False, 1, 1, cv2.LINE_4)
    h, w = canvas.shape
    ok = (p[:, 0] >= 0) & (p[:, 0] < w) & (p[:, 1] >= 0) & (p[:, 1] < h)
    canvas[p[ok, 1], p[ok, 0]] = 1


def _centre_line(ys: np.ndarray, xs: np.ndarray, c: np.ndarray, u: np.ndarray, n: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per 1-px bin of the long-axis coordinate ``s``: ``s``, the mean and the extent
    (low, high) of the normal coordinate ``t`` of the region's pixels there."""
    s = (xs - c[0]) * u[0] + (ys - c[1]) * u[1]
    t = (xs - c[0]) * n[0] + (ys - c[1]) * n[1]
    b = np.round(s - s.min()).astype(np.int64)
    m = int(b.max()) + 1
    count = np.bincount(b, minlength=m).astype(np.float64)
    mean = np.bincount(b, weights=t, minlength=m)
    have = count > 0
    lo = np.full(m, np.inf)
    hi = np.full(m, -np.inf)
    np.minimum.at(lo, b, t)
    np.maximum.at(hi, b, t)
    bins = np.arange(m, dtype=np.float64)[have] + s.min()
    return bins, mean[have] / count[have], lo[have], hi[have]


def _finish(region: np.ndarray, centres: np.ndarray, trail: np.ndarray,
            style: Mapping[str, object]) -> np.ndarray:
    """Dilate dab centres by the brush, add the trail, clip to the region grown by
    :func:`reach`."""
    arm, thick = int(style.get("arm", 1)), int(style.get("thick", 1))  # type: ignore[call-overload]
    out = cv2.dilate(centres, plus_kernel(arm, thick), borderType=cv2.BORDER_CONSTANT,
                     borderValue=0) | trail
    r = reach(style)
    allowed = cv2.dilate(region, np.ones((2 * r + 1, 2 * r + 1), np.uint8),
                         borderType=cv2.BORDER_CONSTANT, borderValue=0)
    out &= allowed
    return out


def _params(style: Mapping[str, object]) -> tuple[float, float, float, bool]:
    return (max(1.0, float(style.get("spacing", 2.0))),  # type: ignore[arg-type]
            max(1.0, float(style.get("pitch", 2.5))),  # type: ignore[arg-type]
            float(style.get("wobble", 0.0)),  # type: ignore[arg-type]
            bool(style.get("trail", True)))


def _frame(region: np.ndarray, style: Mapping[str, object]):
    """What the hatching styles start from: the style's noise generator, the region's
    (jittered) axes and its centre line (see :func:`_axes`, :func:`_centre_line`)."""
    ys, xs = np.nonzero(region)
    rng = np.random.default_rng(int(style["seed"]))  # type: ignore[call-overload]
    jitter = float(style.get("jitter", 0.0))  # type: ignore[arg-type]
    axes = _axes(ys.astype(np.float64), xs.astype(np.float64), jitter)
    return rng, axes, _centre_line(ys, xs, *axes)


def _stamped(region: np.ndarray, style: Mapping[str, object]) -> np.ndarray:
    rng, (c, u, n), (s, mid, lo, hi) = _frame(region, style)
    spacing, pitch, amp, trail_on = _params(style)
    h, w = region.shape
    dabs = np.zeros_like(region)
    trail = np.zeros_like(region)
    # The centre stroke: traced every pixel along the region's centre line, within its
    # extent across the axis, trailed: it runs end to end. Dabs every `spacing` px on it.
    ss = np.arange(s[0], s[-1] + 1e-9, 1.0)
    centre = np.interp(ss, s, mid)
    tt = np.clip(centre + _wobble(rng, ss[None, :], min(amp, 1.0) / 2)[0],
                 np.interp(ss, s, lo), np.interp(ss, s, hi))
    pts = c + ss[:, None] * u + tt[:, None] * n
    cv2.polylines(trail, [np.round(pts).astype(np.int32).reshape(-1, 1, 2)], False, 1, 1,
                  cv2.LINE_4)
    _stamp(dabs, pts[::max(1, int(round(spacing)))])
    # Hatch strokes on either side, `pitch` apart, each with its own phase and wobble.
    count = math.floor((float(np.max(hi - lo)) / 2.0 + pitch) / pitch)
    offsets = np.r_[np.arange(-count, 0), np.arange(1, count + 1)] * pitch
    if len(offsets):
        offsets = offsets + float(rng.uniform(-0.5, 0.5))
        grid = np.arange(s[0] - spacing, s[-1] + spacing + 1e-9, spacing)
        sk = grid[None, :] + rng.uniform(0, spacing, (len(offsets), 1))
        tk = np.interp(sk, s, mid) + offsets[:, None] + _wobble(rng, sk, amp)
        pk = c + sk[..., None] * u + tk[..., None] * n
        hatch = np.zeros_like(region)
        if trail_on:
            cv2.polylines(hatch, list(np.round(pk).astype(np.int32)[:, :, None, :]), False, 1,
                          1, cv2.LINE_4)
        q = np.round(pk.reshape(-1, 2)).astype(np.int64)
        ok = (q[:, 0] >= 0) & (q[:, 0] < w) & (q[:, 1] >= 0) & (q[:, 1] < h)
        q = q[ok]
        q = q[region[q[:, 1], q[:, 0]] > 0]
        dabs[q[:, 1], q[:, 0]] = 1
        trail |= hatch & region
    return _finish(region, dabs, trail, style)


def _outline(region: np.ndarray, style: Mapping[str, object]) -> np.ndarray:
    rng = np.random.default_rng(int(style["seed"]))  # type: ignore[call-overload]
    spacing, _, amp, trail_on = _params(style)
    arm = int(style.get("arm", 1))  # type: ignore[call-overload]
    # The loop's dabs sit on the outline (a 3 x 3 cross reaches 1 px past it, as
    # :func:`reach` allows) or one px inside it (a 5 x 5 dab).
    inner = cv2.erode(region, np.ones((2 * arm - 1, 2 * arm - 1), np.uint8),
                      borderType=cv2.BORDER_CONSTANT, borderValue=0)
    base = inner if inner.sum() >= MIN_AREA // 2 else region
    contours, _ = cv2.findContours(base, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    dabs = np.zeros_like(region)
    trail = np.zeros_like(region)
    for contour in contours:
        pts = contour[:, 0, :].astype(np.float64)
        if len(pts) < 2:
            _stamp(dabs, pts)
            continue
        closed = np.vstack([pts, pts[:1]])
        steps = np.r_[0.0, np.cumsum(np.hypot(*np.diff(closed, axis=0).T))]
        ss = np.arange(float(rng.uniform(0, spacing)), steps[-1], spacing)
        if len(ss) == 0:
            ss = np.array([0.0])
        p = np.stack([np.interp(ss, steps, closed[:, 0]), np.interp(ss, steps, closed[:, 1])],
                     axis=1)
        # Wobble the dabs diagonally by under a pixel, and close the loop.
        p = p + _wobble(rng, ss, min(amp, 1.0))[:, None] * np.array([[0.7, 0.7]])
        _stamp(dabs, np.vstack([p, p[:1]]), trail if trail_on else None)
    return _finish(region, dabs, trail, style)


def _fringe(region: np.ndarray, style: Mapping[str, object]) -> np.ndarray:
    rng, (c, u, n), (s, mid, lo, hi) = _frame(region, style)
    spacing, _, _, trail_on = _params(style)
    length = float(reach(style)) + float(np.max(hi - lo)) / 2.0
    dabs = np.zeros_like(region)
    trail = np.zeros_like(region)
    ss = np.arange(s[0], s[-1] + 1e-9, 1.0)
    spine = c[None, :] + ss[:, None] * u[None, :] + np.interp(ss, s, mid)[:, None] * n[None, :]
    _stamp(dabs, spine[::max(1, int(round(spacing)))], trail)
    every = max(2, int(round(2 * spacing)))
    # Branches every two dabs, alternating sides, leaning along the axis.
    for j, i in enumerate(range(0, len(spine), every)):
        side = 1.0 if j % 2 == 0 else -1.0
        angle = float(rng.uniform(0.5, 1.2))
        lean = 1.0 if rng.random() < 0.5 else -1.0
        d = side * math.sin(angle) * n + lean * math.cos(angle) * u
        steps = np.arange(1.0, length * float(rng.uniform(0.6, 1.0)) + 1e-9, spacing)
        branch = np.vstack([spine[i], spine[i][None, :] + steps[:, None] * d[None, :]])
        _stamp(dabs, branch, trail if trail_on else None)
    return _finish(region, dabs, trail, style)


def _solid(region: np.ndarray, style: Mapping[str, object]) -> np.ndarray:
    return region.copy()


#: Style name -> drawing function ``(region, style) -> mask``.
STYLES: dict[BrushStyle, Callable[[np.ndarray, Mapping[str, object]], np.ndarray]] = {
    BrushStyle.SOLID: _solid,
    BrushStyle.STAMPED: _stamped,
    BrushStyle.OUTLINE: _outline,
    BrushStyle.FRINGE: _fringe,
}


def restyle(region: np.ndarray, style: Mapping[str, object]) -> np.ndarray:
    """``region`` (2-D, uint8 0/1) re-drawn in ``style`` (from :func:`sample_style`):
    uint8 0/1 of the same shape. See the module docstring for the guarantees. Pure and
    deterministic. Raises ``ValueError`` on an unknown style or a mask that is not 2-D."""
    mask = (np.asarray(region) > 0).astype(np.uint8)
    if mask.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {mask.shape}")
    name = str(style.get("name", BrushStyle.SOLID.value))
    try:
        key = BrushStyle(name)
    except ValueError as err:
        raise ValueError(f"unknown brush style {name!r}; expected one of "
                         f"{[s.value for s in BrushStyle]}") from err
    if key is BrushStyle.SOLID or int(mask.sum()) < MIN_AREA:
        return mask
    out = STYLES[key](mask, style)
    return out if out.any() else mask
