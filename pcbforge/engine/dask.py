"""The Dask engine: the same ``map`` contract as :class:`~pcbforge.engine.LocalEngine`, run as
tasks on a ``dask.distributed`` cluster.

Imported only when ``--engine dask`` is asked for (it imports ``distributed``). Items go to
the cluster in batches, one task per batch, at most a few batches per worker thread in
flight, so neither the scheduler nor this process ever holds the whole item list as tasks;
results come back in input order.

A worker that dies while running a task (a decoder that segfaults, the kernel's OOM killer)
is replaced by its nanny, and the scheduler runs the task again elsewhere, up to
``distributed.scheduler.allowed-failures`` times; then the task fails with ``KilledWorker``.
:meth:`DaskEngine.map` then finds the item responsible: it re-runs the batch one item per
task, and an item whose task is killed again is run once more with nothing else of ours in
flight (a worker's death also counts against the tasks queued beside it). Only then is
``on_crash(item)`` called, so an innocent item is never blamed.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TypeVar

import dask
from dask.utils import funcname
from distributed import Client, KilledWorker, LocalCluster, WorkerPlugin, as_completed

from pcbforge.engine.base import EngineError, EngineKind, WorkerCrashError

Item = TypeVar("Item")
Result = TypeVar("Result")


class WorkerSetup(WorkerPlugin):
    """Runs on every worker, also on one the nanny restarts after a crash: one OpenCV thread
    (each worker process has one task thread; OpenCV's own pool would oversubscribe the
    cores, as in :class:`~pcbforge.engine.LocalEngine`), then the modules tasks need."""

    def __init__(self, preload: tuple[str, ...] = ()):
        self.preload = tuple(preload)

    def setup(self, worker) -> None:
        import importlib

        import cv2

        cv2.setNumThreads(1)
        for module in self.preload:
            importlib.import_module(module)


def _run_batch(function: Callable[[Item], Result], batch: list[Item]) -> list[Result]:
    """One task: a function over a batch of items (top-level, so workers can unpickle it)."""
    return [function(item) for item in batch]


#: Seconds a failing ``map`` waits for its tasks already running on workers to end.
DRAIN_TIMEOUT_S = 30.0


def drain_and_cancel(client, futures: list, timeout: float = DRAIN_TIMEOUT_S) -> None:
    """Drop ``futures`` of a run that is failing. A task already on a worker cannot be
    stopped: let those end (within ``timeout``) so that none still writes into a folder
    once the caller has removed it (its stage), then cancel the rest."""
    if not futures:
        return
    # Each future waits on its own client (distributed.wait would look for a default
    # client, which an engine's client is not).
    deadline = time.monotonic() + timeout
    for future in futures:
        try:
            future.exception(timeout=max(0.0, deadline - time.monotonic()))
        except Exception:  # noqa: BLE001 - a timeout, a cancelled task, a dead cluster
            pass
    client.cancel(futures)


class DaskEngine:
    """Map functions over items as tasks on a Dask cluster.

    ``scheduler``: the address of a running scheduler (``tcp://host:8786``); without one, a
    ``LocalCluster`` of ``workers`` processes with one thread each is started on entry and
    closed on exit. ``partition_size``: files per partition for the stages that work on
    partitions of the file list (curation writes one samples part per partition).
    ``allowed_failures`` (started cluster only): how often the scheduler re-runs a task whose
    worker died, before ``KilledWorker``; ``None`` keeps Dask's setting (3).
    ``worker_env``: environment variables of the started cluster's worker processes.

    Use as a context manager::

        with DaskEngine(2) as engine:
            rows = list(engine.map(inspect, files))
    """

    kind = EngineKind.dask.value

    def __init__(
        self,
        workers: int = 1,
        scheduler: str | None = None,
        *,
        preload: tuple[str, ...] = (),
        partition_size: int = 512,
        retries: int = 1,
        allowed_failures: int | None = None,
        worker_env: Mapping[str, str] | None = None,
        connect_timeout: float = 30.0,
    ):
        if workers < 1:
            raise EngineError(f"workers must be >= 1, got {workers}")
        if partition_size < 1:
            raise EngineError(f"partition_size must be >= 1, got {partition_size}")
        self.requested_workers = workers
        self.scheduler = scheduler
        self.preload = tuple(preload)
        self.partition_size = partition_size
        self.retries = retries
        self.allowed_failures = allowed_failures
        self.worker_env = dict(worker_env or {})
        self.connect_timeout = connect_timeout
        self.client: Client | None = None
        self._cluster: LocalCluster | None = None
        self._config = None
        self._running: set = set()  # every future of ours in flight, across nested maps

    # ----------------------------------------------------------------------------------
    # Lifetime
    # ----------------------------------------------------------------------------------

    def __enter__(self) -> DaskEngine:
        try:
            self._connect()
            self.client.register_plugin(WorkerSetup(self.preload),
                                        name="pcbforge-worker-setup")
        except BaseException:
            self.__exit__()
            raise
        return self

    def _connect(self) -> None:
        if self.scheduler:
            try:
                self.client = Client(self.scheduler, timeout=self.connect_timeout,
                                     set_as_default=False)
            except (OSError, TimeoutError, ValueError) as err:
                raise EngineError(f"cannot reach the Dask scheduler at {self.scheduler}: "
                                  f"{err}") from err
            try:
                self.client.wait_for_workers(1, timeout=self.connect_timeout)
            except (OSError, TimeoutError) as err:
                raise EngineError(f"the Dask scheduler at {self.scheduler} has no workers "
                                  f"(waited {self.connect_timeout:.0f} s)") from err
        else:
            overrides = {}
            if self.allowed_failures is not None:
                overrides["distributed.scheduler.allowed-failures"] = self.allowed_failures
            # A LocalCluster closes a worker for good when no worker of its name is back
            # lost-worker-timeout (15 s) after one was lost. A file that kills its worker
            # on every attempt makes the nanny restart it several times in a row, and a
            # timer left by an earlier death may fire while it is down again: keep the
            # workers. Read when a worker is lost, so it stays set while the engine runs.
            self._config = dask.config.set({"distributed.deploy.lost-worker-timeout": "1h"})
            with dask.config.set(overrides):
                self._cluster = LocalCluster(
                    n_workers=self.requested_workers, threads_per_worker=1, processes=True,
                    host="127.0.0.1", dashboard_address=":0", silence_logs=logging.ERROR,
                    env=self.worker_env or None,
                )
            self.client = Client(self._cluster, set_as_default=False)

    def __exit__(self, *exc) -> None:
        if self.client is not None:
            if self._running:
                self.client.cancel(list(self._running))
                self._running.clear()
            self.client.close()
            self.client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None
        if self._config is not None:
            self._config.__exit__(None, None, None)
            self._config = None

    def _require_client(self) -> Client:
        if self.client is None:
            raise RuntimeError("use DaskEngine as a context manager to connect to a cluster")
        return self.client

    @property
    def workers(self) -> int:
        """Workers connected now (the requested count before entering). On a cluster started
        here, first waits (up to a minute) for workers a crash took down to be back."""
        if self.client is None:
            return self.requested_workers
        if self._cluster is not None:
            try:
                self.client.wait_for_workers(self.requested_workers, timeout=60)
            except TimeoutError:
                pass  # report what there is
        return max(1, len(self.client.scheduler_info(n_workers=-1)["workers"]))

    @property
    def threads(self) -> int:
        """Task threads across the cluster (one per worker on a started cluster)."""
        if self.client is None:
            return self.requested_workers
        workers = self.client.scheduler_info(n_workers=-1)["workers"].values()
        return max(1, sum(int(w.get("nthreads", 1)) for w in workers))

    def describe(self) -> dict:
        """What the run's report records about where it ran."""
        client = self._require_client()
        return {
            "engine": self.kind,
            "workers": self.workers,
            "threads": self.threads,
            "scheduler": self.scheduler or client.scheduler.address,
            "cluster": "external" if self.scheduler else "LocalCluster",
        }

    # ----------------------------------------------------------------------------------
    # Work
    # ----------------------------------------------------------------------------------

    def map(
        self,
        function: Callable[[Item], Result],
        items: Iterable[Item],
        chunksize: int = 0,
        on_crash: Callable[[Item], Result] | None = None,
        confirm_crash: bool = True,
    ) -> Iterator[Result]:
        """Yield ``function(item)`` for each item, in order, computed on the cluster.

        Items go in batches of ``chunksize`` (default: up to 64, about 1/8 of each thread's
        share), one task per batch. A task that raises is retried ``retries`` times, then
        its exception is raised here. A batch whose worker died on every attempt
        (``KilledWorker``) is re-run one item per task; an item still killed is, when
        ``confirm_crash``, run once more with nothing else of ours in flight, and then gets
        ``on_crash(item)`` as its result (no ``on_crash``: :class:`WorkerCrashError`).
        ``confirm_crash=False`` calls ``on_crash`` at once, for items that are themselves
        batches the caller will split.
        """
        client = self._require_client()
        items = list(items)
        if not items:
            return
        size = chunksize or max(1, min(64, len(items) // (8 * self.threads)))
        queue = deque((start, items[start : start + size]) for start in range(0, len(items), size))
        window = max(2, 4 * self.threads)  # batches in flight: enough to keep every thread busy
        name = funcname(function)
        running: dict = {}
        finished: dict[int, list] = {}
        completed = as_completed(loop=client.loop)
        position = 0

        def submit(batch: list) -> object:
            future = client.submit(_run_batch, function, batch, pure=False,
                                   retries=self.retries, key=f"{name}-{uuid.uuid4().hex}")
            self._running.add(future)
            return future

        try:
            while queue or running:
                while queue and len(running) < window:
                    start, batch = queue.popleft()
                    future = submit(batch)
                    running[future] = (start, batch)
                    completed.add(future)
                future = next(completed)
                start, batch = running.pop(future)
                self._running.discard(future)
                try:
                    finished[start] = future.result()
                except KilledWorker:
                    if len(batch) > 1:  # find the item responsible: one task per item
                        queue.extendleft(reversed([(start + k, [item])
                                                   for k, item in enumerate(batch)]))
                    elif confirm_crash:
                        finished[start] = [self._run_alone(function, batch[0], on_crash)]
                    else:
                        finished[start] = [self._crashed(batch[0], on_crash)]
                del future
                while position in finished:
                    values = finished.pop(position)
                    position += len(values)
                    yield from values
        finally:
            if running:
                drain_and_cancel(client, list(running))
                self._running.difference_update(running)

    def _run_alone(self, function, item, on_crash):
        """Run one item with nothing else of ours in flight, so that a death now is its own."""
        client = self._require_client()
        for other in list(self._running):
            other.exception()  # waits until it finished, whatever the outcome
        future = client.submit(_run_batch, function, [item], pure=False, retries=self.retries,
                               key=f"{funcname(function)}-alone-{uuid.uuid4().hex}")
        try:
            return future.result()[0]
        except KilledWorker:
            return self._crashed(item, on_crash)

    @staticmethod
    def _crashed(item, on_crash):
        if on_crash is None:
            raise WorkerCrashError(
                f"an item killed its Dask worker on every attempt: {item!r:.200}")
        return on_crash(item)

    def compute(self, collection):
        """Compute a Dask collection (e.g. a dask DataFrame) on this cluster and return it."""
        return self._require_client().compute(collection).result()


__all__ = ["DRAIN_TIMEOUT_S", "DaskEngine", "WorkerCrashError", "WorkerSetup", "drain_and_cancel"]
