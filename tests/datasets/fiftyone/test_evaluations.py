"""``pcbforge evaluate``'s evaluations in FiftyOne: an ``eval_<name>`` field of tp/fp/fn
detections, ``eval_<name>_fp_<class>``/``_fn_<class>``/``_low_conf_tp`` views and the
summary in ``info["evaluations"]``. The evaluations are made by ``evaluate_dataset`` on
hand-written predictions; what FiftyOne must hold is computed here from the evaluation's
parquet tables with pandas."""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import pcbforge as pf
from pcbforge.cli.main import app
from pcbforge.datasets.dataset import load
from pcbforge.datasets.evaluation_tables import read_evaluation, read_outcomes
from pcbforge.datasets.fiftyone import table_view_counts, to_fiftyone, view_counts
from pcbforge.evaluate.runner import evaluate_dataset

#: Evaluation names and the fields they get (a '.' is not possible in a field name).
MODEL, PERFECT = "model.v2", "perfect"
FIELDS = {MODEL: "eval_model_v2", PERFECT: "eval_perfect"}
LOW_SCORE = 0.05


@pytest.fixture(scope="module")
def split_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fo-evaluations")
    pf.write_boards(root / "boards", count=4, seed=0, size=256, progress=False)
    pf.synthesize(root / "boards", root / "synth", count=16, seed=0, progress=False)
    pf.split_dataset(root / "synth", ratios=(0.5, 0.25, 0.25), seed=0)
    return root / "synth"


@pytest.fixture
def evaluated(split_dataset, tmp_path) -> Path:
    """A copy of the dataset with two evaluations: ``model.v2`` on every split (every
    fourth box missed, three found with a low score, false alarms on the good boards) and
    ``perfect`` on the test split (the labels, distinct scores)."""
    root = shutil.copytree(split_dataset, tmp_path / "synth")
    data = load(root)
    labels = data.labels.reset_index(drop=True)
    rows = []
    for row in labels.itertuples():
        if row.Index % 4 == 3:
            continue  # missed
        score = LOW_SCORE if row.Index in (0, 1, 2) else 0.9
        rows.append({"sample_id": row.sample_id, "label": row.label, "score": score,
                     "x1": row.x1, "y1": row.y1, "x2": row.x2, "y2": row.y2})
    boards = data.samples.loc[data.samples["role"] == "template", "sample_id"].tolist()
    for n, sample_id in enumerate(boards[:2]):  # confident false alarms: spur
        rows.append({"sample_id": sample_id, "label": "spur", "score": 0.95, "x1": 5.0,
                     "y1": 5.0 + 40 * n, "x2": 25.0, "y2": 25.0 + 40 * n})
    for n in range(10):  # weak false alarms: open; the best F leaves them (and the 0.05 tps)
        rows.append({"sample_id": boards[-1], "label": "open", "score": 0.1, "x1": 20.0 * n,
                     "y1": 200.0, "x2": 20.0 * n + 15, "y2": 215.0})
    pd.DataFrame(rows).to_csv(tmp_path / "model.csv", index=False)
    evaluate_dataset(root, tmp_path / "model.csv", "pcbforge", name=MODEL, split="all")

    test_ids = set(data.samples.loc[data.samples["split"] == "test", "sample_id"])
    kept = labels[labels["sample_id"].isin(test_ids)]
    perfect = kept[["sample_id", "label", "x1", "y1", "x2", "y2"]].assign(
        score=[0.5 + 0.01 * n for n in range(len(kept))])
    perfect.to_csv(tmp_path / "perfect.csv", index=False)
    evaluate_dataset(root, tmp_path / "perfect.csv", "pcbforge", name=PERFECT, split="test")
    return root


def _outcomes(fo_dataset, field: str) -> dict[str, list]:
    """Sample key -> its detections in ``field`` (samples with a value only)."""
    return {key: list(found.detections) for key, found in
            zip(fo_dataset.values("pcbforge_id"), fo_dataset.values(field), strict=True)
            if found is not None}


