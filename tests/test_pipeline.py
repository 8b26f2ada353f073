"""``import deeppcb``: curation plus the layout, on a generated DeepPCB folder."""

import numpy as np
from typer.testing import CliRunner

from pcbforge.cli.main import app
from pcbforge.curate import CurateParams
from pcbforge.datasets.dataset import load
from pcbforge.pipeline import import_deeppcb
from tests.conftest import write_deeppcb_layout


def test_import_deeppcb_builds_a_valid_dataset(tmp_path):
    src = tmp_path / "deeppcb"
    expected = write_deeppcb_layout(src, {"group00001": 3, "group00002": 2},
                                    np.random.default_rng(4))
    (src / "group00001" / "00001" / "00001099_test.jpg").write_bytes(b"<html>oops</html>")
    result = import_deeppcb(src, tmp_path / "ds", CurateParams(workers=1))
    dataset = load(tmp_path / "ds", check_files=True)
    samples = dataset.samples.set_index("path")
    tested = samples[samples["role"] == "tested"]
    assert len(tested) == expected["tested"] + 1
    assert samples.loc["group00001/00001/00001099_test.jpg", "status"] == "corrupt"
    assert len(dataset.labels) == expected["boxes"]
    assert dataset.info.classes[3] == "spur"
    assert result.report["boards"] == 2
    # Each tested image shares its template's group and split; boards recorded.
    ok = tested[tested["template_path"] != ""]
    assert (ok["group"].to_numpy() == samples.loc[ok["template_path"], "group"].to_numpy()).all()
    listed = samples[(samples["role"] != "") & (samples["pair"] != "00001099")]
    assert set(listed["split"]) == {"train"}  # from trainval.txt
    assert samples.loc["group00001/00001/00001099_test.jpg", "split"] == ""  # in no list
    assert set(samples.loc[samples["role"] != "", "board"]) == {"group00001", "group00002"}
    # The missing template and annotation of the broken image are reported.
    assert any("00001099_test.jpg" in str(p) for p in result.problems)


def test_import_command(tmp_path):
    src = tmp_path / "deeppcb"
    write_deeppcb_layout(src, {"group00007": 2}, np.random.default_rng(5))
    run = CliRunner().invoke(app, ["import", "deeppcb", str(src), "--out", str(tmp_path / "ds"),
                                   "--workers", "1"])
    assert run.exit_code == 0, run.output
    assert "2 tested images, 2 templates, 1 boards, 4 boxes" in run.output
    bad = CliRunner().invoke(app, ["import", "deeppcb", str(tmp_path), "--out",
                                   str(tmp_path / "ds2")])
    assert bad.exit_code == 2 and "no DeepPCB tested images" in bad.output


def test_deeppcb_export_round_trip_keeps_every_box(tmp_path):
    src = tmp_path / "deeppcb"
    write_deeppcb_layout(src, {"group00001": 2, "group00002": 2}, np.random.default_rng(8))
    first = import_deeppcb(src, tmp_path / "ds", CurateParams(workers=1)).dataset
    run = CliRunner().invoke(app, ["export", str(tmp_path / "ds"), "--format", "deeppcb",
                                   "--out", str(tmp_path / "exported")])
    assert run.exit_code == 0, run.output
    again = import_deeppcb(tmp_path / "exported", tmp_path / "ds2", CurateParams(workers=1)).dataset

    def boxes(dataset):
        paths = dataset.samples.set_index("sample_id")["path"]
        table = dataset.labels.assign(path=dataset.labels["sample_id"].map(paths))
        return table[["path", "label", "x1", "y1", "x2", "y2"]].sort_values(
            ["path", "label", "x1", "y1"]).reset_index(drop=True)

    assert boxes(again).equals(boxes(first))
    assert (again.samples["role"] == "tested").sum() == 4


def test_export_refuses_bad_requests(tmp_path):
    src = tmp_path / "deeppcb"
    write_deeppcb_layout(src, {"group00001": 1}, np.random.default_rng(9))
    import_deeppcb(src, tmp_path / "ds", CurateParams(workers=1))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("x")
    runner = CliRunner()
    busy = runner.invoke(app, ["export", str(tmp_path / "ds"), "-f", "deeppcb", "-o",
                               str(tmp_path / "busy")])
    assert busy.exit_code == 2 and "not empty" in busy.output
    unknown = runner.invoke(app, ["export", str(tmp_path / "ds"), "-f", "tfrecord", "-o",
                                  str(tmp_path / "x")])
    assert unknown.exit_code == 2
    missing = runner.invoke(app, ["export", str(tmp_path / "nope"), "-f", "coco", "-o",
                                  str(tmp_path / "y")])
    assert missing.exit_code == 2 and "no samples.parquet" in missing.output
