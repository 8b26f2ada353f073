"""The stages of ``pcbforge build``, composed from the other parts (none imports this).

::

    source-<name>   one per source: a pcbforge dataset of it (curate, import deeppcb or
                    a label format of the registry: coco/yolo/voc..., or procedural
                    boards drawn, then curated)
    synth           labelled defects on the good boards of the board sources
    merge           every source and the synthetic images under one image folder
                    (links, ``stages/merge/images/<source>/...``), curated together so
                    duplicates across sources share a group, joined with each source's
                    labels, roles, templates and groups
    split           train/val/test by leakage group; synthetic images to train only when
                    real defects exist (see :func:`assign_splits`)
    audit           the leak audit of that split
    qa              ``pcbforge qa`` of that dataset: each tested image registered to its
                    template, the labels checked against their difference (``qa:
                    {enabled: false}``: left out)
    export          the dataset published in the build folder (with the audit and the
                    QA), and its exports
    report          report.json, report.html and its plots

The build folder::

    DATASET/
      samples.parquet, labels.parquet, dataset.json   the dataset (pcbforge view/export it)
      split_report.json, audit.json, recipe.yaml
      qa.json, qa.parquet (+ .csv), qa_registration.parquet, qa/crops/   the QA
      export/coco/, export/yolo/ ...                   one folder per format
      report.html, report.json, report/                 the report and its images
      stages/                                           each stage's output
      .build/                                           stage markers, last run, and
                                                        running.json while a build runs
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pcbforge import __version__
from pcbforge.core.files import PathOutsideRootError, resolve_inside, write_json
from pcbforge.curate import CurateParams, curate
from pcbforge.curate.runner import CurateResult, curate_into
from pcbforge.datasets.classes import ordered_classes
from pcbforge.datasets.dataset import (
    DATASET_JSON,
    LABELS_CSV,
    LABELS_PARQUET,
    Dataset,
    DatasetInfo,
    empty_labels,
    load,
    read_info,
    sample_id_for,
    save,
    with_defaults,
)
from pcbforge.datasets.qa_tables import (
    CROPS_DIR,
    QA_CSV,
    QA_JSON,
    QA_PARQUET,
    REGISTRATION_PARQUET,
)
from pcbforge.datasets.samples import SAMPLES_CSV, SAMPLES_PARQUET
from pcbforge.pipeline.recipe import Recipe, recipe_yaml
from pcbforge.pipeline.runner import (
    STAGES_DIR,
    BuildContext,
    BuildError,
    Stage,
    copy_file,
    files_digest,
)
from pcbforge.split import SPLIT_NAMES, SplitParams, leakage_groups, split_samples

if TYPE_CHECKING:  # synthesis is imported when a stage runs, not with the build
    from pcbforge.synth.compose import SynthConfig
    from pcbforge.synth.pipeline import Board

MERGED_IMAGES = f"{STAGES_DIR}/merge/images"
SPLIT_REPORT = "split_report.json"
AUDIT_JSON = "audit.json"
MERGE_REPORT = "merge_report.json"
RECIPE_COPY = "recipe.yaml"
#: What the qa stage adds to the dataset, published beside ``audit.json``; the crops'
#: folder (:data:`QA_FOLDER`) too.
QA_FILES = (QA_JSON, QA_PARQUET, QA_CSV, REGISTRATION_PARQUET)
QA_FOLDER = CROPS_DIR.split("/")[0]  # qa/: crops/ (and registered/ of `qa --register`)


def _curate_params(ctx: BuildContext) -> CurateParams:
    recipe: Recipe = ctx.recipe
    return CurateParams(workers=ctx.workers, inspect=recipe.curate.inspect,
                        dedupe=recipe.curate.dedupe)


def _relocate(dataset_dir: Path, image_root: Path) -> None:
    """Point a dataset at ``image_root`` by a relative path (the build folder can move)."""
    info = read_info(dataset_dir)
    info.image_root = os.path.relpath(image_root, dataset_dir)
    write_json(dataset_dir / DATASET_JSON, info.model_dump(mode="json"))


def _link(link: Path, target: Path, inside: Path) -> None:
    """A folder link; relative when the target is inside the build folder ``inside``."""
    target = Path(os.path.abspath(target))
    if inside == target or inside in target.parents:
        os.symlink(os.path.relpath(target, link.parent), link)
    else:
        os.symlink(target, link)


def _summary(report: dict, **more) -> dict:
    counts = report.get("counts", {})
    return {"files": report.get("files", 0), **{k: v for k, v in counts.items() if v}, **more}


# --- sources -----------------------------------------------------------------------------


def _deeppcb_view(src: Path, groups: list[str], view: Path) -> None:
    """A DeepPCB-layout folder with only ``groups``: links to the group folders and the
    list files cut down to their lines.

    Its links lead out of the view by design, so the import of the view accepts paths
    outside it; the rule that a source's paths stay inside it is checked here instead,
    against ``src`` itself: a file of a group or a list line that leads out of ``src``
    (``..``, absolute, a link) stops the build, naming it."""
    view.mkdir()
    for group in groups:
        if not (src / group).is_dir():
            found = sorted(p.name for p in src.iterdir() if p.is_dir() and
                           p.name.startswith("group"))
            raise BuildError(f"DeepPCB group {group} is not in {src} (groups there: "
                             f"{', '.join(found) or 'none'})")
        _require_inside(src, src / group, f"{src / group}")
        for folder, dirs, files in os.walk(src / group):
            for name in dirs + files:
                _require_inside(src, Path(folder) / name, str(Path(folder) / name))
        os.symlink(src / group, view / group)
    for name in ("trainval.txt", "test.txt"):
        if (src / name).is_file():
            lines = []
            text = (src / name).read_text(encoding="utf-8", errors="replace")
            for number, line in enumerate(text.splitlines(), start=1):
                if line.split("/", 1)[0] not in groups:
                    continue
                for entry in line.split():
                    _require_inside(src, src / entry, f"{src / name}:{number}")
                lines.append(line)
            if lines:
                (view / name).write_text("".join(line + "\n" for line in lines),
                                         encoding="utf-8")


def _require_inside(src: Path, path: Path, where: str) -> None:
    try:
        resolve_inside(src, os.path.relpath(path, src))
    except PathOutsideRootError as err:
        why = str(err).split(" (pass ", 1)[0]  # the import's opt-in is no recipe option
        raise BuildError(f"{where}: {why}; a build takes only paths inside its sources"
                         ) from err


def run_source(source, ctx: BuildContext, folder: Path) -> dict:
    from pcbforge.pipeline.ingest import import_deeppcb, import_labelled

    dataset = folder / "dataset"
    params = _curate_params(ctx)
    if source.kind == "procedural":
        from pcbforge.synth.pipeline import write_boards

        recipe: Recipe = ctx.recipe
        with ctx.engine() as engine:
            names = write_boards(folder / "images", count=source.count,
                                 seed=recipe.seed_of(source.seed), size=source.size,
                                 workers=ctx.workers, progress=ctx.progress, engine=engine)
            report = curate(folder / "images", dataset, params, progress=ctx.progress,
                            engine=engine).report
        _relocate(dataset, folder / "images")
        return _summary(report, boards=len(names))
    if source.kind == "folder":
        with ctx.engine() as engine:
            report = curate(source.path, dataset, params, progress=ctx.progress,
                            engine=engine).report
        return _summary(report)
    if source.kind == "deeppcb":
        src = source.path
        if source.groups:
            _deeppcb_view(source.path, source.groups, folder / "layout")
            src = folder / "layout"
        with ctx.engine() as engine:
            # A group view's links lead out of it: checked against the source instead.
            result = import_deeppcb(src, dataset, params, progress=ctx.progress, engine=engine,
                                    allow_outside_root=bool(source.groups),
                                    classes=ctx.recipe.classes)
        if source.groups:
            _relocate(dataset, folder / "layout")
        return _summary(result.report, labels=result.report.get("labels", 0),
                        layout_problems=len(result.problems), **_class_counts(result.report))
    # Every other kind is a label format of the registry (pcbforge.datasets.formats).
    with ctx.engine() as engine:
        result = import_labelled(source.kind, source.path, dataset, params,
                                 images=source.images, missing_labels=source.missing_labels,
                                 progress=ctx.progress, engine=engine,
                                 classes=ctx.recipe.classes)
    return _summary(result.report, labels=result.report.get("labels", 0),
                    **_class_counts(result.report))


def _class_counts(report: dict) -> dict:
    """For a source's summary line: how many of its names were renamed, and how many kept
    as new classes (shown only when there are any: a new class is worth a look)."""
    classes = report.get("classes") or {}
    counts = {"classes_renamed": len(classes.get("renamed") or {}),
              "classes_new": len(classes.get("new") or [])}
    return {k: v for k, v in counts.items() if v}


def _source_digest(source) -> str:
    """Digest of the user files a source stage reads (a DeepPCB group filter: only those
    groups and the list files)."""
    if source.kind == "deeppcb" and source.groups:
        lists = [n for n in ("trainval.txt", "test.txt") if (source.path / n).is_file()]
        return files_digest(source.path, [*source.groups, *lists])
    return files_digest(source.path)


def source_dataset(ctx: BuildContext, name: str) -> Path:
    return ctx.stage_dir(f"source-{name}") / "dataset"


# --- synth -------------------------------------------------------------------------------


def class_weights(recipe: Recipe, real_counts: dict[str, int], *,
                  expected_defects: float | None = None) -> list[float] | None:
    """Weights of the synthetic defects' classes (``None``: uniform); see
    :class:`~pcbforge.pipeline.recipe.SynthSection`'s ``balance``. ``expected_defects``:
    how many defects synthesis asks for in all (``balance: fill``; by default from
    ``defects_per_image``, which a density per megapixel needs the boards' sizes for: see
    :func:`expected_defects`)."""
    synth = recipe.synth
    if synth.balance == "uniform":
        return None
    if synth.balance == "from-evaluation":
        return evaluation_weights(recipe)[0]
    if isinstance(synth.balance, dict):
        return [float(synth.balance.get(c, 0.0)) for c in synth.classes]
    if expected_defects is None:
        if synth.defects_per_image is None:
            raise ValueError("balance: fill with defects_per_mp needs the expected number of "
                             "defects (expected_defects)")
        lo, hi = synth.defects_per_image
        expected_defects = synth.total_images * (lo + hi) / 2.0
    expected = expected_defects
    real = [real_counts.get(c, 0) for c in synth.classes]
    target = (sum(real) + expected) / len(synth.classes)
    weights = [max(target - r, 0.0) for r in real]
    return weights if sum(weights) > 0 else None


def evaluation_weights(recipe: Recipe) -> tuple[list[float], str]:
    """``balance: from-evaluation``: the weights of ``synth.classes`` from the recipe's
    evaluation, and the note recorded with each synthetic label."""
    from pcbforge.datasets.evaluation_tables import EvaluationError
    from pcbforge.evaluate.targets import read_for_balance, weights_from_evaluation

    try:
        metrics, note = read_for_balance(recipe.synth.evaluation)
        return weights_from_evaluation(metrics, recipe.synth.classes), note
    except EvaluationError as err:
        raise BuildError(f"synth: {err}") from err


def real_label_counts(ctx: BuildContext) -> dict[str, int]:
    """Boxes per class on the usable real images of the labelled sources."""
    counts: dict[str, int] = {}
    for source in ctx.recipe.sources:
        if source.kind in ("procedural", "folder"):
            continue
        dataset = load(source_dataset(ctx, source.name))
        ok = dataset.samples.loc[dataset.samples["status"] == "ok", "sample_id"]
        labels = dataset.labels[dataset.labels["sample_id"].isin(ok)]
        for name, value in labels["label"].value_counts().items():
            counts[name] = counts.get(name, 0) + int(value)
    return counts


def board_list(ctx: BuildContext):
    """The good boards of every board source, with build-wide template paths and groups."""
    from pcbforge.synth.pipeline import Board, SynthError, list_boards

    boards, resolutions = [], set()
    for name in ctx.recipe.board_sources():
        try:
            found, px_per_mm = list_boards(source_dataset(ctx, name))
        except SynthError as err:
            raise BuildError(f"synth: source {name}: {err}") from err
        resolutions.add(px_per_mm)
        for board in found:
            boards.append(Board(board.file,
                                f"templates/{name}/{board.path.removeprefix('templates/')}",
                                f"{name}:{board.group}"))
    known = resolutions - {None}
    return boards, (known.pop() if len(known) == 1 else None)


def expected_defects(config: SynthConfig, boards: list[Board], count: int) -> float:
    """How many defects ``count`` synthetic images ask for on average (image ``i`` is drawn
    on ``boards[i mod len(boards)]``): the middle of each image's count range, which a
    density per megapixel takes from its board's size (read from the file's header)."""
    from pcbforge.datasets.formats_common import read_image_size
    from pcbforge.synth.compose import defect_count_range

    total = 0.0
    for index, board in enumerate(boards):
        images = len(range(index, count, len(boards)))
        if images:
            width, height = read_image_size(Path(board.file))
            lo, hi = defect_count_range(config, (height, width))
            total += images * (lo + hi) / 2.0
    return total


def synth_config(recipe: Recipe, boards: list[Board], px_per_mm: float | None,
                 real_counts: dict[str, int]) -> SynthConfig:
    """The synthesis settings of the recipe's ``synth`` section, drawing on ``boards``
    (``px_per_mm``: what the board sources record; ``real_counts``: the real boxes per
    class, which ``balance: fill`` makes up for)."""
    from pcbforge.synth.brush import NO_BRUSH
    from pcbforge.synth.compose import SynthConfig

    synth = recipe.synth
    count = ({"defects_per_mp": synth.defects_per_mp} if synth.defects_per_mp is not None
             else {"defects_per_image": synth.defects_per_image})
    expected = None
    if synth.balance == "fill" and synth.defects_per_mp is not None:
        expected = expected_defects(SynthConfig.model_validate(count), boards,
                                    synth.total_images)
    weights = class_weights(recipe, real_counts, expected_defects=expected)
    return SynthConfig.model_validate({
        "classes": synth.classes, "class_weights": weights,
        "balance": evaluation_weights(recipe)[1] if synth.balance == "from-evaluation" else "",
        **count,
        "px_per_mm": synth.px_per_mm or px_per_mm or 48.0, "box": synth.box,
        "copper": synth.copper, "nuisance": {"enabled": synth.nuisance},
        "background": {"enabled": synth.background},
        "defect_free_share": synth.defect_free_share,
        "painted_defects": synth.painted_defects,
        **({} if synth.brush else {"brush": NO_BRUSH}),
        "augment": {"preset": synth.augment}, "etch_px": synth.etch_px,
    })


def run_synth(ctx: BuildContext, folder: Path) -> dict:
    from pcbforge.synth.pipeline import WORKER_MODULES, synthesize

    recipe: Recipe = ctx.recipe
    synth = recipe.synth
    boards, px_per_mm = board_list(ctx)
    config = synth_config(recipe, boards, px_per_mm,
                          real_label_counts(ctx) if synth.balance == "fill" else {})
    weights = list(config.class_weights) if config.class_weights is not None else None
    with ctx.engine(WORKER_MODULES) as engine:
        report = synthesize(f"build sources: {', '.join(recipe.board_sources())}", folder,
                            count=synth.total_images, seed=recipe.seed_of(synth.seed),
                            config=config, image_format=synth.format, progress=ctx.progress,
                            engine=engine, board_list=boards)
    return {"images": report["images"], "boards": report["boards_used"],
            "defects": report["defects_total"], "failed": len(report["failed_images"]),
            "class_weights": weights}


# --- merge -------------------------------------------------------------------------------


def _prefixed(name: str, values: pd.Series) -> pd.Series:
    values = values.fillna("").astype(str)
    return values.where(values == "", name + "/" + values)


def _source_rows(name: str, kind: str, dataset: Dataset) -> pd.DataFrame:
    samples = dataset.samples

    def column(name: str) -> pd.Series:
        if name not in samples:
            return pd.Series("", index=samples.index, dtype=object)
        return samples[name].fillna("").astype(str)

    board = column("board")
    source_split = column("source_split") if "source_split" in samples else column("split")
    return pd.DataFrame({
        "path": name + "/" + samples["path"].astype(str),
        "old_id": samples["sample_id"].astype(str),
        "source": name, "source_kind": kind,
        "role": column("role"),
        "template_path": _prefixed(name, samples["template_path"]),
        "board": board.where(board == "", name + ":" + board),
        "pair": column("pair"),
        "source_split": source_split,
        "source_group": name + ":" + samples["group"].fillna("").astype(str),
        "synthetic": (samples["synthetic"].fillna(False).astype(bool) | (kind == "procedural")),
        "src_status": samples["status"].astype(str),
        "src_reason": column("reason"),
        "src_detail": column("detail"),
    })


def _synth_rows(dataset: Dataset, board_paths: dict[str, str]) -> pd.DataFrame:
    """The synthetic images (and any augmented templates); the copies of the boards are
    left out: the boards' own rows are their templates."""
    samples = dataset.samples
    own = samples["path"].str.startswith(("images/", "templates/augmented/"))
    samples = samples[own]
    template = samples["template_path"].fillna("").astype(str)
    board_file = samples["board"].fillna("").astype(str)
    missing = sorted(set(board_file[board_file != ""]) - set(board_paths))
    if missing:
        raise BuildError(f"merge: synthetic images name a board that no source has: "
                         f"{missing[0]}")
    board = board_file.map(board_paths).fillna("")
    return pd.DataFrame({
        "path": "synth/" + samples["path"].astype(str),
        "old_id": samples["sample_id"].astype(str),
        "source": "synth", "source_kind": "synth",
        "role": samples["role"].fillna("").astype(str),
        "template_path": np.where(template.str.startswith("templates/augmented/"),
                                  "synth/" + template, board.where(template != "", "")),
        "board": board,
        "pair": "",
        "source_split": "",
        "source_group": samples["group"].fillna("").astype(str),
        "synthetic": True,
        "src_status": samples["status"].astype(str),
        "src_reason": samples["reason"].fillna("").astype(str),
        "src_detail": "",
        "synth": samples["synth"].fillna("").astype(str) if "synth" in samples else "",
        # The background nuisance record (``pcbforge.synth.pipeline``) travels with it.
        "nuisance_regions": (samples["nuisance_regions"].fillna("").astype(str)
                             if "nuisance_regions" in samples else ""),
    })


