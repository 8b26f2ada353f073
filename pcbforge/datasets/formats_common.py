"""Helpers shared by the label-format modules (file names, sizes, rows, bounded reads), and
:class:`LabelFormat`, the record each of them registers (see :mod:`pcbforge.datasets.formats`).
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import pandas as pd
from PIL import Image

from pcbforge.core.files import UnreadableFileError, read_regular_file, resolve_inside
from pcbforge.datasets.dataset import LABEL_COLUMNS, empty_labels, image_file

#: Sample columns the format loaders return. ``id_given`` says the ``sample_id`` was stored
#: in the files (a pcbforge export); otherwise the loader made one up that is unique within
#: what it read. ``file`` is where the image is on disk ("" when the loader was not told).
SAMPLE_COLUMNS = ["sample_id", "id_given", "path", "file", "width", "height", "split",
                  "synthetic"]
#: Sample columns a loader adds when its source pairs images with templates (a pcbforge
#: export made with ``--templates pair``): the template's path as the files name it
#: (relative to the same root as ``path``), where it is on disk ("" when the loader was not
#: told) and its stored sample id ("" when not stored); all "" for an unpaired image.
TEMPLATE_COLUMNS = ["template_path", "template_file", "template_id"]
#: Float slack (pixels) for a box edge past the image border: such edges are clipped onto
#: the border (a YOLO/COCO text rounding, not a wrong box); a larger overshoot is an error.
BORDER_SLACK_PX = 1e-3
#: Separator that replaces "/" when nested sample paths are flattened into one folder.
FLAT_SEPARATOR = "__"
#: Largest label text file read (YOLO txt/yaml, VOC XML, DeepPCB lists): a 16 MiB label
#: file is already some 300k boxes; anything larger is a mistake or a device, not labels.
MAX_LABEL_FILE_BYTES = 16 << 20
#: Largest JSON annotations file read (COCO instances, the YOLO side file): about a million
#: boxes at ~250 bytes each; PCB label sets are far smaller, and parsing costs ~10x in memory.
MAX_JSON_FILE_BYTES = 256 << 20


def read_label_bytes(path: Path, what: str, max_bytes: int = MAX_LABEL_FILE_BYTES) -> bytes:
    """The bytes of the label file ``path`` (``what`` names its kind in messages).

    Read only when it is a regular file of at most ``max_bytes``: a FIFO, socket or device
    (also behind a link) or a larger file raises ``ValueError`` naming ``path``, instead of
    a hang or a read without end. A missing file raises ``FileNotFoundError``."""
    try:
        return read_regular_file(path, max_bytes=max_bytes)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{path}: {what} not found") from err
    except UnreadableFileError as err:
        if err.reason == "too_large":
            detail = f"larger than the {max_bytes:,}-byte limit for a {what}; not read"
        else:
            detail = f"{err.detail} (a {what} must be one); not read"
        raise ValueError(f"{path}: {detail}") from err


def read_label_text(path: Path, what: str, max_bytes: int = MAX_LABEL_FILE_BYTES, *,
                    errors: str = "strict") -> str:
    """The UTF-8 text of the label file ``path``, read as :func:`read_label_bytes` does;
    bytes that are not UTF-8 raise ``ValueError`` naming ``file:line`` (unless ``errors``
    says otherwise, as for :meth:`bytes.decode`)."""
    data = read_label_bytes(path, what, max_bytes)
    try:
        return data.decode("utf-8", errors=errors)
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise ValueError(f"{path}:{line}: {what} is not UTF-8 text (byte "
                         f"{data[err.start]:#04x} at offset {err.start})") from err


def inside_root(root: Path, name: str, where: str, *, allow_outside: bool) -> Path:
    """``name`` (relative to ``root``) resolved, when it stays inside ``root``; else
    :class:`~pcbforge.core.files.PathOutsideRootError` that starts with ``where`` (the
    label file and the entry or line that names the path)."""
    try:
        return resolve_inside(root, name, allow_outside=allow_outside)
    except ValueError as err:
        raise type(err)(f"{where}: {err}") from err


def flat_file_names(paths: Iterable[str]) -> list[str]:
    """One unique file name per sample path, for formats that keep images in one folder.

    "/" becomes ``__``; a clash (including two files that differ only in extension or case,
    which would share a label file or collide on case-insensitive disks) gets ``-1``, ``-2``...
    appended to its stem.
    """
    names, used = [], set()
    for path in paths:
        flat = str(path).replace("\\", "/").strip("/").replace("/", FLAT_SEPARATOR)
        stem, suffix = split_suffix(flat)
        candidate, counter = stem, 0
        while candidate.lower() in used:
            counter += 1
            candidate = f"{stem}-{counter}"
        used.add(candidate.lower())
        names.append(candidate + suffix)
    return names


def split_suffix(name: str) -> tuple[str, str]:
    suffix = Path(name).suffix
    return (name[: -len(suffix)], suffix) if suffix else (name, "")


def read_image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` from the image header only (PIL decodes lazily)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image not found")
    with Image.open(path) as image:
        return image.size


def sample_size(sample: pd.Series, image: Path) -> tuple[int, int]:
    """The sample's width and height, read from ``image`` when the table lacks them."""
    width, height = sample.get("width"), sample.get("height")
    if _positive(width) and _positive(height):
        return int(width), int(height)
    return read_image_size(image)


