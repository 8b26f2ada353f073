"""Procedural defect-free PCB tiles, photo-like filler images and simple test defects.

Boards imitate DeepPCB template tiles (binarized, ~48 px/mm): copper is 0, substrate 255.
All randomness comes from the caller's ``numpy.random.Generator``, so the same generator
state always yields the same pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

DEFECT_KINDS: tuple[str, ...] = ("spur", "pinhole", "short", "open")

COPPER = 0
SUBSTRATE = 255

#: Copper fraction range that draw_board guarantees (DeepPCB templates sit around 25-40 %).
COPPER_FRACTION_RANGE = (0.20, 0.45)

# Compass directions, index k is k * 45 degrees in image coordinates (y points down).
_DIRS = np.array(
    [(1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1)], dtype=np.float64
)
_SQRT2 = math.sqrt(2.0)


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def _normal(k: int) -> np.ndarray:
    u = _DIRS[k] / np.linalg.norm(_DIRS[k])
    return np.array([-u[1], u[0]])


def _walk(
    rng: np.random.Generator,
    start: np.ndarray,
    k0: int,
    n_seg: int,
    min_len: float,
    max_len: float,
) -> np.ndarray:
    """Random 0/45/90 degree route: straight runs joined by 45 degree chamfers.

    Each bend turns by 45 degrees and the heading stays within 90 degrees of ``k0``, so a
    route never doubles back on itself (which would short it to its own neighbours).
    """
    pts = [np.asarray(start, dtype=np.float64)]
    turn = 0
    k = k0
    for s in range(n_seg):
        if s > 0:
            options = [t for t in (-1, 1) if abs(turn + t) <= 2]
            turn += options[int(rng.integers(len(options)))]
            k = (k0 + turn) % 8
        if k % 2:  # diagonals are mostly short chamfers between straight runs
            length = rng.uniform(min_len, max(min_len + 1.0, 0.5 * max_len))
            step = _DIRS[k] * (length / _SQRT2)
        else:
            length = rng.uniform(min_len, max(min_len + 1.0, max_len))
            step = _DIRS[k] * length
        pts.append(pts[-1] + step)
    return np.array(pts)


def _offset(pts: np.ndarray, d: float) -> np.ndarray:
    """Parallel copy of a polyline at signed distance ``d`` (mitred joins keep the pitch)."""
    seg = np.diff(pts, axis=0)
    u = seg / np.linalg.norm(seg, axis=1, keepdims=True)
    n = np.stack([-u[:, 1], u[:, 0]], axis=1)
    out = np.empty_like(pts)
    out[0] = pts[0] + d * n[0]
    out[-1] = pts[-1] + d * n[-1]
    for j in range(1, len(pts) - 1):
        m = n[j - 1] + n[j]
        m /= np.linalg.norm(m)
        out[j] = pts[j] + m * (d / float(np.dot(m, n[j])))
    return out


def _ipt(p: np.ndarray) -> tuple[int, int]:
    return int(round(float(p[0]))), int(round(float(p[1])))


class _Layout:
    """Copper bookkeeping: a net-id image plus drill holes punched at the very end."""

    def __init__(self, rng: np.random.Generator, size: int) -> None:
        self.rng = rng
        self.size = size
        self.nets = np.zeros((size, size), np.int32)
        #: Pads, vias' rings and component pads: the copper a solder mask leaves exposed.
        self.pads = np.zeros((size, size), np.uint8)
        self.holes: list[tuple[int, int, int]] = []
        self.next_net = 1
        self.width = int(rng.integers(8, 15))
        self.gap = int(rng.integers(10, 15))
        self.kernel = _disk(self.gap)

    def blank(self) -> np.ndarray:
        return np.zeros((self.size, self.size), np.uint8)

    def place(
        self, mask: np.ndarray, net: int | None = None, holes: list[tuple[int, int, int]] = (),
        pads: np.ndarray | None = None,
    ) -> int | None:
        """Commit ``mask`` as copper of ``net`` unless it comes within ``gap`` of another net;
        ``pads``: the part of it that is a pad (exposed by the solder mask)."""
        x, y, w, h = cv2.boundingRect(mask)
        if w == 0 or h == 0:
            return None
        g, s = self.gap, self.size
        x0, y0, x1, y1 = max(x - g, 0), max(y - g, 0), min(x + w + g, s), min(y + h + g, s)
        m = mask[y0:y1, x0:x1]
        other = self.nets[y0:y1, x0:x1]
        conflict = (cv2.dilate(m, self.kernel) > 0) & (other != 0)
        if net is not None:
            conflict &= other != net
        if conflict.any():
            return None
        if net is None:
            net = self.next_net
            self.next_net += 1
        other[m > 0] = net
        if pads is not None:
            self.pads |= pads
        self.holes.extend(holes)
        return net

    def terminal(self, masks: tuple[np.ndarray, ...], p: np.ndarray, style: str
                 ) -> list[tuple[int, int, int]]:
        """Draw a via or pad centred on ``p`` into each of ``masks`` (the copper, and the
        pads); return its drill holes."""
        rng, c = self.rng, _ipt(p)
        if style == "via":
            hole = int(rng.integers(5, 9))
            outer = max(hole + 5, self.width // 2 + int(rng.integers(4, 9)))
            for mask in masks:
                cv2.circle(mask, c, outer, 1, -1)
            return [(c[0], c[1], hole)]
        if style == "round":
            r = int(rng.integers(12, 26))
            for mask in masks:
                cv2.circle(mask, c, r, 1, -1)
            if rng.random() < 0.6:
                return [(c[0], c[1], max(4, int(r * rng.uniform(0.35, 0.5))))]
            return []
        if style == "rect":
            hw, hh = int(rng.integers(9, 20)), int(rng.integers(9, 24))
            if rng.random() < 0.5:
                hw, hh = hh, hw
            for mask in masks:
                cv2.rectangle(mask, (c[0] - hw, c[1] - hh), (c[0] + hw, c[1] + hh), 1, -1)
        return []

    def pick_terminal(self, p_none: float) -> str:
        if self.rng.random() < p_none:
            return "none"
        return ("via", "round", "rect")[int(self.rng.integers(3))]

    def route(
        self,
        pts: np.ndarray,
        width: int,
        net: int | None,
        start: str = "none",
        end: str = "none",
    ) -> int | None:
        """Place a trace with optional terminals; drop the terminals if they do not fit."""
        for s, e in ((start, end), (start, "none"), ("none", end), ("none", "none")):
            mask, pads = self.blank(), self.blank()
            cv2.polylines(mask, [np.round(pts).astype(np.int32)], False, 1, width, cv2.LINE_8)
            holes = (self.terminal((mask, pads), pts[0], s)
                     + self.terminal((mask, pads), pts[-1], e))
            placed = self.place(mask, net, holes, pads)
            if placed is not None:
                return placed
        return None

    def copper_fraction(self) -> float:
        return float(np.count_nonzero(self.nets)) / self.nets.size


def _add_component(lay: _Layout) -> None:
    """One or two facing rows of pads (IC, connector) with a fan-out bus per row."""
    rng, s, g, w = lay.rng, lay.size, lay.gap, lay.width
    k_out = int(rng.integers(4)) * 2
    round_pads = rng.random() < 0.45
    if round_pads:
        r = int(rng.integers(12, 28))
        across, along = 2 * r, 2 * r
        hole = max(4, int(r * rng.uniform(0.35, 0.55)))
    else:
        across, along = int(rng.integers(14, 30)), int(rng.integers(26, 60))
        hole = 0
    pitch = max(across + g + 3 + int(rng.integers(0, 16)), w + g + 3)
    n = min(int(rng.integers(2, 9)), max(2, int(0.7 * s) // pitch))
    centre = rng.uniform(0.2 * s, 0.8 * s, 2)
    rows = [(centre, k_out)]
    if rng.random() < 0.5:
        u = _DIRS[k_out]
        body = along + int(rng.integers(30, 140))
        rows = [(centre + u * body / 2, k_out), (centre - u * body / 2, (k_out + 4) % 8)]
    for c, k in rows:
        u, nrm = _DIRS[k], _normal(k)
        offs = (np.arange(n) - (n - 1) / 2) * pitch
        max_d = float(np.abs(offs).max())
        # Long enough runs keep the mitred parallel copies from folding over at bends.
        min_len = max(40.0, 0.85 * max_d + 20)
        first = along / 2 + rng.uniform(10, 60)
        rest = _walk(rng, c + u * first, k, int(rng.integers(1, 4)), min_len, 0.6 * s)
        path = np.vstack([c[None], rest])
        hx = abs(u[0]) * along / 2 + abs(nrm[0]) * across / 2
        hy = abs(u[1]) * along / 2 + abs(nrm[1]) * across / 2
        end = lay.pick_terminal(0.6)
        for d in offs:
            pc = c + nrm * d
            mask = lay.blank()
            holes = []
            if round_pads:
                cv2.circle(mask, _ipt(pc), across // 2, 1, -1)
                holes = [(*_ipt(pc), hole)]
            else:
                p0, p1 = _ipt(pc - (hx, hy)), _ipt(pc + (hx, hy))
                cv2.rectangle(mask, p0, p1, 1, -1)
            net = lay.place(mask, None, holes, mask)
            if net is None or rng.random() < 0.12:  # some pads stay unrouted in this tile
                continue
            lay.route(_offset(path, d), w, net, "none", end)


def _add_bus(lay: _Layout) -> None:
    """A bundle of parallel traces entering from a tile edge (very common in DeepPCB)."""
    rng, s = lay.rng, lay.size
    n = int(rng.integers(2, 8))
    width = lay.width
    pitch = width + lay.gap + 3 + int(rng.integers(0, 10))
    k_in = int(rng.integers(4)) * 2
    u, nrm = _DIRS[k_in], _normal(k_in)
    # Start just outside the tile on the edge the bus heads away from.
    start = np.full(2, s / 2) - u * (s / 2 + 30) + nrm * rng.uniform(-0.35 * s, 0.35 * s)
    offs = (np.arange(n) - (n - 1) / 2) * pitch
    min_len = max(40.0, 0.85 * float(np.abs(offs).max()) + 20)
    path = _walk(rng, start, k_in, int(rng.integers(2, 6)), min_len, 0.6 * s)
    end = lay.pick_terminal(0.5)
    for d in offs:
        lay.route(_offset(path, d), width, None, "none", end)


def _add_net(lay: _Layout) -> None:
    """A short point-to-point connection between pads/vias, sometimes a wide power trace."""
    rng, s = lay.rng, lay.size
    start = rng.uniform(0, s, 2)
    path = _walk(rng, start, int(rng.integers(8)), int(rng.integers(1, 5)), 30.0, 0.45 * s)
    width = lay.width
    if rng.random() < 0.15:
        width = min(2 * width, width + int(rng.integers(4, 14)))
    lay.route(path, width, None, lay.pick_terminal(0.1), lay.pick_terminal(0.1))


def _add_pour(lay: _Layout, limit: float) -> bool:
    """Fill a chamfered rectangle with copper, keeping clearance to everything placed so far."""
    rng, s = lay.rng, lay.size
    w, h = rng.uniform(0.2 * s, 0.75 * s, 2)
    x0, y0 = rng.uniform(-0.2 * s, s - 0.6 * w), rng.uniform(-0.2 * s, s - 0.6 * h)
    x1, y1 = x0 + w, y0 + h
    cut = [rng.uniform(0, min(w, h) / 3) if rng.random() < 0.5 else 0.0 for _ in range(4)]
    poly = np.array(
        [
            (x0 + cut[0], y0), (x1 - cut[1], y0), (x1, y0 + cut[1]), (x1, y1 - cut[2]),
            (x1 - cut[2], y1), (x0 + cut[3], y1), (x0, y1 - cut[3]), (x0, y0 + cut[0]),
        ]
    )
    region = lay.blank()
    cv2.fillPoly(region, [np.round(poly).astype(np.int32)], 1)
    clearance = lay.gap + 1 + int(rng.integers(0, 8))
    keep_out = cv2.dilate((lay.nets != 0).astype(np.uint8), _disk(clearance))
    pour = region & (1 - keep_out)
    # Opening removes the slivers a real CAM tool would not pour (thinner than a trace).
    pour = cv2.morphologyEx(pour, cv2.MORPH_OPEN, _disk(lay.width // 2 + 1))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(pour, connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    placed = False
    # Each island is its own net and must keep the gap to the others too: the opening can
    # leave two islands a few pixels apart where it cut a thin neck.
    for i in np.argsort(-areas, kind="stable") + 1:
        area = int(stats[i, cv2.CC_STAT_AREA])
        if area < 2000 or lay.copper_fraction() + area / lay.nets.size > limit:
            continue
        placed |= lay.place((labels == i).astype(np.uint8)) is not None
    return placed


@dataclass(frozen=True)
class BoardLayout:
    """A procedural board's copper and what a colour rendering needs to know about it."""

    board: np.ndarray  # uint8, copper 0, substrate 255: what draw_board returns
    pads: np.ndarray  # bool, copper of pads, vias' annular rings and component pads
    holes: np.ndarray  # bool, drilled holes (substrate in ``board``)


