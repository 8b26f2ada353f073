import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from pcbforge.cli.main import app

runner = CliRunner()


def test_curate_writes_dataset_and_prints_summary(messy_corpus, tmp_path):
    src, manifest = messy_corpus
    out = tmp_path / "dataset"
    result = runner.invoke(app, ["curate", str(src), "--out", str(out), "--workers", "1",
                                 "--copy-kept"])
    assert result.exit_code == 0, result.output
    assert "curate:" in result.output and "images/s" in result.output
    table = pd.read_parquet(out / "samples.parquet")
    assert len(table) == len(manifest)
    report = json.loads((out / "report.json").read_text())
    assert report["counts"]["corrupt"] == (table["status"] == "corrupt").sum()
    kept = table.loc[table["status"] == "ok", "path"]
    assert all((out / "images" / path).is_file() for path in kept if "\\x" not in path)


def test_options_reach_the_run(messy_corpus, tmp_path):
    src, _ = messy_corpus
    out = tmp_path / "dataset"
    result = runner.invoke(app, ["curate", str(src), "--out", str(out), "--workers", "1",
                                 "--no-transformed", "--min-side", "10"])
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out / "samples.parquet")
    assert not (table["reason"] == "transformed_duplicate").any()
    assert not (table["reason"] == "too_small").any()
    report = json.loads((out / "report.json").read_text())
    assert report["parameters"]["dedupe"]["transformed"] is False


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["curate", "/no/such/folder", "--out", "{tmp}/o"], "does not exist"),
        (["curate", "{tmp}", "--out", "{tmp}/o"], "inside the source"),
        (["curate", "{tmp}", "--out", "{tmp}/o", "--copy-kept", "--link-kept"], "choose one"),
        (["curate", "{tmp}", "--out", "{tmp2}", "--workers", "-3"], "workers"),
    ],
    ids=["missing_src", "out_inside_src", "copy_and_link", "bad_workers"],
)
def test_bad_input_is_one_clear_line_and_exit_2(args, message, tmp_path):
    (tmp_path / "src").mkdir()
    args = [a.format(tmp=tmp_path / "src", tmp2=tmp_path / "elsewhere") for a in args]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "elsewhere").exists()


def test_no_arguments_shows_help():
    result = runner.invoke(app, [])
    assert "curate" in result.output and "synth" in result.output


def test_synth_messy_command(tmp_path):
    result = runner.invoke(app, ["synth", "messy", "--out", str(tmp_path / "m"), "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output
    again = runner.invoke(app, ["synth", "messy", "--out", str(tmp_path / "m")])
    assert again.exit_code == 2 and "non-empty" in again.output
    assert len(again.output.strip().splitlines()) == 1


def test_doctor_finds_the_database():
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    assert "fiftyone" in result.output and "database" in result.output


def test_the_summary_says_when_crowded_images_were_matched_by_phash_only(messy_corpus,
                                                                         tmp_path):
    import io

    from rich.console import Console

    from pcbforge.cli.curate import print_summary
    from pcbforge.curate import CurateParams, curate

    src, _ = messy_corpus
    report = curate(src, tmp_path / "dataset", CurateParams(workers=1)).report
    for unsearched, shown in ((0, False), (47007, True)):
        report["duplicate_search"]["occupancy_unsearched_images"] = unsearched
        console = Console(file=io.StringIO(), width=200)
        print_summary(report, console)
        text = console.file.getvalue()
        assert ("47007 images with look-alike block occupancy" in text) is shown, text