@dataclass
class MergeInputs:
    """What the merge joins: each source's dataset, the synthetic images, and what they
    share (their classes, where each board image is in the merged folder, resolutions)."""

    #: ``(source name, source kind, its dataset)`` in recipe order.
    parts: list[tuple[str, str, Dataset]] = field(default_factory=list)
    synth: Dataset | None = None
    classes: list[str] = field(default_factory=list)
    #: A board image's file -> its path in the merged folder (synthetic images name it).
    board_paths: dict[str, str] = field(default_factory=dict)
    resolutions: set = field(default_factory=set)

    def datasets(self) -> list[tuple[str, Dataset]]:
        """``(name, dataset)`` of every part, the synthetic images (``synth``) last."""
        named = [(name, dataset) for name, _, dataset in self.parts]
        return named + ([("synth", self.synth)] if self.synth is not None else [])


def run_merge(ctx: BuildContext, folder: Path) -> dict:
    """Every source and the synthetic images under one image folder, curated together and
    joined with what each source says of its images; saved as the dataset ``folder``."""
    recipe: Recipe = ctx.recipe
    inputs = link_merge_inputs(ctx, folder / "images")
    curated = _curate_merged(ctx, folder / "images", folder)
    samples = join_source_rows(curated.samples, inputs)
    labels = _merged_labels(samples, inputs)
    samples = samples.drop(columns=["old_id", "src_status", "src_reason", "src_detail"])
    samples, labels = with_defaults(samples, labels)
    known = inputs.resolutions - {None}
    dataset_info = DatasetInfo(
        classes=ordered_classes(inputs.classes), px_per_mm=known.pop() if len(known) == 1 else None,
        image_root="images",
        provenance=[{"command": "build", "recipe": recipe.name,
                     "sources": [s.name for s in recipe.sources],
                     "synthetic": recipe.synth.enabled, "pcbforge_version": __version__}],
    )
    save(Dataset(folder, samples, labels, dataset_info))
    report = {k: v for k, v in curated.report.items() if k not in ("source", "dataset")}
    # The statuses after the join (held-back images, pairs kept), in curation's order.
    final = samples["status"].value_counts()
    report["counts"] = {k: int(final.get(k, 0)) for k in curated.report.get("counts", {})}
    report["per_source"] = {name: int(n) for name, n in samples["source"].value_counts()
                            .sort_index().items()}
    report["classes"] = {"classes": dataset_info.classes,
                         "per_source": {name: _source_classes(dataset)
                                        for name, dataset in inputs.datasets()}}
    write_json(folder / MERGE_REPORT, report)
    return _summary(report, labels=len(labels), sources=len(inputs.datasets()))


