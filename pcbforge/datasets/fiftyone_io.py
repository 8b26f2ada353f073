"""A pcbforge dataset in the FiftyOne App, and the edits made there brought back.

:func:`to_fiftyone` loads a dataset folder into a persistent FiftyOne dataset;
:func:`from_fiftyone` writes the labels and tags of that FiftyOne dataset (as edited in
the App or through FiftyOne's Python API) back into a pcbforge dataset. Nothing here
is imported by ``import pcbforge`` (importing fiftyone takes seconds), and
:func:`pcbforge.env.apply_offline_defaults` runs before fiftyone is imported.

What the FiftyOne dataset holds:

- **One sample per row of the samples table**, corrupt and skipped files included (a
  side-car ``.txt`` is given media type ``image`` so that it can be a sample at all):
  the App shows a broken tile and the sidebar says ``status`` and ``reason``. Nothing
  is hidden, and counts match the samples table. File paths are absolute (the App's
  server runs in another folder); a file name that is not UTF-8 keeps its bytes as
  ``\\xNN`` (MongoDB strings are UTF-8).
- **Key**: the stable ``sample_id`` is the ``pcbforge_id`` field. Re-running updates
  the samples in place (their FiftyOne ids, App tags and any other FiftyOne work on them
  survive), adds new ones, and deletes the samples that left the dataset, including
  samples added in FiftyOne by hand: the FiftyOne dataset mirrors the pcbforge one.
- **Fields**: every column of the samples table (``status``, ``reason``, ``detail``,
  ``group``, ``split``, ``synthetic``, ``duplicate_of``, the quality scores...), under its
  own name except those FiftyOne reserves (``frames`` becomes ``pcbforge_frames``...);
  ``metadata`` from the table's width/height (no image is decoded); ``duplicate_cluster``
  (the kept image's path, on the kept image and each of its copies); the split also as a
  sample tag (a stale split tag is removed; other tags, e.g. ``bad_label``, are kept).
- **Boxes**: ``ground_truth`` :class:`fiftyone.core.labels.Detections` with FiftyOne's
  relative ``[x, y, w, h]`` = ``[x1/W, y1/H, (x2-x1)/W, (y2-y1)/H]``; each detection
  carries ``synthetic`` and ``params`` (the labels table's text, unchanged). An instance
  mask becomes ``Detection.mask``, FiftyOne's box-relative mask: the full-image mask cut
  to the box's pixel span (edges rounded outwards). Pixels of a mask outside its box
  cannot be shown by FiftyOne; they are counted in ``info["pcbforge"]`` and a warning is
  logged (pcbforge's own masks always lie inside their boxes).
- **Templates** as a *linked media field*, ``template_filepath`` (and ``template_id``,
  the template's ``pcbforge_id``), registered in the App config's ``media_fields``. A
  grouped dataset was the other way; it is not used because a template is itself a
  sample of the table shared by many tested images: a group holds one sample per slice,
  so each template would be copied once per tested image (the counts no longer match the
  samples table), and views and counts of a grouped dataset see one slice at a time. With
  a second media field the grid keeps one tile per sample, and in the sample modal the
  media-field switch flips between the tested image and its reference board with the
  same boxes drawn over both, which is the comparison an inspector makes. A sample
  without a template falls back to its own image.
- **Saved views** ``train``, ``val``, ``test``, ``synthetic``, ``real``, ``duplicates``
  (each kept image followed by its copies), ``corrupt_or_low_quality``, then
  ``class-<name>`` per defect class (samples with at least one such box), rebuilt on
  every run; :func:`table_view_counts` computes the same counts from the tables.

The database is FiftyOne's: its bundled MongoDB, or ``FIFTYONE_DATABASE_URI`` when the
user set one. FiftyOne attaches to a database service that is already running for the
same user whatever ``FIFTYONE_DATABASE_DIR`` says; :func:`database_description` reports
the one actually in use.
"""

from __future__ import annotations

import hashlib
import importlib
import ipaddress
import logging
import math
import os
import socket
import sys
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from pcbforge import __version__
from pcbforge.core.files import atomic_write, write_json
from pcbforge.core.output import staged_output
from pcbforge.datasets.dataset import (
    Dataset,
    DatasetError,
    empty_labels,
    load,
    read_info,
    save,
    validate,
)
from pcbforge.datasets.formats_common import BORDER_SLACK_PX, read_image_size
from pcbforge.datasets.masks import decode_mask, encode_mask
from pcbforge.datasets.samples import SAMPLES_PARQUET
from pcbforge.env import apply_offline_defaults

logger = logging.getLogger(__name__)

LABEL_FIELD = "ground_truth"
KEY_FIELD = "pcbforge_id"
TEMPLATE_FIELD = "template_filepath"
SPLIT_TAGS = ("train", "val", "test")
CLASS_VIEW_PREFIX = "class-"
#: Written into the output folder by :func:`from_fiftyone`.
FROM_FIFTYONE_REPORT = "from_fiftyone_report.json"
#: Sample fields FiftyOne reserves (or gives a meaning): such columns get a prefix.
_RESERVED = {"id", "filepath", "tags", "metadata", "media_type", "created_at",
             "last_modified_at", "frames", "group_id", "filename",
             "label_tags"}  # the App's own "label tags" entry
#: Fields this module computes; a samples column of the same name gets the prefix too.
_OWN_FIELDS = {KEY_FIELD, TEMPLATE_FIELD, "template_id", "duplicate_cluster"}
#: Columns that every FiftyOne dataset made here has, with their value when missing.
_ALWAYS = {"status": "ok", "reason": "", "detail": "", "group": "", "split": "",
           "synthetic": False, "duplicate_of": "", "template_path": ""}
