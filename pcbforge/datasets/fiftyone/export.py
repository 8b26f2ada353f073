"""pcbforge -> FiftyOne: :func:`to_fiftyone` loads a dataset folder into a persistent
FiftyOne dataset and saves its views.

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
- **Background nuisance**: a synthetic tested image's ``nuisance_regions`` (thick changes
  that are not defects) also as ``nuisance`` :class:`~fiftyone.core.labels.Detections`,
  label = the region's kind, with its ``area``, so the App draws them beside the defects;
  the column itself is kept as a text field, and ``from_fiftyone`` takes it from the
  source dataset unchanged.
- **Saved views** ``train``, ``val``, ``test``, ``synthetic``, ``real``, ``duplicates``
  (each kept image followed by its copies), ``corrupt_or_low_quality``, then
  ``class-<name>`` per defect class (samples with at least one such box), rebuilt on
  every run; :func:`table_view_counts` computes the same counts from the tables.
- **qa proposals**, when the folder has ``qa.parquet`` (written by ``pcbforge qa``): a
  ``qa_proposals`` :class:`~fiftyone.core.labels.Detections` field, one detection per
  finding of the sample, drawn at the proposed box (or, when the correction proposes no
  box, where the finding is; a finding with neither, or on an image of unknown size, covers
  the whole image), labelled with the proposed class (or the kind), carrying
  ``finding_id``, ``kind``, ``detail``, ``action``, ``score``, ``reason`` and ``box_label``
  (the class of the box it is about). A reviewer tags each ``accept`` or ``reject``;
  :func:`~pcbforge.datasets.fiftyone.write_back.from_fiftyone` brings the tags back. A
  re-run replaces the proposals with the table's (the tags of findings still there are
  kept: finding ids are stable) and saves a ``qa_<kind>`` view per kind present (samples
  with such a finding, its proposals only). Without ``qa.parquet`` (or with one that
  cannot be read: a warning) the field and those views go.
- **Evaluations** kept by ``pcbforge evaluate`` in ``evaluations/NAME/``: an
  ``eval_<NAME>`` Detections field (each prediction with its outcome, each missed box),
  the summary in ``info["evaluations"][NAME]`` and ``eval_<NAME>_fp_<class>``,
  ``eval_<NAME>_fn_<class>`` and ``eval_<NAME>_low_conf_tp`` views, after qa's
  (:mod:`.evaluations`). An evaluation gone from the folder takes its field and views
  with it; one that cannot be read is a warning.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from pcbforge import __version__
from pcbforge.datasets.dataset import Dataset, DatasetError, load, read_table
from pcbforge.datasets.fiftyone.evaluations import (
    evaluation_info,
    evaluation_view_counts,
    evaluation_views,
    load_evaluations,
    set_evaluations,
)
from pcbforge.datasets.fiftyone.fields import (
    CLASS_VIEW_PREFIX,
    KEY_FIELD,
    LABEL_FIELD,
    NUISANCE_FIELD,
    SPLIT_TAGS,
    TEMPLATE_FIELD,
    box_mask,
    class_names,
    duplicate_clusters,
    ensure_detections_field,
    field_name,
    finite,
    image_size_of,
    parse_tags,
    relative_box,
    text_column,
)
from pcbforge.datasets.fiftyone.library import import_fiftyone
from pcbforge.datasets.fiftyone.media import display_file, display_files
from pcbforge.datasets.formats_common import text_value
from pcbforge.datasets.qa_tables import FINDING_COLUMNS, KINDS, PROPOSALS_FIELD, QA_PARQUET
from pcbforge.datasets.samples import image_sizes

logger = logging.getLogger(__name__)

#: Columns that every FiftyOne dataset made here has, with their value when missing.
_ALWAYS = {"status": "ok", "reason": "", "detail": "", "group": "", "split": "",
           "synthetic": False, "duplicate_of": "", "template_path": ""}
#: Saved views of qa's findings: ``qa_<kind>``, one per kind present.
QA_VIEW_PREFIX = "qa_"
#: App sidebar group of pcbforge's fields, after the labels (missing fields are left out).
_SIDEBAR = {
    "pcbforge": ("status", "reason", "detail", "split", "synthetic", "group", "duplicate_of",
                 "duplicate_cluster", "role", "source", "template_path", "template_id",
                 KEY_FIELD, "path"),
}


def table_view_counts(dataset: Dataset) -> dict[str, int]:
    """Samples in each saved view, computed from the samples and labels tables (and qa's
    findings table, when there is one) alone: what the FiftyOne views must show."""
    samples, labels = dataset.samples, dataset.labels
    split = text_column(samples, "split")
    status = text_column(samples, "status")
    synthetic = samples["synthetic"].fillna(False).astype(bool)
    counts = {name: int((split == name).sum()) for name in SPLIT_TAGS}
    counts["synthetic"] = int(synthetic.sum())
    counts["real"] = int((~synthetic).sum())
    counts["duplicates"] = int((duplicate_clusters(samples) != "").sum())
    counts["corrupt_or_low_quality"] = int(status.isin(["corrupt", "low_quality"]).sum())
    known = labels[labels["sample_id"].isin(set(samples["sample_id"]))]
    for name in class_names(dataset):
        counts[CLASS_VIEW_PREFIX + name] = int(known.loc[known["label"] == name,
                                                         "sample_id"].nunique())
    findings, _ = qa_findings(dataset)
    if findings is not None:
        for kind in finding_kinds(findings):
            counts[QA_VIEW_PREFIX + kind] = int(
                findings.loc[findings["kind"] == kind, "sample_id"].nunique())
    evaluations, _ = load_evaluations(dataset, _sample_field_names(dataset, LABEL_FIELD))
    counts.update(evaluation_view_counts(evaluations))
    return counts


def _sample_field_names(dataset: Dataset, label_field: str) -> set[str]:
    """The fields of the samples table's columns and the label field: names an
    evaluation's field must not take."""
    return {field_name(str(c)) for c in dataset.samples.columns} | {label_field}


