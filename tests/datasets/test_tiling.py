"""``pcbforge tile``: the grid, boxes clipped to tiles, templates cut into the same tiles,
small images, masks, same bytes twice, the panel's group and split kept, and the errors."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pcbforge.cli.main import app
from pcbforge.datasets.dataset import (
    Dataset,
    DatasetInfo,
    load,
    sample_id_for,
    save,
    with_defaults,
)
from pcbforge.datasets.masks import decode_mask, encode_mask
from pcbforge.datasets.tiling import (
    TILE_COLUMNS,
    TILE_REPORT,
    TileError,
    TileParams,
    place_boxes,
    tile_dataset,
    tile_grid,
    tile_label_params,
    tile_origins,
)

runner = CliRunner()
CLASSES = ["open", "short"]


def draw_panel(seed: int, width: int, height: int) -> np.ndarray:
    """A cheap board-like RGB panel: copper pads and traces of random colours on a green
    substrate, dense enough that no two tiles (of one panel or two) look alike."""
    rng = np.random.default_rng(seed)
    image = np.empty((height, width, 3), np.uint8)
    image[:] = (30, 90, 40)
    for _ in range(max(50, width * height // 5000)):
        x, y = (int(v) for v in rng.integers(0, (width, height)))
        w, h = (int(v) for v in rng.integers(4, 60, 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.rectangle(image, (x, y), (x + w, y + h), colour, -1)
    return image


def write_panel_dataset(root: Path, panels: list[dict], *, split: str = "") -> Path:
    """A pcbforge dataset of ``panels``, each ``{"name", "image", "boxes", ...}`` (boxes
    ``(label, x1, y1, x2, y2[, mask])``; optional ``template``: another panel's name,
    ``group``, ``split``, ``role``), images under ``root/images``; returns its folder."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    samples, labels = [], []
    for panel in panels:
        path = f"images/{panel['name']}.png"
        cv2.imwrite(str(root / path), cv2.cvtColor(panel["image"], cv2.COLOR_RGB2BGR))
        height, width = panel["image"].shape[:2]
        sample_id = sample_id_for(path)
        samples.append({
            "sample_id": sample_id, "path": path, "status": panel.get("status", "ok"),
            "reason": "", "width": width, "height": height, "group": panel.get("group", ""),
            "split": panel.get("split", split), "role": panel.get("role", "tested"),
            "template_path": (f"images/{panel['template']}.png" if panel.get("template")
                              else ""),
            "sha256": "", "lot": panel.get("lot", ""),
        })
        for label, x1, y1, x2, y2, *mask in panel["boxes"]:
            labels.append({"sample_id": sample_id, "label": label, "x1": float(x1),
                           "y1": float(y1), "x2": float(x2), "y2": float(y2),
                           "mask": mask[0] if mask else "", "synthetic": False,
                           "params": ""})
    table, boxes = with_defaults(pd.DataFrame(samples),
                                 pd.DataFrame(labels) if labels else None)
    save(Dataset(root, table, boxes, DatasetInfo(classes=CLASSES, image_root=".")))
    return root


def tile_records(labels: pd.DataFrame) -> list[dict]:
    return [json.loads(text)["tile"] for text in labels["params"]]


# --- the grid and the boxes -----------------------------------------------------------------


@pytest.mark.parametrize(("length", "size", "overlap", "expected"), [
    (5000, 640, 64, [0, 576, 1152, 1728, 2304, 2880, 3456, 4032, 4360]),
    (1216, 640, 64, [0, 576]),
    (641, 640, 64, [0, 1]),
    (640, 640, 64, [0]),
    (300, 640, 64, [0]),
    (1000, 500, 0, [0, 500]),
], ids=["panel", "exact-stride", "one-px-more", "exact-size", "smaller", "no-overlap"])
def test_tile_origins(length, size, overlap, expected) -> None:
    assert tile_origins(length, size, overlap) == expected


@pytest.mark.parametrize("length", [17, 640, 641, 1215, 1216, 1217, 3999, 5000],
                         ids=lambda n: f"{n}px")
