"""evaluate_dataset over a real dataset folder: what it writes, what it leaves out, errors,
and two evaluations compared; the ``pcbforge evaluate`` command around it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import pcbforge as pf
from pcbforge.cli.main import app
from pcbforge.datasets.evaluation_tables import (
    EvaluationError,
    read_evaluation,
    read_outcomes,
)
from pcbforge.datasets.evaluation_tables import evaluation_names as evaluations
from pcbforge.evaluate.runner import compare_evaluations, evaluate_dataset

runner = CliRunner()


@pytest.fixture(scope="module")
def split_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("evaluate")
    pf.write_boards(root / "boards", count=4, seed=0, size=256, progress=False)
    pf.synthesize(root / "boards", root / "synth", count=16, seed=0, progress=False)
    pf.split_dataset(root / "synth", ratios=(0.5, 0.25, 0.25), seed=0)
    return root / "synth"


@pytest.fixture
def dataset(split_dataset, tmp_path) -> Path:
    copy = tmp_path / "synth"
    shutil.copytree(split_dataset, copy)
    return copy


def _predictions(dataset: Path, out: Path, *, drop: float = 0.0, seed: int = 0,
                 false_alarms: int = 0) -> Path:
    """The labels as predictions (a pcbforge table), some dropped, some false alarms on the
    templates (good boards)."""
    data = pf.load(dataset)
    rng = np.random.default_rng(seed)
    rows = [{"sample_id": r.sample_id, "label": r.label, "score": float(rng.uniform(0.5, 1)),
             "x1": r.x1, "y1": r.y1, "x2": r.x2, "y2": r.y2}
            for r in data.labels.itertuples() if rng.random() >= drop]
    boards = data.samples[data.samples["role"] == "template"]["sample_id"].tolist()
    for sample_id in boards[:false_alarms]:
        rows.append({"sample_id": sample_id, "label": "spur", "score": 0.9, "x1": 5.0,
                     "y1": 5.0, "x2": 25.0, "y2": 25.0})
    pd.DataFrame(rows).to_csv(out, index=False)
    return out


def test_the_labels_as_predictions_score_one(dataset, tmp_path):
    source = _predictions(dataset, tmp_path / "perfect.csv")
    summary = evaluate_dataset(dataset, source, "pcbforge")
    assert summary["name"] == "perfect" and summary["split"] == "test"
    assert summary["deeppcb"]["mAP"] == 1.0 and summary["coco"]["mAP"] == pytest.approx(1.0)
    assert summary["fp"] == 0 and summary["fn"] == 0 and summary["tp"] == summary["truths"] > 0
    test_ids = set(pf.load(dataset).samples.query("split == 'test'")["sample_id"])
    per_pred, per_truth = read_outcomes(dataset, "perfect")
    assert set(per_truth["sample_id"]) <= test_ids and (per_truth["outcome"] == "tp").all()
    # Predictions on the other splits' images are left out, and counted.
    labels = pf.load(dataset).labels
    assert summary["ignored_outside_split"] == int((~labels["sample_id"].isin(test_ids)).sum())
    assert evaluations(dataset) == ["perfect"]
    assert read_evaluation(dataset, "perfect") == json.loads(json.dumps(summary))
    folder = dataset / "evaluations" / "perfect"
    assert sorted(p.name for p in folder.iterdir()) == [
        "confusion.csv", "metrics.json", "predictions.parquet", "truths.parquet"]
    pf.load(dataset)  # still a valid dataset


def test_false_alarms_on_good_boards_and_missed_defects_count(dataset, tmp_path):
    source = _predictions(dataset, tmp_path / "model.csv", drop=0.3, seed=1, false_alarms=4)
    summary = evaluate_dataset(dataset, source, "pcbforge", split="all")
    per_pred, per_truth = read_outcomes(dataset, "model")
    assert summary["fn"] == int((per_truth["outcome"] == "fn").sum()) > 0
    assert summary["fp"] == 4 and set(per_pred.loc[per_pred["outcome"] == "fp", "fp_kind"]) \
        == {"background"}
    assert summary["deeppcb"]["mAP"] < 1.0
    assert set(summary["by_split"]) == {"train", "val", "test"}
    assert sum(part["truths"] for part in summary["by_split"].values()) == summary["truths"]
    confusion = pd.read_csv(dataset / "evaluations" / "model" / "confusion.csv",
                            index_col="true")
    assert confusion.loc["background", "spur"] == 4
    assert confusion.loc[:, "background"].sum() == summary["fn"]


def test_same_predictions_same_bytes(dataset, tmp_path):
    source = _predictions(dataset, tmp_path / "model.csv", drop=0.2, seed=2)
    evaluate_dataset(dataset, source, "pcbforge", name="first")
    evaluate_dataset(dataset, source, "pcbforge", name="second")
    for name in ("predictions.parquet", "truths.parquet", "confusion.csv"):
        assert (dataset / "evaluations" / "first" / name).read_bytes() == \
            (dataset / "evaluations" / "second" / name).read_bytes(), name


def test_two_evaluations_compared(dataset, tmp_path):
    evaluate_dataset(dataset, _predictions(dataset, tmp_path / "a.csv", drop=0.4, seed=3),
                     "pcbforge")
    evaluate_dataset(dataset, _predictions(dataset, tmp_path / "b.csv"), "pcbforge")
    report = compare_evaluations(dataset, "a", "b")
    assert report["overall"]["mAP"]["second"] == 1.0
    assert report["overall"]["mAP"]["delta"] == pytest.approx(
        1.0 - report["overall"]["mAP"]["first"])
    assert {row["class"] for row in report["classes"]} == set(pf.load(dataset).info.classes)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"split": "holdout"}, r"no usable images in split 'holdout' \(splits here: test, train, "
                           r"val\)"),
    ({"name": "../elsewhere"}, "evaluation name '../elsewhere'"),
])
def test_bad_requests_are_one_line_errors(dataset, tmp_path, kwargs, message):
    source = _predictions(dataset, tmp_path / "model.csv")
    with pytest.raises(EvaluationError, match=message):
        evaluate_dataset(dataset, source, "pcbforge", **kwargs)
    assert evaluations(dataset) == []


def test_the_command(dataset, tmp_path):
    source = _predictions(dataset, tmp_path / "model.csv", drop=0.3, seed=4)
    done = runner.invoke(app, ["evaluate", str(dataset), "-p", str(source), "-f", "pcbforge",
                               "--name", "run1"])
    assert done.exit_code == 0, done.output
    assert "evaluation run1 on split test" in done.output and "COCO mAP" in done.output
    perfect = _predictions(dataset, tmp_path / "perfect.csv")
    assert runner.invoke(app, ["evaluate", str(dataset), "-p", str(perfect), "-f",
                               "pcbforge"]).exit_code == 0
    compared = runner.invoke(app, ["evaluate", str(dataset), "--compare", "run1", "perfect"])
    assert compared.exit_code == 0, compared.output
    assert "run1 -> perfect" in compared.output
    bad = tmp_path / "bad.csv"
    bad.write_text("sample_id,label,score,x1,y1,x2,y2\nnope,spur,0.5,1,1,5,5\n")
    failed = runner.invoke(app, ["evaluate", str(dataset), "-p", str(bad), "-f", "pcbforge"])
    assert failed.exit_code == 2 and "error:" in failed.output and "'nope'" in failed.output
    assert "Traceback" not in failed.output
    missing = runner.invoke(app, ["evaluate", str(dataset), "--compare", "run1", "run9"])
    assert missing.exit_code == 2 and "no evaluation 'run9'" in missing.output
