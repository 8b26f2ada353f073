"""Targeted synthesis: class weights from an evaluation, through synth's command and a
build recipe."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import pcbforge as pf
from pcbforge.cli.main import app
from pcbforge.datasets.evaluation_tables import EvaluationError
from pcbforge.evaluate.targets import WEIGHT_FLOOR, read_for_balance, weights_from_evaluation
from pcbforge.pipeline.recipe import RecipeError, load_recipe
from pcbforge.pipeline.stages import class_weights

runner = CliRunner()
CLASSES = ["open", "short", "mousebite", "spur", "copper", "pin-hole"]


def _metrics(recalls: dict) -> dict:
    return {"name": "run", "split": "test",
            "deeppcb": {"per_class": {c: {"recall": r} for c, r in recalls.items()}}}


def test_weights_follow_what_the_model_misses():
    metrics = _metrics({"open": 1.0, "short": 0.5, "mousebite": 0.0, "spur": 0.95,
                        "copper": None})
    weights = weights_from_evaluation(metrics, CLASSES)
    # open found always: the floor; short half missed; mousebite all missed; copper has no
    # box in the evaluation and pin-hole is not in it at all: nothing says they are found.
    assert weights == [WEIGHT_FLOOR, 0.5, 1.0, WEIGHT_FLOOR, 1.0, 1.0]
    # A good model: relative to the class missed most (0.1 -> 1, 0.01 -> the floor 0.1);
    # one that misses nothing draws every class alike.
    good = _metrics({"open": 0.99, "short": 1.0, "mousebite": 0.9, "spur": 0.97,
                     "copper": 1.0, "pin-hole": 1.0})
    assert weights_from_evaluation(good, CLASSES) == pytest.approx(
        [0.1, 0.1, 1.0, 0.3, 0.1, 0.1])
    perfect = _metrics(dict.fromkeys(CLASSES, 1.0))
    assert weights_from_evaluation(perfect, CLASSES) == [1.0] * 6
    with pytest.raises(EvaluationError, match="scores none of the classes"):
        weights_from_evaluation(_metrics({"scratch": 0.2}), CLASSES)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory) -> Path:
    """A dataset with an evaluation 'run' whose model misses every spur and nothing else."""
    root = tmp_path_factory.mktemp("targets")
    pf.write_boards(root / "boards", count=3, seed=0, size=256, progress=False)
    pf.synthesize(root / "boards", root / "synth", count=12, seed=0, progress=False)
    pf.split_dataset(root / "synth", ratios=(0.5, 0.25, 0.25), seed=0)
    labels = pf.load(root / "synth").labels
    found = labels[labels["label"] != "spur"].assign(score=0.9)
    found[["sample_id", "label", "score", "x1", "y1", "x2", "y2"]].to_csv(
        root / "run.csv", index=False)
    pf.evaluate_predictions(root / "synth", root / "run.csv", "pcbforge", split="all")
    return root


def test_an_evaluation_is_read_by_its_folder_or_its_metrics(evaluated):
    folder = evaluated / "synth" / "evaluations" / "run"
    for given in (folder, folder / "metrics.json"):
        metrics, note = read_for_balance(given)
        assert metrics["name"] == "run" and note == "from-evaluation run (split all)"
    with pytest.raises(EvaluationError, match="expected an evaluation"):
        read_for_balance(evaluated / "synth")


def test_synth_draws_more_of_the_missed_class_and_records_why(evaluated, tmp_path):
    out = tmp_path / "targeted"
    done = runner.invoke(app, [
        "synth", "defects", "--boards", str(evaluated / "boards"), "--out", str(out),
        "--count", "16", "--seed", "3", "--workers", "1", "--balance", "from-evaluation",
        "--evaluation", str(evaluated / "synth" / "evaluations" / "run")])
    assert done.exit_code == 0, done.output
    labels = pd.read_parquet(out / "labels.parquet")
    counts = labels["label"].value_counts()
    # spur weighs 1, every other class the floor: spur is half the draws (1 / (1 + 5 * 0.1)).
    assert counts["spur"] > 0.45 * len(labels)
    params = [json.loads(p) for p in labels["params"]]
    assert {p["balance"]["source"] for p in params} == {"from-evaluation run (split all)"}
    spur = next(p for p in params if p["class"] == "spur")
    assert spur["balance"]["class_weight"] == pytest.approx(1 / 1.5, abs=1e-6)
    uniform = runner.invoke(app, ["synth", "defects", "--boards", str(evaluated / "boards"),
                                  "--out", str(tmp_path / "uniform"), "--count", "2",
                                  "--workers", "1"])
    assert uniform.exit_code == 0
    assert all("balance" not in json.loads(p) for p in
               pd.read_parquet(tmp_path / "uniform" / "labels.parquet")["params"])
    alone = runner.invoke(app, ["synth", "defects", "--boards", str(evaluated / "boards"),
                                "--out", str(tmp_path / "x"), "--balance", "from-evaluation"])
    assert alone.exit_code == 2 and "go together" in alone.output


def test_a_recipe_balances_from_an_evaluation(evaluated, tmp_path):
    shutil.copytree(evaluated / "synth" / "evaluations", tmp_path / "evaluations")
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text("sources: [{name: boards, kind: procedural}]\n"
                           "synth: {balance: from-evaluation, evaluation: evaluations/run}\n")
    recipe = load_recipe(recipe_file)
    assert recipe.synth.evaluation == (tmp_path / "evaluations" / "run").absolute()
    assert class_weights(recipe, {}) == [0.1, 0.1, 0.1, 1.0, 0.1, 0.1]
    with pytest.raises(RecipeError, match="go together"):
        load_recipe(text="sources: [{name: boards, kind: procedural}]\n"
                         "synth: {balance: from-evaluation}\n")