#: App sidebar group of pcbforge's fields, after the labels (missing fields are left out).
_SIDEBAR = {
    "pcbforge": ("status", "reason", "detail", "split", "synthetic", "group", "duplicate_of",
                 "duplicate_cluster", "role", "source", "template_path", "template_id",
                 KEY_FIELD, "path"),
}


def _import_fiftyone():
    """fiftyone, imported with the offline defaults set (no analytics unless the user
    turned them on)."""
    apply_offline_defaults()
    with _missing_metadata_as_none():
        import fiftyone
    return fiftyone


@contextmanager
def _missing_metadata_as_none():
    """While FiftyOne is first imported, let the ``importlib_metadata`` backport answer a
    missing metadata field with None, as the standard library does.

    FiftyOne's ``eta`` reads ``metadata("voxel51-eta")["author"]`` at import, a field its
    wheel does not have. Once the backport (>= 8) is imported (Dask's ``distributed`` does
    on Python < 3.12), its finder answers every metadata query and raises ``KeyError`` for
    a missing field, so ``import fiftyone`` would fail in any process that used Dask."""
    message = None
    if "importlib_metadata" in sys.modules and "fiftyone" not in sys.modules:
        try:  # the backport loads its adapters lazily
            message = importlib.import_module("importlib_metadata._adapters").Message
        except (ImportError, AttributeError):
            message = None
    strict = vars(message).get("__getitem__") if message is not None else None
    if strict is None:
        yield
        return

    def lenient(self, item):
        try:
            return strict(self, item)
        except KeyError:
            return None

    message.__getitem__ = lenient
    try:
        yield
    finally:
        message.__getitem__ = strict


# --- pcbforge -> FiftyOne ------------------------------------------------------------------------

def field_name(column: str) -> str:
    """The FiftyOne field of a samples-table column (``sample_id`` is the key)."""
    if column == "sample_id":
        return KEY_FIELD
    name = column.replace(".", "_")
    if name in _RESERVED or name in _OWN_FIELDS or name.startswith("_"):
        return "pcbforge_" + name.lstrip("_")
    return name


def duplicate_clusters(samples: pd.DataFrame) -> pd.Series:
    """Per sample, the path of the kept image of its duplicate cluster ("" when it is in
    none): a copy names its kept image in ``duplicate_of``, and the kept image is in the
    cluster of its own path."""
    duplicate_of = _text(samples, "duplicate_of")
    kept = set(duplicate_of[duplicate_of != ""])
    path = samples["path"].astype(str)
    return duplicate_of.where(duplicate_of != "", path.where(path.isin(kept), ""))


def table_view_counts(dataset: Dataset) -> dict[str, int]:
    """Samples in each saved view, computed from the samples and labels tables alone
    (what the FiftyOne views must show)."""
    samples, labels = dataset.samples, dataset.labels
    split = _text(samples, "split")
    status = _text(samples, "status")
    synthetic = samples["synthetic"].fillna(False).astype(bool)
    counts = {name: int((split == name).sum()) for name in SPLIT_TAGS}
    counts["synthetic"] = int(synthetic.sum())
    counts["real"] = int((~synthetic).sum())
    counts["duplicates"] = int((duplicate_clusters(samples) != "").sum())
    counts["corrupt_or_low_quality"] = int(status.isin(["corrupt", "low_quality"]).sum())
    known = labels[labels["sample_id"].isin(set(samples["sample_id"]))]
    for name in _classes(dataset):
        counts[CLASS_VIEW_PREFIX + name] = int(known.loc[known["label"] == name,
                                                         "sample_id"].nunique())
    return counts


def to_fiftyone(dataset_path: Path | str, name: str | None = None, *,
                label_field: str = LABEL_FIELD):
    """Load the pcbforge dataset folder ``dataset_path`` into the persistent FiftyOne
    dataset ``name`` (default: the folder's name) and return it.

    Re-running updates it: no sample is duplicated, samples that left the dataset are
    deleted, fields, boxes and saved views follow the tables, App tags are kept. A
    FiftyOne dataset of that name that pcbforge did not make, or made from another
    folder, is refused (``ValueError``): pass another ``name``.
    """
    root = Path(dataset_path).resolve()
    dataset = load(root)  # from its absolute path: FiftyOne's server runs elsewhere
    name = name or root.name
    fo = _import_fiftyone()
    if fo.dataset_exists(name):
        fo_dataset = fo.load_dataset(name)
        made_from = (fo_dataset.info.get("pcbforge") or {}).get("root")
        if made_from is None:
            raise ValueError(f"FiftyOne dataset {name!r} exists and was not made by pcbforge; "
                             f"choose another name")
        if made_from != str(root):
            raise ValueError(f"FiftyOne dataset {name!r} shows {made_from}, not {root}; "
                             f"choose another name")
    else:
        fo_dataset = fo.Dataset(name)
        # Claimed at once: a run that fails half-way can be repeated under the same name.
        fo_dataset.info["pcbforge"] = {"root": str(root)}
    fo_dataset.persistent = True

    samples = dataset.samples.reset_index(drop=True)
    ids = samples["sample_id"].astype(str).tolist()
    filepaths = display_files(dataset, samples)
    _sync_membership(fo, fo_dataset, dict(zip(ids, filepaths, strict=True)))
    old_meta = fo_dataset.info.get("pcbforge") or {}
    columns = _sample_columns(dataset, samples, filepaths)
    fields = _set_fields(fo, fo_dataset, ids, columns, old_meta.get("fields", {}))
    _set_metadata(fo, fo_dataset, samples, ids)
    _set_tags(fo_dataset, samples, ids)
    detections, outside = _detections(fo, dataset, samples)
    _ensure_label_schema(fo, fo_dataset, label_field)
    fo_dataset.set_values(label_field, dict(zip(ids, detections, strict=True)),
                          key_field=KEY_FIELD)
    if outside:
        logger.warning("%d instance masks have pixels outside their box; FiftyOne shows masks "
                       "inside boxes only", outside)

    classes = _classes(dataset)
    fo_dataset.default_classes = classes
    fo_dataset.classes = {label_field: classes}
    _configure_app(fo, fo_dataset)
    views = _save_views(fo, fo_dataset, label_field, classes, old_meta.get("views", []))
    fo_dataset.info["pcbforge"] = {
        "root": str(root), "image_root": str(dataset.image_root.resolve()),
        "label_field": label_field, "classes": classes, "views": views, "fields": fields,
        "mask_pixels_outside_boxes": outside, "pcbforge_version": __version__,
    }
    fo_dataset.save()
    return fo_dataset