def draw_board(rng: np.random.Generator, size: int = 640) -> np.ndarray:
    """Draw a defect-free binarized PCB tile (``size`` x ``size`` uint8, copper 0, substrate 255).

    Traces are 8-14 px wide at 0/45/90 degrees, different nets keep at least 10 px apart, and
    pads, vias and copper pours bring the copper fraction into ``COPPER_FRACTION_RANGE``.
    """
    return draw_layout(rng, size).board


def draw_layout(rng: np.random.Generator, size: int = 640) -> BoardLayout:
    """:func:`draw_board`'s tile with its pads and drill holes: the same draws from ``rng``,
    so the same generator state gives the same ``board``."""
    if size < 64:
        raise ValueError(f"size must be >= 64, got {size}")
    lay = _Layout(rng, size)
    scale = (size / 640.0) ** 2
    for _ in range(int(rng.integers(0, 3))):
        _add_component(lay)
    for _ in range(int(rng.integers(1, 4))):
        _add_bus(lay)
    for _ in range(max(1, int(rng.integers(15, 45) * scale))):
        _add_net(lay)
    for _ in range(int(rng.integers(0, 12) * scale)):
        p = rng.uniform(0, size, 2)
        mask = lay.blank()
        lay.place(mask, None, lay.terminal((mask,), p, "via"), mask)
    lo, hi = COPPER_FRACTION_RANGE
    target = rng.uniform(lo + 0.04, hi - 0.07)
    limit = hi - 0.02  # holes are punched later, so stay a little below the top
    for _ in range(40):
        if lay.copper_fraction() >= target:
            break
        _add_pour(lay, limit)
    # Last resort for sparse layouts: more small nets until the floor is reached.
    for _ in range(400):
        if lay.copper_fraction() >= lo + 0.01:
            break
        _add_net(lay)
    img = np.full((size, size), SUBSTRATE, np.uint8)
    img[lay.nets != 0] = COPPER
    holes = np.zeros((size, size), np.uint8)
    for x, y, r in lay.holes:
        cv2.circle(img, (x, y), r, SUBSTRATE, -1)
        cv2.circle(holes, (x, y), r, 1, -1)
    return BoardLayout(board=img, pads=(lay.pads > 0) & (img == COPPER), holes=holes > 0)


