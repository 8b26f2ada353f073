"""Planted label and registration errors, and how ``pcbforge qa`` findings match them.

``benchmarks/qa_bench.py`` copies a DeepPCB-layout folder twice, plants one error into a
seeded share of the pairs of one copy, runs ``qa`` on both and scores the findings against
the planted truth with the functions here. Planting is split as everywhere in pcbforge:
:func:`sample_plant` draws every random choice from an injected generator (and looks at
the pixels, so that a moved or phantom box lands where the pair shows no change), then
:func:`plant_boxes` and :func:`plant_template` apply the recorded parameters
deterministically. :func:`write_planted_copy` is the thin file shell around them; the
source folder is only read (unchanged files are hard-linked, changed ones written anew).

The kinds (:class:`PlantKind`), at most one per pair:

- ``moved``: a box moved by 60-300 px to a place where template and tested image agree;
- ``phantom``: a new box (random class, a size drawn from the data's boxes) on such a place;
- ``deleted``: a box removed from the label file;
- ``swapped``: a box's class swapped for its opposite (:data:`SWAP`);
- ``shifted``: the template shifted by 2-8 px in x and y (random signs, border replicated);
- ``rotated``: the template rotated by 0.3-1.5 degrees about its centre (random sign).

A shifted or rotated template is re-encoded as a quality-95 JPEG under its own name, so
the layout (``X_temp.jpg``) keeps working for :func:`pcbforge.datasets.deeppcb.read_deeppcb`.
"""

from __future__ import annotations

import math
import os
import shutil
from collections import defaultdict
from enum import Enum
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from pcbforge.core.boxes import iou
from pcbforge.datasets.deeppcb import DEEPPCB_CLASSES, parse_annotation
from pcbforge.datasets.qa_tables import (
    ADD,
    CLASS_SUSPECT,
    DELETE,
    EMPTY_BOX,
    MISPLACED_BOX,
    MISREGISTERED,
    MISSING_LABEL,
    findings_table,
)


class PlantKind(str, Enum):
    MOVED = "moved"
    PHANTOM = "phantom"
    DELETED = "deleted"
    SWAPPED = "swapped"
    SHIFTED = "shifted"
    ROTATED = "rotated"


PLANT_KINDS = tuple(PlantKind)

#: A class and the one it is swapped for: the opposite polarity (copper removed <-> added).
SWAP = {"open": "short", "short": "open", "spur": "mousebite", "mousebite": "spur",
        "copper": "pin-hole", "pin-hole": "copper"}

#: Offsets of a moved box (px, length of the offset vector).
MOVE_PX = (60.0, 300.0)
#: Template shift per axis (px) and rotation (degrees), magnitudes; signs are random.
SHIFT_PX = (2.0, 8.0)
ROTATE_DEG = (0.3, 1.5)
#: Places tried for a moved or phantom box before the pair is skipped.
PLACE_TRIES = 30
#: A place is "unchanged" when the binarized pair agrees under the box grown by this (px).
PLACE_PAD = 4
#: Quality of a re-encoded template (DeepPCB's own JPEGs are about this).
JPEG_QUALITY = 95

#: The kinds that change the template, not the labels.
TEMPLATE_KINDS = (PlantKind.SHIFTED, PlantKind.ROTATED)
#: The finding kinds that detect each planted kind.
FINDING_FOR = {
    PlantKind.MOVED: (MISPLACED_BOX,),
    PlantKind.PHANTOM: (EMPTY_BOX,),
    PlantKind.DELETED: (MISSING_LABEL,),
    PlantKind.SWAPPED: (CLASS_SUSPECT,),
    PlantKind.SHIFTED: (MISREGISTERED,),
    PlantKind.ROTATED: (MISREGISTERED,),
}
#: Findings that catch a planted error under another name ("found, wrong kind").
WRONG_KIND_FOR = {PlantKind.MOVED: (EMPTY_BOX,)}
#: A ``missing_label`` claims a missing label only when it proposes one (``add``); its
#: notes (a displaced feature, a change at the border, a defect of the template) do not,
#: and on a deleted box they are "found, wrong kind".
CLAIM_ACTION = {PlantKind.DELETED: ADD}


def claims(kind: PlantKind, finding) -> bool:
    """Whether ``finding`` makes the claim a planted error of ``kind`` is tested by: its
    finding kind is in :data:`FINDING_FOR`, with the action of :data:`CLAIM_ACTION`."""
    if finding["kind"] not in FINDING_FOR[kind]:
        return False
    action = CLAIM_ACTION.get(kind)
    return action is None or finding["action"] == action

