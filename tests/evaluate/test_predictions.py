"""Reading predictions: every format gives the same canonical table for the same boxes,
and every way a prediction file can be wrong raises one line naming the file and entry."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pcbforge.datasets.dataset import Dataset, DatasetInfo, load, save, with_defaults
from pcbforge.evaluate import predictions
from pcbforge.evaluate.predictions import (
    FORMATS,
    PREDICTION_COLUMNS,
    PredictionFormat,
    PredictionsError,
    read_predictions,
)

CLASSES = ["open", "short", "mousebite", "spur", "copper", "pin-hole"]
PATH_A = "group00041/00041/00041000_test.jpg"
TEMPLATE_A = "group00041/00041/00041000_temp.jpg"
PATH_B = "images/syn_000001.png"
PATH_C = "images/board_c.png"

#: The boxes every format below writes: (sample_id, label, score, x1, y1, x2, y2), in the
#: canonical order. Images are not square (512x256), so a swapped width/height shows.
BOXES = [
    ("s_a", "short", 0.9, 64.0, 32.0, 192.0, 96.0),
    ("s_a", "open", 0.5, 0.0, 0.0, 32.0, 16.0),
    ("s_b", "pin-hole", 0.75, 256.0, 128.0, 384.0, 192.0),
]


def make_dataset(root: Path, extra: list[dict] = ()) -> Dataset:
    """Tested samples s_a (with template t_a), s_b, s_c (with template t_c, a template only
    because s_c names it) and s_n (no size), the template t_z (a template only by its role),
    plus ``extra`` rows."""
    rows = [
        {"sample_id": "s_a", "path": PATH_A, "role": "tested", "template_path": TEMPLATE_A,
         "width": 512, "height": 256, "split": "test"},
        {"sample_id": "t_a", "path": TEMPLATE_A, "role": "template", "template_path": "",
         "width": 512, "height": 256},
        {"sample_id": "s_b", "path": PATH_B, "role": "tested", "template_path": "",
         "width": 512, "height": 256, "split": "val"},
        {"sample_id": "s_c", "path": PATH_C, "role": "", "template_path": "images/ref_c.png",
         "width": 256, "height": 512},
        {"sample_id": "t_c", "path": "images/ref_c.png", "role": "", "template_path": "",
         "width": 256, "height": 512},
        {"sample_id": "s_n", "path": "images/nosize.png", "role": "tested",
         "template_path": "", "width": math.nan, "height": math.nan},
        {"sample_id": "t_z", "path": "images/template_z.png", "role": "template",
         "template_path": "", "width": 512, "height": 256},
        *extra,
    ]
    table = pd.DataFrame(rows).fillna({"split": "", "role": "", "template_path": ""})
    samples, labels = with_defaults(table, None)
    save(Dataset(root / "ds", samples, labels, DatasetInfo(classes=CLASSES)))
    return load(root / "ds")


@pytest.fixture
def dataset(tmp_path) -> Dataset:
    return make_dataset(tmp_path)


def expected(rows=BOXES) -> pd.DataFrame:
    table = pd.DataFrame(list(rows), columns=list(PREDICTION_COLUMNS))
    return table.astype({"sample_id": str, "label": str, "score": np.float64, "x1": np.float64,
                         "y1": np.float64, "x2": np.float64, "y2": np.float64})


def check_error(dataset: Dataset, source: Path, fmt: str, pattern: str, *,
                file: Path | None = None, **options) -> str:
    """Reading ``source`` raises a one-line PredictionsError that starts by naming
    ``file`` (``source`` by default) and then matches ``pattern``."""
    named = re.escape(str(source if file is None else file))
    with pytest.raises(PredictionsError, match=f"^{named}.*{pattern}") as info:
        read_predictions(dataset, source, fmt, **options)
    assert "\n" not in str(info.value)
    return str(info.value)


def write_json(path: Path, payload: object) -> Path:
    path.write_text(json.dumps(payload), encoding="utf-8")
    return path


def coco_entry(image, category: int, box, score: float, key: str = "image_id") -> dict:
    x1, y1, x2, y2 = box
    return {key: image, "category_id": category, "bbox": [x1, y1, x2 - x1, y2 - y1],
            "score": score}


def write_folder(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


# --- each format reads to the same table --------------------------------------------------


@pytest.mark.parametrize("key, image_a, image_b", [
    ("image_id", "s_a", "s_b"),  # sample ids
    ("image_id", PATH_A, PATH_B),  # sample paths
    ("file_name", PATH_A, "syn_000001.png"),  # a path, and a file name unique in the dataset
], ids=["sample-id", "path", "file_name"])
def test_coco_results_without_ground_truth(dataset, tmp_path, key, image_a, image_b):
    # Without coco_gt, category ids are 1-based positions in the classes.
    source = write_json(tmp_path / "results.json", [
        coco_entry(image_b, 6, BOXES[2][3:], 0.75, key),
        coco_entry(image_a, 1, BOXES[1][3:], 0.5, key),
        coco_entry(image_a, 2, BOXES[0][3:], 0.9, key),
    ])
    pd.testing.assert_frame_equal(read_predictions(dataset, source, "coco-results"),
                                  expected(), check_exact=True)


def test_coco_results_through_a_ground_truth(dataset, tmp_path):
    # Ids that mean something only through the ground truth: image 7 is s_a by file name,
    # image 3 is s_b by its pcbforge sample_id (its file_name is no sample's), and the
    # category ids are not positions in the dataset's classes.
    truth = write_json(tmp_path / "annotations.json", {
        "images": [{"id": 7, "file_name": PATH_A},
                   {"id": 3, "file_name": "renamed.png", "pcbforge": {"sample_id": "s_b"}}],
        "annotations": [],
        "categories": [{"id": 10, "name": "pin-hole"}, {"id": 11, "name": "open"},
                       {"id": 12, "name": "short"}],
    })
    source = write_json(tmp_path / "results.json", [
        coco_entry(7, 12, BOXES[0][3:], 0.9), coco_entry(7, 11, BOXES[1][3:], 0.5),
        coco_entry(3, 10, BOXES[2][3:], 0.75),
    ])
    table = read_predictions(dataset, source, "coco-results", coco_gt=truth)
    pd.testing.assert_frame_equal(table, expected(), check_exact=True)


def test_coco_ground_truth_sample_id_not_in_the_dataset_falls_back_to_file_name(dataset,
                                                                                tmp_path):
    truth = write_json(tmp_path / "annotations.json", {
        "images": [{"id": 1, "file_name": PATH_B, "pcbforge": {"sample_id": "gone"}}],
        "categories": [{"id": 1, "name": "pin-hole"}],
    })
    source = write_json(tmp_path / "results.json", [coco_entry(1, 1, BOXES[2][3:], 0.75)])
    table = read_predictions(dataset, source, "coco-results", coco_gt=truth)
    pd.testing.assert_frame_equal(table, expected(BOXES[2:]))


def yolo_line(index: int, box, score: float, width: int = 512, height: int = 256) -> str:
    x1, y1, x2, y2 = box
    values = ((x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width,
              (y2 - y1) / height)
    return f"{index} " + " ".join(f"{v:.8f}" for v in values) + f" {score:g}\n"


def test_yolo_normalised_boxes_become_pixels(dataset, tmp_path):
    # s_a by its flat export name, s_b by its unique file stem; s_c has an empty file.
    folder = write_folder(tmp_path / "labels", {
        "group00041__00041__00041000_test.txt":
            yolo_line(1, BOXES[0][3:], 0.9) + "\n" + yolo_line(0, BOXES[1][3:], 0.5),
        "syn_000001.txt": yolo_line(5, BOXES[2][3:], 0.75),
        "board_c.txt": "",
        "notes.md": "not a prediction file: ignored",
        "._syn_000001.txt": "a hidden file (macOS metadata): ignored",
    })
    (folder / "sub").mkdir()
    (folder / "sub" / "unknown.txt").write_text("0 0.5 0.5 0.1 0.1 0.5\n")  # not descended
    pd.testing.assert_frame_equal(read_predictions(dataset, folder, "yolo"), expected())


def test_yolo_uses_each_samples_own_size(dataset, tmp_path):
    # s_c is 256 wide and 512 high: the same fractions give another pixel box than on s_a.
    folder = write_folder(tmp_path / "labels",
                          {"board_c.txt": "2 0.25 0.25 0.25 0.25 0.5\n"})
    table = read_predictions(dataset, folder, "yolo")
    assert table[["x1", "y1", "x2", "y2"]].iloc[0].tolist() == [32.0, 64.0, 96.0, 192.0]


@pytest.mark.parametrize("lines_a, line_b", [
    (["64,32,192,96,2,0.9", "0,0,32,16,1,0.5"], "256,128,384,192,6,0.75"),
    (["64 32 192 96 2 0.9", "0  0 32 16\t1 0.5"], "256 128 384 192 6 0.75"),
    (["64,32,192,96,0.9,short", "0,0,32,16,0.5,open"], "256,128,384,192,0.75,pin-hole"),
    (["64 32 192 96 short 0.9", "0 0 32 16 open 0.5"], "256 128 384 192 pin-hole 0.75"),
], ids=["commas", "spaces", "deeppcb-evaluation-order", "type-names"])
def test_deeppcb_lines(dataset, tmp_path, lines_a, line_b):
    # s_a by the stem without "_test" (as DeepPCB names annotation files), s_b by its stem.
    folder = write_folder(tmp_path / "res", {"00041000.txt": "\n".join(lines_a) + "\n\n",
                                             "syn_000001.txt": line_b})
    pd.testing.assert_frame_equal(read_predictions(dataset, folder, "deeppcb"), expected())


def test_deeppcb_file_named_with_test_suffix_and_a_byte_order_mark(dataset, tmp_path):
    folder = write_folder(tmp_path / "res", {"00041000_test.txt": "\ufeff0 0 32 16 1 0.5\n"})
    pd.testing.assert_frame_equal(read_predictions(dataset, folder, "deeppcb"),
                                  expected(BOXES[1:2]))


@pytest.mark.parametrize("suffix", ["parquet", "csv"])
@pytest.mark.parametrize("id_column", ["sample_id", "path"])
def test_pcbforge_tables(dataset, tmp_path, suffix, id_column):
    table = expected(BOXES[::-1])
    if id_column == "path":
        table = table.assign(path=table["sample_id"].map({"s_a": PATH_A, "s_b": PATH_B}))
        table = table.drop(columns="sample_id")
    source = tmp_path / f"predictions.{suffix}"
    if suffix == "parquet":
        table.to_parquet(source, index=False)
    else:
        table.to_csv(source, index=False)
    pd.testing.assert_frame_equal(read_predictions(dataset, source, "pcbforge"), expected())


def test_csv_ids_are_kept_as_text(tmp_path):
    # "00041" is a sample id, not the number 41.
    dataset = make_dataset(tmp_path, [{"sample_id": "00041", "path": "images/x.png",
                                       "role": "tested", "width": 64, "height": 64}])
    source = tmp_path / "p.csv"
    source.write_text("sample_id,label,score,x1,y1,x2,y2\n00041,spur,0.5,1,2,3,4\n")
    table = read_predictions(dataset, source, "pcbforge")
    assert table["sample_id"].tolist() == ["00041"]


def test_formats_registry_names_every_format():
    assert set(FORMATS) == {f.value for f in PredictionFormat} == {
        "coco-results", "yolo", "deeppcb", "pcbforge"}


def test_format_may_be_given_as_the_enum(dataset, tmp_path):
    source = write_json(tmp_path / "r.json", [coco_entry("s_b", 6, BOXES[2][3:], 0.75)])
    pd.testing.assert_frame_equal(
        read_predictions(dataset, source, PredictionFormat.coco_results), expected(BOXES[2:]))


# --- order, clipping, empty inputs ---------------------------------------------------------


def test_order_is_sample_then_score_then_box(dataset, tmp_path):
    entries = [coco_entry("s_b", 1, (10, 10, 20, 20), 0.5),
               coco_entry("s_a", 1, (30, 10, 40, 20), 0.5),
               coco_entry("s_a", 1, (10, 10, 20, 20), 0.5),
               coco_entry("s_a", 2, (10, 10, 20, 20), 0.25),
               coco_entry("s_a", 1, (50, 10, 60, 20), 0.75)]
    forward = read_predictions(dataset, write_json(tmp_path / "f.json", entries),
                               "coco-results")
    backward = read_predictions(dataset, write_json(tmp_path / "b.json", entries[::-1]),
                                "coco-results")
    pd.testing.assert_frame_equal(forward, backward, check_exact=True)
    assert list(zip(forward["sample_id"], forward["score"], forward["x1"], strict=True)) == [
        ("s_a", 0.75, 50.0), ("s_a", 0.5, 10.0), ("s_a", 0.5, 30.0), ("s_a", 0.25, 10.0),
        ("s_b", 0.5, 10.0)]
    assert forward.index.tolist() == list(range(5))


def test_boxes_within_one_pixel_of_the_border_are_clipped(dataset, tmp_path):
    source = write_json(tmp_path / "r.json", [
        {"image_id": "s_a", "category_id": 1, "bbox": [-0.5, -0.0, 10.5, 9.0], "score": 1},
        {"image_id": "s_a", "category_id": 1, "bbox": [4, -1.0, 6, 9.0], "score": 0.5},
        {"image_id": "s_a", "category_id": 1, "bbox": [500, 250, 12.75, 6.5], "score": 0},
    ])
    table = read_predictions(dataset, source, "coco-results")
    assert table[["x1", "y1", "x2", "y2"]].values.tolist() == [[0.0, 0.0, 10.0, 9.0],
                                                               [4.0, 0.0, 10.0, 8.0],
                                                               [500.0, 250.0, 512.0, 256.0]]
    assert not np.signbit(table[["x1", "y1"]].to_numpy()).any()  # no -0.0


def test_a_sample_without_size_keeps_pixel_boxes(dataset, tmp_path):
    source = write_json(tmp_path / "r.json", [coco_entry("s_n", 1, (5, 6, 7000, 8), 0.5)])
    table = read_predictions(dataset, source, "coco-results")
    assert table[["x1", "y1", "x2", "y2"]].values.tolist() == [[5.0, 6.0, 7000.0, 8.0]]


def test_empty_inputs_give_an_empty_table(dataset, tmp_path):
    empty_csv = tmp_path / "p.csv"
    empty_csv.write_text("sample_id,label,score,x1,y1,x2,y2\n")
    tables = [
        read_predictions(dataset, write_json(tmp_path / "r.json", []), "coco-results"),
        read_predictions(dataset, write_folder(tmp_path / "yolo", {}), "yolo"),
        read_predictions(dataset, write_folder(tmp_path / "d", {"00041000.txt": "\n"}),
                         "deeppcb"),
        read_predictions(dataset, empty_csv, "pcbforge"),
    ]
    for table in tables:
        assert table.empty
        assert tuple(table.columns) == PREDICTION_COLUMNS
        assert table.dtypes.astype(str).tolist() == ["str", "str"] + ["float64"] * 5


# --- images that are not the dataset's tested samples ---------------------------------------


def test_unknown_images_are_listed(dataset, tmp_path):
    source = write_json(tmp_path / "r.json",
                        [coco_entry("s_a", 1, (0, 0, 5, 5), 0.5)]
                        + [coco_entry(f"nope{i}", 1, (0, 0, 5, 5), 0.5) for i in range(7)])
    message = check_error(dataset, source, "coco-results",
                          r"entry 1: image 'nope0' is not a sample of the dataset \(7 unknown "
                          r"image names: 'nope0', 'nope1', 'nope2', 'nope3', 'nope4' and 2 "
                          r"more\)")
    assert "nope5" not in message


def test_unknown_yolo_file(dataset, tmp_path):
    folder = write_folder(tmp_path / "labels", {"syn_000001.txt": "", "classes.txt": ""})
    check_error(dataset, folder, "yolo", r"image 'classes' is not a sample",
                file=folder / "classes.txt")


@pytest.mark.parametrize("image", ["t_a", TEMPLATE_A, "template_z", "ref_c"],
                         ids=["sample-id", "path", "by-role-only", "named-by-template-path"])
def test_predictions_on_templates_are_read(dataset, tmp_path, image):
    """A template is a good board: a prediction there is a false alarm to count."""
    source = write_json(tmp_path / "r.json", [coco_entry(image, 1, (0, 0, 5, 5), 0.5)])
    table = read_predictions(dataset, source, "coco-results")
    assert table["sample_id"].tolist() == [{"t_a": "t_a", TEMPLATE_A: "t_a",
                                            "template_z": "t_z", "ref_c": "t_c"}[image]]


def test_an_ambiguous_name_is_refused(tmp_path):
    dataset = make_dataset(tmp_path, [
        {"sample_id": "s_x", "path": "other/syn_000001.jpg", "role": "tested", "width": 512,
         "height": 256},
        {"sample_id": "s_y", "path": "images/syn_000001.jpg", "role": "tested", "width": 512,
         "height": 256}])
    folder = write_folder(tmp_path / "labels", {"syn_000001.txt": ""})
    check_error(dataset, folder, "yolo",
                r"image 'syn_000001' is the file stem of 3 samples \('s_b', 's_x', 's_y'\)",
                file=folder / "syn_000001.txt")
    # images/syn_000001.png and .jpg flatten to one name: the export numbers the second.
    folder = write_folder(tmp_path / "labels2", {"images__syn_000001.txt": ""})
    check_error(dataset, folder, "yolo", r"image 'images__syn_000001' is the flat file stem "
                                         r"of 2 samples \('s_b', 's_y'\)",
                file=folder / "images__syn_000001.txt")
    # Full paths, flat names and numbered flat names tell them apart.
    folder = write_folder(tmp_path / "labels3", {
        "other__syn_000001.txt": "0 0.5 0.5 0.25 0.25 0.5\n",
        "images__syn_000001-1.txt": "0 0.5 0.5 0.25 0.25 0.25\n"})
    table = read_predictions(dataset, folder, "yolo")
    assert table["sample_id"].tolist() == ["s_x", "s_y"]
    source = write_json(tmp_path / "r.json", [coco_entry("images/syn_000001.jpg", 1,
                                                         (0, 0, 5, 5), 0.5)])
    assert read_predictions(dataset, source, "coco-results")["sample_id"].tolist() == ["s_y"]


def test_two_files_for_one_image_are_refused(dataset, tmp_path):
    folder = write_folder(tmp_path / "res", {"00041000.txt": "", "00041000_test.txt": ""})
    check_error(dataset, folder, "deeppcb", r"names sample 's_a' .*one file per image",
                file=folder / "00041000_test.txt")


# --- classes, scores and boxes --------------------------------------------------------------


@pytest.mark.parametrize("entry, pattern", [
    ({"category_id": 7}, r"category_id 7 is not a class of the dataset .*6=pin-hole"),
    ({"category_id": 0}, r"category_id 0 is not a class"),
    ({"category_id": "short"}, r"expected an integer category_id, got 'short'"),
    ({"score": 1.5}, r"score must be a number in \[0, 1\], got 1.5"),
    ({"score": -0.1}, r"score must be a number in \[0, 1\]"),
    ({"score": math.nan}, r"score must be a finite number, got nan"),
    ({"score": "0.5"}, r"score must be a finite number, got '0.5'"),
    ({"score": None}, r"score must be a finite number, got None"),
    ({"bbox": [10, 10, 0, 5]}, r"box \(x1=10, y1=10, x2=10, y2=15\) is empty"),
    ({"bbox": [10, 10, 5, -5]}, r"box .* is empty \(expected x2 > x1 and y2 > y1\)"),
    ({"bbox": [10, 10, 5]}, r"expected bbox \[x, y, width, height\]"),
    ({"bbox": [505, 10, 9, 5]}, r"box \(x1=505, y1=10, x2=514, y2=15\) is outside the "
                                r"512x256 image of sample 's_a'"),
    ({"bbox": [-2, 10, 9, 5]}, r"box \(x1=-2, .* is outside the 512x256 image"),
    ({"bbox": [-0.9, 10, 0.5, 5]}, r"box .* is outside"),  # within the slack, but nothing inside
    ({"image_id": 3}, r"image_id 3 is a number, .*pass coco_gt"),
    ({"image_id": None}, r"expected an integer or text image_id, got None"),
])
def test_coco_entry_errors(dataset, tmp_path, entry, pattern):
    good = coco_entry("s_b", 6, BOXES[2][3:], 0.75)
    bad = {**coco_entry("s_a", 2, (10, 10, 20, 20), 0.5), **entry}
    source = write_json(tmp_path / "r.json", [good, bad])
    check_error(dataset, source, "coco-results", f"entry 1: {pattern}")


def test_coco_entry_without_score_or_image(dataset, tmp_path):
    entry = coco_entry("s_a", 2, (10, 10, 20, 20), 0.5)
    source = write_json(tmp_path / "r.json", [{k: v for k, v in entry.items() if k != "score"}])
    check_error(dataset, source, "coco-results", r"entry 0: the score is missing")
    source = write_json(tmp_path / "r.json",
                        [{k: v for k, v in entry.items() if k != "image_id"}])
    check_error(dataset, source, "coco-results",
                r"entry 0: expected an 'image_id' or a 'file_name'")


@pytest.mark.parametrize("text, pattern", [
    ('[{"image_id": "s_a",', r":1: COCO results file is not valid JSON"),
    ("", r"not valid JSON"),
    ('{"annotations": []}', r"expected a JSON list of results .*got a JSON object"),
    ('[["s_a", 1]]', r"entry 0: expected an object"),
])
def test_malformed_coco_results(dataset, tmp_path, text, pattern):
    source = tmp_path / "r.json"
    source.write_text(text)
    check_error(dataset, source, "coco-results", pattern)


def test_coco_ground_truth_errors(dataset, tmp_path):
    truth = write_json(tmp_path / "gt.json", {
        "images": [{"id": 1, "file_name": PATH_A}],
        "categories": [{"id": 1, "name": "short"}, {"id": 2, "name": "scratch"}]})
    cases = [
        (coco_entry(9, 1, (0, 0, 5, 5), 0.5), r"image_id 9 is not an image id of .*gt.json"),
        (coco_entry("1", 1, (0, 0, 5, 5), 0.5), r"image_id '1' is not an image id"),
        (coco_entry(1, 3, (0, 0, 5, 5), 0.5), r"category_id 3 is not a category of "
                                              r".*gt.json \(ids \[1, 2\]\)"),
        (coco_entry(1, 2, (0, 0, 5, 5), 0.5), r"category_id 2, in .*gt.json, 'scratch' is not "
                                              r"a class of the dataset \(expected one of "
                                              r"\['open'"),
    ]
    for entry, pattern in cases:
        source = write_json(tmp_path / "r.json", [entry])
        check_error(dataset, source, "coco-results", f"entry 0: {pattern}", coco_gt=truth)
    broken = write_json(tmp_path / "bad_gt.json", {"images": [{"id": 1}], "categories": []})
    source = write_json(tmp_path / "r.json", [])
    check_error(dataset, source, "coco-results",
                r"images\[0\]: expected an object with an 'id' and a 'file_name'",
                file=broken, coco_gt=broken)
    results_only = write_json(tmp_path / "results_as_gt.json", [])
    check_error(dataset, source, "coco-results", r"expected a COCO ground truth",
                file=results_only, coco_gt=results_only)


@pytest.mark.parametrize("line, pattern", [
    ("1 0.25 0.25 0.25 0.25", r"the confidence is missing"),
    ("1 0.25 0.25 0.25 0.25 0.9 7", r"expected 'class cx cy w h conf' \(6 values\), got 7"),
    ("6 0.25 0.25 0.25 0.25 0.9", r"class '6' is not a class index of the dataset "
                                  r"\(expected 0=open, .*5=pin-hole\)"),
    ("1.5 0.25 0.25 0.25 0.25 0.9", r"class '1.5' is not a class index"),
    ("1 0.25 0.25 0.25 0.25 1.2", r"score must be a number in \[0, 1\]"),
    ("1 0.25 0.25 0.25 0.25 nan", r"score must be a finite number, got 'nan'"),
    ("1 0.25 abc 0.25 0.25 0.9", r"cy must be a finite number, got 'abc'"),
    ("1 0.25 0.25 0 0.25 0.9", r"box is empty \(expected w > 0 and h > 0"),
    ("1 0.99 0.25 0.25 0.25 0.9", r"box \(x1=442.88, .* is outside the 512x256 image"),
])
def test_yolo_line_errors(dataset, tmp_path, line, pattern):
    folder = write_folder(tmp_path / "labels", {"syn_000001.txt": f"0 0.5 0.5 0.1 0.1 0.5\n"
                                                                  f"{line}\n"})
    check_error(dataset, folder, "yolo", f":2: {pattern}", file=folder / "syn_000001.txt")


def test_yolo_needs_the_sample_size(dataset, tmp_path):
    folder = write_folder(tmp_path / "labels", {"nosize.txt": "0 0.5 0.5 0.1 0.1 0.5\n"})
    check_error(dataset, folder, "yolo", r":1: sample 's_n' has no width and height",
                file=folder / "nosize.txt")


@pytest.mark.parametrize("line, pattern", [
    ("10,10,20,20,2", r"the score is missing"),
    ("10 10 20 20", r"expected .*\(6 values\), got 4 values"),
    ("10,10,20,20,7,0.5", r"type '7' is not a DeepPCB type id \(1=open, .*6=pin-hole\)"),
    ("10,10,20,20,0.5,3.5", r"type '0.5' is not a DeepPCB type id"),
    ("10,10,20,20,0.5,scratch", r"type 'scratch' is not a class of the dataset"),
    ("10,10,20,20,2,1.01", r"score must be a number in \[0, 1\]"),
    ("20,10,10,20,2,0.5", r"box \(x1=20, y1=10, x2=10, y2=20\) is empty"),
    ("10,10,20,258,2,0.5", r"box .* is outside the 512x256 image"),
    ("10,10,x,20,2,0.5", r"x2 must be a finite number, got 'x'"),
])
def test_deeppcb_line_errors(dataset, tmp_path, line, pattern):
    folder = write_folder(tmp_path / "res", {"00041000.txt": f"1 1 5 5 1 0.5\n{line}\n"})
    check_error(dataset, folder, "deeppcb", f":2: {pattern}", file=folder / "00041000.txt")


def test_deeppcb_type_outside_the_dataset_classes(tmp_path):
    samples, labels = with_defaults(pd.DataFrame([{"sample_id": "s", "path": "a_test.jpg",
                                                   "width": 64, "height": 64}]), None)
    save(Dataset(tmp_path / "ds", samples, labels, DatasetInfo(classes=["open", "short"])))
    dataset = load(tmp_path / "ds")
    folder = write_folder(tmp_path / "res", {"a.txt": "1 1 5 5 5 0.5\n"})
    check_error(dataset, folder, "deeppcb", r":1: type 5 \(copper\) 'copper' is not a class "
                                            r"of the dataset \(expected one of \['open', "
                                            r"'short'\]\)", file=folder / "a.txt")


@pytest.mark.parametrize("row, pattern", [
    ("s_a,scratch,0.5,1,1,5,5", r"label 'scratch' is not a class of the dataset"),
    ("s_a,open,2,1,1,5,5", r"score must be a number in \[0, 1\], got '2'"),
    ("s_a,open,,1,1,5,5", r"score must be a finite number, got ''"),
    ("s_a,open,0.5,1,5,5,5", r"box .* is empty"),
    ("s_a,open,0.5,1,1,600,5", r"box .* is outside the 512x256 image"),
    (",open,0.5,1,1,5,5", r"expected a sample_id, got ''"),
    ("nope,open,0.5,1,1,5,5", r"image 'nope' is not a sample"),
])
def test_pcbforge_table_errors(dataset, tmp_path, row, pattern):
    source = tmp_path / "p.csv"
    source.write_text(f"sample_id,label,score,x1,y1,x2,y2\ns_b,open,0.5,1,1,5,5\n{row}\n")
    check_error(dataset, source, "pcbforge", f"row 1 \\(line 3\\): {pattern}")


def test_pcbforge_table_shape_errors(dataset, tmp_path):
    source = tmp_path / "p.csv"
    source.write_text("image,label,score,x1,y1,x2\n")
    check_error(dataset, source, "pcbforge",
                r"missing \['sample_id or path', 'y2'\] \(columns found: \['image'")
    source = tmp_path / "p.json"
    source.write_text("[]")
    check_error(dataset, source, "pcbforge", r"expected a .parquet or .csv predictions table")
    source = tmp_path / "p.parquet"
    source.write_bytes(b"PAR1 not really")
    check_error(dataset, source, "pcbforge", r"expected a parquet table, got one that cannot")


# --- files and arguments ---------------------------------------------------------------------


def test_sources_that_are_not_there_or_not_files(dataset, tmp_path):
    check_error(dataset, tmp_path / "missing.json", "coco-results",
                r"COCO results file not found")
    check_error(dataset, tmp_path, "coco-results",
                r"expected a COCO results file, a regular file; got a folder")
    check_error(dataset, tmp_path / "missing", "yolo", r"YOLO predictions folder not found")
    source = write_json(tmp_path / "r.json", [])
    check_error(dataset, source, "yolo", r"expected a folder of .txt files")


def test_files_above_the_size_cap_are_not_read(dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(predictions, "MAX_LABEL_FILE_BYTES", 10)
    folder = write_folder(tmp_path / "labels", {"syn_000001.txt": "0 0.5 0.5 0.1 0.1 0.5\n"})
    check_error(dataset, folder, "yolo", r"expected a YOLO predictions file of at most 10 "
                                         r"bytes, got a larger file",
                file=folder / "syn_000001.txt")


def test_non_utf8_text_is_refused(dataset, tmp_path):
    folder = write_folder(tmp_path / "labels", {})
    (folder / "syn_000001.txt").write_bytes(b"0 0.5 0.5 0.1 0.1 0.5\n\xff\n")
    check_error(dataset, folder, "yolo", r":2: expected UTF-8 text",
                file=folder / "syn_000001.txt")


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")
def test_a_link_out_of_the_folder_is_not_followed(dataset, tmp_path):
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("0 0.5 0.5 0.1 0.1 0.5\n")
    folder = write_folder(tmp_path / "labels", {})
    (folder / "syn_000001.txt").symlink_to(outside)
    check_error(dataset, folder, "yolo", r"expected a file inside .*got a link",
                file=folder / "syn_000001.txt")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_is_not_opened(dataset, tmp_path):
    folder = write_folder(tmp_path / "labels", {})
    os.mkfifo(folder / "syn_000001.txt")
    check_error(dataset, folder, "yolo", r"expected a YOLO predictions file, a regular file",
                file=folder / "syn_000001.txt")


def test_unknown_format_and_misplaced_coco_gt(dataset, tmp_path):
    with pytest.raises(PredictionsError, match=r"unknown prediction format 'voc'; expected "
                                               r"one of: coco-results, yolo, deeppcb, pcbforge"):
        read_predictions(dataset, tmp_path, "voc")
    with pytest.raises(PredictionsError, match=r"coco_gt is for the coco-results format only; "
                                               r"got it with 'yolo'"):
        read_predictions(dataset, tmp_path, "yolo", coco_gt=tmp_path / "gt.json")
