"""Where per-item work runs: in this process, a local process pool, or a Dask cluster.

* :mod:`pcbforge.engine.base`: the :class:`Engine` protocol every stage programs against,
  :class:`EngineKind`, the errors and :func:`default_workers`.
* :class:`LocalEngine` (:mod:`pcbforge.engine.local`): a process pool on this machine (the
  default).
* :class:`~pcbforge.engine.dask.DaskEngine` (:mod:`pcbforge.engine.dask`): tasks on a
  ``dask.distributed`` cluster, an existing one (its scheduler address) or a
  ``LocalCluster`` started for the run. Imported only when asked for, so the local path
  never loads Dask.

:func:`open_engine` picks one from the ``--engine``/``--scheduler``/``--workers`` options
every command shares. A command opens one engine per run and passes it down.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pcbforge.engine.base import (
    MAX_DEFAULT_WORKERS,
    SCHEDULER_ENV,
    Engine,
    EngineError,
    EngineKind,
    WorkerCrashError,
    default_workers,
)
from pcbforge.engine.local import LocalEngine


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
        # Here, not at the top: the local path must not load Dask.
        from pcbforge.engine.dask import DaskEngine
    except ImportError as err:
        raise EngineError(f"--engine dask needs Dask ({err.name} is not installed): "
                          f"pip install 'pcbforge[dask]'") from err

    env = os.environ if environ is None else environ
    return DaskEngine(workers, scheduler=scheduler or env.get(SCHEDULER_ENV) or None,
                      preload=preload)


__all__ = ["MAX_DEFAULT_WORKERS", "SCHEDULER_ENV", "Engine", "EngineError", "EngineKind",
           "LocalEngine", "WorkerCrashError", "default_workers", "open_engine"]
