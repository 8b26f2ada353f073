"""The checks of one tested/template pair: a pure function any engine maps.

After registration (:mod:`pcbforge.qa.register`) the tested image is compared with the
registered template (:mod:`pcbforge.qa.changes`: changed pixels under an edge tolerance,
grouped into regions, and how far a local shift of the template explains them), and the
boxes are checked against the changes:

- ``missing_label``: a region no box covers; ``misregistration_like`` when shifting the
  template locally by a few px explains it (a pad displaced in the second scan) or it is
  a thin band along an edge (an edge displaced), ``at_border`` at the image border (the
  images cut a little differently), ``template_defect`` when the template has a hole or
  an island the tested image lacks, ``defect_like`` otherwise, with a proposed box and
  class;
- ``empty_box``: a box with (almost) no change inside, thick or thin;
- ``misplaced_box``: an empty box with an unexplained defect-like region of similar size
  and the same polarity nearby (the region is then not also a ``missing_label``);
- ``class_suspect``: the change in a box has the polarity its class forbids (copper added
  under open/mousebite/pin-hole, removed under short/spur/copper), or connectivity says
  otherwise (a short that joins nothing, a spur or copper that joins two conductors);
- ``box_fit``: ``too_large`` (the box is many times its padded change) or ``cuts_change``
  (a region leaves the box by a large share);
- ``misregistered`` and ``pair_error`` for the pair itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from pcbforge.core.decode import canonical_pixels, decode_image_bytes, to_gray_uint8
from pcbforge.core.files import DEFAULT_MAX_FILE_BYTES, UnreadableFileError, read_regular_file
from pcbforge.datasets.qa_tables import (
    ADD,
    BOX_FIT,
    CLASS_SUSPECT,
    DELETE,
    EMPTY_BOX,
    MISPLACED_BOX,
    MISREGISTERED,
    MISSING_LABEL,
    MOVE,
    NONE,
    PAIR_ERROR,
    REFIT,
    RELABEL,
    finding_id,
)
from pcbforge.qa.changes import (
    KERNEL3,
    Difference,
    Region,
    aligned_change,
    difference,
    explained_by_shift,
    regions_of,
    shift_fit,
)
from pcbforge.qa.params import QAParams
from pcbforge.qa.register import Registration, apply_registration, register
from pcbforge.synth.registry import class_names, defect_spec
from pcbforge.synth.topology import check_topology

#: Classes tried, in this order, when a change needs a class: the first whose rule holds.
_ADDING = ("short", "spur", "copper")
_REMOVING = ("open", "pin-hole", "mousebite")
#: A change no further than this from a template edge (px) everywhere, this many times
#: longer than thick and at least this long (px; about 1 mm at DeepPCB's scale, longer
#: than a bite or a spur), is an edge displaced in the scan (see :func:`edge_band`).
EDGE_BAND_PX = 4.0
EDGE_BAND_ELONGATION = 4.0
EDGE_BAND_MIN_LENGTH_PX = 50.0
#: An unlabelled change this close to the image border (px) is ``at_border``: the two
#: images of a pair are often cut from the scan a little differently.
BORDER_PX = 3
#: A template hole or island the tested image fills this much is the template's defect.
TEMPLATE_FILL = 0.8


@dataclass(frozen=True)
class Box:
    row: int  # in labels.parquet
    label: str
    x1: float
    y1: float
    x2: float
    y2: float

    def slices(self, shape: tuple[int, int]) -> tuple[slice, slice]:
        height, width = shape
        return (slice(max(0, int(math.floor(self.y1))), min(height, int(math.ceil(self.y2)))),
                slice(max(0, int(math.floor(self.x1))), min(width, int(math.ceil(self.x2)))))

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        return self.x1, self.y1, self.x2, self.y2


@dataclass(frozen=True)
class PairJob:
    """What :func:`check_pair` needs of one tested image (picklable)."""

    sample_id: str
    tested: str  # file path
    template: str  # file path ("" when the sample names none)
    boxes: tuple[Box, ...] = ()
    nuisance: tuple[tuple[float, float, float, float], ...] = ()
    params: QAParams = field(default_factory=QAParams)
    register_to: str = ""  # write the registered template here (PNG) when set
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES


@dataclass
class PairResult:
    sample_id: str
    registration: dict | None  # a qa_registration row (None when the pair could not load)
    findings: list[dict]


# --- reading ------------------------------------------------------------------------------


class PairError(Exception):
    def __init__(self, detail: str, reason: str):
        super().__init__(reason)
        self.detail, self.reason = detail, reason


def read_gray(path: str, which: str, max_bytes: int) -> np.ndarray:
    """The image at ``path`` as uint8 grey; :class:`PairError` naming ``which`` when it is
    missing or unreadable."""
    if not path:
        raise PairError(f"missing_{which}", f"the sample names no {which} image")
    try:
        data = read_regular_file(path, max_bytes)
    except FileNotFoundError:
        raise PairError(f"missing_{which}", f"{which} {path} does not exist") from None
    except UnreadableFileError as err:
        raise PairError(f"unreadable_{which}", f"{which} {path}: {err.detail}") from None
    except OSError as err:
        raise PairError(f"unreadable_{which}",
                        f"{which} {path}: {err.strerror or err}") from None
    decoded = decode_image_bytes(data)
    if not decoded.ok:
        raise PairError(f"unreadable_{which}", f"{which} {path}: {decoded.detail}")
    return to_gray_uint8(canonical_pixels(decoded.pixels))


# --- helpers ------------------------------------------------------------------------------


def _padded(bbox: tuple, pad: float, shape: tuple[int, int]) -> tuple[float, ...]:
    height, width = shape
    x1, y1, x2, y2 = bbox
    return (max(0.0, x1 - pad), max(0.0, y1 - pad), min(float(width), x2 + pad),
            min(float(height), y2 + pad))


def _area(box: tuple) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def _box_mask(boxes, shape: tuple[int, int]) -> np.ndarray:
    """True inside any of ``boxes`` (:class:`Box` or ``x1, y1, x2, y2``)."""
    mask = np.zeros(shape, bool)
    for box in boxes:
        box = box if isinstance(box, Box) else Box(-1, "", *box)
        mask[box.slices(shape)] = True
    return mask


def _row(job: PairJob, kind: str, detail: str, score: float, reason: str, where: tuple,
         box: Box | None = None, action: str = NONE, proposed_label: str = "",
         proposed: tuple | None = None) -> dict:
    row = -1 if box is None else box.row
    where = tuple(round(float(v), 1) for v in where)
    proposed = (math.nan,) * 4 if proposed is None else tuple(
        round(float(v), 1) for v in proposed)
    return {
        "finding_id": finding_id(job.sample_id, kind, row, where), "sample_id": job.sample_id,
        "kind": kind, "detail": detail, "score": round(float(min(max(score, 0.0), 1.0)), 3),
        "reason": reason, "label_row": row, "label": "" if box is None else box.label,
        "x1": where[0], "y1": where[1], "x2": where[2], "y2": where[3], "action": action,
        "proposed_label": proposed_label, "px1": proposed[0], "py1": proposed[1],
        "px2": proposed[2], "py2": proposed[3],
    }


def _known(label: str) -> bool:
    return label in class_names()


def propose_class(diff: Difference, window: tuple[float, ...], adds: bool) -> str:
    """The first class of the change's polarity whose topology rule holds in ``window``
    (the last one of them when none does)."""
    box = Box(-1, "", *window)
    part = box.slices(diff.tested.shape)
    before, after = diff.copper(diff.template[part]), diff.copper(diff.tested[part])
    order = _ADDING if adds else _REMOVING
    for name in order:
        ok, _ = check_topology(name, before, after)
        if ok:
            return name
    return order[-1]


# --- the checks ---------------------------------------------------------------------------


def _registration_row(job: PairJob, reg: Registration, params: QAParams) -> dict:
    reasons = []
    if not reg.found:
        reasons.append("no structure to register on")
    if reg.shift > params.shift_tolerance_px:
        reasons.append(f"shifted {reg.shift:.1f} px (dx {reg.dx:+.1f}, dy {reg.dy:+.1f}) > "
                       f"{params.shift_tolerance_px:g}")
    if abs(reg.rotation_deg) > params.rotation_tolerance_deg:
        reasons.append(f"rotated {reg.rotation_deg:+.2f} deg > "
                       f"{params.rotation_tolerance_deg:g}")
    if reg.residual_p95 > params.residual_tolerance_px:
        reasons.append(f"local displacement p95 {reg.residual_p95:.1f} px > "
                       f"{params.residual_tolerance_px:g}")
    return {"sample_id": job.sample_id, "dx": round(reg.dx, 3), "dy": round(reg.dy, 3),
            "rotation_deg": round(reg.rotation_deg, 4),
            "residual_p95": round(reg.residual_p95, 3), "tiles": reg.tiles,
            "misregistered": bool(reasons), "reason": "; ".join(reasons),
            "registered_template": ""}


def _misregistration_finding(job: PairJob, reg: Registration, row: dict,
                             shape: tuple[int, int]) -> dict:
    params = job.params
    # The detail names the largest excess over its tolerance.
    excess = {
        "shift": reg.shift / max(params.shift_tolerance_px, 1e-9),
        "rotation": abs(reg.rotation_deg) / max(params.rotation_tolerance_deg, 1e-9),
        "local": reg.residual_p95 / max(params.residual_tolerance_px, 1e-9),
    }
    detail = "unregistrable" if not reg.found else max(excess, key=excess.get)
    score = 1.0 if not reg.found else 1.0 - 1.0 / max(excess.values())
    height, width = shape
    return _row(job, MISREGISTERED, detail, max(score, 0.5), row["reason"],
                (0, 0, width, height))


def _box_checks(job: PairJob, diff: Difference, regions: list[Region]
                ) -> tuple[list[dict], list[Box], list[Region]]:
    """Findings about the boxes that have a change; the empty boxes; the regions no box
    covers."""
    params, shape = job.params, diff.tested.shape
    findings, empty = [], []
    covered = _box_mask(job.boxes, shape)
    for box in job.boxes:
        part = box.slices(shape)
        inside = diff.changed[part] > 0
        count = int(inside.sum())
        if count < params.empty_box_px:
            # A hairline short or a shallow bite has no thick change, but thin ones: the
            # class is judged on those.
            thin_mask = (diff.added[part] | diff.removed[part]) > 0
            thin = int(thin_mask.sum())
            if thin >= params.empty_box_px and params.local_shift_px > 0:
                # Thin changes along edges the scan displaced are not a defect: count
                # them with the template aligned to the features around the box.
                thin = min(thin, sum(aligned_change(diff, part, params.local_shift_px)))
            if thin < params.empty_box_px:
                empty.append(box)
            else:
                findings += _class_checks(job, diff, box, part, thin_mask, int(thin_mask.sum()))
            continue
        findings += _class_checks(job, diff, box, part, inside, count)
        # A crack is a thin change: the box's extent is judged on thin changes too.
        findings += _too_large(job, box, part,
                               inside | ((diff.added[part] | diff.removed[part]) > 0), shape)
    unexplained = []
    for region in regions:
        in_boxes = int(covered[region.window][region.mask].sum())
        if in_boxes == 0:
            unexplained.append(region)
            continue
        outside = region.area - in_boxes
        if outside >= params.min_region_px and outside / region.area >= params.cut_share \
                and not _displaced(diff, region, covered, params):
            findings.append(_cut(job, region, outside, shape))
    nuisance = _box_mask(job.nuisance, shape) if job.nuisance else None
    kept = []
    for region in unexplained:
        if nuisance is not None and nuisance[region.window][region.mask].mean() >= 0.5:
            continue  # recorded background nuisance (a synthetic image's), not a defect
        if region.area >= params.min_region_px:
            kept.append(region)
    return findings, empty, kept


def _displaced(diff: Difference, region: Region, covered: np.ndarray, params: QAParams
               ) -> bool:
    """Whether the part of ``region`` outside every box is a feature displaced in the scan
    (next to the defect), rather than the defect going on past its box."""
    mask = region.mask & ~covered[region.window]
    ys, xs = np.nonzero(mask)
    y0, x0 = region.window[0].start, region.window[1].start
    outside = Region(mask, region.window, int(mask.sum()), 0, 0,
                     (x0 + int(xs.min()), y0 + int(ys.min()), x0 + int(xs.max()) + 1,
                      y0 + int(ys.max()) + 1))
    return explained_by_shift(diff, outside, params.local_shift_px) >= params.local_shift_share


def _class_checks(job: PairJob, diff: Difference, box: Box, part, inside: np.ndarray,
                  count: int) -> list[dict]:
    if not _known(box.label):
        return []
    params = job.params
    added = int(diff.added[part][inside].sum())
    removed = int(diff.removed[part][inside].sum())
    adds = defect_spec(box.label).adds_copper
    wrong = removed if adds else added
    share = wrong / max(added + removed, 1)
    if share >= params.polarity_share and params.local_shift_px > 0:
        # An edge displaced in the scan around a bite or a spur has the other polarity:
        # judge the change once the template is aligned locally.
        added, removed = aligned_change(diff, part, params.local_shift_px)
        wrong = removed if adds else added
        share = wrong / max(added + removed, 1) \
            if added + removed >= params.empty_box_px else 0.0
    if share >= params.polarity_share:
        proposed = propose_class(diff, box.xyxy, adds=not adds)
        what = "removes" if adds else "adds"
        return [_row(job, CLASS_SUSPECT, "polarity", share,
                     f"{box.label} box: the change {what} copper ({share:.0%} of {count} px), "
                     f"which a {box.label} cannot; looks like {proposed}",
                     box.xyxy, box, RELABEL, proposed)]
    if not adds:
        # Cracks are labelled open where they do not cut the conductor through (a crack in
        # a wide pour), and a bite from a hole turns on one pixel: for copper removed, the
        # polarity is the evidence that holds up.
        return []
    before, after = diff.copper(diff.template[part]), diff.copper(diff.tested[part])
    ok, why = check_topology(box.label, before, after)
    if ok:
        return []
    for name in _ADDING:
        # Connectivity: a short that joins nothing, a spur or copper that joins two
        # conductors (a spur against an island turns on a pixel of contact).
        if "short" not in (name, box.label):
            continue
        if name != box.label and check_topology(name, before, after)[0]:
            return [_row(job, CLASS_SUSPECT, "topology", 0.6,
                         f"{box.label} box: {why}; the change is what a {name} does",
                         box.xyxy, box, RELABEL, name)]
    return []


def _too_large(job: PairJob, box: Box, part, inside: np.ndarray, shape) -> list[dict]:
    params = job.params
    ys, xs = np.nonzero(inside)
    y0, x0 = part[0].start, part[1].start
    change = (x0 + int(xs.min()), y0 + int(ys.min()), x0 + int(xs.max()) + 1,
              y0 + int(ys.max()) + 1)
    fitted = _padded(change, params.pad_px, shape)
    fitted = (max(fitted[0], box.x1), max(fitted[1], box.y1), min(fitted[2], box.x2),
              min(fitted[3], box.y2))
    ratio = _area(box.xyxy) / max(_area(fitted), 1.0)
    if ratio <= params.too_large_ratio:
        return []
    return [_row(job, BOX_FIT, "too_large", 1.0 - params.too_large_ratio / ratio,
                 f"{box.label} box is {ratio:.1f}x the area of its change (padded "
                 f"{params.pad_px} px)", box.xyxy, box, REFIT, box.label, fitted)]


def _cut(job: PairJob, region: Region, outside: int, shape) -> dict:
    params = job.params
    # The box that holds most of the region.
    best, best_count = None, -1
    for box in job.boxes:
        part = box.slices(shape)
        mask = np.zeros(shape, bool)
        mask[part] = True
        count = int(mask[region.window][region.mask].sum())
        if count > best_count:
            best, best_count = box, count
    grown = _padded(region.bbox, params.pad_px, shape)
    proposed = (min(best.x1, grown[0]), min(best.y1, grown[1]), max(best.x2, grown[2]),
                max(best.y2, grown[3]))
    share = outside / region.area
    return _row(job, BOX_FIT, "cuts_change", share,
                f"{best.label} box cuts its change: {outside} of {region.area} changed px "
                f"({share:.0%}) lie outside it", best.xyxy, best, REFIT, best.label, proposed)


def _placements(job: PairJob, diff: Difference, empty: list[Box], regions: list[Region],
                defects: list[int]) -> tuple[list[dict], set[int]]:
    """Empty boxes: moved off an unexplained defect-like change nearby (``misplaced_box``;
    ``defects``: the indexes of the regions that are), or boxes of nothing
    (``empty_box``). Returns the findings and the regions used.

    The change a box was moved off may be one region or a few fragments (a crack broken by
    the scan): the regions of the box's polarity whose joint extent fits in the box."""
    params, shape = job.params, diff.tested.shape
    findings, used = [], set()
    for box in empty:
        cx, cy = (box.x1 + box.x2) / 2, (box.y1 + box.y2) / 2
        area = max(_area(box.xyxy), 1.0)
        eligible = [index for index in defects
                    if index not in used and (not _known(box.label) or defect_spec(
                        box.label).adds_copper == regions[index].adds)]
        best, best_bbox, best_distance = None, None, math.inf
        for index in eligible:
            group, bbox = _fragments(box, index, eligible, regions)
            size = max(_area(_padded(bbox, params.pad_px, shape)), 1.0)
            if not 0.25 <= size / area <= 4.0:
                continue
            distance = math.hypot((bbox[0] + bbox[2]) / 2 - cx, (bbox[1] + bbox[3]) / 2 - cy)
            if distance <= params.misplaced_radius_px and distance < best_distance:
                best, best_bbox, best_distance = group, bbox, distance
        if best is None:
            count = int((diff.changed[box.slices(shape)] > 0).sum())
            findings.append(_row(
                job, EMPTY_BOX, "no_change", 1.0 - count / max(params.empty_box_px, 1),
                f"{box.label} box: nothing changes inside ({count} changed px)",
                box.xyxy, box, DELETE))
            continue
        used.update(best)
        parts = f" ({len(best)} fragments)" if len(best) > 1 else ""
        findings.append(_row(
            job, MISPLACED_BOX, "moved", 1.0 - best_distance / max(
                params.misplaced_radius_px, 1) / 2,
            f"{box.label} box: nothing changes inside, and an unlabelled change of its "
            f"size{parts} is {best_distance:.0f} px away", box.xyxy, box, MOVE, box.label,
            _moved_box(box, best_bbox, params.pad_px, shape)))
    return findings, used


