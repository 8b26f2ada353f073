"""What every engine shares: the protocol the stages program against, the choice of kind,
its errors, and the default worker count.

Work functions are pure, top-level and picklable, so any engine that can map a function
over a list can run them; results come back in input order. This module imports nothing
heavy: the local path never loads Dask, and :mod:`pcbforge.engine.dask` imports only this.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from enum import Enum
from typing import Protocol, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

#: Where a scheduler address is read from when ``--engine dask`` gets no ``--scheduler``.
SCHEDULER_ENV = "PCBFORGE_SCHEDULER"

#: Most worker processes a command starts when the user does not say.
MAX_DEFAULT_WORKERS = 8


class EngineKind(str, Enum):
    """Where per-file work runs."""

    local = "local"  # a process pool on this machine
    dask = "dask"  # tasks on a dask.distributed cluster


class EngineError(ValueError):
    """Engine options that do not fit together, or a cluster that cannot be reached."""


class WorkerCrashError(RuntimeError):
    """An item killed its worker on every attempt and the caller gave no ``on_crash``."""


class Engine(Protocol):
    """Maps functions over items somewhere: a local pool or a Dask cluster.

    Used as a context manager: entering starts the workers (or connects), leaving stops
    them. ``kind`` is an :class:`EngineKind` value; ``workers`` the worker count.
    """

    kind: str

    @property
    def workers(self) -> int: ...

    def __enter__(self) -> Engine: ...

    def __exit__(self, *exc) -> None: ...

    def describe(self) -> dict:
        """What a run's report records about where it ran."""
        ...

    def map(
        self,
        function: Callable[[Item], Result],
        items: Iterable[Item],
        chunksize: int = 0,
        on_crash: Callable[[Item], Result] | None = None,
    ) -> Iterator[Result]:
        """Yield ``function(item)`` for each item, in input order."""
        ...


def default_workers() -> int:
    """Worker processes to use when the user does not say (all cores, at most 8)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(MAX_DEFAULT_WORKERS, cores or 1))


__all__ = ["MAX_DEFAULT_WORKERS", "SCHEDULER_ENV", "Engine", "EngineError", "EngineKind",
           "WorkerCrashError", "default_workers"]
