"""Where per-item work runs: in this process, a local process pool, or a Dask cluster.

Work functions are pure, top-level and picklable, so any engine that can map
a function over a list can run them. Results come back in input order.

* :class:`LocalEngine`: a process pool on this machine (the default).
* :class:`pcbforge.dask_engine.DaskEngine`: tasks on a ``dask.distributed``
  cluster, an existing one (its scheduler address) or a ``LocalCluster`` started
  for the run. Imported only when asked for, so the local path never loads Dask.

:func:`open_engine` picks one from the ``--engine``/``--scheduler``/``--workers``
options every command shares.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from enum import Enum
from typing import TYPE_CHECKING, TypeVar, Union

if TYPE_CHECKING:
    from pcbforge.dask_engine import DaskEngine

Item = TypeVar("Item")
Result = TypeVar("Result")

#: Where a scheduler address is read from when ``--engine dask`` gets no ``--scheduler``.
SCHEDULER_ENV = "PCBFORGE_SCHEDULER"


class EngineKind(str, Enum):
    """Where per-file work runs."""

    local = "local"  # a process pool on this machine
    dask = "dask"  # tasks on a dask.distributed cluster


class EngineError(ValueError):
    """Engine options that do not fit together, or a cluster that cannot be reached."""


def default_workers() -> int:
    """Worker processes to use when the user does not say (all cores, at most 8)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(8, cores or 1))


def _init_worker() -> None:
    # The pool already uses every core; OpenCV's own threads would only
    # oversubscribe them (measured: resizes ~2x slower with 2 processes).
    import cv2

    cv2.setNumThreads(1)


class LocalEngine:
    """Map functions over items with ``workers`` processes (1 = inline).

    Use as a context manager so several stages share one pool::

        with LocalEngine(2) as engine:
            rows = list(engine.map(inspect, files))
    """

    kind = EngineKind.local.value

    def __init__(self, workers: int = 1, chunksize: int = 4, preload: tuple[str, ...] = ()):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self.chunksize = chunksize
        self.preload = preload
        self._pool = None

    def __enter__(self) -> LocalEngine:
        if self.workers > 1:
            # forkserver: workers start from a clean interpreter, not a fork of
            # a process that may hold threads (progress bars) or open handles.
            context = multiprocessing.get_context("forkserver")
            if self.preload:
                # The fork server imports these once; each worker then starts
                # as a cheap fork of it instead of importing numpy/OpenCV again.
                context.set_forkserver_preload(list(self.preload))
            self._pool = context.Pool(self.workers, initializer=_init_worker)
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.terminate() if exc[0] else self._pool.close()
            self._pool.join()
            self._pool = None

    def describe(self) -> dict:
        """What the run's report records about where it ran."""
        return {"engine": self.kind, "workers": self.workers, "scheduler": None}

    def map(
        self,
        function: Callable[[Item], Result],
        items: Iterable[Item],
        chunksize: int = 0,
        on_crash: Callable[[Item], Result] | None = None,
    ) -> Iterator[Result]:
        """Yield ``function(item)`` for each item, in order.

        Without ``chunksize``, items go to workers in chunks of about 1/16 of
        each worker's share (at most 64): one round trip per item costs as much
        as the work on a small image. ``on_crash`` is accepted for the engines'
        common signature; a pool cannot tell which item killed a worker process
        (the Dask engine can, see :meth:`DaskEngine.map`).
        """
        if self._pool is None:
            if self.workers > 1:
                raise RuntimeError("use LocalEngine as a context manager to start its pool")
            yield from map(function, items)
            return
        if not chunksize:
            items = list(items)
            chunksize = max(self.chunksize, min(64, len(items) // (16 * self.workers)))
        yield from self._pool.imap(function, items, chunksize=chunksize)


Engine = Union[LocalEngine, "DaskEngine"]


def open_engine(
    kind: EngineKind | str = EngineKind.local,
    workers: int = 1,
    scheduler: str | None = None,
    *,
    preload: tuple[str, ...] = (),
    environ: Mapping[str, str] | None = None,
) -> Engine:
    """The engine the shared command options ask for, not yet started (use ``with``).

    ``local``: a pool of ``workers`` processes. ``dask``: the cluster at ``scheduler``,
    else at ``$PCBFORGE_SCHEDULER``, else a ``LocalCluster`` of ``workers`` single-threaded
    worker processes started for the run and closed after it. ``preload``: modules every
    worker imports before its first task.

    Raises :class:`EngineError` for a scheduler given to the local engine, an unknown kind
    or a worker count below 1.
    """
    try:
        kind = EngineKind(kind)
    except ValueError as err:
        valid = ", ".join(k.value for k in EngineKind)
        raise EngineError(f"unknown engine {kind!r}; choose one of {valid}") from err
    if workers < 1:
        raise EngineError(f"workers must be >= 1, got {workers}")
    if kind is EngineKind.local:
        if scheduler:
            raise EngineError(f"--scheduler {scheduler} needs --engine dask")
        return LocalEngine(workers, preload=preload)
    try:
        from pcbforge.dask_engine import DaskEngine
    except ImportError as err:
        raise EngineError(f"--engine dask needs Dask ({err.name} is not installed): "
                          f"pip install 'pcbforge[dask]'") from err

    env = os.environ if environ is None else environ
    return DaskEngine(workers, scheduler=scheduler or env.get(SCHEDULER_ENV) or None,
                      preload=preload)