def _source_classes(dataset: Dataset) -> dict:
    """A source's classes, and the names its import renamed or kept as new classes."""
    record = next((p["classes"] for p in dataset.info.provenance if "classes" in p), {})
    return {"classes": list(dataset.info.classes), "renamed": record.get("renamed", {}),
            "new": record.get("new", [])}


def link_merge_inputs(ctx: BuildContext, farm: Path) -> MergeInputs:
    """Link each source's images (``farm/<source>``) and the synthetic images and augmented
    templates (``farm/synth/...``) into the new folder ``farm``; return what they are."""
    recipe: Recipe = ctx.recipe
    farm.mkdir()
    inputs = MergeInputs()
    boards_of = set(recipe.board_sources())
    for source in recipe.sources:
        dataset = load(source_dataset(ctx, source.name))
        _link(farm / source.name, dataset.image_root, ctx.out)
        inputs.parts.append((source.name, source.kind, dataset))
        inputs.classes += [c for c in dataset.info.classes if c not in inputs.classes]
        if source.name in boards_of:
            inputs.board_paths.update({str(dataset.image_path(p)): f"{source.name}/{p}"
                                       for p in dataset.samples["path"]})
        inputs.resolutions.add(dataset.info.px_per_mm)
    if recipe.synth.enabled:
        synth = inputs.synth = load(ctx.stage_dir("synth"))
        (farm / "synth").mkdir()
        _link(farm / "synth" / "images", synth.root / "images", ctx.out)
        augmented = synth.root / "templates" / "augmented"
        if augmented.is_dir():
            (farm / "synth" / "templates").mkdir()
            _link(farm / "synth" / "templates" / "augmented", augmented, ctx.out)
        inputs.classes += [c for c in synth.info.classes if c not in inputs.classes]
        inputs.resolutions.add(synth.info.px_per_mm)
    return inputs