#: IoU a finding's region needs with the planted box (``deleted``: or either centre inside).
MATCH_IOU = 0.5
DELETED_IOU = 0.1
#: A finding on the planted copy was "already there" with this IoU on the clean copy.
KNOWN_IOU = 0.5
#: Registration counts as measured right within these errors (px, Euclidean; degrees).
SHIFT_RIGHT_PX = 0.5
ROTATION_RIGHT_DEG = 0.1

Box = tuple[int, int, int, int, str]


def plant_kind(name: str) -> PlantKind:
    """The kind called ``name``; an unknown name raises and lists the valid ones."""
    try:
        return PlantKind(name)
    except ValueError as err:
        raise ValueError(f"unknown plant kind {name!r}; valid kinds: "
                         f"{', '.join(k.value for k in PLANT_KINDS)}") from err


# --- geometry ---------------------------------------------------------------------------

def centre_inside(a, b) -> bool:
    """Whether the centre of box ``a`` lies inside box ``b``."""
    cx, cy = (float(a[0]) + float(a[2])) / 2, (float(a[1]) + float(a[3])) / 2
    return float(b[0]) <= cx < float(b[2]) and float(b[1]) <= cy < float(b[3])


def _overlaps(box, boxes) -> bool:
    return any(min(box[2], b[2]) > max(box[0], b[0]) and min(box[3], b[3]) > max(box[1], b[1])
               for b in boxes)


def unchanged_under(template: np.ndarray, tested: np.ndarray, box, pad: int = PLACE_PAD) -> bool:
    """Whether the binarized (at 128) template and tested image agree on every pixel
    under ``box`` grown by ``pad`` (clipped to the image)."""
    h, w = template.shape[:2]
    x1, y1 = max(int(box[0]) - pad, 0), max(int(box[1]) - pad, 0)
    x2, y2 = min(int(box[2]) + pad, w), min(int(box[3]) + pad, h)
    if x2 <= x1 or y2 <= y1:
        return False
    return bool(np.array_equal(template[y1:y2, x1:x2] < 128, tested[y1:y2, x1:x2] < 128))


# --- sampling (all randomness) ----------------------------------------------------------

def choose_plan(n_pairs: int, rng: np.random.Generator, share: float = 0.5,
                kinds: tuple[PlantKind, ...] = PLANT_KINDS) -> list[tuple[int, PlantKind]]:
    """``(pair index, kind)`` for ``round(share * n_pairs)`` pairs drawn without
    replacement, the kinds in equal shares (the first kinds get one more when it does not
    divide), sorted by pair index."""
    if not 0 <= share <= 1:
        raise ValueError(f"share must be in [0, 1], got {share}")
    if not kinds:
        raise ValueError("expected at least one plant kind")
    count = int(round(share * n_pairs))
    picked = rng.choice(n_pairs, size=count, replace=False) if count else np.array([], int)
    order = rng.permutation(count)
    assigned = [PlantKind(kinds[int(i) % len(kinds)]) for i in order]
    return sorted((int(p), k) for p, k in zip(picked, assigned, strict=True))


def _free_place(rng: np.random.Generator, template: np.ndarray, tested: np.ndarray,
                size: tuple[int, int], avoid: list, propose) -> tuple[int, int, int, int] | None:
    """A box of ``size`` proposed by ``propose(rng)`` (top-left corner) inside the image,
    overlapping none of ``avoid``, where the pair is unchanged; ``None`` after
    :data:`PLACE_TRIES` tries."""
    h, w = template.shape[:2]
    bw, bh = size
    for _ in range(PLACE_TRIES):
        x1, y1 = propose(rng)
        box = (int(x1), int(y1), int(x1) + bw, int(y1) + bh)
        if box[0] < 0 or box[1] < 0 or box[2] > w or box[3] > h:
            continue
        if _overlaps(box, avoid) or not unchanged_under(template, tested, box):
            continue
        return box
    return None


def _lone_box(rng: np.random.Generator, boxes: list[Box]) -> int:
    """A random box, preferring those that overlap no other box (clean attribution)."""
    lone = [i for i, b in enumerate(boxes) if not _overlaps(b, boxes[:i] + boxes[i + 1:])]
    pool = lone or list(range(len(boxes)))
    return int(pool[int(rng.integers(len(pool)))])


