"""Read a model's predictions, as common trainers write them, into one table matched to
the samples of a pcbforge dataset, so that they can be scored against its labels.

Formats (:data:`FORMATS`, keyed by :class:`PredictionFormat`):

* ``coco-results``: the COCO results JSON, a list of ``{"image_id", "category_id",
  "bbox": [x, y, w, h], "score"}`` (``"file_name"`` may stand for ``image_id``). With
  ``coco_gt``, the ``annotations.json`` the model was evaluated on, ids mean what that
  file says: ``images[].id`` -> its ``pcbforge.sample_id`` or ``file_name``, and
  ``categories[].id`` -> name. Without it, category ids are 1-based positions in the
  dataset's classes (as pcbforge's COCO export numbers them) and ``image_id`` must be a
  name (a sample id or a file name); a number then means nothing and is refused.
* ``yolo``: a folder of ``<image stem>.txt`` files, a line ``class cx cy w h conf`` with
  the class index 0-based and the box in fractions of the image (Ultralytics' ``save_txt``
  with ``save_conf``). The confidence is required.
* ``deeppcb``: a folder of ``<image stem>.txt`` files (``00041000.txt`` or
  ``00041000_test.txt``), a line ``x1 y1 x2 y2 type score`` (type id 1-6 or a class name)
  or DeepPCB's own evaluation format ``x1,y1,x2,y2,confidence,type-name``; commas or spaces.
  The score is required: DeepPCB's evaluation ranks detections by it.
* ``pcbforge``: a ``.parquet`` or ``.csv`` table with ``label, score, x1, y1, x2, y2`` and
  ``sample_id`` (or, without it, ``path``).

Images are matched to samples by name (see :class:`SampleNames`); templates are images
like any other (a good board, where a prediction is a false alarm). The result has
:data:`PREDICTION_COLUMNS`, boxes in pixels ``x1, y1, x2, y2`` with exclusive ends like the
labels, sorted so that the same input always gives the same table. Any problem raises
:class:`PredictionsError`, one line naming the file and the entry or line: nothing is
skipped or guessed.
"""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import numpy as np
import pandas as pd

from pcbforge.core.files import (
    DEFAULT_MAX_FILE_BYTES,
    PathOutsideRootError,
    UnreadableFileError,
    read_regular_file,
    resolve_inside,
)
from pcbforge.datasets.dataset import Dataset
from pcbforge.datasets.deeppcb import DEEPPCB_CLASSES
from pcbforge.datasets.formats_common import (
    FLAT_SEPARATOR,
    MAX_JSON_FILE_BYTES,
    MAX_LABEL_FILE_BYTES,
    flat_file_names,
    split_suffix,
)

PREDICTION_COLUMNS = ("sample_id", "label", "score", "x1", "y1", "x2", "y2")
#: How far (pixels) a predicted box may reach past the image border: detectors regress
#: boxes a little outside it; such edges are clipped onto the border, larger ones refused.
BORDER_SLACK_PX = 1.0
#: Unknown image names quoted in an error (the count says how many there are in all).
NAMES_SHOWN = 5

_SEPARATORS = re.compile(r"[,\s]+")
_BOX_COLUMNS = ("x1", "y1", "x2", "y2")


class PredictionsError(ValueError):
    """Predictions that cannot be read or do not fit the dataset; the one-line message
    names the file, the entry or line, what was expected and what arrived."""


class PredictionFormat(str, Enum):
    """The prediction formats :func:`read_predictions` reads."""

    coco_results = "coco-results"
    yolo = "yolo"
    deeppcb = "deeppcb"
    pcbforge = "pcbforge"


@dataclass(frozen=True)
class RawBox:
    """One predicted box as its file gives it, before its image is matched to a sample."""

    where: str  # the file and the entry or line, for messages
    image: tuple[str, ...]  # the names the image goes by, tried in order
    label: str
    score: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2: pixels, or image fractions
    normalized: bool = False  # box in fractions of the image width and height


