"""Pascal VOC export and import.

Layout written by :func:`save_voc`::

    OUT/
      JPEGImages/<file>         copies of the images (any format; nested paths flattened,
                                "a/b.png" -> "a__b.png", as in the YOLO export)
      Annotations/<stem>.xml    one file per image: <size>, <object><name><bndbox>
      labels.txt                class names, one a line, in class-index order

Box conventions: pcbforge boxes are float pixels ``x1, y1, x2, y2`` with ``x2``/``y2``
exclusive. VOC ``bndbox`` corners are 1-based inclusive pixel indices, so a box covering
pixel columns 0..9 is ``xmin=1, xmax=10``: ``xmin = x1 + 1``, ``ymin = y1 + 1``,
``xmax = x2``, ``ymax = y2`` and back again. Integral values are written as integers, others
as Python floats (``repr``), so non-integer boxes survive the round trip too.

pcbforge values VOC has no field for live in ``<pcbforge>`` elements: on the annotation
(sample_id, original path, split, synthetic, and the background nuisance regions of a
synthetic tested image as ``<nuisance_regions><region><kind>``, ``<bndbox>`` in VOC's
convention and ``<area>``) and on each object (synthetic, params, and the instance mask as
COCO RLE text when there is one).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
from PIL import Image

from pcbforge.datasets.dataset import image_file, sample_id_for
from pcbforge.datasets.formats_common import (
    SAMPLE_COLUMNS,
    LabelFormat,
    ReadOptions,
    SourcePart,
    box_inside,
    boxes_by_sample,
    check_missing_labels,
    copy_image,
    flat_file_names,
    inside_root,
    labels_frame,
    part_counts,
    read_image_size,
    read_label_bytes,
    read_label_text,
    sample_flag,
    sample_size,
    split_folders,
    text_value,
)

LABELS_TXT = "labels.txt"


def save_voc(samples: pd.DataFrame, labels: pd.DataFrame, classes: list[str],
             image_root: Path, out_dir: Path) -> Path:
    """Write ``samples`` and their boxes as a VOC folder ``out_dir``; returns ``out_dir``."""
    image_root, out_dir = Path(image_root), Path(out_dir)
    grouped = boxes_by_sample(samples, labels, classes)
    (out_dir / "Annotations").mkdir(parents=True, exist_ok=True)
    names = flat_file_names(samples["path"])
    for (_, sample), name in zip(samples.iterrows(), names, strict=True):
        source = image_file(image_root, str(sample["path"]))
        copy_image(source, out_dir / "JPEGImages" / name)
        width, height = sample_size(sample, source)
        root = ET.Element("annotation")
        _add(root, "folder", "JPEGImages")
        _add(root, "filename", name)
        size = ET.SubElement(root, "size")
        for tag, value in (("width", width), ("height", height), ("depth", _depth(source))):
            _add(size, tag, str(value))
        _add(root, "segmented", "0")
        extra = ET.SubElement(root, "pcbforge")
        _add(extra, "sample_id", str(sample["sample_id"]))
        _add(extra, "path", str(sample["path"]))
        _add(extra, "split", text_value(sample.get("split", "")))
        _add(extra, "synthetic", _bool_text(sample_flag(sample)))
        _add_regions(extra, text_value(sample.get("nuisance_regions", "")))
        boxes = grouped.get(str(sample["sample_id"]), labels.iloc[:0])
        for box in boxes.itertuples(index=False):
            item = ET.SubElement(root, "object")
            _add(item, "name", box.label)
            _add(item, "pose", "Unspecified")
            _add(item, "truncated", "0")
            _add(item, "difficult", "0")
            bndbox = ET.SubElement(item, "bndbox")
            corners = (float(box.x1) + 1, float(box.y1) + 1, float(box.x2), float(box.y2))
            for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), corners, strict=True):
                _add(bndbox, tag, _number_text(value))
            box_extra = ET.SubElement(item, "pcbforge")
            _add(box_extra, "synthetic", _bool_text(bool(box.synthetic)))
            _add(box_extra, "params", text_value(box.params))
            if text_value(box.mask):
                _add(box_extra, "mask", text_value(box.mask))
        ET.indent(root)
        xml_path = out_dir / "Annotations" / f"{Path(name).stem}.xml"
        ET.ElementTree(root).write(xml_path, encoding="utf-8", xml_declaration=True)
    (out_dir / LABELS_TXT).write_text("".join(f"{c}\n" for c in classes), encoding="utf-8")
    return out_dir


def _add(parent: ET.Element, tag: str, text: str) -> ET.Element:
    element = ET.SubElement(parent, tag)
    element.text = text
    return element


def _add_regions(extra: ET.Element, text: str) -> None:
    """``<nuisance_regions>`` with one ``<region>`` per recorded region (none: no element;
    an empty record: an empty element, so "none recorded" and "no record" stay apart)."""
    if not text:
        return
    holder = ET.SubElement(extra, "nuisance_regions")
    for region in json.loads(text):
        item = ET.SubElement(holder, "region")
        _add(item, "kind", str(region["kind"]))
        x1, y1, x2, y2 = (float(v) for v in region["box"])
        bndbox = ET.SubElement(item, "bndbox")
        for tag, value in (("xmin", x1 + 1), ("ymin", y1 + 1), ("xmax", x2), ("ymax", y2)):
            _add(bndbox, tag, _number_text(value))
        _add(item, "area", str(int(region.get("area", 0))))


def _read_regions(extra: ET.Element | None, where: str) -> str:
    """The samples-table text of ``<nuisance_regions>`` ("" when absent)."""
    holder = None if extra is None else extra.find("nuisance_regions")
    if holder is None:
        return ""
    regions = []
    for item in holder.findall("region"):
        try:
            xmin, ymin, xmax, ymax = (float(item.findtext(f"bndbox/{tag}") or "")
                                      for tag in ("xmin", "ymin", "xmax", "ymax"))
            area = int(float(item.findtext("area") or 0))
        except ValueError as err:
            raise ValueError(f"{where}: a nuisance region needs a numeric bndbox") from err
        box = [int(v) if float(v).is_integer() else v for v in (xmin - 1, ymin - 1, xmax, ymax)]
        regions.append({"area": area, "box": box, "kind": item.findtext("kind") or ""})
    return json.dumps(regions, separators=(",", ":"), sort_keys=True)


def _depth(image: Path) -> int:
    with Image.open(image) as opened:  # header only: bands are known without decoding
        return len(opened.getbands())


def _number_text(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def _bool_text(value: bool) -> str:
    return "true" if value else "false"


def load_voc(out_dir: Path, *, missing_labels: str = "error", allow_outside: bool = False
             ) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Read a VOC folder: ``(samples, labels, classes)``.

    Classes come from ``labels.txt`` when present (then an unknown ``<name>`` is an error),
    else they are the sorted names found. Sizes missing from ``<size>`` are read from the
    image header. The ``split`` of a sample comes from its ``<pcbforge>`` element, else from
    ``ImageSets/Main/{train,val,test}.txt``. An image in ``JPEGImages`` without an XML file
    raises ``FileNotFoundError`` unless ``missing_labels="empty"`` (then it has no boxes);
    a box outside its image raises ``ValueError`` naming the XML file and object.

    Images are looked up in ``JPEGImages``: a ``<filename>`` that leads out of it (``..``,
    an absolute name, a link leading out; links among the images too) raises
    ``PathOutsideRootError`` naming ``file:line``, unless ``allow_outside``.
    """
    check_missing_labels(missing_labels)
    out_dir = Path(out_dir)
    annotations_dir = out_dir / "Annotations"
    if not annotations_dir.is_dir():
        raise FileNotFoundError(f"{annotations_dir}: not found; is {out_dir} a VOC dataset?")
    labels_txt = out_dir / LABELS_TXT
    classes = ([line.strip() for line in
                read_label_text(labels_txt, "VOC class list").splitlines() if line.strip()]
               if labels_txt.exists() else None)
    listed = _image_sets(out_dir)
    samples, rows = [], []
    for xml_path in sorted(annotations_dir.glob("*.xml")):
        sample, boxes = _read_annotation(xml_path, out_dir, classes, allow_outside)
        sample["split"] = sample["split"] or listed.get(xml_path.stem, "")
        samples.append(sample)
        rows.extend(boxes)
    described = {Path(s["file"]).name for s in samples}
    images_dir = out_dir / "JPEGImages"
    unlabelled = sorted(p for p in images_dir.glob("*") if p.is_file()
                        and p.name not in described) if images_dir.is_dir() else []
    if unlabelled and missing_labels == "error":
        raise FileNotFoundError(
            f"{annotations_dir / (unlabelled[0].stem + '.xml')}: label file of {unlabelled[0]} "
            f"not found ({len(unlabelled)} images have none; to read them as images with no "
            f"defects, allow missing labels)")
    for image in unlabelled:
        inside_root(images_dir, image.name, str(image), allow_outside=allow_outside)
        width, height = read_image_size(image)
        samples.append({"sample_id": sample_id_for(image.name, "voc"), "id_given": False,
                        "path": image.name, "file": str(image), "width": width,
                        "height": height, "split": listed.get(image.stem, ""),
                        "synthetic": False, "nuisance_regions": ""})
    if classes is None:
        classes = sorted({row["label"] for row in rows})
    return (pd.DataFrame(samples, columns=[*SAMPLE_COLUMNS, "nuisance_regions"]),
            labels_frame(rows), classes)