def _fragments(box: Box, seed: int, eligible: list[int], regions: list[Region]
               ) -> tuple[list[int], tuple[int, int, int, int]]:
    """``seed`` and the other ``eligible`` regions of its polarity that fit, all together,
    in a box of ``box``'s size (nearest first); and their joint extent."""
    width, height = box.x2 - box.x1, box.y2 - box.y1
    group, bbox = [seed], regions[seed].bbox
    adds = regions[seed].adds
    sx, sy = regions[seed].centre
    for index in sorted(eligible, key=lambda i: math.hypot(regions[i].centre[0] - sx,
                                                            regions[i].centre[1] - sy)):
        if index == seed or regions[index].adds != adds:
            continue
        other = regions[index].bbox
        joint = (min(bbox[0], other[0]), min(bbox[1], other[1]), max(bbox[2], other[2]),
                 max(bbox[3], other[3]))
        if joint[2] - joint[0] <= width and joint[3] - joint[1] <= height:
            group.append(index)
            bbox = joint
    return group, bbox


def _moved_box(box: Box, bbox: tuple[int, int, int, int], pad: int, shape
               ) -> tuple[float, ...]:
    """The box centred on the change ``bbox``, keeping its size when the change fits."""
    x1, y1, x2, y2 = bbox
    width, height = box.x2 - box.x1, box.y2 - box.y1
    if x2 - x1 + 2 <= width and y2 - y1 + 2 <= height:
        cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
        image_h, image_w = shape
        left = min(max(cx - width / 2, 0.0), max(image_w - width, 0.0))
        top = min(max(cy - height / 2, 0.0), max(image_h - height, 0.0))
        return left, top, left + width, top + height
    return _padded(bbox, pad, shape)