def _expected_views(root: Path, name: str) -> dict[str, set[str]]:
    """Sample ids of each non-empty view of evaluation ``name``, from its tables."""
    predictions, truths = read_outcomes(root, name)
    metrics = read_evaluation(root, name)
    field = FIELDS[name]
    views = {}
    for cls in metrics["classes"]:
        views[f"{field}_fp_{cls}"] = set(predictions.loc[
            (predictions["outcome"] == "fp") & (predictions["label"] == cls), "sample_id"])
    for cls in metrics["classes"]:
        views[f"{field}_fn_{cls}"] = set(truths.loc[
            (truths["outcome"] == "fn") & (truths["label"] == cls), "sample_id"])
    tps = predictions[predictions["outcome"] == "tp"]
    below = tps[tps["score"] < metrics["deeppcb"]["threshold"]]
    if below.empty:  # the lowest-scored tenth of the true positives
        cutoff = sorted(tps["score"])[math.ceil(len(tps) / 10) - 1]
        below = tps[tps["score"] <= cutoff]
    views[f"{field}_low_conf_tp"] = set(below["sample_id"])
    return {view: ids for view, ids in views.items() if ids}


def test_each_evaluation_is_a_field_views_and_a_summary(fiftyone_db, evaluated):
    fo_dataset = to_fiftyone(evaluated, "eval-fields")
    data = load(evaluated)
    sizes = data.samples.set_index("sample_id")[["width", "height"]]
    for name, field in FIELDS.items():
        predictions, truths = read_outcomes(evaluated, name)
        shown = _outcomes(fo_dataset, field)
        # The samples with a prediction or a box of the evaluation, and no other.
        assert set(shown) == set(predictions["sample_id"]) | set(truths["sample_id"])
        for key, detections in shown.items():
            counts = {o: sum(d.outcome == o for d in detections) for o in ("tp", "fp", "fn")}
            mine_p = predictions[predictions["sample_id"] == key]
            mine_t = truths[truths["sample_id"] == key]
            assert counts == {"tp": int((mine_p["outcome"] == "tp").sum()),
                              "fp": int((mine_p["outcome"] == "fp").sum()),
                              "fn": int((mine_t["outcome"] == "fn").sum())}, (name, key)
            assert all(d.tags == [d.outcome] for d in detections)
        # A prediction's detection, and a missed box's, attribute by attribute.
        by_prediction = {d.prediction_id: d for ds in shown.values() for d in ds
                         if d.outcome != "fn"}
        assert set(by_prediction) == set(predictions["prediction_id"])
        for row in predictions.itertuples():
            d = by_prediction[row.prediction_id]
            width, height = sizes.loc[row.sample_id]
            assert d.bounding_box == pytest.approx(
                [row.x1 / width, row.y1 / height, (row.x2 - row.x1) / width,
                 (row.y2 - row.y1) / height])
            assert (d.label, d.outcome, d.fp_kind, d.truth_id) == (
                row.label, row.outcome, row.fp_kind, row.truth_id)
            assert d.confidence == pytest.approx(row.score) and d.iou == pytest.approx(row.iou)
        misses = {d.truth_id: d for ds in shown.values() for d in ds if d.outcome == "fn"}
        expected_misses = truths[truths["outcome"] == "fn"].set_index("truth_id")
        assert set(misses) == set(expected_misses.index)
        for truth_id, d in misses.items():
            assert d.label == expected_misses.at[truth_id, "label"] and d.confidence is None
    assert len(_outcomes(fo_dataset, FIELDS[MODEL])) > len(_outcomes(fo_dataset,
                                                                     FIELDS[PERFECT]))
    # The model's misses and false alarms are all there, 2 + 10 false positives.
    model = read_evaluation(evaluated, MODEL)
    assert (model["fp"], model["fn"]) == (12, int((data.labels.reset_index().index % 4 == 3)
                                                  .sum()))

    # Views: the non-empty ones, after pcbforge's others, showing only what they name.
    counts = view_counts(fo_dataset)
    assert counts == table_view_counts(data)
    expected = {**_expected_views(evaluated, MODEL), **_expected_views(evaluated, PERFECT)}
    made = [view for view in counts if view.startswith("eval_")]
    assert set(made) == set(expected) and list(counts)[-len(made):] == made
    assert {view: counts[view] for view in made} == {v: len(ids) for v, ids in expected.items()}
    assert {"eval_model_v2_fp_spur", "eval_model_v2_fp_open", "eval_model_v2_low_conf_tp",
            "eval_perfect_low_conf_tp"} <= set(made)
    assert not [view for view in made if view.startswith(("eval_perfect_fp_",
                                                          "eval_perfect_fn_"))]
    assert "eval_model_v2_fp_short" not in made and not fo_dataset.has_saved_view(
        "eval_model_v2_fp_short")
    for view_name, ids in expected.items():
        view = fo_dataset.load_saved_view(view_name)
        field = FIELDS[MODEL] if view_name.startswith(FIELDS[MODEL]) else FIELDS[PERFECT]
        assert set(view.values("pcbforge_id")) == ids, view_name
        kind = view_name[len(field) + 1:]
        outcomes = set(view.distinct(f"{field}.detections.outcome"))
        if kind == "low_conf_tp":
            assert outcomes == {"tp"}
        else:
            outcome, cls = kind.split("_", 1)
            assert outcomes == {outcome}
            assert set(view.distinct(f"{field}.detections.label")) == {cls}
    low = fo_dataset.load_saved_view("eval_model_v2_low_conf_tp")
    assert sorted(low.values(f"{FIELDS[MODEL]}.detections.confidence", unwind=True)) == \
        [LOW_SCORE] * 3

    # The summaries, keyed by the evaluation's own name.
    info = fo_dataset.info["evaluations"]
    assert set(info) == {MODEL, PERFECT}
    for name, field in FIELDS.items():
        metrics = read_evaluation(evaluated, name)
        assert info[name]["field"] == field and info[name]["split"] == metrics["split"]
        assert info[name]["mAP"] == metrics["deeppcb"]["mAP"]
        assert info[name]["coco_mAP"] == metrics["coco"]["mAP"]
        assert info[name]["f_score"] == metrics["deeppcb"]["f_score"]
        assert (info[name]["tp"], info[name]["fp"], info[name]["fn"]) == (
            metrics["tp"], metrics["fp"], metrics["fn"])
        assert info[name]["views"] == [v for v in made if v.startswith(field + "_")]
    assert info[PERFECT]["mAP"] == 1.0 and info[MODEL]["mAP"] < 1.0
    assert info[MODEL]["low_conf_tp"] == {"rule": "below_best_f_threshold",
                                          "cutoff": model["deeppcb"]["threshold"]}
    assert info[PERFECT]["low_conf_tp"]["rule"] == "lowest_decile"