def _read_annotation(xml_path: Path, out_dir: Path, classes: list[str] | None,
                     allow_outside: bool) -> tuple[dict, list[dict]]:
    data = read_label_bytes(xml_path, "VOC annotation file")
    try:
        root = ET.fromstring(data)  # bytes: the XML declaration's encoding is honoured
    except ET.ParseError as err:
        line = err.position[0]
        raise ValueError(f"{xml_path}:{line}: not valid XML ({err})") from err
    if root.tag != "annotation":
        raise ValueError(f"{xml_path}: root element is <{root.tag}>, expected <annotation>")
    name = (root.findtext("filename") or "").strip() or f"{xml_path.stem}.jpg"
    images_dir = out_dir / "JPEGImages"
    # ElementTree keeps no line numbers; the first <filename> tag is the one findtext read.
    line = data[:data.find(b"<filename")].count(b"\n") + 1 if b"<filename" in data else 0
    image = inside_root(images_dir, name, f"{xml_path}:{line}: filename",
                        allow_outside=allow_outside)
    extra = root.find("pcbforge")
    width = _int_or_zero(root.findtext("size/width"))
    height = _int_or_zero(root.findtext("size/height"))
    if not (width and height):
        width, height = read_image_size(image)
    path = _extra_text(extra, "path") or name
    given = _extra_text(extra, "sample_id")
    sample_id = given or sample_id_for(name, "voc")
    sample = {"sample_id": sample_id, "id_given": bool(given), "path": path,
              "file": str(images_dir / name), "width": width, "height": height,
              "split": _extra_text(extra, "split"),
              "synthetic": _extra_text(extra, "synthetic") == "true",
              "nuisance_regions": _read_regions(extra, str(xml_path))}
    boxes = []
    for number, item in enumerate(root.findall("object"), start=1):
        where = f"{xml_path}: object {number}"
        label = (item.findtext("name") or "").strip()
        if not label:
            raise ValueError(f"{where}: has no <name>")
        if classes is not None and label not in classes:
            raise ValueError(f"{where}: class {label!r} is not in {out_dir / LABELS_TXT} "
                             f"({classes})")
        corners = []
        for tag in ("xmin", "ymin", "xmax", "ymax"):
            text = item.findtext(f"bndbox/{tag}")
            if text is None:
                raise ValueError(f"{where}: has no <bndbox><{tag}> (expected xmin, ymin, "
                                 f"xmax and ymax)")
            try:
                corners.append(float(text))
            except ValueError as err:
                raise ValueError(f"{where}: bndbox {tag} is {text.strip()!r}, not a "
                                 f"number") from err
        xmin, ymin, xmax, ymax = corners
        x1, y1, x2, y2 = box_inside(f"{where} ({name})", (xmin - 1, ymin - 1, xmax, ymax),
                                    width, height)
        box_extra = item.find("pcbforge")
        boxes.append({"sample_id": sample_id, "label": label, "x1": x1, "y1": y1, "x2": x2,
                      "y2": y2, "mask": _extra_text(box_extra, "mask"),
                      "synthetic": _extra_text(box_extra, "synthetic") == "true",
                      "params": _extra_text(box_extra, "params")})
    return sample, boxes


