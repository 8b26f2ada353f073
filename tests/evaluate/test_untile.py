"""``pcbforge untile``: predictions on tiles back on their panels. The merge rule on small
cases, the round trip (a 5000x4000 panel tiled, split, audited, its tiles' labels given
back as predictions), and the errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import pcbforge as pf
from pcbforge.cli.main import app
from pcbforge.core.boxes import iou
from pcbforge.datasets.dataset import load
from pcbforge.datasets.tiling import TileParams, tile_dataset
from pcbforge.evaluate.predictions import PredictionsError, read_predictions
from pcbforge.evaluate.untile import (
    UntileError,
    UntileParams,
    cut_sides,
    fuse_cluster,
    merge_boxes,
    untile_predictions,
)
from tests.datasets.test_tiling import draw_panel, write_panel_dataset

runner = CliRunner()


# --- the merge rule ---------------------------------------------------------------------------


def _clusters(boxes, tiles, cut=None, params=None):
    boxes = np.asarray(boxes, dtype=np.float64)
    cut = np.zeros((len(boxes), 4), bool) if cut is None else np.asarray(cut, bool)
    found = merge_boxes(boxes, np.ones(len(boxes)), np.asarray(tiles), cut, params)
    return sorted((sorted(members), how) for members, how in found)


def test_two_pieces_cut_at_a_seam_join_into_the_whole_box() -> None:
    # A 150 px box over the seam of tiles 0 (x 0-640) and 1 (x 576-1216): 43% IoU only.
    left, right = (530, 200, 640, 240), (576, 200, 680, 240)
    cut = [[False, False, True, False], [True, False, False, False]]
    assert _clusters([left, right], [0, 1], cut) == [([0, 1], "seam")]
    box, score = fuse_cluster(np.array([left, right], float), np.array([0.9, 0.6]),
                              np.array(cut))
    assert box == (530, 200, 680, 240) and score == 0.9  # each side from the uncut piece


def test_a_box_seen_whole_and_as_a_fragment_keeps_the_whole() -> None:
    whole, fragment = (600, 300, 660, 330), (600, 300, 640, 330)  # fragment cut right
    cut = [[False] * 4, [False, False, True, False]]
    assert _clusters([whole, fragment], [1, 0], cut) == [([0, 1], "duplicate")]
    box, _ = fuse_cluster(np.array([whole, fragment], float), np.ones(2), np.array(cut))
    assert box == whole


def test_the_same_box_in_two_overlapping_tiles_is_one() -> None:
    assert _clusters([(590, 10, 620, 40), (591, 11, 621, 40)], [0, 1]) == [
        ([0, 1], "duplicate")]


def test_boxes_of_one_tile_are_never_merged() -> None:
    # The model's own boxes: its NMS decided them, even when they overlap a lot.
    assert _clusters([(10, 10, 50, 50), (12, 12, 52, 52)], [0, 0]) == [
        ([0], "single"), ([1], "single")]
    # ...nor chained through a box of another tile that overlaps both.
    found = _clusters([(10, 10, 50, 50), (12, 12, 52, 52), (11, 11, 51, 51)], [0, 0, 1])
    assert sorted(len(members) for members, _ in found) == [1, 2]


def test_neighbours_that_do_not_continue_each_other_stay_apart() -> None:
    # Cut on the right, but the other box is far lower: not its continuation.
    cut = [[False, False, True, False], [True, False, False, False]]
    assert _clusters([(530, 200, 640, 240), (576, 400, 680, 440)], [0, 1], cut) == [
        ([0], "single"), ([1], "single")]


def test_cut_sides_only_at_seams_inside_the_panel() -> None:
    boxes = np.array([[0, 0, 10, 10], [630, 5, 640, 20]], float)
    tiles = np.array([[0, 0, 640, 640], [0, 0, 640, 640]], float)
    panel = np.array([[1216, 640], [1216, 640]], float)
    # The first box touches the panel's own border (not a seam); the second the seam.
    assert cut_sides(boxes, tiles, panel, 2.0).tolist() == [
        [False, False, False, False], [False, False, True, False]]


# --- the round trip ---------------------------------------------------------------------------


def _panel_boxes(rng: np.random.Generator, width: int, height: int, count: int,
                 avoid: list[tuple]) -> list[tuple]:
    """``count`` small boxes (10-60 px) of random classes, apart from each other."""
    boxes = []
    while len(boxes) < count:
        w, h = (int(v) for v in rng.integers(10, 61, 2))
        x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
        box = (x, y, x + w, y + h)
        if all(box[0] > b[2] + 20 or b[0] > box[2] + 20 or box[1] > b[3] + 20
               or b[1] > box[3] + 20 for b in [*avoid, *boxes]):
            boxes.append(box)
    return [(str(rng.choice(["open", "short"])), *box) for box in boxes]


@pytest.fixture(scope="module")
def panels(tmp_path_factory) -> Path:
    """A 5000x4000 panel with 50 boxes: 42 small ones anywhere, 6 longer than the overlap
    across a seam, 2 around a corner where four tiles meet; and three smaller panels."""
    rng = np.random.default_rng(11)
    # Seams of 640 px tiles every 576 px: the overlaps are centred on 608, 1184, ...
    large = [("open", 608 - 75, 1000, 608 + 75, 1040), ("short", 1760 - 90, 2200, 1760 + 90,
                                                        2230),
             ("open", 3000, 1184 - 80, 3040, 1184 + 80), ("short", 4400, 2336 - 70, 4440,
                                                         2336 + 70),
             ("open", 2912 - 100, 3500, 2912 + 100, 3530), ("short", 500, 3488 - 90, 530,
                                                           3488 + 90),
             ("open", 1184 - 50, 1760 - 50, 1184 + 50, 1760 + 50),
             ("short", 3488 - 45, 608 - 55, 3488 + 45, 608 + 55)]
    boxes = large + _panel_boxes(rng, 5000, 4000, 42, [b[1:] for b in large])
    specs = [{"name": "panel-a", "image": draw_panel(21, 5000, 4000), "boxes": boxes}]
    for index, (width, height) in enumerate([(1400, 1100), (1300, 900), (1000, 800)]):
        specs.append({"name": f"panel-{'bcd'[index]}",
                      "image": draw_panel(22 + index, width, height),
                      "boxes": _panel_boxes(rng, width, height, 4, [])})
    return write_panel_dataset(tmp_path_factory.mktemp("untile") / "panels", specs)


@pytest.fixture(scope="module")
def tiled(panels, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("untile") / "tiles"
    tile_dataset(panels, out, TileParams(size=640, overlap=64, min_visible=0.5))
    return out


def _labels_as_predictions(tiled: Path, out: Path) -> Path:
    labels = load(tiled).labels
    labels.assign(score=1.0)[["sample_id", "label", "score", "x1", "y1", "x2", "y2"]
                             ].to_parquet(out, index=False)
    return out


def test_every_box_is_in_some_tile_and_the_clipped_ones_are_marked(panels, tiled) -> None:
    source, tiles = load(panels), load(tiled)
    big = source.samples.loc[source.samples["path"] == "images/panel-a.png", "sample_id"]
    assert len(source.labels[source.labels["sample_id"] == big.iloc[0]]) == 50
    tile_of = tiles.samples.set_index("sample_id")
    held = set()
    for row in tiles.labels.itertuples():
        record = json.loads(row.params)["tile"]
        tile = tile_of.loc[row.sample_id]
        held.add((tile.panel_id, row.label, *record["panel_box"]))
        shifted = (row.x1 + tile.tile_x, row.y1 + tile.tile_y, row.x2 + tile.tile_x,
                   row.y2 + tile.tile_y)
        assert record["truncated"] is (list(shifted) != record["panel_box"])
    expected = {(r.sample_id, r.label, r.x1, r.y1, r.x2, r.y2)
                for r in source.labels.itertuples()}
    assert expected <= held
    assert sum(json.loads(p)["tile"]["truncated"] for p in tiles.labels["params"]) >= 16


def test_a_split_of_the_tiles_keeps_each_panel_on_one_side_and_audits_clean(tiled, tmp_path):
    import shutil

    copy = tmp_path / "tiles"
    shutil.copytree(tiled, copy)
    pf.split_dataset(copy, ratios=(0.5, 0.25, 0.25), seed=0)
    samples = load(copy).samples
    assert samples["split"].isin(["train", "val", "test"]).all()
    assert (samples.groupby("panel_id")["split"].nunique() == 1).all()
    assert samples["split"].nunique() == 3
    report = pf.audit_dataset(copy, workers=1)
    assert report["clean"], report["pairs"][:5]
    assert report["images_checked"] == len(samples)


def test_untile_of_the_tiles_own_labels_gives_back_the_panels_boxes(panels, tiled, tmp_path):
    source = load(panels)
    out = tmp_path / "panel-predictions.parquet"
    summary = untile_predictions(tiled, _labels_as_predictions(tiled, tmp_path / "p.parquet"),
                                 "pcbforge", out)
    predicted = pd.read_parquet(out)
    assert summary["panel_predictions"] == len(predicted) == len(source.labels)
    assert summary["seam_joins"] + summary["merged_both_ways"] >= 1
    for sample_id, truth in source.labels.groupby("sample_id"):
        mine = predicted[predicted["sample_id"] == sample_id]
        assert len(mine) == len(truth), sample_id  # no extra box
        for box in truth.itertuples():
            same = mine[mine["label"] == box.label]
            best = max(iou((box.x1, box.y1, box.x2, box.y2), p) for p in
                       same[["x1", "y1", "x2", "y2"]].to_numpy())
            assert best >= 0.95, (sample_id, box)
    assert (predicted["score"] == 1.0).all()
    path_of = source.samples.set_index("sample_id")["path"]
    assert (predicted["path"] == predicted["sample_id"].map(path_of)).all()
    # What `pcbforge evaluate PANELS --format pcbforge` reads.
    assert len(read_predictions(source, out, "pcbforge")) == len(predicted)


def test_a_detectors_jitter_still_merges_into_one_box_per_defect(panels, tiled, tmp_path):
    """Boxes off by up to 1.5 px on every side, as a detector regresses them, scores
    between 0.5 and 1: still one panel box per defect, each side within those 1.5 px."""
    dataset = load(tiled)
    rng = np.random.default_rng(3)
    table = dataset.labels[["sample_id", "label", "x1", "y1", "x2", "y2"]].copy()
    size = dataset.samples.set_index("sample_id").loc[table["sample_id"], ["width", "height"]]
    jitter = rng.uniform(-1.5, 1.5, (len(table), 4))
    for k, column in enumerate(("x1", "y1", "x2", "y2")):
        limit = size["width" if column[0] == "x" else "height"].to_numpy()
        table[column] = np.clip(table[column].to_numpy() + jitter[:, k], 0, limit)
    table["score"] = rng.uniform(0.5, 1.0, len(table))
    table.to_parquet(tmp_path / "p.parquet", index=False)
    untile_predictions(tiled, tmp_path / "p.parquet", "pcbforge", tmp_path / "o.parquet")
    predicted = pd.read_parquet(tmp_path / "o.parquet")
    truth = load(panels).labels
    assert len(predicted) == len(truth)
    for box in truth.itertuples():
        same = predicted[(predicted["sample_id"] == box.sample_id)
                         & (predicted["label"] == box.label)]
        error = np.abs(same[["x1", "y1", "x2", "y2"]].to_numpy()
                       - [box.x1, box.y1, box.x2, box.y2]).max(axis=1)
        assert error.min() <= 1.5 + 1e-9, box


def test_the_command_writes_a_csv_table(tiled, tmp_path) -> None:
    predictions = _labels_as_predictions(tiled, tmp_path / "p.parquet")
    out = tmp_path / "panels.csv"
    result = runner.invoke(app, ["untile", str(tiled), "--predictions", str(predictions),
                                 "--format", "pcbforge", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "untile:" in result.output and "seam joins" in result.output
    assert list(pd.read_csv(out).columns) == ["sample_id", "path", "label", "score", "x1",
                                              "y1", "x2", "y2", "tiles"]
    report = json.loads((tmp_path / "panels.untile.json").read_text())
    assert report["command"] == "untile" and report["out"] == str(out)
    assert report["panel_predictions"] == len(pd.read_csv(out))
    assert "panels.untile.json" in result.output


def test_a_prediction_on_an_unknown_tile_is_one_clear_line(tiled, tmp_path) -> None:
    table = pd.DataFrame([{"sample_id": "no-such-tile", "label": "open", "score": 0.8,
                           "x1": 1.0, "y1": 1.0, "x2": 9.0, "y2": 9.0}])
    table.to_csv(tmp_path / "p.csv", index=False)
    with pytest.raises(PredictionsError, match="'no-such-tile' is not a sample"):
        untile_predictions(tiled, tmp_path / "p.csv", "pcbforge", tmp_path / "out.csv")
    result = runner.invoke(app, ["untile", str(tiled), "-p", str(tmp_path / "p.csv"), "-f",
                                 "pcbforge", "-o", str(tmp_path / "out.csv")])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "no-such-tile" in lines[0]
    assert not (tmp_path / "out.csv").exists()


def test_a_dataset_that_is_not_tiled_or_a_wrong_out_is_refused(panels, tiled, tmp_path):
    with pytest.raises(UntileError, match="not a tiled dataset"):
        untile_predictions(panels, tmp_path / "p.csv", "pcbforge", tmp_path / "out.csv")
    with pytest.raises(UntileError, match=r"expected a \.parquet or \.csv"):
        untile_predictions(tiled, tmp_path / "p.csv", "pcbforge", tmp_path / "out.json")


def test_a_sample_without_its_tile_record_is_refused(tiled, tmp_path) -> None:
    from pcbforge.evaluate.untile import panel_predictions

    samples = load(tiled).samples.copy()
    samples.loc[0, "panel_id"] = ""
    prediction = pd.DataFrame([{"sample_id": samples.loc[0, "sample_id"], "label": "open",
                                "score": 0.5, "x1": 1.0, "y1": 1.0, "x2": 5.0, "y2": 5.0}])
    with pytest.raises(UntileError, match="has no tile record"):
        panel_predictions(samples, prediction)


def test_bad_merge_options_are_one_clear_line(tiled, tmp_path) -> None:
    result = runner.invoke(app, ["untile", str(tiled), "-p", str(tmp_path / "p.csv"),
                                 "-o", str(tmp_path / "o.csv"), "--merge-iou", "0"])
    assert result.exit_code == 2 and "merge_iou" in result.output
    assert UntileParams().merge_iou == 0.5