def test_the_grid_covers_every_pixel_with_full_tiles(length) -> None:
    origins = tile_origins(length, 640, 64)
    side = min(640, length)
    covered = np.zeros(length, bool)
    for start in origins:
        covered[start:start + side] = True
        assert 0 <= start and start + side <= length  # no tile outside, none smaller
    assert covered.all()
    gaps = np.diff(origins)
    assert (gaps <= 576).all() and (gaps > 0).all()  # at least the overlap between neighbours


def test_a_box_across_a_seam_is_kept_on_both_sides_and_marked_cut() -> None:
    tiles = tile_grid(1216, 640, 640, 64)  # two tiles: x 0-640 and 576-1216
    inside = (100, 100, 140, 130)
    across = (530, 200, 690, 240)  # 160 wide over the 576-640 overlap: 69% on each side
    corner_only = (600, 300, 1100, 340)  # 500 wide: 8% in the left tile, 100% in the right
    placed = place_boxes(np.array([inside, across, corner_only]), tiles, 0.5)
    assert [(b, t, cut) for b, t, _, cut in placed] == [
        (0, 0, ()), (1, 0, ("right",)), (1, 1, ("left",)), (2, 1, ())]


def test_a_box_no_tile_holds_well_goes_to_the_tile_holding_most() -> None:
    tiles = tile_grid(1216, 1216, 640, 64)  # 2 x 2 tiles
    box = (500, 520, 720, 700)  # around the corner: at most ~35% in any one tile
    placed = place_boxes(np.array([box]), tiles, 0.5)
    assert len(placed) == 1
    _, tile, visible, cut = placed[0]
    assert visible < 0.5 and cut and tile == 3  # the bottom-right tile holds most of it


def test_the_tile_record_joins_existing_params() -> None:
    record = {"truncated": True}
    assert json.loads(tile_label_params('{"seed": 3}', record)) == {"seed": 3, "tile": record}
    assert json.loads(tile_label_params("", record)) == {"tile": record}
    assert json.loads(tile_label_params("free text", record)) == {"params": "free text",
                                                                  "tile": record}


# --- datasets ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def paired(tmp_path_factory) -> Path:
    """A 1500x1200 tested panel and its template (one defect drawn in), a 300x200 image
    with a masked box, and a lone panel in the test split."""
    root = tmp_path_factory.mktemp("tiling") / "panels"
    template = draw_panel(1, 1500, 1200)
    tested = template.copy()
    cv2.rectangle(tested, (600, 500), (660, 540), (0, 0, 0), -1)
    small = draw_panel(2, 300, 200)
    mask = np.zeros((200, 300), bool)
    mask[50:80, 40:90] = True
    panels = [
        {"name": "board-temp", "image": template, "boxes": [], "role": "template",
         "group": "g1"},
        {"name": "board-test", "image": tested, "template": "board-temp", "group": "g1",
         "boxes": [("short", 600, 500, 661, 541), ("open", 400, 900, 800, 960)]},
        {"name": "small", "image": small, "boxes": [("open", 40, 50, 90, 80,
                                                     encode_mask(mask))]},
        {"name": "lone", "image": draw_panel(3, 800, 700), "split": "test", "lot": "L7",
         "boxes": [("short", 700, 600, 790, 690)]},
    ]
    return write_panel_dataset(root, panels)