@dataclass
class Parsed:
    """What a reader found: every image the source names, as ``(where, names)`` (also
    images without a box), and the boxes. ``per_file``: one file per image (the folder
    formats), so two files that name one sample are a mistake."""

    images: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    boxes: list[RawBox] = field(default_factory=list)
    per_file: bool = False


#: ``reader(source, classes, coco_gt) -> Parsed``; ``coco_gt`` is for ``coco-results`` only.
Reader = Callable[[Path, Sequence[str], Path | None], Parsed]


# --- values -------------------------------------------------------------------------------


def _number(value: object, where: str, what: str, *, text: bool = True) -> float:
    """``value`` as a finite float: a number, or (``text``) the text of one."""
    number = math.nan
    if isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool):
        number = float(value)
    elif text and isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            pass
    if not math.isfinite(number):
        raise PredictionsError(f"{where}: {what} must be a finite number, got {value!r:.40}")
    return number


def _score(value: object, where: str, *, text: bool = True) -> float:
    score = _number(value, where, "score", text=text)
    if not 0.0 <= score <= 1.0:
        raise PredictionsError(f"{where}: score must be a number in [0, 1], got {value!r:.40}")
    return score


def _box_text(box: Sequence[float]) -> str:
    return "(x1={:g}, y1={:g}, x2={:g}, y2={:g})".format(*box)


def _nonempty(box: tuple[float, float, float, float], where: str
              ) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = box
    if x2 <= x1 or y2 <= y1:
        raise PredictionsError(f"{where}: box {_box_text(box)} is empty (expected x2 > x1 "
                               f"and y2 > y1)")
    return box


def _whole(value: str) -> int | None:
    """The integer the text ``value`` spells (``3`` or ``3.0``), else None."""
    try:
        number = float(value)
    except ValueError:
        return None
    return int(number) if math.isfinite(number) and number == int(number) else None


def _known_class(name: str, where: str, classes: Sequence[str], what: str = "class") -> str:
    if name not in classes:
        raise PredictionsError(f"{where}: {what} {name!r:.40} is not a class of the dataset "
                               f"(expected one of {list(classes)})")
    return name


def _numbered(classes: Sequence[str], first: int) -> str:
    if not classes:
        return "none: the dataset lists no classes"
    return ", ".join(f"{i}={name}" for i, name in enumerate(classes, start=first))


# --- bounded reads ------------------------------------------------------------------------


def _read_bytes(path: Path, what: str, max_bytes: int) -> bytes:
    """The bytes of the regular file ``path``, at most ``max_bytes``; a missing file, a
    FIFO, device or folder, or a larger file raises :class:`PredictionsError`."""
    try:
        return read_regular_file(path, max_bytes)
    except FileNotFoundError as err:
        raise PredictionsError(f"{path}: {what} not found") from err
    except UnreadableFileError as err:
        if err.reason == "too_large":
            raise PredictionsError(f"{path}: expected a {what} of at most {max_bytes:,} "
                                   f"bytes, got a larger file; not read") from err
        raise PredictionsError(f"{path}: expected a {what}, a regular file; got "
                               f"{err.detail}") from err


def _read_text(path: Path, what: str, max_bytes: int) -> str:
    data = _read_bytes(path, what, max_bytes)
    if data.startswith(b"\xef\xbb\xbf"):  # a byte-order mark, as Windows editors write
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise PredictionsError(f"{path}:{line}: expected UTF-8 text in a {what}, got byte "
                               f"{data[err.start]:#04x} at offset {err.start}") from err


def _read_json(path: Path, what: str) -> object:
    text = _read_text(path, what, MAX_JSON_FILE_BYTES)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise PredictionsError(f"{path}:{err.lineno}: {what} is not valid JSON ({err.msg} "
                               f"at column {err.colno})") from err


def _text_files(folder: Path, what: str) -> list[Path]:
    """The ``.txt`` files directly in ``folder``, by name: no sub-folders, no hidden files,
    and no link that leads outside ``folder`` (refused, not followed)."""
    if not folder.exists():
        raise PredictionsError(f"{folder}: {what} not found")
    if not folder.is_dir():
        raise PredictionsError(f"{folder}: expected a folder of .txt files ({what}), got a "
                               f"file")
    files = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.startswith(".") or entry.suffix.lower() != ".txt" or entry.is_dir():
            continue
        try:
            resolve_inside(folder, entry.name)
        except PathOutsideRootError as err:
            raise PredictionsError(f"{entry}: expected a file inside {folder}, got a link to "
                                   f"{entry.resolve()}; not read") from err
        files.append(entry)
    return files


