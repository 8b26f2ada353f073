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
    return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1))


class LocalEngine:
    """Map a function over items with ``workers`` processes (1 = inline)."""

    def __init__(self, workers: int = 1, chunksize: int = 8):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self.chunksize = chunksize

    def map(
        self,
        function: Callable[[Item], Result],
        items: Iterable[Item],
        on_result: Callable[[Result], None] | None = None,
    ) -> Iterator[Result]:
        """Yield ``function(item)`` for each item, in order."""
        if self.workers == 1:
            for item in items:
                result = function(item)
                if on_result:
                    on_result(result)
                yield result
            return
        # forkserver: workers start from a clean interpreter, not a fork of a
        # process that may hold threads (progress bars) or open handles.
        context = multiprocessing.get_context("forkserver")
        with context.Pool(self.workers) as pool:
            for result in pool.imap(function, items, chunksize=self.chunksize):
                if on_result:
                    on_result(result)
                yield result
