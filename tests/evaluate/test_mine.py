"""mine_dataset over a real dataset folder (labelled images ranked by the model's errors,
unlabelled ones by its uncertainty, one image per leakage group, a labelling batch), the
pure terms it is made of, and the ``pcbforge mine`` command around it."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import pcbforge as pf
from pcbforge.cli.main import app
from pcbforge.datasets.dataset import save
from pcbforge.evaluate.metrics import match_predictions
from pcbforge.evaluate.mine import (
    RANKED_COLUMNS,
    MiningError,
    binary_entropy,
    error_terms,
    mine_dataset,
    nearness,
    rank_images,
    read_ranked,
    uncertainty_terms,
)

runner = CliRunner()
BOX = {"x1": 5.0, "y1": 5.0, "x2": 25.0, "y2": 25.0}


@pytest.fixture(scope="module")
def mined_dataset(tmp_path_factory) -> Path:
    """A split dataset of 4 boards (4 leakage groups) where 4 defective images of the
    train split were never labelled: no split, no labels."""
    root = tmp_path_factory.mktemp("mine")
    pf.write_boards(root / "boards", count=4, seed=0, size=256, progress=False)
    pf.synthesize(root / "boards", root / "synth", count=16, seed=0, progress=False)
    pf.split_dataset(root / "synth", ratios=(0.5, 0.25, 0.25), seed=0)
    data = pf.load(root / "synth")
    samples = data.samples
    train = samples[(samples["role"] == "tested") & (samples["split"] == "train")]
    unlabelled = train.sort_values("path")["sample_id"].head(4).tolist()
    samples.loc[samples["sample_id"].isin(unlabelled), "split"] = ""
    data.labels = data.labels[~data.labels["sample_id"].isin(unlabelled)].reset_index(
        drop=True)
    save(data)
    return root / "synth"


@pytest.fixture
def dataset(mined_dataset, tmp_path) -> Path:
    copy = tmp_path / "synth"
    shutil.copytree(mined_dataset, copy)
    return copy


def _images(dataset: Path) -> dict[str, pd.DataFrame]:
    """Labelled defect images, good boards and unlabelled images, by path."""
    data = pf.load(dataset)
    samples = data.samples.sort_values("path")
    labelled = samples["sample_id"].isin(data.labels["sample_id"])
    return {"defects": samples[labelled], "boards": samples[samples["role"] == "template"],
            "unlabelled": samples[samples["split"] == ""]}


def _write(rows: list[dict], path: Path) -> Path:
    pd.DataFrame(rows, columns=["sample_id", "label", "score", "x1", "y1", "x2", "y2"]) \
        .to_csv(path, index=False)
    return path


def _scenario(dataset: Path, out: Path) -> tuple[Path, dict[str, str]]:
    """Predictions that find every label (score 0.9) except: every box of ``missed`` (a
    defect image), two false alarms at 0.95 on ``alarmed`` (a good board of another
    group), one at 0.2 on ``faint`` (a board of a third group). On unlabelled images:
    two boxes near 0.5 on ``unsure``, one at 0.97 on ``sure``, one at 0.1 on ``faint_u``
    and none on the fourth."""
    parts = _images(dataset)
    data = pf.load(dataset)
    missed = parts["defects"].iloc[0]
    boards = parts["boards"][parts["boards"]["group"] != missed["group"]]
    alarmed, faint = boards.iloc[0], boards.iloc[1]
    unlabelled = parts["unlabelled"]["sample_id"].tolist()
    named = {"missed": missed["sample_id"], "alarmed": alarmed["sample_id"],
             "faint": faint["sample_id"], "unsure": unlabelled[0], "sure": unlabelled[1],
             "faint_u": unlabelled[2], "empty": unlabelled[3]}
    rows = [{"sample_id": r.sample_id, "label": r.label, "score": 0.9, "x1": r.x1,
             "y1": r.y1, "x2": r.x2, "y2": r.y2}
            for r in data.labels.itertuples() if r.sample_id != named["missed"]]
    rows += [{"sample_id": named["alarmed"], "label": "spur", "score": 0.95, **BOX},
             {"sample_id": named["alarmed"], "label": "open", "score": 0.95, "x1": 100.0,
              "y1": 100.0, "x2": 130.0, "y2": 130.0},
             {"sample_id": named["faint"], "label": "spur", "score": 0.2, **BOX},
             {"sample_id": named["unsure"], "label": "spur", "score": 0.5, **BOX},
             {"sample_id": named["unsure"], "label": "open", "score": 0.55, "x1": 100.0,
              "y1": 100.0, "x2": 130.0, "y2": 130.0},
             {"sample_id": named["sure"], "label": "spur", "score": 0.97, **BOX},
             {"sample_id": named["faint_u"], "label": "spur", "score": 0.1, **BOX}]
    return _write(rows, out), named


def test_errors_and_doubts_rank_first(dataset, tmp_path):
    source, named = _scenario(dataset, tmp_path / "model.csv")
    boxes = int((pf.load(dataset).labels["sample_id"] == named["missed"]).sum())
    summary = mine_dataset(dataset, source, "pcbforge", per_group=0)
    ranked = read_ranked(dataset, "model")
    assert list(ranked.columns) == list(RANKED_COLUMNS)
    chosen = ranked[ranked["selected"]]
    # Errors first, by error_score = fn + the false alarms' scores.
    assert chosen["sample_id"].tolist() == [
        named["missed"], named["alarmed"], named["faint"], named["unsure"], named["faint_u"],
        named["sure"], named["empty"]]  # 0.1 is nearer the threshold than 0.97
    assert chosen["rank"].tolist() == list(range(1, 8))
    assert chosen["kind"].tolist() == ["error"] * 3 + ["uncertain"] * 4
    by_id = ranked.set_index("sample_id")
    assert by_id.loc[named["missed"], ["fn", "fp", "error_score"]].tolist() == [boxes, 0, boxes]
    assert by_id.loc[named["alarmed"], "fp"] == 2
    assert by_id.loc[named["alarmed"], "score"] == pytest.approx(1.9)
    assert by_id.loc[named["faint"], "score"] == pytest.approx(0.2)
    # Uncertainty: the mean of nearness (max) and entropy (mean); no second set.
    unsure = by_id.loc[named["unsure"]]
    assert unsure["nearness"] == pytest.approx(1.0)
    assert unsure["entropy"] == pytest.approx((1.0 + binary_entropy(np.array([0.55]))[0]) / 2)
    assert unsure["score"] == pytest.approx((unsure["nearness"] + unsure["entropy"]) / 2)
    assert np.isnan(unsure["disagreement"]) and np.isnan(unsure["fn"])
    assert by_id.loc[named["empty"], "score"] == 0.0
    # The images the model got right are kept in the table, left out, and said why.
    rest = ranked[~ranked["selected"]]
    assert len(rest) == 13 and set(rest["left_out"]) == {"correct"} and rest["rank"].isna().all()
    assert summary["labelled"] == 16 and summary["unlabelled"] == 4
    assert summary["selected_errors"] == 3 and summary["left_out"]["correct"] == 13
    assert summary["fn"] == boxes and summary["fp"] == 3
    folder = dataset / "mining" / "model"
    assert sorted(p.name for p in folder.iterdir()) == ["mining.json", "ranked.csv",
                                                       "ranked.parquet"]
    assert json.loads((folder / "mining.json").read_text())["name"] == "model"
    pf.load(dataset)  # still a valid dataset


def test_one_image_per_leakage_group(dataset, tmp_path):
    """Errors on every defect image: the default cap keeps one image per group and kind."""
    data = pf.load(dataset)
    rows = [{"sample_id": r.sample_id, "label": r.label, "score": 0.9, "x1": r.x1, "y1": r.y1,
             "x2": r.x2, "y2": r.y2} for i, r in enumerate(data.labels.itertuples()) if i % 2]
    unlabelled = data.samples[data.samples["split"] == ""]["sample_id"]
    rows += [{"sample_id": s, "label": "spur", "score": 0.4 + 0.05 * i, **BOX}
             for i, s in enumerate(unlabelled)]
    summary = mine_dataset(dataset, _write(rows, tmp_path / "half.csv"), "pcbforge")
    ranked = read_ranked(dataset, "half")
    chosen = ranked[ranked["selected"]]
    for kind, part in chosen.groupby("kind"):
        assert part["group"].is_unique, kind
    errors = ranked[ranked["kind"] == "error"]
    assert errors["group"].nunique() == 4 and (chosen["kind"] == "error").sum() == 4
    # Each group's chosen image is its worst; the others are left out for the group.
    for group, part in errors[errors["score"] > 0].groupby("group"):
        best = part.sort_values(["score", "sample_id"], ascending=[False, True]).iloc[0]
        assert bool(best["selected"]), group
        assert set(part[part["sample_id"] != best["sample_id"]]["left_out"]) <= {"group"}
    uncertain = chosen[chosen["kind"] == "uncertain"]
    assert len(uncertain) == ranked[ranked["kind"] == "uncertain"]["group"].nunique() == 2
    assert summary["left_out"]["group"] == int((ranked["left_out"] == "group").sum()) > 0


def test_a_second_prediction_set_adds_disagreement(dataset, tmp_path):
    source, named = _scenario(dataset, tmp_path / "first.csv")
    table = pd.read_csv(source)
    # The second model does not see the confident box on `sure`, and agrees elsewhere.
    other = _write(table[table["sample_id"] != named["sure"]].to_dict("records"),
                   tmp_path / "second.csv")
    summary = mine_dataset(dataset, source, "pcbforge", second=other, per_group=0,
                           kind="uncertain")
    by_id = read_ranked(dataset, "first").set_index("sample_id")
    assert set(by_id["kind"]) == {"uncertain"} and summary["labelled"] == 0
    assert by_id.loc[named["sure"], "disagreement"] == pytest.approx(0.97)
    assert by_id.loc[named["unsure"], "disagreement"] == 0.0
    sure = by_id.loc[named["sure"]]
    assert sure["score"] == pytest.approx((sure["nearness"] + sure["entropy"] + 0.97) / 3)
    # Alone, the confident box ranked below the faint one; the disagreement lifts it.
    assert by_id.loc[[named["unsure"], named["sure"], named["faint_u"], named["empty"]],
                     "rank"].tolist() == [1, 2, 3, 4]


def test_same_inputs_same_bytes(dataset, tmp_path):
    source, _ = _scenario(dataset, tmp_path / "model.csv")
    mine_dataset(dataset, source, "pcbforge", name="first")
    mine_dataset(dataset, source, "pcbforge", name="second")
    for name in ("ranked.parquet", "ranked.csv"):
        assert (dataset / "mining" / "first" / name).read_bytes() == \
            (dataset / "mining" / "second" / name).read_bytes(), name


def _fingerprint(dataset: Path) -> dict[str, str]:
    """Every file of the dataset but its mining/ outputs, by content."""
    return {str(p.relative_to(dataset)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(dataset.rglob("*"))
            if p.is_file() and p.relative_to(dataset).parts[0] != "mining"}


def test_the_command_top_and_a_yolo_batch(dataset, tmp_path):
    source, named = _scenario(dataset, tmp_path / "model.csv")
    before = _fingerprint(dataset)
    batch = tmp_path / "batch"
    done = runner.invoke(app, ["mine", str(dataset), "-p", str(source), "-f", "pcbforge",
                               "--per-group", "0", "--top", "4", "--export", "yolo", "--out",
                               str(batch)])
    assert done.exit_code == 0, done.output
    assert "mining model" in done.output and "chose 4 (3 errors, 1 uncertain)" in done.output
    assert done.output.rstrip().endswith(str(dataset / "mining" / "model"))
    ranked = read_ranked(dataset, "model")
    top = ranked[ranked["selected"]]["sample_id"].tolist()
    assert top == [named["missed"], named["alarmed"], named["faint"], named["unsure"]]
    assert (ranked["left_out"] == "top").sum() == 3
    # The batch holds exactly the top images, with their labels, in rank order.
    sidecar = json.loads((batch / "pcbforge_samples.json").read_text())["splits"]["train"]
    assert [entry["sample_id"] for entry in sidecar.values()] == top
    labels = pf.load(dataset).labels
    for file_name, entry in sidecar.items():
        assert (batch / "images" / "train" / file_name).is_file()
        text = (batch / "labels" / "train" / (Path(file_name).stem + ".txt")).read_text()
        assert len(text.splitlines()) == int((labels["sample_id"] == entry["sample_id"]).sum())
    report = json.loads((batch / "export_report.json").read_text())
    assert report["command"] == "mine" and report["images"] == 4
    assert json.loads((dataset / "mining" / "model" / "mining.json").read_text())[
        "batch"]["out"] == str(batch)
    # The batch reads back as a YOLO dataset with its labels; the source is untouched.
    back = pf.import_dataset("yolo", batch, tmp_path / "back").dataset
    assert sorted(back.samples["sample_id"]) == sorted(top)
    assert len(back.labels) == int(labels["sample_id"].isin(top).sum())
    assert _fingerprint(dataset) == before


def test_a_coco_batch_in_rank_order(dataset, tmp_path):
    source, _ = _scenario(dataset, tmp_path / "model.csv")
    summary = mine_dataset(dataset, source, "pcbforge", top=3, export="coco",
                           out=tmp_path / "coco")
    coco = json.loads((tmp_path / "coco" / "all" / "annotations.json").read_text())
    ranked = read_ranked(dataset, "model")
    assert [image["pcbforge"]["sample_id"] for image in coco["images"]] == \
        ranked[ranked["selected"]]["sample_id"].tolist()
    assert summary["batch"]["images"] == 3
    # Run again into the same folder: an earlier batch is replaced.
    mine_dataset(dataset, source, "pcbforge", top=2, export="coco", out=tmp_path / "coco")
    coco = json.loads((tmp_path / "coco" / "all" / "annotations.json").read_text())
    assert len(coco["images"]) == 2


@pytest.mark.parametrize(("extra", "message"), [
    (["-f", "tflite"], "unknown prediction format 'tflite'"),
    (["-f", "pcbforge", "--second", "MISSING"], "not found"),
    (["-f", "pcbforge", "--export", "yolo"], "needs both --export FORMAT and --out DIR"),
    (["-f", "pcbforge", "--export", "yolo", "--out", "DATASET/batch"],
     "expected a folder outside the dataset"),
    (["-f", "pcbforge", "--threshold", "1.5"], "invalid option threshold"),
    (["-f", "pcbforge", "--split", "holdout"], "no usable images in split 'holdout'"),
], ids=["format", "missing-file", "export-without-out", "out-inside", "threshold", "split"])
def test_bad_input_is_a_one_line_error(dataset, tmp_path, extra, message):
    source, _ = _scenario(dataset, tmp_path / "model.csv")
    extra = [e.replace("MISSING", str(tmp_path / "nope.csv")).replace("DATASET", str(dataset))
             for e in extra]
    done = runner.invoke(app, ["mine", str(dataset), "-p", str(source), *extra])
    assert done.exit_code == 2, done.output
    assert message in done.output and done.output.startswith("error:"), done.output
    assert len(done.output.strip().splitlines()) == 1 and "Traceback" not in done.output
    assert not (dataset / "mining").exists()


def test_a_missing_predictions_file_is_refused(dataset, tmp_path):
    with pytest.raises(ValueError, match="not found"):
        mine_dataset(dataset, tmp_path / "nope.csv", "pcbforge")
    with pytest.raises(MiningError, match="no unlabelled images"):
        mine_dataset(dataset, _scenario(dataset, tmp_path / "m.csv")[0], "pcbforge",
                     split="test", kind="uncertain")


# --------------------------------------------------------------------------- pure terms

def test_nearness_and_entropy():
    scores = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    assert nearness(scores).tolist() == [0.0, 0.5, 1.0, 0.5, 0.0]
    # t = 0.2: the far end is 1.0, 0.8 away.
    assert nearness(np.array([0.2, 1.0, 0.0]), 0.2) == pytest.approx([1.0, 0.0, 0.75])
    assert binary_entropy(scores) == pytest.approx([0.0, 0.811278, 1.0, 0.811278, 0.0],
                                                   abs=1e-6)


def test_rank_images_caps_groups_and_counts_ungrouped_images_alone():
    scored = pd.DataFrame({
        "sample_id": ["a", "b", "c", "d", "e", "f", "g"],
        "group": ["g1", "g1", "", "", "g2", "g1", "g1"],
        "kind": ["error", "error", "error", "error", "error", "uncertain", "uncertain"],
        "score": [3.0, 2.0, 1.0, 1.0, 0.0, 0.9, 0.8]})
    ranked = rank_images(scored, per_group=1)
    assert ranked["sample_id"].tolist() == ["a", "c", "d", "f", "b", "e", "g"]
    assert ranked["rank"].tolist()[:4] == [1, 2, 3, 4] and ranked["rank"][4:].isna().all()
    assert ranked.set_index("sample_id")["left_out"].to_dict() == {
        "a": "", "c": "", "d": "", "f": "", "b": "group", "e": "correct", "g": "group"}
    capped = rank_images(scored, per_group=2, top=3)
    assert capped[capped["selected"]]["sample_id"].tolist() == ["a", "b", "c"]
    assert set(capped[~capped["selected"]]["left_out"]) == {"top", "correct"}


# --------------------------------------------------------------------------- usefulness

def _simulate(seed: int, images: int = 400, hard_share: float = 0.15):
    """A seeded detector on ``images`` images of 1-4 defects each: on the hard ones
    (``hard_share``) it finds a box half the time with a score near 0.5 and raises false
    alarms near 0.5; on the others it finds nearly every box with a high score and rarely
    raises a faint false alarm. Returns (predictions, truths, ids)."""
    rng = np.random.default_rng(seed)
    ids = [f"i{n:04d}" for n in range(images)]
    hard = set(rng.choice(ids, size=int(images * hard_share), replace=False).tolist())
    truths, preds = [], []
    for sample_id in ids:
        difficult = sample_id in hard
        for _ in range(int(rng.integers(1, 5))):
            x, y = rng.uniform(0, 200, size=2)
            box = {"sample_id": sample_id, "label": "spur", "x1": x, "y1": y, "x2": x + 20,
                   "y2": y + 20}
            truths.append(box)
            found = rng.random() < (0.5 if difficult else 0.97)
            if found:
                score = rng.uniform(0.3, 0.7) if difficult else rng.uniform(0.8, 1.0)
                preds.append({**box, "score": score})
        alarms = rng.poisson(1.0 if difficult else 0.05)
        for _ in range(alarms):
            x, y = rng.uniform(230, 400, size=2)
            score = rng.uniform(0.35, 0.65) if difficult else rng.uniform(0.0, 0.2)
            preds.append({"sample_id": sample_id, "label": "spur", "x1": x, "y1": y,
                          "x2": x + 15, "y2": y + 15, "score": score})
    return pd.DataFrame(preds), pd.DataFrame(truths), ids


def _mistakes(preds: pd.DataFrame, truths: pd.DataFrame, ids: list[str]) -> pd.Series:
    """Per image: the mistakes at the operating point (score >= 0.5): missed boxes plus
    false alarms."""
    kept = preds[preds["score"] >= 0.5].reset_index(drop=True)
    per_pred, per_truth = match_predictions(kept, truths)
    fn = per_truth[per_truth["outcome"] == "fn"].groupby("sample_id").size()
    fp = per_pred[per_pred["outcome"] == "fp"].groupby("sample_id").size()
    return fn.add(fp, fill_value=0).reindex(ids, fill_value=0)


def _share_of_top(order: list[str], mistakes: pd.Series, fraction: float = 0.1) -> float:
    head = order[: int(len(order) * fraction)]
    return float(mistakes.loc[head].sum() / mistakes.sum())


@pytest.mark.parametrize("seed", [0, 1])
def test_mining_finds_the_mistakes_faster_than_chance(seed):
    """The top 10% of images, ranked without labels (uncertainty) or with them (errors),
    hold several times the mistakes of a random 10%."""
    preds, truths, ids = _simulate(seed)
    mistakes = _mistakes(preds, truths, ids)
    rng = np.random.default_rng(seed + 100)
    random_share = np.mean([_share_of_top(rng.permutation(ids).tolist(), mistakes)
                            for _ in range(200)])
    assert random_share == pytest.approx(0.1, abs=0.02)
    uncertain = uncertainty_terms(preds, ids)["uncertainty"]
    by_doubt = uncertain.sort_values(ascending=False, kind="mergesort").index.tolist()
    errors = error_terms(preds, truths, ids)["error_score"]
    by_error = errors.sort_values(ascending=False, kind="mergesort").index.tolist()
    doubt_factor = _share_of_top(by_doubt, mistakes) / random_share
    error_factor = _share_of_top(by_error, mistakes) / random_share
    print(f"seed {seed}: top 10% by uncertainty holds {doubt_factor:.1f}x, by errors "
          f"{error_factor:.1f}x the mistakes of a random 10%")
    assert doubt_factor > 2.5 and error_factor > 2.5


def test_labelled_images_of_splits_the_model_was_not_run_on_are_left_out(dataset, tmp_path):
    """A model run on the test split only: the train and val images' boxes are not its
    misses."""
    data = pf.load(dataset)
    test_ids = set(data.samples.loc[data.samples["split"] == "test", "sample_id"])
    rows = [{"sample_id": r.sample_id, "label": r.label, "score": 0.9, "x1": r.x1,
             "y1": r.y1, "x2": r.x2, "y2": r.y2}
            for r in data.labels.itertuples() if r.sample_id in test_ids]
    mine_dataset(dataset, _write(rows[1:], tmp_path / "test_only.csv"), "pcbforge",
                 per_group=0)
    ranked = read_ranked(dataset, "test_only")
    labelled = ranked[ranked["kind"] == "error"]
    assert set(labelled["split"]) == {"test"}
    assert labelled.iloc[0]["sample_id"] == rows[0]["sample_id"]  # the one box missed