# --- coco-results ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CocoTruth:
    """What predictions need of a COCO ground truth: image id -> the names the image goes
    by (its ``pcbforge.sample_id`` when it has one, then its ``file_name``), and category
    id -> name."""

    file: str
    images: dict[int | str, tuple[str, ...]]
    categories: dict[int, str]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _json_kind(value: object) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"
            }.get(type(value), "number")


def parse_coco_gt(data: object, file: str) -> CocoTruth:
    """The image and category ids of the COCO instances JSON ``data`` read from ``file``."""
    if not (isinstance(data, dict) and isinstance(data.get("images"), list)
            and isinstance(data.get("categories"), list)):
        got = (f"a JSON {_json_kind(data)}" if not isinstance(data, dict)
               else f"keys {sorted(data)[:10]}")
        raise PredictionsError(f"{file}: expected a COCO ground truth (an object with "
                               f"'images' and 'categories' lists), got {got}")
    images: dict[int | str, tuple[str, ...]] = {}
    for index, image in enumerate(data["images"]):
        where = f"{file}: images[{index}]"
        image_id = image.get("id") if isinstance(image, dict) else None
        name = image.get("file_name") if isinstance(image, dict) else None
        if not ((_is_int(image_id) or isinstance(image_id, str)) and isinstance(name, str)
                and name):
            raise PredictionsError(f"{where}: expected an object with an 'id' and a "
                                   f"'file_name', got {image!r:.80}")
        if image_id in images:
            raise PredictionsError(f"{where}: image id {image_id!r} appears twice (expected "
                                   f"unique ids)")
        extra = image.get("pcbforge")
        given = str(extra.get("sample_id") or "") if isinstance(extra, dict) else ""
        images[image_id] = (given, name) if given else (name,)
    categories: dict[int, str] = {}
    for index, category in enumerate(data["categories"]):
        where = f"{file}: categories[{index}]"
        category_id = category.get("id") if isinstance(category, dict) else None
        name = category.get("name") if isinstance(category, dict) else None
        if not _is_int(category_id) or not isinstance(name, str) or not name:
            raise PredictionsError(f"{where}: expected an object with an integer 'id' and a "
                                   f"'name', got {category!r:.80}")
        if category_id in categories:
            raise PredictionsError(f"{where}: category id {category_id} appears twice "
                                   f"(expected unique ids)")
        categories[category_id] = name
    return CocoTruth(file, images, categories)


def parse_coco_results(data: object, file: str, classes: Sequence[str],
                       truth: CocoTruth | None = None) -> Parsed:
    """The boxes of the COCO results JSON ``data`` read from ``file``; ids are read through
    ``truth`` when given (see the module's notes)."""
    if not isinstance(data, list):
        raise PredictionsError(f"{file}: expected a JSON list of results (objects with "
                               f"image_id, category_id, bbox and score), got a JSON "
                               f"{_json_kind(data)}")
    parsed = Parsed()
    for index, entry in enumerate(data):
        where = f"{file}: entry {index}"
        if not isinstance(entry, dict):
            raise PredictionsError(f"{where}: expected an object with image_id, category_id, "
                                   f"bbox and score, got {entry!r:.80}")
        image = _coco_image(entry, where, truth)
        label = _coco_category(entry.get("category_id"), where, classes, truth)
        bbox = entry.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise PredictionsError(f"{where}: expected bbox [x, y, width, height] (4 "
                                   f"numbers), got {bbox!r:.80}")
        x, y, w, h = (_number(v, where, "bbox value", text=False) for v in bbox)
        if "score" not in entry:
            raise PredictionsError(f"{where}: the score is missing (expected a 'score' in "
                                   f"[0, 1])")
        score = _score(entry["score"], where, text=False)
        parsed.images.append((where, image))
        parsed.boxes.append(RawBox(where, image, label, score,
                                   _nonempty((x, y, x + w, y + h), where)))
    return parsed


