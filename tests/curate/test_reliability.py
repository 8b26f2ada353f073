"""curate, import and export when things go wrong: odd files in the source, a full disk,
two writers at once, a kill in the middle of a swap, a failure halfway through an import
or an export. Each test reproduces one failure of issue 25 (numbered as there)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pcbforge.cli.main import app
from pcbforge.core.errors import EXIT_BUSY, EXIT_STORAGE
from pcbforge.curate.inspect import InspectParams
from pcbforge.curate.runner import CurateParams, curate
from tests.conftest import write_deeppcb_layout

#: The CLI in its own process: a hang, a SIGBUS or a runaway read cannot take pytest down.
CLI = [sys.executable, "-c", "from pcbforge.cli.main import main; main()"]


def _write_tiles(folder: Path, count: int, side: int = 48, seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for n in range(count):
        tile = rng.integers(0, 256, (side, side), np.uint8)
        assert cv2.imwrite(str(folder / f"tile_{n:03d}.png"), tile)


def _limit_memory() -> None:  # runs in the child: a runaway read fails fast, not the machine
    limit = 4 << 30
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _run_cli(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``pcbforge ARGS`` in a child process with bounded memory; a hang is a failure."""
    try:
        return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout,
                              preexec_fn=_limit_memory, env={**os.environ, "COLUMNS": "200"})
    except subprocess.TimeoutExpired:
        pytest.fail(f"pcbforge {' '.join(args)} still running after {timeout} s (a hang)")


def _rows(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "samples.parquet").set_index("path")


# --- 9 and 5: FIFOs, devices and huge files are rows, never a hang or a MemoryError --------

def test_fifo_device_link_and_huge_file_become_rows(tmp_path):
    src = tmp_path / "src"
    _write_tiles(src, 3)
    os.mkfifo(src / "pipe.jpg")  # opening it would wait for a writer forever
    os.symlink("/dev/zero", src / "zero.jpg")  # reading it never ends
    with open(src / "huge.jpg", "wb") as handle:  # sparse: costs no disk
        handle.truncate(8 << 30)
    done = _run_cli(["curate", str(src), "--out", str(tmp_path / "ds"), "--workers", "1"])
    assert done.returncode == 0, done.stderr
    rows = _rows(tmp_path / "ds")
    assert len(rows) == 6  # nothing dropped
    assert rows.loc["pipe.jpg", ["status", "reason"]].tolist() == ["corrupt", "not_a_regular_file"]
    assert "FIFO" in rows.loc["pipe.jpg", "detail"]
    assert rows.loc["zero.jpg", ["status", "reason"]].tolist() == ["corrupt", "not_a_regular_file"]
    assert "character device" in rows.loc["zero.jpg", "detail"]
    # Above the default cap (1 GiB): not read, its size recorded.
    assert rows.loc["huge.jpg", ["status", "reason"]].tolist() == ["corrupt", "too_large"]
    assert rows.loc["huge.jpg", "bytes"] == 8 << 30
    assert (rows.loc[[f"tile_{n:03d}.png" for n in range(3)], "status"] == "ok").all()


def test_the_size_cap_is_an_option(tmp_path):
    src = tmp_path / "src"
    _write_tiles(src, 2)
    (src / "big.png").write_bytes(os.urandom(3 << 20))
    small = CurateParams(workers=1, inspect=InspectParams(max_file_bytes=1 << 20))
    rows = curate(src, tmp_path / "ds", small).samples.set_index("path")
    assert rows.loc["big.png", ["status", "reason"]].tolist() == ["corrupt", "too_large"]
    assert rows.loc["big.png", "bytes"] == 3 << 20
    assert "1,048,576-byte limit" in rows.loc["big.png", "detail"]
    # The same through the CLI, in MB; a cap below 1 MB is refused in one line.
    run = CliRunner().invoke(app, ["curate", str(src), "--out", str(tmp_path / "cli"),
                                   "--workers", "1", "--max-file-mb", "2"])
    assert run.exit_code == 0, run.output
    assert _rows(tmp_path / "cli").loc["big.png", "reason"] == "too_large"
    bad = CliRunner().invoke(app, ["curate", str(src), "--out", str(tmp_path / "x"),
                                   "--max-file-mb", "0"])
    assert bad.exit_code == 2 and "--max-file-mb" in bad.output
    with pytest.raises(ValueError, match="max_file_bytes"):
        InspectParams(max_file_bytes=0)