def _curate_merged(ctx: BuildContext, farm: Path, folder: Path) -> CurateResult:
    """Curation of the merged folder; only its table and report are kept, so it works in a
    scratch folder of the stage (no output of its own to lock and swap in)."""
    scratch = folder / ".curate"
    scratch.mkdir()
    with ctx.engine() as engine:
        curated = curate_into(farm, scratch, _curate_params(ctx), progress=ctx.progress,
                              engine=engine)
    shutil.rmtree(scratch)
    return curated


def join_source_rows(curated: pd.DataFrame, inputs: MergeInputs) -> pd.DataFrame:
    """The curated table of the merged folder joined with what each source says of its
    images (roles, templates, boards, groups, held-back statuses), with build-wide ids.
    Keeps ``old_id`` (the id in its source) and the ``src_*`` columns for the labels."""
    table = curated.drop(columns=["sample_id", "split"], errors="ignore")
    rows = [_source_rows(name, kind, dataset) for name, kind, dataset in inputs.parts]
    if inputs.synth is not None:
        rows.append(_synth_rows(inputs.synth, inputs.board_paths))
    info = pd.concat(rows, ignore_index=True)
    unknown = sorted(set(info["path"]) - set(table["path"]))
    if unknown:
        raise BuildError(f"merge: {len(unknown)} source images were not found in the merged "
                         f"folder (first: {unknown[0]})")
    samples = table.merge(info, on="path", how="left")
    for column in ("source_kind", "role", "template_path", "board", "pair", "source_split",
                   "source_group", "src_status", "src_reason", "src_detail", "synth",
                   "nuisance_regions"):
        samples[column] = samples[column].fillna("") if column in samples else ""
    samples["source"] = samples["source"].fillna(samples["path"].str.split("/").str[0])
    samples["synthetic"] = samples["synthetic"].fillna(False).astype(bool)
    # A source that held an image back (labels it cannot trust, not in the annotations)
    # said so with ``skipped``: that wins over the pixels' verdict.
    held = (samples["src_status"] == "skipped").to_numpy()
    for column in ("status", "reason", "detail"):
        samples.loc[held, column] = samples.loc[held, f"src_{column}"]
    keep_pairs(samples)
    samples["sample_id"] = [sample_id_for(p, "build") for p in samples["path"]]
    samples["split"] = ""
    return samples


