"""The Dask engine on a real ``dask.distributed.LocalCluster`` (2 worker processes, see the
``dask_engine`` fixture): the same tables as the local engine for curate, import and synth,
the same bytes whatever the number of workers, and a file that kills its worker recorded as
``corrupt``/``worker_crash`` while the run completes."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pcbforge.cli.main import app
from pcbforge.core.scan import scan_folder
from pcbforge.curate.inspect import InspectParams
from pcbforge.curate.partitions import (
    PartedThumbs,
    crashed_inspection,
    inspect_item,
    plan_partitions,
)
from pcbforge.curate.runner import CurateParams, curate
from pcbforge.engine import SCHEDULER_ENV
from pcbforge.engine.dask import DaskEngine, WorkerCrashError
from pcbforge.synth.pipeline import synthesize, write_boards

runner = CliRunner()
#: Columns that say what curation decided about each file.
DECISIONS = ["path", "status", "reason", "duplicate_of", "duplicate_reason",
             "duplicate_transform", "group", "group_size"]


def _sorted(table: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    return table.sort_values(by, kind="stable").reset_index(drop=True)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    """A messy corpus no other test uses (another seed), curated by the local engine."""
    from pcbforge.synth.messy import make_messy_corpus

    base = tmp_path_factory.mktemp("held_out")
    make_messy_corpus(base / "src", seed=11, hostile=True)
    local = curate(base / "src", base / "local", CurateParams(workers=2))
    return base, local


# --------------------------------------------------------------------------------------
# The engine's map
# --------------------------------------------------------------------------------------


def test_map_returns_results_in_input_order(dask_engine, crash_corpus) -> None:
    root, planted = crash_corpus
    files = [f for f in scan_folder(root).files if f.fs_path != str(planted)]
    items = [(n, f) for n, f in enumerate(files)]
    work = partial(inspect_item, params=InspectParams())
    for chunksize in (0, 1, 3):
        rows = [i.row["path"] for i in dask_engine.map(work, items, chunksize=chunksize)]
        assert rows == [f.path for f in files]
    assert list(dask_engine.map(work, [])) == []


def test_map_finds_the_item_that_kills_its_worker(dask_engine, crash_corpus) -> None:
    # The batch holding the planted file is killed; its items are re-run one per task, and
    # only the planted file, killed again when run alone, gets on_crash.
    root, planted = crash_corpus
    items = list(enumerate(scan_folder(root).files))
    work = partial(inspect_item, params=InspectParams())
    results = list(dask_engine.map(work, items, chunksize=4, on_crash=crashed_inspection))
    assert [r.row["path"] for r in results] == [f.path for _, f in items]
    crashed = {r.row["path"]: r.row["reason"] for r in results if r.row["status"] == "corrupt"}
    assert crashed == {"boom.png": "worker_crash"}
    with pytest.raises(WorkerCrashError, match="boom.png"):
        list(dask_engine.map(work, [i for i in items if i[1].path == "boom.png"]))


def test_a_failing_map_lets_its_running_tasks_end_before_it_raises(dask_engine,
                                                                     tmp_path) -> None:
    """A task already on a worker cannot be stopped: the map waits for those in flight
    before raising, so none writes into a folder its caller removes on the error (a
    stage). The cluster has no default client: the wait must use the engine's own."""
    folder = str(tmp_path)

    def work(item: int) -> int:
        import errno
        import pathlib
        import time

        if item == 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        time.sleep(0.5)
        pathlib.Path(folder, f"{item}.done").write_text("written")
        return item

    with pytest.raises(OSError, match="No space left"):
        list(dask_engine.map(work, list(range(5)), chunksize=1))
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{n}.done" for n in range(1, 5)]


def test_describe_records_the_cluster(dask_engine) -> None:
    where = dask_engine.describe()
    assert where["engine"] == "dask" and where["workers"] == 2 and where["threads"] == 2
    assert where["cluster"] == "LocalCluster" and where["scheduler"].startswith("tcp://")


# --------------------------------------------------------------------------------------
# Curate
# --------------------------------------------------------------------------------------


