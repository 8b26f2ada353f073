"""The orchestration layer: commands that compose several parts, so no part imports
another.

* :mod:`pcbforge.pipeline.ingest`: ``import`` (DeepPCB, COCO, YOLO, VOC) = curation of
  every file + the labels joined on.
* :mod:`pcbforge.pipeline.export`: ``export`` to COCO, YOLO, VOC or DeepPCB.
* :mod:`pcbforge.pipeline.classes`: ``classes``, a dataset's class vocabulary as a report.
* ``build(out, recipe)`` (here): the whole pipeline from one recipe, resumable, with a
  report: sources -> synth -> merge (curate) -> split -> audit -> qa -> export -> report (see
  :mod:`pcbforge.pipeline.stages`), skipping every stage whose inputs did not change
  since it last finished (see :mod:`pcbforge.pipeline.runner`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pcbforge.core.output import OutputLock, recover_output
from pcbforge.pipeline.classes import CLASSES_JSON, class_report
from pcbforge.pipeline.export import EXPORT_FORMATS, export_dataset
from pcbforge.pipeline.ingest import (
    LABELLED_FORMATS,
    ImportResult,
    SourceError,
    import_deeppcb,
    import_labelled,
    read_labelled,
)
from pcbforge.pipeline.recipe import Recipe, RecipeError, ReportSection, load_recipe
from pcbforge.pipeline.runner import (
    BUILD_DIR,
    RUNNING_MARKER,
    BuildContext,
    BuildError,
    StageResult,
    remove_leftovers,
    remove_running_marker,
    remove_unplanned,
    run_stages,
    write_last_run,
    write_running_marker,
)


@dataclass
class BuildResult:
    out: Path
    stages: list[StageResult]
    report: dict = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)

    @property
    def ran(self) -> list[str]:
        return [s.name for s in self.stages if s.ran]


def _check_out(out: Path, recipe: Recipe) -> None:
    if out.exists() and not out.is_dir():
        raise BuildError(f"--out {out} is a file")
    if out.is_dir() and any(out.iterdir()) and not (out / BUILD_DIR).is_dir():
        raise BuildError(f"--out {out} exists, is not empty and is not a pcbforge build; "
                         f"refusing to write into it")
    for source in recipe.sources:
        path = getattr(source, "path", None)
        if path is None:
            continue
        path = Path(path).resolve()
        real = out.resolve()
        if real == path or path in real.parents:
            raise BuildError(f"--out {out} is inside source {source.name} ({path}); "
                             f"choose another place")
        if real in path.parents:
            raise BuildError(f"source {source.name} ({path}) is inside --out {out}; "
                             f"choose another place")


def build(out: Path | str, recipe: Recipe | None = None, *, workers: int = 1,
          progress: bool = False, console=None, on_stage=None, engine: str = "local",
          scheduler: str | None = None) -> BuildResult:
    """Build the dataset folder ``out`` from ``recipe`` (default: the embedded one).

    ``workers``: processes for the per-image work (1: all in this process).
    ``engine``/``scheduler``: where it runs (``local``, or ``dask`` on the cluster at
    ``scheduler`` / ``$PCBFORGE_SCHEDULER``, else a LocalCluster of ``workers``); the run
    opens one engine, used by every stage that runs, and the output is the same bytes
    either way.
    ``on_stage(number, stage, event, result)`` is told when each stage starts, is skipped
    or is done.

    Holds the writer lock of ``out`` for the whole run: raises
    :class:`~pcbforge.core.OutputBusyError` when another process (a build, or any other
    command) writes it. While it runs, and after a run that was killed or failed midway,
    ``out/.build/running.json`` tells the dataset readers to refuse the folder.
    """
    import json

    from pcbforge.pipeline.stages import plan, write_recipe_copy

    out = Path(out).absolute()
    recipe = recipe if recipe is not None else load_recipe()
    if workers < 1:
        raise BuildError(f"workers must be >= 1, got {workers}")
    _check_out(out, recipe)
    context = BuildContext(out, recipe, workers=workers, progress=progress, engine_kind=engine,
                           scheduler=scheduler)
    if console is not None:
        context.console = console
    stages = plan(recipe)
    with OutputLock(out, command="build"):
        # What other commands' killed runs left beside the folder (a folder parked by a
        # swap goes back first); then the checks again, now that no writer can change it.
        recover_output(out)
        _check_out(out, recipe)
        out.mkdir(parents=True, exist_ok=True)
        remove_leftovers(context, stages)
        earlier = write_running_marker(out)
        try:
            removed = remove_unplanned(context, stages)
            context.touched = bool(removed) or write_recipe_copy(context)
            with context.run_engine():  # one engine for every stage of the run
                results = run_stages(context, stages, on_stage)
            write_last_run(context, results)
        except BaseException:
            # Nothing a reader sees changed (a first stage failed before its swap): the
            # previous complete build stays readable. Otherwise the marker stays.
            if not earlier and not context.touched:
                remove_running_marker(out)
            raise
        remove_running_marker(out)
    try:
        report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        report = {}
    return BuildResult(out, results, report, removed)


def report_settings(dataset: Path | str) -> ReportSection:
    """The ``report`` section a dataset folder's report is written with: that of the
    recipe a build left in it (``recipe.yaml``), else the defaults. Raises
    :class:`RecipeError` naming the file when that recipe cannot be read."""
    import yaml
    from pydantic import ValidationError

    recipe = Path(dataset) / "recipe.yaml"
    if not recipe.is_file():
        return ReportSection()
    try:
        loaded = yaml.safe_load(recipe.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise RecipeError(f"{recipe}: not valid YAML: {getattr(err, 'problem', None) or err}"
                          f"{where}") from err
    except OSError as err:
        raise RecipeError(f"{recipe}: cannot be read: {err.strerror or err}") from err
    if not isinstance(loaded, dict):
        raise RecipeError(f"{recipe}: expected a mapping of recipe sections, got "
                          f"{type(loaded).__name__}")
    try:
        return ReportSection.model_validate(loaded.get("report") or {})
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in ("report", *first["loc"]))
        raise RecipeError(f"{recipe}: {where}: {first['msg']}") from err


__all__ = ["CLASSES_JSON", "EXPORT_FORMATS", "LABELLED_FORMATS", "RUNNING_MARKER",
           "BuildError", "BuildResult", "ImportResult", "Recipe", "RecipeError",
           "SourceError", "build", "class_report", "export_dataset", "import_deeppcb",
           "import_labelled", "load_recipe", "read_labelled", "report_settings"]
