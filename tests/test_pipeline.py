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