def qa_findings(dataset: Dataset) -> tuple[pd.DataFrame | None, str]:
    """The findings of ``pcbforge qa`` (``qa.parquet``) on the dataset's samples, and a
    line saying what was left out and why ("" when nothing was). ``None``: no table, or
    one that cannot be read (that line says so); viewing goes on without proposals."""
    path = dataset.root / QA_PARQUET
    if not path.exists():
        return None, ""
    try:
        findings = read_table(path, FINDING_COLUMNS)
    except (DatasetError, OSError) as err:
        return None, f"qa proposals not shown: {err}"
    findings = findings.assign(sample_id=findings["sample_id"].astype(str),
                               kind=findings["kind"].fillna("").astype(str))
    known = findings["sample_id"].isin(set(dataset.samples["sample_id"].astype(str)))
    if known.all():
        return findings, ""
    return findings[known], (f"{path}: {int((~known).sum())} findings are about samples that "
                             f"are not in the dataset (not shown); run pcbforge qa again")


def finding_kinds(findings: pd.DataFrame) -> list[str]:
    """The kinds present in ``findings``, in ``pcbforge qa``'s order (others after, sorted)."""
    present = set(findings["kind"]) - {""}
    return [k for k in KINDS if k in present] + sorted(present - set(KINDS))


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
    fo = import_fiftyone()
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
    findings, problem = qa_findings(dataset)
    if problem:
        logger.warning("%s", problem)
    proposals = _set_proposals(fo, fo_dataset, dataset, samples, ids, findings,
                               old_meta.get("proposals_field"))
    if "nuisance_regions" in samples.columns:
        _ensure_label_schema(fo, fo_dataset, NUISANCE_FIELD, (("area", fo.IntField),))
        fo_dataset.set_values(NUISANCE_FIELD,
                              dict(zip(ids, _nuisance_detections(fo, dataset, samples),
                                       strict=True)), key_field=KEY_FIELD)
    evaluations, problems = load_evaluations(dataset, _sample_field_names(dataset, label_field))
    for problem in problems:
        logger.warning("%s", problem)
    evaluation_fields = set_evaluations(fo, fo_dataset, dataset, samples, ids, evaluations,
                                        old_meta.get("evaluation_fields") or {}, KEY_FIELD)
    if outside:
        logger.warning("%d instance masks have pixels outside their box; FiftyOne shows masks "
                       "inside boxes only", outside)

    classes = class_names(dataset)
    fo_dataset.default_classes = classes
    fo_dataset.classes = {label_field: classes}
    _configure_app(fo, fo_dataset)
    qa_views = {QA_VIEW_PREFIX + kind: kind for kind in
                (finding_kinds(findings) if findings is not None else [])}
    views = _save_views(fo, fo_dataset, label_field, classes, old_meta.get("views", []),
                        proposals, qa_views, evaluation_views(fo_dataset, evaluations))
    fo_dataset.info["pcbforge"] = {
        "root": str(root), "image_root": str(dataset.image_root.resolve()),
        "label_field": label_field, "classes": classes, "views": views, "fields": fields,
        "proposals_field": proposals, "evaluation_fields": evaluation_fields,
        "mask_pixels_outside_boxes": outside, "pcbforge_version": __version__,
    }
    fo_dataset.info["evaluations"] = evaluation_info(evaluations)  # replaced: gone ones go
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
    template = text_column(samples, "template_path")
    shown = dict(zip(samples["path"].astype(str), filepaths, strict=True))
    columns[TEMPLATE_FIELD] = template.map(  # a template's own row says how it is shown
        lambda path: (shown.get(path) or display_file(dataset, path)) if path else None)
    id_of_path = dict(zip(samples["path"].astype(str), samples["sample_id"], strict=True))
    columns["template_id"] = template.map(lambda path: id_of_path.get(path))
    columns["duplicate_cluster"] = duplicate_clusters(samples)
    return columns


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
    split = text_column(samples, "split").tolist()
    extra = [parse_tags(t) for t in text_column(samples, "tags")]
    tags = {}
    for key, own_split, more in zip(ids, split, extra, strict=True):
        kept = [t for t in (current.get(key) or []) if t not in SPLIT_TAGS]
        wanted = kept + [t for t in more if t not in kept and t not in SPLIT_TAGS]
        tags[key] = wanted + ([own_split] if own_split else [])
    fo_dataset.set_values("tags", tags, key_field=KEY_FIELD)