def covered_by_template(reg: Registration, shape: tuple[int, int], params: QAParams
                        ) -> np.ndarray | None:
    """uint8 0/1: where the registered template has pixels of its own (not the border
    the warp replicated), less the edge tolerance; ``None`` when that is everywhere."""
    height, width = shape
    if reg.shift < 0.5 and abs(reg.rotation_deg) < 0.01:
        return None
    valid = cv2.warpAffine(np.ones(shape, np.uint8), reg.matrix, (width, height),
                           flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                           borderValue=0)
    return cv2.erode(valid, KERNEL3, iterations=params.edge_tolerance_px + 1,
                     borderType=cv2.BORDER_CONSTANT, borderValue=1)


def edge_band(diff: Difference, region: Region) -> bool:
    """Whether ``region`` is a long thin band along a template edge: at most
    :data:`EDGE_BAND_PX` from it everywhere, :data:`EDGE_BAND_ELONGATION` times longer
    than thick, at least :data:`EDGE_BAND_MIN_LENGTH_PX` long, and one with the material
    beyond that edge (:func:`_attached`): an edge displaced or thickened in the second
    scan, not a defect. Bites, spurs and shorts along an edge are shorter."""
    ys, xs = np.nonzero(region.mask)
    (_, _), (w, h), _ = cv2.minAreaRect(np.stack([xs, ys], 1).astype(np.float32))
    length, thickness = max(w, h), max(min(w, h), 1.0)
    if length < EDGE_BAND_MIN_LENGTH_PX or length < EDGE_BAND_ELONGATION * thickness:
        return False
    height, width = diff.tested.shape
    ry, rx = region.window
    grow = int(EDGE_BAND_PX) + 2
    wy = slice(max(0, ry.start - grow), min(height, ry.stop + grow))
    wx = slice(max(0, rx.start - grow), min(width, rx.stop + grow))
    copper = diff.copper(diff.template[wy, wx])
    boundary = copper ^ cv2.erode(copper, KERNEL3, borderType=cv2.BORDER_REPLICATE)
    if not boundary.any():
        return False
    distance = cv2.distanceTransform((1 - boundary).astype(np.uint8), cv2.DIST_L2, 3)
    mask = np.zeros(copper.shape, bool)
    mask[ry.start - wy.start:ry.stop - wy.start, rx.start - wx.start:rx.stop - wx.start] = \
        region.mask
    if float(distance[mask].max()) > EDGE_BAND_PX:
        return False
    return _attached(diff.copper(diff.tested[wy, wx]), copper, mask, region.adds)