def view_counts(fo_dataset) -> dict[str, int]:
    """Samples in each saved view pcbforge made, in order, counted by FiftyOne."""
    names = (fo_dataset.info.get("pcbforge") or {}).get("views", [])
    return {name: fo_dataset.load_saved_view(name).count() for name in names}


def view_urls(fo_dataset, dataset_url: str) -> dict[str, str]:
    """The App URL of each saved view pcbforge made (``dataset_url`` from
    :func:`launch_app`)."""
    from fiftyone.core.utils import to_slug

    names = (fo_dataset.info.get("pcbforge") or {}).get("views", [])
    return {name: f"{dataset_url}?view={to_slug(name)}" for name in names}


def _classes(dataset: Dataset) -> list[str]:
    seen = [c for c in dict.fromkeys(dataset.labels["label"].astype(str))
            if c not in dataset.info.classes]
    return [*dataset.info.classes, *sorted(seen)]


def _text(samples: pd.DataFrame, column: str) -> pd.Series:
    if column not in samples.columns:
        return pd.Series("", index=samples.index, dtype=object)
    return samples[column].fillna("").astype(str)


def _sync_membership(fo, fo_dataset, filepaths: dict[str, str]) -> None:
    """Delete samples that are not (or twice) in the table; add the new ones
    (``filepaths``: sample id -> the file the App shows, in table order)."""
    wanted = set(filepaths)
    if KEY_FIELD in fo_dataset.get_field_schema():
        keys = fo_dataset.values(KEY_FIELD)
    else:
        keys = [None] * len(fo_dataset)
    seen, stale = set(), []
    for sample_id, key in zip(fo_dataset.values("id"), keys, strict=True):
        if key not in wanted or key in seen:
            stale.append(sample_id)
        seen.add(key)
    if stale:
        fo_dataset.delete_samples(stale)
    new = [fo.Sample(filepath=filepath, media_type="image", **{KEY_FIELD: key})
           for key, filepath in filepaths.items() if key not in seen]
    if new:
        fo_dataset.add_samples(new, progress=False)
    fo_dataset.create_index(KEY_FIELD)


def _sample_columns(dataset: Dataset, samples: pd.DataFrame,
                    filepaths: pd.Series) -> dict[str, pd.Series]:
    """Field name -> values for every column (and the fields computed here);
    ``filepaths``: what :func:`display_files` gives for ``samples``."""
    columns = {}
    for column in samples.columns:
        if column not in ("sample_id", "tags"):
            columns[field_name(column)] = samples[column]
    for column, default in _ALWAYS.items():
        if column not in samples.columns:
            columns[column] = pd.Series(default, index=samples.index)
    columns["filepath"] = filepaths
    template = _text(samples, "template_path")
    shown = dict(zip(samples["path"].astype(str), filepaths, strict=True))
    columns[TEMPLATE_FIELD] = template.map(  # a template's own row says how it is shown
        lambda path: (shown.get(path) or display_file(dataset, path)) if path else None)
    id_of_path = dict(zip(samples["path"].astype(str), samples["sample_id"], strict=True))
    columns["template_id"] = template.map(lambda path: id_of_path.get(path))
    columns["duplicate_cluster"] = duplicate_clusters(samples)
    return columns


#: Image formats a browser shows, so the App can: anything else (TIFF, PNM, JPEG 2000, ...)
#: is shown through a PNG copy in ``DATASET/cache/view/`` (the source is never touched).
BROWSER_FORMATS = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".gif",
                             ".bmp", ".webp", ".avif", ".ico"})
#: The same, as the ``format`` column names a decoded file's real format.
BROWSER_DECODED = frozenset({"jpeg", "png", "gif", "bmp", "webp", "avif", "ico"})
VIEW_CACHE = Path("cache") / "view"


def display_files(dataset: Dataset, samples: pd.DataFrame) -> pd.Series:
    """:func:`display_file` of every row of ``samples``, with the format curation found."""
    return pd.Series([display_file(dataset, path, fmt) for path, fmt in
                      zip(samples["path"].astype(str), _text(samples, "format"), strict=True)],
                     index=samples.index, dtype=object)


