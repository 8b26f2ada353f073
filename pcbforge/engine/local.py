"""The local engine: a process pool on this machine (or no pool at all with one worker)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from pcbforge.engine.base import EngineKind

Item = TypeVar("Item")
Result = TypeVar("Result")


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
            self._pool.terminate() if exc and exc[0] else self._pool.close()
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
        (the Dask engine can, see :meth:`pcbforge.engine.dask.DaskEngine.map`).
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


__all__ = ["LocalEngine"]
