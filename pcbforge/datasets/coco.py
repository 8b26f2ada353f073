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

Pairs (an export with ``--templates pair``): a tested image's entry names its defect-free
template in ``"template_file_name"`` (relative to the images folder, as ``file_name`` is;
the file is written at ``images/<its path>``, once however many images share it) and the
template's sample id in ``pcbforge.template_sample_id``. Templates are then no entries of
their own. :func:`load_coco` reads both back (:data:`TEMPLATE_COLUMNS`).
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
    MAX_JSON_FILE_BYTES,
    PAIR_TEMPLATE_ID,
    SAMPLE_COLUMNS,
    TEMPLATE_COLUMNS,
    LabelFormat,
    ReadOptions,
    SourceError,
    SourcePart,
    TemplateMode,
    box_inside,
    boxes_by_sample,
    copy_image,
    inside_root,
    labels_frame,
    pair_counts,
    pair_template,
    pairs_asked,
    part_counts,
    read_image_size,
    read_label_text,
    sample_flag,
    sample_size,
    split_folders,
    text_value,
)
from pcbforge.datasets.masks import decode_mask, encode_mask, mask_from_segmentation, parse_rle

ANNOTATIONS_JSON = "annotations.json"


def save_coco(samples: pd.DataFrame, labels: pd.DataFrame, classes: list[str],
              image_root: Path, out_dir: Path) -> Path:
    """Write ``samples`` and their boxes as ``out_dir/annotations.json`` plus image copies.

    Images without boxes are included. Rows that carry a template to pair
    (:data:`~pcbforge.datasets.formats_common.PAIR_TEMPLATE`) get it beside them (see the
    module's docstring). Returns the path of ``annotations.json``.
    """
    image_root, out_dir = Path(image_root), Path(out_dir)
    grouped = boxes_by_sample(samples, labels, classes)
    category_ids = {name: i for i, name in enumerate(classes, start=1)}
    images, annotations = [], []
    copied: set[str] = set()
    for image_id, (_, sample) in enumerate(samples.iterrows(), start=1):
        path = str(sample["path"])
        if Path(path).is_absolute() or ".." in Path(path).parts:
            # The copy goes to images/<path>: it must stay inside out_dir.
            raise ValueError(f"sample {sample['sample_id']!r}: path {path!r} must be relative "
                             f"and stay inside the image root")
        source = image_file(image_root, path)
        copy_image(source, out_dir / "images" / path)
        width, height = sample_size(sample, source)
        entry = {"id": image_id, "file_name": path}
        template = pair_template(sample, image_root)
        if template is not None:
            if template[0] not in copied:  # a template shared by many images: once
                copy_image(template[1], out_dir / "images" / template[0])
                copied.add(template[0])
            entry["template_file_name"] = template[0]
        images.append({
            **entry, "width": width, "height": height,
            "pcbforge": {"sample_id": str(sample["sample_id"]),
                         "split": text_value(sample.get("split", "")),
                         "synthetic": sample_flag(sample),
                         **_regions_extra(sample),
                         **({"template_sample_id": text_value(sample.get(PAIR_TEMPLATE_ID))}
                            if template is not None else {})},
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


def load_coco(json_path: Path, images_dir: Path | Sequence[Path] | None = None, *,
              allow_outside: bool = False) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Read a COCO instances file: ``(samples, labels, classes)``.

    ``classes`` are the category names in category-id order. ``sample_id`` comes from the
    ``"pcbforge"`` extra when present (``id_given`` True), else ``f"coco-{image_id}"``.
    With ``images_dir`` every image must exist there (its location is the ``file`` column),
    and a missing width/height is read from its header; a list of folders means the first
    one that holds the first image. Boxes must lie inside their image (see ``box_inside``).

    Every ``file_name`` must stay inside the images folder (the JSON's own folder without
    ``images_dir``): ``..``, an absolute name or a link leading out raises
    ``PathOutsideRootError`` naming the entry, unless ``allow_outside``. The file must have
    an ``annotations`` list: without one every image would read as defect-free (an empty
    list says so explicitly).
    """
    json_path = Path(json_path)
    if not json_path.exists():
        raise FileNotFoundError(f"{json_path}: COCO annotations file not found")
    text = read_label_text(json_path, "COCO annotations file", MAX_JSON_FILE_BYTES)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{json_path}:{err.lineno}: not valid JSON ({err.msg})") from err
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ValueError(f"{json_path}: not a COCO instances file (expected an object with an "
                         f"'images' list, got {_kind_of(data, 'images')})")
    if not isinstance(data.get("annotations"), list):
        raise ValueError(f"{json_path}: expected an 'annotations' list, got "
                         f"{_kind_of(data, 'annotations')} (without it every image would read "
                         f"as defect-free; write \"annotations\": [] if none has a defect)")
    if images_dir is not None and not isinstance(images_dir, str | Path):
        images_dir = _images_folder(json_path, data["images"], [Path(f) for f in images_dir])
    classes, names = _read_categories(json_path, data.get("categories", []))
    root = Path(images_dir) if images_dir is not None else json_path.parent
    samples, images = [], {}
    for index, image in enumerate(data["images"]):
        row = _read_image(image, f"{json_path}: images[{index}]", root,
                          images_dir is not None, allow_outside)
        if image["id"] in images:
            raise ValueError(f"{json_path}: images[{index}]: image id {image['id']!r} appears "
                             f"twice (image ids must be unique)")
        images[image["id"]] = row
        samples.append(row)
    rows = []
    for index, annotation in enumerate(data["annotations"]):
        rows.append(_read_annotation(annotation, json_path, index, names, images))
    return (pd.DataFrame(samples, columns=[*SAMPLE_COLUMNS, "nuisance_regions",
                                           *TEMPLATE_COLUMNS]),
            labels_frame(rows), classes)


def _kind_of(data: object, key: str) -> str:
    """What arrived where a COCO object's ``key`` should be, in a few words."""
    if not isinstance(data, dict):
        return f"a JSON {type(data).__name__}"
    if key not in data:
        return f"no {key!r} key"
    return f"{key!r} as a JSON {type(data[key]).__name__}"


def _read_categories(json_path: Path, categories: object) -> tuple[list[str], dict]:
    """``(classes, names)``: category names in id order, and id -> name."""
    if not isinstance(categories, list):
        raise ValueError(f"{json_path}: 'categories' must be a list, got "
                         f"{type(categories).__name__}")
    names: dict = {}
    for index, category in enumerate(categories):
        if (not isinstance(category, dict) or not _is_id(category.get("id"))
                or not isinstance(category.get("name"), str) or not category["name"]):
            raise ValueError(f"{json_path}: categories[{index}] must be an object with an "
                             f"integer 'id' and a 'name', got {category!r:.80}")
        if category["id"] in names:
            raise ValueError(f"{json_path}: categories[{index}]: category id {category['id']} "
                             f"appears twice (ids must be unique)")
        names[category["id"]] = category["name"]
    ordered = dict(sorted(names.items()))
    return list(ordered.values()), ordered


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _images_folder(json_path: Path, images: list, candidates: list[Path]) -> Path:
    """The first of ``candidates`` that holds the file of the first image."""
    if not images:
        return candidates[-1]
    first = images[0]
    name = first.get("file_name") if isinstance(first, dict) else None
    if not isinstance(name, str) or not name:
        raise ValueError(f"{json_path}: images[0] has no 'file_name' (got {first!r:.80})")
    for folder in candidates:
        if (folder / name).is_file():
            return folder
    raise FileNotFoundError(f"{json_path}: images[0] file_name {name!r} is in none of "
                            f"{', '.join(str(c) for c in candidates)}; pass --images FOLDER")


def _read_image(image: object, where: str, root: Path, open_files: bool,
                allow_outside: bool) -> dict:
    """One samples row from an ``images`` entry; ``where`` names the file and the entry.
    ``root`` is the folder file names are relative to; ``open_files``: the images are there
    (check that each exists, read a missing size from its header)."""
    if not isinstance(image, dict):
        raise ValueError(f"{where}: expected an object with 'id' and 'file_name', got "
                         f"{image!r:.80}")
    name = image.get("file_name")
    if not (_is_id(image.get("id")) or isinstance(image.get("id"), str)):
        raise ValueError(f"{where}: expected an integer 'id', got {image.get('id')!r:.80}")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where} (id {image['id']}): expected a 'file_name', got "
                         f"{name!r:.80}")
    where = f"{where} (id {image['id']})"
    extra = image.get("pcbforge") or {}
    path = name.replace("\\", "/")
    file = inside_root(root, path, f"{where} file_name", allow_outside=allow_outside)
    width, height = _size(image.get("width")), _size(image.get("height"))
    if open_files:
        if not file.is_file():
            raise FileNotFoundError(f"{where}: image {path!r} not found in {root}")
        if not (width and height):
            width, height = read_image_size(file)
    if not (width and height):
        raise ValueError(f"{where}: expected a positive integer width and height, got "
                         f"{image.get('width')!r} and {image.get('height')!r} (pass the "
                         f"images folder to read them from the files)")
    given = str(extra.get("sample_id") or "")
    return {"sample_id": given or f"coco-{image['id']}", "id_given": bool(given), "path": path,
            "file": str(root / path) if open_files else "",
            "width": width, "height": height, "split": str(extra.get("split", "")),
            "synthetic": bool(extra.get("synthetic", False)),
            "nuisance_regions": _regions_text(extra.get("nuisance_regions"), where),
            **_read_template(image, extra, where, root, open_files, allow_outside)}