def display_file(dataset: Dataset, path: str, decoded_format: str = "") -> str:
    """The file the App shows for samples-table ``path``: the image itself when browsers
    can decode its format (``decoded_format``, the ``format`` column, when curation found
    it; else the file name's extension), else a PNG copy of the pixels curation's decoder
    reads (EXIF orientation applied; 16-bit scaled to 8) written once under
    ``DATASET/cache/view/``, named after the source's path, size and modification time. An
    image that decoder refuses, or a cache that cannot be written, falls back to the image
    itself (the App shows a broken tile)."""
    image = dataset.image_path(path)
    if (decoded_format.lower() in BROWSER_DECODED if decoded_format
            else image.suffix.lower() in BROWSER_FORMATS):
        return media_path(image)
    try:
        stat = image.stat()
    except OSError:
        return media_path(image)
    key = hashlib.sha1(f"{os.fsencode(image)!r}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    proxy = dataset.root / VIEW_CACHE / f"{key.hexdigest()[:20]}.png"
    if proxy.is_file():
        return media_path(proxy)
    import cv2

    from pcbforge.curate.decode import decode_image_bytes

    try:
        pixels = decode_image_bytes(image.read_bytes()).pixels  # curation's own decoder
    except OSError:
        pixels = None
    if pixels is None:
        return media_path(image)
    if pixels.ndim == 3:  # canonical RGB(A) -> OpenCV's BGR(A)
        pixels = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR if pixels.shape[2] == 3
                              else cv2.COLOR_RGBA2BGRA)
    if pixels.dtype != np.uint8:
        top = float(pixels.max()) if pixels.size else 0.0
        pixels = (pixels.astype(np.float64) * (255.0 / top) if top > 0 else
                  np.zeros(pixels.shape)).round().astype(np.uint8)
    ok, png = cv2.imencode(".png", pixels)
    if not ok:
        return media_path(image)
    try:
        atomic_write(proxy, lambda tmp: Path(tmp).write_bytes(png.tobytes()))
    except OSError as err:
        logger.warning("cannot write a viewable copy of %s (%s): the App shows it broken",
                       image, err)
        return media_path(image)
    return media_path(proxy)


def media_path(path: Path) -> str:
    """A file path as FiftyOne can store it: MongoDB strings are UTF-8, so a file name
    that is not keeps its bytes as ``\\xNN`` (the App shows a broken tile; ``path`` and
    ``status`` still say which file it is)."""
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(path).decode("utf-8", "backslashreplace")
    return text


def _field_type(fo, values: pd.Series):
    """The FiftyOne field type of a column and its values as plain Python objects."""
    dtype = values.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return fo.BooleanField, [None if pd.isna(v) else bool(v) for v in values]
    if pd.api.types.is_integer_dtype(dtype):
        return fo.IntField, [None if pd.isna(v) else int(v) for v in values]
    if pd.api.types.is_float_dtype(dtype):
        return fo.FloatField, [None if pd.isna(v) else float(v) for v in values]
    present = [v for v in values if not _missing(v)]
    if present and all(isinstance(v, bool | np.bool_) for v in present):
        return fo.BooleanField, [None if _missing(v) else bool(v) for v in values]
    return fo.StringField, [None if _missing(v) else str(v) for v in values]


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _set_fields(fo, fo_dataset, ids: list[str], columns: dict[str, pd.Series],
                previous: dict[str, str]) -> dict[str, str]:
    """Set every column as a sample field (a field whose type changed is recreated, one
    made by an earlier run for a column now gone is deleted); field name -> type name."""
    schema = fo_dataset.get_field_schema()
    made = {}
    for name, series in columns.items():
        ftype, values = _field_type(fo, series)
        if name == "filepath":
            fo_dataset.set_values(name, dict(zip(ids, values, strict=True)), key_field=KEY_FIELD)
            continue
        if name in schema and not isinstance(schema[name], ftype):
            fo_dataset.delete_sample_field(name)
        if name not in schema or not isinstance(schema[name], ftype):
            fo_dataset.add_sample_field(name, ftype)
        fo_dataset.set_values(name, dict(zip(ids, values, strict=True)), key_field=KEY_FIELD)
        made[name] = ftype.__name__
    for name in set(previous) - set(made):
        if name in fo_dataset.get_field_schema():
            fo_dataset.delete_sample_field(name)
    return made


def _set_metadata(fo, fo_dataset, samples: pd.DataFrame, ids: list[str]) -> None:
    """Image size from the table (corrupt files have none): the App need not decode."""
    def number(column: str) -> pd.Series:
        if column not in samples.columns:
            return pd.Series(0, index=samples.index)
        return pd.to_numeric(samples[column], errors="coerce").fillna(0)

    width, height, size, channels = (number(c) for c in ("width", "height", "bytes",
                                                         "channels"))
    values = {}
    for row, key in enumerate(ids):
        if not (width.iloc[row] > 0 and height.iloc[row] > 0):
            values[key] = None
            continue
        extra = {}
        if size.iloc[row] > 0:
            extra["size_bytes"] = int(size.iloc[row])
        if channels.iloc[row] > 0:
            extra["num_channels"] = int(channels.iloc[row])
        values[key] = fo.ImageMetadata(width=int(width.iloc[row]), height=int(height.iloc[row]),
                                       **extra)
    fo_dataset.set_values("metadata", values, key_field=KEY_FIELD)


def _set_tags(fo_dataset, samples: pd.DataFrame, ids: list[str]) -> None:
    """The split as a tag (stale split tags removed), the table's ``tags`` column added,
    every other tag already on the sample kept."""
    current = dict(zip(fo_dataset.values(KEY_FIELD), fo_dataset.values("tags"), strict=True))
    split = _text(samples, "split").tolist()
    extra = [parse_tags(t) for t in _text(samples, "tags")]
    tags = {}
    for key, own_split, more in zip(ids, split, extra, strict=True):
        kept = [t for t in (current.get(key) or []) if t not in SPLIT_TAGS]
        wanted = kept + [t for t in more if t not in kept and t not in SPLIT_TAGS]
        tags[key] = wanted + ([own_split] if own_split else [])
    fo_dataset.set_values("tags", tags, key_field=KEY_FIELD)