def test_partitions_give_the_same_rows_for_odd_files(tmp_path):
    """The Dask path inspects through the same function: the same rows, no hang."""
    from pcbforge.core.scan import scan_folder
    from pcbforge.curate.partitions import inspect_partition, plan_partitions

    src = tmp_path / "src"
    _write_tiles(src, 2)
    os.mkfifo(src / "pipe.jpg")
    (src / "big.png").write_bytes(os.urandom(2 << 20))
    files = scan_folder(src).files
    (parts := tmp_path / "parts").mkdir()
    (thumbs := tmp_path / "thumbs").mkdir()
    params = InspectParams(max_file_bytes=1 << 20)
    for partition in plan_partitions(files, 8):
        inspect_partition(partition, params, str(parts), str(thumbs))
    rows = pd.read_parquet(next(parts.glob("*.parquet"))).set_index("path")
    assert rows.loc["pipe.jpg", "reason"] == "not_a_regular_file"
    assert rows.loc["big.png", "reason"] == "too_large"
    assert (rows.loc[["tile_000.png", "tile_001.png"], "status"] == "ok").all()


# --- 3: a full disk ends curate in seconds, one line, exit 74, nothing left ---------------

@pytest.mark.parametrize("workers", [1, 2])
def test_full_disk_ends_curate_with_one_line(small_disk, tmp_path, workers):
    src = tmp_path / "src"
    _write_tiles(src, 100)  # 100 thumbnails of 64 KiB: more than the 4 MiB disk
    started = time.monotonic()
    done = _run_cli(["curate", str(src), "--out", str(small_disk / "ds"), "--workers",
                     str(workers)], timeout=90)
    assert done.returncode == EXIT_STORAGE, (done.returncode, done.stderr[-2000:])
    assert time.monotonic() - started < 60
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "no space left on device" in lines[0] and str(small_disk) in lines[0]
    assert "Traceback" not in done.stdout + done.stderr
    assert sorted(os.listdir(small_disk)) == []  # no stage, no lock, no dataset


# --- 7: two writers into one --out: the second is refused ------------------------------------

def _hold_lock(out: Path) -> subprocess.Popen:
    """Another process holding the writer lock of ``out`` until its stdin closes."""
    code = ("import sys; from pcbforge.core import OutputLock; "
            f"OutputLock({str(out)!r}, 'curate').acquire(); print('held', flush=True); "
            "sys.stdin.read()")
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_second_writer_is_refused_while_the_first_holds_the_lock(tmp_path):
    src = tmp_path / "src"
    _write_tiles(src, 3)
    out = tmp_path / "ds"
    assert curate(src, out, CurateParams(workers=1)).report["files"] == 3
    before = (out / "samples.parquet").read_bytes()
    holder = _hold_lock(out)
    try:
        run = CliRunner().invoke(app, ["curate", str(src), "--out", str(out), "--workers", "1"])
    finally:
        holder.stdin.close()
        holder.wait(30)
    assert run.exit_code == EXIT_BUSY, run.output
    assert "being written by another pcbforge process" in run.output
    assert f"pid {holder.pid}" in run.output
    assert (out / "samples.parquet").read_bytes() == before
    # The holder is gone: its lock is taken over and the run goes through.
    run = CliRunner().invoke(app, ["curate", str(src), "--out", str(out), "--workers", "1"])
    assert run.exit_code == 0, run.output


