"""Run a build's stages in order, skipping those whose inputs did not change.

Each stage has a fingerprint: a hash of its name, its part of the recipe, the pcbforge
version, the fingerprints of the stages it reads and, for a stage that reads user files,
their paths, sizes and modification times. A stage that finished writes a marker
(``DATASET/.build/state/<stage>.json``) holding its fingerprint, last, after its output
is in place; the marker is removed before a stage starts. So a run that is killed never
leaves a stage marked done that is not, and re-running skips exactly the stages whose
marker matches their fingerprint.

Stage outputs under ``stages/`` are built in a hidden sibling (``.NAME.partial-PID``) and
renamed into place; partial folders of runs that died are removed when the stage runs
again. JSON files in a stage's output are settled before the rename: the staging path is
replaced by the final one, and run times and worker counts (``timings``, ``seconds``,
``workers``...) are dropped, so a stage's output depends on its inputs only and an
interrupted build that is run again gives the same bytes as one that was not.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from pcbforge import __version__
from pcbforge.core.files import atomic_write, write_json
from pcbforge.core.output import process_alive, recover_output, swap_into_place
from pcbforge.engine import Engine, open_engine

#: Bump when the layout of a build's outputs changes: every stage then runs again.
BUILD_FORMAT = 1
BUILD_DIR = ".build"
STATE_DIR = f"{BUILD_DIR}/state"
LOCK_FILE = f"{BUILD_DIR}/lock"
LAST_RUN = f"{BUILD_DIR}/last_run.json"
STAGES_DIR = "stages"
#: Keys of how a run went (times, worker processes) in the reports and provenance that
#: stages write: dropped when a stage settles, since they are not inputs of its output.
RUN_KEYS = frozenset({"timings", "images_per_second", "import_s", "seconds", "total_s",
                      "workers", "engine"})


class BuildError(RuntimeError):
    """A build that cannot go on; the message says which stage and why."""


@dataclass
class BuildContext:
    """What every stage gets: where the build is, its recipe and how to run work.

    ``engine()`` is the one place that decides where per-item work runs: a local process
    pool, or a Dask cluster (``engine_kind="dask"``, ``scheduler`` or
    ``$PCBFORGE_SCHEDULER``, else a ``LocalCluster``). Outputs do not depend on it.
    """

    out: Path
    recipe: object  # pcbforge.build.recipe.Recipe
    workers: int = 1
    progress: bool = False
    console: Console = field(default_factory=lambda: Console(stderr=True))
    engine_kind: str = "local"
    scheduler: str | None = None

    def stage_dir(self, name: str) -> Path:
        return self.out / STAGES_DIR / name

    def engine(self, preload: tuple[str, ...] = ()) -> Engine:
        """A new engine for one stage (use it as a context manager)."""
        return open_engine(self.engine_kind, self.workers, self.scheduler, preload=preload)


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


class BuildLock:
    """One build at a time per folder: ``.build/lock`` holds the running build's pid."""

    def __init__(self, out: Path):
        self.path = out / LOCK_FILE

    def __enter__(self) -> BuildLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                handle = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    pid = int(self.path.read_text().strip() or 0)
                except (OSError, ValueError):
                    pid = 0
                if pid and pid != os.getpid() and process_alive(pid):
                    raise BuildError(f"another build (pid {pid}) is writing "
                                     f"{self.path.parents[1]}; wait for it or stop it") from None
                self.path.unlink(missing_ok=True)  # left by a build that died
                continue
            with os.fdopen(handle, "w") as lock:
                lock.write(str(os.getpid()))
            return self
        raise BuildError(f"cannot take the build lock {self.path}")

    def __exit__(self, *exc) -> None:
        self.path.unlink(missing_ok=True)


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
        started = time.perf_counter()
        try:
            summary = _run_one(ctx, stage, output)
        except BuildError:
            raise
        except Exception as err:
            raise BuildError(f"stage {stage.name} failed: {err}") from err
        seconds = time.perf_counter() - started
        write_json(marker, {"stage": stage.name, "fingerprint": prints[stage.name],
                            "pcbforge_version": __version__, "summary": summary,
                            "seconds": round(seconds, 3)})
        result = StageResult(stage.name, stage.title, True, seconds, summary)
        results.append(result)
        if on_stage:
            on_stage(number, stage, "done", result)
    return results


def _run_one(ctx: BuildContext, stage: Stage, output: Path) -> dict:
    if not stage.staged:
        output.parent.mkdir(parents=True, exist_ok=True)
        return stage.run(ctx, output) or {}
    output.parent.mkdir(parents=True, exist_ok=True)
    recover_output(output)
    staging = output.parent / f".{output.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        summary = stage.run(ctx, staging) or {}
        settle_json(staging, output)
        swap_into_place(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
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
            continue  # partial folders: removed by their own stage (alive runs kept)
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