def _attached(tested: np.ndarray, template: np.ndarray, mask: np.ndarray, adds: bool
              ) -> bool:
    """Whether the changed px (``mask``) belong, in the tested image, to the copper the
    template has there (``adds``: a widened edge) or to the substrate it has (a narrowed
    edge), joined side by side (4-connected): a crack or hole inside a trace, or an island
    beside it, is enclosed by the other material and is not a displaced edge."""
    side = tested if adds else (1 - tested)
    n, labels = cv2.connectedComponents(side.astype(np.uint8), connectivity=4)
    if n <= 1:
        return False
    touched = np.unique(labels[mask & (side > 0)])
    touched = touched[touched > 0]
    beyond = (template > 0) if adds else (template == 0)
    return bool(np.isin(labels[beyond & ~mask], touched).any())


def template_defect(diff: Difference, region: Region, window: tuple[float, ...]) -> bool:
    """Whether the change is a defect of the template rather than of the tested image: the
    template has a hole (the change adds copper) or a copper island (it removes copper)
    inside ``window``, the tested image fills at least :data:`TEMPLATE_FILL` of it, and
    the change is mostly that hole or island. A short that closes part of a gap, or an
    open in a trace, leaves the template's gap or trace only partly changed."""
    part = Box(-1, "", *window).slices(diff.tested.shape)
    tested, template = diff.copper(diff.tested[part]), diff.copper(diff.template[part])
    own = (1 - template) if region.adds else template  # a hole's px, or an island's
    n, labels, stats, _ = cv2.connectedComponentsWithStats(own, connectivity=8)
    height, width = own.shape
    change = np.zeros(own.shape, bool)  # the region's px, in the window's coordinates
    (ry, rx), (py, px) = region.window, part
    ys = slice(max(ry.start, py.start), min(ry.stop, py.stop))
    xs = slice(max(rx.start, px.start), min(rx.stop, px.stop))
    if ys.start < ys.stop and xs.start < xs.stop:
        change[ys.start - py.start:ys.stop - py.start, xs.start - px.start:xs.stop - px.start] \
            = region.mask[ys.start - ry.start:ys.stop - ry.start,
                          xs.start - rx.start:xs.stop - rx.start]
    for k in range(1, n):
        x, y, w, h = (int(v) for v in stats[k, :4])
        if x == 0 or y == 0 or x + w == width or y + h == height:
            continue  # reaches the window's edge: a trace or the substrate, not enclosed
        component = labels == k
        filled = float((tested[component] == (1 if region.adds else 0)).mean())
        if filled >= TEMPLATE_FILL and (change & component).sum() >= 0.5 * change.sum():
            return True
    return False


