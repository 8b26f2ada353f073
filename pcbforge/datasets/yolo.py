"""YOLO (Ultralytics / YOLOv5 layout) export and import.

Layout, one split per :func:`save_yolo` call (FiftyOne's ``YOLOv5Dataset`` reads it)::

    OUT/
      data.yaml                 path, <split>: ./images/<split>/, names {0: name, ...}, nc
      dataset.yaml              the same text: FiftyOne looks for this name by default
      images/<split>/<file>     image copies, nested paths flattened ("a/b.png" -> "a__b.png")
      labels/<split>/<stem>.txt one box a line: "cls cx cy w h" (normalised, %.8f); empty if none
      pcbforge_samples.json     split -> file -> sample_id, original path, per-box extras
                                (exact pixel box, synthetic, params, instance mask)
      templates/<split>/<stem>.<ext>  with ``--templates pair``: each tested image's
                                template, named as the image is (with the template's own
                                extension: a JPEG image may have a PNG template)

Box conventions: pcbforge boxes are float pixels ``x1, y1, x2, y2`` with ``x2``/``y2``
exclusive (width = x2 - x1). YOLO stores the centre and size divided by the image width
and height: ``cx = (x1 + x2) / 2 / W``, ``w = (x2 - x1) / W``. With 8 decimals a coordinate
is quantised to about ``W * 5e-9`` px; the side file keeps the exact pixel boxes, and they are
used on reading whenever the text line still agrees with them to that precision (an edited
line wins over the side file).

Loaded sample paths are the original ``path`` values when the side file names them, otherwise
the flattened file name (relative to ``OUT/images/<split>/``). An image with a file of the
same stem under ``templates/<split>/`` is paired with it (:data:`TEMPLATE_COLUMNS`): each
tested image has its own copy, so a template shared by several images is several files,
and no template sample id is read back.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import yaml

from pcbforge.core.files import PathOutsideRootError, resolve_inside, write_bytes
from pcbforge.datasets.dataset import image_file, sample_id_for
from pcbforge.datasets.formats_common import (
    MAX_JSON_FILE_BYTES,
    SAMPLE_COLUMNS,
    SPLIT_NAMES,
    TEMPLATE_COLUMNS,
    LabelFormat,
    ReadOptions,
    SourcePart,
    TemplateMode,
    box_inside,
    boxes_by_sample,
    check_missing_labels,
    copy_image,
    flat_file_names,
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
    split_suffix,
    text_value,
)

SIDECAR = "pcbforge_samples.json"
#: The folder beside ``images/`` that holds each tested image's template (``pair`` mode).
TEMPLATES = "templates"
YAML_NAMES = ("data.yaml", "dataset.yaml")
_DECIMALS = 8


def save_yolo(samples: pd.DataFrame, labels: pd.DataFrame, classes: list[str],
              image_root: Path, out_dir: Path, split: str = "train") -> Path:
    """Write ``samples`` (and their boxes) as split ``split`` of the YOLO folder ``out_dir``.

    Other splits already in ``out_dir`` are kept, so call once per split; their class
    names must match. Returns ``out_dir``.
    """
    image_root, out_dir = Path(image_root), Path(out_dir)
    if not split or "/" in split:
        raise ValueError(f"split must be a plain folder name, got {split!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    grouped = boxes_by_sample(samples, labels, classes)
    index = {name: i for i, name in enumerate(classes)}
    images_dir, labels_dir = out_dir / "images" / split, out_dir / "labels" / split
    templates_dir = out_dir / TEMPLATES / split
    labels_dir.mkdir(parents=True, exist_ok=True)
    sidecar_split: dict[str, dict] = {}
    names = flat_file_names(samples["path"])
    for (_, sample), name in zip(samples.iterrows(), names, strict=True):
        source = image_file(image_root, str(sample["path"]))
        copy_image(source, images_dir / name)
        template = pair_template(sample, image_root)
        if template is not None:
            copy_image(template[1], templates_dir / (split_suffix(name)[0]
                                                     + split_suffix(template[0])[1]))
        width, height = sample_size(sample, source)
        boxes = grouped.get(str(sample["sample_id"]), labels.iloc[:0])
        lines, extras = [], []
        for box in boxes.itertuples(index=False):
            x1, y1, x2, y2 = (float(v) for v in (box.x1, box.y1, box.x2, box.y2))
            values = ((x1 + x2) / 2 / width, (y1 + y2) / 2 / height,
                      (x2 - x1) / width, (y2 - y1) / height)
            lines.append(f"{index[box.label]} " + " ".join(f"{v:.{_DECIMALS}f}" for v in values))
            extras.append({"label": box.label, "box": [x1, y1, x2, y2],
                           "synthetic": bool(box.synthetic), "params": text_value(box.params),
                           "mask": text_value(box.mask)})
        text = "\n".join(lines) + ("\n" if lines else "")  # no boxes: an empty file, not none
        (labels_dir / (split_suffix(name)[0] + ".txt")).write_text(text, encoding="utf-8")
        sidecar_split[name] = {
            "sample_id": str(sample["sample_id"]), "path": str(sample["path"]),
            "synthetic": sample_flag(sample), "boxes": extras,
            **({"template_path": template[0]} if template is not None else {}),
        }
    _write_yaml(out_dir, split, classes)
    sidecar = _read_sidecar(out_dir)
    sidecar.setdefault("splits", {})[split] = sidecar_split
    (out_dir / SIDECAR).write_text(json.dumps(sidecar, indent=1) + "\n", encoding="utf-8")
    return out_dir


def _write_yaml(out_dir: Path, split: str, classes: list[str]) -> None:
    config: dict = {}
    existing = out_dir / YAML_NAMES[0]
    if existing.exists():
        config = yaml.safe_load(read_label_text(existing, "YOLO data.yaml")) or {}
        old = _names(config.get("names"), existing)
        if old and old != list(classes):
            raise ValueError(f"{existing}: has classes {old}, cannot add split {split!r} "
                             f"with classes {list(classes)}")
    # An absolute `path`: Ultralytics resolves a relative one against its own datasets folder.
    config["path"] = str(out_dir.resolve())
    config[split] = f"./images/{split}/"
    config["nc"] = len(classes)
    config["names"] = dict(enumerate(classes))
    text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
    for name in YAML_NAMES:
        (out_dir / name).write_text(text, encoding="utf-8")


def _read_sidecar(out_dir: Path) -> dict:
    path = out_dir / SIDECAR
    if not path.exists():
        return {}
    try:
        return json.loads(read_label_text(path, "pcbforge side file", MAX_JSON_FILE_BYTES))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from err


def _names(names: object, where: Path) -> list[str]:
    """YOLO ``names`` as a list: a list, or a dict {0: name, ...} with indices 0..K-1."""
    if names is None:
        return []
    if isinstance(names, list):
        return [str(n) for n in names]
    if isinstance(names, dict):
        try:
            keyed = {int(k): str(v) for k, v in names.items()}
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: names keys must be class indices 0, 1, ..., got "
                             f"{list(names)!r:.80}") from err
        if sorted(keyed) != list(range(len(keyed))):
            raise ValueError(f"{where}: names indices must be 0..{len(keyed) - 1}, "
                             f"got {sorted(keyed)}")
        return [keyed[i] for i in range(len(keyed))]
    raise ValueError(f"{where}: names must be a list or a mapping, got {type(names).__name__}")


#: Keys of a YOLO data.yaml that are not splits.
_NOT_SPLITS = {"path", "nc", "names", "download", "kpt_shape", "flip_idx", "channels"}


def yaml_splits(out_dir: Path) -> list[str]:
    """The splits a YOLO folder's data.yaml names (``train``, ``val``, ``test``...)."""
    out_dir = Path(out_dir)
    yaml_path, config = _read_yaml(out_dir)
    splits = [key for key, value in config.items()
              if key not in _NOT_SPLITS and isinstance(value, str) and value]
    if not splits:
        raise ValueError(f"{yaml_path}: names no split folders (train: ..., val: ...)")
    return splits


