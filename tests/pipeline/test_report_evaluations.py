"""The report's "Model evaluations" section: every evaluation ``pcbforge evaluate`` kept,
its numbers as in ``metrics.json``, its precision-recall curves and confusion matrix as
byte-stable PNG files; nothing without evaluations; a warning, not a crash, for one that
cannot be read."""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import pcbforge as pf
from pcbforge.cli.main import app
from pcbforge.datasets.evaluation_tables import read_evaluation, read_outcomes
from pcbforge.evaluate.runner import evaluate_dataset
from pcbforge.pipeline.report import precision_recall

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: The report's keys copied from metrics.json, and where they are there.
NUMBERS = {"split": ("split",), "images": ("images",), "truths": ("truths",),
           "predictions": ("predictions",), "iou_threshold": ("iou_threshold",),
           "mAP": ("deeppcb", "mAP"), "coco_mAP": ("coco", "mAP"),
           "f_score": ("deeppcb", "f_score"), "threshold": ("deeppcb", "threshold"),
           "tp": ("tp",), "fp": ("fp",), "fn": ("fn",), "ap": ("deeppcb", "ap"),
           "coco_ap": ("coco", "ap")}


def _predictions(dataset: Path, out: Path, *, drop: float, seed: int,
                 false_alarms: int = 0, wrong_class: int = 0) -> Path:
    """The labels as predictions (a pcbforge table), some dropped, some relabelled, some
    false alarms on the templates."""
    data = pf.load(dataset)
    classes = list(data.info.classes)
    rng = np.random.default_rng(seed)
    rows = []
    for r in data.labels.itertuples():
        if rng.random() < drop:
            continue
        label = r.label
        if wrong_class and rng.random() < 0.5:
            label = classes[(classes.index(r.label) + 1) % len(classes)]
            wrong_class -= 1
        rows.append({"sample_id": r.sample_id, "label": label,
                     "score": float(rng.uniform(0.3, 1)),
                     "x1": r.x1, "y1": r.y1, "x2": r.x2, "y2": r.y2})
    boards = data.samples[data.samples["role"] == "template"]["sample_id"].tolist()
    for number, sample_id in enumerate(boards[:false_alarms]):
        rows.append({"sample_id": sample_id, "label": "spur", "score": 0.95 - 0.1 * number,
                     "x1": 5.0, "y1": 5.0, "x2": 25.0, "y2": 25.0})
    pd.DataFrame(rows).to_csv(out, index=False)
    return out


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory) -> Path:
    """A split dataset with two evaluations: ``baseline`` on the test split (boxes missed,
    classes mistaken, false alarms) and ``model.v2`` on every split."""
    root = tmp_path_factory.mktemp("report-evaluations")
    pf.write_boards(root / "boards", count=4, seed=0, size=256, progress=False)
    pf.synthesize(root / "boards", root / "synth", count=16, seed=0, progress=False)
    pf.split_dataset(root / "synth", ratios=(0.5, 0.25, 0.25), seed=0)
    dataset = root / "synth"
    evaluate_dataset(dataset, _predictions(dataset, root / "a.csv", drop=0.4, seed=1,
                                           false_alarms=3, wrong_class=4),
                     "pcbforge", name="baseline", split="test")
    evaluate_dataset(dataset, _predictions(dataset, root / "b.csv", drop=0.1, seed=2),
                     "pcbforge", name="model.v2", split="all")
    return dataset


@pytest.fixture
def dataset(evaluated, tmp_path) -> Path:
    copy = tmp_path / "synth"
    shutil.copytree(evaluated, copy)
    return copy


def _report(dataset: Path) -> tuple[dict, str]:
    result = CliRunner().invoke(app, ["report", str(dataset), "--quiet"])
    assert result.exit_code == 0, result.output
    return (json.loads((dataset / "report.json").read_text()),
            (dataset / "report.html").read_text())


def _all_point_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """AP from a curve (VOC 2010+: the area under its monotone envelope)."""
    recall = np.r_[0.0, recall, 1.0]
    precision = np.maximum.accumulate(np.r_[0.0, precision, 0.0][::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1]) + 1
    return float(np.sum((recall[steps] - recall[steps - 1]) * precision[steps]))


def test_two_evaluations_get_a_table_plots_and_the_numbers_of_metrics_json(dataset):
    report, page = _report(dataset)
    assert [e["name"] for e in report["evaluations"]] == ["baseline", "model.v2"]
    assert "warnings" not in report
    for entry in report["evaluations"]:
        metrics = read_evaluation(dataset, entry["name"])
        for key, where in NUMBERS.items():
            value = metrics
            for part in where:
                value = value[part]
            assert entry[key] == value, (entry["name"], key)
        for kind in ("pr", "confusion"):
            path = entry["plots"][kind]
            assert path == f"report/eval_{entry['name']}_{kind}.png"
            assert report["plots"][f"eval_{entry['name']}_{kind}"] == path
            data = (dataset / path).read_bytes()
            assert data.startswith(PNG_SIGNATURE)
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            assert image is not None and image.shape[0] > 200 and image.std() > 10
        # The matrix drawn: true class by row, "background" last each way.
        assert entry["confusion"] == metrics["confusion"]
        order = [*metrics["classes"], "background"]
        assert list(entry["confusion"]) == order
        assert all(list(row) == order for row in entry["confusion"].values())
    baseline, better = report["evaluations"]
    # Classes mistaken: the matrix is not symmetric, so a transposed one would differ.
    matrix = pd.DataFrame(baseline["confusion"]).T
    assert not matrix.equals(matrix.T)
    assert baseline["split"] == "test" and better["split"] == "all"
    assert baseline["fp"] > 0 and baseline["fn"] > 0 and baseline["mAP"] < better["mAP"]
    # Different evaluations, different pictures.
    for kind in ("pr", "confusion"):
        assert (dataset / baseline["plots"][kind]).read_bytes() != \
            (dataset / better["plots"][kind]).read_bytes()

    section = page[page.index('<h2 id="evaluations">Model evaluations</h2>'):]
    for entry in report["evaluations"]:
        assert f"<td>{entry['name']}</td>" in section
        assert f"<td>{entry['mAP']:.3f}</td>" in section
        assert f"<td>{entry['coco_mAP']:.3f}</td>" in section
        assert f"<td>{entry['f_score']:.3f}</td><td>{entry['threshold']:.3f}</td>" in section
        assert (f"<td>{entry['tp']}</td><td>{entry['fp']}</td><td>{entry['fn']}</td>"
                in section)
        for kind in ("pr", "confusion"):
            assert f'src="{entry["plots"][kind]}"' in section
    assert 'id="warnings"' not in page