def _note(job: PairJob, diff: Difference, region: Region, likeness: float) -> dict | None:
    """The note an unlabelled change gets when it is not a defect of the tested image (a
    displaced feature, a cut at the border, a defect of the template); ``None`` when it
    is defect-like."""
    params, shape = job.params, diff.tested.shape
    polarity = "adds" if region.adds else "removes"
    if likeness >= params.local_shift_share:
        return _row(job, MISSING_LABEL, "misregistration_like", likeness,
                    f"unlabelled change of {region.area} px ({polarity} copper) that a local "
                    f"shift of <= {params.local_shift_px} px explains ({likeness:.0%}): a "
                    "feature displaced in the scan, not a defect", region.bbox)
    if edge_band(diff, region):
        return _row(job, MISSING_LABEL, "misregistration_like", 0.7,
                    f"unlabelled band of {region.area} px ({polarity} copper) along a copper "
                    f"edge, within {EDGE_BAND_PX:g} px of it: an edge displaced or thickened "
                    "in the scan, not a defect", region.bbox)
    x1, y1, x2, y2 = region.bbox
    if min(x1, y1, shape[1] - x2, shape[0] - y2) < BORDER_PX:
        return _row(job, MISSING_LABEL, "at_border", 0.5,
                    f"unlabelled change of {region.area} px ({polarity} copper) at the image "
                    "border, where the two scans may be cut at different places", region.bbox)
    if template_defect(diff, region, _padded(region.bbox, params.pad_px, shape)):
        what = "a hole" if region.adds else "a copper island"
        return _row(job, MISSING_LABEL, "template_defect", 0.8,
                    f"unlabelled change of {region.area} px: the template has {what} here "
                    "that the tested image lacks; the template carries a defect (replace it "
                    "or label the template)", region.bbox)
    return None