def _coco_image(entry: dict, where: str, truth: CocoTruth | None) -> tuple[str, ...]:
    """The names of the image a results entry is about."""
    if "image_id" in entry:
        image_id = entry["image_id"]
        if not (_is_int(image_id) or isinstance(image_id, str)) or image_id == "":
            raise PredictionsError(f"{where}: expected an integer or text image_id, got "
                                   f"{image_id!r:.40}")
        if truth is not None:
            if image_id not in truth.images:
                raise PredictionsError(f"{where}: image_id {image_id!r:.40} is not an image "
                                       f"id of {truth.file} (its images[].id)")
            return truth.images[image_id]
        if _is_int(image_id):
            raise PredictionsError(f"{where}: image_id {image_id} is a number, which names an "
                                   f"image only through a COCO ground truth: pass coco_gt "
                                   f"(the annotations.json the model was evaluated with), "
                                   f"or give sample ids or file names")
        return (image_id,)
    name = entry.get("file_name")
    if not isinstance(name, str) or not name:
        raise PredictionsError(f"{where}: expected an 'image_id' or a 'file_name', got keys "
                               f"{sorted(entry)[:10]}")
    return (name,)


def _coco_category(value: object, where: str, classes: Sequence[str],
                   truth: CocoTruth | None) -> str:
    if not _is_int(value):
        raise PredictionsError(f"{where}: expected an integer category_id, got {value!r:.40}")
    if truth is None:
        if not 1 <= value <= len(classes):
            raise PredictionsError(
                f"{where}: category_id {value} is not a class of the dataset (without coco_gt "
                f"ids are 1-based positions in its classes: {_numbered(classes, 1)})")
        return classes[value - 1]
    if value not in truth.categories:
        raise PredictionsError(f"{where}: category_id {value} is not a category of "
                               f"{truth.file} (ids {sorted(truth.categories)})")
    return _known_class(truth.categories[value], where, classes,
                        f"category_id {value}, in {truth.file},")


def read_coco_results(source: Path, classes: Sequence[str],
                      coco_gt: Path | None = None) -> Parsed:
    """Read the COCO results JSON ``source`` (ids through the ground truth ``coco_gt``)."""
    truth = None
    if coco_gt is not None:
        truth = parse_coco_gt(_read_json(coco_gt, "COCO ground truth"), str(coco_gt))
    return parse_coco_results(_read_json(source, "COCO results file"), str(source), classes,
                              truth)


# --- yolo and deeppcb: a folder of text files, one per image -------------------------------


def _text_lines(text: str, file: str) -> Iterator[tuple[str, str]]:
    """``(where, line)`` of each non-blank line of a prediction file, stripped, ``where``
    being ``file:number`` for its error messages."""
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line:
            yield f"{file}:{number}", line


def parse_yolo_lines(text: str, file: str, image: str, classes: Sequence[str]
                     ) -> list[RawBox]:
    """The boxes of one YOLO prediction file (lines ``class cx cy w h conf``)."""
    boxes = []
    for where, line in _text_lines(text, file):
        fields = line.split()
        if len(fields) == 5:
            raise PredictionsError(f"{where}: the confidence is missing: expected 'class cx "
                                   f"cy w h conf' (6 values; Ultralytics writes it with "
                                   f"save_conf=True), got {line!r:.80}")
        if len(fields) != 6:
            raise PredictionsError(f"{where}: expected 'class cx cy w h conf' (6 values), "
                                   f"got {len(fields)} values: {line!r:.80}")
        index = _whole(fields[0])
        if index is None or not 0 <= index < len(classes):
            raise PredictionsError(f"{where}: class {fields[0]!r:.40} is not a class index of "
                                   f"the dataset (expected {_numbered(classes, 0)})")
        cx, cy, w, h = (_number(v, where, name)
                        for v, name in zip(fields[1:5], ("cx", "cy", "w", "h"), strict=True))
        if w <= 0 or h <= 0:
            raise PredictionsError(f"{where}: box is empty (expected w > 0 and h > 0, got "
                                   f"w={w:g}, h={h:g})")
        box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        boxes.append(RawBox(where, (image,), classes[index], _score(fields[5], where), box,
                            normalized=True))
    return boxes