def parse_tags(text: str) -> list[str]:
    """Tags of a ``tags``/``label_tags`` cell: comma-separated."""
    return [t for t in (part.strip() for part in str(text).split(",")) if t]


def _pixel_span(box: tuple[float, float, float, float], width: int, height: int
                ) -> tuple[int, int, int, int]:
    """Whole pixels ``x0, y0, x1, y1`` covering ``box`` (edges rounded outwards, clipped)."""
    x1, y1, x2, y2 = box
    x0 = min(max(int(math.floor(x1 + 1e-9)), 0), width - 1)
    y0 = min(max(int(math.floor(y1 + 1e-9)), 0), height - 1)
    xe = max(min(int(math.ceil(x2 - 1e-9)), width), x0 + 1)
    ye = max(min(int(math.ceil(y2 - 1e-9)), height), y0 + 1)
    return x0, y0, xe, ye


def box_mask(rle: str, box: tuple[float, float, float, float]) -> tuple[np.ndarray, int]:
    """FiftyOne's box-relative mask of a ``mask`` column text, and how many of the mask's
    pixels lie outside the box's pixel span (FiftyOne cannot show them)."""
    full = decode_mask(rle)
    height, width = full.shape
    x0, y0, x1, y1 = _pixel_span(box, width, height)
    crop = full[y0:y1, x0:x1]
    return crop.copy(), int(full.sum() - crop.sum())


def full_mask(crop: np.ndarray, box: tuple[float, float, float, float], width: int,
              height: int) -> str:
    """The ``mask`` column text of a FiftyOne box-relative mask placed in its box (a mask
    whose shape is not the box's pixel span, e.g. after the box was resized, is scaled)."""
    import cv2

    crop = np.asarray(crop)
    if crop.ndim == 3:
        crop = crop[..., 0]
    x0, y0, x1, y1 = _pixel_span(box, width, height)
    crop = crop > 0
    if crop.shape != (y1 - y0, x1 - x0):
        crop = cv2.resize(crop.astype(np.uint8), (x1 - x0, y1 - y0),
                          interpolation=cv2.INTER_NEAREST) > 0
    full = np.zeros((height, width), dtype=bool)
    full[y0:y1, x0:x1] = crop
    return encode_mask(full)


def _sizes(samples: pd.DataFrame) -> dict[str, tuple[int, int]]:
    """``sample_id -> (width, height)`` from the table, or the image header when missing."""
    width = pd.to_numeric(samples.get("width", pd.Series(0, index=samples.index)),
                          errors="coerce").fillna(0)
    height = pd.to_numeric(samples.get("height", pd.Series(0, index=samples.index)),
                           errors="coerce").fillna(0)
    return {str(key): (int(w), int(h)) for key, w, h in
            zip(samples["sample_id"], width, height, strict=True)}


def _size_of(dataset: Dataset, sizes: dict, sample: pd.Series) -> tuple[int, int]:
    width, height = sizes[str(sample["sample_id"])]
    if width > 0 and height > 0:
        return width, height
    try:
        return read_image_size(dataset.image_path(str(sample["path"])))
    except (OSError, ValueError) as err:
        raise ValueError(f"sample {sample['path']!r} has boxes but no image size: {err}"
                         ) from err


def _detections(fo, dataset: Dataset, samples: pd.DataFrame) -> tuple[list, int]:
    """One :class:`Detections` per sample (in ``samples`` order) and the number of mask
    pixels outside their boxes."""
    sizes = _sizes(samples)
    by_sample = {key: rows for key, rows in dataset.labels.groupby("sample_id", sort=False)}
    out, outside = [], 0
    for _, sample in samples.iterrows():
        rows = by_sample.get(sample["sample_id"])
        if rows is None or not len(rows):
            out.append(fo.Detections(detections=[]))
            continue
        width, height = _size_of(dataset, sizes, sample)
        detections = []
        for box in rows.itertuples(index=False):
            corners = (float(box.x1), float(box.y1), float(box.x2), float(box.y2))
            extra = {}
            mask_text = "" if box.mask is None or pd.isna(box.mask) else str(box.mask)
            if mask_text:
                extra["mask"], lost = box_mask(mask_text, corners)
                outside += lost
            params = "" if box.params is None or pd.isna(box.params) else str(box.params)
            detections.append(fo.Detection(
                label=str(box.label),
                bounding_box=[corners[0] / width, corners[1] / height,
                              (corners[2] - corners[0]) / width,
                              (corners[3] - corners[1]) / height],
                synthetic=bool(box.synthetic), params=params, **extra,
            ))
        out.append(fo.Detections(detections=detections))
    return out, outside


def _ensure_label_schema(fo, fo_dataset, label_field: str) -> None:
    schema = fo_dataset.get_field_schema()
    if label_field not in schema:
        fo_dataset.add_sample_field(label_field, fo.EmbeddedDocumentField,
                                    embedded_doc_type=fo.Detections)
    nested = fo_dataset.get_field_schema(flat=True)
    for attribute, ftype in (("synthetic", fo.BooleanField), ("params", fo.StringField)):
        path = f"{label_field}.detections.{attribute}"
        if path not in nested:
            fo_dataset.add_sample_field(path, ftype)


