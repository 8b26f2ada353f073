"""Instance masks as COCO run-length encoding (RLE), the ``mask`` column of labels.

A mask is stored as the JSON text of a COCO compressed RLE over the whole image:
``{"size": [height, width], "counts": "<string>"}``, encoded and decoded by
``pycocotools`` (the reference implementation), so a COCO export's ``segmentation`` is the
same object and every COCO tool reads it. ``""`` means no mask.
"""

from __future__ import annotations

import json

import numpy as np
from pycocotools import mask as coco_mask


def encode_mask(mask: np.ndarray) -> str:
    """The ``mask`` column text of a 2-D boolean image-sized mask."""
    rle = coco_mask.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    return json.dumps({"size": [int(v) for v in rle["size"]],
                       "counts": rle["counts"].decode("ascii")}, separators=(",", ":"))


def encode_mask_window(window: np.ndarray, x: int, y: int, height: int, width: int) -> str:
    """:func:`encode_mask` of an image-sized mask that is zero outside ``window`` (placed
    with its top-left pixel at column ``x``, row ``y``): the same text, without building
    the image-sized mask."""
    window = np.asarray(window, dtype=bool)
    x, y, height, width = int(x), int(y), int(height), int(width)
    h, w = window.shape
    if x < 0 or y < 0 or x + w > width or y + h > height:
        raise ValueError(f"window {w}x{h} at ({x}, {y}) is outside a {width}x{height} image")
    # Column-major positions of the set pixels, as COCO orders them.
    columns, rows = np.nonzero(window.T)
    positions = (x + columns).astype(np.int64) * height + (y + rows)
    if not len(positions):
        counts = [height * width]
    else:
        starts = np.flatnonzero(np.diff(positions, prepend=-2) != 1)
        run_starts = positions[starts]
        run_ends = positions[np.r_[starts[1:] - 1, len(positions) - 1]] + 1
        gaps = run_starts - np.r_[0, run_ends[:-1]]
        counts = np.column_stack([gaps, run_ends - run_starts]).ravel().tolist()
        if run_ends[-1] < height * width:  # no trailing zero run, as pycocotools writes it
            counts.append(height * width - int(run_ends[-1]))
    rle = coco_mask.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    return json.dumps({"size": [height, width], "counts": rle["counts"].decode("ascii")},
                      separators=(",", ":"))


def parse_rle(text: str) -> dict:
    """The RLE dict of a ``mask`` column text; ``ValueError`` when it is not one."""
    try:
        rle = json.loads(text)
        height, width = (int(v) for v in rle["size"])
        counts = rle["counts"]
        if not isinstance(counts, str):
            raise TypeError("counts must be a string")
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"mask is not a COCO compressed RLE {{'size': [h, w], 'counts': "
                         f"'...'}}: {text[:60]!r}") from err
    return {"size": [height, width], "counts": counts}


def decode_mask(text: str) -> np.ndarray:
    """The boolean mask of a ``mask`` column text."""
    rle = parse_rle(text)
    return coco_mask.decode({"size": rle["size"],
                             "counts": rle["counts"].encode("ascii")}).astype(bool)


def mask_from_segmentation(segmentation: object, height: int, width: int) -> np.ndarray:
    """A COCO ``segmentation`` (polygons, uncompressed or compressed RLE) as a boolean mask,
    rasterised exactly as pycocotools (and so COCO's evaluation) does."""
    if isinstance(segmentation, dict):
        size = [int(v) for v in segmentation.get("size", [])]
        if size != [height, width]:
            raise ValueError(f"segmentation size {size} is not the image's {[height, width]}")
        counts = segmentation.get("counts")
        if isinstance(counts, str | bytes):  # compressed: pycocotools wants bytes
            counts = counts.encode("ascii") if isinstance(counts, str) else counts
            rle = {"size": size, "counts": counts}
        else:
            rle = coco_mask.frPyObjects(segmentation, height, width)
    elif isinstance(segmentation, list) and segmentation:
        rle = coco_mask.merge(coco_mask.frPyObjects(segmentation, height, width))
    else:
        raise ValueError(f"segmentation must be RLE or polygons, got {segmentation!r:.60}")
    return coco_mask.decode(rle).astype(bool)


def mask_box(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """Tight ``x1, y1, x2, y2`` (exclusive ends) of a mask, or None when it is empty."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return None
    return float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)


__all__ = [
    "decode_mask", "encode_mask", "encode_mask_window", "mask_box", "mask_from_segmentation",
    "parse_rle",
]
