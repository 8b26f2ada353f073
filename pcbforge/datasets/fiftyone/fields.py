"""How the pcbforge tables map onto FiftyOne: field names, the key, tags, boxes and masks.

Shared by the export (:mod:`.export`), the evaluations (:mod:`.evaluations`) and the
write-back (:mod:`.write_back`); functions over tables and arrays (fiftyone is not
imported: :func:`ensure_detections_field` is handed the module).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pcbforge.datasets.dataset import Dataset
from pcbforge.datasets.formats_common import read_image_size
from pcbforge.datasets.masks import decode_mask, encode_mask

LABEL_FIELD = "ground_truth"
KEY_FIELD = "pcbforge_id"
TEMPLATE_FIELD = "template_filepath"
#: Detections of a synthetic tested image's background nuisance regions (not defects).
NUISANCE_FIELD = "nuisance"
SPLIT_TAGS = ("train", "val", "test")
CLASS_VIEW_PREFIX = "class-"
#: Sample fields FiftyOne reserves (or gives a meaning): such columns get a prefix.
_RESERVED = {"id", "filepath", "tags", "metadata", "media_type", "created_at",
             "last_modified_at", "frames", "group_id", "filename",
             "label_tags"}  # the App's own "label tags" entry
#: Fields the export computes; a samples column of the same name gets the prefix too.
_OWN_FIELDS = {KEY_FIELD, TEMPLATE_FIELD, NUISANCE_FIELD, "template_id", "duplicate_cluster"}


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
    duplicate_of = text_column(samples, "duplicate_of")
    kept = set(duplicate_of[duplicate_of != ""])
    path = samples["path"].astype(str)
    return duplicate_of.where(duplicate_of != "", path.where(path.isin(kept), ""))


def parse_tags(text: str) -> list[str]:
    """Tags of a ``tags``/``label_tags`` cell: comma-separated."""
    return [t for t in (part.strip() for part in str(text).split(",")) if t]


def text_column(samples: pd.DataFrame, column: str) -> pd.Series:
    """A column as text, missing values and a missing column as ``""``."""
    if column not in samples.columns:
        return pd.Series("", index=samples.index, dtype=object)
    return samples[column].fillna("").astype(str)


def class_names(dataset: Dataset) -> list[str]:
    """The dataset's classes, then any other label its boxes use (sorted)."""
    seen = [c for c in dict.fromkeys(dataset.labels["label"].astype(str))
            if c not in dataset.info.classes]
    return [*dataset.info.classes, *sorted(seen)]


def pixel_span(box: tuple[float, float, float, float], width: int, height: int
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
    x0, y0, x1, y1 = pixel_span(box, width, height)
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
    x0, y0, x1, y1 = pixel_span(box, width, height)
    crop = crop > 0
    if crop.shape != (y1 - y0, x1 - x0):
        crop = cv2.resize(crop.astype(np.uint8), (x1 - x0, y1 - y0),
                          interpolation=cv2.INTER_NEAREST) > 0
    full = np.zeros((height, width), dtype=bool)
    full[y0:y1, x0:x1] = crop
    return encode_mask(full)


def image_size_of(dataset: Dataset, sizes: dict, sample: pd.Series) -> tuple[int, int]:
    """``(width, height)`` of a samples row: from ``sizes`` (:func:`image_sizes`), else
    from its image header; a sample with neither raises ``ValueError``."""
    width, height = sizes[str(sample["sample_id"])]
    if width > 0 and height > 0:
        return width, height
    try:
        return read_image_size(dataset.image_path(str(sample["path"])))
    except (OSError, ValueError) as err:
        raise ValueError(f"sample {sample['path']!r} has boxes but no image size: {err}"
                         ) from err


def finite(value: object) -> bool:
    """Whether ``value`` is a finite number (``None``, NaN and text are not)."""
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def relative_box(corners: tuple[float, ...], width: int, height: int) -> list[float]:
    """Pixel ``x1, y1, x2, y2`` as FiftyOne's relative ``[x, y, w, h]``."""
    x1, y1, x2, y2 = corners
    return [x1 / width, y1 / height, (x2 - x1) / width, (y2 - y1) / height]


def ensure_detections_field(fo, fo_dataset, field: str, attributes: tuple, *,
                            replace_other: bool = False) -> None:
    """Declare the sample field ``field`` as :class:`Detections` with the detection
    attributes ``((name, field type), ...)``; ``replace_other``: a field of that name of
    another kind is deleted first (else it is left, and the declaration fails later)."""
    schema = fo_dataset.get_field_schema()
    if replace_other and field in schema and \
            getattr(schema[field], "document_type", None) is not fo.Detections:
        fo_dataset.delete_sample_field(field)
        schema = fo_dataset.get_field_schema()
    if field not in schema:
        fo_dataset.add_sample_field(field, fo.EmbeddedDocumentField,
                                    embedded_doc_type=fo.Detections)
    nested = fo_dataset.get_field_schema(flat=True)
    for attribute, ftype in attributes:
        if f"{field}.detections.{attribute}" not in nested:
            fo_dataset.add_sample_field(f"{field}.detections.{attribute}", ftype)