def parse_deeppcb_lines(text: str, file: str, image: str, classes: Sequence[str]
                        ) -> list[RawBox]:
    """The boxes of one DeepPCB prediction file: lines ``x1 y1 x2 y2 type score`` or, as
    DeepPCB's evaluation reads them, ``x1,y1,x2,y2,confidence,type-name``. Numbers follow
    the first order; a class name in the last field is what marks the second."""
    boxes = []
    for where, line in _text_lines(text, file):
        fields = [f for f in _SEPARATORS.split(line) if f]
        if len(fields) == 5:
            raise PredictionsError(f"{where}: the score is missing (DeepPCB's evaluation ranks "
                                   f"detections by it): expected 'x1 y1 x2 y2 type score' or "
                                   f"'x1,y1,x2,y2,confidence,type', got {line!r:.80}")
        if len(fields) != 6:
            raise PredictionsError(f"{where}: expected 'x1 y1 x2 y2 type score' or "
                                   f"'x1,y1,x2,y2,confidence,type' (6 values), got "
                                   f"{len(fields)} values: {line!r:.80}")
        corners = tuple(_number(v, where, name) for v, name in zip(fields[:4], _BOX_COLUMNS,
                                                                 strict=True))
        kind, score = fields[4], fields[5]
        if not _is_float_text(fields[5]):
            score, kind = fields[4], fields[5]  # DeepPCB's order: confidence, type name
        boxes.append(RawBox(where, (image,), _deeppcb_type(kind, where, classes),
                            _score(score, where), _nonempty(corners, where)))
    return boxes