def _positive(value: object) -> bool:
    try:
        return float(value) > 0  # NaN compares False, so missing sizes fall through
    except (TypeError, ValueError):
        return False


def copy_image(source: Path, target: Path) -> None:
    """Copy (never move) one image, creating folders; a missing source names its path."""
    if not source.is_file():
        raise FileNotFoundError(f"{source}: image not found")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, target)


def boxes_by_sample(samples: pd.DataFrame, labels: pd.DataFrame,
                    classes: list[str]) -> dict[str, pd.DataFrame]:
    """The labels rows of each sample (rows of other samples are ignored, so a whole
    labels table can be passed with a subset of samples). Unknown labels raise."""
    ids = samples["sample_id"].astype(str)
    if ids.duplicated().any():
        raise ValueError(f"duplicate sample_id {ids[ids.duplicated()].iloc[0]!r} in samples")
    rows = labels[labels["sample_id"].astype(str).isin(set(ids))]
    unknown = ~rows["label"].isin(classes)
    if unknown.any():
        bad = rows[unknown].iloc[0]
        raise ValueError(f"label {bad['label']!r} of sample {bad['sample_id']!r} "
                         f"is not one of the classes {classes}")
    return {str(key): group for key, group in rows.groupby(rows["sample_id"].astype(str))}


def box_inside(where: str, corners: tuple[float, float, float, float], width: int,
               height: int) -> tuple[float, float, float, float]:
    """``corners`` (``x1, y1, x2, y2``, exclusive ends) checked against a ``width`` x
    ``height`` image: empty or outside raises ``ValueError`` naming ``where``; float
    overshoot up to :data:`BORDER_SLACK_PX` is clipped onto the border."""
    x1, y1, x2, y2 = corners
    if not all(math.isfinite(v) for v in corners):
        raise ValueError(f"{where}: box {_corners_text(corners)} has a coordinate that is not "
                         f"a finite number")
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"{where}: box {_corners_text(corners)} is empty (expected x2 > x1 "
                         f"and y2 > y1)")
    slack = BORDER_SLACK_PX
    if x1 < -slack or y1 < -slack or x2 > width + slack or y2 > height + slack:
        raise ValueError(f"{where}: box {_corners_text(corners)} is outside the "
                         f"{width}x{height} image")
    return max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height))


def _corners_text(corners: tuple[float, float, float, float]) -> str:
    x1, y1, x2, y2 = corners
    return f"(x1={x1:g}, y1={y1:g}, x2={x2:g}, y2={y2:g})"


def check_missing_labels(missing_labels: str) -> None:
    """The loaders' ``missing_labels`` choice: ``error`` or ``empty`` (no boxes)."""
    if missing_labels not in ("error", "empty"):
        raise ValueError(f"missing_labels must be 'error' or 'empty', got {missing_labels!r}")


def labels_frame(rows: list[dict]) -> pd.DataFrame:
    """A labels table with the standard columns and dtypes (also when there are no rows)."""
    if not rows:
        return empty_labels()
    table = pd.DataFrame(rows, columns=list(LABEL_COLUMNS))
    return table.astype({"x1": float, "y1": float, "x2": float, "y2": float, "synthetic": bool})


def sample_flag(sample: pd.Series, column: str = "synthetic") -> bool:
    value = sample.get(column, False)
    return bool(value) if value is not None and not pd.isna(value) else False


def text_value(value: object) -> str:
    """A str column value, with missing values (None/NaN) as ""."""
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


# --- templates ---------------------------------------------------------------------------


class TemplateMode(str, Enum):
    """What an export does with the templates (the defect-free references of tested
    images): ``pair`` writes each beside its tested images, not as an image of its own;
    ``negatives`` exports them as images without boxes; ``omit`` leaves them out."""

    pair = "pair"
    negatives = "negatives"
    omit = "omit"


#: Columns of the rows a format's ``save`` gets in ``pair`` mode (and only then): the
#: samples-table path of the row's template ("" when the row has none that can be written:
#: no template, or a corrupt one) and the template's sample id.
PAIR_TEMPLATE = "pair_template"
PAIR_TEMPLATE_ID = "pair_template_id"


def pairs_asked(samples: pd.DataFrame) -> bool:
    """Whether an export asked ``save`` to write each row's template beside it."""
    return PAIR_TEMPLATE in samples.columns