def test_the_curves_end_at_each_class_recall_and_give_its_ap(dataset):
    """The plotted curve of a class is its predictions by decreasing score: it ends at the
    class's recall over every prediction, and its all-point AP is metrics.json's."""
    metrics = read_evaluation(dataset, "baseline")
    predictions, truths = read_outcomes(dataset, "baseline")
    curves = precision_recall(predictions, truths, metrics["classes"])
    assert list(curves) == metrics["classes"]
    for cls, curve in curves.items():
        counts = metrics["deeppcb"]["counts"][cls]
        if counts["truths"] == 0:
            assert curve is None
            continue
        recall, precision = curve
        assert len(recall) == counts["predictions"]
        assert recall[-1] == pytest.approx(counts["tp"] / counts["truths"])
        assert precision[-1] == pytest.approx(counts["tp"] / counts["predictions"])
        assert np.all(np.diff(recall) >= 0)
        assert _all_point_ap(recall, precision) == pytest.approx(metrics["deeppcb"]["ap"][cls])
    # Not trivially 1 everywhere: the baseline's mistakes show in some curve.
    assert any(c is not None and c[1].min() < 1 for c in curves.values())


def test_the_same_evaluations_give_the_same_bytes(dataset):
    report, _ = _report(dataset)
    names = [p for e in report["evaluations"] for p in e["plots"].values()]
    first = {name: (dataset / name).read_bytes() for name in
             [*names, "report.json", "report.html"]}
    shutil.rmtree(dataset / "report")
    _report(dataset)
    assert {name: (dataset / name).read_bytes() for name in first} == first


def test_without_evaluations_the_report_is_unchanged(dataset):
    evaluations = dataset / "evaluations"
    shutil.move(evaluations, dataset.parent / "kept")
    report, page = _report(dataset)
    assert "evaluations" not in report and "warnings" not in report
    assert "Model evaluations" not in page and 'id="evaluations"' not in page
    assert not list((dataset / "report").glob("eval_*"))
    before = {name: (dataset / name).read_bytes() for name in ("report.json", "report.html")}

    shutil.move(dataset.parent / "kept", evaluations)
    with_them, page = _report(dataset)
    assert len(with_them["evaluations"]) == 2 and "Model evaluations" in page
    shutil.rmtree(evaluations)
    _report(dataset)
    assert {name: (dataset / name).read_bytes() for name in before} == before
    assert not list((dataset / "report").glob("eval_*"))


def test_an_unreadable_evaluation_is_a_warning_and_the_rest_is_reported(dataset):
    (dataset / "evaluations" / "baseline" / "metrics.json").write_text('{"name": "base')
    (dataset / "evaluations" / "model.v2" / "predictions.parquet").write_bytes(b"not parquet")
    report, page = _report(dataset)
    baseline_warning, curve_warning = report["warnings"]
    assert baseline_warning.startswith("evaluation baseline: metrics.json cannot be read (")
    assert curve_warning.startswith("evaluation model.v2: no precision-recall curve")
    assert all("\n" not in w for w in report["warnings"])
    # The readable evaluation is shown, its confusion matrix drawn without the tables.
    [entry] = report["evaluations"]
    assert entry["name"] == "model.v2" and entry["mAP"] == \
        read_evaluation(dataset, "model.v2")["deeppcb"]["mAP"]
    assert entry["plots"]["pr"] is None
    assert (dataset / entry["plots"]["confusion"]).read_bytes().startswith(PNG_SIGNATURE)
    assert not (dataset / "report" / "eval_baseline_pr.png").exists()
    assert '<div id="warnings">' in page
    assert f"Warning: {html.escape(baseline_warning)}" in page
    assert "<td>baseline</td>" not in page and "<td>model.v2</td>" in page
    # The rest of the report is there.
    assert report["status"]["ok"] > 0 and set(report["splits"]) == {"train", "val", "test"}
    assert "<h2>Defect sizes</h2>" in page and "<h2>Splits</h2>" in page
    for plot in ("status", "splits", "defect_sizes"):
        assert (dataset / report["plots"][plot]).is_file()


def test_only_unreadable_evaluations_leave_the_section_and_its_warnings(dataset):
    for name in ("baseline", "model.v2"):
        (dataset / "evaluations" / name / "metrics.json").write_text("[1, 2]")
    report, page = _report(dataset)
    assert report["evaluations"] == [] and len(report["warnings"]) == 2
    assert "No evaluation in <code>evaluations/</code> can be read" in page