def test_two_curates_at_once_one_is_refused(tmp_path):
    src = tmp_path / "src"
    _write_tiles(src, 300, side=96)
    out = tmp_path / "ds"
    first = subprocess.Popen([*CLI, "curate", str(src), "--out", str(out), "--workers", "1"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / ".ds.lock").exists() and first.poll() is None:
            assert time.monotonic() < deadline, "the first run never took its lock"
            time.sleep(0.02)
        second = CliRunner().invoke(app, ["curate", str(src), "--out", str(out),
                                          "--workers", "1"])
    finally:
        first_rc = first.wait(120)
    assert first_rc == 0, first.stderr.read()
    assert second.exit_code == EXIT_BUSY, second.output
    assert len(_rows(out)) == 300


# --- 6: a kill between the two renames of the old swap loses nothing -------------------------

def test_a_parked_previous_dataset_is_restored_with_its_splits(tmp_path):
    from pcbforge.split import SplitParams, split_dataset

    src = tmp_path / "src"
    _write_tiles(src, 12)
    out = tmp_path / "ds"
    curate(src, out, CurateParams(workers=1))
    split_dataset(out, SplitParams(ratios=(0.5, 0.25, 0.25)))
    splits = _rows(out)["split"]
    assert set(splits) == {"train", "val", "test"}
    # What the old two-rename swap left when killed between its renames.
    parked = tmp_path / ".ds.old-4242"
    os.replace(out, parked)
    _write_tiles(src / "more", 2, seed=1)
    result = curate(src, out, CurateParams(workers=1))
    assert not parked.exists()
    rows = result.samples.set_index("path")
    assert rows.loc[splits.index, "split"].tolist() == splits.tolist()  # kept
    assert (rows.loc[["more/tile_000.png", "more/tile_001.png"], "split"] == "").all()
    assert json.loads((out / "dataset.json").read_text())["split"] is not None


# --- staged imports: one swap for the whole import, a failure leaves the old dataset ---------

def _fingerprint(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_failed_import_leaves_the_previous_dataset_untouched(tmp_path, monkeypatch):
    import pcbforge.pipeline.ingest as pipeline

    src = tmp_path / "deeppcb"
    write_deeppcb_layout(src, {"group00001": 2}, np.random.default_rng(3))
    out = tmp_path / "ds"
    pipeline.import_deeppcb(src, out, CurateParams(workers=1))
    before = _fingerprint(out)

    def fail(*args, **kwargs):
        raise RuntimeError("killed halfway")

    monkeypatch.setattr(pipeline, "_save_import", fail)  # after curation, before the tables
    with pytest.raises(RuntimeError, match="killed halfway"):
        pipeline.import_deeppcb(src, out, CurateParams(workers=1))
    assert _fingerprint(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deeppcb", "ds"]
    monkeypatch.undo()
    again = pipeline.import_deeppcb(src, out, CurateParams(workers=1))
    assert again.dataset.root == out.resolve()
    assert (out / "labels.parquet").read_bytes() == before["labels.parquet"]


def test_a_failed_coco_import_leaves_the_previous_dataset_untouched(tmp_path, monkeypatch):
    import pcbforge.pipeline.ingest as pipeline

    src = tmp_path / "coco"
    _write_tiles(src / "images", 2)
    (src / "instances.json").write_text(json.dumps({
        "images": [{"id": n + 1, "file_name": f"tile_{n:03d}.png", "width": 48, "height": 48}
                   for n in range(2)],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 4, 10, 10]}],
        "categories": [{"id": 1, "name": "short"}]}))
    out = tmp_path / "ds"
    first = pipeline.import_labelled("coco", src, out, CurateParams(workers=1))
    assert first.dataset.root == out.resolve() and len(first.dataset.labels) == 1
    before = _fingerprint(out)
    monkeypatch.setattr(pipeline, "_save_import",
                        lambda *a, **k: (_ for _ in ()).throw(RuntimeError("killed halfway")))
    with pytest.raises(RuntimeError, match="killed halfway"):
        pipeline.import_labelled("coco", src, out, CurateParams(workers=1))
    assert _fingerprint(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coco", "ds"]


def test_import_root_stays_inside_the_source(tmp_path):
    """An image path out of the source is refused, so the folder curated never widens
    to a common ancestor holding unrelated images (failure 4)."""
    from pcbforge.pipeline import import_labelled

    data = tmp_path / "data"
    _write_tiles(data / "secret", 1)
    _write_tiles(data / "unrelated", 5)
    src = data / "coco"
    _write_tiles(src / "images", 1)
    (src / "instances.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "tile_000.png", "width": 48, "height": 48},
                   {"id": 2, "file_name": "../../secret/tile_000.png", "width": 48,
                    "height": 48}],
        "annotations": [], "categories": [{"id": 1, "name": "short"}]}))
    with pytest.raises(ValueError, match="outside"):
        import_labelled("coco", src, tmp_path / "ds", CurateParams(workers=1))
    assert not (tmp_path / "ds").exists()
    opted_in = import_labelled("coco", src, tmp_path / "ds", CurateParams(workers=1),
                               allow_outside_root=True)
    assert "secret/tile_000.png" in set(opted_in.dataset.samples["path"])