def keep_pairs(samples: pd.DataFrame) -> None:
    """Put back to ``ok`` (in place) every ``duplicate`` that is one half of a pair: a
    tested image and the template it names are a pair, not two copies. A defect-free pair
    (synth's, or a good board scanned twice) is as near its template as a copy is, and
    curation may keep either side as the original; both stay ok, and ``duplicate_of``
    still says how near they are. Needs the columns ``path``, ``status``, ``reason``,
    ``duplicate_of`` and ``template_path``."""
    duplicate = samples["status"] == "duplicate"
    # The tested image points at its template ...
    tested_side = duplicate & (samples["template_path"] != "") & (
        samples["duplicate_of"] == samples["template_path"])
    # ... or the template points at a tested image that names it.
    template_of = dict(zip(samples["path"], samples["template_path"], strict=True))
    template_side = duplicate & pd.Series(
        [template_of.get(original, "") == path
         for path, original in zip(samples["path"], samples["duplicate_of"], strict=True)],
        index=samples.index)
    samples.loc[(tested_side | template_side).to_numpy(), ["status", "reason"]] = ["ok", ""]


def _merged_labels(samples: pd.DataFrame, inputs: MergeInputs) -> pd.DataFrame:
    """Every source's labels under the build-wide ids of ``samples`` (labels of images
    that are not in it are dropped)."""
    new_id = {(s, o): n for s, o, n in zip(samples["source"], samples["old_id"],
                                           samples["sample_id"], strict=True) if o == o and o}
    label_parts = []
    for name, dataset in inputs.datasets():
        labels = dataset.labels.copy()
        labels["sample_id"] = [new_id.get((name, i), "") for i in labels["sample_id"]]
        label_parts.append(labels[labels["sample_id"] != ""])
    return pd.concat(label_parts, ignore_index=True) if label_parts else empty_labels()