@pytest.fixture(scope="module")
def paired_tiles(paired, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("tiled") / "tiles"
    report = tile_dataset(paired, out, TileParams(size=640, overlap=64, carry=("lot",)))
    return out, report


def test_a_tested_panel_and_its_template_are_cut_into_paired_tiles(paired, paired_tiles):
    out, report = paired_tiles
    tiles = load(out, check_files=True).samples
    source = load(paired).samples.set_index("path")
    tested = tiles[tiles["panel_path"] == "images/board-test.png"]
    templates = tiles[tiles["panel_path"] == "images/board-temp.png"].set_index("path")
    assert len(tested) == len(templates) == 6  # 3 columns x 2 rows of 1500x1200
    assert report["templates"] == {"tiles_paired": 6, "tiles_without_their_template": 0}
    for row in tested.itertuples():
        pair = templates.loc[row.template_path]
        assert (pair.tile_x, pair.tile_y) == (row.tile_x, row.tile_y)
        window = (slice(row.tile_y, row.tile_y + row.height),
                  slice(row.tile_x, row.tile_x + row.width))
        assert np.array_equal(cv2.imread(str(out / row.template_path)),
                              cv2.imread(str(paired / "images/board-temp.png"))[window])
        assert np.array_equal(cv2.imread(str(out / row.path)),
                              cv2.imread(str(paired / "images/board-test.png"))[window])
        assert row.group == pair.group == "g1" and row.role == "tested"
        assert row.panel_id == source.at["images/board-test.png", "sample_id"]
    assert set(TILE_COLUMNS) <= set(tiles.columns)


def test_boxes_are_clipped_and_the_clipped_ones_marked(paired_tiles) -> None:
    out, report = paired_tiles
    dataset = load(out)
    labels = dataset.labels.merge(dataset.samples[["sample_id", "tile_x", "tile_y",
                                                   "panel_path"]], on="sample_id")
    records = tile_records(labels)
    for row, record in zip(labels.itertuples(), records, strict=True):
        px1, py1, px2, py2 = record["panel_box"]
        local = (px1 - row.tile_x, py1 - row.tile_y, px2 - row.tile_x, py2 - row.tile_y)
        whole = local == (row.x1, row.y1, row.x2, row.y2)
        assert record["truncated"] is (not whole) and bool(record["cut"]) is (not whole)
    # The 400 px long open box crosses a seam: kept, clipped, on both sides of it.
    long_box = [r for r in records if r["panel_box"] == [400.0, 900.0, 800.0, 960.0]]
    assert sorted(tuple(r["cut"]) for r in long_box) == [("left",), ("right",)]
    # ...and the short box whole in one tile, 66% (kept, cut) in its left neighbour.
    assert report["boxes"]["panel_boxes"] == 4 and report["boxes"]["truncated"] == 3


def test_a_small_image_is_one_tile_as_it_is_with_its_mask(paired, paired_tiles) -> None:
    out, _ = paired_tiles
    dataset = load(out)
    tile = dataset.samples[dataset.samples["panel_path"] == "images/small.png"]
    assert len(tile) == 1
    row = tile.iloc[0]
    assert (row.width, row.height, row.tile_x, row.tile_y) == (300, 200, 0, 0)
    assert np.array_equal(cv2.imread(str(out / row.path)),
                          cv2.imread(str(paired / "images/small.png")))
    label = dataset.labels[dataset.labels["sample_id"] == row.sample_id].iloc[0]
    assert (label.x1, label.y1, label.x2, label.y2) == (40, 50, 90, 80)
    assert decode_mask(label["mask"]).sum() == 30 * 50


def test_a_mask_is_cut_with_its_box(tmp_path) -> None:
    mask = np.zeros((640, 1216), bool)
    mask[300:340, 530:690] = True
    image = draw_panel(4, 1216, 640)
    src = write_panel_dataset(tmp_path / "src", [
        {"name": "p", "image": image, "boxes": [("open", 530, 300, 690, 340,
                                                 encode_mask(mask))]}])
    report = tile_dataset(src, tmp_path / "out", TileParams())
    dataset = load(tmp_path / "out")  # validates every mask against its tile's size
    assert report["masks"] == {"cut": 2, "emptied": 0}
    pieces = dataset.labels.merge(dataset.samples[["sample_id", "tile_x"]], on="sample_id")
    for piece in pieces.itertuples():
        window = decode_mask(piece.mask)
        assert window.shape == (640, 640)
        assert np.array_equal(window, mask[:, piece.tile_x:piece.tile_x + 640])


def test_a_panels_split_lot_and_group_go_to_its_tiles(paired_tiles) -> None:
    out, _ = paired_tiles
    tiles = load(out).samples
    lone = tiles[tiles["panel_path"] == "images/lone.png"]
    assert len(lone) == 4 and set(lone["split"]) == {"test"} and set(lone["lot"]) == {"L7"}
    # No group: the panel itself is the group.
    assert set(lone["group"]) == set(lone["panel_id"])
    assert (tiles["split"][tiles["panel_path"] != "images/lone.png"] == "").all()


def test_tiling_again_keeps_the_split_the_tiles_were_given(paired, tmp_path) -> None:
    import pcbforge as pf

    out = tmp_path / "tiles"
    pf.tile_dataset(paired, out)
    pf.split_dataset(out, seed=3)
    first = load(out).samples.set_index("sample_id")["split"]
    assert (first != "").all()
    pf.tile_dataset(paired, out)  # into its own earlier output: allowed, splits kept
    again = load(out)
    assert again.samples.set_index("sample_id")["split"].equals(first)
    assert again.info.split is not None  # a later split pins them (the test set only grows)


def test_same_inputs_give_the_same_bytes(paired, paired_tiles, tmp_path) -> None:
    first, _ = paired_tiles
    again = tmp_path / "again"
    tile_dataset(paired, again, TileParams(size=640, overlap=64, carry=("lot",)), workers=2)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file()
                   and p.name != TILE_REPORT)
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file()
                           and p.name != TILE_REPORT)
    assert len(files) > 20
    for name in files:
        assert (first / name).read_bytes() == (again / name).read_bytes(), name


