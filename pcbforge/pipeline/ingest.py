"""``pcbforge import``: curation checks on every file of a labelled source, then what its
labels say joined onto the samples table, written as a pcbforge dataset.

``import_deeppcb``: a DeepPCB-layout folder (corrupt files are recorded, not crashed
on), its pairs, boards, lists and boxes. ``import_labelled``: any format of the registry
(:data:`pcbforge.datasets.formats.FORMATS`) that can be imported: COCO, YOLO, VOC...;
the format reads its labels, this module joins them onto what curation found.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pcbforge import __version__
from pcbforge.core.files import write_json
from pcbforge.core.output import staged_output
from pcbforge.curate import CurateParams
from pcbforge.curate.runner import CurateResult, check_paths, curate_into, status_counts
from pcbforge.datasets.classes import (
    ClassResolution,
    ClassVocabulary,
    UnknownClassError,
    relabel,
    resolve_classes,
)
from pcbforge.datasets.dataset import (
    Dataset,
    DatasetInfo,
    apply_previous_splits,
    empty_labels,
    previous_splits,
    sample_id_for,
    save,
    with_defaults,
)
from pcbforge.datasets.deeppcb import DEEPPCB_CLASSES, LayoutProblem, read_deeppcb
from pcbforge.datasets.formats import (
    FormatNames,
    ReadOptions,
    SourceError,
    get_format,
)
from pcbforge.datasets.formats_common import TEMPLATE_COLUMNS
from pcbforge.engine import Engine
from pcbforge.split import leakage_groups

#: DeepPCB list files -> pcbforge split (DeepPCB's train/val part is one list).
_LIST_SPLITS = {"trainval": "train", "test": "test", "": ""}


@dataclass
class ImportResult:
    dataset: Dataset
    problems: list[LayoutProblem] = field(default_factory=list)
    report: dict = field(default_factory=dict)


def import_deeppcb(
    src: Path | str, out: Path | str, params: CurateParams | None = None, *, progress: bool = False,
    engine: Engine | None = None, allow_outside_root: bool = False,
    classes: ClassVocabulary | None = None,
) -> ImportResult:
    """Import a DeepPCB-layout folder into the dataset folder ``out``.

    ``engine``: a started engine for the curation of every file (see
    :func:`pcbforge.curate.curate`). ``allow_outside_root``: accept image and label paths
    of the lists that lead outside ``src`` (refused by default, naming file and line).
    ``classes``: the class vocabulary (see :func:`source_classes`); DeepPCB's own six
    names are built-in classes, so only a user's ``map`` changes them.

    ``out`` is written once, through :func:`pcbforge.core.staged_output`: curation,
    labels, tables and report all go into one stage swapped in at the end, so a failed
    or killed import leaves the previous dataset as it was.

    A tested image whose annotation file is missing or has a line that cannot be read gets
    status ``skipped`` (reason ``missing_label_file`` / ``bad_label_line``): its labels
    cannot be trusted, and as an image without boxes it would teach a model that its
    defects are clean board. So does one with a box outside the image (``box_outside``).
    """
    started = time.perf_counter()
    src = Path(src)
    # Raises FileNotFoundError when it is not that layout.
    layout = read_deeppcb(src, allow_outside=allow_outside_root)
    resolution = source_classes(src, DEEPPCB_CLASSES, classes)
    src_path, out_path = check_paths(src, Path(out))
    with staged_output(out_path, command="import deeppcb") as stage:
        earlier = previous_splits(out_path)  # under the lock, before it is replaced
        # The layout's images are kept before any copy of them: they carry the boxes.
        curated = curate_into(src_path, stage, params, progress=progress, engine=engine,
                              prefer=layout.samples["path"], out_for_checks=out_path)
        dataset, problems, report = _merge_deeppcb(curated, layout, stage, src_path, earlier,
                                                   resolution)
        report["import_s"] = round(time.perf_counter() - started, 3)
        write_json(stage / "report.json", report)
    dataset.root = out_path
    return ImportResult(dataset, problems, report)


def _merge_deeppcb(curated: CurateResult, layout, stage: Path, src: Path,
                   earlier: tuple[dict | None, dict], resolution: ClassResolution
                   ) -> tuple[Dataset, list, dict]:
    """The layout's pairs, boards, lists and boxes joined onto the curated samples, saved
    into ``stage``: ``(dataset, problems, report)``."""
    samples = curated.samples.merge(layout.samples, on="path", how="left")
    for column in ("role", "template_path", "board", "pair", "listed_in", "label_problem"):
        samples[column] = samples[column].fillna("")
    samples["source"] = "deeppcb"
    samples["split"] = samples["listed_in"].map(_LIST_SPLITS).fillna("")
    samples["group"] = _join_pair_groups(samples)
    samples["group_size"] = samples.groupby("group")["group"].transform("size").astype(np.int64)
    samples = samples.rename(columns={"listed_in": "deeppcb_list"})
    samples["sample_id"] = [sample_id_for(p, "deeppcb") for p in samples["path"]]

    problems = list(layout.problems)
    boxes = relabel(layout.labels.assign(params=""), resolution.mapping)
    if len(boxes):
        # DeepPCB states no image size: check the boxes against the decoded one.
        size = samples.set_index("path")[["width", "height"]]
        width = boxes["path"].map(size["width"]).to_numpy(dtype=np.float64)
        height = boxes["path"].map(size["height"]).to_numpy(dtype=np.float64)
        outside = (boxes["x2"].to_numpy() > width) | (boxes["y2"].to_numpy() > height)
        for box in boxes[outside].itertuples():
            problems.append(LayoutProblem(box.annotation, box.annotation_line,
                                          f"box ({box.x1}, {box.y1}, {box.x2}, {box.y2}) is "
                                          f"outside the image"))
        bad = samples["path"].isin(set(boxes.loc[outside, "path"]))
        samples.loc[bad & (samples["label_problem"] == ""), "label_problem"] = "box_outside"
        boxes = boxes[~outside]
    ids = dict(zip(samples["path"], samples["sample_id"], strict=True))
    labels = empty_labels()
    if len(boxes):
        labels = pd.DataFrame({
            "sample_id": boxes["path"].map(ids),
            "label": boxes["label"],
            **{c: boxes[c].astype(np.float64) for c in ("x1", "y1", "x2", "y2")},
            "mask": "", "synthetic": False, "params": boxes["params"],
        })
    samples = _hold_back(samples, samples["label_problem"], "the image's defect labels")
    samples = samples.drop(columns=["label_problem"])
    dataset, report = _save_import(
        stage, samples, labels, resolution, src, "import deeppcb",
        curated.report, problems, earlier,
    )
    report.update({
        "tested_images": int((samples["role"] == "tested").sum()),
        "templates": int((samples["role"] == "template").sum()),
        "boards": int(samples.loc[samples["board"] != "", "board"].nunique()),
    })
    return dataset, problems, report


def _hold_back(samples: pd.DataFrame, problem: pd.Series, what: str) -> pd.DataFrame:
    """Samples with a label problem become ``skipped`` with that reason (corrupt stays
    corrupt: it is the stronger fact); the curation status goes into ``detail``."""
    samples = samples.copy()
    held = (problem != "") & (samples["status"] != "corrupt")
    for row in np.flatnonzero(held.to_numpy()):
        index = samples.index[row]
        before = f"{samples.at[index, 'status']}/{samples.at[index, 'reason']}".rstrip("/")
        samples.at[index, "detail"] = f"{what}: {problem.iloc[row]} (curation: {before})"
    samples.loc[held, "status"] = "skipped"
    samples.loc[held, "reason"] = problem[held]
    return samples


def _save_import(out: Path, samples: pd.DataFrame, labels: pd.DataFrame,
                 resolution: ClassResolution, image_root: Path, command: str,
                 curate_report: dict, problems: list, earlier: tuple[dict | None, dict]
                 ) -> tuple[Dataset, dict]:
    """Write the dataset into ``out`` (the import's stage); return it with a report whose
    counts follow the final table. ``resolution``: the classes of the labels (already
    renamed), and which names were renamed or new, kept in the provenance and the report.

    ``earlier`` is what :func:`previous_splits` read from ``out`` before it was rebuilt:
    when ``out`` had been split, every known sample keeps its split and new samples wait
    for the next ``split`` (a split their source states goes to ``source_split``).
    """
    samples, labels = with_defaults(samples, labels)
    record, assigned = earlier
    if record is not None:
        samples["source_split"] = samples["split"]
        samples["split"] = ""
        samples = apply_previous_splits(samples, assigned)
    provenance = {"command": command, "source": str(image_root),
                  "pcbforge_version": __version__}
    if resolution.renamed or resolution.new:
        provenance["classes"] = {"renamed": resolution.renamed, "new": resolution.new}
    info = DatasetInfo(
        classes=resolution.classes,
        image_root=str(image_root),
        provenance=[provenance],
        split=record,
    )
    dataset = Dataset(out, samples, labels, info)
    save(dataset)
    report = {
        **curate_report,
        **status_counts(samples),
        "command": command,
        "labels": len(labels),
        "labels_per_class": {k: int(v) for k, v in labels["label"].value_counts().items()},
        "classes": resolution.report(),
        "layout_problems": [str(p) for p in problems],
    }
    return dataset, report  # the caller adds its own counts, then writes report.json


#: The formats :func:`import_labelled` reads (a live view of the registry: a format
#: registered later is in it).
LABELLED_FORMATS = FormatNames("import")


def read_labelled(fmt: str, src: Path | str, *, images: Path | str | None = None,
                  missing_labels: str = "error", allow_outside_root: bool = False
                  ) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Read a labelled source (every split in it): ``(samples, labels, classes)``.

    ``fmt`` is any format of :data:`pcbforge.datasets.formats.FORMATS` that can be
    imported; the format finds the parts of ``src`` and reads each. ``samples`` has the
    loaders' columns (``file`` is each image's location on disk). The built-in sources:

    - ``coco``: an instances JSON file (images in ``--images``, else ``images/`` or
      ``data/`` beside it, else its own folder), or a folder holding one such JSON, or a
      folder of split folders (``train/``, ``val/``...) each holding one (a pcbforge export).
    - ``yolo``: a folder with ``data.yaml`` (or ``dataset.yaml``); every split it names.
    - ``voc``: a folder with ``Annotations/`` and ``JPEGImages/``, or a folder of split
      folders each holding one.

    A split folder's name (train/val/valid/test...) becomes the ``split`` unless the files
    say otherwise. An image path that leads outside its dataset root (``..``, absolute, a
    link out) is refused with ``file:line`` unless ``allow_outside_root``.
    """
    label_format = get_format(fmt, can="import")
    src = Path(src)
    if not src.exists():
        raise FileNotFoundError(f"{src}: not found")
    options = ReadOptions(images=Path(images) if images else None,
                          missing_labels=missing_labels, allow_outside=allow_outside_root)
    # Every part is found before any is read: a source without one fails at once.
    parts = label_format.discover(src)
    return _combine(label_format.name,
                    [(label_format.load(part, options), part.split) for part in parts])


def _combine(fmt: str, parts: list) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """One table from the parts (splits) of a source; ids made up by a loader are only
    unique within their part, so they are re-derived from the image's path later."""
    classes: list[str] = []
    samples, labels = [], []
    for number, ((part_samples, part_labels, part_classes), split) in enumerate(parts):
        classes += [c for c in part_classes if c not in classes]
        part_samples = part_samples.assign(part=number)
        if split:
            part_samples["split"] = part_samples["split"].where(part_samples["split"] != "", split)
        samples.append(part_samples)
        labels.append(part_labels.assign(part=number))
    samples_table = pd.concat(samples, ignore_index=True)
    labels_table = pd.concat(labels, ignore_index=True)
    files = samples_table["file"]
    twice = files[files.duplicated(keep=False)]
    if len(twice):
        raise SourceError(f"{fmt}: image {twice.iloc[0]} is listed {len(twice)} times "
                           f"(duplicate samples)")
    return samples_table, labels_table, classes


def import_labelled(
    fmt: str, src: Path | str, out: Path | str, params: CurateParams | None = None, *,
    images: Path | str | None = None, missing_labels: str = "error", progress: bool = False,
    engine: Engine | None = None, allow_outside_root: bool = False,
    classes: ClassVocabulary | None = None,
) -> ImportResult:
    """Import a labelled source (COCO, YOLO, VOC...: see :func:`read_labelled`) into ``out``.

    ``engine``: a started engine for the curation of every image (see
    :func:`pcbforge.curate.curate`). ``allow_outside_root``: accept image paths that lead
    outside the source (see :func:`read_labelled`); without it the folder curated never
    reaches beyond the source. ``classes``: the class vocabulary the label names go
    through (see :func:`source_classes`).

    The annotations are read and checked first (a broken file raises before any work);
    then every image under the images' common folder is curated. Images the annotations
    do not list keep a row with status ``skipped`` (reason ``not_in_annotations``): they
    are not known to be defect-free, so they are never used as such.

    ``out`` is written once, through :func:`pcbforge.core.staged_output` (see
    :func:`import_deeppcb`).
    """
    started = time.perf_counter()
    fmt = get_format(fmt, can="import").name  # a FormatName too; unknown names raise here
    table, boxes, names = read_labelled(fmt, src, images=images,
                                        missing_labels=missing_labels,
                                        allow_outside_root=allow_outside_root)
    # Before any work: an unknown class stops the import at once.
    resolution = source_classes(src, [*names, *boxes["label"].astype(str).unique()], classes)
    boxes = relabel(boxes, resolution.mapping)
    table = with_template_rows(table)
    files = [Path(f).resolve() for f in table["file"]]
    image_root = Path(os.path.commonpath([f.parent for f in files]))
    if not allow_outside_root:
        _check_image_root(image_root, files, src, images)
    table["path"] = [f.relative_to(image_root).as_posix() for f in files]
    if "template_file" in table.columns:
        table["template_path"] = [Path(f).resolve().relative_to(image_root).as_posix()
                                  if f else "" for f in table["template_file"]]
    # Ids a loader made up are unique only within their part: derive them from the path.
    keys = list(zip(table["part"], table["sample_id"], strict=True))
    ids = [given if use else sample_id_for(path, fmt) for given, use, path in
           zip(table["sample_id"], table["id_given"], table["path"], strict=True)]
    new_ids = dict(zip(keys, ids, strict=True))
    table["sample_id"] = ids
    boxes["sample_id"] = [new_ids[key] for key in
                          zip(boxes["part"], boxes["sample_id"], strict=True)]
    repeated = table["sample_id"][table["sample_id"].duplicated(keep=False)]
    if len(repeated):
        paths = table.loc[repeated.index, "path"].tolist()
        raise SourceError(f"{fmt}: duplicate sample id {repeated.iloc[0]!r} "
                           f"(images {', '.join(paths[:3])})")

    image_root, out_path = check_paths(image_root, Path(out))
    with staged_output(out_path, command=f"import {fmt}") as stage:
        earlier = previous_splits(out_path)  # under the lock, before it is replaced
        curated = curate_into(image_root, stage, params, progress=progress, engine=engine,
                              prefer=table["path"], out_for_checks=out_path)
        dataset, report = _merge_labelled(fmt, curated, table, boxes, resolution,
                                          image_root, stage, earlier)
        # The images the annotations list: a pair export's templates are counted apart.
        annotated = table[table["role"] != "template"] if "role" in table.columns else table
        report.update({
            "source": str(Path(src).resolve()),
            "annotated_images": len(annotated),
            "images_not_in_annotations": report.pop("images_not_in_annotations"),
            "splits": {k or "none": int(v)
                       for k, v in annotated["split"].value_counts().items()},
            "import_s": round(time.perf_counter() - started, 3),
        })
        write_json(stage / "report.json", report)
    dataset.root = out_path
    return ImportResult(dataset, [], report)


def source_classes(src: Path | str, names, vocabulary: ClassVocabulary | None
                   ) -> ClassResolution:
    """The classes of a source's label ``names`` in ``vocabulary`` (default: the built-in
    aliases; see :mod:`pcbforge.datasets.classes`). A name it refuses (a near miss of a
    known class, or any unknown name when strict) raises :class:`SourceError` naming the
    source, the name and the closest class."""
    try:
        return resolve_classes(names, vocabulary)
    except UnknownClassError as err:
        raise SourceError(f"{src}: {err}") from err


def with_template_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The loaders' table with the pairs its source holds (a pcbforge export made with
    ``--templates pair``: the loaders' ``template_file`` column) made rows: one per template
    file (``role`` = ``template``, in its first tested image's split and part, with the
    sample id the source stored for it, else one derived from its path), ``role`` =
    ``tested`` on the images paired with one. A template that is itself a listed image
    gets no second row. Without pairs the table is returned as it was, less the loaders'
    template columns."""
    if "template_file" not in table.columns:
        return table
    paired = table["template_file"].fillna("").astype(str) != ""
    if not paired.any():
        return table.drop(columns=[c for c in TEMPLATE_COLUMNS if c in table.columns])
    listed = set(table["file"].astype(str))
    rows = []
    for row in table[paired].drop_duplicates("template_file").itertuples(index=False):
        if row.template_file in listed:
            continue
        given = str(row.template_id or "")
        rows.append({"sample_id": given or f"template:{row.template_file}",
                     "id_given": bool(given), "path": row.template_path,
                     "file": row.template_file, "split": row.split, "synthetic": False,
                     "part": row.part, "template_file": ""})
    table = table.assign(role=np.where(paired, "tested", ""))
    table.loc[table["file"].isin(set(table.loc[paired, "template_file"])), "role"] = "template"
    if rows:  # no size: curation reads it (and there are no boxes to check against it)
        table = pd.concat([table, pd.DataFrame(rows).assign(role="template")],
                          ignore_index=True)
    table["template_file"] = table["template_file"].fillna("")
    return table.drop(columns=["template_id"])


def _check_image_root(image_root: Path, files: list[Path], src: Path | str,
                      images: Path | str | None) -> None:
    """Refuse a folder to curate that reaches beyond the source: the loaders keep each
    image inside its root, and this keeps the common folder of them all there too (an
    image outside would make the import scan unrelated folders)."""
    source = Path(src).resolve()
    roots = [source if source.is_dir() else source.parent]
    if images:
        roots.append(Path(images).resolve())
    if any(image_root.is_relative_to(root) for root in roots):
        return
    outside = next((f for f in files
                    if not any(f.is_relative_to(root) for root in roots)), image_root)
    raise SourceError(f"image {outside} is outside the source {roots[0]} (pass "
                      f"--allow-outside-root to accept images outside it)")


def _merge_labelled(fmt: str, curated: CurateResult, table: pd.DataFrame,
                    boxes: pd.DataFrame, resolution: ClassResolution, image_root: Path,
                    stage: Path, earlier: tuple[dict | None, dict]) -> tuple[Dataset, dict]:
    """The annotations joined onto the curated samples, saved into ``stage``."""
    # Records a format carries per image beyond the boxes (pcbforge's own COCO and VOC
    # exports hold the nuisance regions of synthetic images, a pair export the templates)
    # come along when present.
    extra = [c for c in ("nuisance_regions", "role", "template_path") if c in table.columns]
    listed = table[["path", "sample_id", "split", "synthetic", "width", "height", *extra]
                   ].rename(columns={"width": "label_width", "height": "label_height"})
    samples = curated.samples.merge(listed, on="path", how="left", indicator=True)
    unlisted = samples["_merge"] == "left_only"
    samples = samples.drop(columns="_merge")
    samples["split"] = samples["split"].fillna("")
    samples["synthetic"] = samples["synthetic"].fillna(False).astype(bool)
    samples["sample_id"] = samples["sample_id"].fillna("")
    for column in extra:
        samples[column] = samples[column].fillna("")
    samples["source"] = fmt
    problem = pd.Series("", index=samples.index)
    unlisted_images = unlisted & (samples["status"] != "skipped")
    problem[unlisted_images] = "not_in_annotations"
    # Boxes were checked against the size the annotations state: it must be the real one.
    decoded = samples["width"].notna() & samples["label_width"].notna()
    wrong_size = decoded & ((samples["width"] != samples["label_width"])
                            | (samples["height"] != samples["label_height"]))
    problem[wrong_size] = "label_size_mismatch"
    samples = _hold_back(samples, problem, "annotations")
    samples = samples.drop(columns=["label_width", "label_height"])
    if "template_path" in extra:
        # As in DeepPCB's layout: the source states the pairs, whatever pixels said.
        samples["group"] = _join_pair_groups(samples)
        samples["group_size"] = samples.groupby("group")["group"].transform("size").astype(
            np.int64)
    labels = boxes.drop(columns="part")
    dataset, report = _save_import(stage, samples, labels, resolution, image_root,
                                   f"import {fmt}", curated.report, [], earlier)
    report["images_not_in_annotations"] = int(unlisted_images.sum())
    if "template_path" in extra:
        report["templates"] = int((samples["role"] == "template").sum())
        report["paired_images"] = int((samples["template_path"] != "").sum())
    return dataset, report


def _join_pair_groups(samples: pd.DataFrame) -> pd.Series:
    """A tested image and its template share a group, whatever pixels said.

    Curation groups them when it verifies the pair as one scene (96.8% of
    DeepPCB's pairs); the layout states it, so the import joins the rest: the
    split's leakage groups without extra columns are exactly these unions. A
    merged group keeps the smallest of its members' group ids.
    """
    components = leakage_groups(samples.reset_index(drop=True))
    joined = samples["group"].astype(str).groupby(components).transform("min")
    return pd.Series(joined.to_numpy(), index=samples.index)
