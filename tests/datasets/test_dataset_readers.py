"""Readers refuse, in words, a dataset folder that a killed writer left missing or
half-written, instead of failing with a library error or a misleading "not a dataset"."""

from __future__ import annotations

import os

import pandas as pd
import pytest
from typer.testing import CliRunner

from pcbforge.cli.main import app
from pcbforge.datasets.dataset import (
    Dataset,
    DatasetError,
    DatasetInfo,
    load,
    read_info,
    save,
    with_defaults,
)


def _save(root) -> None:
    samples = pd.DataFrame({
        "sample_id": ["s1", "s2", "s3"], "path": ["a.png", "b.png", "c.png"],
        "status": ["ok"] * 3, "width": [64] * 3, "height": [64] * 3,
    })
    labels = pd.DataFrame({
        "sample_id": ["s2"], "label": ["spur"], "x1": [1.0], "y1": [2.0], "x2": [9.0],
        "y2": [9.0], "mask": [""], "synthetic": [False], "params": [""],
    })
    samples, labels = with_defaults(samples, labels)
    save(Dataset(root, samples, labels, DatasetInfo(classes=["spur"])))


def test_a_folder_parked_by_a_killed_swap_is_named_with_the_way_back(tmp_path):
    root = tmp_path / "ds"
    _save(root)
    parked = tmp_path / f".ds.old-{os.getpid() + 1}"
    os.replace(root, parked)  # what a kill between the two renames of a swap leaves
    for read in (load, read_info):
        with pytest.raises(DatasetError, match="was being replaced when its writer was "
                                               "killed") as caught:
            read(root)
        assert str(parked) in str(caught.value)


@pytest.mark.parametrize("table", ["labels.parquet", "samples.parquet"])
def test_a_truncated_table_is_named(tmp_path, table):
    root = tmp_path / "ds"
    _save(root)
    data = (root / table).read_bytes()
    (root / table).write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=f"{table}: not a readable parquet table") as caught:
        load(root)
    assert str(root / table) in str(caught.value)


def test_a_labels_table_without_label_columns_is_named(tmp_path):
    root = tmp_path / "ds"
    _save(root)
    pd.DataFrame({"something": [1, 2]}).to_parquet(root / "labels.parquet")
    with pytest.raises(DatasetError, match=r"labels.parquet: expected columns .* missing "
                                           r"\['sample_id', 'label'"):
        load(root)


def test_a_damaged_header_is_named(tmp_path):
    root = tmp_path / "ds"
    _save(root)
    (root / "dataset.json").write_bytes(b'{"classes": ["\xff\xfe')
    with pytest.raises(DatasetError, match="dataset.json: not UTF-8"):
        load(root)


def test_a_missing_folder_says_so(tmp_path):
    with pytest.raises(DatasetError, match="no such dataset folder"):
        load(tmp_path / "nothing")


def test_a_command_reading_half_a_dataset_prints_one_line(tmp_path):
    root = tmp_path / "ds"
    _save(root)
    (root / "labels.parquet").write_bytes(b"PAR1 cut short")
    run = CliRunner().invoke(app, ["split", str(root)])
    assert run.exit_code == 2, run.output
    lines = run.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in run.output
    assert lines[0].startswith("error:") and "labels.parquet: not a readable parquet" in lines[0]
