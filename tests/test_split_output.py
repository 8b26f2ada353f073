"""``split`` rewrites its dataset like every output: staged, swapped in whole, one writer
at a time. A failure or a kill leaves the dataset exactly as it was."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pcbforge.cli.main import app
from pcbforge.core.errors import EXIT_BUSY
from pcbforge.datasets.dataset import Dataset, DatasetInfo, load, save, with_defaults
from pcbforge.split import SplitParams, split_dataset


def _dataset(root) -> None:
    """Twelve images of three classes (no image files needed to split)."""
    n = 12
    samples = pd.DataFrame({
        "path": [f"img{k}.png" for k in range(n)], "status": ["ok"] * n,
        "width": [64] * n, "height": [64] * n, "group": [f"g{k}" for k in range(n)],
    })
    samples, _ = with_defaults(samples, None)
    classes = ["spur", "short", "open"]
    labels = pd.DataFrame({
        "sample_id": samples["sample_id"][:9].tolist(),
        "label": [classes[k % 3] for k in range(9)],
        "x1": [1.0] * 9, "y1": [1.0] * 9, "x2": [9.0] * 9, "y2": [9.0] * 9,
    })
    _, labels = with_defaults(samples, labels)
    save(Dataset(root, samples, labels, DatasetInfo(classes=classes)))


def _contents(root) -> dict[str, bytes]:
    return {name: (root / name).read_bytes() for name in sorted(os.listdir(root))}


def _hidden_leftovers(root) -> list[str]:
    return sorted(n for n in os.listdir(root.parent)
                  if n.startswith(f".{root.name}.") and not n.endswith(".lock"))


def test_split_writes_every_file_and_leaves_nothing_beside(tmp_path):
    root = tmp_path / "ds"
    _dataset(root)
    report = split_dataset(root, SplitParams())
    dataset = load(root)
    assert set(dataset.samples["split"]) == {"train", "val", "test"}
    assert dataset.info.split["method"] == report["method"]
    assert (root / "split_report.json").is_file()
    assert _hidden_leftovers(root) == []
    assert not (tmp_path / ".ds.lock").exists()


def test_a_failure_after_the_tables_leaves_the_dataset_as_it_was(tmp_path, monkeypatch):
    """Before: the new split column was already in samples.parquet (and dataset.json said
    split) when writing the report failed; the dataset was half new, half old."""
    root = tmp_path / "ds"
    _dataset(root)
    before = _contents(root)

    def full_disk(path, payload):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr("pcbforge.split.write_json", full_disk)
    with pytest.raises(OSError, match="No space left"):
        split_dataset(root, SplitParams())
    assert _contents(root) == before
    assert _hidden_leftovers(root) == []


def test_images_inside_the_dataset_are_not_written(tmp_path):
    """The stage is a hard-link copy: the images keep their inode, the tables are new."""
    root = tmp_path / "ds"
    _dataset(root)
    (root / "img0.png").write_bytes(b"not really a png")
    inode = os.stat(root / "img0.png").st_ino
    samples_inode = os.stat(root / "samples.parquet").st_ino
    split_dataset(root, SplitParams())
    assert os.stat(root / "img0.png").st_ino == inode
    assert (root / "img0.png").read_bytes() == b"not really a png"
    assert os.stat(root / "samples.parquet").st_ino != samples_inode


def test_the_same_split_twice_gives_the_same_bytes(tmp_path):
    first, second = tmp_path / "a" / "ds", tmp_path / "b" / "ds"
    _dataset(first)
    _dataset(second)
    split_dataset(first, SplitParams(seed=3))
    split_dataset(second, SplitParams(seed=3))
    for name in ("samples.parquet", "labels.parquet", "dataset.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def _hold_lock(root) -> subprocess.Popen:
    code = ("import sys, time\nfrom pcbforge.core import OutputLock\n"
            "OutputLock(sys.argv[1], 'curate').acquire()\nprint('held', flush=True)\n"
            "time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(root)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_writer_is_refused_with_one_line(tmp_path):
    """Before: split wrote into the folder while another command was writing it."""
    root = tmp_path / "ds"
    _dataset(root)
    before = _contents(root)
    holder = _hold_lock(root)
    try:
        run = CliRunner().invoke(app, ["split", str(root)])
    finally:
        holder.kill()
        holder.wait()
    assert run.exit_code == EXIT_BUSY, run.output
    lines = run.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), run.output
    assert f"pid {holder.pid}" in lines[0] and "curate" in lines[0]
    assert _contents(root) == before
    # The holder is dead: its lock is taken over.
    time.sleep(0.1)
    assert CliRunner().invoke(app, ["split", str(root)]).exit_code == 0


def test_split_puts_back_a_dataset_parked_by_a_killed_swap(tmp_path):
    root = tmp_path / "ds"
    _dataset(root)
    before = load(root).samples
    os.replace(root, tmp_path / ".ds.old-999999")
    run = CliRunner().invoke(app, ["split", str(root)])
    assert run.exit_code == 0, run.output
    after = load(root).samples
    assert np.array_equal(after["sample_id"], before["sample_id"])
    assert _hidden_leftovers(root) == []


def test_a_full_disk_ends_split_with_one_line_and_the_dataset_as_it_was(small_disk):
    root = small_disk / "ds"
    _dataset(root)
    before = _contents(root)
    with open(small_disk / "filler", "wb") as filler:  # take every free byte
        block = b"\0" * 65536
        try:
            while True:
                filler.write(block)
                filler.flush()
        except OSError:
            pass
    run = CliRunner().invoke(app, ["split", str(root)])
    assert run.exit_code == 74, run.output
    lines = run.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in run.output, run.output
    assert lines[0].startswith("error:") and "no space left on device" in lines[0]
    assert _contents(root) == before
    assert _hidden_leftovers(root) == []