def sample_plant(kind: PlantKind | str, rng: np.random.Generator, template: np.ndarray,
                 tested: np.ndarray, boxes: list[Box],
                 box_sizes: list[tuple[int, int]] | None = None) -> tuple[dict | None, str]:
    """Draw the parameters of one planted error on a pair: ``(plant, "")``, or
    ``(None, why)`` when the pair has no place for it.

    ``template`` and ``tested`` are grey images of one size; ``boxes`` the pair's labels
    ``(x1, y1, x2, y2, class)``; ``box_sizes`` the ``(w, h)`` a phantom box is drawn from
    (default: the pair's own boxes). The plant holds ``kind``, ``box_index`` (the label
    line changed, -1 for a new box), ``before`` / ``after`` (``[x1, y1, x2, y2]`` or
    ``None``), ``label`` (the class before), ``new_label``, and for the template kinds
    ``shift`` ``[sx, sy]`` (px the template's content moves), ``rotation_deg`` (counter-
    clockwise on screen) and ``expected`` ``[dx, dy, rotation_deg]``: what a registration
    that moves the template onto the tested image measures, beyond the clean pair's own.
    """
    kind = plant_kind(kind) if not isinstance(kind, PlantKind) else kind
    if template.shape[:2] != tested.shape[:2]:
        return None, "template and tested image differ in size"
    plant: dict = {"kind": kind.value, "box_index": -1, "before": None, "after": None,
                   "label": "", "new_label": "", "shift": None, "rotation_deg": None,
                   "expected": None}
    h, w = template.shape[:2]
    if kind in (PlantKind.MOVED, PlantKind.DELETED, PlantKind.SWAPPED) and not boxes:
        return None, "the pair has no box"
    if kind is PlantKind.MOVED:
        index = _lone_box(rng, boxes)
        x1, y1, x2, y2, label = boxes[index]

        def propose(g: np.random.Generator) -> tuple[int, int]:
            length, angle = g.uniform(*MOVE_PX), g.uniform(0, 2 * math.pi)
            return (round(x1 + length * math.cos(angle)), round(y1 + length * math.sin(angle)))

        after = _free_place(rng, template, tested, (x2 - x1, y2 - y1), list(boxes), propose)
        if after is None:
            return None, f"no unchanged place {MOVE_PX[0]:.0f}-{MOVE_PX[1]:.0f} px away"
        plant.update(box_index=index, before=[x1, y1, x2, y2], after=list(after),
                     label=label, new_label=label)
    elif kind is PlantKind.PHANTOM:
        sizes = box_sizes or [(b[2] - b[0], b[3] - b[1]) for b in boxes] or [(30, 30)]
        bw, bh = sizes[int(rng.integers(len(sizes)))]
        bw, bh = min(int(bw), w), min(int(bh), h)
        label = DEEPPCB_CLASSES[int(rng.integers(len(DEEPPCB_CLASSES)))]

        def propose(g: np.random.Generator) -> tuple[int, int]:
            return int(g.integers(0, w - bw + 1)), int(g.integers(0, h - bh + 1))

        after = _free_place(rng, template, tested, (bw, bh), list(boxes), propose)
        if after is None:
            return None, "no unchanged place for a new box"
        plant.update(after=list(after), new_label=label)
    elif kind is PlantKind.DELETED:
        index = _lone_box(rng, boxes)
        plant.update(box_index=index, before=list(boxes[index][:4]), label=boxes[index][4])
    elif kind is PlantKind.SWAPPED:
        index = _lone_box(rng, boxes)
        label = boxes[index][4]
        plant.update(box_index=index, before=list(boxes[index][:4]),
                     after=list(boxes[index][:4]), label=label, new_label=SWAP[label])
    elif kind is PlantKind.SHIFTED:
        sx, sy = (float(rng.uniform(*SHIFT_PX) * rng.choice((-1.0, 1.0))) for _ in range(2))
        plant.update(shift=[sx, sy], rotation_deg=0.0, expected=[-sx, -sy, 0.0])
    elif kind is PlantKind.ROTATED:
        angle = float(rng.uniform(*ROTATE_DEG) * rng.choice((-1.0, 1.0)))
        plant.update(shift=[0.0, 0.0], rotation_deg=angle, expected=[0.0, 0.0, -angle])
    return plant, ""


# --- applying (deterministic) -----------------------------------------------------------

