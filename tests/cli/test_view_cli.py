"""``pcbforge view``: the summary and report without launching, ``--from-fiftyone``, and
errors as one line (the App itself is driven in test_view_browser.py)."""

from __future__ import annotations

import json
import shutil
import socket

import pytest
from typer.testing import CliRunner

from pcbforge.cli.main import app
from pcbforge.datasets import load
from pcbforge.datasets.fiftyone import table_view_counts

runner = CliRunner()


def _one_error_line(output: str) -> str:
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    assert lines[0].startswith("error:") and "Traceback" not in output
    return lines[0]


@pytest.fixture
def dataset(inspection_dataset, tmp_path):
    return shutil.copytree(inspection_dataset, tmp_path / "ds")


def test_view_without_launch_prints_every_view_and_writes_a_report(fiftyone_db, dataset):
    run = runner.invoke(app, ["view", str(dataset), "--no-launch", "--name", "cli-summary"])
    assert run.exit_code == 0, run.output
    expected = table_view_counts(load(dataset))
    assert f"FiftyOne dataset 'cli-summary': 18 samples, {len(expected)} saved views" in run.output
    for view, count in expected.items():
        assert any(line.split("│")[1:3] == [f" {view:<22} ", f" {count:>7} "]
                   for line in run.output.splitlines() if "│" in line), view
    report = json.loads((dataset / "view_report.json").read_text())
    assert report["views"] == report["table_counts"] == expected
    assert report["counts_match"] and report["url"] is None
    assert report["fiftyone_dataset"] == "cli-summary" and report["samples"] == 18


def test_from_fiftyone_brings_a_tag_back(fiftyone_db, dataset, tmp_path):
    assert runner.invoke(app, ["view", str(dataset), "--no-launch", "--name", "cli-edit"]
                         ).exit_code == 0
    fo_dataset = fiftyone_db.load_dataset("cli-edit")
    boxes = len(load(dataset).labels)
    sample = fo_dataset.match({"path": "real/line_1.png"}).first()
    assert len(sample.ground_truth.detections) == 1
    sample.tags.append("bad_label")
    sample.ground_truth.detections = []
    sample.save()
    out = tmp_path / "reviewed"
    run = runner.invoke(app, ["view", "--from-fiftyone", "cli-edit", "--out", str(out)])
    assert run.exit_code == 0, run.output
    assert f"brought FiftyOne dataset 'cli-edit' back into {out}: 18 samples, boxes {boxes} -> " \
           f"{boxes - 1} ({boxes - 1} unchanged, 0 added, 1 removed; a moved box is both); " \
           f"sample tags: " \
           f"bad_label 1" in run.output
    reviewed = load(out, check_files=True).samples.set_index("path")
    assert reviewed.at["real/line_1.png", "tags"] == "bad_label"
    assert json.loads((out / "from_fiftyone_report.json").read_text())["boxes_removed"] == 1


def test_a_busy_port_is_one_error_line(fiftyone_db, dataset):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        run = runner.invoke(app, ["view", str(dataset), "--name", "cli-port", "--port",
                                  str(port)])
    assert run.exit_code == 2
    assert "cannot serve the App on 127.0.0.1:" in run.output.splitlines()[-1]


@pytest.mark.parametrize(("args", "message"), [
    (["{ds}", "--from-fiftyone", "x", "--out", "{tmp}/o"], "not both"),
    (["--from-fiftyone", "x"], "--from-fiftyone needs --out"),
    (["{ds}", "--out", "{tmp}/o"], "--out is for --from-fiftyone"),
    (["--from-fiftyone", "no-such-dataset", "--out", "{tmp}/o"],
     "no FiftyOne dataset 'no-such-dataset'"),
    (["{tmp}"], "no samples.parquet"),
], ids=["both", "no-out", "out-without-from", "unknown-name", "not-a-dataset"])
def test_errors_are_one_line(fiftyone_db, dataset, tmp_path, args, message):
    args = [a.format(ds=dataset, tmp=tmp_path) for a in args]
    run = runner.invoke(app, ["view", *args, "--no-launch"] if "--from-fiftyone" not in args
                        else ["view", *args])
    assert run.exit_code == 2
    assert message in _one_error_line(run.output)
