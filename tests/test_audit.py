"""``audit``: planted cross-split copies are found (exit 1); a pcbforge split is clean."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from pcbforge.cli.main import app
from pcbforge.curate import CurateParams, curate
from pcbforge.datasets import load, save
from pcbforge.synth.boards import draw_board


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Ten distinct boards, a re-encoded copy of board 0 and a flipped copy of board 1."""
    root = tmp_path_factory.mktemp("audit")
    rng = np.random.default_rng(31)
    boards = [draw_board(rng, 192) for _ in range(10)]
    (root / "src").mkdir()
    for n, board in enumerate(boards):
        cv2.imwrite(str(root / "src" / f"board{n}.png"), board)
    cv2.imwrite(str(root / "src" / "copy_reencoded.jpg"), boards[0],
                [cv2.IMWRITE_JPEG_QUALITY, 85])
    cv2.imwrite(str(root / "src" / "copy_flipped.png"), cv2.flip(boards[1], 1))
    curate(root / "src", root / "ds", CurateParams(workers=1))
    return root


def _naive_split(path):
    """Image by image, as many tools do: each copy lands on another side than its original."""
    dataset = load(path)
    samples = dataset.samples
    sides = {"board0.png": "train", "copy_reencoded.jpg": "test", "board1.png": "train",
             "copy_flipped.png": "val"}
    cycle = iter(["train", "val", "test"] * 10)
    samples["split"] = [sides.get(p) or next(cycle) for p in samples["path"]]
    save(dataset)


def test_audit_finds_planted_copies_and_passes_after_split(planted):
    path = planted / "ds"
    _naive_split(path)
    runner = CliRunner()
    leaking = runner.invoke(app, ["audit", str(path), "--workers", "1"])
    assert leaking.exit_code == 1, leaking.output
    report = json.loads((path / "audit.json").read_text())
    pairs = {(frozenset((p["a"], p["b"])), p["reason"]) for p in report["pairs"]}
    assert any(files == frozenset(("board0.png", "copy_reencoded.jpg")) for files, _ in pairs)
    assert (frozenset(("board1.png", "copy_flipped.png")), "transformed_duplicate") in pairs
    assert not report["clean"]

    split = runner.invoke(app, ["split", str(path)])
    assert split.exit_code == 0, split.output
    clean = runner.invoke(app, ["audit", str(path), "--workers", "1"])
    assert clean.exit_code == 0, clean.output
    assert "clean: no leak" in clean.output


def test_audit_against_a_frozen_test_set(planted, tmp_path):
    frozen = tmp_path / "frozen_src"
    frozen.mkdir()
    board = cv2.imread(str(planted / "src" / "board4.png"), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(frozen / "test_tile.png"), cv2.resize(board, (160, 160)))  # resized copy
    cv2.imwrite(str(frozen / "other.png"), draw_board(np.random.default_rng(99), 192))
    curate(frozen, tmp_path / "frozen", CurateParams(workers=1))
    runner = CliRunner()
    assert runner.invoke(app, ["split", str(planted / "ds")]).exit_code == 0
    run = runner.invoke(app, ["audit", str(planted / "ds"), "--against",
                              str(tmp_path / "frozen"), "--workers", "1"])
    assert run.exit_code == 1, run.output
    report = json.loads((planted / "ds" / "audit.json").read_text())
    assert [(p["a"], p["b_side"]) for p in report["pairs"]] == [("board4.png", "against")]