def _configure_app(fo, fo_dataset) -> None:
    """Template as a second media field, a colour per class, pcbforge's fields after the
    labels in the sidebar."""
    config = fo_dataset.app_config
    config.media_fields = ["filepath", TEMPLATE_FIELD]
    config.grid_media_field = "filepath"
    config.modal_media_field = "filepath"
    config.media_fallback = True  # no template: the sample's own image
    if config.color_scheme is None:  # one colour per defect class, unless the user chose
        config.color_scheme = fo.ColorScheme(color_by="value")
    schema = fo_dataset.get_field_schema()
    ours = [fo.SidebarGroupDocument(name=group, paths=[p for p in paths if p in schema],
                                    expanded=True) for group, paths in _SIDEBAR.items()]
    quality = sorted(p for p in schema if p.endswith("_score"))
    if quality:
        ours.append(fo.SidebarGroupDocument(name="quality", paths=quality, expanded=False))
    taken = {p for g in ours for p in g.paths}
    groups = []
    for default in fo.DatasetAppConfig.default_sidebar_groups(fo_dataset):
        groups.append(fo.SidebarGroupDocument(
            name=default.name, paths=[p for p in default.paths if p not in taken],
            expanded=default.expanded))
        if default.name == "labels":  # tags, labels, then pcbforge's fields
            groups.extend(ours)
            ours = []
    groups.extend(ours)
    config.sidebar_groups = groups


def _save_views(fo, fo_dataset, label_field: str, classes: list[str],
                previous: list[str]) -> list[str]:
    """(Re)save every view; remove the views an earlier run saved that are gone now."""
    from fiftyone import ViewField as F

    views = {name: (fo_dataset.match(F("split") == name), f"samples of the {name} split")
             for name in SPLIT_TAGS}
    views["synthetic"] = (fo_dataset.match(F("synthetic") == True),  # noqa: E712
                          "synthetic images (drawn defects)")
    views["real"] = (fo_dataset.match(F("synthetic") != True),  # noqa: E712
                     "everything not synthetic: real images, templates, broken files")
    views["duplicates"] = (
        fo_dataset.match((F("duplicate_cluster") != "") & F("duplicate_cluster").exists())
        .sort_by([("duplicate_cluster", 1), ("duplicate_of", 1)]),
        "each kept image followed by its copies")
    views["corrupt_or_low_quality"] = (
        fo_dataset.match(F("status").is_in(["corrupt", "low_quality"])),
        "files that cannot be used, with their reason")
    for name in classes:
        views[CLASS_VIEW_PREFIX + name] = (
            fo_dataset.match(F(f"{label_field}.detections").filter(F("label") == name)
                             .length() > 0),
            f"samples with at least one {name!r} box")
    for name in previous:
        if name not in views and fo_dataset.has_saved_view(name):
            fo_dataset.delete_saved_view(name)
    for name, (view, description) in views.items():
        fo_dataset.save_view(name, view, description=description, overwrite=True)
    return list(views)


# --- FiftyOne -> pcbforge ------------------------------------------------------------------------

def from_fiftyone(name: str, out: Path | str, *, label_field: str | None = None) -> dict:
    """Write the labels and tags of the FiftyOne dataset ``name`` (made by
    :func:`to_fiftyone`) into a pcbforge dataset at ``out``; return the report (also
    written to ``out/from_fiftyone_report.json``).

    Boxes (class, position, added and deleted ones, masks) replace the labels of each
    sample that is in FiftyOne; sample tags other than split names go to the ``tags``
    column (comma-separated, e.g. ``bad_label``), tags on boxes to ``label_tags``. Every
    other column comes from the source dataset unchanged; samples missing from FiftyOne
    keep their labels. ``out`` is the source dataset folder (its tables are replaced, the
    folder swapped in whole), a new folder (its ``image_root`` points at the source
    images) or an earlier output of this function for the same source; either way the
    output is built in a hidden stage and swapped in under its writer lock
    (:func:`pcbforge.core.staged_output`). Images are never written.
    """
    fo = _import_fiftyone()
    if not fo.dataset_exists(name):
        raise ValueError(f"no FiftyOne dataset {name!r} (datasets: "
                         f"{', '.join(fo.list_datasets()) or 'none'})")
    fo_dataset = fo.load_dataset(name)
    meta = fo_dataset.info.get("pcbforge")
    if not meta:
        raise ValueError(f"FiftyOne dataset {name!r} was not made by `pcbforge view`")
    source = load(meta["root"])
    label_field = label_field or meta.get("label_field", LABEL_FIELD)
    if label_field not in fo_dataset.get_field_schema():
        raise ValueError(f"FiftyOne dataset {name!r} has no field {label_field!r}")
    out = Path(out)
    _check_out(out, source.root.resolve())

    samples = source.samples.reset_index(drop=True).copy()
    known = set(samples["sample_id"].astype(str))
    keys = fo_dataset.values(KEY_FIELD)
    tags = dict(zip(keys, fo_dataset.values("tags"), strict=True))
    found = dict(zip(keys, fo_dataset.values(f"{label_field}.detections"), strict=True))
    paths = dict(zip(keys, fo_dataset.values("filepath"), strict=True))
    ignored = sum(1 for key in keys if key not in known)
    labels = _labels_from_fiftyone(source, samples, found, paths, label_field)

    in_fiftyone = samples["sample_id"].isin(set(keys) & known)
    old_tags = _text(samples, "tags")
    samples["tags"] = [",".join(_without_splits(tags[key])) if seen else old
                       for key, seen, old in zip(samples["sample_id"], in_fiftyone, old_tags,
                                                 strict=True)]
    old_label_tags = _text(samples, "label_tags")
    samples["label_tags"] = [
        ",".join(sorted({t for d in (found[key] or []) for t in (d.tags or [])}))
        if seen else old
        for key, seen, old in zip(samples["sample_id"], in_fiftyone, old_label_tags,
                                  strict=True)]

    info = source.info.model_copy(deep=True)
    info.provenance.append({"step": "from_fiftyone", "fiftyone_dataset": name,
                            "source": str(source.root.resolve()),
                            "pcbforge_version": __version__})
    report = _write_back_report(name, source, samples, labels, in_fiftyone, ignored, out)
    if out.exists() and out.resolve() == source.root.resolve():
        result = Dataset(source.root, samples, labels, info)
        validate(result)  # before the folder is locked and copied
        # A hard-link copy of the source with its tables replaced, swapped in whole: the
        # images are not touched, and a kill leaves the old tables or the new ones.
        with staged_output(source.root, command="view --from-fiftyone", clone=True) as stage:
            save(result, stage)
            write_json(stage / FROM_FIFTYONE_REPORT, report)
        return report
    info.image_root = str(source.image_root.resolve())
    result = Dataset(out, samples, labels, info)
    validate(result)
    with staged_output(out, command="view --from-fiftyone") as stage:
        _check_out(out, source.root.resolve())  # again, under the lock
        save(result, stage)
        write_json(stage / FROM_FIFTYONE_REPORT, report)
    return report