def _read_yaml(out_dir: Path) -> tuple[Path, dict]:
    yaml_path, text = _yaml_text(out_dir)
    try:
        config = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{yaml_path}: not valid YAML ({err})") from err
    if not isinstance(config, dict):
        raise ValueError(f"{yaml_path}: not a YOLO data.yaml (expected a mapping of keys to "
                         f"values, got a {type(config).__name__})")
    return yaml_path, config


def _yaml_text(out_dir: Path) -> tuple[Path, str]:
    # exists(), not is_file(): a FIFO named data.yaml is refused by name, not "not found".
    yaml_path = next((out_dir / n for n in YAML_NAMES if (out_dir / n).exists()), None)
    if yaml_path is None:
        raise FileNotFoundError(f"{out_dir / YAML_NAMES[0]}: not found; is {out_dir} a YOLO "
                                f"dataset?")
    return yaml_path, read_label_text(yaml_path, "YOLO data.yaml")


def _key_line(yaml_path: Path, key: str) -> int:
    """The 1-based line of the top-level ``key`` in ``yaml_path`` (0 when not found)."""
    try:
        node = yaml.compose(read_label_text(yaml_path, "YOLO data.yaml"),
                            Loader=yaml.SafeLoader)
    except (yaml.YAMLError, ValueError, OSError):
        return 0
    for key_node, _ in getattr(node, "value", []) if isinstance(node, yaml.MappingNode) else []:
        if getattr(key_node, "value", None) == key:
            return key_node.start_mark.line + 1
    return 0


