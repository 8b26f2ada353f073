"""FiftyOne -> pcbforge: :func:`from_fiftyone` writes the labels and tags edited in the
App (or through FiftyOne's Python API) back into a pcbforge dataset, and the reviewer's
``accept``/``reject`` tags on ``pcbforge qa``'s proposals into ``qa_decisions.csv``."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pandas as pd

from pcbforge import __version__
from pcbforge.core.files import atomic_write, write_json
from pcbforge.core.output import staged_output
from pcbforge.datasets.dataset import (
    Dataset,
    DatasetError,
    DatasetInfo,
    empty_labels,
    load,
    read_info,
    save,
    validate,
)
from pcbforge.datasets.fiftyone.fields import (
    KEY_FIELD,
    LABEL_FIELD,
    SPLIT_TAGS,
    full_mask,
    image_size_of,
    parse_tags,
    text_column,
)
from pcbforge.datasets.fiftyone.library import import_fiftyone
from pcbforge.datasets.formats_common import BORDER_SLACK_PX
from pcbforge.datasets.qa_tables import ACCEPT, DECISIONS_CSV, REJECT
from pcbforge.datasets.samples import SAMPLES_PARQUET, image_sizes

#: Written into the output folder by :func:`from_fiftyone`.
FROM_FIFTYONE_REPORT = "from_fiftyone_report.json"
#: The decision on a proposal tagged both ``accept`` and ``reject`` (not accepted).
CONFLICT = "conflict"
#: The columns of ``qa_decisions.csv``, one row per tagged proposal.
DECISION_COLUMNS = ("finding_id", "sample_id", "kind", "action", "decision")


def from_fiftyone(name: str, out: Path | str, *, label_field: str | None = None) -> dict:
    """Write the labels and tags of the FiftyOne dataset ``name`` (made by
    :func:`to_fiftyone`) into a pcbforge dataset at ``out``; return the report (also
    written to ``out/from_fiftyone_report.json``).

    Boxes (class, position, added and deleted ones, masks) replace the labels of each
    sample that is in FiftyOne; sample tags other than split names go to the ``tags``
    column (comma-separated, e.g. ``bad_label``), tags on boxes to ``label_tags``. Every
    other column comes from the source dataset unchanged; samples missing from FiftyOne
    keep their labels. When the FiftyOne dataset shows ``pcbforge qa``'s proposals, each
    one tagged ``accept`` or ``reject`` is a row of ``out/qa_decisions.csv``
    (:data:`DECISION_COLUMNS`, sorted by finding id; tagged both: ``conflict``, not
    accepted) and the report counts them under ``qa_decisions``; proposals never become
    labels. ``out`` is the source dataset folder (its tables are replaced, the
    folder swapped in whole), a new folder (its ``image_root`` points at the source
    images) or an earlier output of this function for the same source; either way the
    output is built in a hidden stage and swapped in under its writer lock
    (:func:`pcbforge.core.staged_output`). Images are never written.
    """
    fo = import_fiftyone()
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
    _take_tags(samples, in_fiftyone, tags, found)

    info = source.info.model_copy(deep=True)
    info.provenance.append({"step": "from_fiftyone", "fiftyone_dataset": name,
                            "source": str(source.root.resolve()),
                            "pcbforge_version": __version__})
    report = _write_back_report(name, source, samples, labels, in_fiftyone, ignored, out)
    decisions = _qa_decisions(fo_dataset, meta.get("proposals_field"), known)
    if decisions is not None:
        report["qa_decisions"] = _decision_counts(decisions)
    _write_result(source, out, samples, labels, info, report, decisions)
    return report


def _qa_decisions(fo_dataset, field: str | None, known: set[str]) -> pd.DataFrame | None:
    """One row per proposal of ``field`` (of a sample of the source) tagged ``accept`` or
    ``reject``, sorted by finding id; ``None`` when FiftyOne shows no proposals."""
    if not field or field not in fo_dataset.get_field_schema():
        return None
    paths = [KEY_FIELD] + [f"{field}.detections.{a}" for a in ("finding_id", "kind", "action",
                                                               "tags")]
    marks: dict[str, tuple[str, str, str, set[str]]] = {}
    for key, *columns in zip(*fo_dataset.values(paths), strict=True):
        if key not in known:
            continue
        for finding, kind, action, tags in zip(*(c or [] for c in columns), strict=True):
            chosen = {ACCEPT, REJECT} & set(tags or [])
            if finding and chosen:
                marks.setdefault(finding, (key, kind or "", action or "", set()))[3].update(
                    chosen)
    rows = [(finding, key, kind, action, next(iter(chosen)) if len(chosen) == 1 else CONFLICT)
            for finding, (key, kind, action, chosen) in sorted(marks.items())]
    return pd.DataFrame(rows, columns=list(DECISION_COLUMNS), dtype=object)


def _decision_counts(decisions: pd.DataFrame) -> dict[str, int]:
    return {decision: int((decisions["decision"] == decision).sum())
            for decision in (ACCEPT, REJECT, CONFLICT)}


def _take_tags(samples: pd.DataFrame, in_fiftyone: pd.Series, tags: dict,
               found: dict) -> None:
    """Set the ``tags`` (sample tags but split names) and ``label_tags`` (tags on boxes)
    columns of the samples FiftyOne holds; the others keep theirs."""
    old_tags = text_column(samples, "tags")
    samples["tags"] = [",".join(_without_splits(tags[key])) if seen else old
                       for key, seen, old in zip(samples["sample_id"], in_fiftyone, old_tags,
                                                 strict=True)]
    old_label_tags = text_column(samples, "label_tags")
    samples["label_tags"] = [
        ",".join(sorted({t for d in (found[key] or []) for t in (d.tags or [])}))
        if seen else old
        for key, seen, old in zip(samples["sample_id"], in_fiftyone, old_label_tags,
                                  strict=True)]


def _write_result(source: Dataset, out: Path, samples: pd.DataFrame, labels: pd.DataFrame,
                  info: DatasetInfo, report: dict, decisions: pd.DataFrame | None) -> None:
    """Write the new tables, the report and the qa decisions (if any): into the source
    folder (a staged hard-link copy of it) or into ``out`` (its ``image_root`` pointing at
    the source images)."""
    if out.exists() and out.resolve() == source.root.resolve():
        result = Dataset(source.root, samples, labels, info)
        validate(result)  # before the folder is locked and copied
        # A hard-link copy of the source with its tables replaced, swapped in whole: the
        # images are not touched, and a kill leaves the old tables or the new ones.
        with staged_output(source.root, command="view --from-fiftyone", clone=True) as stage:
            _write_stage(stage, result, report, decisions)
        return
    info.image_root = str(source.image_root.resolve())
    result = Dataset(out, samples, labels, info)
    validate(result)
    with staged_output(out, command="view --from-fiftyone") as stage:
        _check_out(out, source.root.resolve())  # again, under the lock
        _write_stage(stage, result, report, decisions)


def _write_stage(stage: Path, result: Dataset, report: dict,
                 decisions: pd.DataFrame | None) -> None:
    save(result, stage)
    write_json(stage / FROM_FIFTYONE_REPORT, report)
    if decisions is not None:
        # "\n" whatever the platform: the same tags give the same bytes.
        atomic_write(stage / DECISIONS_CSV,
                     lambda tmp: decisions.to_csv(tmp, index=False, lineterminator="\n"))


def _without_splits(tags: list[str] | None) -> list[str]:
    return sorted({t for t in (tags or []) if t not in SPLIT_TAGS})


def _labels_from_fiftyone(source: Dataset, samples: pd.DataFrame, found: dict, paths: dict,
                          label_field: str) -> pd.DataFrame:
    """The labels table: FiftyOne's boxes for samples it holds, the source's for others."""
    sizes = image_sizes(samples)
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
        width, height = image_size_of(source, sizes, sample)
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

