"""COCO instances (detection) export and import.

Layout written by :func:`save_coco`::

    OUT/
      annotations.json    COCO instances: images, annotations, categories
      images/<path>       copies of the images, at their samples-table ``path``

Box conventions: pcbforge boxes are float pixels ``x1, y1, x2, y2`` with ``x2``/``y2``
exclusive. COCO ``bbox`` is ``[x, y, width, height]`` in float pixels with the same
continuous-coordinate origin (the image's top-left corner), so ``bbox = [x1, y1, x2 - x1,
y2 - y1]`` and ``x2 = x + width`` exactly: nothing is shifted or rounded. An instance mask
is written as the annotation's ``segmentation`` (compressed RLE, see
:mod:`pcbforge.datasets.masks`); polygons and RLE are both read.

Categories get ids 1..K in ``classes`` order. pcbforge values COCO has no field for are kept
in a ``"pcbforge"`` dict on each image (sample_id, split, synthetic) and annotation
(synthetic, params), which other COCO tools ignore, so a round trip is lossless.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from pcbforge import __version__
from pcbforge.datasets.dataset import image_file
from pcbforge.datasets.formats_common import (
    SAMPLE_COLUMNS,
    box_inside,
    boxes_by_sample,
    copy_image,
    labels_frame,
    read_image_size,
    sample_flag,
    sample_size,
    text_value,
)
from pcbforge.datasets.masks import decode_mask, encode_mask, mask_from_segmentation, parse_rle

ANNOTATIONS_JSON = "annotations.json"


def save_coco(samples: pd.DataFrame, labels: pd.DataFrame, classes: list[str],
              image_root: Path, out_dir: Path) -> Path:
    """Write ``samples`` and their boxes as ``out_dir/annotations.json`` plus image copies.

    Images without boxes are included. Returns the path of ``annotations.json``.
    """
    image_root, out_dir = Path(image_root), Path(out_dir)
    grouped = boxes_by_sample(samples, labels, classes)
    category_ids = {name: i for i, name in enumerate(classes, start=1)}
    images, annotations = [], []
    for image_id, (_, sample) in enumerate(samples.iterrows(), start=1):
        path = str(sample["path"])
        if Path(path).is_absolute() or ".." in Path(path).parts:
            # The copy goes to images/<path>: it must stay inside out_dir.
            raise ValueError(f"sample {sample['sample_id']!r}: path {path!r} must be relative "
                             f"and stay inside the image root")
        source = image_file(image_root, path)
        copy_image(source, out_dir / "images" / path)
        width, height = sample_size(sample, source)
        images.append({
            "id": image_id, "file_name": path, "width": width, "height": height,
            "pcbforge": {"sample_id": str(sample["sample_id"]),
                         "split": text_value(sample.get("split", "")),
                         "synthetic": sample_flag(sample)},
        })
        boxes = grouped.get(str(sample["sample_id"]), labels.iloc[:0])
        for box in boxes.itertuples(index=False):
            x1, y1, x2, y2 = (float(v) for v in (box.x1, box.y1, box.x2, box.y2))
            w, h = x2 - x1, y2 - y1
            annotation = {
                "id": len(annotations) + 1, "image_id": image_id,
                "category_id": category_ids[box.label], "bbox": [x1, y1, w, h],
                "area": w * h, "iscrowd": 0,
                "pcbforge": {"synthetic": bool(box.synthetic), "params": text_value(box.params)},
            }
            if text_value(box.mask):
                annotation["segmentation"] = parse_rle(box.mask)
                annotation["area"] = float(decode_mask(box.mask).sum())
            annotations.append(annotation)
    payload = {
        "info": {"description": "exported by pcbforge", "version": __version__},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": name, "supercategory": "defect"}
                       for name, i in category_ids.items()],
    }
    json_path = out_dir / ANNOTATIONS_JSON
    json_path.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    return json_path


def load_coco(json_path: Path, images_dir: Path | Sequence[Path] | None = None
              ) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Read a COCO instances file: ``(samples, labels, classes)``.

    ``classes`` are the category names in category-id order. ``sample_id`` comes from the
    ``"pcbforge"`` extra when present (``id_given`` True), else ``f"coco-{image_id}"``.
    With ``images_dir`` every image must exist there (its location is the ``file`` column),
    and a missing width/height is read from its header; a list of folders means the first
    one that holds the first image. Boxes must lie inside their image (see ``box_inside``).
    """
    json_path = Path(json_path)
    if not json_path.is_file():
        raise FileNotFoundError(f"{json_path}: COCO annotations file not found")
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{json_path}: not valid JSON ({err.msg} at line {err.lineno})") from err
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ValueError(f"{json_path}: not a COCO instances file (no 'images' list)")
    if images_dir is not None and not isinstance(images_dir, str | Path):
        images_dir = _images_folder(json_path, data["images"], [Path(f) for f in images_dir])
    categories = sorted(data.get("categories", []), key=lambda c: c["id"])
    names = {c["id"]: str(c["name"]) for c in categories}
    classes = [str(c["name"]) for c in categories]
    samples, images = [], {}
    for image in data["images"]:
        row = _read_image(image, json_path, images_dir)
        if image["id"] in images:
            raise ValueError(f"{json_path}: image id {image['id']} appears twice")
        images[image["id"]] = row
        samples.append(row)
    rows = []
    for annotation in data.get("annotations", []):
        rows.append(_read_annotation(annotation, json_path, names, images))
    return pd.DataFrame(samples, columns=SAMPLE_COLUMNS), labels_frame(rows), classes


