"""Helpers shared by the CLI commands."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Annotated, NoReturn

import click
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from pcbforge.core.errors import EXIT_BUSY, EXIT_STORAGE, OutputBusyError, storage_error
from pcbforge.engine import SCHEDULER_ENV, Engine, EngineError, EngineKind, open_engine

#: ``--engine``: shared by every command that maps work over files (see engine_options).
EngineOption = Annotated[EngineKind, typer.Option(
    "--engine", help="Where per-file work runs: local (a process pool on this machine) or "
                     "dask (a Dask cluster: --scheduler, else a LocalCluster of --workers).")]
#: ``--scheduler``: read only with ``--engine dask``.
SchedulerOption = Annotated[str | None, typer.Option(
    "--scheduler", metavar="ADDRESS",
    help=f"Dask scheduler to use with --engine dask, e.g. tcp://10.0.0.5:8786 [default: "
         f"${SCHEDULER_ENV}, else a LocalCluster started for the run].")]


def fail(message: object, code: int = 2) -> NoReturn:
    """Print one clear error line on stderr (never wrapped) and exit with ``code``."""
    Console(stderr=True).print(f"[bold red]error:[/] {escape(str(message))}", soft_wrap=True,
                               highlight=False)
    raise typer.Exit(code=code)


def guarded(command: Callable) -> Callable:
    """``command`` with the errors every command shares turned into one line each:
    another writer on the output folder (exit 75) and a storage failure (disk full,
    read-only file system, permission denied... exit 74), wherever it happened, in this
    process or a worker's."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except OutputBusyError as err:
            fail(err, code=EXIT_BUSY)
        except Exception as err:
            found = storage_error(err)
            if found is None:
                raise
            fail(found, code=EXIT_STORAGE)

    return run


def guard_commands(app: typer.Typer) -> None:
    """Apply :func:`guarded` to every command of ``app`` and of its sub-apps."""
    for info in app.registered_commands:
        if info.callback is not None and not getattr(info.callback, "__wrapped__", None):
            info.callback = guarded(info.callback)
    callback = app.registered_callback
    if callback is not None and callback.callback is not None \
            and not getattr(callback.callback, "__wrapped__", None):
        callback.callback = guarded(callback.callback)  # a group that runs work itself
    for group in app.registered_groups:
        if group.typer_instance is not None:
            guard_commands(group.typer_instance)


def validation_message(err: ValidationError) -> str:
    """One line for the first problem of a pydantic model built from CLI options."""
    first = err.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"invalid option {where}: {first['msg']} (got {first.get('input')!r})"


@contextmanager
def engine_options(engine: EngineKind | str, workers: int, scheduler: str | None,
                   preload: tuple[str, ...] = ()) -> Iterator[Engine]:
    """The started engine that ``--engine``/``--scheduler``/``--workers`` ask for, closed on
    exit; options that do not fit, or a cluster that cannot be reached, exit with one line.

    A command adopts the options with two parameters and one ``with``::

        engine: EngineOption = EngineKind.local,
        scheduler: SchedulerOption = None,
        ...
        with engine_options(engine, workers or default_workers(), scheduler) as run:
            result = do_the_work(..., engine=run)
    """
    with ExitStack() as stack:
        try:
            started = stack.enter_context(open_engine(engine, workers, scheduler,
                                                      preload=preload))
        except EngineError as err:
            fail(err)
        yield started


def engine_line(where: dict | None) -> str:
    """One line for a summary: where the work ran."""
    if not where or where.get("engine") != "dask":
        workers = (where or {}).get("workers")
        return f"engine: local ({workers} worker processes)" if workers else "engine: local"
    return (f"engine: dask ({where.get('cluster')}, {where.get('workers')} workers, scheduler "
            f"{where.get('scheduler')})")