def _is_float_text(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _deeppcb_type(value: str, where: str, classes: Sequence[str]) -> str:
    """The class a DeepPCB type field names: a type id 1-6, or a class name."""
    if not _is_float_text(value):
        return _known_class(value, where, classes, "type")
    number = _whole(value)
    if number is None or not 1 <= number <= len(DEEPPCB_CLASSES):
        raise PredictionsError(f"{where}: type {value!r:.40} is not a DeepPCB type id "
                               f"({_numbered(DEEPPCB_CLASSES, 1)}) or a class name")
    name = DEEPPCB_CLASSES[number - 1]
    return _known_class(name, where, classes, f"type {number} ({name})")


def _read_folder(source: Path, what: str, parse: Callable[[str, str, str], list[RawBox]]
                 ) -> Parsed:
    parsed = Parsed(per_file=True)
    for file in _text_files(source, f"{what} folder"):
        text = _read_text(file, f"{what} file", MAX_LABEL_FILE_BYTES)
        image = split_suffix(file.name)[0]
        parsed.images.append((str(file), (image,)))
        parsed.boxes.extend(parse(text, str(file), image))
    return parsed


def read_yolo(source: Path, classes: Sequence[str], coco_gt: Path | None = None) -> Parsed:
    """Read the folder ``source`` of YOLO prediction files, one per image."""
    return _read_folder(source, "YOLO predictions",
                        lambda text, file, image: parse_yolo_lines(text, file, image, classes))


def read_deeppcb(source: Path, classes: Sequence[str], coco_gt: Path | None = None) -> Parsed:
    """Read the folder ``source`` of DeepPCB prediction files, one per image."""
    return _read_folder(source, "DeepPCB predictions",
                        lambda text, file, image: parse_deeppcb_lines(text, file, image,
                                                                      classes))


# --- pcbforge: a table --------------------------------------------------------------------


def parse_table(table: pd.DataFrame, file: str, classes: Sequence[str], *,
                csv: bool = False) -> Parsed:
    """The boxes of a pcbforge predictions table (``csv``: rows are also given as lines)."""
    id_column = next((c for c in ("sample_id", "path") if c in table.columns), None)
    missing = [c for c in ("label", "score", *_BOX_COLUMNS) if c not in table.columns]
    if id_column is None or missing:
        missing = ([] if id_column else ["sample_id or path"]) + missing
        raise PredictionsError(f"{file}: expected columns sample_id (or path), label, score, "
                               f"x1, y1, x2, y2; missing {missing} (columns found: "
                               f"{list(table.columns)[:20]})")
    parsed = Parsed()
    columns = (id_column, "label", "score", *_BOX_COLUMNS)
    for row, (name, label, score, *box) in enumerate(zip(*(table[c] for c in columns),
                                                         strict=True)):
        where = f"{file}: row {row}" + (f" (line {row + 2})" if csv else "")
        if not isinstance(name, str) or not name.strip():
            raise PredictionsError(f"{where}: expected a {id_column}, got {name!r:.40}")
        if not isinstance(label, str):
            raise PredictionsError(f"{where}: expected a class name as label, got "
                                   f"{label!r:.40}")
        corners = tuple(_number(v, where, c) for v, c in zip(box, _BOX_COLUMNS, strict=True))
        image = (name.strip(),)
        parsed.images.append((where, image))
        parsed.boxes.append(RawBox(where, image, _known_class(label, where, classes, "label"),
                                   _score(score, where), _nonempty(corners, where)))
    return parsed


def read_table_predictions(source: Path, classes: Sequence[str],
                           coco_gt: Path | None = None) -> Parsed:
    """Read the pcbforge predictions table ``source`` (``.parquet`` or ``.csv``)."""
    kind = source.suffix.lower().lstrip(".")
    if kind not in ("parquet", "csv"):
        raise PredictionsError(f"{source}: expected a .parquet or .csv predictions table, got "
                               f"a {source.suffix or 'suffix-less'!s} file")
    data = _read_bytes(source, f"{kind} predictions table", DEFAULT_MAX_FILE_BYTES)
    try:
        if kind == "parquet":
            table = pd.read_parquet(io.BytesIO(data))
        else:  # all text: ids stay as written ("00041" is not 41); numbers are read below
            table = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)
    except Exception as err:  # noqa: BLE001 - pyarrow and pandas raise many types for one cause
        text = str(err).strip()
        detail = text.splitlines()[0] if text else type(err).__name__
        raise PredictionsError(f"{source}: expected a {kind} table, got one that cannot be "
                               f"read ({detail})") from err
    return parse_table(table, str(source), classes, csv=kind == "csv")


# --- matching images to samples ------------------------------------------------------------


def _clean_name(name: str) -> str:
    name = name.strip().replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    return name


class SampleNames:
    """Which sample an image name means. A name is looked up by kind, in this order, and
    the first kind that knows it decides: the sample id; the samples-table ``path``; the
    flat export file name (:func:`~pcbforge.datasets.formats_common.flat_file_names` over
    the dataset, as YOLO names images); that name without its extension (also without a
    clash number, so that a name two paths flatten to is ambiguous, not a guess); the
    path's file name; its stem (also without a ``_test`` suffix, as DeepPCB names its
    annotation files). A name that the deciding kind gives to several samples is
    ambiguous."""

    KINDS = ("sample_id", "path", "flat file name", "flat file stem", "file name",
             "file stem")

    def __init__(self, samples: pd.DataFrame):
        ids = samples["sample_id"].astype(str).tolist()
        paths = [_clean_name(p) for p in samples["path"].astype(str)]
        flat = flat_file_names(paths)
        self._kinds: list[dict[str, set[str]]] = [{} for _ in self.KINDS]
        for sample_id, path, flat_name in zip(ids, paths, flat, strict=True):
            plain = path.strip("/").replace("/", FLAT_SEPARATOR)
            file_name = path.rsplit("/", 1)[-1]
            stem = split_suffix(file_name)[0]
            names = ({sample_id}, {path}, {flat_name},
                     {split_suffix(flat_name)[0], split_suffix(plain)[0]}, {file_name},
                     {stem, stem[: -len("_test")] if stem.endswith("_test") else stem})
            for kind, kind_names in zip(self._kinds, names, strict=True):
                for name in kind_names - {""}:
                    kind.setdefault(name, set()).add(sample_id)

    def lookup(self, name: str) -> tuple[str, tuple[str, ...]]:
        """``(kind, sample ids)`` of ``name``; ``("", ())`` when no sample goes by it."""
        name = _clean_name(name)
        for kind, names in zip(self.KINDS, self._kinds, strict=True):
            if name in names:
                return kind, tuple(sorted(names[name]))
        return "", ()