def render_photo_like(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Synthetic stand-in for a natural photograph (uint8 BGR): gradients, shapes, grain, blur."""
    if height < 1 or width < 1:
        raise ValueError(f"height and width must be positive, got {height}x{width}")
    corners = rng.uniform(0, 255, (2, 2, 3)).astype(np.float32)
    img = cv2.resize(corners, (width, height), interpolation=cv2.INTER_LINEAR)
    gh, gw = max(2, height // 60), max(2, width // 60)
    blotches = rng.normal(0, 25, (gh, gw, 3)).astype(np.float32)
    img += cv2.resize(blotches, (width, height), interpolation=cv2.INTER_CUBIC)
    img = np.clip(img, 0, 255).astype(np.uint8)
    m = min(height, width)
    for _ in range(int(rng.integers(4, 12))):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        c = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        shape = int(rng.integers(4))
        if shape == 0:
            axes = (int(rng.uniform(0.05, 0.35) * m) + 1, int(rng.uniform(0.05, 0.35) * m) + 1)
            angle = float(rng.uniform(0, 180))
            cv2.ellipse(img, c, axes, angle, 0, 360, colour, -1, cv2.LINE_AA)
        elif shape == 1:
            d = (rng.uniform(0.05, 0.4, 2) * m).astype(int)
            cv2.rectangle(img, c, (c[0] + int(d[0]), c[1] + int(d[1])), colour, -1, cv2.LINE_AA)
        elif shape == 2:
            pts = rng.uniform(-0.3, 0.3, (int(rng.integers(3, 7)), 2)) * m + np.array(c)
            cv2.fillPoly(img, [pts.astype(np.int32)], colour, cv2.LINE_AA)
        else:
            p2 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            cv2.line(img, c, p2, colour, max(1, int(rng.uniform(0.005, 0.03) * m)), cv2.LINE_AA)
    grain = rng.normal(0, 4, img.shape).astype(np.float32)
    out = cv2.GaussianBlur(img.astype(np.float32) + grain, (0, 0), float(rng.uniform(0.8, 1.6)))
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- test defects


def _pick(rng: np.random.Generator, candidates: np.ndarray, n: int) -> np.ndarray:
    """Up to ``n`` distinct random rows of an (N, 2) (y, x) candidate array."""
    if len(candidates) == 0:
        return candidates
    idx = rng.permutation(len(candidates))[:n]
    return candidates[idx]


def _spur(out: np.ndarray, copper: np.ndarray, rng: np.random.Generator) -> bool:
    """A stub of copper sticking out of a conductor edge into open substrate."""
    dsub = cv2.distanceTransform(1 - copper, cv2.DIST_L2, 5)
    _, labels = cv2.connectedComponents(copper, connectivity=8)
    gx = cv2.Sobel(dsub, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(dsub, cv2.CV_32F, 0, 1, ksize=3)
    h, w = copper.shape
    for _ in range(4):
        length = int(rng.integers(7, 12))
        thick = int(rng.integers(6, 10))
        # Tip sits ``length`` px out; open substrate beyond it keeps the spur from shorting.
        cands = np.argwhere(np.abs(dsub - length) < 0.5)
        for y, x in _pick(rng, cands, 40):
            g = np.array([gx[y, x], gy[y, x]], dtype=np.float64)
            if np.linalg.norm(g) < 1e-3:
                continue
            g /= np.linalg.norm(g)
            base = np.array([x, y]) - g * (length + 2)
            tip = np.array([x, y], dtype=np.float64)
            trial = out.copy()
            cv2.line(trial, _ipt(base), _ipt(tip), COPPER, thick, cv2.LINE_8)
            new = ((trial != out) & (copper == 0)).astype(np.uint8)
            if np.count_nonzero(new) < 40:
                continue
            touched = cv2.dilate(new, _disk(6)) & copper
            if len(np.unique(labels[touched > 0])) != 1:
                continue
            if not (0 < x < w - 1 and 0 < y < h - 1):
                continue
            out[:] = trial
            return True
    return False


def _pinhole(out: np.ndarray, copper: np.ndarray, rng: np.random.Generator) -> bool:
    """A round void strictly inside copper."""
    dcu = cv2.distanceTransform(copper, cv2.DIST_L2, 5)
    for r in (int(rng.integers(4, 7)), 5, 4):
        cands = np.argwhere(dcu >= r + 3)
        for y, x in _pick(rng, cands, 1):
            cv2.circle(out, (int(x), int(y)), r, SUBSTRATE, -1)
            return True
    return False


def _short(out: np.ndarray, copper: np.ndarray, rng: np.random.Generator) -> bool:
    """A copper bridge across the narrowest kind of gap between two different conductors."""
    _, lab8 = cv2.connectedComponents(copper, connectivity=8)
    dsub, near = cv2.distanceTransformWithLabels(
        1 - copper, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_CCOMP
    )
    # Substrate pixels where the nearest conductor changes sit on the midline of a gap.
    edge = np.zeros_like(copper, dtype=bool)
    edge[:, :-1] |= near[:, :-1] != near[:, 1:]
    edge[:-1, :] |= near[:-1, :] != near[1:, :]
    cands = np.argwhere(edge & (copper == 0) & (dsub >= 3) & (dsub <= 11))
    h, w = copper.shape
    for y, x in _pick(rng, cands, 60):
        y0, y1, x0, x1 = max(y - 30, 0), min(y + 31, h), max(x - 30, 0), min(x + 31, w)
        win = lab8[y0:y1, x0:x1]
        ids = [i for i in np.unique(win[copper[y0:y1, x0:x1] > 0]) if i != 0]
        if len(ids) < 2:
            continue
        ends = []
        for i in ids:
            pts = np.argwhere(win == i) + (y0, x0)
            dist = np.hypot(pts[:, 0] - y, pts[:, 1] - x)
            ends.append((float(dist.min()), pts[int(dist.argmin())]))
        ends.sort(key=lambda e: e[0])
        (_, a), (_, b) = ends[0], ends[1]
        trial = out.copy()
        thick = int(rng.integers(6, 11))
        cv2.line(trial, (int(a[1]), int(a[0])), (int(b[1]), int(b[0])), COPPER, thick, cv2.LINE_8)
        if np.count_nonzero(trial != out) >= 40:
            out[:] = trial
            return True
    return False


def _open(out: np.ndarray, copper: np.ndarray, rng: np.random.Generator) -> bool:
    """A cut straight across a trace, in a straight stretch away from pads."""
    dcu = cv2.distanceTransform(copper, cv2.DIST_L2, 5)
    ridge = (dcu >= cv2.dilate(dcu, np.ones((3, 3), np.uint8))) & (dcu >= 3.5) & (dcu <= 8)
    cands = np.argwhere(ridge)
    h, w = copper.shape
    for y, x in _pick(rng, cands, 80):
        d = float(dcu[y, x])
        rad = int(2 * d + 8)
        y0, y1, x0, x1 = max(y - rad, 0), min(y + rad + 1, h), max(x - rad, 0), min(x + rad + 1, w)
        if y1 - y0 < 2 * rad or x1 - x0 < 2 * rad:
            continue
        if dcu[y0:y1, x0:x1].max() > d + 1.5:  # a pad or pour nearby, not a plain trace
            continue
        pts = np.argwhere(copper[y0:y1, x0:x1] > 0).astype(np.float64)
        cov = np.cov((pts - pts.mean(axis=0)).T)
        evals, evecs = np.linalg.eigh(cov)
        if evals[1] < 6 * max(evals[0], 1e-6):  # not a straight stretch
            continue
        along = evecs[:, 1][::-1]  # (y, x) eigenvector -> (x, y)
        across = np.array([-along[1], along[0]])
        half_len = int(rng.integers(3, 6))
        half_w = d + 4
        c = np.array([x, y], dtype=np.float64)
        quad = np.array(
            [
                c + along * half_len + across * half_w,
                c + along * half_len - across * half_w,
                c - along * half_len - across * half_w,
                c - along * half_len + across * half_w,
            ]
        )
        trial = out.copy()
        cv2.fillPoly(trial, [np.round(quad).astype(np.int32)], SUBSTRATE)
        if np.count_nonzero(trial != out) < 40:
            continue
        after = (trial[y0:y1, x0:x1] == COPPER).astype(np.uint8)
        n_after, _ = cv2.connectedComponents(after, connectivity=8)
        n_before, _ = cv2.connectedComponents(copper[y0:y1, x0:x1], connectivity=8)
        if n_after <= n_before:  # the cut must actually split the conductor
            continue
        out[:] = trial
        return True
    return False


_DEFECTS = {"spur": _spur, "pinhole": _pinhole, "short": _short, "open": _open}


def add_local_defect(
    board: np.ndarray, rng: np.random.Generator, kind: str
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Add one small defect of ``kind`` to a binarized board (test fixtures only).

    Returns a new array and the tight box ``(x1, y1, x2, y2)`` of the changed pixels, with
    exclusive ends, so ``result[y1:y2, x1:x2]`` holds every change. Raises ``ValueError`` for
    an unknown kind or when the board has no sensible spot for it.
    """
    if kind not in _DEFECTS:
        raise ValueError(f"unknown defect kind {kind!r}; valid kinds: {', '.join(DEFECT_KINDS)}")
    if board.ndim != 2 or board.dtype != np.uint8:
        raise ValueError("board must be a 2-D uint8 binarized image")
    copper = (board < 128).astype(np.uint8)
    out = np.where(copper > 0, COPPER, SUBSTRATE).astype(np.uint8)
    if not _DEFECTS[kind](out, copper, rng):
        raise ValueError(f"no place for a {kind!r} defect on this board")
    binary = out.copy()
    # Unchanged pixels keep the caller's exact values; only the defect differs.
    changed = binary != np.where(copper > 0, COPPER, SUBSTRATE)
    result = board.copy()
    result[changed] = binary[changed]
    ys, xs = np.nonzero(changed)
    return result, (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