def _read_template(image: dict, extra: dict, where: str, root: Path, open_files: bool,
                   allow_outside: bool) -> dict:
    """The :data:`TEMPLATE_COLUMNS` of an ``images`` entry: its ``template_file_name``
    (checked as ``file_name`` is) and the template's stored sample id; "" without one."""
    name = image.get("template_file_name")
    if name is None:
        return dict.fromkeys(TEMPLATE_COLUMNS, "")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}: template_file_name must name a file, got {name!r:.80}")
    path = name.replace("\\", "/")
    file = inside_root(root, path, f"{where} template_file_name",
                       allow_outside=allow_outside)
    if open_files and not file.is_file():
        raise FileNotFoundError(f"{where}: template {path!r} not found in {root}")
    return {"template_path": path, "template_file": str(root / path) if open_files else "",
            "template_id": str(extra.get("template_sample_id") or "")}


def _regions_extra(sample: pd.Series) -> dict:
    """``{"nuisance_regions": [...]}`` for a sample that records background nuisance
    regions (synthetic tested images), else nothing."""
    text = text_value(sample.get("nuisance_regions", ""))
    return {"nuisance_regions": json.loads(text)} if text else {}


def _regions_text(value: object, where: str) -> str:
    """The samples-table text of an image's ``nuisance_regions`` extra ("" when absent)."""
    if value is None:
        return ""
    if not isinstance(value, list) or not all(
            isinstance(r, dict) and isinstance(r.get("box"), list) for r in value):
        raise ValueError(f"{where}: pcbforge.nuisance_regions must be a list of "
                         f"{{'kind', 'box', 'area'}} objects, got {value!r:.80}")
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _size(value: object) -> int:
    """A width or height as a positive int; 0 when missing or not a positive whole number."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return int(value) if math.isfinite(value) and value >= 1 and value == int(value) else 0


def _read_annotation(annotation: object, json_path: Path, index: int, names: dict,
                     images: dict) -> dict:
    where = f"{json_path}: annotations[{index}]"
    if not isinstance(annotation, dict):
        raise ValueError(f"{where}: expected an object with image_id, category_id and bbox, "
                         f"got {annotation!r:.80}")
    if "id" in annotation:  # the id is how people find an annotation; the index when none
        where = f"{json_path}: annotation id {annotation['id']!r:.40}"
    category = annotation.get("category_id")
    if not _is_id(category) or category not in names:
        raise ValueError(f"{where}: unknown category_id {category!r:.40} (categories: "
                         f"{sorted(names)})")
    image_id = annotation.get("image_id")
    if not (_is_id(image_id) or isinstance(image_id, str)) or image_id not in images:
        raise ValueError(f"{where}: image_id {image_id!r:.40} is not the id of an entry of "
                         f"'images'")
    if "bbox" not in annotation:
        raise ValueError(f"{where}: has no 'bbox' (expected [x, y, width, height])")
    bbox = annotation["bbox"]
    if (not isinstance(bbox, list) or len(bbox) != 4
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in bbox)):
        raise ValueError(f"{where}: bbox must be 4 numbers [x, y, width, height], got "
                         f"{bbox!r:.80}")
    x, y, w, h = (float(v) for v in bbox)
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise ValueError(f"{where}: bbox {bbox!r} has a value that is not a finite number")
    if w <= 0 or h <= 0:
        raise ValueError(f"{where}: bbox {bbox!r} is empty (expected width > 0 and "
                         f"height > 0)")
    image = images[image_id]
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


# --- the format: discovery, load and save as an import and an export use them -------------

#: JSON files in a COCO folder that are not annotations (pcbforge's own reports).
_NOT_COCO_JSON = {"export_report.json", "report.json", "dataset.json", "pcbforge_samples.json"}


def discover_coco(src: Path) -> list[SourcePart]:
    """The annotations files of a COCO source: the file ``src``, the one JSON in the folder
    ``src``, or one in each of its split folders (a pcbforge export, other tools' exports).
    """
    src = Path(src)
    if not src.is_dir():  # a file (or a FIFO...): the loader reads it, or says why not
        return [SourcePart(src)]
    return [SourcePart(_coco_json_in(part.path), part.split) for part in
            split_folders(src, lambda f: _coco_json_in(f) is not None, "COCO annotations JSON")]


def _coco_json_in(folder: Path) -> Path | None:
    candidates = sorted(p for p in folder.glob("*.json") if p.name not in _NOT_COCO_JSON)
    if len(candidates) > 1:
        names = ", ".join(p.name for p in candidates)
        raise SourceError(f"{folder}: several JSON files ({names}); pass the COCO "
                          f"annotations file itself")
    return candidates[0] if candidates else None


def _load_part(part: SourcePart, options: ReadOptions):
    json_path = part.path
    # Given, else images/ or data/ beside the JSON, else its own folder.
    folders = [Path(options.images)] if options.images else [
        json_path.parent / "images", json_path.parent / "data", json_path.parent]
    return load_coco(json_path, images_dir=folders, allow_outside=options.allow_outside)


def _save_part(samples: pd.DataFrame, labels: pd.DataFrame, classes: list[str],
               image_root: Path, out: Path, split: str) -> dict[str, int]:
    save_coco(samples, labels, classes, image_root, out / (split or "all"))
    counts = part_counts(samples, labels)
    return {**counts, **pair_counts(samples)} if pairs_asked(samples) else counts


FORMAT = LabelFormat(
    name="coco",
    help="COCO detection labels (boxes, instance masks)",
    source_help="COCO instances JSON, or a folder holding one (or split folders each "
                "holding one).",
    discover=discover_coco, load=_load_part, save=_save_part, options=frozenset({"images"}),
    templates=frozenset(mode.value for mode in TemplateMode),
)


__all__ = ["ANNOTATIONS_JSON", "FORMAT", "discover_coco", "load_coco", "save_coco"]
