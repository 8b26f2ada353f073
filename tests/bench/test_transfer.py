"""The synthetic-to-real benchmark end to end on generated boards (seconds, CPU), its
configuration checks, and the reference candidate finder on pairs with known defects."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from pcbforge.bench.candidates import find_candidates, shift_image
from pcbforge.bench.transfer import (
    TransferConfig,
    acceptance,
    few_pairs,
    training_sets,
    written_pairs,
)
from pcbforge.core.boxes import iou
from pcbforge.datasets.dataset import load
from pcbforge.datasets.deeppcb import save_deeppcb
from pcbforge.evaluate.runner import evaluate_dataset
from pcbforge.pipeline.ingest import import_deeppcb
from pcbforge.synth.boards import draw_board
from pcbforge.synth.compose import SynthConfig, synthesize_image
from pcbforge.synth.pipeline import synthesize, write_boards


def test_candidates_find_every_synthetic_defect_and_little_else() -> None:
    found = total = extra = 0
    for k in range(4):
        board = draw_board(np.random.default_rng(k), 640)
        made = synthesize_image(board, np.random.default_rng(10 + k), SynthConfig())
        boxes, aligned = find_candidates(made.image, made.template)
        assert aligned.shape == board.shape
        for label in made.labels:
            total += 1
            found += any(iou(label["box"], b) > 0.33 for b in boxes)
        extra += sum(all(iou(b, lab["box"]) <= 0.33 for lab in made.labels) for b in boxes)
    assert found >= 0.9 * total
    assert extra <= total  # registration noise gives few false candidates


def test_candidates_follow_a_shifted_template() -> None:
    board = draw_board(np.random.default_rng(5), 320)
    # A copper blob of radius 6 in the clearest substrate, away from the border.
    clear = cv2.distanceTransform((board > 128).astype(np.uint8), cv2.DIST_L2, 5)
    clear[:40], clear[-40:], clear[:, :40], clear[:, -40:] = 0, 0, 0, 0
    y, x = np.unravel_index(int(np.argmax(clear)), clear.shape)
    assert clear[y, x] > 12
    tested = board.copy()
    cv2.circle(tested, (int(x), int(y)), 6, 0, -1)
    shifted = shift_image(board, -2, 2)  # the template, misregistered by 2 px both ways
    boxes, _ = find_candidates(tested, shifted)
    assert len(boxes) == 1  # the blob, and no band along the shifted edges
    x1, y1, x2, y2 = boxes[0]
    assert x1 <= x - 6 and x2 >= x + 7 and y1 <= y - 6 and y2 >= y + 7
    with pytest.raises(ValueError, match="differ in size"):
        find_candidates(tested, board[:100])


def _config(folder: Path, out: Path, **kwargs) -> TransferConfig:
    kwargs.setdefault("seeds", (0,))
    return TransferConfig(train_dir=folder, test_dir=folder, out=out,
                          train_boards={"group10000"}, test_boards={"group20000"}, **kwargs)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("regimes", ("magic",), "unknown regimes"),
    ("detectors", ("reference", "yolo"), "unknown detector"),
    ("seeds", (), "seeds must be"),
    ("seeds", (1, 1), "seeds must be"),
    ("few_repeat", 0, "few_repeat"),
    ("synth_per_template", 0, "synth_per_template"),
    ("few_share", 0.0, "few_share"),
    ("negatives", False, "negatives"),  # gone: defect-free pairs come from synth itself
    ("regimes", ("few_real+synthetic", "few_real+targeted"), "needs validation boards"),
], ids=["regime", "detector", "no-seed", "same-seed", "few-repeat", "per-template",
        "few-share", "negatives", "targeted-without-validation"])
def test_config_refuses_what_the_benchmark_does_not_know(tmp_path: Path, field: str,
                                                         value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _config(tmp_path, tmp_path / "out", **{field: value})


def test_targeted_regime_needs_the_uniform_one_and_boards_apart(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="needs regime few_real"):
        _config(tmp_path, tmp_path, regimes=("few_real+targeted",),
                validation_boards={"group30000"})
    with pytest.raises(ValidationError, match="both train and validation"):
        _config(tmp_path, tmp_path, validation_boards={"group10000"})
    assert "few_real+targeted" not in _config(tmp_path, tmp_path).regimes  # not by default


def test_config_defaults_to_every_design_three_seeds_and_keeps_the_given_order(
        tmp_path: Path) -> None:
    default = TransferConfig(train_dir=tmp_path, test_dir=tmp_path, out=tmp_path)
    assert default.detectors == ("reference", "opening", "single-image")
    assert default.seeds == (0, 1, 2) and default.epochs is None
    config = _config(tmp_path, tmp_path, detectors=("single-image", "reference", "reference"))
    assert config.detectors == ("single-image", "reference")


def test_training_sets_repeat_the_few_real_pairs_and_add_the_synthetic_ones() -> None:
    real, synthetic = ["r0", "r1", "r2", "r3"], ["s0", "s1"]
    sets = training_sets(("real", "synthetic", "few_real+synthetic", "few_real"), real,
                         [1, 3], synthetic, 3)
    assert sets == {"real": real, "synthetic": synthetic, "few_real": ["r1", "r3"],
                    "few_real+synthetic": ["r1", "r3"] * 3 + synthetic}


def test_few_pairs_are_a_stable_share_of_the_pairs() -> None:
    pairs = [(Path(f"t{k}.jpg"), Path(f"p{k}_test.jpg"), []) for k in range(40)]
    few = few_pairs(pairs, 0.1)
    assert len(few) == 4 and few == few_pairs(list(reversed(pairs)), 0.1)
    assert set(map(str, (p[1] for p in few))) <= {str(p[1]) for p in pairs[:40]}
    # The folder grows: the pairs already picked stay picked unless a new one hashes lower.
    grown = few_pairs(pairs + [(Path("t99.jpg"), Path("p99_test.jpg"), [])], 0.1)
    assert len({str(p[1]) for p in few} & {str(p[1]) for p in grown}) >= 3


def test_acceptance_lines_say_pass_or_fail_on_the_means() -> None:
    mean = {"real": {"mAP": 0.9}, "synthetic": {"mAP": 0.8}, "few_real+synthetic": {"mAP": 0.91},
            "few_real": {"mAP": 0.7}}
    lines = acceptance(mean)
    assert lines["synthetic / real mAP"] == {"value": 0.889, "target": ">= 0.90",
                                             "passed": False}
    assert lines["few_real+synthetic - real mAP"]["passed"] is True
    assert lines["few_real+synthetic - few_real mAP"]["value"] == 0.21
    assert acceptance({"real": {"mAP": 0.9}}) == {}


@pytest.fixture(scope="module")
def deeppcb_folder(tmp_path_factory) -> Path:
    """20 generated pairs in DeepPCB's layout: boards group10000 (12), group20000 (4) and
    group30000 (4)."""
    tmp = tmp_path_factory.mktemp("transfer")
    write_boards(tmp / "boards", count=20, seed=3, progress=False)
    synthesize(tmp / "boards", tmp / "made", count=20, seed=4, progress=False,
               image_format="jpg")
    dataset = load(tmp / "made")
    samples = dataset.samples.copy()
    tested = samples["role"] == "tested"
    order = np.cumsum(tested) - 1
    samples.loc[tested, "board"] = np.select([order[tested] < 12, order[tested] < 16],
                                             ["group10000", "group20000"], "group30000")
    save_deeppcb(samples, dataset.labels, tmp / "made", tmp / "deeppcb")
    return tmp / "deeppcb"


def test_written_pairs_read_every_tested_image_of_a_synth_dataset(tmp_path: Path) -> None:
    write_boards(tmp_path / "boards", count=2, seed=1, progress=False)
    synthesize(tmp_path / "boards", tmp_path / "made", count=3, seed=2, progress=False)
    dataset = load(tmp_path / "made")
    pairs = written_pairs(tmp_path / "made")
    tested = dataset.samples[dataset.samples["role"] == "tested"]
    assert len(pairs) == len(tested) == 3
    for (template, image, boxes), row in zip(pairs, tested.itertuples(), strict=True):
        assert template.is_file() and image == tmp_path / "made" / row.path
        labels = dataset.labels[dataset.labels["sample_id"] == row.sample_id]
        assert sorted(b[4] for b in boxes) == sorted(labels["label"])
    assert sum(len(p[2]) for p in pairs) == len(dataset.labels)


def test_synthetic_pairs_are_drawn_on_etched_templates(deeppcb_folder: Path,
                                                       tmp_path: Path) -> None:
    from pcbforge.bench.transfer import synthetic_pairs
    from pcbforge.datasets.deeppcb import deeppcb_pairs

    pairs = deeppcb_pairs(deeppcb_folder, {"group20000"})
    made = synthetic_pairs(pairs, tmp_path, per_template=1, seed=0, workers=1, etch_px=(1, 1))
    assert len(made) == len(pairs) and any(boxes for _, _, boxes in made)
    # Image i is drawn on board i (one image per template here), whether or not it has
    # defects.
    for (source, _, _), (etched, tested, _) in zip(pairs, made, strict=True):
        assert etched.parent.name == "augmented" and tested.is_file()
        before = cv2.imread(str(source), cv2.IMREAD_GRAYSCALE) < 128
        after = cv2.imread(str(etched), cv2.IMREAD_GRAYSCALE) < 128
        assert after.sum() > before.sum()  # the copper grew
        assert (after | ~before).all()  # and covers all it covered


@pytest.mark.parametrize("name", ["reference", "opening", "single-image"])
def test_each_design_runs_end_to_end_and_writes_results(deeppcb_folder: Path, tmp_path: Path,
                                                        name: str) -> None:
    pytest.importorskip("torch", reason="the benchmark extra: pip install -e .[bench]")
    from pcbforge.bench.transfer import run_transfer

    config = _config(deeppcb_folder, tmp_path / "out", epochs=1, workers=1,
                     detectors=(name,), regimes=("real", "synthetic"))
    lines: list[str] = []
    payload = run_transfer(config, log=lines.append)
    assert payload["train_pairs"] == 12 and payload["test_pairs"] == 4
    assert payload["etch_px"] == [0, 1] and list(payload["synthesis"]) == ["0"]
    assert payload["synthesis"]["0"]["pairs"] == 24  # 2 per train template
    design = payload["detectors"][name]
    assert list(design["seeds"]) == ["0"]
    for result in design["seeds"]["0"].values():
        assert 0.0 <= result["mAP"] <= 1.0 and result["train_items"] > 0
        assert result["epochs"] == 1
    assert design["seeds"]["0"]["synthetic"]["train_items"] == 24
    assert list(design["acceptance"]) == ["synthetic / real mAP"]
    assert ("candidate_recall" in design) == (name != "single-image")
    if name != "single-image":
        assert design["candidate_recall"] >= 0.8
        assert design["seeds"]["0"]["real"]["confusion"]
    written = json.loads((tmp_path / "out" / "results.json").read_text())
    assert list(written["detectors"]) == [name]
    table = (tmp_path / "out" / "results.md").read_text()
    assert f"### {name}" in table and "| synthetic |" in table
    assert "synthetic / real mAP" in table
    assert cv2.imread(str(tmp_path / "out" / "results.png")) is not None
    assert any("mAP" in line for line in lines)
    # Each model's detections, as a table `pcbforge evaluate` reads: scored on the test
    # boards imported as a dataset, the same mAP as the benchmark's own protocol.
    test_only = tmp_path / "test-boards"
    shutil.copytree(deeppcb_folder / "group20000", test_only / "group20000")
    import_deeppcb(test_only, tmp_path / "test-dataset")
    for regime in ("real", "synthetic"):
        table = tmp_path / "out" / "detections" / f"{name}-{regime}-seed0.csv"
        assert table.is_file()
        if name == "single-image":
            continue  # an untrained center-net can give boxes of no area, which evaluate refuses
        scored = evaluate_dataset(tmp_path / "test-dataset", table, "pcbforge",
                                  name=f"{name}-{regime}", split="all")
        assert scored["deeppcb"]["mAP"] == pytest.approx(design["seeds"]["0"][regime]["mAP"],
                                                         abs=1e-9)
        assert scored["deeppcb"]["f_score"] == pytest.approx(
            design["seeds"]["0"][regime]["f_score"], abs=1e-9)


def test_every_seed_is_reported_with_the_means_and_the_few_real_weighed(
        deeppcb_folder: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="the benchmark extra: pip install -e .[bench]")
    from pcbforge.bench.transfer import run_transfer

    payload = run_transfer(_config(
        deeppcb_folder, tmp_path / "out", epochs=1, workers=1, few_share=0.25, few_repeat=3,
        seeds=(0, 1), detectors=("reference",),
        regimes=("few_real", "synthetic", "few_real+synthetic")), log=lambda _: None)
    assert payload["few_real_pairs"] == 3 and set(payload["synthesis"]) == {"0", "1"}
    design = payload["detectors"]["reference"]
    for seed in design["seeds"].values():
        items = {regime: r["train_items"] for regime, r in seed.items()}
        assert items["few_real"] == 3
        assert items["few_real+synthetic"] == 3 * items["few_real"] + items["synthetic"]
        samples = {regime: r["train_samples"] for regime, r in seed.items()}
        assert samples["few_real+synthetic"] == 3 * samples["few_real"] + samples["synthetic"]
    # Synth seed = training seed: the two seeds train on different synthetic sets.
    assert (design["seeds"]["0"]["synthetic"]["train_per_class"]
            != design["seeds"]["1"]["synthetic"]["train_per_class"])
    for regime, mean in design["mean"].items():
        per_seed = [design["seeds"][s][regime]["mAP"] for s in ("0", "1")]
        assert mean["mAP"] == pytest.approx(np.mean(per_seed), abs=1e-4)
        assert list(mean["mAP_per_seed"]) == ["0", "1"]
    assert list(design["acceptance"]) == ["few_real+synthetic - few_real mAP"]
    table = (tmp_path / "out" / "results.md").read_text()
    assert "seed 0" in table and "seed 1" in table and "mean mAP" in table


@pytest.mark.parametrize("name", ["reference", "single-image"])
def test_same_seed_same_numbers(deeppcb_folder: Path, tmp_path: Path, name: str) -> None:
    pytest.importorskip("torch", reason="the benchmark extra: pip install -e .[bench]")
    from pcbforge.bench.transfer import run_transfer

    def once(out: Path) -> dict:
        return run_transfer(_config(deeppcb_folder, out, epochs=1, workers=1,
                                    regimes=("real",), detectors=(name,)),
                            log=lambda _: None)["detectors"][name]["seeds"]["0"]["real"]

    first, again = once(tmp_path / "a"), once(tmp_path / "b")
    assert first["ap"] == again["ap"] and first["f_score"] == again["f_score"]


def test_leaking_test_set_is_refused(deeppcb_folder: Path, tmp_path: Path) -> None:
    from pcbforge.bench.transfer import run_transfer

    with pytest.raises(ValueError, match="in both the train and the test"):
        run_transfer(TransferConfig(train_dir=deeppcb_folder, test_dir=deeppcb_folder,
                                    out=tmp_path / "x", epochs=1, workers=1))


def test_targeted_regime_draws_what_the_uniform_model_misses_at_equal_count(
        deeppcb_folder: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="the benchmark extra: pip install -e .[bench]")
    from pcbforge.bench.transfer import run_transfer
    from pcbforge.evaluate.targets import weights_from_evaluation

    config = _config(deeppcb_folder, tmp_path / "out", epochs=1, workers=1,
                     detectors=("opening",), validation_boards={"group30000"},
                     regimes=("few_real+synthetic", "few_real+targeted"))
    lines: list[str] = []
    payload = run_transfer(config, log=lines.append)
    assert payload["train_pairs"] == 12 and payload["validation_boards"] == ["group30000"]
    runs = payload["detectors"]["opening"]["seeds"]["0"]
    uniform, targeted = runs["few_real+synthetic"], runs["few_real+targeted"]
    assert uniform["train_items"] == targeted["train_items"]  # equal image count
    assert 0.0 <= targeted["mAP"] <= 1.0
    # The weights are what `synth --balance from-evaluation` takes from the evaluation
    # `pcbforge evaluate` kept of the uniform model on the validation boards.
    validation = tmp_path / "out" / "work" / "validation-dataset"
    metrics = json.loads((validation / "evaluations" / "opening-seed0" / "metrics.json"
                          ).read_text())
    assert metrics["images"] == 8  # the 4 validation pairs, templates included
    classes = list(SynthConfig().classes)
    targeting = targeted["targeting"]
    assert list(targeting["class_weights"].values()) == weights_from_evaluation(metrics, classes)
    assert targeting["validation_mAP"] == metrics["deeppcb"]["mAP"]
    # Every synthetic label of the targeted draw says where its weights came from.
    drawn = load(tmp_path / "out" / "work" / "synthetic-0-opening")
    assert len(drawn.labels) == sum(targeting["synthetic_defects"].values()) > 0
    notes = {json.loads(p)["balance"]["source"] for p in drawn.labels["params"]}
    assert notes == {"from-evaluation opening-seed0 (split all)"}
    assert (tmp_path / "out" / "detections" / "opening-few_real+targeted-seed0.csv").is_file()
    table = (tmp_path / "out" / "results.md").read_text()
    assert "| few_real+targeted |" in table and "Targeted draws" in table
    assert "few_real+targeted - few_real+synthetic mAP" in table
