"""``pcbforge qa``: the summary, the files, --apply, and one-line errors."""

from __future__ import annotations

import pandas as pd
from typer.testing import CliRunner

from pcbforge.cli.main import app

runner = CliRunner()


def test_qa_prints_a_summary_and_writes_its_report(planted):
    result = runner.invoke(app, ["qa", str(planted), "--workers", "1", "--quiet",
                                 "--crops", "1"])
    assert result.exit_code == 0, result.output
    assert "5 findings in 6 images (6 pairs with a template, 1 misregistered)" in result.output
    assert "missing_label" in result.output and "misplaced_box" in result.output
    assert (planted / "qa.json").is_file() and (planted / "qa.csv").is_file()


def test_apply_a_cut_down_qa_csv(planted, tmp_path):
    assert runner.invoke(app, ["qa", str(planted), "--workers", "1", "--quiet"]).exit_code == 0
    table = pd.read_csv(planted / "qa.csv")
    table[table["kind"] == "empty_box"].to_csv(tmp_path / "accepted.csv", index=False)
    result = runner.invoke(app, ["qa", str(planted), "--apply", str(tmp_path / "accepted.csv"),
                                 "--out", str(tmp_path / "fixed")])
    assert result.exit_code == 0, result.output
    assert "applied 1 of 1 accepted findings (delete 1)" in result.output
    assert (tmp_path / "fixed" / "labels.parquet").is_file()


def test_one_line_errors(planted, tmp_path):
    result = runner.invoke(app, ["qa", str(planted), "--apply", "x.csv"])
    assert result.exit_code == 2 and "--apply needs --out" in result.output
    result = runner.invoke(app, ["qa", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "no such dataset folder" in result.output
    result = runner.invoke(app, ["qa", str(planted), "--apply", str(tmp_path / "none.csv"),
                                 "--out", str(tmp_path / "fixed")])
    assert result.exit_code == 2 and "no qa.parquet" in result.output
    assert "Traceback" not in result.output