def _images_folder(json_path: Path, images: list, candidates: list[Path]) -> Path:
    """The first of ``candidates`` that holds the file of the first image."""
    if not images:
        return candidates[-1]
    name = str(images[0].get("file_name", "")) if isinstance(images[0], dict) else ""
    for folder in candidates:
        if (folder / name).is_file():
            return folder
    raise FileNotFoundError(f"{json_path}: image {name!r} is not in "
                            f"{', '.join(str(c) for c in candidates)}; pass --images")


def _read_image(image: dict, json_path: Path, images_dir: Path | None) -> dict:
    if "id" not in image or "file_name" not in image:
        raise ValueError(f"{json_path}: image {image!r:.80} has no id or file_name")
    extra = image.get("pcbforge") or {}
    path = str(image["file_name"]).replace("\\", "/")
    width, height = image.get("width"), image.get("height")
    file = None
    if images_dir is not None:
        file = Path(images_dir) / path
        if not file.is_file():
            raise FileNotFoundError(f"{json_path}: image id {image['id']}: {file} not found")
        if not (width and height):
            width, height = read_image_size(file)
    if not (width and height):
        raise ValueError(f"{json_path}: image id {image['id']} has no width/height "
                         f"(pass images_dir to read them from the files)")
    given = str(extra.get("sample_id") or "")
    return {"sample_id": given or f"coco-{image['id']}", "id_given": bool(given), "path": path,
            "file": str(file) if file is not None else "",
            "width": int(width), "height": int(height), "split": str(extra.get("split", "")),
            "synthetic": bool(extra.get("synthetic", False))}


def _read_annotation(annotation: dict, json_path: Path, names: dict,
                     images: dict) -> dict:
    where = f"{json_path}: annotation id {annotation.get('id')}"
    category = annotation.get("category_id")
    if category not in names:
        raise ValueError(f"{where}: unknown category_id {category!r} "
                         f"(categories: {sorted(names)})")
    if annotation.get("image_id") not in images:
        raise ValueError(f"{where}: unknown image_id {annotation.get('image_id')!r}")
    bbox = annotation.get("bbox")
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: bbox must be [x, y, width, height], got {bbox!r}") from err
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
        raise ValueError(f"{where}: empty or invalid bbox {bbox!r}")
    image = images[annotation["image_id"]]
    x1, y1, x2, y2 = box_inside(f"{where} (image {image['path']})", (x, y, x + w, y + h),
                                image["width"], image["height"])
    extra = annotation.get("pcbforge") or {}
    mask = ""
    if annotation.get("segmentation"):
        try:
            mask = encode_mask(mask_from_segmentation(annotation["segmentation"],
                                                      image["height"], image["width"]))
        except ValueError as err:
            raise ValueError(f"{where}: segmentation: {err}") from err
    return {"sample_id": image["sample_id"], "label": names[category],
            "x1": x1, "y1": y1, "x2": x2, "y2": y2, "mask": mask,
            "synthetic": bool(extra.get("synthetic", False)),
            "params": str(extra.get("params", ""))}


__all__ = ["ANNOTATIONS_JSON", "load_coco", "save_coco"]