def plant_boxes(boxes: list[Box], plant: dict) -> list[Box]:
    """The pair's boxes after ``plant`` (a new list; template kinds leave them as they are)."""
    kind = PlantKind(plant["kind"])
    out = list(boxes)
    index = plant["box_index"]
    if kind is PlantKind.MOVED or kind is PlantKind.SWAPPED:
        out[index] = (*(int(v) for v in plant["after"]), plant["new_label"])
    elif kind is PlantKind.DELETED:
        del out[index]
    elif kind is PlantKind.PHANTOM:
        out.append((*(int(v) for v in plant["after"]), plant["new_label"]))
    return out


def plant_template(template: np.ndarray, plant: dict) -> np.ndarray:
    """The template after a ``shifted`` or ``rotated`` plant (border replicated, bilinear);
    other kinds return it unchanged."""
    kind = PlantKind(plant["kind"])
    if kind not in TEMPLATE_KINDS:
        return template
    h, w = template.shape[:2]
    # OpenCV's positive angle turns the content counter-clockwise as displayed.
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), plant["rotation_deg"], 1.0)
    matrix[:, 2] += plant["shift"]
    return cv2.warpAffine(template, matrix, (w, h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def annotation_text(original: str, boxes: list[Box], plant: dict) -> str:
    """The label file after ``plant``: the changed line rewritten with the file's own
    separator, a new line appended, a deleted line dropped; every other line as it was.
    ``boxes`` are the file's parsed boxes, in file order."""
    kind = PlantKind(plant["kind"])
    lines = original.splitlines(keepends=True)
    box_lines = [i for i, line in enumerate(lines) if line.strip()]
    if len(box_lines) != len(boxes):
        raise ValueError(f"expected {len(boxes)} box lines, found {len(box_lines)}")
    class_ids = {name: i + 1 for i, name in enumerate(DEEPPCB_CLASSES)}

    def line_of(box: Box, like: str) -> str:
        separator = "," if "," in like else " "
        return separator.join(str(v) for v in (*box[:4], class_ids[box[4]])) + "\n"

    index = plant["box_index"]
    if kind is PlantKind.MOVED or kind is PlantKind.SWAPPED:
        target = box_lines[index]
        lines[target] = line_of(plant_boxes(boxes, plant)[index], lines[target])
    elif kind is PlantKind.DELETED:
        del lines[box_lines[index]]
    elif kind is PlantKind.PHANTOM:
        like = lines[box_lines[0]] if box_lines else " "
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines.append(line_of(plant_boxes(boxes, plant)[-1], like))
    return "".join(lines)


# --- the folder shell -------------------------------------------------------------------

def layout_pairs(root: Path | str, groups: set[str] | None = None) -> list[str]:
    """The pairs of a DeepPCB-layout folder, ``groupN/N/X`` (sorted), of ``groups`` only
    when given; a pair needs its tested image, template and label file."""
    root = Path(root)
    pairs = []
    for tested in sorted(root.glob("*/*/*_test.jpg")):
        group, tile, name = tested.relative_to(root).as_posix().split("/")
        pair = name[: -len("_test.jpg")]
        if groups and group not in groups:
            continue
        if (root / group / tile / f"{pair}_temp.jpg").is_file() and \
                (root / group / f"{tile}_not" / f"{pair}.txt").is_file():
            pairs.append(f"{group}/{tile}/{pair}")
    return pairs


def _files(pair: str) -> tuple[str, str, str]:
    group, tile, name = pair.split("/")
    return (f"{group}/{tile}/{name}_test.jpg", f"{group}/{tile}/{name}_temp.jpg",
            f"{group}/{tile}_not/{name}.txt")


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _write_new(target: Path, data: bytes) -> None:
    """Write a file of its own (never through a hard link into the source)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    target.write_bytes(data)


def _read_boxes(path: Path) -> tuple[str, list[Box]]:
    text = path.read_text(encoding="utf-8", errors="replace")
    parsed, problems = parse_annotation(text, path.name)
    if problems:
        raise ValueError(f"{path}: {problems[0]}")
    return text, [(b["x1"], b["y1"], b["x2"], b["y2"], b["label"]) for b in parsed]


def _write_lists(root: Path, src: Path, pairs: list[str]) -> None:
    """The source's list files, keeping the lines of the copied pairs only."""
    kept = {f"{p}.jpg" for p in pairs}
    for name in ("trainval.txt", "test.txt"):
        if not (src / name).is_file():
            continue
        lines = [line for line in (src / name).read_text(encoding="utf-8").splitlines(True)
                 if line.split() and line.split()[0] in kept]
        _write_new(root / name, "".join(lines).encode())


def copy_layout(src: Path | str, dst: Path | str, pairs: list[str]) -> None:
    """``pairs`` of ``src`` into ``dst`` in the same layout, hard-linked where possible."""
    src, dst = Path(src), Path(dst)
    for pair in pairs:
        for name in _files(pair):
            _link_or_copy(src / name, dst / name)
    _write_lists(dst, src, pairs)


def select_pairs(pairs: list[str], max_pairs: int = 0) -> list[str]:
    """At most ``max_pairs`` pairs spread evenly over the list (0: all)."""
    if 0 < max_pairs < len(pairs):
        keep = np.linspace(0, len(pairs) - 1, max_pairs).round().astype(int)
        return [pairs[i] for i in keep]
    return list(pairs)


def write_planted_copy(src: Path | str, dst: Path | str, pairs: list[str], *,
                       seed: int = 0, share: float = 0.5,
                       kinds: tuple[PlantKind, ...] = PLANT_KINDS) -> list[dict]:
    """Copy ``pairs`` of ``src`` into ``dst`` with one planted error in a seeded share of
    them; return the truth, one dict per chosen pair (``pair``, ``tested_path``, the
    plant's parameters from :func:`sample_plant`, ``status`` ``planted``/``skipped`` and
    ``why``). ``src`` is only read. The same arguments write the same bytes."""
    src, dst = Path(src), Path(dst)
    rng = np.random.default_rng(seed)
    plan = choose_plan(len(pairs), rng, share, kinds)
    sizes = []
    for pair in pairs:
        sizes += [(b[2] - b[0], b[3] - b[1]) for b in _read_boxes(src / _files(pair)[2])[1]]
    copy_layout(src, dst, pairs)
    truth = []
    # One child generator per planted pair: a skipped pair does not move the others.
    children = rng.spawn(len(plan)) if plan else []
    for (index, kind), child in zip(plan, children, strict=True):
        pair = pairs[index]
        tested_name, template_name, label_name = _files(pair)
        text, boxes = _read_boxes(src / label_name)
        template = cv2.imread(str(src / template_name), cv2.IMREAD_GRAYSCALE)
        tested = cv2.imread(str(src / tested_name), cv2.IMREAD_GRAYSCALE)
        record = {"pair": pair, "tested_path": tested_name, "kind": kind.value}
        if template is None or tested is None:
            truth.append({**record, "status": "skipped", "why": "unreadable image"})
            continue
        plant, why = sample_plant(kind, child, template, tested, boxes, sizes)
        if plant is None:
            truth.append({**record, "status": "skipped", "why": why})
            continue
        if kind in TEMPLATE_KINDS:
            ok, encoded = cv2.imencode(".jpg", plant_template(template, plant),
                                       [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if not ok:
                raise ValueError(f"cannot encode the planted template of {pair}")
            _write_new(dst / template_name, encoded.tobytes())
        else:
            _write_new(dst / label_name, annotation_text(text, boxes, plant).encode())
        truth.append({**record, **plant, "status": "planted", "why": ""})
    return truth


# --- matching ---------------------------------------------------------------------------

def with_registration_flags(findings: pd.DataFrame, registration: pd.DataFrame | None
                            ) -> pd.DataFrame:
    """``findings`` plus a ``misregistered`` row (no box) for every pair the registration
    table flags that has none among the findings."""
    if registration is None or not len(registration) or "misregistered" not in registration:
        return findings
    flagged = set(registration.loc[registration["misregistered"].astype(bool), "sample_id"])
    have = set(findings.loc[findings["kind"] == MISREGISTERED, "sample_id"])
    reasons = dict(zip(registration["sample_id"], registration["reason"], strict=False))
    nan = float("nan")
    extra = [{"finding_id": f"reg-{s}", "sample_id": s, "kind": MISREGISTERED,
              "detail": "registration", "score": nan, "reason": str(reasons.get(s, "")),
              "label_row": -1, "label": "", "x1": nan, "y1": nan, "x2": nan, "y2": nan,
              "action": "none", "proposed_label": ""} for s in sorted(flagged - have)]
    if not extra:
        return findings
    return pd.concat([findings, findings_table(extra)], ignore_index=True)


def finding_matches(plant: dict, finding) -> bool:
    """Whether a finding (a row with ``kind`` and ``x1..y2``) is the planted error
    ``plant`` (on the same sample), under any finding kind that can catch it."""
    kind = PlantKind(plant["kind"])
    region = (finding["x1"], finding["y1"], finding["x2"], finding["y2"])
    if finding["kind"] not in FINDING_FOR[kind] + WRONG_KIND_FOR.get(kind, ()):
        return False
    if kind in TEMPLATE_KINDS:
        return True
    if kind is PlantKind.DELETED:
        before = plant["before"]
        return (iou(region, before) > DELETED_IOU or centre_inside(region, before)
                or centre_inside(before, region))
    target = plant["before"] if kind is PlantKind.SWAPPED else plant["after"]
    return iou(region, target) > MATCH_IOU


def _known(finding, clean_by_sample: dict) -> bool:
    """Whether the clean copy has the same kind of finding on the same sample and region."""
    for other in clean_by_sample.get((finding["sample_id"], finding["kind"]), ()):
        boxless = all(math.isnan(float(v)) for v in (finding["x1"], other["x1"]))
        if boxless or iou((finding["x1"], finding["y1"], finding["x2"], finding["y2"]),
                          (other["x1"], other["y1"], other["x2"], other["y2"])) > KNOWN_IOU:
            return True
    return False


def _proposal_right(plant: dict, finding) -> bool:
    kind = PlantKind(plant["kind"])
    proposed = (finding["px1"], finding["py1"], finding["px2"], finding["py2"])
    if kind is PlantKind.MOVED:
        return iou(proposed, plant["before"]) > MATCH_IOU
    if kind is PlantKind.DELETED:
        return iou(proposed, plant["before"]) > MATCH_IOU
    if kind is PlantKind.SWAPPED:
        return finding["proposed_label"] == plant["label"]
    if kind is PlantKind.PHANTOM:
        return finding["action"] == DELETE
    return False


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def registration_errors(truth: list[dict], planted: pd.DataFrame | None,
                        clean: pd.DataFrame | None) -> dict[str, dict]:
    """Per template kind: the measured change (planted copy minus clean copy, per pair)
    against the expected one; ``n``, median and p95 absolute error of the shift (px,
    Euclidean) and rotation (degrees), and the share measured right
    (:data:`SHIFT_RIGHT_PX`, :data:`ROTATION_RIGHT_DEG`)."""
    out: dict[str, dict] = {}
    if planted is None or clean is None or not len(planted) or not len(clean):
        return out
    p = planted.set_index("sample_id")
    c = clean.set_index("sample_id")
    rows: dict[str, list] = defaultdict(list)
    for plant in truth:
        if plant.get("status") != "planted" or plant.get("expected") is None:
            continue
        sample = plant["sample_id"]
        if sample not in p.index or sample not in c.index:
            continue
        measured = [float(p.at[sample, k]) - float(c.at[sample, k])
                    for k in ("dx", "dy", "rotation_deg")]
        error = [m - e for m, e in zip(measured, plant["expected"], strict=True)]
        rows[plant["kind"]].append((math.hypot(error[0], error[1]), abs(error[2]),
                                    plant["pair"], measured, plant["expected"]))
    for kind, values in rows.items():
        shift = np.array([v[0] for v in values])
        rotation = np.array([v[1] for v in values])
        finite = np.isfinite(shift) & np.isfinite(rotation)
        right = (shift <= SHIFT_RIGHT_PX) & (rotation <= ROTATION_RIGHT_DEG) & finite
        out[kind] = {
            "n": len(values),
            "shift_error_px_p50": float(np.nanmedian(shift)),
            "shift_error_px_p95": float(np.nanpercentile(shift, 95)),
            "rotation_error_deg_p50": float(np.nanmedian(rotation)),
            "rotation_error_deg_p95": float(np.nanpercentile(rotation, 95)),
            "measured_right": int(right.sum()),
            "worst": [{"pair": v[2], "measured": v[3], "expected": v[4]}
                      for v in sorted(values, key=lambda v: -(v[0] + 10 * v[1]))[:5]],
        }
    return out


def score_findings(truth: list[dict], planted: pd.DataFrame, clean: pd.DataFrame,
                   kinds: tuple[PlantKind, ...] = PLANT_KINDS) -> dict[str, dict]:
    """Recall and precision of the findings per planted kind.

    ``truth``: :func:`write_planted_copy`'s records with a ``sample_id`` added (the tested
    image's sample in both copies); ``planted`` / ``clean``: the findings of each copy
    (with :func:`with_registration_flags` applied for the template kinds).

    A planted error is *found* when a finding making its claim (:func:`claims`) matches
    it (:func:`finding_matches`); ``found_wrong_kind`` counts those caught only under
    :data:`WRONG_KIND_FOR` or by a finding of the kind that does not make the claim. For
    precision, each finding that makes the claim is a true positive when it matches a
    planted error of this kind; one that matches a planted error of another kind
    (``misregistered`` on a rotated pair, for ``shifted``) counts neither way; the rest are
    false positives, ``known`` when the clean copy has the same kind of finding on the same
    sample and region (IoU > :data:`KNOWN_IOU`). ``precision_new`` leaves the known ones
    out, ``precision_raw`` counts them as false.
    ``fp_on_planted_pairs`` says how many new false positives sit on a pair planted with
    an error (of any kind): side effects of it, rather than noise on unchanged pairs;
    ``false_positives`` lists the new ones, ``missed`` the pairs not found,
    ``proposal_wrong`` the pairs found with no right proposal.
    """
    plants = {p["sample_id"]: p for p in truth if p.get("status") == "planted"}
    clean_by_sample: dict = defaultdict(list)
    for row in clean.to_dict("records"):
        clean_by_sample[(row["sample_id"], row["kind"])].append(row)
    planted_rows = planted.to_dict("records")
    by_sample: dict = defaultdict(list)
    for row in planted_rows:
        by_sample[row["sample_id"]].append(row)
    result: dict[str, dict] = {}
    for kind in kinds:
        kind = PlantKind(kind)
        mine = [p for p in plants.values() if p["kind"] == kind.value]
        found = wrong = right = known_before = 0
        missed, wrong_proposal = [], []
        for plant in mine:
            hits = [f for f in by_sample[plant["sample_id"]] if finding_matches(plant, f)]
            primary = [f for f in hits if claims(kind, f)]
            if primary:
                found += 1
                if kind in TEMPLATE_KINDS:
                    pass  # judged on the measured registration (registration_errors)
                elif any(_proposal_right(plant, f) for f in primary):
                    right += 1
                else:
                    wrong_proposal.append(plant["pair"])
                known_before += any(_known(f, clean_by_sample) for f in primary)
            elif hits:
                wrong += 1
            if not primary:
                missed.append(plant["pair"])
        tp = other = fp_new = fp_known = fp_planted = 0
        false: list[dict] = []
        for finding in planted_rows:
            if not claims(kind, finding):
                continue
            plant = plants.get(finding["sample_id"])
            if plant is not None and finding_matches(plant, finding):
                if plant["kind"] == kind.value:
                    tp += 1
                else:
                    other += 1
                continue
            if _known(finding, clean_by_sample):
                fp_known += 1
            else:
                fp_new += 1
                fp_planted += plant is not None
                false.append({k: finding[k] for k in ("finding_id", "sample_id", "kind",
                                                      "detail", "x1", "y1", "x2", "y2",
                                                      "reason")}
                             | {"planted_pair": plant["pair"] if plant else "",
                                "planted_kind": plant["kind"] if plant else ""})
        result[kind.value] = {
            "planted": len(mine), "found": found, "found_wrong_kind": wrong,
            "recall": _ratio(found, len(mine)),
            "true_positives": tp, "false_positives_new": fp_new,
            "false_positives_known": fp_known, "fp_on_planted_pairs": fp_planted,
            "matched_other_kind": other,
            "precision_new": _ratio(tp, tp + fp_new),
            "precision_raw": _ratio(tp, tp + fp_new + fp_known),
            "proposal_right": right, "found_on_clean_too": known_before,
            "missed": missed, "proposal_wrong": wrong_proposal, "false_positives": false,
        }
    return result


__all__ = [
    "FINDING_FOR", "PLANT_KINDS", "SWAP", "WRONG_KIND_FOR", "PlantKind", "annotation_text",
    "TEMPLATE_KINDS", "centre_inside", "choose_plan", "claims", "copy_layout",
    "finding_matches", "layout_pairs",
    "plant_boxes", "plant_kind", "plant_template", "registration_errors", "sample_plant",
    "score_findings", "select_pairs", "unchanged_under", "with_registration_flags",
    "write_planted_copy",
]