def _without_splits(tags: list[str] | None) -> list[str]:
    return sorted({t for t in (tags or []) if t not in SPLIT_TAGS})


def _labels_from_fiftyone(source: Dataset, samples: pd.DataFrame, found: dict, paths: dict,
                          label_field: str) -> pd.DataFrame:
    """The labels table: FiftyOne's boxes for samples it holds, the source's for others."""
    sizes = _sizes(samples)
    classes = set(source.info.classes)  # none listed: any name goes, as in `validate`
    old = {key: rows for key, rows in source.labels.groupby("sample_id", sort=False)}
    parts = []
    for _, sample in samples.iterrows():
        key = str(sample["sample_id"])
        if key not in found:
            if key in old:
                parts.append(old[key])
            continue
        detections = found[key] or []
        if not detections:
            continue
        width, height = _size_of(source, sizes, sample)
        rows = []
        for detection in detections:
            where = (f"FiftyOne sample {paths.get(key, sample['path'])}, {label_field} "
                     f"detection {detection.id}")
            rows.append(_label_row(detection, key, width, height, classes, where))
        parts.append(pd.DataFrame(rows))
    if not parts:
        return empty_labels()
    labels = pd.concat(parts, ignore_index=True)
    return labels.astype({"x1": float, "y1": float, "x2": float, "y2": float,
                          "synthetic": bool})[list(empty_labels().columns)]


def _label_row(detection, key: str, width: int, height: int, classes: set[str],
               where: str) -> dict:
    label = detection.label
    if not label or (classes and label not in classes):
        raise ValueError(f"{where}: label {label!r} is not one of the dataset's classes "
                         f"{sorted(classes)}")
    try:
        x, y, w, h = (float(v) for v in detection.bounding_box)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: bounding_box must be [x, y, w, h], got "
                         f"{detection.bounding_box!r}") from err
    # Relative to pixels; 1e-6 px is below any meaning, and keeps exported values exact.
    x1, y1 = round(x * width, 6), round(y * height, 6)
    x2, y2 = round((x + w) * width, 6), round((y + h) * height, 6)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)) or x2 <= x1 or y2 <= y1:
        raise ValueError(f"{where}: empty box [{x}, {y}, {w}, {h}]")
    slack = BORDER_SLACK_PX
    if x1 < -slack or y1 < -slack or x2 > width + slack or y2 > height + slack:
        raise ValueError(f"{where}: box (x1={x1:g}, y1={y1:g}, x2={x2:g}, y2={y2:g}) is "
                         f"outside the {width}x{height} image")
    x1, y1, x2, y2 = max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height))
    mask = ""
    crop = detection.mask
    if crop is None and getattr(detection, "mask_path", None):
        crop = detection.get_mask()
    if crop is not None:
        mask = full_mask(crop, (x1, y1, x2, y2), width, height)
    # A box added in FiftyOne has neither attribute: a real (hand-drawn) label.
    synthetic = getattr(detection, "synthetic", None)
    params = getattr(detection, "params", None)
    return {"sample_id": key, "label": str(label), "x1": x1, "y1": y1, "x2": x2, "y2": y2,
            "mask": mask, "synthetic": bool(synthetic), "params": str(params or "")}


def _box_keys(labels: pd.DataFrame) -> Counter:
    return Counter(zip(labels["sample_id"], labels["label"],
                       *(labels[c].round(3) for c in ("x1", "y1", "x2", "y2")), strict=True))


def _write_back_report(name: str, source: Dataset, samples: pd.DataFrame,
                       labels: pd.DataFrame, in_fiftyone: pd.Series, ignored: int,
                       out: Path) -> dict:
    before, after = _box_keys(source.labels), _box_keys(labels)
    tag_counts = Counter(t for cell in samples["tags"] for t in parse_tags(cell))
    label_tag_counts = Counter(t for cell in samples["label_tags"] for t in parse_tags(cell))
    return {
        "command": "view --from-fiftyone", "fiftyone_dataset": name,
        "source": str(source.root.resolve()), "out": str(out),
        "samples": len(samples), "samples_in_fiftyone": int(in_fiftyone.sum()),
        "samples_not_in_fiftyone": int((~in_fiftyone).sum()),
        "fiftyone_samples_ignored": ignored,
        "boxes_before": len(source.labels), "boxes_after": len(labels),
        # A moved or resized box counts as one removed and one added.
        "boxes_unchanged": sum((before & after).values()),
        "boxes_added": sum((after - before).values()),
        "boxes_removed": sum((before - after).values()),
        "sample_tags": dict(sorted(tag_counts.items())),
        "label_tags": dict(sorted(label_tag_counts.items())),
    }


