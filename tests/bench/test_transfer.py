"""The synthetic-to-real benchmark end to end on generated boards (seconds, CPU), and the
candidate finder on a pair with known defects."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from pcbforge.bench.candidates import find_candidates, shift_image
from pcbforge.bench.metrics import iou
from pcbforge.datasets.dataset import load
from pcbforge.datasets.deeppcb import save_deeppcb
from pcbforge.synth.boards import draw_board
from pcbforge.synth.compose import SynthConfig, synthesize_image
from pcbforge.synth.pipeline import synthesize, write_boards

torch = pytest.importorskip("torch", reason="the benchmark extra: pip install -e .[bench]")


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


@pytest.fixture(scope="module")
def deeppcb_folder(tmp_path_factory) -> Path:
    """16 generated pairs in DeepPCB's layout: boards group10000 (12) and group20000 (4)."""
    tmp = tmp_path_factory.mktemp("transfer")
    write_boards(tmp / "boards", count=16, seed=3, progress=False)
    synthesize(tmp / "boards", tmp / "made", count=16, seed=4, progress=False,
               image_format="jpg")
    dataset = load(tmp / "made")
    samples = dataset.samples.copy()
    tested = samples["role"] == "tested"
    order = np.cumsum(tested) - 1
    samples.loc[tested, "board"] = np.where(order[tested] < 12, "group10000", "group20000")
    save_deeppcb(samples, dataset.labels, tmp / "made", tmp / "deeppcb")
    return tmp / "deeppcb"


def test_transfer_runs_end_to_end(deeppcb_folder: Path, tmp_path: Path) -> None:
    from pcbforge.bench.transfer import TransferConfig, run_transfer

    config = TransferConfig(train_dir=deeppcb_folder, test_dir=deeppcb_folder,
                            out=tmp_path / "out", train_boards={"group10000"},
                            test_boards={"group20000"}, epochs=2, workers=1, few_share=0.25)
    lines: list[str] = []
    payload = run_transfer(config, log=lines.append)
    assert payload["train_pairs"] == 12 and payload["test_pairs"] == 4
    assert payload["few_real_pairs"] == 3 and payload["etch_px"] == [0, 1]
    assert list(payload["regimes"]) == ["real", "synthetic", "few_real+synthetic", "few_real"]
    for result in payload["regimes"].values():
        assert 0.0 <= result["mAP"] <= 1.0 and result["train_samples"] > 0
    assert payload["candidate_recall"] >= 0.9
    written = json.loads((tmp_path / "out" / "results.json").read_text())
    assert written["regimes"].keys() == payload["regimes"].keys()
    table = (tmp_path / "out" / "results.md").read_text()
    assert "| synthetic |" in table and "mAP" in table
    assert cv2.imread(str(tmp_path / "out" / "results.png")) is not None
    assert any("mAP" in line for line in lines)


def test_same_seed_same_numbers(deeppcb_folder: Path, tmp_path: Path) -> None:
    from pcbforge.bench.transfer import TransferConfig, run_transfer

    def once(out: Path) -> dict:
        return run_transfer(TransferConfig(
            train_dir=deeppcb_folder, test_dir=deeppcb_folder, out=out,
            train_boards={"group10000"}, test_boards={"group20000"}, epochs=1, workers=1,
            regimes=("real",)), log=lambda _: None)["regimes"]["real"]

    first, again = once(tmp_path / "a"), once(tmp_path / "b")
    assert first["ap"] == again["ap"] and first["f_score"] == again["f_score"]


def test_leaking_test_set_and_unknown_regime_are_refused(deeppcb_folder: Path,
                                                          tmp_path: Path) -> None:
    from pcbforge.bench.transfer import TransferConfig, run_transfer

    with pytest.raises(ValueError, match="in both the train and the test"):
        run_transfer(TransferConfig(train_dir=deeppcb_folder, test_dir=deeppcb_folder,
                                    out=tmp_path / "x", epochs=1, workers=1))
    with pytest.raises(ValueError, match="unknown regimes"):
        run_transfer(TransferConfig(train_dir=deeppcb_folder, test_dir=deeppcb_folder,
                                    out=tmp_path / "y", regimes=("magic",)))


def test_few_repeat_weighs_the_few_real_crops(deeppcb_folder: Path, tmp_path: Path) -> None:
    from pcbforge.bench.transfer import TransferConfig, run_transfer

    payload = run_transfer(TransferConfig(
        train_dir=deeppcb_folder, test_dir=deeppcb_folder, out=tmp_path / "out",
        train_boards={"group10000"}, test_boards={"group20000"}, epochs=1, workers=1,
        few_share=0.25, few_repeat=3, regimes=("few_real", "synthetic", "few_real+synthetic")),
        log=lambda _: None)
    counts = {name: result["train_samples"] for name, result in payload["regimes"].items()}
    assert counts["few_real"] > 0
    assert counts["few_real+synthetic"] == 3 * counts["few_real"] + counts["synthetic"]
    assert payload["few_repeat"] == 3
    with pytest.raises(ValueError, match="few_repeat"):
        run_transfer(TransferConfig(train_dir=deeppcb_folder, test_dir=deeppcb_folder,
                                    out=tmp_path / "z", train_boards={"group10000"},
                                    test_boards={"group20000"}, few_repeat=0))


def test_synthetic_pairs_are_drawn_on_etched_templates(deeppcb_folder: Path,
                                                       tmp_path: Path) -> None:
    from pcbforge.bench.transfer import synthetic_pairs
    from pcbforge.datasets.deeppcb import deeppcb_pairs

    pairs = deeppcb_pairs(deeppcb_folder, {"group20000"})
    made = synthetic_pairs(pairs, tmp_path, per_template=1, seed=0, workers=1, etch_px=(1, 1))
    assert len(made) == len(pairs)
    for (template, _, _), (etched, tested, boxes) in zip(pairs, made, strict=True):
        assert etched.parent.name == "augmented" and tested.is_file() and boxes
        before = cv2.imread(str(template), cv2.IMREAD_GRAYSCALE) < 128
        after = cv2.imread(str(etched), cv2.IMREAD_GRAYSCALE) < 128
        assert after.sum() > before.sum()  # the copper grew
        assert (after | ~before).all()  # and covers all it covered