# --- split -------------------------------------------------------------------------------


def split_params(recipe: Recipe) -> SplitParams:
    return SplitParams(ratios=recipe.split.ratios, seed=recipe.seed_of(recipe.split.seed),
                       group_by=("source_group", *recipe.split.group_by))


def assign_splits(samples: pd.DataFrame, labels: pd.DataFrame, classes: list[str],
                  recipe: Recipe) -> tuple[pd.DataFrame, dict]:
    """The samples with ``split`` set, and the split report with the synthetic policy.

    ``synthetic: auto`` (the default): when real images carry defect labels, only the real
    images are split (val and test stay real) and each synthetic image goes to train,
    unless its leakage group (its board) has a real image in val or test: then it is left
    out of every split (counted as ``synthetic_held_back``), never put beside its own board.
    With no real defects, everything is split by leakage group (board), so no board is on
    two sides. ``train`` always does the former, ``all`` always the latter.
    """
    params = split_params(recipe)
    samples = samples.reset_index(drop=True)
    synthetic = samples["synthetic"].fillna(False).astype(bool).to_numpy()
    real_ok = (~synthetic) & (samples["status"] == "ok").to_numpy()
    real_defects = bool(labels["sample_id"].isin(samples.loc[real_ok, "sample_id"]).any())
    setting = recipe.split.synthetic
    mode = setting if setting != "auto" else ("train" if real_defects else "all")
    held_back = 0
    if mode == "all" or not synthetic.any():
        result = split_samples(samples, labels, classes, params)
        samples = result.samples
        note = ("no real defect labels: real and synthetic images are split together, by "
                "leakage group (each board with every image drawn on it stays on one side)"
                if not real_defects else "real and synthetic images are split together, by "
                "leakage group")
    elif not real_ok.any():
        samples = samples.copy()
        usable = synthetic & samples["status"].isin(["ok", "duplicate"]).to_numpy()
        samples["split"] = np.where(usable, "train", "")
        result = None
        note = "no real images: every synthetic image is in train; val and test are empty"
    else:
        real = samples[~synthetic]
        real_labels = labels[labels["sample_id"].isin(real["sample_id"])]
        result = split_samples(real, real_labels, classes, params)
        split_of = dict(zip(result.samples["sample_id"], result.samples["split"], strict=True))
        samples = samples.copy()
        samples["split"] = samples["sample_id"].map(split_of).fillna("")
        groups = leakage_groups(samples, params.group_by)
        evaluation = set(groups[samples["split"].isin(["val", "test"]).to_numpy()])
        usable = synthetic & samples["status"].isin(["ok", "duplicate"]).to_numpy()
        blocked = usable & np.isin(groups, list(evaluation))
        samples.loc[usable & ~blocked, "split"] = "train"
        held_back = int(blocked.sum())
        note = ("real defect labels exist: real images are split by leakage group and "
                "synthetic images go to train only (val and test stay real)")
        if held_back:
            note += (f"; {held_back} synthetic images drawn on boards held out for val/test "
                     f"are in no split")
    report = dict(result.report) if result is not None else {
        "command": "split", "parameters": params.model_dump(mode="json"),
        "method": "synthetic images to train", "splits": {}}
    report["synthetic_policy"] = {"setting": setting, "applied": mode,
                                  "real_defects": real_defects, "note": note,
                                  "synthetic_held_back": held_back}
    if mode == "train" and result is not None:
        report["counts_cover"] = "real images only (synthetic images are all in train)"
    return samples, report


def _copy_dataset(src: Path, folder: Path, image_root: str, extra: tuple[str, ...] = ()) -> None:
    for name in (SAMPLES_PARQUET, SAMPLES_CSV, LABELS_PARQUET, LABELS_CSV, *extra):
        if (src / name).is_file():
            copy_file(src / name, folder / name)
    info = read_info(src)
    info.image_root = image_root
    write_json(folder / DATASET_JSON, info.model_dump(mode="json"))