def _check_out(out: Path, source_root: Path) -> None:
    """``out`` may be the source, new, empty, or an earlier output for this source."""
    if not out.exists() or out.resolve() == source_root:
        return
    if not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    if not any(out.iterdir()):
        return
    if not (out / SAMPLES_PARQUET).is_file():
        raise ValueError(f"--out {out} exists, is not empty and is not a pcbforge dataset; "
                         f"refusing to replace it")
    try:
        steps = read_info(out).provenance
    except DatasetError as err:
        raise ValueError(f"--out {out}: {err}") from err
    last = steps[-1] if steps else {}
    if last.get("step") != "from_fiftyone" or last.get("source") != str(source_root):
        raise ValueError(f"--out {out} is another pcbforge dataset; write to the source "
                         f"dataset {source_root} or to a new folder")


# --- the App and its database --------------------------------------------------------------------

def database_description() -> str:
    """Which database FiftyOne uses (call after it connected)."""
    fo = _import_fiftyone()
    if fo.config.database_uri:
        return "FIFTYONE_DATABASE_URI (your MongoDB)"
    import fiftyone.core.odm.database as fodb

    service = getattr(fodb, "_db_service", None)
    path = fo.config.database_dir
    if service is not None and getattr(service, "child", None) is not None:
        try:
            for child in service.child.children(recursive=True):
                cmdline = child.cmdline()
                if "--dbpath" in cmdline:
                    path = cmdline[cmdline.index("--dbpath") + 1]
        except Exception:  # noqa: BLE001 - a process that just exited: keep the config's
            pass
        shared = " (shared with another FiftyOne process)" if service.attached else ""
        return f"bundled MongoDB at {path}{shared}"
    return f"bundled MongoDB at {path}"


def is_loopback(address: str) -> bool:
    """Whether ``address`` is reachable from this machine only: ``localhost``, 127.0.0.0/8
    or ``::1``. Any other name or address (``0.0.0.0`` above all) may be public."""
    if address.strip().lower().rstrip(".") in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


#: Why the App stays on this machine unless asked otherwise.
REMOTE_RISK = ("the FiftyOne App has no login, and its /media endpoint serves any file "
               "this user can read, so anyone who can reach {address}:{port} can read them")


def remote_warning(address: str, port: int) -> str:
    """What a user who serves the App on a non-loopback ``address`` must know."""
    return (REMOTE_RISK.format(address=address, port=port) + ". The safe way to use it from "
            f"another machine: keep the default address and run `ssh -L {port}:localhost:"
            f"{port} THIS_HOST` there, then open http://localhost:{port}")


def launch_app(fo_dataset, *, port: int = 5151, address: str = "127.0.0.1",
               remote: bool = False, allow_remote: bool = False):
    """Start the App on ``fo_dataset``; returns the FiftyOne session and the dataset URL.

    A port already in use is refused (``ValueError``): FiftyOne would otherwise join
    whatever App serves it, or wait a minute for a server that cannot start. So is an
    ``address`` other than loopback unless ``allow_remote`` (see :func:`remote_warning`):
    the App would publish every file this user can read.
    """
    if not is_loopback(address) and not allow_remote:
        raise ValueError(f"refusing to serve the App on {address}: "
                         + REMOTE_RISK.format(address=address, port=port)
                         + f". Use `ssh -L {port}:localhost:{port} THIS_HOST` from the other "
                         "machine, or pass --allow-remote (allow_remote=True) to accept this")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError as err:
            raise ValueError(f"cannot serve the App on {address}:{port} ({err.strerror}); "
                             f"pass another --port or --address") from err
    fo = _import_fiftyone()
    session = fo.launch_app(fo_dataset, port=port, address=address, remote=remote, auto=False)
    return session, f"http://{address}:{port}/datasets/{fo_dataset.slug}"


def shutdown(session=None, timeout: float = 30.0) -> str:
    """Close the App server, then stop the database service this process started (if
    another FiftyOne process still uses it, it stops when that one exits). Returns what
    happened, in words."""
    fo = _import_fiftyone()
    import fiftyone.core.odm.database as fodb

    if session is not None:
        session.close()  # stops the App server process and waits for it
    fo.close_app()
    service = getattr(fodb, "_db_service", None)
    # Disconnect first: FiftyOne's exit hook would otherwise wait 30 s for a stopped server.
    fodb._disconnect()
    if service is None or fo.config.database_uri:
        return "App closed; the database is yours (FIFTYONE_DATABASE_URI), left running"
    if service.attached or service.child is None:
        return "App closed; the database belongs to another FiftyOne process, left running"
    process = service.child
    service.stop()  # closes its stdin: the service stops mongod when no client is left
    fodb._db_service = None
    try:
        process.wait(timeout)
    except Exception:  # noqa: BLE001 - psutil.TimeoutExpired: still used by another client
        return "App closed; the database is still used by another FiftyOne process"
    return "App and database stopped"


__all__ = [
    "CLASS_VIEW_PREFIX", "FROM_FIFTYONE_REPORT", "KEY_FIELD", "LABEL_FIELD",
    "TEMPLATE_FIELD", "box_mask", "database_description", "duplicate_clusters", "field_name",
    "from_fiftyone", "full_mask", "is_loopback", "launch_app", "media_path", "parse_tags",
    "remote_warning", "shutdown",
    "table_view_counts", "to_fiftyone", "view_counts", "view_urls",
]