def pair_template(sample: pd.Series, image_root: Path) -> tuple[str, Path] | None:
    """The samples-table path of a row's template and its file, when the export pairs it;
    a path that is absolute or leads out of the image root raises ``ValueError``."""
    path = text_value(sample.get(PAIR_TEMPLATE, ""))
    if not path:
        return None
    if Path(path).is_absolute() or ".." in Path(path).parts:
        raise ValueError(f"sample {sample['sample_id']!r}: template path {path!r} must be "
                         f"relative and stay inside the image root")
    return path, image_file(image_root, path)


def pair_counts(samples: pd.DataFrame) -> dict[str, int]:
    """A ``pair`` export's counts of one split: tested images written with their template,
    and tested images whose template could not be (missing or not usable)."""
    paired = samples[PAIR_TEMPLATE].fillna("").astype(str) != ""
    tested = samples.get("template_path", pd.Series("", index=samples.index))
    tested = tested.fillna("").astype(str) != ""
    return {"paired": int(paired.sum()), "unpaired": int((tested & ~paired).sum())}


# --- the format record --------------------------------------------------------------------


class SourceError(ValueError):
    """The source is not the format named, or breaks it: the message names file and place."""


#: Folder names (and YOLO split keys) that mean a split, as export tools spell them.
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val",
               "validation": "val", "test": "test", "testing": "test"}


@dataclass(frozen=True)
class SourcePart:
    """One part of a labelled source that a format's ``load`` reads: ``path`` (a file or a
    folder, as the format's ``discover`` found it), the pcbforge ``split`` its place means
    ("" when none) and the format's own name for that part (``key``: a YOLO split key)."""

    path: Path
    split: str = ""
    key: str = ""


@dataclass(frozen=True)
class ReadOptions:
    """What an import asks of a format's ``load``: the images' folder (COCO), what an image
    without a label file means (``error`` / ``empty``) and whether image paths may lead
    outside the source."""

    images: Path | None = None
    missing_labels: str = "error"
    allow_outside: bool = False


#: ``load(part, options) -> (samples, labels, classes)``: the loaders' tables
#: (:data:`SAMPLE_COLUMNS`, the labels columns) and class names of one part.
Loader = Callable[[SourcePart, ReadOptions], tuple[pd.DataFrame, pd.DataFrame, list[str]]]
#: ``save(samples, labels, classes, image_root, out, split) -> counts``: write the rows of
#: one split ("" for all rows when the format is not ``per_split``) into the export folder
#: ``out``; the counts go into the export's report under the split's name (``all`` for "").
Saver = Callable[[pd.DataFrame, pd.DataFrame, list[str], Path, Path, str], dict[str, int]]


@dataclass(frozen=True)
class LabelFormat:
    """A label format: its name, its CLI help, and what it can do.

    A format that can be imported has ``discover`` (``src -> [SourcePart]``: the parts of a
    source, raising ``FileNotFoundError``/``SourceError`` when there are none) and ``load``;
    one that can be exported has ``save``. ``per_split``: ``save`` is called once per split
    (else once with every row, the format writing the splits itself); ``finish(stage,
    final)`` runs after the last ``save``, before the export folder ``stage`` becomes
    ``final``. ``options``: the import options it reads (``images``, ``missing_labels``),
    which the CLI offers and the recipe accepts for it. ``templates``: the
    :class:`TemplateMode` values an export in it can take: leaving templates out or
    exporting them as images without boxes asks nothing of ``save``; ``pair`` needs a
    ``save`` that writes each row's :data:`PAIR_TEMPLATE` beside its image.
    """

    name: str
    #: What the format is, a few words without a full stop (the CLI commands' help).
    help: str
    #: What a source of it looks like (the help of the CLI's SRC argument).
    source_help: str = ""
    discover: Callable[[Path], list[SourcePart]] | None = None
    load: Loader | None = None
    save: Saver | None = None
    per_split: bool = True
    finish: Callable[[Path, Path], None] | None = None
    options: frozenset[str] = frozenset()
    templates: frozenset[str] = frozenset({TemplateMode.negatives.value,
                                           TemplateMode.omit.value})

    @property
    def can_import(self) -> bool:
        return self.discover is not None and self.load is not None

    @property
    def can_export(self) -> bool:
        return self.save is not None


def split_folders(src: Path, holds: Callable[[Path], bool], what: str) -> list[SourcePart]:
    """``[SourcePart(src)]`` when ``src`` itself holds the format (``holds(src)``), else one
    part per sub-folder that does, its split read from its name (``train/``, ``valid/``...);
    none raises ``FileNotFoundError`` saying ``what`` was looked for."""
    if holds(src):
        return [SourcePart(src)]
    found = [SourcePart(folder, SPLIT_NAMES.get(folder.name.lower(), ""))
             for folder in sorted(p for p in src.iterdir() if p.is_dir()) if holds(folder)]
    if not found:
        raise FileNotFoundError(f"{src}: no {what} here or in its sub-folders")
    return found


def part_counts(samples: pd.DataFrame, labels: pd.DataFrame) -> dict[str, int]:
    """The export report's counts of one split: images and boxes written."""
    return {"images": len(samples), "boxes": len(labels)}