def match_images(samples: pd.DataFrame, images: list[tuple[str, tuple[str, ...]]], *,
                 per_file: bool = False) -> dict[tuple[str, ...], str]:
    """Image names -> sample id, for every image in ``images`` (``(where, names)``: the
    first name that some sample goes by decides). Names no sample goes by raise one error
    that lists them; then an ambiguous name or (``per_file``) a second file for one sample
    raises."""
    index = SampleNames(samples)
    paths = dict(zip(samples["sample_id"].astype(str), samples["path"].astype(str),
                     strict=True))
    found: dict[tuple[str, ...], str] = {}
    unknown: dict[str, str] = {}  # name -> where it first appears
    problems: list[str] = []
    first_file: dict[str, str] = {}
    for where, names in images:
        if names in found or names[-1] in unknown:
            if per_file and names in found:
                problems.append(f"{where}: names sample {found[names]!r} again (one file "
                                f"per image expected)")
            continue
        kind, ids = "", ()
        for name in names:
            kind, ids = index.lookup(name)
            if ids:
                break
        if not ids:
            unknown[names[-1]] = where
        elif len(ids) > 1:
            shown = ", ".join(repr(i) for i in ids[:NAMES_SHOWN])
            problems.append(f"{where}: image {name!r} is the {kind} of {len(ids)} samples "
                            f"({shown}); expected a name of one sample: use its sample_id or "
                            f"path")
        else:
            found[names] = ids[0]
            if per_file and ids[0] in first_file:
                problems.append(f"{where}: names sample {ids[0]!r} ({paths[ids[0]]}), as "
                                f"{first_file[ids[0]]} does; expected one file per image")
            first_file.setdefault(ids[0], where)
    if unknown:
        (name, where), *_ = unknown.items()
        shown = ", ".join(repr(n) for n in list(unknown)[:NAMES_SHOWN])
        more = f" and {len(unknown) - NAMES_SHOWN} more" if len(unknown) > NAMES_SHOWN else ""
        raise PredictionsError(
            f"{where}: image {name!r} is not a sample of the dataset ({len(unknown)} unknown "
            f"image name{'s' if len(unknown) > 1 else ''}: {shown}{more}); expected a "
            f"sample_id, a sample path, a flat export file name or a file stem")
    if problems:
        raise PredictionsError(problems[0])
    return found


def _size(value: object) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def place_box(raw: RawBox, sample_id: str, width: float | None, height: float | None
              ) -> tuple[float, float, float, float]:
    """``raw``'s box in pixels of its sample's ``width`` x ``height`` image (None: unknown):
    fractions are scaled; edges up to :data:`BORDER_SLACK_PX` past the border are clipped
    onto it; a box further out raises. Without a size a pixel box is kept unchecked."""
    x1, y1, x2, y2 = raw.box
    if width is None or height is None:
        if raw.normalized:
            raise PredictionsError(f"{raw.where}: sample {sample_id!r} has no width and "
                                   f"height in the samples table; expected them to turn the "
                                   f"normalised box into pixels")
        return (x1 + 0.0, y1 + 0.0, x2 + 0.0, y2 + 0.0)  # + 0.0: no -0.0 in the table
    if raw.normalized:
        x1, y1, x2, y2 = x1 * width, y1 * height, x2 * width, y2 * height
    slack = BORDER_SLACK_PX
    clipped = (max(x1, 0.0), max(y1, 0.0), min(x2, width), min(y2, height))
    if (x1 < -slack or y1 < -slack or x2 > width + slack or y2 > height + slack
            or clipped[2] <= clipped[0] or clipped[3] <= clipped[1]):
        raise PredictionsError(f"{raw.where}: box {_box_text((x1, y1, x2, y2))} is outside "
                               f"the {width:g}x{height:g} image of sample {sample_id!r} "
                               f"(expected it inside, or within {slack:g} px of its border)")
    return tuple(v + 0.0 for v in clipped)  # + 0.0: no -0.0 in the table