# --- staged exports: an earlier export is replaced whole, a failure leaves it -----------------

def test_export_is_staged_and_replaces_an_earlier_export(tmp_path, monkeypatch):
    import yaml

    import pcbforge.pipeline.export as pipeline
    from pcbforge.pipeline import import_deeppcb

    src = tmp_path / "deeppcb"
    write_deeppcb_layout(src, {"group00001": 2}, np.random.default_rng(4))
    import_deeppcb(src, tmp_path / "ds", CurateParams(workers=1))
    out = tmp_path / "yolo"
    report = pipeline.export_dataset(tmp_path / "ds", "yolo", out)
    config = yaml.safe_load((out / "data.yaml").read_text())
    assert config["path"] == str(out.resolve())  # the final folder, not the stage
    assert json.loads((out / "export_report.json").read_text()) == report
    before = _fingerprint(out)

    def fail(*args, **kwargs):
        raise RuntimeError("killed halfway")

    monkeypatch.setattr(pipeline, "_save_split", fail)
    with pytest.raises(RuntimeError, match="killed halfway"):
        pipeline.export_dataset(tmp_path / "ds", "yolo", out)
    assert _fingerprint(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deeppcb", "ds", "yolo"]
    monkeypatch.undo()
    # An earlier export may be replaced (same bytes: same inputs); other folders may not.
    pipeline.export_dataset(tmp_path / "ds", "yolo", out)
    assert _fingerprint(out) == before
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="not a pcbforge export"):
        pipeline.export_dataset(tmp_path / "ds", "coco", tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "x"


def test_full_disk_on_the_dask_engine_raises_a_storage_error(small_disk, tmp_path, dask_engine):
    """The Dask path writes partition parts in its workers: a full disk there is the same
    storage error (the CLI's one line and exit 74), and the stage goes with it."""
    from pcbforge.core.errors import storage_error

    src = tmp_path / "src"
    _write_tiles(src, 100)
    with pytest.raises(OSError) as raised:
        curate(src, small_disk / "ds", CurateParams(workers=2), engine=dask_engine)
    found = storage_error(raised.value)
    assert found is not None and "no space left on device" in str(found), raised.value
    assert sorted(os.listdir(small_disk)) == []


def test_curate_never_replaces_a_build_folder(tmp_path):
    """A build folder has a report.json like a curated dataset, and its stages besides:
    curating into it would swap the whole build out."""
    from pcbforge.curate.runner import CurateError, curate

    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("not an image")
    build = tmp_path / "built"
    (build / ".build" / "state").mkdir(parents=True)
    (build / "report.json").write_text("{}")
    with pytest.raises(CurateError, match="pcbforge build"):
        curate(src, build)
    assert sorted(p.name for p in build.iterdir()) == [".build", "report.json"]
