"""Where per-item work runs: in this process, or in a local process pool.

Work functions are pure, top-level and picklable, so any engine that can map
a function over a list can run them (a Dask engine is planned to slot in
here). Results come back in input order.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


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

    def map(
        self, function: Callable[[Item], Result], items: Iterable[Item], chunksize: int = 0
    ) -> Iterator[Result]:
        """Yield ``function(item)`` for each item, in order.

        Without ``chunksize``, items go to workers in chunks of about 1/16 of
        each worker's share (at most 64): one round trip per item costs as much
        as the work on a small image.
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
