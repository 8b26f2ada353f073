"""benchmarks/qa_bench.py: its tables and crops, and a whole run on a small generated
DeepPCB-layout folder."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from pcbforge.datasets.qa_tables import findings_table
from tests.bench.test_planting import _digest, _write_layout

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "qa_bench.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("qa_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["qa_bench"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("qa_bench", None)


def _score(**values) -> dict:
    base = {"planted": 10, "found": 10, "found_wrong_kind": 0, "recall": 1.0,
            "true_positives": 10, "false_positives_new": 0, "false_positives_known": 0,
            "fp_on_planted_pairs": 0, "matched_other_kind": 0, "precision_new": 1.0,
            "precision_raw": 1.0, "proposal_right": 7, "found_on_clean_too": 0,
            "missed": [], "proposal_wrong": [], "false_positives": []}
    return {**base, **values}


def test_table_and_verdict(bench) -> None:
    scores = {"moved": _score(found=9, found_wrong_kind=1, recall=0.9, proposal_right=9),
              "shifted": _score(precision_new=0.8, precision_raw=0.5)}
    registration = {"shifted": {"n": 10, "measured_right": 8}}
    table = bench.main_table(scores, registration)
    assert table[0].startswith("| planted kind | planted | found | recall | precision (new)")
    assert table[2] == "| moved | 10 | 9 (+1 wrong kind) | 0.900 | 1.000 | 1.000 | 9/9 (1.00) |"
    assert table[3] == "| shifted | 10 | 10 | 1.000 | 0.800 | 0.500 | 8/10 (0.80) |"
    assert bench.verdict(scores) == [
        "moved: FAIL (recall 0.900, precision new 1.000)",
        "shifted: FAIL (recall 1.000, precision new 0.800)"]
    assert bench.verdict({"deleted": _score()}) == [
        "deleted: pass (recall 1.000, precision new 1.000)"]


def test_clean_table_counts_every_kind(bench) -> None:
    nan = float("nan")
    findings = findings_table([
        {"finding_id": f"q{i}", "sample_id": f"s{i % 2}", "kind": "empty_box",
         "detail": "no_change", "score": 1.0, "reason": "", "label_row": i, "label": "open",
         "x1": 0.0, "y1": 0.0, "x2": 5.0, "y2": 5.0, "action": "delete",
         "proposed_label": "", "px1": nan, "py1": nan, "px2": nan, "py2": nan}
        for i in range(3)])
    table = bench.clean_table(findings, pairs=4)
    assert "| empty_box | 3 | 2 | 0.500 | no_change 3 |" in table
    assert "| misregistered | 0 | 0 | 0.000 |  |" in table
    assert table[-1] == "| any | 3 | 2 | 0.500 | |"


def test_whole_run_on_a_small_layout(bench, tmp_path: Path, capsys) -> None:
    src = tmp_path / "src"
    _write_layout(src, {"group00001": 6})
    before = _digest(src)
    out = tmp_path / "out.json"
    code = bench.main(["--data", str(src), "--share", "1.0", "--workers", "1",
                       "--json", str(out), "--gallery", str(tmp_path / "gallery"),
                       "--workdir", str(tmp_path / "work")])
    assert code == 0
    assert _digest(src) == before
    printed = capsys.readouterr().out
    assert "| planted kind | planted | found | recall |" in printed
    assert "unmodified data" in printed
    result = json.loads(out.read_text())
    assert set(result["scores"]) == {"moved", "phantom", "deleted", "swapped", "shifted",
                                     "rotated"}
    assert sum(s["planted"] for s in result["scores"].values()) == sum(
        t["status"] == "planted" for t in result["truth"])
    assert all(t["sample_id"] for t in result["truth"])
    assert (tmp_path / "gallery" / "index.md").is_file()