def load_yolo(out_dir: Path, split: str = "train", *, missing_labels: str = "error",
              allow_outside: bool = False) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Read split ``split`` of a YOLO folder: ``(samples, labels, classes)``.

    Every image in ``images/<split>/`` is a sample; an image with no boxes has an empty label
    file. A missing label file raises ``FileNotFoundError`` unless ``missing_labels="empty"``
    (Ultralytics' reading: a background image), because a lost ``labels`` folder would
    otherwise turn every defect image into a defect-free one. Boxes are turned back into
    pixels with the size from each image's header. A malformed line, a class index out of
    range or a box outside the image raises ``ValueError`` naming ``file:line``.

    The split folder and every image (links followed) must stay inside ``out_dir``: a
    split named as ``../elsewhere`` or an absolute folder in data.yaml, or an image that is
    a link leading out, raises ``PathOutsideRootError``, unless ``allow_outside``.
    """
    check_missing_labels(missing_labels)
    out_dir = Path(out_dir)
    yaml_path, config = _read_yaml(out_dir)
    classes = _names(config.get("names"), yaml_path)
    if split not in config:
        raise ValueError(f"{yaml_path}: no split {split!r} (has "
                         f"{[k for k in config if k not in _NOT_SPLITS]})")
    if not isinstance(config[split], str) or not config[split]:
        raise ValueError(f"{yaml_path}:{_key_line(yaml_path, split)}: split {split!r} must "
                         f"name one folder, got {config[split]!r:.80}")
    # The split folder is taken relative to this folder, not `path`, so a moved export loads.
    root = out_dir.resolve()
    try:
        images_dir = resolve_inside(root, config[split], allow_outside=allow_outside)
    except PathOutsideRootError as err:
        raise PathOutsideRootError(f"{yaml_path}:{_key_line(yaml_path, split)}: split "
                                   f"{split!r}: {err}") from err
    if not images_dir.is_dir():
        raise FileNotFoundError(f"{yaml_path}: split {split!r} folder {images_dir} not found")
    labels_dir = _sibling_dir(images_dir, "labels")
    templates = _templates_by_stem(_sibling_dir(images_dir, TEMPLATES), root, allow_outside)
    known = _read_sidecar(out_dir).get("splits", {}).get(split, {})
    samples, rows = [], []
    for image in sorted(p for p in images_dir.rglob("*") if p.is_file()):
        name = image.relative_to(images_dir).as_posix()
        if not allow_outside:  # a link under images/ may lead anywhere
            inside_root(root, image.relative_to(root).as_posix(), str(image),
                        allow_outside=False)
        width, height = read_image_size(image)
        extra = known.get(name, {})
        path = extra.get("path", name)
        given = str(extra.get("sample_id") or "")
        sample_id = given or sample_id_for(f"{split}/{name}", "yolo")
        template = templates.get(split_suffix(name)[0])
        samples.append({"sample_id": sample_id, "id_given": bool(given), "path": path,
                        "file": str(image), "width": width, "height": height,
                        # data.yaml's key as pcbforge names it (valid -> val); another
                        # key (a labelling batch, a "holdout") is no split of pcbforge's.
                        "split": SPLIT_NAMES.get(split.lower(), ""),
                        "synthetic": bool(extra.get("synthetic", False)),
                        "template_path": (str(extra.get("template_path") or template[0])
                                          if template else ""),
                        "template_file": str(template[1]) if template else "",
                        "template_id": ""})
        txt = labels_dir / (split_suffix(name)[0] + ".txt")
        if txt.exists():  # not is_file(): a FIFO or device is refused by name, not skipped
            boxes = _read_label_file(txt, classes, width, height)
            rows.extend(_with_extras(boxes, extra.get("boxes", []), sample_id, width, height))
        elif missing_labels == "error":
            raise FileNotFoundError(
                f"{txt}: label file of {image} not found (an image with no defects has an "
                f"empty one; to read missing files as no defects, allow missing labels)")
    return (pd.DataFrame(samples, columns=[*SAMPLE_COLUMNS, *TEMPLATE_COLUMNS]),
            labels_frame(rows), classes)


def _sibling_dir(images_dir: Path, kind: str) -> Path:
    """The folder YOLO pairs with an image folder: its last ``images`` part -> ``kind``
    (``labels``, ``templates``)."""
    parts = list(images_dir.parts)
    if "images" not in parts:
        raise ValueError(f"{images_dir}: YOLO image folders must contain an 'images' part")
    at = len(parts) - 1 - parts[::-1].index("images")
    parts[at] = kind
    return Path(*parts)


def _templates_by_stem(folder: Path, root: Path, allow_outside: bool
                       ) -> dict[str, tuple[str, Path]]:
    """The template files under ``folder`` (a split's ``templates/`` folder; none when it
    is not there) by their path without extension: ``(relative name, file)``. A link
    leading out of ``root`` raises as an image's does."""
    if not folder.is_dir():
        return {}
    found = {}
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        if not allow_outside:
            inside_root(root, file.relative_to(root).as_posix(), str(file),
                        allow_outside=False)
        name = file.relative_to(folder).as_posix()
        stem = split_suffix(name)[0]
        if stem in found:
            raise ValueError(f"{file}: a second template for the image {stem!r} (also "
                             f"{found[stem][1].name}); keep one")
        found[stem] = (name, file)
    return found


def _read_label_file(txt: Path, classes: list[str], width: int,
                     height: int) -> list[tuple[str, float, float, float, float]]:
    boxes = []
    for number, raw in enumerate(read_label_text(txt, "YOLO label file").splitlines(),
                                 start=1):
        fields = raw.split()
        if not fields:
            continue
        where = f"{txt}:{number}"
        if len(fields) != 5:
            # Segment lines ("cls x1 y1 x2 y2 ...") are not read yet: saying so beats guessing.
            raise ValueError(f"{where}: expected 'class cx cy w h', got {raw.strip()!r}")
        try:
            index = int(fields[0])
            cx, cy, w, h = (float(f) for f in fields[1:])
        except ValueError as err:
            raise ValueError(f"{where}: not numbers: {raw.strip()!r}") from err
        if not 0 <= index < len(classes):
            raise ValueError(f"{where}: class index {index} out of range "
                             f"(names has {len(classes)} classes)")
        if not all(math.isfinite(v) for v in (cx, cy, w, h)) or w <= 0 or h <= 0:
            raise ValueError(f"{where}: box {raw.strip()!r} has a value that is not a finite "
                             f"number or a width/height <= 0")
        corners = ((cx - w / 2) * width, (cy - h / 2) * height,
                   (cx + w / 2) * width, (cy + h / 2) * height)
        boxes.append((classes[index], *box_inside(where, corners, width, height)))
    return boxes


def _with_extras(boxes: list[tuple], extras: list[dict], sample_id: str, width: int,
                 height: int) -> list[dict]:
    """Label rows; a box that still matches its side-file entry (same line order, class and
    position to the text's precision) gets that entry's exact pixels and extras."""
    rows = []
    for i, (label, *coords) in enumerate(boxes):
        row = {"sample_id": sample_id, "label": label, "mask": "", "synthetic": False,
               "params": ""}
        extra = extras[i] if i < len(extras) else None
        if extra and extra.get("label") == label and _same_box(coords, extra.get("box"),
                                                               width, height):
            coords = [float(v) for v in extra["box"]]
            row.update(synthetic=bool(extra.get("synthetic", False)),
                       params=str(extra.get("params", "")), mask=str(extra.get("mask", "")))
        row.update(zip(("x1", "y1", "x2", "y2"), coords, strict=True))
        rows.append(row)
    return rows


def _same_box(coords: list[float], exact: object, width: int, height: int) -> bool:
    if not isinstance(exact, list) or len(exact) != 4:
        return False
    # Each of cx and w is rounded by half a unit of the last decimal: x1 = cx - w/2 moves by
    # at most 0.75 unit; one full unit (times the size) leaves room for float error.
    unit = 10.0 ** -_DECIMALS
    scales = (width, height, width, height)
    return all(abs(a - float(b)) <= unit * s + 1e-9 for a, b, s in zip(coords, exact, scales,
                                                                        strict=True))


# --- the format: discovery, load and save as an import and an export use them -------------


def discover_yolo(src: Path) -> list[SourcePart]:
    """One part per split the source's data.yaml names (``FileNotFoundError`` without one);
    the part's ``key`` is the yaml's name for it, its ``split`` pcbforge's (``valid`` ->
    ``val``)."""
    src = Path(src)
    return [SourcePart(src, SPLIT_NAMES.get(key, ""), key) for key in yaml_splits(src)]


def _load_part(part: SourcePart, options: ReadOptions):
    return load_yolo(part.path, part.key, missing_labels=options.missing_labels,
                     allow_outside=options.allow_outside)


def _save_part(samples: pd.DataFrame, labels: pd.DataFrame, classes: list[str],
               image_root: Path, out: Path, split: str) -> dict[str, int]:
    save_yolo(samples, labels, classes, image_root, out, split=split or "train")
    counts = part_counts(samples, labels)
    return {**counts, **pair_counts(samples)} if pairs_asked(samples) else counts


def point_yaml_at(folder: Path, final: Path) -> None:
    """The YOLO config in ``folder`` names ``folder`` as its absolute ``path``: point it at
    ``final``, the folder it becomes (Ultralytics resolves a relative path elsewhere)."""
    for name in YAML_NAMES:
        config_path = Path(folder) / name
        if config_path.is_file():
            config = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
            config["path"] = str(final)
            text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
            write_bytes(config_path, text.encode("utf-8"))


FORMAT = LabelFormat(
    name="yolo",
    help="a YOLO (Ultralytics) detection folder, every split its data.yaml names",
    source_help="YOLO folder with data.yaml, images/<split>/ and labels/<split>/.",
    discover=discover_yolo, load=_load_part, save=_save_part, finish=point_yaml_at,
    options=frozenset({"missing_labels"}),
    templates=frozenset(mode.value for mode in TemplateMode),
)


__all__ = ["FORMAT", "discover_yolo", "load_yolo", "point_yaml_at", "save_yolo", "yaml_splits"]