def _image_sets(out_dir: Path) -> dict[str, str]:
    """Image stem -> split, from ``ImageSets/Main/<split>.txt`` (``trainval`` is train)."""
    listed: dict[str, str] = {}
    for name, split in (("trainval", "train"), ("train", "train"), ("val", "val"),
                        ("test", "test")):
        path = out_dir / "ImageSets" / "Main" / f"{name}.txt"
        if path.exists():
            for line in read_label_text(path, "VOC image set list").splitlines():
                if line.split():
                    listed[line.split()[0]] = split
    return listed


def _extra_text(element: ET.Element | None, tag: str) -> str:
    if element is None:
        return ""
    return element.findtext(tag) or ""


def _int_or_zero(text: str | None) -> int:
    """A positive size from ``<size>``; 0 when missing, not a number or not positive."""
    try:
        return max(int(float(text)), 0)
    except (TypeError, ValueError, OverflowError):
        return 0


# --- the format: discovery, load and save as an import and an export use them -------------


def discover_voc(src: Path) -> list[SourcePart]:
    """The VOC folders of a source: ``src`` itself when it has ``Annotations/``, else each
    of its split folders that has one."""
    return split_folders(Path(src), lambda f: (f / "Annotations").is_dir(), "Annotations/")


def _load_part(part: SourcePart, options: ReadOptions):
    return load_voc(part.path, missing_labels=options.missing_labels,
                    allow_outside=options.allow_outside)


def _save_part(samples: pd.DataFrame, labels: pd.DataFrame, classes: list[str],
               image_root: Path, out: Path, split: str) -> dict[str, int]:
    save_voc(samples, labels, classes, image_root, out / (split or "all"))
    return part_counts(samples, labels)


FORMAT = LabelFormat(
    name="voc",
    help="Pascal VOC XML annotations",
    source_help="VOC folder with Annotations/ and JPEGImages/ (or split folders each "
                "holding one).",
    discover=discover_voc, load=_load_part, save=_save_part,
    options=frozenset({"missing_labels"}),
)


__all__ = ["FORMAT", "LABELS_TXT", "discover_voc", "load_voc", "save_voc"]