def test_an_unreadable_panel_is_reported_not_fatal(tmp_path) -> None:
    src = write_panel_dataset(tmp_path / "src", [
        {"name": "good", "image": draw_panel(5, 700, 300), "boxes": []},
        {"name": "gone", "image": draw_panel(6, 700, 300), "boxes": [("open", 1, 1, 9, 9)]},
        {"name": "bad", "image": draw_panel(7, 200, 200), "boxes": [], "status": "corrupt"},
    ])
    (src / "images" / "gone.png").unlink()
    report = tile_dataset(src, tmp_path / "out")
    assert report["panels_tiled"] == 1 and report["tiles"] == 2
    assert [(f["path"], f["reason"]) for f in report["panels_failed"]] == [
        ("images/gone.png", "missing")]
    assert report["panels_skipped_by_status"] == {"corrupt": 1}
    assert report["boxes"]["labels_of_unused_panels"] == 1
    statuses = {p["path"]: p["status"] for p in report["panel_list"]}
    assert statuses == {"images/good.png": "tiled", "images/gone.png": "failed",
                        "images/bad.png": "skipped"}
    assert json.loads((tmp_path / "out" / TILE_REPORT).read_text())["tiles"] == 2


def test_out_inside_the_source_or_a_foreign_folder_is_refused(paired, tmp_path) -> None:
    with pytest.raises(TileError, match="must not contain each other"):
        tile_dataset(paired, paired / "tiles")
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(TileError, match="not an earlier `pcbforge tile` output"):
        tile_dataset(paired, foreign)
    assert (foreign / "keep.txt").read_text() == "mine"


# --- the command ------------------------------------------------------------------------------


def test_the_command_tiles_and_summarises(paired, tmp_path) -> None:
    out = tmp_path / "ds"
    result = runner.invoke(app, ["tile", str(paired), "--size", "512", "--overlap", "32",
                                 "--out", str(out), "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "tiled 4 of 4 panels into" in result.output and TILE_REPORT in result.output
    report = json.loads((out / TILE_REPORT).read_text())
    assert report["parameters"]["size"] == 512 and report["tiles"] == len(load(out).samples)


@pytest.mark.parametrize(("args", "expected"), [
    (["--size", "640", "--overlap", "640"], "overlap must be smaller than the tile size"),
    (["--min-visible", "0"], "min_visible"),
    (["--carry", "no_such_column"], "--carry 'no_such_column' is not a column"),
], ids=["overlap-not-below-size", "min-visible-zero", "unknown-carry"])
def test_a_bad_argument_is_one_clear_line(paired, tmp_path, args, expected) -> None:
    result = runner.invoke(app, ["tile", str(paired), "--out", str(tmp_path / "ds"),
                                 "--workers", "1", *args])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], lines
    assert not (tmp_path / "ds").exists()
