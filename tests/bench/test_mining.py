"""The mining benchmark on DeepPCB-layout boards with detections whose mistakes are
known: errors per image at the operating threshold, the label-hidden copy, and the
factor of each ranking against a random cut."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pcbforge.bench.mining import (
    cut_errors,
    hide_labels,
    image_errors,
    markdown_table,
    run_mining_benchmark,
)
from pcbforge.datasets.dataset import load
from tests.conftest import write_deeppcb_layout

BOX = (40, 40, 80, 80)


def _pair(_: int):
    board = np.full((160, 160), 255, np.uint8)
    tested = board.copy()
    tested[50:70, 50:70] = 0
    return board, tested, f"{BOX[0]} {BOX[1]} {BOX[2]} {BOX[3]} 4\n", 1


@pytest.fixture()
def boards(tmp_path: Path) -> Path:
    write_deeppcb_layout(tmp_path / "deeppcb", {"group00001": 20, "group00002": 3},
                         np.random.default_rng(0), make_pair=_pair)
    return tmp_path / "deeppcb"


def _detections(path: Path, missed: set[int]) -> Path:
    """Every box found with score 0.98 but on the ``missed`` tiles, which get a false
    alarm at 0.5 (the threshold `mine` measures nearness to) instead."""
    rows = []
    for tile in range(20):
        image = f"group00001/00001/00001{tile:03d}_test.jpg"
        if tile in missed:
            rows.append((image, "spur", 0.5, 100.0, 100.0, 140.0, 140.0))
        else:
            rows.append((image, "spur", 0.98, *map(float, BOX)))
    table = pd.DataFrame(rows, columns=["path", "label", "score", "x1", "y1", "x2", "y2"])
    table.to_csv(path, index=False)
    return path


def test_both_rankings_put_the_known_mistakes_first(boards: Path, tmp_path: Path) -> None:
    table = _detections(tmp_path / "model.csv", missed={3, 11})
    lines: list[str] = []
    payload = run_mining_benchmark([table], boards, tmp_path / "work",
                                   test_boards={"group00001"}, log=lines.append)
    assert payload["tested_images"] == 20 and payload["boards"] == ["group00001"]
    row = payload["tables"][0]
    # Best F at 0.98 (18 of 20 found, no false alarm there): two misses, the 0.5 false
    # alarms are under the operating threshold.
    assert row["operating_threshold"] == pytest.approx(0.98)
    assert row["errors"] == 2 and row["k"] == 2 and row["best_possible"] == 2
    assert row["random_expected"] == pytest.approx(0.2)
    for ranking in ("errors", "uncertainty"):
        assert row["rankings"][ranking]["errors_in_cut"] == 2
        assert row["rankings"][ranking]["factor"] == pytest.approx(10.0)
    assert payload["mean_factor"] == {"errors": 10.0, "uncertainty": 10.0}
    text = markdown_table(payload)
    assert "| model | 1.000 |" not in text and "| model |" in text and "10.0" in text
    errors = image_errors(tmp_path / "work" / "labelled", "model", 0.98)
    samples = load(tmp_path / "work" / "labelled").samples.set_index("sample_id")
    assert sorted(samples.loc[errors.index, "path"]) == [
        "group00001/00001/00001003_test.jpg", "group00001/00001/00001011_test.jpg"]
    assert errors.tolist() == [1, 1]
    assert len(lines) == 2 and "factor" in lines[1]


def test_uncertainty_ranks_without_any_label(boards: Path, tmp_path: Path) -> None:
    # A model sure of itself and wrong: its misses get no near-threshold score, so the
    # label-hidden ranking cannot find them (the factor says so) while the errors one does.
    table = _detections(tmp_path / "sure.csv", missed=set())
    frame = pd.read_csv(table)
    frame.loc[[0, 1], ["x1", "y1", "x2", "y2"]] = [100.0, 100.0, 140.0, 140.0]  # far off
    frame.loc[[0, 1], "score"] = 0.999  # ... and surer than of anything right
    frame.loc[5, "score"] = 0.55  # a right box the model doubts
    frame.to_csv(table, index=False)
    payload = run_mining_benchmark([table], boards, tmp_path / "work",
                                   test_boards={"group00001"}, log=lambda _: None)
    row = payload["tables"][0]
    assert row["errors"] == 4  # two misses and two confident false alarms
    assert row["rankings"]["errors"]["errors_in_cut"] == 4
    assert row["rankings"]["uncertainty"]["errors_in_cut"] == 0
    assert row["rankings"]["uncertainty"]["factor"] == 0.0
    mined = json.loads((tmp_path / "work" / "hidden" / "mining" / "sure" / "mining.json"
                        ).read_text())
    assert mined["labelled"] == 0


def test_hidden_copy_keeps_images_and_drops_labels_and_splits(boards: Path,
                                                              tmp_path: Path) -> None:
    from pcbforge.pipeline.ingest import import_deeppcb

    import_deeppcb(boards, tmp_path / "ds")
    source = load(tmp_path / "ds")
    hidden = load(hide_labels(tmp_path / "ds", tmp_path / "hidden"))
    assert len(source.labels) == 23 and hidden.labels.empty
    assert (hidden.samples["split"] == "").all()
    assert hidden.samples["sample_id"].tolist() == source.samples["sample_id"].tolist()
    first = hidden.samples["path"].iloc[0]
    assert hidden.image_path(first).read_bytes() == source.image_path(first).read_bytes()


def test_cut_and_bad_arguments(tmp_path: Path) -> None:
    assert cut_errors(["a", "b", "c"], {"a": 2, "c": 5}, 2) == 2
    with pytest.raises(ValueError, match="share"):
        run_mining_benchmark([tmp_path / "x.csv"], tmp_path, tmp_path, share=0)
    with pytest.raises(ValueError, match="no detections"):
        run_mining_benchmark([], tmp_path, tmp_path)