def empty_predictions() -> pd.DataFrame:
    """A predictions table with no rows: :data:`PREDICTION_COLUMNS` and their dtypes."""
    return pd.DataFrame({column: pd.Series(dtype=str if column in ("sample_id", "label")
                                           else np.float64)
                         for column in PREDICTION_COLUMNS})


def predictions_table(samples: pd.DataFrame, parsed: Parsed) -> pd.DataFrame:
    """The canonical table of what a reader found: images matched to samples, boxes in
    pixels, rows sorted by sample_id, score (highest first), then box and label."""
    found = match_images(samples, parsed.images, per_file=parsed.per_file)
    if not parsed.boxes:
        return empty_predictions()
    ids = samples["sample_id"].astype(str)
    widths = dict(zip(ids, samples["width"] if "width" in samples else [None] * len(ids),
                      strict=True))
    heights = dict(zip(ids, samples["height"] if "height" in samples else [None] * len(ids),
                       strict=True))
    rows = []
    for raw in parsed.boxes:
        sample_id = found[raw.image]
        box = place_box(raw, sample_id, _size(widths[sample_id]), _size(heights[sample_id]))
        rows.append((sample_id, raw.label, raw.score, *box))
    table = pd.DataFrame(rows, columns=list(PREDICTION_COLUMNS))
    table = table.astype({"sample_id": str, "label": str,
                          **{c: np.float64 for c in ("score", *_BOX_COLUMNS)}})
    return table.sort_values(["sample_id", "score", *_BOX_COLUMNS, "label"],
                             ascending=[True, False, True, True, True, True, True],
                             kind="mergesort").reset_index(drop=True)


# --- the entry point ----------------------------------------------------------------------

#: Format name -> reader. Adding a format: a :class:`PredictionFormat` and its reader here.
FORMATS: dict[str, Reader] = {
    PredictionFormat.coco_results.value: read_coco_results,
    PredictionFormat.yolo.value: read_yolo,
    PredictionFormat.deeppcb.value: read_deeppcb,
    PredictionFormat.pcbforge.value: read_table_predictions,
}


def read_predictions(dataset: Dataset, source: Path | str, fmt: str, *,
                     coco_gt: Path | str | None = None) -> pd.DataFrame:
    """The predictions in ``source`` (format ``fmt``, one of :data:`FORMATS`) as one table
    of :data:`PREDICTION_COLUMNS` matched to ``dataset``'s samples.

    ``coco_gt``: for ``coco-results``, the COCO ground truth its ids refer to. Raises
    :class:`PredictionsError` for an unknown format and for any entry that does not fit
    (see the module's notes); an empty prediction set gives an empty table."""
    name = getattr(fmt, "value", fmt)
    if name not in FORMATS:
        raise PredictionsError(f"unknown prediction format {name!r}; expected one of: "
                               f"{', '.join(FORMATS)}")
    if coco_gt is not None and name != PredictionFormat.coco_results.value:
        raise PredictionsError(f"coco_gt is for the {PredictionFormat.coco_results.value} "
                               f"format only; got it with {name!r}")
    parsed = FORMATS[name](Path(source), list(dataset.info.classes),
                           Path(coco_gt) if coco_gt is not None else None)
    return predictions_table(dataset.samples, parsed)


__all__ = [
    "BORDER_SLACK_PX", "FORMATS", "PREDICTION_COLUMNS", "CocoTruth", "Parsed",
    "PredictionFormat", "PredictionsError", "RawBox", "SampleNames", "empty_predictions",
    "match_images", "parse_coco_gt", "parse_coco_results", "parse_deeppcb_lines",
    "parse_table", "parse_yolo_lines", "place_box", "predictions_table", "read_coco_results",
    "read_deeppcb", "read_predictions", "read_table_predictions", "read_yolo",
]
