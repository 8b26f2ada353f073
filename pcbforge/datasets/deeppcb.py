"""Read DeepPCB's folder layout into a samples table and a labels table.

Layout (Tang et al., 2019)::

    groupNNNNN/NNNNN/XXXXXXXX_temp.jpg   defect-free template
    groupNNNNN/NNNNN/XXXXXXXX_test.jpg   tested image, aligned to its template
    groupNNNNN/NNNNN_not/XXXXXXXX.txt    one defect a line: x1 y1 x2 y2 type
    trainval.txt / test.txt              optional lists: "image.jpg annotation.txt"

Types 1-6 are open, short, mousebite, spur, copper (spurious copper) and
pin-hole. The published README shows commas between the numbers; the files
themselves use spaces. Both are accepted, as are blank lines; anything else is
reported as ``file:line`` and skipped, never guessed.

Boxes are kept exactly as written (pixel corners, DeepPCB's loose boxes with
about 10 px of margin). This module only reads; turning the tables into a
pcbforge dataset (curation checks, ids, validation) is the importer's job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from pcbforge.core.files import (
    PathOutsideRootError,
    UnreadableFileError,
    read_regular_file,
    resolve_inside,
)
from pcbforge.datasets.dataset import image_file
from pcbforge.datasets.formats_common import LabelFormat, TemplateMode, read_label_text

#: DeepPCB type id -> class name (type 1 is index 0).
DEEPPCB_CLASSES = ("open", "short", "mousebite", "spur", "copper", "pin-hole")

_LIST_FILES = {"trainval.txt": "trainval", "test.txt": "test"}
_SEPARATORS = re.compile(r"[,\s]+")


@dataclass(frozen=True)
class LayoutProblem:
    """Something in the layout that was skipped, with where it is."""

    path: str  # relative to the root, '/' separators
    line: int  # 1-based; 0 when the problem is the whole file
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.message}"


@dataclass
class DeepPCBLayout:
    """What :func:`read_deeppcb` found."""

    samples: pd.DataFrame  # one row per image (tested images and templates)
    labels: pd.DataFrame  # one row per defect box
    problems: list[LayoutProblem] = field(default_factory=list)


def parse_annotation(text: str, source: str) -> tuple[list[dict], list[LayoutProblem]]:
    """Parse one annotation file's text. ``source`` names it in problems and rows."""
    boxes, problems = [], []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        fields = [f for f in _SEPARATORS.split(line) if f]
        if len(fields) != 5:
            problems.append(
                LayoutProblem(source, number, f"expected 'x1 y1 x2 y2 type', got {raw!r}")
            )
            continue
        try:
            x1, y1, x2, y2, kind = (int(f) for f in fields)
        except ValueError:
            problems.append(LayoutProblem(source, number, f"not integers: {raw!r}"))
            continue
        if not 1 <= kind <= len(DEEPPCB_CLASSES):
            problems.append(LayoutProblem(
                source, number, f"unknown defect type {kind} (expected 1-{len(DEEPPCB_CLASSES)})"
            ))
            continue
        if x2 <= x1 or y2 <= y1 or min(x1, y1) < 0:
            problems.append(LayoutProblem(source, number, f"empty or negative box {raw!r}"))
            continue
        boxes.append({
            "label": DEEPPCB_CLASSES[kind - 1], "x1": x1, "y1": y1, "x2": x2, "y2": y2,
            "annotation": source, "annotation_line": number,
        })
    return boxes, problems