def run_split(ctx: BuildContext, folder: Path) -> dict:
    recipe: Recipe = ctx.recipe
    dataset = load(ctx.stage_dir("merge"))
    try:
        samples, report = assign_splits(dataset.samples, dataset.labels, dataset.info.classes,
                                        recipe)
    except ValueError as err:
        raise BuildError(f"split: {err} (recipe: split.ratios, split.group_by, or more "
                         f"images/boards)") from err
    info = dataset.info.model_copy()
    info.image_root = "../merge/images"
    info.split = {**split_params(recipe).model_dump(mode="json", exclude={"reshuffle"}),
                  "method": report["method"],
                  "synthetic": report["synthetic_policy"]["applied"],
                  "pcbforge_version": __version__}
    save(Dataset(folder, samples, dataset.labels, info))
    write_json(folder / SPLIT_REPORT, {**report, "dataset": "."})
    counts = samples.loc[samples["split"] != "", "split"].value_counts()
    return {name: int(counts.get(name, 0)) for name in SPLIT_NAMES} | {
        "synthetic": report["synthetic_policy"]["applied"],
        "held_back": report["synthetic_policy"]["synthetic_held_back"]}


# --- audit -------------------------------------------------------------------------------


def run_audit(ctx: BuildContext, folder: Path) -> dict:
    from pcbforge.audit import audit

    _copy_dataset(ctx.stage_dir("split"), folder, "../merge/images", (SPLIT_REPORT,))
    with ctx.engine() as engine:
        report = audit(folder, group_by=split_params(ctx.recipe).group_by,
                       workers=ctx.workers, progress=ctx.progress, engine=engine)
    return {"clean": report["clean"], "leaks": report["leaks"],
            "images_checked": report["images_checked"]}


# --- qa ----------------------------------------------------------------------------------


def run_qa_stage(ctx: BuildContext, folder: Path) -> dict:
    """``pcbforge qa`` of the audited dataset: a copy of the audit stage's tables (the
    images stay in the merge stage) with ``qa.json``, ``qa.parquet``/``.csv``,
    ``qa_registration.parquet`` and ``qa/crops/`` added, for the export stage to publish."""
    from pcbforge.qa.runner import WORKER_MODULES, run_qa

    _copy_dataset(ctx.stage_dir("audit"), folder, "../merge/images", (SPLIT_REPORT, AUDIT_JSON))
    recipe: Recipe = ctx.recipe
    with ctx.engine(preload=WORKER_MODULES) as engine:
        report = run_qa(folder, params=recipe.qa.params(), workers=ctx.workers,
                        engine=engine, progress=ctx.progress, seed=recipe.seed)
    registration = report.get("registration") or {}
    return {"pairs": report.get("pairs", 0), "findings": report.get("findings", 0),
            "misregistered": registration.get("misregistered", 0)}


def dataset_stage(recipe: Recipe) -> str:
    """The last stage that holds the whole dataset (tables, split, audit, QA): the one
    the export stage publishes and the report reads."""
    return "qa" if recipe.qa.enabled else "audit"


def _publish_qa(published: Path, out: Path) -> None:
    """The QA files of the stage ``published`` into the build folder ``out`` (each file
    atomically, ``qa/`` swapped in whole); without them (``qa.enabled: false``) those of
    an earlier build are removed, since they describe a dataset that is no longer there."""
    from pcbforge.core.output import recover_output, swapped_in

    for name in QA_FILES:
        if (published / name).is_file():
            copy_file(published / name, out / name)
        else:
            (out / name).unlink(missing_ok=True)
    target = out / QA_FOLDER
    recover_output(target)  # what a publication killed in its swap left (the build's lock)
    if (published / QA_FOLDER).is_dir():
        with swapped_in(target) as staging:
            shutil.copytree(published / QA_FOLDER, staging, dirs_exist_ok=True)
    elif target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)


# --- export ------------------------------------------------------------------------------


def run_export(ctx: BuildContext, folder: Path) -> dict:
    """Publish the dataset (with its audit and QA) into the build folder, then write each
    export format.

    The formats are written from the last dataset stage's copy (:func:`dataset_stage`):
    the build folder itself is refused by the dataset readers until the build is done
    (its running marker), and the two hold the same tables and images."""
    from pcbforge.core.progress import progress_bar
    from pcbforge.pipeline.export import export_dataset

    recipe: Recipe = ctx.recipe
    published = ctx.stage_dir(dataset_stage(recipe))
    _copy_dataset(published, ctx.out, MERGED_IMAGES, (SPLIT_REPORT, AUDIT_JSON))
    _publish_qa(published, ctx.out)
    folder.mkdir(parents=True, exist_ok=True)
    for old in sorted(folder.iterdir()):  # every format is written afresh
        shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()
    written = {}
    with progress_bar(ctx.progress, "export", len(recipe.export.formats)) as advance:
        for fmt in recipe.export.formats:
            report = export_dataset(published, fmt, folder / fmt,
                                    include_status=tuple(recipe.export.include_status),
                                    templates=recipe.export.templates)
            _name_dataset(folder / fmt, published, ctx.out)
            written[fmt] = sum(part.get("images", part.get("written", 0))
                               for part in report["splits"].values())
            advance()
    return {"formats": written}