def _detections(fo, dataset: Dataset, samples: pd.DataFrame) -> tuple[list, int]:
    """One :class:`Detections` per sample (in ``samples`` order) and the number of mask
    pixels outside their boxes."""
    sizes = image_sizes(samples)
    by_sample = {key: rows for key, rows in dataset.labels.groupby("sample_id", sort=False)}
    out, outside = [], 0
    for _, sample in samples.iterrows():
        rows = by_sample.get(sample["sample_id"])
        if rows is None or not len(rows):
            out.append(fo.Detections(detections=[]))
            continue
        width, height = image_size_of(dataset, sizes, sample)
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
                label=str(box.label), bounding_box=relative_box(corners, width, height),
                synthetic=bool(box.synthetic), params=params, **extra,
            ))
        out.append(fo.Detections(detections=detections))
    return out, outside


def _nuisance_detections(fo, dataset: Dataset, samples: pd.DataFrame) -> list:
    """One :class:`Detections` of background nuisance regions per sample (``None`` for a
    sample that records none: a template, a real image)."""
    sizes = image_sizes(samples)
    out = []
    for _, sample in samples.iterrows():
        text = text_value(sample.get("nuisance_regions", ""))
        if not text:
            out.append(None)
            continue
        width, height = image_size_of(dataset, sizes, sample)
        detections = []
        for region in json.loads(text):
            corners = tuple(float(v) for v in region["box"])
            detections.append(fo.Detection(
                label=str(region["kind"]), bounding_box=relative_box(corners, width, height),
                area=int(region.get("area", 0))))
        out.append(fo.Detections(detections=detections))
    return out