def read_deeppcb(root: Path | str, *, allow_outside: bool = False) -> DeepPCBLayout:
    """Find every tested image, its template, its board and its defect boxes.

    Samples columns: ``path`` (relative to ``root``), ``role`` (``tested`` or
    ``template``), ``template_path`` (for tested images), ``board`` (the
    ``groupN`` folder: one scanned board), ``pair`` (the tile id shared by an
    image and its template), ``listed_in`` (``trainval``/``test`` when a list
    file names it), ``label_problem`` (``missing_label_file``, ``unreadable_label_file``,
    ``bad_label_line`` or ``outside_root`` for a tested image whose labels cannot all be
    trusted, else ""). Labels columns: ``path`` of the tested image, ``label``,
    ``x1, y1, x2, y2``, ``annotation`` and ``annotation_line``.

    Label files are read only when they are regular files of a sane size (a FIFO or device
    is a problem, never a hang). Paths must stay inside ``root``: a list-file line naming
    an image or annotation outside it (``..``, absolute) is a ``file:line`` problem and is
    skipped, and a tested image, template or annotation that is a link leading out is a
    problem that holds its image back (``outside_root``), unless ``allow_outside``.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder")
    problems: list[LayoutProblem] = []
    listed = _read_lists(root, problems, allow_outside)
    samples, labels = [], []
    for tested in sorted(root.glob("*/*/*_test.jpg")):
        relative = tested.relative_to(root).as_posix()
        group_dir, tile_dir, name = relative.split("/")
        pair = name[: -len("_test.jpg")]
        template = f"{group_dir}/{tile_dir}/{pair}_temp.jpg"
        has_template = (root / template).is_file()
        if not has_template:
            problems.append(LayoutProblem(relative, 0, f"template {template} is missing"))
        annotation = f"{group_dir}/{tile_dir}_not/{pair}.txt"
        listed_in = listed.get(f"{group_dir}/{tile_dir}/{pair}.jpg", "")
        tested_row = {
            "path": relative, "role": "tested", "template_path": template if has_template else "",
            "board": group_dir, "pair": pair, "listed_in": listed_in, "label_problem": "",
        }
        samples.append(tested_row)
        if has_template:
            samples.append({
                "path": template, "role": "template", "template_path": "",
                "board": group_dir, "pair": pair, "listed_in": listed_in, "label_problem": "",
            })
        outside = [] if allow_outside else [
            LayoutProblem(path, 0, why) for path, why in
            ((path, _outside(root, path)) for path in (relative, template, annotation))
            if why is not None]
        if outside:
            # Its pixels or labels are not this dataset's: keep the row, hold the image back.
            problems.extend(outside)
            tested_row["label_problem"] = "outside_root"
            continue
        try:
            text = read_label_text(root / annotation, "DeepPCB annotation file", errors="replace")
        except FileNotFoundError:
            problems.append(LayoutProblem(relative, 0, f"annotation {annotation} is missing"))
            tested_row["label_problem"] = "missing_label_file"
            continue
        except ValueError as err:  # a FIFO, a device or a file far too large for labels
            problems.append(LayoutProblem(annotation, 0, str(err).removeprefix(
                f"{root / annotation}: ")))
            tested_row["label_problem"] = "unreadable_label_file"
            continue
        boxes, found = parse_annotation(text, annotation)
        problems.extend(found)
        if found:
            tested_row["label_problem"] = "bad_label_line"
        labels.extend({"path": relative, **box} for box in boxes)
    if not samples:
        raise FileNotFoundError(
            f"no DeepPCB tested images (groupN/N/*_test.jpg) under {root}"
        )
    sample_table = pd.DataFrame(samples)
    label_table = pd.DataFrame(
        labels, columns=["path", "label", "x1", "y1", "x2", "y2", "annotation", "annotation_line"]
    )
    return DeepPCBLayout(sample_table, label_table, problems)


def deeppcb_pairs(root: Path | str, boards: set[str] | None = None
                  ) -> list[tuple[Path, Path, list[tuple[int, int, int, int, str]]]]:
    """``(template, tested, boxes)`` of every pair under ``root`` (of the ``boards``
    groups only, when given), boxes as ``(x1, y1, x2, y2, label)``: what benchmarks walk."""
    root = Path(root)
    layout = read_deeppcb(root)
    tested = layout.samples[(layout.samples["role"] == "tested")
                            & (layout.samples["template_path"] != "")]
    if boards:
        tested = tested[tested["board"].isin(boards)]
    boxes: dict[str, list] = {}
    for row in layout.labels.itertuples():
        boxes.setdefault(row.path, []).append(
            (int(row.x1), int(row.y1), int(row.x2), int(row.y2), row.label))
    return [(root / row.template_path, root / row.path, boxes.get(row.path, []))
            for row in tested.itertuples()]


def _outside(root: Path, relative: str) -> str | None:
    """Why ``relative`` leads out of ``root`` (``..``, absolute, a link), else ``None``."""
    try:
        resolve_inside(root, relative)
    except PathOutsideRootError as err:
        what = "annotation path" if relative.endswith(".txt") else "image path"
        return str(err).replace("image path", what, 1)
    return None


def _read_lists(root: Path, problems: list[LayoutProblem],
                allow_outside: bool = False) -> dict[str, str]:
    """Image -> list name, from trainval.txt / test.txt when present."""
    listed: dict[str, str] = {}
    for filename, name in _LIST_FILES.items():
        path = root / filename
        if not path.exists():
            continue
        try:
            text = read_label_text(path, "DeepPCB list file", errors="replace")
        except ValueError as err:  # a FIFO, a device or a file far too large for a list
            problems.append(LayoutProblem(filename, 0, str(err).removeprefix(f"{path}: ")))
            continue
        for number, raw in enumerate(text.splitlines(), start=1):
            fields = raw.split()
            if not fields:
                continue
            if len(fields) != 2 or not fields[0].endswith(".jpg"):
                problems.append(LayoutProblem(
                    filename, number, f"expected 'image.jpg labels.txt', got {raw!r}"
                ))
                continue
            outside = None if allow_outside else next(
                (why for why in map(lambda f: _outside(root, f), fields) if why), None)
            if outside is not None:
                problems.append(LayoutProblem(filename, number, f"{outside}; line skipped"))
                continue
            listed[fields[0]] = name
    return listed


def _layout_groups(tested: pd.DataFrame) -> dict[str, str]:
    """A ``groupNNNNN`` folder name for each board of ``tested``. A board that is not
    already such a name (a synthetic dataset records its source board's file path) gets
    the next free number: a path must never become folders, inside ``out`` or out of it."""
    boards = sorted(set(tested.get("board", pd.Series(dtype=object)).fillna("").astype(str)))
    names = {b: b for b in boards if re.fullmatch(r"group\d+", b)}
    used = {int(b.removeprefix("group")) for b in names}
    number = 0
    for board in boards:
        if board in names:
            continue
        while number in used:
            number += 1
        names[board] = f"group{number:05d}"
        used.add(number)
    return names


def save_deeppcb(
    samples: pd.DataFrame,
    labels: pd.DataFrame,
    image_root: Path,
    out: Path,
) -> dict[str, int]:
    """Write tested images with their templates and boxes in DeepPCB's layout.

    ``samples`` are the rows to write: those with a ``template_path`` (tested
    images) are written as ``X_test.jpg`` beside their ``X_temp.jpg``; the
    others cannot be expressed in this layout and are counted as skipped.
    Boxes are written as integers ``x1 y1 x2 y2 type`` (DeepPCB's own
    boxes are integers, so an imported dataset round-trips exactly); list
    files ``trainval.txt`` (train and val) and ``test.txt`` follow ``split``.
    JPEG sources are copied byte for byte; other formats are encoded as JPEG
    at quality 100, since the layout names every image ``.jpg``.
    """
    out = Path(out)
    class_ids = {name: index + 1 for index, name in enumerate(DEEPPCB_CLASSES)}
    tested = samples[samples["template_path"].astype(str) != ""]
    boxes_by_sample = labels.groupby("sample_id")
    lists: dict[str, list[str]] = {"trainval.txt": [], "test.txt": []}
    written = 0
    groups = _layout_groups(tested)
    for position, row in enumerate(tested.itertuples(index=False)):
        board = groups[str(getattr(row, "board", "") or "")]
        number = board.removeprefix("group")
        pair = str(getattr(row, "pair", "") or "")
        if not re.fullmatch(r"\d+", pair):
            pair = f"{number}{position:03d}"
        folder = out / board / number
        folder.mkdir(parents=True, exist_ok=True)
        (out / board / f"{number}_not").mkdir(exist_ok=True)
        _write_jpeg(image_file(image_root, row.path), folder / f"{pair}_test.jpg")
        _write_jpeg(image_file(image_root, row.template_path), folder / f"{pair}_temp.jpg")
        lines = []
        if row.sample_id in boxes_by_sample.groups:
            for box in boxes_by_sample.get_group(row.sample_id).itertuples(index=False):
                if box.label not in class_ids:
                    raise ValueError(f"class {box.label!r} of sample {row.sample_id} is not a "
                                     f"DeepPCB class ({', '.join(DEEPPCB_CLASSES)})")
                corners = (round(box.x1), round(box.y1), round(box.x2), round(box.y2))
                lines.append(" ".join(str(v) for v in (*corners, class_ids[box.label])))
        annotation = out / board / f"{number}_not" / f"{pair}.txt"
        annotation.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        split = str(getattr(row, "split", ""))
        if split in ("train", "val", "test"):
            name = "test.txt" if split == "test" else "trainval.txt"
            lists[name].append(f"{board}/{number}/{pair}.jpg {board}/{number}_not/{pair}.txt")
        written += 1
    for name, entries in lists.items():
        if entries:
            (out / name).write_text("".join(e + "\n" for e in entries), encoding="utf-8")
    return {"written": written, "skipped": len(samples) - written}


def _write_jpeg(source: Path, target: Path) -> None:
    try:
        data = read_regular_file(source)
    except UnreadableFileError as err:
        raise ValueError(str(err)) from err
    if data[:3] == b"\xff\xd8\xff":
        target.write_bytes(data)
        return
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"{source} cannot be decoded")
    _, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 100])
    target.write_bytes(encoded.tobytes())


def _save_all(samples: pd.DataFrame, labels: pd.DataFrame, classes: list[str],
              image_root: Path, out: Path, split: str) -> dict[str, int]:
    # One layout for every split: its list files carry them (see save_deeppcb).
    return save_deeppcb(samples, labels, image_root, out)


#: Exported through the registry; imported by ``pcbforge.pipeline.import_deeppcb`` (pairs,
#: boards and lists need more than a labels table), so it has no discover/load.
FORMAT = LabelFormat(
    name="deeppcb",
    help="DeepPCB layout: tested images with templates, boards, lists and defect boxes",
    source_help="Folder in DeepPCB layout (groupN/N/X_test.jpg).",
    save=_save_all, per_split=False,
    # Its layout is pairs: every tested image is written beside its template, and a
    # template is never an image of its own (as a negative it is counted skipped).
    templates=frozenset({TemplateMode.negatives.value, TemplateMode.pair.value}),
)
