"""The pcbforge dataset folder: samples, labels and a small JSON header.

::

    DATASET/
      samples.parquet (+ .csv)   one row per image (the curate columns and more)
      labels.parquet  (+ .csv)   one row per defect instance
      dataset.json               classes, pixel size, where the images are, provenance

Image ``path`` values are relative to ``image_root`` (recorded in
``dataset.json``; relative to the dataset folder unless absolute), so a
dataset can be moved with or without its images. Boxes are pixel
``x1, y1, x2, y2`` with ``x2``/``y2`` exclusive; other conventions are
converted only at the edges (format I/O).

Reading validates: unique sample ids, labels that point at samples, known
classes, non-empty boxes inside their image. A broken dataset raises
:class:`DatasetError` naming the file and the row.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pcbforge import __version__
from pcbforge.core.errors import storage_error
from pcbforge.core.files import atomic_write, write_json
from pcbforge.core.output import interrupted_output
from pcbforge.datasets.masks import parse_rle
from pcbforge.datasets.samples import SAMPLES_PARQUET, write_samples

DATASET_JSON = "dataset.json"
LABELS_PARQUET = "labels.parquet"
LABELS_CSV = "labels.csv"

#: Sample columns every dataset has, with the value a missing one starts at.
SAMPLE_DEFAULTS: dict[str, object] = {
    "sample_id": "",
    "path": "",
    "status": "ok",
    "split": "",
    "synthetic": False,
    "template_path": "",
    "source": "",
    "group": "",
}
#: Label columns, in order.
LABEL_COLUMNS = ("sample_id", "label", "x1", "y1", "x2", "y2", "mask", "synthetic", "params")
SPLITS = ("", "train", "val", "test")


class DatasetError(ValueError):
    """A dataset folder that is not valid; the message names file and row."""


class DatasetInfo(BaseModel):
    """Contents of ``dataset.json``."""

    model_config = ConfigDict(extra="forbid")

    classes: list[str] = Field(default_factory=list)
    px_per_mm: float | None = Field(None, gt=0)
    image_root: str = "."
    pcbforge_version: str = __version__
    provenance: list[dict] = Field(default_factory=list)
    #: Set by ``pcbforge split``: its parameters. While set, the ``split`` column holds
    #: assignments that later splits and re-imports keep (the test set only grows).
    split: dict | None = None


@dataclass
class Dataset:
    root: Path
    samples: pd.DataFrame
    labels: pd.DataFrame
    info: DatasetInfo

    @property
    def image_root(self) -> Path:
        root = Path(self.info.image_root)
        return root if root.is_absolute() else (self.root / root)

    def image_path(self, path: str) -> Path:
        """Where the image with samples-table ``path`` is on disk (see :func:`image_file`)."""
        return image_file(self.image_root, path)


def image_file(image_root: Path | str, path: str) -> Path:
    """Where the image with samples-table ``path`` under ``image_root`` is on disk.

    File names that are not UTF-8 are stored with ``\\xNN`` escapes (see
    :func:`pcbforge.core.scan.printable_path`); they are mapped back.
    """
    candidate = Path(image_root) / path
    if "\\x" in path and not candidate.exists():
        raw = codecs.escape_decode(path.encode("utf-8"))[0]
        return Path(os.fsdecode(os.fsencode(image_root) + b"/" + raw))
    return candidate


def sample_id_for(path: str, source: str = "") -> str:
    """Stable id of a sample: the same file of the same source keeps its id
    however the dataset grows."""
    return "s" + hashlib.blake2b(f"{source}\0{path}".encode(), digest_size=6).hexdigest()


def empty_labels() -> pd.DataFrame:
    return pd.DataFrame({
        "sample_id": pd.Series(dtype=object), "label": pd.Series(dtype=object),
        **{c: pd.Series(dtype=np.float64) for c in ("x1", "y1", "x2", "y2")},
        "mask": pd.Series(dtype=object), "synthetic": pd.Series(dtype=bool),
        "params": pd.Series(dtype=object),
    })


def with_defaults(samples: pd.DataFrame, labels: pd.DataFrame | None) -> tuple:
    """Add missing standard columns (a curate output becomes a dataset)."""
    samples = samples.copy()
    for column, default in SAMPLE_DEFAULTS.items():
        if column not in samples.columns:
            samples[column] = default
    missing_ids = samples["sample_id"].astype(str) == ""
    if missing_ids.any():
        samples.loc[missing_ids, "sample_id"] = [
            sample_id_for(path, source)
            for path, source in zip(samples.loc[missing_ids, "path"],
                                    samples.loc[missing_ids, "source"], strict=True)
        ]
    labels = empty_labels() if labels is None else labels.copy()
    for column, default in (("mask", ""), ("synthetic", False), ("params", "")):
        if column not in labels.columns:
            labels[column] = default
    return samples, labels[list(LABEL_COLUMNS)]


#: Present while a writer that updates a dataset folder step by step (``pcbforge build``)
#: is at work, and left by one that was killed or failed midway: its files may then come
#: from two runs, so every reader refuses the folder until a run finishes.
UNFINISHED_MARKER = ".build/running.json"


def refuse_unfinished(root: Path | str) -> None:
    """Raise :class:`DatasetError` when ``root`` carries :data:`UNFINISHED_MARKER`."""
    marker = Path(root) / UNFINISHED_MARKER
    if marker.exists():
        raise DatasetError(
            f"{root} is being built, or its build was killed or failed midway ({marker} is "
            f"there), so its files may come from two builds; run `pcbforge build` again with "
            f"the same recipe and --out {root} to finish it")


def load(path: Path | str, *, check_files: bool = False) -> Dataset:
    """Read and validate the dataset folder ``path``.

    ``check_files`` also checks that every usable sample's image exists.
    A curate output (no ``labels.parquet`` yet) loads as a dataset with no
    labels. A folder that a killed run left missing or half-written is refused
    with a :class:`DatasetError` that says so and names the file.
    """
    root = Path(path)
    require_folder(root)
    refuse_unfinished(root)
    if not (root / SAMPLES_PARQUET).is_file():
        raise DatasetError(f"{root}: no {SAMPLES_PARQUET}; is this a pcbforge dataset?")
    info = read_info(root)
    samples = read_table(root / SAMPLES_PARQUET, ("path",))
    labels = (read_table(root / LABELS_PARQUET, LABEL_COLUMNS[:6])
              if (root / LABELS_PARQUET).is_file() else None)
    samples, labels = with_defaults(samples, labels)
    dataset = Dataset(root, samples, labels, info)
    validate(dataset, check_files=check_files)
    return dataset


def require_folder(root: Path | str, *, writer: bool = False) -> None:
    """Raise :class:`DatasetError` when the dataset folder ``root`` does not exist,
    saying so plainly, and how to get it back when a killed run's swap parked it.

    ``writer``: for a command about to rewrite ``root`` through
    :func:`pcbforge.core.staged_output`, which puts a parked folder back first: a killed
    swap is then no reason to refuse."""
    message = interrupted_output(root)
    if message is not None:
        if writer:
            return
        raise DatasetError(message)
    if not Path(root).is_dir():
        raise DatasetError(f"{root}: no such dataset folder"
                           if not os.path.lexists(root) else f"{root} is not a folder")


def read_table(path: Path, required: tuple[str, ...] = ()) -> pd.DataFrame:
    """The parquet table ``path``; a truncated or foreign file (half a dataset) raises
    :class:`DatasetError` naming it. Storage failures (permission denied...) propagate
    as the ``OSError`` they are."""
    try:
        table = pd.read_parquet(path)
    except Exception as err:  # noqa: BLE001 - pyarrow raises many types for one cause
        if storage_error(err) is not None:
            raise
        raise DatasetError(f"{path}: not a readable parquet table ({_first_line(err)}); the "
                           "folder is damaged or was left half-written: rebuild it with the "
                           "command that made it") from err
    missing = [column for column in required if column not in table.columns]
    if missing:
        raise DatasetError(f"{path}: expected columns {list(required)}, missing "
                           f"{missing} (columns found: {list(table.columns)})")
    return table


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def save(dataset: Dataset, path: Path | str | None = None) -> Path:
    """Validate, then write the three parts (each file atomically)."""
    root = Path(path) if path is not None else dataset.root
    validate(dataset)
    root.mkdir(parents=True, exist_ok=True)
    write_samples(dataset.samples, root)
    labels = dataset.labels[list(LABEL_COLUMNS)].reset_index(drop=True)
    atomic_write(root / LABELS_PARQUET, lambda tmp: labels.to_parquet(tmp, index=False))
    atomic_write(root / LABELS_CSV, lambda tmp: labels.to_csv(tmp, index=False))
    write_json(root / DATASET_JSON, dataset.info.model_dump(mode="json"))
    return root


def validate(dataset: Dataset, *, check_files: bool = False) -> None:
    """Raise :class:`DatasetError` for the first problem found, naming file and row."""
    samples, labels, info = dataset.samples, dataset.labels, dataset.info
    where = dataset.root
    duplicated = samples["sample_id"][samples["sample_id"].duplicated()]
    if len(duplicated):
        row = int(duplicated.index[0])
        raise DatasetError(
            f"{where / SAMPLES_PARQUET} row {row}: duplicate sample_id {duplicated.iloc[0]!r}"
        )
    bad_split = ~samples["split"].isin(SPLITS)
    if bad_split.any():
        row = int(np.flatnonzero(bad_split)[0])
        raise DatasetError(f"{where / SAMPLES_PARQUET} row {row}: split "
                           f"{samples['split'].iloc[row]!r} is not one of {list(SPLITS[1:])}")
    file = where / LABELS_PARQUET
    sizes = samples.set_index("sample_id").reindex(columns=["width", "height"]).fillna(0)
    known = labels["sample_id"].isin(sizes.index).to_numpy()
    _first_bad(~known, labels, file, lambda r: f"sample_id {r.sample_id!r} is not a sample")
    if info.classes:
        _first_bad(~labels["label"].isin(info.classes).to_numpy(), labels, file,
                   lambda r: f"unknown class {r.label!r} (classes: {info.classes})")
    x1, y1, x2, y2 = (labels[c].to_numpy(dtype=np.float64) for c in ("x1", "y1", "x2", "y2"))
    _first_bad(~((x2 > x1) & (y2 > y1)), labels, file,
               lambda r: f"empty box ({r.x1}, {r.y1}, {r.x2}, {r.y2})")
    width = sizes["width"].reindex(labels["sample_id"]).to_numpy(dtype=np.float64)
    height = sizes["height"].reindex(labels["sample_id"]).to_numpy(dtype=np.float64)
    sized = (width > 0) & (height > 0)
    outside = sized & ((x1 < 0) | (y1 < 0) | (x2 > width) | (y2 > height))
    _first_bad(outside, labels, file,
               lambda r: f"box ({r.x1}, {r.y1}, {r.x2}, {r.y2}) is outside its image "
                         f"({sizes.at[r.sample_id, 'width']:.0f}x"
                         f"{sizes.at[r.sample_id, 'height']:.0f})")
    masked = (labels["mask"].fillna("").astype(str) != "").to_numpy()
    for row in np.flatnonzero(masked):
        box = labels.iloc[row]
        try:
            size = parse_rle(box["mask"])["size"]
        except ValueError as err:
            raise DatasetError(f"{file} row {row}: {err}") from err
        expected = [int(height[row]), int(width[row])]
        if sized[row] and size != expected:
            raise DatasetError(f"{file} row {row}: mask size {size} is not the image's "
                               f"{expected} (height, width)")
    if check_files:
        usable = samples[samples["status"].isin(["ok", "low_quality", "duplicate"])]
        for row, path in zip(usable.index, usable["path"], strict=True):
            if not dataset.image_path(path).is_file():
                raise DatasetError(f"{where / SAMPLES_PARQUET} row {row}: image "
                                   f"{dataset.image_path(path)} does not exist")


def previous_splits(root: Path | str) -> tuple[dict | None, dict[str, str]]:
    """The ``split`` record and ``{sample_id: split}`` of a dataset folder about to be
    rebuilt, when an earlier ``pcbforge split`` made them (else ``(None, {})``), so that a
    re-import or re-curation keeps every assignment (the test set only grows)."""
    root = Path(root)
    try:
        info = read_info(root)
        if info.split is None or not (root / SAMPLES_PARQUET).is_file():
            return None, {}
        old = pd.read_parquet(root / SAMPLES_PARQUET)
    except (DatasetError, OSError, ValueError):
        return None, {}
    ids = (old["sample_id"] if "sample_id" in old.columns
           else pd.Series([sample_id_for(path) for path in old["path"]]))
    split = old["split"].fillna("").astype(str) if "split" in old.columns else ""
    return info.split, {i: s for i, s in zip(ids, split, strict=True) if s}


def apply_previous_splits(samples: pd.DataFrame, earlier: dict[str, str]) -> pd.DataFrame:
    """``samples`` with the earlier split of every sample id found in ``earlier``."""
    if not earlier:
        return samples
    samples = samples.copy()
    found = samples["sample_id"].map(earlier).fillna("")
    samples["split"] = found.where(found != "", samples["split"].fillna(""))
    return samples


def _first_bad(mask: np.ndarray, table: pd.DataFrame, file: Path, describe) -> None:
    if mask.any():
        row = int(np.flatnonzero(mask)[0])
        raise DatasetError(f"{file} row {row}: {describe(table.iloc[row])}")


def read_info(root: Path) -> DatasetInfo:
    """The ``dataset.json`` header of the folder ``root`` (defaults when it has none)."""
    root = Path(root)
    message = interrupted_output(root)
    if message is not None:
        raise DatasetError(message)
    path = root / DATASET_JSON
    if not path.is_file():
        return DatasetInfo()
    try:
        return DatasetInfo.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from err
    except UnicodeDecodeError as err:
        raise DatasetError(f"{path}: not UTF-8 text (byte {err.start}); the file is "
                           "damaged") from err
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        raise DatasetError(f"{path}: {key}: {first['msg']}") from err


__all__ = [
    "Dataset", "DatasetError", "DatasetInfo", "LABEL_COLUMNS", "SAMPLE_DEFAULTS",
    "apply_previous_splits", "empty_labels", "image_file", "load", "previous_splits",
    "read_table", "require_folder", "sample_id_for", "save", "validate",
]
