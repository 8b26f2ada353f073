"""Helpers shared by the CLI commands: the common options, one-line errors, the help's
layout, and the engine a command opens once per run."""

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
from typer.core import TyperArgument, TyperCommand, TyperGroup
from typer.models import DefaultPlaceholder

from pcbforge.core.errors import EXIT_BUSY, EXIT_STORAGE, OutputBusyError, storage_error
from pcbforge.engine import (
    MAX_DEFAULT_WORKERS,
    SCHEDULER_ENV,
    Engine,
    EngineError,
    EngineKind,
    default_workers,
    open_engine,
)


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """``"1 board"``, ``"2 boards"``: a count and its noun (``plural``: when not ``noun``
    and an ``s``)."""
    return f"{count} {noun}" if count == 1 else f"{count} {plural or noun + 's'}"


#: ``--engine``: shared by every command that maps work over files (see engine_options).
EngineOption = Annotated[EngineKind, typer.Option(
    "--engine", help="Where per-file work runs: local (a process pool on this machine) or "
                     "dask (a Dask cluster: --scheduler, else a LocalCluster of --workers).")]
#: ``--scheduler``: read only with ``--engine dask``.
SchedulerOption = Annotated[str | None, typer.Option(
    "--scheduler", metavar="ADDRESS",
    help=f"Dask scheduler to use with --engine dask, e.g. tcp://10.0.0.5:8786 (default: "
         f"${SCHEDULER_ENV}, else a LocalCluster started for the run).")]
#: ``--workers``: one meaning in every command that maps work over files (see workers_of).
#: ``--format`` of a prediction set (evaluate, mine, untile).
PredictionFormatOption = Annotated[str, typer.Option(
    "--format", "-f", help="coco-results, yolo, deeppcb or pcbforge.")]
WorkersOption = Annotated[int, typer.Option(
    "--workers", show_default=False,
    help=f"Worker processes (default: all cores, at most {MAX_DEFAULT_WORKERS}); 1 runs "
         f"everything in this process.")]


def workers_of(option: int) -> int:
    """The worker count ``--workers`` asks for: 0 (not given) is :func:`default_workers`;
    below 0 exits with one line."""
    if option < 0:
        fail(f"--workers: expected a number of worker processes, at least 1 (or 0 for all "
             f"cores, at most {MAX_DEFAULT_WORKERS}); got {option}")
    return option or default_workers()


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


def apps_of(app: typer.Typer) -> Iterator[typer.Typer]:
    """``app`` and every sub-app below it (``pcbforge import``, ``pcbforge synth``...)."""
    yield app
    for group in app.registered_groups:
        if group.typer_instance is not None:
            yield from apps_of(group.typer_instance)


def guard_commands(app: typer.Typer) -> None:
    """Apply :func:`guarded` to every command of ``app`` and of its sub-apps."""
    for each in apps_of(app):
        # The callback too: a group that runs work itself.
        infos = [*each.registered_commands, each.registered_callback]
        for info in infos:
            if info is not None and info.callback is not None \
                    and not getattr(info.callback, "__wrapped__", None):
                info.callback = guarded(info.callback)


class _TidyHelp:
    """Help and usage lines as a person reads them: arguments by their upper-case name
    (``SRC``, ``[RECIPE]``, not ``{src}``), and no type after a flag (``--verify``, not
    ``--verify <bool>``): a flag takes no value."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        params = super().get_params(ctx)  # with --help, which is made here
        for param in params:
            if isinstance(param, TyperArgument) and param.metavar is None:
                param.metavar = param.name.upper()
            elif getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""  # typer's rich help prints the metavar in the type column
        return params

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                name = param.metavar + ("..." if param.nargs != 1 else "")
                pieces.append(name if param.required else f"[{name}]")
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces


class TidyCommand(_TidyHelp, TyperCommand):
    """A command whose help follows :class:`_TidyHelp`."""


class TidyGroup(_TidyHelp, TyperGroup):
    """A command group whose help follows :class:`_TidyHelp`."""

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        return [*super().collect_usage_pieces(ctx), self.subcommand_metavar]


def tidy_help(app: typer.Typer) -> None:
    """Give every command and group of ``app`` (and of its sub-apps) the tidy help of
    :class:`TidyCommand`/:class:`TidyGroup`, unless it chose its own class."""
    for each in apps_of(app):
        for info in each.registered_commands:
            if info.cls in (None, TyperCommand):
                info.cls = TidyCommand
        if isinstance(each.info.cls, DefaultPlaceholder) or each.info.cls is None:
            each.info.cls = TidyGroup


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