def _name_dataset(export: Path, made_from: Path, dataset: Path) -> None:
    """The export's report names the dataset it was made from: the build folder, where
    the published dataset is, not the stage copy that was read."""
    path = export / "export_report.json"
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if report.get("dataset") == str(made_from):
        write_json(path, {**report, "dataset": str(dataset)})


# --- report ------------------------------------------------------------------------------


def run_report(ctx: BuildContext, folder: Path) -> dict:
    from pcbforge.pipeline.report import write_report

    # The tables of the published stage: the same as the build folder's, which the
    # dataset readers refuse until the build is done (see run_export).
    # In place: the build holds the folder's lock, and its running marker covers a kill.
    report = write_report(ctx.out, ctx.recipe.report, progress=ctx.progress,
                          dataset=load(ctx.stage_dir(dataset_stage(ctx.recipe))),
                          staged=False)
    return {"plots": len(report["plots"]), "clean": (report.get("audit") or {}).get("clean")}


# --- the plan ----------------------------------------------------------------------------


def plan(recipe: Recipe) -> list[Stage]:
    """The stages of a build, in order, with what each reads and what shapes it."""
    curate_config = recipe.curate.model_dump(mode="json")
    stages = []
    for source in recipe.sources:
        files = None
        if source.kind != "procedural":
            files = partial(_source_digest, source)
        config = {"source": source.model_dump(mode="json"),
                  "seed": recipe.seed_of(getattr(source, "seed", None)),
                  "curate": curate_config}
        if source.kind not in ("procedural", "folder"):  # its label names: a new map re-runs it
            config["classes"] = recipe.classes.model_dump(mode="json")
        stages.append(Stage(
            name=f"source-{source.name}", title=f"source {source.name} ({source.kind})",
            output=f"{STAGES_DIR}/source-{source.name}",
            run=lambda ctx, folder, s=source: run_source(s, ctx, folder),
            config=config, files=files))
    names = [f"source-{s.name}" for s in recipe.sources]
    synth_inputs: tuple[str, ...] = ()
    if recipe.synth.enabled:
        synth_inputs = tuple(f"source-{n}" for n in recipe.board_sources())
        if recipe.synth.balance == "fill":
            synth_inputs += tuple(f"source-{s.name}" for s in recipe.sources
                                  if s.kind not in ("procedural", "folder")
                                  and f"source-{s.name}" not in synth_inputs)
        stages.append(Stage(
            name="synth", title="synthetic defects", output=f"{STAGES_DIR}/synth",
            run=run_synth, inputs=synth_inputs,
            config={"synth": recipe.synth.model_dump(mode="json"),
                    "seed": recipe.seed_of(recipe.synth.seed),
                    # A new evaluation of the same name draws again.
                    **({"evaluation_weights": evaluation_weights(recipe)}
                       if recipe.synth.balance == "from-evaluation" else {})}))
    merge_inputs = tuple(names) + (("synth",) if recipe.synth.enabled else ())
    stages += [
        Stage(name="merge", title="merge and curate", output=f"{STAGES_DIR}/merge",
              run=run_merge, inputs=merge_inputs, config={"curate": curate_config}),
        Stage(name="split", title="split", output=f"{STAGES_DIR}/split", run=run_split,
              inputs=("merge",), config={"split": recipe.split.model_dump(mode="json"),
                                         "seed": recipe.seed_of(recipe.split.seed)}),
        Stage(name="audit", title="audit", output=f"{STAGES_DIR}/audit", run=run_audit,
              inputs=("split",), config={}),
    ]
    if recipe.qa.enabled:
        stages.append(Stage(name="qa", title="qa", output=f"{STAGES_DIR}/qa", run=run_qa_stage,
                            inputs=("audit",), config={"qa": recipe.qa.model_dump(mode="json"),
                                                       "seed": recipe.seed}))
    published = dataset_stage(recipe)
    stages += [
        # Reads the qa stage when there is one: turning QA on or off, or changing its
        # thresholds, publishes again (and so writes the formats again).
        Stage(name="export", title="export", output="export", run=run_export,
              inputs=(published,), config=recipe.export.model_dump(mode="json"),
              staged=False,
              also=(SAMPLES_PARQUET, LABELS_PARQUET, DATASET_JSON, AUDIT_JSON,
                    *((QA_JSON, QA_PARQUET) if recipe.qa.enabled else ()),
                    *(f"export/{fmt}" for fmt in recipe.export.formats))),
        # The report shows the whole recipe (its name, every section).
        Stage(name="report", title="report", output="report", run=run_report,
              inputs=("export",), config=recipe.model_dump(mode="json"),
              staged=False, also=("report.html", "report.json")),
    ]
    return stages


def write_recipe_copy(ctx: BuildContext) -> bool:
    """Write ``recipe.yaml`` into the build folder; ``True`` when its text changed."""
    from pcbforge.core.files import atomic_write

    text = recipe_yaml(ctx.recipe)
    path = ctx.out / RECIPE_COPY
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, "utf-8"))
    return True