def _set_proposals(fo, fo_dataset, dataset: Dataset, samples: pd.DataFrame, ids: list[str],
                   findings: pd.DataFrame | None, previous: str | None) -> str | None:
    """Set qa's proposals field from ``findings`` (every sample's, replacing the last
    run's; tags of findings still there kept), or delete it (``previous``: the field an
    earlier run made) when there are none. Returns the field's name, or ``None``."""
    if findings is None:
        if previous and previous in fo_dataset.get_field_schema():
            fo_dataset.delete_sample_field(previous)
        return None
    tags = _proposal_tags(fo_dataset, PROPOSALS_FIELD)
    _ensure_label_schema(fo, fo_dataset, PROPOSALS_FIELD, (
        ("finding_id", fo.StringField), ("kind", fo.StringField), ("detail", fo.StringField),
        ("action", fo.StringField), ("score", fo.FloatField), ("reason", fo.StringField),
        ("box_label", fo.StringField)))
    values = _proposal_detections(fo, dataset, samples, findings, tags)
    fo_dataset.set_values(PROPOSALS_FIELD, dict(zip(ids, values, strict=True)),
                          key_field=KEY_FIELD)
    return PROPOSALS_FIELD


def _proposal_tags(fo_dataset, field: str) -> dict[str, list[str]]:
    """``finding_id -> tags`` of the proposals already in FiftyOne (a reviewer's work)."""
    if field not in fo_dataset.get_field_schema():
        return {}
    found = fo_dataset.values([f"{field}.detections.finding_id", f"{field}.detections.tags"])
    return {finding: list(tags) for sample_ids, sample_tags in zip(*found, strict=True)
            for finding, tags in zip(sample_ids or [], sample_tags or [], strict=True)
            if finding and tags}


def _proposal_detections(fo, dataset: Dataset, samples: pd.DataFrame,
                         findings: pd.DataFrame, tags: dict[str, list[str]]) -> list:
    """One :class:`Detections` of proposals per sample (``None`` for a sample with no
    finding)."""
    sizes = image_sizes(samples)
    by_sample = {key: rows for key, rows in findings.groupby("sample_id", sort=False)}
    out = []
    for _, sample in samples.iterrows():
        rows = by_sample.get(str(sample["sample_id"]))
        if rows is None:
            out.append(None)
            continue
        try:
            size = image_size_of(dataset, sizes, sample)
        except ValueError:  # a broken image: its findings cover the whole tile
            size = None
        out.append(fo.Detections(detections=[
            _proposal(fo, finding, size, tags) for finding in rows.itertuples(index=False)]))
    return out


def _proposal(fo, finding, size: tuple[int, int] | None, tags: dict[str, list[str]]):
    """The detection of one finding: at its proposed box, else where it is, else (no box,
    or no image size) over the whole image."""
    corners = (finding.px1, finding.py1, finding.px2, finding.py2)
    if not all(finite(v) for v in corners):
        corners = (finding.x1, finding.y1, finding.x2, finding.y2)
    box = [0.0, 0.0, 1.0, 1.0]
    if size is not None and all(finite(v) for v in corners):
        box = relative_box(tuple(float(v) for v in corners), *size)
    score = None if _missing(finding.score) else float(finding.score)
    return fo.Detection(
        label=text_value(finding.proposed_label) or str(finding.kind), bounding_box=box,
        tags=list(tags.get(str(finding.finding_id), [])),
        finding_id=str(finding.finding_id), kind=str(finding.kind),
        detail=text_value(finding.detail), action=text_value(finding.action), score=score,
        reason=text_value(finding.reason), box_label=text_value(finding.label))


def _ensure_label_schema(fo, fo_dataset, label_field: str,
                         attributes: tuple | None = None) -> None:
    if attributes is None:
        attributes = (("synthetic", fo.BooleanField), ("params", fo.StringField))
    ensure_detections_field(fo, fo_dataset, label_field, attributes)


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
                previous: list[str], proposals_field: str | None = None,
                qa_views: dict[str, str] | None = None,
                more_views: dict[str, tuple] | None = None) -> list[str]:
    """(Re)save every view; remove the views an earlier run saved that are gone now.
    ``qa_views``: view name -> finding kind, views of ``proposals_field``;
    ``more_views``: view name -> ``(view, description)``, saved last (the evaluations')."""
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
    for name, kind in (qa_views or {}).items():
        views[name] = (fo_dataset.filter_labels(proposals_field, F("kind") == kind),
                       f"samples with a {kind!r} finding of pcbforge qa (those proposals)")
    views.update(more_views or {})
    for name in previous:
        if name not in views and fo_dataset.has_saved_view(name):
            fo_dataset.delete_saved_view(name)
    for name, (view, description) in views.items():
        fo_dataset.save_view(name, view, description=description, overwrite=True)
    return list(views)