def test_a_rerun_follows_the_evaluations_on_disk(fiftyone_db, evaluated, caplog):
    runner = CliRunner()
    run = runner.invoke(app, ["view", str(evaluated), "--name", "eval-rerun", "--no-launch"])
    assert run.exit_code == 0, run.output
    assert "eval_model_v2_fp_spur" in run.output and "eval_perfect_low_conf_tp" in run.output
    assert "(table:" not in run.output

    shutil.rmtree(evaluated / "evaluations" / PERFECT)
    again = to_fiftyone(evaluated, "eval-rerun")
    assert FIELDS[PERFECT] not in again.get_field_schema()
    assert FIELDS[MODEL] in again.get_field_schema()
    assert not [v for v in again.list_saved_views() if v.startswith(FIELDS[PERFECT])]
    assert set(again.info["evaluations"]) == {MODEL}
    assert view_counts(again) == table_view_counts(load(evaluated))
    assert "eval_model_v2_low_conf_tp" in view_counts(again)

    # An evaluation that cannot be read: one line of warning, no field, no views.
    (evaluated / "evaluations" / MODEL / "predictions.parquet").write_bytes(b"PAR1 half")
    with caplog.at_level(logging.WARNING):
        broken = to_fiftyone(evaluated, "eval-rerun")
    warnings = [r.getMessage() for r in caplog.records
                if r.levelno >= logging.WARNING and MODEL in r.getMessage()]
    assert len(warnings) == 1 and "evaluation not shown" in warnings[0], warnings
    assert len(warnings[0].splitlines()) == 1
    assert not [f for f in broken.get_field_schema() if f.startswith("eval_")]
    assert not [v for v in broken.list_saved_views() if v.startswith("eval_")]
    assert broken.info["evaluations"] == {}
    assert view_counts(broken) == table_view_counts(load(evaluated))