def test_curate_on_dask_equals_local_on_a_held_out_corpus(dask_engine, held_out) -> None:
    base, local = held_out
    distributed = curate(base / "src", base / "dask", CurateParams(workers=2),
                         engine=dask_engine)
    # Same statuses, duplicates and groups; indeed the same table, row for row.
    pd.testing.assert_frame_equal(_sorted(distributed.samples[DECISIONS], ["path"]),
                                  _sorted(local.samples[DECISIONS], ["path"]))
    pd.testing.assert_frame_equal(distributed.samples, local.samples)
    assert (base / "dask" / "samples.csv").read_bytes() == (
        base / "local" / "samples.csv").read_bytes()
    assert (base / "dask" / "cache" / "phash_variants.npy").read_bytes() == (
        base / "local" / "cache" / "phash_variants.npy").read_bytes()
    assert distributed.report["counts"] == local.report["counts"]
    assert distributed.report["duplicate_search"] == local.report["duplicate_search"]
    assert distributed.report["engine"]["engine"] == "dask"
    assert local.report["engine"] == {"engine": "local", "workers": 2, "scheduler": None}
    # Partitioned parquet is gathered and removed; thumbnails stay, one file per partition.
    assert not (base / "dask" / "parts").exists()
    thumbs = sorted((base / "dask" / "cache" / "thumbs").glob("part-*.npy"))
    assert len(thumbs) == len(plan_partitions(scan_folder(base / "src").files, 8)) > 2
    report = json.loads((base / "dask" / "report.json").read_text())
    assert report["engine"]["scheduler"] == dask_engine.describe()["scheduler"]


def test_lsh_on_the_cluster_equals_the_local_lsh(dask_engine, held_out, tmp_path,
                                                 monkeypatch) -> None:
    # Force the banded LSH (the corpus is small enough for the exhaustive search): locally
    # the in-memory search, on Dask the group-by-band shuffle. Same pairs, same result.
    import pcbforge.curate.dedupe as dedupe

    base, exhaustive = held_out
    monkeypatch.setattr(dedupe, "EXHAUSTIVE_SEARCH_MAX", 0)
    local = curate(base / "src", tmp_path / "local", CurateParams(workers=1))
    distributed = curate(base / "src", tmp_path / "dask", CurateParams(), engine=dask_engine)
    assert local.report["duplicate_search"]["candidate_search"] == "lsh"
    assert distributed.report["duplicate_search"]["candidate_search"] == "lsh_dask"
    pd.testing.assert_frame_equal(distributed.samples, local.samples)
    pd.testing.assert_frame_equal(distributed.samples[DECISIONS], exhaustive.samples[DECISIONS])
    for key in ("candidate_pairs", "occupancy_candidate_pairs", "duplicate_pairs_verified",
                "variant_pairs_verified", "pairs_rejected_by_pixels"):
        assert distributed.report["duplicate_search"][key] == \
            local.report["duplicate_search"][key], key


def test_a_file_that_crashes_its_worker_is_corrupt_and_the_run_completes(
        dask_engine, crash_corpus, tmp_path) -> None:
    root, _ = crash_corpus
    result = curate(root, tmp_path / "out", CurateParams(), engine=dask_engine)
    rows = result.samples.set_index("path")
    assert (rows.loc["boom.png", "status"], rows.loc["boom.png", "reason"]) == (
        "corrupt", "worker_crash")
    assert "worker process died" in rows.loc["boom.png", "detail"]
    assert rows.loc["boom.png", "bytes"] == (root / "boom.png").stat().st_size
    assert (rows.drop(index="boom.png")["status"] == "ok").all()
    assert result.report["reasons"] == {"corrupt/worker_crash": 1}
    # The hook lives only in the cluster's workers: here, the same file is a good image.
    local = curate(root, tmp_path / "local", CurateParams(workers=1)).samples.set_index("path")
    assert local.loc["boom.png", "status"] == "ok"


def test_parted_thumbnails_read_like_one_array(dask_engine, held_out) -> None:
    base, _ = held_out
    single = np.load(base / "local" / "cache" / "thumbs.npy", mmap_mode="r")
    parted = PartedThumbs(str(base / "dask" / "cache" / "thumbs"), 8, len(single),
                          single.shape[1])
    for slot in (0, 7, 8, len(single) - 1):
        np.testing.assert_array_equal(parted[slot], single[slot])
    with pytest.raises(IndexError):
        parted[len(single)]


