"""Defect samplers: sample where and how (random), then draw (deterministic).

Each class's spec in :data:`pcbforge.synth.registry.DEFECTS` names its sampler here. A
sampler reads the board's :class:`~pcbforge.synth.analysis.BoardAnalysis`,
draws every random number it needs from the caller's ``numpy.random.Generator`` and
returns a plain dict of parameters (JSON-ready, written with the label), or ``None`` when
it found no fitting spot. :func:`draw_strokes` turns parameters into pixels without any
randomness, so a label's ``params`` reproduce its defect exactly.

Defects are round-brush strokes (DeepPCB's were drawn that way): a polyline of
points, each with a brush radius, jittered so no two look alike. Sizes default
to those measured on DeepPCB (48 px/mm) and scale with the board's px/mm.

Outlines are then made ragged as a re-binarized scan's are (:func:`roughen`, its
parameters sampled per class from :data:`ROUGH` into ``params["rough"]``): the
outline moves by a noise field correlated along the edge, with coarse speckle and,
for some defects, dots inside; the first stroke's centre line always stays, so the
defect keeps its topology. Some classes also carry an edge band (the conductor's
edge beside the defect moved by a pixel or two: :data:`EDGE_BAND`,
:data:`OPEN_EDGE_BAND`). Shares and sizes were fitted with
``benchmarks/synth_realism.py``'s shape table (:mod:`pcbforge.bench.shapes`) on
DeepPCB's five train boards.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from pcbforge.synth.analysis import BoardAnalysis
from pcbforge.synth.brush import reach as brush_reach
from pcbforge.synth.brush import restyle

#: Spots a sampler tries before it gives up on a board.
SPOT_TRIES = 24
#: Sub-pixel bits for cv2 drawing (1/16 px).
_SHIFT = 4
_KERNEL2 = np.ones((2, 2), np.uint8)
_KERNEL5 = np.ones((5, 5), np.uint8)
#: Correlation length (px) of roughening's speckle: coarser than a pixel, so it survives
#: the blur and re-threshold of a scan (the acquisition nuisance) as it does on DeepPCB.
SPECK_GRAIN = 0.8

Params = dict[str, object]


def _lognormal(rng: np.random.Generator, median: float, sigma: float, lo: float,
               hi: float) -> float:
    return float(np.clip(median * math.exp(sigma * rng.standard_normal()), lo, hi))


def _unit(v: np.ndarray) -> np.ndarray | None:
    norm = float(np.hypot(v[0], v[1]))
    return None if norm < 1e-6 else v / norm


def _gradient(field: np.ndarray, y: int, x: int) -> np.ndarray | None:
    """Direction of increase of ``field`` at (y, x) as a unit (x, y) vector."""
    h, w = field.shape
    if not (1 <= y < h - 1 and 1 <= x < w - 1):
        return None
    gx = (field[y - 1:y + 2, x + 1].sum() - field[y - 1:y + 2, x - 1].sum())
    gy = (field[y + 1, x - 1:x + 2].sum() - field[y - 1, x - 1:x + 2].sum())
    return _unit(np.array([gx, gy], np.float64))


def _perp(u: np.ndarray) -> np.ndarray:
    return np.array([-u[1], u[0]])


def _rotate(u: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([c * u[0] - s * u[1], s * u[0] + c * u[1]])


def _snapped(u: np.ndarray, within: float = 0.2) -> np.ndarray:
    """``u`` turned onto the nearest multiple of 45 degrees when it lies within ``within``
    radians of one (a paint tool's line with the key held), else ``u`` as it is."""
    angle = math.atan2(float(u[1]), float(u[0]))
    nearest = round(angle / (math.pi / 4)) * (math.pi / 4)
    if abs(angle - nearest) > within:
        return u
    return np.array([math.cos(nearest), math.sin(nearest)])


#: Share of shorts, opens, slit mousebites, spur fingers and of the thin strands of
#: spurious copper and scratches of pin-holes drawn as ruled lines: one straight stroke of
#: even width, square to the conductor (or at 45 degrees) where it nearly is, with a
#: smoother outline, as a paint tool's line draws it. DeepPCB's real shorts and opens
#: that a discriminator finds most real are such; its synthetic ones most often bent or
#: wavy.
RULED_SHARE: dict[str, float] = {"short": 0.6, "open": 0.5, "mousebite": 0.5, "spur": 0.5,
                                 "copper": 0.5, "pin-hole": 0.5}
#: A ruled stroke's outline is roughened this much less than its class's (:data:`ROUGH`).
RULED_ROUGH = 0.35


def _ruled(params: Params) -> Params:
    """Mark ``params`` as a ruled stroke (see :data:`RULED_ROUGH`)."""
    params["ruled"] = True
    return params


def _stroke(points: list[np.ndarray], radii: list[float]) -> Params:
    return {
        "points": [[round(float(p[0]), 2), round(float(p[1]), 2)] for p in points],
        "radii": [round(float(r), 2) for r in radii],
    }


def _inside(a: BoardAnalysis, points: list[np.ndarray], margin: float) -> bool:
    h, w = a.shape
    return all(margin <= p[0] < w - margin and margin <= p[1] < h - margin for p in points)


def _pixels(a: BoardAnalysis, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pixel of each (x, y) point of ``points`` (shape (..., 2), e.g. the points of a
    ray ``origin + ts[:, None] * direction``): rows and columns rounded and clipped to the
    board, and whether each point rounds to a pixel on the board."""
    h, w = a.shape
    xs = np.round(points[..., 0]).astype(int)
    ys = np.round(points[..., 1]).astype(int)
    on = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
    return ys.clip(0, h - 1), xs.clip(0, w - 1), on


def _pick(rng: np.random.Generator, candidates: np.ndarray, a: BoardAnalysis
          ) -> tuple[int, int] | None:
    """A random (y, x) among ``candidates`` (flat pixel indices)."""
    if len(candidates) == 0:
        return None
    y, x = divmod(int(candidates[int(rng.integers(len(candidates)))]), a.shape[1])
    return y, x


def _edge_spot(rng: np.random.Generator, a: BoardAnalysis, candidates: np.ndarray,
               field: np.ndarray) -> tuple[int, int, np.ndarray | None]:
    """A random edge pixel (y, x) among ``candidates`` (non-empty, flat indices) and the unit
    (x, y) direction in which ``field`` grows there (None where it is flat)."""
    y, x = divmod(int(candidates[int(rng.integers(len(candidates)))]), a.shape[1])
    return y, x, _gradient(field, y, x)


def _random_where(rng: np.random.Generator, a: BoardAnalysis, field: np.ndarray,
                  least: float) -> tuple[int, int] | None:
    """A uniformly random pixel with ``field >= least`` (rejection sampling, no full scan)."""
    h, w = a.shape
    ys = rng.integers(0, h, 512)
    xs = rng.integers(0, w, 512)
    hits = np.flatnonzero(field[ys, xs] >= least)
    if len(hits) == 0:
        return None
    return int(ys[hits[0]]), int(xs[hits[0]])


# --------------------------------------------------------------------------- samplers


#: Ragged outlines per class (:func:`rough_params`): the largest displacement of the
#: outline (px std at 48 px/mm), the range of its correlation length along the edge (px)
#: the largest per-pixel speckle amplitude (px) and the power that skews the draw towards
#: smooth outlines. Fitted with ``benchmarks/synth_realism.py`` on DeepPCB's five train
#: boards: most real islands, pin-holes and spurs are about as convex as the pixel grid
#: allows (outline / hull perimeter p10 of 1.01-1.02), a few very ragged.
ROUGH: dict[str, tuple[float, tuple[float, float], float, float]] = {
    "open": (2.0, (1.2, 2.6), 0.6, 1.5),
    "short": (0.6, (1.2, 2.4), 0.3, 3.0),
    "mousebite": (1.9, (1.0, 2.2), 0.6, 2.0),
    "spur": (0.3, (1.2, 2.4), 0.08, 3.0),
    "copper": (0.9, (1.4, 2.8), 0.08, 4.0),
    "pin-hole": (0.9, (1.0, 2.2), 0.1, 4.0),
}


#: Share of defects (per class) drawn with an edge band: the conductor's edge next to the
#: defect moved by a pixel or two over a stretch on either side, as a second scan leaves
#: it. On DeepPCB the change in a real box often runs on from the defect along the edge.
EDGE_BAND: dict[str, float] = {"mousebite": 0.55}


def _edge_band(params: Params, rng: np.random.Generator, a: BoardAnalysis,
               adds_copper: bool) -> None:
    """Add to ``params`` a thin stroke along the edge at its ``host`` pixel (substrate side
    for a class that adds copper, copper side for one that removes it), 1-2 px deep and
    8-26 px long, through the host."""
    s = a.scale
    y, x = params["host"]  # type: ignore[misc]
    n = _gradient(a.dist_substrate if adds_copper else a.dist_copper, y, x)
    if n is None:
        return
    t = _perp(n)
    r = 2.0 * s
    depth = float(rng.uniform(0.5, 1.4)) * s
    edge = np.array([x, y], np.float64) - n * 0.5
    centre = edge + n * (depth - r)
    before, after = (float(rng.uniform(4.0, 13.0)) * s for _ in range(2))
    points = [centre - t * before, centre, centre + t * after]
    if not _inside(a, points, r + 2):
        return
    params["strokes"].append(_stroke(points, [r, r, r]))  # type: ignore[union-attr]


#: Largest outline displacement (px std) of a roughened defect, as a share of the
#: thinnest brush radius of its first stroke.
ROUGH_THIN = 1.0
#: Per class, the share of defects speckled inside and the largest share of their inside
#: pixels flipped (:func:`roughen`'s ``dots``; drawn uniform from 2% up).
ROUGH_DOTS: dict[str, tuple[float, float]] = {
    "open": (0.4, 0.12), "mousebite": (0.35, 0.15), "copper": (0.25, 0.1),
    "pin-hole": (0.35, 0.12),
}
#: Farthest (px at 48 px/mm) roughening may grow a defect past its brush.
ROUGH_GROW = 2.0


def _ragged(params: Params | None, rng: np.random.Generator, a: BoardAnalysis,
            name: str, adds_copper: bool = False) -> Params | None:
    """``params`` with the :data:`EDGE_BAND` and :data:`ROUGH` of class ``name`` sampled
    in (the roughening only where the sampler did not already draw it)."""
    if params is None:
        return None
    if rng.random() < EDGE_BAND.get(name, 0.0):
        _edge_band(params, rng, a, adds_copper)
    if "rough" not in params and not params.get("stamp"):
        _roughening(params, rng, a, name)
    return params


def _roughening(params: Params, rng: np.random.Generator, a: BoardAnalysis,
                name: str) -> None:
    """Sample the :data:`ROUGH` roughening of class ``name`` into ``params``."""
    amp, corr, speck, power = ROUGH[name]
    if params.get("ruled"):
        amp, speck = amp * RULED_ROUGH, speck * RULED_ROUGH
    rough = rough_params(rng, a.scale, amp, corr, speck, power)
    # A thin stroke stays whole: its outline moves by at most ROUGH_THIN of its radius.
    thinnest = min(params["strokes"][0]["radii"])  # type: ignore[index]
    rough["amp"] = round(min(float(rough["amp"]), ROUGH_THIN * thinnest), 3)
    rough["keep"] = round(0.5 * thinnest + 1.0, 3)
    rough["grow"] = round(ROUGH_GROW * a.scale, 3)
    share, most = ROUGH_DOTS.get(name, (0.0, 0.0))
    if share and rng.random() < share:
        rough["dots"] = round(float(rng.uniform(0.02, most)), 3)
    params["rough"] = rough


#: Share of spurs drawn as slivers leaning well over the edge; the rest are fingers about
#: square to it (about half and half among 48 of DeepPCB's train/val spurs looked at).
SPUR_SLIVER_SHARE = 0.5
#: Share of spurs drawn as a ragged fringe: a low growth along the edge with a few bumps
#: on it. About 14% of the spurs of DeepPCB's five train boards are so (several parts, or a
#: base along the edge ~20 px long against ~11 px for the others, reaching as far: ~10 px).
SPUR_RAGGED_SHARE = 0.12


def _ragged_spur(a: BoardAnalysis, rng: np.random.Generator, y: int, x: int,
                 n: np.ndarray) -> Params | None:
    """A fringe along the edge at (y, x) (outward normal ``n``): a low, uneven base stroke
    running along a straight stretch of edge, with 2-4 bumps growing out of it."""
    s = a.scale
    t = _perp(n)
    run = _lognormal(rng, 18.0 * s, 0.3, 10.0 * s, 32.0 * s)
    p = np.array([x, y], np.float64)
    ks = np.linspace(-0.5, 0.5, 5) * run
    along = [p + t * k for k in ks]
    if not _inside(a, along, 14.0 * s):
        return None
    # The edge must run straight under the whole base: every point hugs the copper.
    ys, xs, _ = _pixels(a, np.array(along))
    if (a.dist_substrate[ys, xs] > 2.0 * s).any():
        return None
    lift = float(rng.uniform(0.3, 1.2)) * s
    base = [q + n * (lift + float(rng.uniform(-0.6, 0.6)) * s) for q in along]
    strokes = [_stroke(base, [float(rng.uniform(1.6, 2.6)) * s for _ in base])]
    for k in np.sort(rng.uniform(-0.45, 0.45, int(rng.integers(2, 5)))) * run:
        root = p + t * k
        u = _rotate(n, float(rng.uniform(-0.5, 0.5)))
        r1 = float(rng.uniform(1.0, 2.0)) * s
        tip = root + u * _lognormal(rng, 6.5 * s, 0.35, 3.0 * s, 11.0 * s)
        # Clear substrate from the edge to 4 px past the tip: no neighbour within reach.
        probe = root + np.arange(2.0 * s, float(np.hypot(*(tip - root))) + r1 + 4.0 * s,
                                 1.0)[:, None] * u
        if not _inside(a, probe, 1):
            return None
        ys, xs, _ = _pixels(a, probe)
        if a.copper[ys, xs].any():
            return None
        strokes.append(_stroke([root - n * s, tip], [float(rng.uniform(1.5, 2.5)) * s, r1]))
    return {"strokes": strokes, "host": [int(y), int(x)]}


def _spur_shape(a: BoardAnalysis, rng: np.random.Generator) -> Params | None:
    """The strokes of :func:`sample_spur`."""
    s = a.scale
    if not len(a.edge_out):
        return None
    for _ in range(SPOT_TRIES):
        y, x, n = _edge_spot(rng, a, a.edge_out, a.dist_substrate)
        if n is None:
            continue
        if rng.random() < SPUR_RAGGED_SHARE:
            params = _ragged_spur(a, rng, y, x, n)
            if params is None:
                continue
            return params
        ruled = False
        # Lengths spread after the spurs of DeepPCB's five train boards (1043): longest
        # side p5/50/95 of 7/14/31 px, area 33/79/247 px (drawn: 8/15/29 and 42/90/179),
        # a little shorter since the ragged outline (ROUGH) adds to them.
        if rng.random() < SPUR_SLIVER_SHARE:
            # A sliver: leaning well over, a stroke of near even width.
            length = _lognormal(rng, 9.0 * s, 0.55, 3.0 * s, 32.0 * s)
            u = _rotate(n, float(rng.choice([-1.0, 1.0])) * float(rng.uniform(0.6, 1.1)))
            r0 = float(rng.uniform(2.2, 3.2)) * s
            r1 = float(rng.uniform(1.6, 2.6)) * s
        else:
            # A finger: about square to the edge, tapering (or, ruled, straight and even).
            length = _lognormal(rng, 6.0 * s, 0.6, 2.0 * s, 28.0 * s)
            u = _rotate(n, float(rng.uniform(-0.6, 0.6)))
            r0 = float(rng.uniform(2.2, 4.6)) * s
            r1 = float(rng.uniform(1.2, 3.2)) * s
            if rng.random() < RULED_SHARE["spur"]:
                # Even width, as much copper as a tapering finger of that length.
                r0 = r1 = 0.5 * (r0 + r1)
                u, ruled = _snapped(u, 0.35), True
        p = np.array([x, y], np.float64)
        tip = p + u * length
        # Clear substrate past the tip: the spur must not reach a neighbour.
        ty, tx = int(round(tip[1])), int(round(tip[0]))
        if not _inside(a, [tip], 2) or a.dist_substrate[ty, tx] < r1 + 4.0 * s:
            continue
        mid = p + u * (0.5 * length) + _perp(u) * float(rng.uniform(-1.5, 1.5)) * s * (not ruled)
        base = p - (u if ruled else n) * (0.8 * r0)  # inside the conductor it grows from
        params = {"strokes": [_stroke([base, mid, tip], [r0, 0.5 * (r0 + r1), r1])],
                  "host": [int(y), int(x)]}
        return _ruled(params) if ruled else params
    return None


#: Widest gap a short bridges (px at 48 px/mm). A quarter of the shorts of DeepPCB's five
#: train boards span more than 37 px and a tenth more than 56 px (up to ~170): thin,
#: nearly straight bridges across the wide clearance between copper bands and pours.
SHORT_MAX_GAP = 80.0
#: Narrowest gap a short bridges (px at 48 px/mm): fine pitch.
SHORT_MIN_GAP = 4.0
#: Gap (px at 48 px/mm) above which a short is "wide" and only sometimes kept.
SHORT_WIDE_GAP = 36.0
#: A gap wider than ``SHORT_WIDE_GAP`` is kept with probability
#: ``SHORT_WIDE_KEEP * SHORT_WIDE_GAP / gap``, so the shorts' spans follow the train
#: boards' (a random edge spot faces a wide gap far more often than real shorts do).
SHORT_WIDE_KEEP = 0.1
#: Share of the bridges between two sides of one conductor that are kept: 4.6% of the
#: train boards' shorts join copper that is apart inside their box but one conductor on
#: the whole tile (a channel cut into a pour, bridged).
SHORT_SAME_NET_KEEP = 0.6


def _short_shape(a: BoardAnalysis, rng: np.random.Generator) -> Params | None:
    """The strokes of :func:`sample_short`."""
    s = a.scale
    ts = np.arange(1.0, SHORT_MAX_GAP * s + 1.0, 0.5)
    if not len(a.edge_out):
        return None
    for _ in range(SPOT_TRIES):
        y, x, n = _edge_spot(rng, a, a.edge_out, a.dist_substrate)
        if n is None:
            continue
        p = np.array([x, y], np.float64)
        by, bx, on = _pixels(a, p - n * 1.5)
        if not on:
            continue
        net_a = int(a.nets[by, bx])
        ruled = rng.random() < RULED_SHARE["short"]
        # Walk across the gap (slightly askew, or square when ruled) to the first copper:
        # another conductor?
        u = _snapped(n) if ruled else _rotate(n, float(rng.uniform(-0.3, 0.3)))
        ys, xs, on = _pixels(a, p + ts[:, None] * u)
        hits = np.flatnonzero(on & (a.copper[ys, xs] > 0))
        if not len(hits) or not on[: hits[0] + 1].all():
            continue
        gap = float(ts[hits[0]])
        net_b = int(a.nets[ys[hits[0]], xs[hits[0]]])
        if net_a == 0 or net_b == 0 or not SHORT_MIN_GAP * s <= gap <= SHORT_MAX_GAP * s:
            continue
        # Copper of one net on both sides (a pour around a channel): a short only where the
        # two sides are apart near the bridge (the topology check in the box decides), and
        # only as often as on the train boards.
        if net_b == net_a and rng.random() >= SHORT_SAME_NET_KEEP:
            continue
        # Every clearance from SHORT_MIN_GAP up is bridged as often as a random edge
        # spot faces it; wide ones only part of the time. On 300 train templates the
        # drawn shorts then cross channels (twice the largest substrate distance in the
        # bridge) of p10/25/50 10/16/22 px, the train boards' real ones 10/14/20. Halving
        # the narrow ones (< 12 px), as before, gave 12/18/24.
        if gap > SHORT_WIDE_GAP * s and rng.random() >= SHORT_WIDE_KEEP * SHORT_WIDE_GAP * s / gap:
            continue
        into = 2.0 * s
        pa = p - u * into
        pb = p + u * (gap + into)
        span = pb - pa
        length = float(np.hypot(*span))
        # Bends sideways by up to a third of its length, at most ~8 px: long bridges run
        # nearly straight (as on the train boards: width/length of the bridge ~0.2-0.3).
        wiggle = _perp(u) * float(rng.uniform(-0.35, 0.35)) * min(length, 24.0 * s)
        mid1 = pa + span * float(rng.uniform(0.3, 0.45)) + wiggle
        mid2 = pa + span * float(rng.uniform(0.55, 0.7)) + wiggle * float(rng.uniform(-0.5, 1.0))
        r = float(rng.uniform(1.8, 3.5)) * s
        radii = [r * float(rng.uniform(0.8, 1.2)) for _ in range(4)]
        if ruled:
            mid1, mid2, radii = pa + span / 3.0, pa + span * (2.0 / 3.0), [r] * 4
        if not _inside(a, [pa, pb, mid1, mid2], 2):
            continue
        params = {"strokes": [_stroke([pa, mid1, mid2, pb], radii)], "nets": [net_a, net_b],
                  "host": [int(y), int(x)]}
        return _ruled(params) if ruled else params
    return None


def _blob(rng: np.random.Generator, centre: np.ndarray, length: float, radius: float,
          wobble: float = 0.2, straight: float = 0.0) -> tuple[list[np.ndarray], list[float]]:
    """A short round-brush stroke centred on ``centre`` whose points stray up to
    ``wobble`` x ``length`` sideways; ``straight`` of the time instead a clean capsule
    (even brush, no wobble) lying along a board axis."""
    if rng.random() < straight:
        u = np.array([1.0, 0.0]) if rng.random() < 0.5 else np.array([0.0, 1.0])
        ends = [centre - u * 0.5 * length, centre + u * 0.5 * length]
        return ends, [radius, radius]
    u = _rotate(np.array([1.0, 0.0]), float(rng.uniform(0, math.pi)))
    n = int(rng.integers(2, 5))
    ts = np.linspace(-0.5, 0.5, n) * length
    points = [centre + u * t + _perp(u) * float(rng.uniform(-wobble, wobble)) * length
              for t in ts]
    radii = [radius * float(rng.uniform(0.7, 1.2)) for _ in range(n)]
    return points, radii


#: Share of spurious-copper blobs and of pin-holes drawn as clean capsules along a board
#: axis: about a quarter of DeepPCB's (five train boards) are such, with outlines as smooth
#: as the pixel grid allows.
COPPER_AXIS_SHARE = 0.45
PIN_HOLE_AXIS_SHARE = 0.4


#: Share of spurious copper drawn as a thin bent strand (a hair) rather than a blob: 6.5% of
#: the spurious copper of DeepPCB's five train boards is at most 6 px thick and at least
#: 14 px long (median 18 px long, 108 px), and another 6% comes in several pieces.
COPPER_STRAND_SHARE = 0.12
#: Clearance (px at 48 px/mm) of spurious copper to the nearest copper: log-uniform in this
#: range. On DeepPCB's five train boards (924 islands) its p5/10/25/50/75 are
#: 9/13/23/40/68 px and 3% are closer than 8 px; drawn on 300 train templates,
#: 9/12/20/37/68 px and 2.7% (a fixed 8 px, as before: 11/13/19/31/67 and 0.1%).
COPPER_CLEAR = (2.0, 64.0)


def _strand(rng: np.random.Generator, centre: np.ndarray, length: float,
            radius: float, ruled: bool = False) -> tuple[list[np.ndarray], list[float]]:
    """A thin stroke of ``length`` bending as it goes, centred on ``centre``; ``ruled``: a
    straight one of even width (at 45 degrees or square where it nearly is)."""
    count = int(rng.integers(4, 7))
    step = length / (count - 1)
    angle = float(rng.uniform(0, 2 * math.pi))
    if ruled:
        u = _snapped(np.array([math.cos(angle), math.sin(angle)]), 0.35)
        return [centre + u * (t * length) for t in np.linspace(-0.5, 0.5, count)], \
            [radius] * count
    points = [np.zeros(2)]
    for _ in range(count - 1):
        angle += float(rng.normal(0.0, 0.5))
        points.append(points[-1] + step * np.array([math.cos(angle), math.sin(angle)]))
    middle = (np.min(points, axis=0) + np.max(points, axis=0)) / 2
    return ([centre + q - middle for q in points],
            [radius * float(rng.uniform(0.8, 1.15)) for _ in range(count)])


def _copper_shape(a: BoardAnalysis, rng: np.random.Generator) -> Params | None:
    """The strokes of :func:`sample_copper`."""
    s = a.scale
    if rng.random() < SCRIBBLE_SHARE["copper"]:
        scribble = _scribbled(a, rng, a.dist_substrate, 7.0 * s)  # the class keeps 6 px
        if scribble is not None:
            return scribble
    strand = rng.random() < COPPER_STRAND_SHARE
    ruled = strand and rng.random() < RULED_SHARE["copper"]
    if strand:
        length = _lognormal(rng, 24.0 * s, 0.3, 12.0 * s, 40.0 * s)
        radius = float(rng.uniform(1.3, 2.4)) * s
    else:
        # Sizes after the islands of DeepPCB's five train boards (924): longest side
        # p5/50/95 of 11/20/42 px, area 60/170/507 px (drawn: 11/20/39 and 66/173/430).
        length = _lognormal(rng, 9.0 * s, 0.75, 2.0 * s, 40.0 * s)
        radius = float(rng.uniform(2.6, 6.5)) * s
    # Clearance to the nearest copper, checked on the drawn shape itself; where the board
    # has no room for it (fine pitch: only narrow channels), a smaller one.
    least, most = COPPER_CLEAR[0] * s, COPPER_CLEAR[1] * s
    margin = float(math.exp(rng.uniform(math.log(least), math.log(most))))
    for _ in range(12):
        spot = _random_where(rng, a, a.dist_substrate, 1.2 * radius + margin)
        if spot is None:
            margin = max(least, 0.5 * margin)
            continue
        y, x = spot
        centre = np.array([x, y], np.float64)
        points, radii = (_strand(rng, centre, length, radius, ruled) if strand
                         else _blob(rng, centre, length, radius, wobble=0.3,
                                    straight=COPPER_AXIS_SHARE))
        params: Params = {"strokes": [_stroke(points, radii)], "host": [y, x]}
        if ruled:
            _ruled(params)
        if not _inside(a, points, radius + 2):
            margin = max(least, 0.8 * margin)  # the only room may be at the border
            continue
        # The clearance holds for the outline as roughened, with its tail if it has one
        # (else without).
        _roughening(params, rng, a, "copper")
        if not strand and rng.random() < COPPER_TAIL_SHARE:
            tail, tail_radii = _tail(rng, points, radii, s)
            strokes = [*params["strokes"], _stroke(tail, tail_radii)]  # type: ignore[misc]
            tailed = {**params, "strokes": strokes}
            if _inside(a, tail, radius + 2) and _clearance(a, tailed) >= margin:
                return tailed
        if _clearance(a, params) >= margin:
            return params
        # The roughened outline reaches further: a little less clearance next time.
        margin = max(least, 0.8 * margin)
    return None


#: Share of spurious copper and of pin-holes drawn as a scribble: a thin looping stroke of
#: whole-pixel discs stamped every few px, as a paint tool's spaced brush draws it (with
#: beaded, pixel-sharp edges and no further roughening). On DeepPCB's held-out group44000
#: most islands and pin-holes are such; on the five train boards fewer.
SCRIBBLE_SHARE: dict[str, float] = {"copper": 0.07, "pin-hole": 0.1}


def _scribble(rng: np.random.Generator, centre: np.ndarray, s: float
              ) -> tuple[list[np.ndarray], list[float], float]:
    """A looping thin path round ``centre``: points, radii (1 or 2 px, whole; 2 at both
    ends) and the stamp spacing."""
    radius = 1.0 if rng.random() < 0.6 else 2.0
    count = int(rng.integers(5, 10))
    step = float(rng.uniform(3.0, 6.0)) * s
    angle = float(rng.uniform(0, 2 * math.pi))
    turn = float(rng.choice([-1.0, 1.0])) * float(rng.uniform(0.2, 0.9))
    points = [np.zeros(2)]
    for _ in range(count - 1):
        angle += turn + float(rng.normal(0.0, 0.6))
        points.append(points[-1] + step * np.array([math.cos(angle), math.sin(angle)]))
    middle = (np.min(points, axis=0) + np.max(points, axis=0)) / 2
    # Close enough that the discs touch, so the scribble stays one piece.
    spacing = float(rng.uniform(0.9, 1.25)) * (radius + 1.0)
    radii = [radius * s] * count
    # A thin scribble has a blot at each end (where the pen rested): more than 2 px thick,
    # so it is a defect, not edge noise, to the topology check.
    radii[0] = radii[-1] = max(radius, 2.0) * s
    return [centre + q - middle for q in points], radii, round(spacing * s, 2)


def _scribbled(a: BoardAnalysis, rng: np.random.Generator, field: np.ndarray,
               margin: float) -> Params | None:
    """A :func:`_scribble` where ``field`` (a distance to the other side) is at least
    ``margin`` px past every pixel it draws; ``None`` if none fits in a few tries."""
    for _ in range(6):
        spot = _random_where(rng, a, field, margin + 6.0 * a.scale)
        if spot is None:
            return None
        y, x = spot
        points, radii, spacing = _scribble(rng, np.array([x, y], np.float64), a.scale)
        params: Params = {"strokes": [_stroke(points, radii)], "host": [y, x],
                          "stamp": spacing}
        if not _inside(a, points, 4):
            continue
        x0, y0, x1, y1 = stroke_bounds(params)
        drawn = draw_strokes(params, (x0, y0), (y1 - y0, x1 - x0))
        if field[y0:y1, x0:x1][drawn > 0].min(initial=np.inf) >= margin:
            return params
    return None


#: Share of spurious-copper blobs drawn with a tail or a hook: a thin stroke growing out
#: of one end and bending (commas, hooks and tails are common among DeepPCB's islands).
COPPER_TAIL_SHARE = 0.35


def _tail(rng: np.random.Generator, points: list[np.ndarray], radii: list[float],
          s: float) -> tuple[list[np.ndarray], list[float]]:
    """A thin tapering stroke out of the end of a blob (``points``, ``radii``) that keeps
    bending one way: a tail, or a hook when it bends far."""
    end, before = points[-1], points[-2] if len(points) > 1 else points[-1] - 1.0
    heading = _unit(end - before)
    if heading is None:
        heading = np.array([1.0, 0.0])
    heading = _rotate(heading, float(rng.uniform(-0.8, 0.8)))
    length = _lognormal(rng, 9.0 * s, 0.4, 4.0 * s, 20.0 * s)
    bend = float(rng.choice([-1.0, 1.0])) * float(rng.uniform(0.3, 1.1))
    r0 = min(radii[-1], float(rng.uniform(1.6, 2.6)) * s)
    start = end + heading * 0.6 * radii[-1]
    tail, tail_radii = [start], [r0]
    step = length / 3
    for k in range(3):
        heading = _rotate(heading, bend)
        tail.append(tail[-1] + heading * step)
        tail_radii.append(max(1.1 * s, r0 * (0.85 - 0.12 * k)))
    return tail, tail_radii


def _clearance(a: BoardAnalysis, params: Params) -> float:
    """Least distance (px) from the drawn shape of ``params`` to the board's copper; 0
    where it overlaps copper or leaves the board."""
    h, w = a.shape
    x0, y0, x1, y1 = stroke_bounds(params)
    if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
        return 0.0
    brush = draw_strokes(params, (x0, y0), (y1 - y0, x1 - x0))
    return float(a.dist_substrate[y0:y1, x0:x1][brush > 0].min(initial=np.inf))


#: Shares of pin-holes drawn as a thin bent scratch and as a ring (a loop of brush that
#: leaves a copper island inside); the rest are blobs. Of the 922 pin-holes of DeepPCB's
#: five train boards, a quarter have a circularity under 0.43: mostly bent scratches
#: ~4 px wide and 15-40 px long, some rings, some speckled clusters.
PIN_HOLE_SCRATCH_SHARE = 0.28
PIN_HOLE_RING_SHARE = 0.08


def _ring(rng: np.random.Generator, centre: np.ndarray, ring: float,
          radius: float) -> tuple[list[np.ndarray], list[float]]:
    """A closed, slightly uneven loop of brush of radius ``ring`` round ``centre``."""
    count = int(rng.integers(7, 10))
    start = float(rng.uniform(0, 2 * math.pi))
    angles = start + np.linspace(0.0, 2 * math.pi, count + 1)
    squash = float(rng.uniform(0.7, 1.0))
    points = [centre + ring * float(rng.uniform(0.9, 1.1))
              * np.array([math.cos(t), squash * math.sin(t)]) for t in angles[:-1]]
    points.append(points[0])
    return points, [radius * float(rng.uniform(0.85, 1.15)) for _ in points]


def _pin_hole_shape(a: BoardAnalysis, rng: np.random.Generator) -> Params | None:
    """The strokes of :func:`sample_pin_hole`."""
    s = a.scale
    if rng.random() < SCRIBBLE_SHARE["pin-hole"]:
        scribble = _scribbled(a, rng, a.dist_copper, 3.0 * s + 2.0)
        if scribble is not None:
            return scribble
    kind = rng.random()
    ruled = kind < PIN_HOLE_SCRATCH_SHARE and rng.random() < RULED_SHARE["pin-hole"]
    if kind < PIN_HOLE_SCRATCH_SHARE:
        length = _lognormal(rng, 22.0 * s, 0.35, 10.0 * s, 44.0 * s)
        radius = float(rng.uniform(1.5, 2.5)) * s
    elif kind < PIN_HOLE_SCRATCH_SHARE + PIN_HOLE_RING_SHARE:
        length = float(rng.uniform(9.0, 15.0)) * s  # the ring's outer diameter
        radius = float(rng.uniform(1.4, 2.2)) * s
    else:
        # Sizes after the pin-holes of DeepPCB's five train boards (922): longest side
        # p5/50/95 of 8/17/33 px, area 43/126/363 px (with the scratches, rings and
        # scribbles drawn: area 48/113/299 px); the widest only fit in wide copper.
        length = _lognormal(rng, 10.5 * s, 0.6, 1.0 * s, 32.0 * s)
        radius = _lognormal(rng, 3.2 * s, 0.4, 1.8 * s, 8.0 * s)
    for _ in range(4):
        # The hole keeps ~3 px of copper round it, more than misregistration can eat.
        spot = _random_where(rng, a, a.dist_copper, length / 2 + 1.2 * radius + 3.0 * s)
        if spot is None:
            # Narrow boards: a smaller hole is still a pin-hole.
            length, radius = 0.7 * length, max(2.0 * s, 0.85 * radius)
            continue
        y, x = spot
        centre = np.array([x, y], np.float64)
        if kind < PIN_HOLE_SCRATCH_SHARE:
            points, radii = _strand(rng, centre, length, radius, ruled)
        elif kind < PIN_HOLE_SCRATCH_SHARE + PIN_HOLE_RING_SHARE:
            points, radii = _ring(rng, centre, length / 2 - radius, radius)
        else:
            points, radii = _blob(rng, centre, length, radius, straight=PIN_HOLE_AXIS_SHARE)
        if _inside(a, points, radius + 2):
            params = {"strokes": [_stroke(points, radii)], "host": [y, x]}
            return _ruled(params) if ruled else params
    return None


def _half_width(a: BoardAnalysis, p: np.ndarray, inward: np.ndarray, reach: float) -> float:
    """Largest copper distance met walking from edge point ``p`` into the conductor."""
    ys, xs, _ = _pixels(a, p + np.arange(0.0, reach, 1.0)[:, None] * inward)
    values = a.dist_copper[ys, xs]
    out = np.flatnonzero(values == 0)
    if len(out):
        values = values[: out[0]]
    return float(values.max()) if len(values) else 0.0


def _round_bite(a: BoardAnalysis, rng: np.random.Generator) -> Params | None:
    """A round bite out of a conductor edge that leaves the conductor whole (``a.edge_in``
    not empty)."""
    s = a.scale
    for _ in range(SPOT_TRIES):
        y, x, n = _edge_spot(rng, a, a.edge_in, a.dist_copper)
        if n is None:
            continue
        p = np.array([x, y], np.float64)
        half = _half_width(a, p, n, 40.0 * s)
        width = 2.0 * half
        if width < 9.0 * s:
            continue
        radius = float(rng.uniform(2.4, 4.6)) * s
        # At least ~4 px of the conductor stays, so it is bitten, not cut.
        # The brush's near side stays outside the edge (a bite, not a hole).
        depth = min(float(rng.uniform(0.35, 0.7)) * width, width - 4.5 * s,
                    2.0 * radius - 2.5 * s)
        if depth < 2.0 * s:
            continue
        t = _perp(n)
        centre = p + n * (depth - radius)
        along = float(rng.uniform(2.0, 12.0)) * s
        # A ragged notch: 3-5 dabs along the edge at uneven depths and sizes.
        count = int(rng.integers(3, 6))
        ts = np.sort(rng.uniform(-0.5, 0.5, count)) * along
        points = [centre + t * float(k) + n * float(rng.uniform(-1.5, 1.0)) * s for k in ts]
        radii = [radius * float(rng.uniform(0.6, 1.15)) for _ in range(count)]
        if _inside(a, points, radius + 2):
            return {"strokes": [_stroke(points, radii)], "host": [y, x]}
    return None


#: Share of mousebites drawn as slits: most of DeepPCB's are thin strokes (about 6 px
#: across) that run obliquely into the copper from its edge, some ending in a rounder
#: dab; the rest are round bites.
MOUSEBITE_SLIT_SHARE = 0.6


def _slit_bite(a: BoardAnalysis, rng: np.random.Generator) -> Params | None:
    """A thin slit running obliquely from a conductor edge into the copper, without
    cutting the conductor through."""
    s = a.scale
    for _ in range(SPOT_TRIES):
        y, x, n = _edge_spot(rng, a, a.edge_in, a.dist_copper)
        if n is None:
            continue
        p = np.array([x, y], np.float64)
        width = 2.0 * _half_width(a, p, n, 40.0 * s)
        if width < 9.0 * s:
            continue
        radius = float(rng.uniform(1.5, 2.4)) * s
        lean = float(rng.choice([-1.0, 1.0])) * float(rng.uniform(0.35, 1.15))
        ruled = rng.random() < RULED_SHARE["mousebite"]
        u = _snapped(_rotate(n, lean)) if ruled else _rotate(n, lean)
        lean = math.acos(float(np.clip(u @ n, -1.0, 1.0)))
        length = _lognormal(rng, 11.0 * s, 0.4, 4.0 * s, 30.0 * s)
        end_radius = radius
        if rng.random() < 0.3:
            end_radius = float(rng.uniform(2.4, 3.4)) * s  # a rounder dab at the end
        # At least ~4.5 px of the conductor stays beside the deepest point.
        depth = length * math.cos(lean) + end_radius
        if depth > width - 4.5 * s:
            length = (width - 4.5 * s - end_radius) / math.cos(lean)
            if length < 3.0 * s:
                continue
        # Starts just outside the edge (a ruled slit on its own line).
        start = p - (u if ruled else n) * (0.6 * radius)
        tip = p + u * length
        bend = _perp(u) * float(rng.uniform(-0.15, 0.15)) * length * (not ruled)
        mid = p + u * (0.5 * length) + bend
        if not _inside(a, [start, mid, tip], end_radius + 2):
            continue
        radii = [radius, radius * float(rng.uniform(0.85, 1.15)), end_radius]
        if ruled:
            radii = [radius, radius, end_radius]
        params = {"strokes": [_stroke([start, mid, tip], radii)], "host": [y, x], "slit": True}
        return _ruled(params) if ruled else params
    return None


def _mousebite_shape(a: BoardAnalysis, rng: np.random.Generator) -> Params | None:
    """The strokes of :func:`sample_mousebite`."""
    if not len(a.edge_in):
        return None
    if rng.random() < MOUSEBITE_SLIT_SHARE:
        params = _slit_bite(a, rng)
        if params is not None:
            return params
    return _round_bite(a, rng)


_ANGLES = np.linspace(0.0, math.pi, 16, endpoint=False)
_DIRS = np.stack([np.cos(_ANGLES), np.sin(_ANGLES)], axis=1)

#: Share of opens that cut a wide conductor (a band of 18-64 px at 48 px/mm) where the
#: board has one. On DeepPCB's five train boards 42% of opens have copper wider than 18 px
#: in their box (a median 313 px removed, 36 px long: narrow strokes right across a band)
#: against 58% on traces (82 px, 15 px). Measured the same way, a share of 0.3 gave 49%
#: (some trace opens also have a wide pad in their box) and put the median area of opens
#: at 1.09-1.15 of the real one over four seeds; 0.27 puts it at 0.94-1.10.
WIDE_OPEN_SHARE = 0.27


def _cross_section(a: BoardAnalysis, y: int, x: int, half: float
                   ) -> tuple[np.ndarray, np.ndarray] | None:
    """The unit (x, y) direction across the conductor whose centreline passes (y, x), and
    the one along it; ``None`` where there is no clear cross-section (a corner, a junction
    or a blob). ``half`` is the conductor's half width there."""
    ts = np.arange(-3.0 * half - 2, 3.0 * half + 3, 1.0)
    ys, xs, _ = _pixels(a, np.array([x, y], np.float64) + ts[:, None] * _DIRS[:, None, :])
    inside = a.copper[ys, xs] > 0
    centre = len(ts) // 2
    reach = [
        (np.argmin(row[centre:]) if not row[centre:].all() else len(ts))
        + (np.argmin(row[centre::-1]) if not row[centre::-1].all() else len(ts))
        for row in inside
    ]
    k = int(np.argmin(reach))
    if reach[k] > 2.6 * half + 4 or reach[(k + 8) % 16] < 2.0 * reach[k]:
        return None
    across = _DIRS[k]
    return across, _perp(across)


#: Share of opens (on traces and on bands) drawn with edge bands beside the cut (see
#: :data:`EDGE_BAND`): the change in DeepPCB's open boxes often runs on along the cut
#: conductor's edges.
OPEN_EDGE_BAND = 0.6


def _open_edge_bands(rng: np.random.Generator, c: np.ndarray, across: np.ndarray,
                     along: np.ndarray, half: float, s: float) -> list[Params]:
    """:data:`OPEN_EDGE_BAND` of the time, thin strokes along one or both edges of the
    conductor cut at ``c`` (half width ``half``): its edges beside the cut moved by a pixel
    or two (see :data:`EDGE_BAND`); else none."""
    if rng.random() >= OPEN_EDGE_BAND:
        return []
    sides = [float(rng.choice([-1.0, 1.0]))] if rng.random() < 0.5 else [-1.0, 1.0]
    r = 2.0 * s
    bands = []
    for side in sides:
        inward = -across * side
        depth = float(rng.uniform(0.6, 1.6)) * s
        centre = c + across * side * (half + 0.5) + inward * (depth - r)
        bands.append(_stroke([centre - along * float(rng.uniform(2.0, 8.0)) * s, centre,
                              centre + along * float(rng.uniform(2.0, 8.0)) * s], [r, r, r]))
    return bands


def _trace_open(a: BoardAnalysis, rng: np.random.Generator) -> Params | None:
    """A round-brush gap cut through a trace (not a pad or a pour)."""
    s = a.scale
    h, w = a.shape
    for _ in range(SPOT_TRIES):
        spot = _pick(rng, a.ridge, a)
        if spot is None:
            return None
        y, x = spot
        half = float(a.dist_copper[y, x])
        if not 2.5 * s <= half <= 9.0 * s:
            continue
        rad = int(half + 5)
        if not (rad <= y < h - rad and rad <= x < w - rad):
            continue
        if a.dist_copper[y - rad:y + rad + 1, x - rad:x + rad + 1].max() > half + 2.0:
            continue  # a pad or a pour nearby, not a plain trace
        section = _cross_section(a, y, x, half)
        if section is None:
            continue
        across, along = section
        # The gap's length follows the trace's width, so the copper removed keeps to the
        # size of DeepPCB's opens on traces up to 18 px wide (median ~82 px at 48 px/mm).
        area = _lognormal(rng, 32.0 * s * s, 0.35, 16.0 * s * s, 240.0 * s * s)
        radius = float(np.clip(area / (4.0 * half + 1e-6), 1.8 * s, 5.0 * s))
        # Cuts are seldom square to the trace: slant the stroke by up to ~30 degrees; a
        # ruled one is a straight line, square or at 45 degrees where it nearly is.
        ruled = rng.random() < RULED_SHARE["open"]
        slant = float(rng.uniform(-0.6, 0.6))
        cut = _unit(across + along * slant)
        if ruled:
            cut = _snapped(cut, 0.35)
        reach_px = (half + radius + 2.0 * s) / max(abs(float(cut @ across)), 0.5)
        c = np.array([x, y], np.float64) + along * float(rng.uniform(-1.0, 1.0)) * s
        points = [c - cut * reach_px,
                  c + along * float(rng.uniform(-1.5, 1.5)) * s,
                  c + cut * reach_px + along * float(rng.uniform(-2.0, 2.0)) * s]
        radii = [radius * float(rng.uniform(0.8, 1.2)) for _ in range(3)]
        if ruled:
            points, radii = [c - cut * reach_px, c, c + cut * reach_px], [radius] * 3
        strokes = [_stroke(points, radii)]
        if rng.random() < 0.1:
            # A missing stretch, not just a cut: the brush also runs along the trace.
            stretch = float(rng.uniform(6.0, 24.0)) * s
            wide = half + float(rng.uniform(1.0, 2.0)) * s
            strokes.append(_stroke([c, c + along * stretch], [wide, wide]))
        strokes += _open_edge_bands(rng, c, across, along, half, s)
        params = {"strokes": strokes, "host": [y, x]}
        return _ruled(params) if ruled else params
    return None


def _wide_open(a: BoardAnalysis, rng: np.random.Generator) -> Params | None:
    """A narrow stroke right across a wide conductor (a band, not a pour), slanted and
    slightly bent, as DeepPCB's opens on wide copper are."""
    s = a.scale
    for _ in range(SPOT_TRIES):
        spot = _pick(rng, a.ridge_wide, a)
        if spot is None:
            return None
        y, x = spot
        half = float(a.dist_copper[y, x])
        section = _cross_section(a, y, x, half)
        if section is None:
            continue
        across, along = section
        ruled = rng.random() < RULED_SHARE["open"]
        slant = float(rng.uniform(-0.8, 0.8))
        cut = _rotate(across, slant)
        if ruled:
            cut = _snapped(cut, 0.35)
        radius = float(rng.uniform(2.0, 3.2)) * s
        # Past both edges: the slanted cut is longer than the band is wide.
        reach_px = (half + radius + 2.5 * s) / max(abs(float(cut @ across)), 0.5)
        # A crack (bent as a whole, and every few px a little aside) or a ruled line.
        bend = float(rng.uniform(-0.3, 0.3)) * reach_px * (not ruled)
        c = np.array([x, y], np.float64)
        count = max(4, int(2 * reach_px / (4.0 * s)) + 1)
        ts = np.linspace(-1.0, 1.0, count)
        jitter = np.cumsum(rng.normal(0.0, 0.6, count)) * s
        jitter -= np.linspace(jitter[0], jitter[-1], count)  # ends where the cut aims
        jitter *= not ruled
        points = [c + cut * t * reach_px + _perp(cut) * (bend * (1.0 - t * t) + j)
                  for t, j in zip(ts, jitter, strict=True)]
        if not _inside(a, points, radius + 2):
            continue
        radii = [radius * float(rng.uniform(0.75, 1.2)) for _ in range(count)]
        if ruled:
            radii = [radius] * count
        strokes = [_stroke(points, radii), *_open_edge_bands(rng, c, across, along, half, s)]
        params = {"strokes": strokes, "host": [y, x], "wide": True}
        return _ruled(params) if ruled else params
    return None


def _open_shape(a: BoardAnalysis, rng: np.random.Generator) -> Params | None:
    """The strokes of :func:`sample_open`."""
    if len(a.ridge_wide) and rng.random() < WIDE_OPEN_SHARE:
        params = _wide_open(a, rng)
        if params is not None:
            return params
    return _trace_open(a, rng)


# --------------------------------------------------------------------------- the samplers


def sample_spur(a: BoardAnalysis, rng: np.random.Generator) -> Params | None:
    """A protrusion growing out of a conductor edge into clear substrate.

    The outline is made ragged after :data:`ROUGH`.
    """
    return _ragged(_spur_shape(a, rng), rng, a, "spur", adds_copper=True)


def sample_short(a: BoardAnalysis, rng: np.random.Generator) -> Params | None:
    """A bridge of copper across the gap between two different conductors (or, now and
    then, between two sides of one conductor that are apart near the bridge).

    The outline is made ragged after :data:`ROUGH`.
    """
    return _ragged(_short_shape(a, rng), rng, a, "short")


def sample_copper(a: BoardAnalysis, rng: np.random.Generator) -> Params | None:
    """An isolated island of copper in clear substrate (spurious copper): a blob (with a
    tail or hook :data:`COPPER_TAIL_SHARE` of the time, a clean capsule along a board axis
    :data:`COPPER_AXIS_SHARE` of the time), or :data:`COPPER_STRAND_SHARE` of the time a
    thin bent strand.

    The outline is made ragged after :data:`ROUGH`; the clearance holds for it as drawn.
    """
    return _ragged(_copper_shape(a, rng), rng, a, "copper")


def sample_pin_hole(a: BoardAnalysis, rng: np.random.Generator) -> Params | None:
    """A void strictly inside copper: a blob (now and then a clean capsule along a board
    axis), a thin bent scratch (:data:`PIN_HOLE_SCRATCH_SHARE`) or a ring that leaves copper
    inside (:data:`PIN_HOLE_RING_SHARE`).

    The outline is made ragged after :data:`ROUGH`.
    """
    return _ragged(_pin_hole_shape(a, rng), rng, a, "pin-hole")


def sample_mousebite(a: BoardAnalysis, rng: np.random.Generator) -> Params | None:
    """A bite out of a conductor edge that leaves the conductor whole: a thin oblique slit
    (:data:`MOUSEBITE_SLIT_SHARE` of the time) or a round bite.

    Sizes keep to a narrower band than DeepPCB's train boards' (longest side p5/50/95 of
    6/14/33 px). Drawn as widely, on one seed, more real opens of two held-out boards were
    called mousebite (6 -> 15 of 133); that may be the draw's noise, but it did not help.

    The outline is made ragged after :data:`ROUGH`.
    """
    return _ragged(_mousebite_shape(a, rng), rng, a, "mousebite")


def sample_open(a: BoardAnalysis, rng: np.random.Generator) -> Params | None:
    """A cut right through a conductor: a round gap in a trace, or (on boards with wide
    conductors, :data:`WIDE_OPEN_SHARE` of the time) a narrow crack across a band; either
    with edge bands beside it :data:`OPEN_EDGE_BAND` of the time.

    The outline is made ragged after :data:`ROUGH`.
    """
    return _ragged(_open_shape(a, rng), rng, a, "open")


# --------------------------------------------------------------------------- drawing


#: How far (in units of a defect's ``rough["amp"]``) :func:`roughen` may move an outline.
ROUGH_REACH = 3.0
#: Largest part (px) that :func:`roughen` may leave apart from the shape it roughens.
ROUGH_SPECK = 5


def rough_params(rng: np.random.Generator, scale: float, amp: float, corr: tuple[float, float],
                 speck: float, power: float = 2.0) -> Params:
    """Parameters of :func:`roughen` for one defect: a noise seed; how far its outline is
    displaced (``amp`` x u ** ``power`` px std, u uniform in [0, 1): most outlines a little
    ragged, a few very, as a board's defects are); the length along the edge over which
    that displacement is correlated (``corr``, px); the amplitude of the uncorrelated part
    that flips single edge pixels (``speck`` x u px). Lengths at 48 px/mm, times ``scale``."""
    u = float(rng.random())
    return {"seed": int(rng.integers(2**31)),
            "amp": round(amp * u ** power * scale, 3),
            "corr": round(float(rng.uniform(*corr)) * scale, 3),
            "speck": round(speck * u * scale, 3)}


def roughen(mask: np.ndarray, rough: Params, core: np.ndarray | None = None) -> np.ndarray:
    """``mask`` (uint8 0/1) with its outline made ragged the way a re-binarized scan's is:
    every pixel's signed distance to the outline is shifted by a noise field (smooth along
    ``rough["corr"]`` px, ``rough["amp"]`` px std, plus ``rough["speck"]`` px of per-pixel
    noise) and thresholded again. Deterministic: the noise comes from ``rough["seed"]``
    and is drawn over the whole window, so callers must pass the same window (see
    :func:`draw_strokes`). Pixels farther than ``ROUGH_REACH * amp + 2`` px from the
    outline keep their value."""
    amp, corr, speck = float(rough["amp"]), float(rough["corr"]), float(rough["speck"])
    if amp <= 0 and speck <= 0:
        return mask
    inside = cv2.distanceTransform(mask, cv2.DIST_L2, 3)
    outside = cv2.distanceTransform(1 - mask, cv2.DIST_L2, 3)
    signed = inside - outside  # >= 1 inside, <= -1 outside
    rng = np.random.default_rng(int(rough["seed"]))  # type: ignore[arg-type]
    white = rng.standard_normal(mask.shape, dtype=np.float32)
    noise = np.zeros(mask.shape, np.float32)
    if amp > 0 and corr > 0:
        smooth = cv2.GaussianBlur(white, (0, 0), corr, borderType=cv2.BORDER_REFLECT)
        # Blurred unit white noise has std 1 / (2 sqrt(pi) corr): back to unit std.
        noise += smooth * np.float32(amp * 2.0 * math.sqrt(math.pi) * corr)
    if speck > 0:
        # Speckle a little coarser than a pixel, so it outlasts a scan's blur.
        grain = cv2.GaussianBlur(rng.standard_normal(mask.shape, dtype=np.float32), (0, 0),
                                 SPECK_GRAIN, borderType=cv2.BORDER_REFLECT)
        noise += grain * np.float32(speck * 2.0 * math.sqrt(math.pi) * SPECK_GRAIN)
    out = (signed + noise) > 0
    keep = float(rough.get("keep", 0.0))  # type: ignore[arg-type]
    grow = float(rough.get("grow", 0.0))  # type: ignore[arg-type]
    if keep > 0:
        out |= signed >= keep
    if core is not None:
        out |= core > 0
    if grow > 0:
        out &= signed > -grow
    dots = float(rough.get("dots", 0.0))  # type: ignore[arg-type]
    if dots > 0:
        # Speckle inside: 2 x 2 px dots of the other side left within the shape, none
        # touching another (a chain of them could join what the defect parts).
        seeds = ((rng.random(mask.shape) < dots / 4) & (signed >= 3)).astype(np.uint8)
        crowd = cv2.filter2D(seeds, -1, _KERNEL5, borderType=cv2.BORDER_CONSTANT)
        seeds &= (crowd == 1).astype(np.uint8)  # 2 px clear of any other dot
        flips = cv2.dilate(seeds, _KERNEL2, anchor=(0, 0)) > 0  # 2 x 2 px each
        if core is not None:
            flips &= core == 0
        out &= ~flips
    out = out.astype(np.uint8)
    # Parts broken off the shape are kept only as specks.
    n, labels = cv2.connectedComponents(out, connectivity=8)
    if n > 2:
        whole = np.zeros(n, bool)
        whole[labels[(out > 0) & (mask > 0)]] = True
        whole |= np.bincount(labels.ravel(), minlength=n) <= ROUGH_SPECK
        whole[0] = False
        out = whole[labels].astype(np.uint8)
    return out


def _rough_pad(params: Params) -> int:
    rough = params.get("rough")
    if not rough:
        return 0
    reach = ROUGH_REACH * float(rough["amp"]) + 3.0 * float(rough["speck"])  # type: ignore[index]
    return int(math.ceil(reach)) + 2


def stroke_bounds(params: Params) -> tuple[int, int, int, int]:
    """Integer ``x0, y0, x1, y1`` (exclusive) around every brush dab of ``params`` (and as
    far past them as its roughening may reach)."""
    xs, ys = [], []
    for stroke in params["strokes"]:  # type: ignore[union-attr]
        for (px, py), r in zip(stroke["points"], stroke["radii"], strict=True):
            xs += [px - r, px + r]
            ys += [py - r, py + r]
    pad = _rough_pad(params) + brush_reach(params.get("brush") or {})  # type: ignore[arg-type]
    return (int(math.floor(min(xs))) - 1 - pad, int(math.floor(min(ys))) - 1 - pad,
            int(math.ceil(max(xs))) + 2 + pad, int(math.ceil(max(ys))) + 2 + pad)


def _stamped(params: Params, origin: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """Each stroke as whole-pixel discs stamped every ``params["stamp"]`` px along it (a
    paint tool's spaced brush: beaded edges, a radius-1 disc is a plus)."""
    mask = np.zeros(size, np.uint8)
    spacing = float(params["stamp"])  # type: ignore[arg-type]
    offset = np.array(origin, np.float64)
    for stroke in params["strokes"]:  # type: ignore[union-attr]
        pts = np.asarray(stroke["points"], np.float64) - offset
        radii = np.asarray(stroke["radii"], np.float64)
        stamps = [(pts[0], radii[0])]
        for i in range(1, len(pts)):
            steps = max(1, int(math.ceil(float(np.hypot(*(pts[i] - pts[i - 1]))) / spacing)))
            stamps += [(pts[i - 1] + (pts[i] - pts[i - 1]) * (k / steps),
                        radii[i - 1] + (radii[i] - radii[i - 1]) * (k / steps))
                       for k in range(1, steps + 1)]
        for p, r in stamps:
            cv2.circle(mask, (int(round(p[0])), int(round(p[1]))), max(1, int(round(r))), 1, -1,
                       cv2.LINE_8)
    return mask


def _brush(params: Params, origin: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    if params.get("stamp"):
        return _stamped(params, origin, size)
    mask = np.zeros(size, np.uint8)
    scale = 1 << _SHIFT
    offset = np.array(origin, np.float64)
    for stroke in params["strokes"]:  # type: ignore[union-attr]
        pts = np.round((np.asarray(stroke["points"], np.float64) - offset) * scale).astype(int)
        radii = np.asarray(stroke["radii"], np.float64)
        for i, (p, r) in enumerate(zip(pts, radii, strict=True)):
            cv2.circle(mask, (int(p[0]), int(p[1])), int(round(r * scale)), 1, -1, cv2.LINE_8,
                       _SHIFT)
            if i:
                q = pts[i - 1]
                # cv2.line's thickness has no sub-pixel part: round the band's width.
                width = max(1, int(round(r + radii[i - 1])))
                cv2.line(mask, (int(q[0]), int(q[1])), (int(p[0]), int(p[1])), 1, width,
                         cv2.LINE_8, _SHIFT)
    return mask


def draw_strokes(params: Params, origin: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """The brush mask (uint8 0/1) of ``params`` in a window of ``size`` (h, w) whose top-left
    pixel is ``origin`` (x, y) in board coordinates. Deterministic, and the same pixels
    whatever window they are seen through.

    A round brush: a disc at every point, and between two points a band as wide as the
    mean of their discs (sub-pixel coordinates, 1/16 px); with a ``stamp`` entry instead
    whole-pixel discs that many px apart along each stroke. With a ``rough`` entry the
    outline is then made ragged by :func:`roughen`, over the window of
    :func:`stroke_bounds`, keeping the centre line of the first stroke whole. With a
    ``brush`` entry other than solid the result is last redrawn in that brush style
    (:func:`pcbforge.synth.brush.restyle`, over the same window).
    """
    rough = params.get("rough")
    style = params.get("brush") or {}
    if not rough and not brush_reach(style):  # type: ignore[arg-type]
        return _brush(params, origin, size)
    x0, y0, x1, y1 = stroke_bounds(params)
    window = (y1 - y0, x1 - x0)
    full = _brush(params, (x0, y0), window)
    if rough:
        # The first stroke's centre line stays whatever the noise, 3 px thick: more than the
        # 2 px of edge noise the topology check ignores, so the defect stays a defect.
        first = params["strokes"][0]  # type: ignore[index]
        skeleton = _brush({"strokes": [{"points": first["points"],
                                        "radii": [1.5] * len(first["points"])}]}, (x0, y0),
                          window)
        full = roughen(full, rough, skeleton)  # type: ignore[arg-type]
    if brush_reach(style):  # type: ignore[arg-type]
        full = restyle(full, style)  # type: ignore[arg-type]
    mask = np.zeros(size, np.uint8)
    ox, oy = origin
    h, w = size
    cx0, cy0, cx1, cy1 = max(x0, ox), max(y0, oy), min(x1, ox + w), min(y1, oy + h)
    if cx1 > cx0 and cy1 > cy0:
        mask[cy0 - oy:cy1 - oy, cx0 - ox:cx1 - ox] = full[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
    return mask
