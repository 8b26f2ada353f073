"""``open_engine``: the shared --engine/--scheduler/--workers choice (no cluster started)."""

from __future__ import annotations

import pytest

from pcbforge.engine import SCHEDULER_ENV, EngineError, LocalEngine, open_engine


def test_local_is_a_process_pool() -> None:
    engine = open_engine("local", 3)
    assert isinstance(engine, LocalEngine) and engine.workers == 3
    assert engine.describe() == {"engine": "local", "workers": 3, "scheduler": None}
    with open_engine() as inline:
        assert list(inline.map(abs, [-2, 1, -3])) == [2, 1, 3]


def test_dask_takes_the_scheduler_from_the_option_then_the_environment() -> None:
    from pcbforge.engine.dask import DaskEngine

    env = {SCHEDULER_ENV: "tcp://10.0.0.5:8786"}
    from_env = open_engine("dask", 2, environ=env)
    assert isinstance(from_env, DaskEngine) and from_env.scheduler == "tcp://10.0.0.5:8786"
    given = open_engine("dask", 2, "tcp://10.0.0.9:8786", environ=env)
    assert given.scheduler == "tcp://10.0.0.9:8786"
    assert open_engine("dask", 2, environ={}).scheduler is None  # a LocalCluster
    # The environment variable is for the Dask engine only: the default stays local.
    assert isinstance(open_engine("local", 2, environ=env), LocalEngine)


@pytest.mark.parametrize(
    ("kind", "workers", "scheduler", "message"),
    [("local", 2, "tcp://10.0.0.5:8786", "needs --engine dask"),
     ("spark", 2, None, "choose one of local, dask"),
     ("dask", 0, None, "workers must be >= 1")],
    ids=["scheduler_for_local", "unknown_kind", "no_workers"],
)
def test_bad_choices_raise_engine_error(kind, workers, scheduler, message) -> None:
    with pytest.raises(EngineError, match=message):
        open_engine(kind, workers, scheduler)


def test_an_unreachable_scheduler_is_an_engine_error() -> None:
    from pcbforge.engine.dask import DaskEngine

    with pytest.raises(EngineError, match="cannot reach the Dask scheduler"):
        with DaskEngine(1, scheduler="tcp://127.0.0.1:9", connect_timeout=1):
            pass


def test_the_package_has_no_cycle_and_the_local_path_never_loads_dask() -> None:
    """``engine.py`` imported ``dask_engine.DaskEngine``, which imported ``EngineKind`` and
    ``EngineError`` back: the Dask engine now imports the base module only."""
    import ast
    import subprocess
    import sys
    from pathlib import Path

    import pcbforge.engine

    folder = Path(pcbforge.engine.__file__).parent
    for name in ("base.py", "local.py", "dask.py"):
        tree = ast.parse((folder / name).read_text(encoding="utf-8"))
        ours = {node.module for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pcbforge")}
        assert ours <= {"pcbforge.engine.base"}, (name, ours)
    code = ("import sys, pcbforge.engine as e\n"
            "with e.open_engine('local', 1) as engine: list(engine.map(abs, [-1]))\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"


def test_the_names_commands_import_stay_where_they_were() -> None:
    from pcbforge import engine
    from pcbforge.engine.base import WorkerCrashError
    from pcbforge.engine.dask import DaskEngine

    for name in ("Engine", "LocalEngine", "open_engine", "EngineKind", "EngineError",
                 "default_workers", "SCHEDULER_ENV", "WorkerCrashError"):
        assert hasattr(engine, name), name
    assert engine.WorkerCrashError is WorkerCrashError
    assert isinstance(engine.open_engine("dask", 1), DaskEngine)
    assert 1 <= engine.default_workers() <= engine.MAX_DEFAULT_WORKERS