def _missing(job: PairJob, diff: Difference, region: Region, likeness: float) -> dict:
    """``missing_label/defect_like``: a box to add, of the class the change suggests."""
    proposed = _padded(region.bbox, job.params.pad_px, diff.tested.shape)
    polarity = "adds" if region.adds else "removes"
    name = propose_class(diff, proposed, adds=region.adds)
    return _row(job, MISSING_LABEL, "defect_like", 1.0 - likeness,
                f"unlabelled change of {region.area} px ({polarity} copper), not explained by "
                f"a local shift; looks like {name}", region.bbox, None, ADD, name, proposed)


def check_pair(job: PairJob) -> PairResult:
    """Register and check one tested image against its template (see the module doc)."""
    params = job.params
    try:
        tested = read_gray(job.tested, "image", job.max_file_bytes)
        template = read_gray(job.template, "template", job.max_file_bytes)
        if tested.shape != template.shape:
            raise PairError("size_mismatch",
                            f"tested {tested.shape[1]}x{tested.shape[0]} and template "
                            f"{template.shape[1]}x{template.shape[0]} differ in size")
    except PairError as err:
        return PairResult(job.sample_id, None, [_row(
            job, PAIR_ERROR, err.detail, 1.0, err.reason, (0, 0, 0, 0))])
    reg = register(tested, template, tile=params.tile_px, max_shift=params.max_shift_px)
    row = _registration_row(job, reg, params)
    findings = [_misregistration_finding(job, reg, row, tested.shape)] \
        if row["misregistered"] else []
    registered = apply_registration(template, reg)
    valid = covered_by_template(reg, tested.shape, params)
    if job.register_to:
        ok, data = cv2.imencode(".png", registered)
        with open(job.register_to, "wb") as out:
            out.write(data.tobytes())
        row["registered_template"] = job.register_to
    diff = difference(tested, registered, params, valid)
    regions = regions_of(diff)
    box_findings, empty, unexplained = _box_checks(job, diff, regions)
    # A region a local shift explains is a displaced feature; what of it the best shift
    # leaves changed is a defect on that feature, checked as a region of its own.
    candidates: list[Region] = []
    likeness: dict[int, float] = {}
    for region in unexplained:
        fit = shift_fit(diff, region, params.local_shift_px)
        likeness[len(candidates)] = fit.share
        candidates.append(region)
        for residual in fit.residual:
            likeness[len(candidates)] = 0.0
            candidates.append(residual)
    notes = [_note(job, diff, region, likeness[index])
             for index, region in enumerate(candidates)]
    defects = [index for index, note in enumerate(notes) if note is None]
    placed, used = _placements(job, diff, empty, candidates, defects)
    findings += box_findings + placed
    findings += [note if note is not None else _missing(job, diff, candidates[index],
                                                          likeness[index])
                 for index, note in enumerate(notes) if index not in used]
    return PairResult(job.sample_id, row, findings)


__all__ = ["Box", "PairError", "PairJob", "PairResult", "check_pair", "covered_by_template",
           "edge_band", "propose_class", "read_gray", "template_defect"]
