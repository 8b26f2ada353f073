"""Run a build's stages in order, skipping those whose inputs did not change.

Each stage has a fingerprint: a hash of its name, its part of the recipe, the pcbforge
version, the fingerprints of the stages it reads and, for a stage that reads user files,
their paths, sizes and modification times. A stage that finished writes a marker
(``DATASET/.build/state/<stage>.json``) holding its fingerprint, last, after its output
is in place; the marker is removed before a stage starts. So a run that is killed never
leaves a stage marked done that is not, and re-running skips exactly the stages whose
marker matches their fingerprint.

The whole run holds the writer lock of the build folder (:class:`pcbforge.core.OutputLock`,
the same lock every command takes), so a second build, or a ``curate``/``split`` into the
same folder, is refused while it runs. Stage outputs under ``stages/`` are built in the
hidden stage folder of :mod:`pcbforge.core.output` and swapped into place; what killed
runs left there is removed when the next build starts. JSON files in a stage's output
are settled before the swap: the staging path is replaced by the final one, and run
times and worker counts (``timings``, ``seconds``, ``workers``...) are dropped, so a
stage's output depends on its inputs only and an interrupted build that is run again
gives the same bytes as one that was not.

The dataset files at the top of the build folder (samples, labels, report...) are
replaced one by one by the last stages, so a build that runs writes the marker
``.build/running.json`` first and removes it only once every stage is done: a folder
holding it is refused by the dataset readers (its files may come from two builds). A
build that fails before it changed anything a reader sees removes it again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from pcbforge import __version__
from pcbforge.core.errors import OutputBusyError, storage_error
from pcbforge.core.files import atomic_write, write_json
from pcbforge.core.output import holder_record, recover_output, swapped_in
from pcbforge.datasets.dataset import UNFINISHED_MARKER
from pcbforge.engine import Engine, open_engine

#: Bump when the layout of a build's outputs changes: every stage then runs again.
BUILD_FORMAT = 1
BUILD_DIR = ".build"
STATE_DIR = f"{BUILD_DIR}/state"
#: Present while a build changes the folder, and after one that was killed or failed
#: midway: dataset readers refuse a folder holding it (see the module docstring).
RUNNING_MARKER = UNFINISHED_MARKER  # .build/running.json: the readers refuse the folder
LAST_RUN = f"{BUILD_DIR}/last_run.json"
STAGES_DIR = "stages"
#: Keys of how a run went (times, worker processes) in the reports and provenance that
#: stages write: dropped when a stage settles, since they are not inputs of its output.
RUN_KEYS = frozenset({"timings", "images_per_second", "import_s", "seconds", "total_s",
                      "workers", "engine"})
#: Modules every worker of a build's engine imports before its first task: the union of
#: what the stages' tasks need (curation's inspection and duplicate search, procedural
#: boards and synthesis), so that the one engine of the run starts with all of them.
WORKER_MODULES = ("numpy", "cv2", "pcbforge.curate.inspect", "pcbforge.curate.dedupe",
                  "pcbforge.synth.compose")


class BuildError(RuntimeError):
    """A build that cannot go on; the message says which stage and why."""


@dataclass
class BuildContext:
    """What every stage gets: where the build is, its recipe and how to run work.

    ``engine()`` is the one place that decides where per-item work runs: a local process
    pool, or a Dask cluster (``engine_kind="dask"``, ``scheduler`` or
    ``$PCBFORGE_SCHEDULER``, else a ``LocalCluster``). Outputs do not depend on it. Within
    :meth:`run_engine` (the whole of a ``build``) every stage gets the same engine.
    """

    out: Path
    recipe: object  # pcbforge.pipeline.recipe.Recipe
    workers: int = 1
    progress: bool = False
    console: Console = field(default_factory=lambda: Console(stderr=True))
    engine_kind: str = "local"
    scheduler: str | None = None
    #: Set once this run changed what a reader of the folder sees (a stage finished, or
    #: a stage that writes in place started): a failure then keeps the running marker.
    touched: bool = False

    def stage_dir(self, name: str) -> Path:
        return self.out / STAGES_DIR / name

    #: The started engine of the run and what closes it (see run_engine).
    _engine: Engine | None = field(default=None, init=False, repr=False)
    _engines: ExitStack | None = field(default=None, init=False, repr=False)

    def engine(self, preload: tuple[str, ...] = ()) -> AbstractContextManager[Engine]:
        """The engine for a stage's per-item work: ``with ctx.engine() as engine: ...``.

        Within :meth:`run_engine` it is the run's one engine, started on first use with
        :data:`WORKER_MODULES` and ``preload`` loaded by its workers (a module a later
        stage needs beyond those is imported by the workers on first use), and leaving
        the ``with`` does not close it. Outside, a new engine for this use only."""
        if self._engines is None:
            return open_engine(self.engine_kind, self.workers, self.scheduler,
                               preload=preload)
        if self._engine is None:
            modules = tuple(dict.fromkeys((*WORKER_MODULES, *preload)))
            self._engine = self._engines.enter_context(open_engine(
                self.engine_kind, self.workers, self.scheduler, preload=modules))
        return nullcontext(self._engine)

    @contextmanager
    def run_engine(self) -> Iterator[None]:
        """One engine for every stage that runs inside: started when a stage first asks
        for it (a run whose stages are all skipped starts none), closed on leaving, its
        workers stopped at once when leaving on an error."""
        if self._engines is not None:
            raise RuntimeError("the run's engine is already open")
        try:
            with ExitStack() as engines:
                self._engines = engines
                yield
        finally:
            self._engines = self._engine = None


@dataclass
class Stage:
    """One step of a build.

    ``run(ctx, folder)`` fills ``folder`` and returns a short summary dict (``line`` is
    printed). With ``staged`` the folder is a hidden staging folder renamed onto
    ``output`` afterwards; otherwise the stage writes its outputs in place itself (each
    file or folder atomically) and ``folder`` is ``output``.
    """

    name: str
    title: str
    output: str  # relative to the build folder
    run: Callable[[BuildContext, Path], dict]
    inputs: tuple[str, ...] = ()
    config: object = None  # JSON-able: the part of the recipe that shapes the output
    files: Callable[[], str] | None = None  # digest of the user files the stage reads
    staged: bool = True
    #: Further paths (relative to the build folder) that must exist for a skip.
    also: tuple[str, ...] = ()


@dataclass
class StageResult:
    name: str
    title: str
    ran: bool
    seconds: float
    summary: dict


def fingerprint(stage: Stage, upstream: dict[str, str]) -> str:
    payload = {
        "build_format": BUILD_FORMAT, "pcbforge_version": __version__, "stage": stage.name,
        "config": stage.config, "inputs": {name: upstream[name] for name in stage.inputs},
        "files": stage.files() if stage.files is not None else None,
    }
    text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def files_digest(root: Path, only: list[str] | None = None) -> str:
    """Hash of every file's relative path, size and modification time under ``root``
    (or under its entries ``only``), following folder links once."""
    root = Path(root)
    digest = hashlib.sha256()

    def add(path: Path, stat: os.stat_result | None) -> None:
        name = os.fsencode(path.relative_to(root) if path != root else path.name)
        facts = f"{stat.st_size}\0{stat.st_mtime_ns}" if stat is not None else "missing"
        digest.update(name + b"\0" + facts.encode() + b"\n")

    if not root.exists():
        raise BuildError(f"{root} does not exist")
    if root.is_file():
        add(root, root.stat())
        return digest.hexdigest()
    starts = [root / name for name in only] if only else [root]
    visited: set[str] = set()
    for start in starts:
        if start.is_file():
            add(start, start.stat())
            continue
        if not start.is_dir():
            raise BuildError(f"{start} does not exist")
        for folder, dirs, files in os.walk(start, followlinks=True):
            real = os.path.realpath(folder)
            if real in visited:
                dirs[:] = []
                continue
            visited.add(real)
            dirs.sort()
            for name in sorted(files):
                path = Path(folder) / name
                try:
                    add(path, path.stat())
                except OSError:  # a dangling link: its name still counts
                    add(path, None)
    return digest.hexdigest()


def settle_json(staging: Path, final: Path) -> None:
    """Rewrite the JSON files written into ``staging``: its path becomes ``final``'s and
    run facts are dropped (see the module docstring). Folder links are not followed."""
    old, new = str(staging), str(final)

    def fix(value):
        if isinstance(value, dict):
            return {k: fix(v) for k, v in value.items() if k not in RUN_KEYS}
        if isinstance(value, list):
            return [fix(v) for v in value]
        if isinstance(value, str) and old in value:
            return value.replace(old, new)
        return value

    for folder, _, files in os.walk(staging):
        for name in files:
            if not name.endswith(".json"):
                continue
            path = Path(folder) / name
            try:
                payload = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            fixed = fix(payload)
            if fixed != payload:
                write_json(path, fixed)


def write_running_marker(out: Path) -> bool:
    """Mark ``out`` as being built (see the module docstring); ``True`` when a marker of
    an earlier build that was killed or failed midway was already there."""
    path = out / RUNNING_MARKER
    earlier = path.exists()
    write_json(path, holder_record("build"))
    return earlier


def remove_running_marker(out: Path) -> None:
    (out / RUNNING_MARKER).unlink(missing_ok=True)


def remove_leftovers(ctx: BuildContext, stages: list[Stage]) -> list[str]:
    """What killed runs left in the build folder, cleaned (call it holding the lock, so no
    live run owns any of it): an output parked by an interrupted swap is put back, stage
    folders, temporary files and nested leftovers of the commands a stage ran are removed.
    Returns what was done."""
    done = []
    for stage in stages:
        done += recover_output(ctx.out / stage.output)
    for folder in (ctx.out, ctx.out / BUILD_DIR, ctx.out / STATE_DIR):
        for leftover in sorted(folder.glob(".*.part")):  # temporary files of atomic writes
            leftover.unlink()
            done.append(f"removed {leftover.relative_to(ctx.out)}")
    stages_dir = ctx.out / STAGES_DIR
    # Only a build writes under stages/, and this one holds the lock: every hidden entry
    # there was left by a run that died (a stage, or a stage's own staged output).
    for leftover in sorted(stages_dir.glob(".*")) if stages_dir.is_dir() else []:
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover)
        else:
            leftover.unlink()
        done.append(f"removed {STAGES_DIR}/{leftover.name}")
    return done


def _marker(ctx: BuildContext, stage: Stage) -> Path:
    return ctx.out / STATE_DIR / f"{stage.name}.json"


def _read_marker(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def run_stages(ctx: BuildContext, stages: list[Stage],
               on_stage: Callable[..., None] | None = None) -> list[StageResult]:
    """Run (or skip) every stage in order; ``on_stage(number, stage, event, result)`` is
    told ``"start"``/``"skip"``/``"done"`` (for progress lines)."""
    prints: dict[str, str] = {}
    results = []
    state = ctx.out / STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    for number, stage in enumerate(stages, start=1):
        prints[stage.name] = fingerprint(stage, prints)
        marker = _marker(ctx, stage)
        done = _read_marker(marker)
        output = ctx.out / stage.output
        present = output.exists() and all((ctx.out / p).exists() for p in stage.also)
        if done and done.get("fingerprint") == prints[stage.name] and present:
            result = StageResult(stage.name, stage.title, False, 0.0, done.get("summary", {}))
            results.append(result)
            if on_stage:
                on_stage(number, stage, "skip", result)
            continue
        marker.unlink(missing_ok=True)
        if on_stage:
            on_stage(number, stage, "start", None)
        if not stage.staged:
            ctx.touched = True  # it writes in place from its first instruction
        started = time.perf_counter()
        try:
            summary = _run_one(ctx, stage, output)
        except (BuildError, OutputBusyError):
            raise
        except Exception as err:
            if storage_error(err) is not None:
                raise  # a full disk, a read-only folder...: the CLI's one line, exit 74
            raise BuildError(f"stage {stage.name} failed: {err}") from err
        seconds = time.perf_counter() - started
        write_json(marker, {"stage": stage.name, "fingerprint": prints[stage.name],
                            "pcbforge_version": __version__, "summary": summary,
                            "seconds": round(seconds, 3)})
        ctx.touched = True
        result = StageResult(stage.name, stage.title, True, seconds, summary)
        results.append(result)
        if on_stage:
            on_stage(number, stage, "done", result)
    return results


def _run_one(ctx: BuildContext, stage: Stage, output: Path) -> dict:
    output.parent.mkdir(parents=True, exist_ok=True)
    if not stage.staged:
        return stage.run(ctx, output) or {}
    # The build holds the lock of the whole folder: the stage protocol without a lock of
    # its own (no lock files under stages/).
    with swapped_in(output) as staging:
        summary = stage.run(ctx, staging) or {}
        settle_json(staging, output)
    return summary


def remove_unplanned(ctx: BuildContext, stages: list[Stage]) -> list[str]:
    """Stage folders and markers of stages the recipe no longer has (a removed source)."""
    planned = {s.name for s in stages}
    removed = []
    state = ctx.out / STATE_DIR
    for marker in sorted(state.glob("*.json")) if state.is_dir() else []:
        if marker.stem not in planned:
            marker.unlink()
            removed.append(marker.stem)
    folder = ctx.out / STAGES_DIR
    planned_outputs = {Path(s.output).name for s in stages
                       if Path(s.output).parent.as_posix() == STAGES_DIR}
    for child in sorted(folder.iterdir()) if folder.is_dir() else []:
        if child.name.startswith("."):
            continue  # leftovers of killed runs: see remove_leftovers
        if child.name not in planned_outputs:
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
            removed.append(child.name)
    return sorted(set(removed))


def write_last_run(ctx: BuildContext, results: list[StageResult]) -> None:
    write_json(ctx.out / LAST_RUN, {
        "pcbforge_version": __version__, "workers": ctx.workers,
        "stages": [{"stage": r.name, "ran": r.ran, "seconds": round(r.seconds, 3),
                    "summary": r.summary} for r in results],
    })


def copy_file(source: Path, target: Path) -> None:
    """Copy one file onto ``target`` atomically."""
    atomic_write(target, lambda tmp: shutil.copyfile(source, tmp))