# --------------------------------------------------------------------------------------
# Synth
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synth_boards(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("dask_boards")
    write_boards(folder, count=3, seed=4, size=256, progress=False)
    return folder


def test_synth_same_bytes_with_one_or_two_dask_workers_and_locally(
        dask_engine, synth_boards, tmp_path) -> None:
    local = tmp_path / "local"
    synthesize(synth_boards, local, count=8, seed=5, progress=False)
    two = tmp_path / "two"
    report = synthesize(synth_boards, two, count=8, seed=5, progress=False, engine=dask_engine)
    assert report["engine"]["workers"] == 2
    one = tmp_path / "one"
    with DaskEngine(1) as single:
        assert synthesize(synth_boards, one, count=8, seed=5, progress=False,
                          engine=single)["engine"]["workers"] == 1
    expected = {k: v for k, v in _files(local).items() if not k.endswith("synth_report.json")}
    for out in (one, two):
        files = {k: v for k, v in _files(out).items() if not k.endswith("synth_report.json")}
        assert files.keys() == expected.keys()
        assert files == expected  # images, templates, parquet, CSV and dataset.json
        pd.testing.assert_frame_equal(
            _sorted(pd.read_parquet(out / "labels.parquet"), ["sample_id", "x1", "y1"]),
            _sorted(pd.read_parquet(local / "labels.parquet"), ["sample_id", "x1", "y1"]))
        pd.testing.assert_frame_equal(_sorted(pd.read_parquet(out / "samples.parquet"), ["path"]),
                                      _sorted(pd.read_parquet(local / "samples.parquet"),
                                              ["path"]))


def test_qa_same_findings_on_dask_and_locally(dask_engine, planted, tmp_path) -> None:
    from pcbforge.qa import run_qa

    run_qa(planted, tmp_path / "local", workers=1)
    run_qa(planted, tmp_path / "dask", engine=dask_engine)
    for name in ("qa.parquet", "qa.csv", "qa_registration.parquet"):
        assert (tmp_path / "dask" / name).read_bytes() == \
            (tmp_path / "local" / name).read_bytes(), name
    assert len(pd.read_parquet(tmp_path / "dask" / "qa.parquet")) == 5


# --------------------------------------------------------------------------------------
# The commands' --engine and --scheduler
# --------------------------------------------------------------------------------------


def test_curate_cli_connects_to_an_existing_scheduler(dask_engine, held_out, tmp_path) -> None:
    base, local = held_out
    address = dask_engine.describe()["scheduler"]
    out = tmp_path / "out"
    result = runner.invoke(app, ["curate", str(base / "src"), "--out", str(out),
                                 "--engine", "dask", "--scheduler", address])
    assert result.exit_code == 0, result.output
    assert "engine: dask" in result.output
    report = json.loads((out / "report.json").read_text())
    assert report["engine"]["cluster"] == "external"
    assert report["engine"]["scheduler"] == address
    pd.testing.assert_frame_equal(pd.read_parquet(out / "samples.parquet"),
                                  pd.read_parquet(base / "local" / "samples.parquet"))


def test_import_cli_reads_the_scheduler_from_the_environment(dask_engine, tmp_path) -> None:
    from tests.conftest import write_deeppcb_layout

    src = tmp_path / "deeppcb"
    write_deeppcb_layout(src, {"group1": 3, "group2": 2}, np.random.default_rng(3))
    address = dask_engine.describe()["scheduler"]
    local = runner.invoke(app, ["import", "deeppcb", str(src), "--out", str(tmp_path / "l"),
                                "--workers", "1"])
    distributed = runner.invoke(app, ["import", "deeppcb", str(src), "--out",
                                      str(tmp_path / "d"), "--engine", "dask"],
                                env={SCHEDULER_ENV: address})
    assert local.exit_code == 0, local.output
    assert distributed.exit_code == 0, distributed.output
    assert json.loads((tmp_path / "d" / "report.json").read_text())["engine"]["scheduler"] \
        == address
    for table in ("samples.parquet", "labels.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "d" / table),
                                      pd.read_parquet(tmp_path / "l" / table))


def test_synth_cli_on_dask(dask_engine, synth_boards, tmp_path) -> None:
    address = dask_engine.describe()["scheduler"]
    args = ["synth", "defects", "--boards", str(synth_boards), "--count", "4", "--seed", "2"]
    local = runner.invoke(app, [*args, "--out", str(tmp_path / "l")])
    distributed = runner.invoke(app, [*args, "--out", str(tmp_path / "d"), "--engine", "dask",
                                      "--scheduler", address])
    assert local.exit_code == 0, local.output
    assert distributed.exit_code == 0, distributed.output
    assert "engine: dask" in distributed.output
    assert _files(tmp_path / "d" / "images") == _files(tmp_path / "l" / "images")


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--scheduler", "tcp://127.0.0.1:9"], "needs --engine dask"),
     (["--engine", "spark"], "spark")],
    ids=["scheduler_without_dask", "unknown_engine"],
)
def test_engine_options_errors_are_one_line(args, message, tmp_path) -> None:
    (tmp_path / "src").mkdir()
    result = runner.invoke(app, ["curate", str(tmp_path / "src"), "--out",
                                 str(tmp_path / "out"), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
