"""``import`` and ``export``: curation plus the labels, on generated data in each layout."""

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pcbforge.cli.main import app
from pcbforge.curate import CurateParams
from pcbforge.datasets.coco import save_coco
from pcbforge.datasets.dataset import load, save
from pcbforge.datasets.masks import encode_mask
from pcbforge.datasets.voc import save_voc
from pcbforge.datasets.yolo import save_yolo
from pcbforge.pipeline import export_dataset, import_deeppcb, import_labelled, read_labelled
from tests.conftest import write_deeppcb_layout


def test_import_deeppcb_builds_a_valid_dataset(tmp_path):
    src = tmp_path / "deeppcb"
    expected = write_deeppcb_layout(src, {"group00001": 3, "group00002": 2},
                                    np.random.default_rng(4))
    (src / "group00001" / "00001" / "00001099_test.jpg").write_bytes(b"<html>oops</html>")
    result = import_deeppcb(src, tmp_path / "ds", CurateParams(workers=1))
    dataset = load(tmp_path / "ds", check_files=True)
    samples = dataset.samples.set_index("path")
    tested = samples[samples["role"] == "tested"]
    assert len(tested) == expected["tested"] + 1
    assert samples.loc["group00001/00001/00001099_test.jpg", "status"] == "corrupt"
    assert len(dataset.labels) == expected["boxes"]
    assert dataset.info.classes[3] == "spur"
    assert result.report["boards"] == 2
    # Each tested image shares its template's group and split; boards recorded.
    ok = tested[tested["template_path"] != ""]
    assert (ok["group"].to_numpy() == samples.loc[ok["template_path"], "group"].to_numpy()).all()
    listed = samples[(samples["role"] != "") & (samples["pair"] != "00001099")]
    assert set(listed["split"]) == {"train"}  # from trainval.txt
    assert samples.loc["group00001/00001/00001099_test.jpg", "split"] == ""  # in no list
    assert set(samples.loc[samples["role"] != "", "board"]) == {"group00001", "group00002"}
    # The missing template and annotation of the broken image are reported.
    assert any("00001099_test.jpg" in str(p) for p in result.problems)


def test_import_command(tmp_path):
    src = tmp_path / "deeppcb"
    write_deeppcb_layout(src, {"group00007": 2}, np.random.default_rng(5))
    run = CliRunner().invoke(app, ["import", "deeppcb", str(src), "--out", str(tmp_path / "ds"),
                                   "--workers", "1"])
    assert run.exit_code == 0, run.output
    assert "2 tested images, 2 templates, 1 board, 4 boxes" in run.output
    bad = CliRunner().invoke(app, ["import", "deeppcb", str(tmp_path), "--out",
                                   str(tmp_path / "ds2")])
    assert bad.exit_code == 2 and "no DeepPCB tested images" in bad.output


def test_deeppcb_export_round_trip_keeps_every_box(tmp_path):
    src = tmp_path / "deeppcb"
    write_deeppcb_layout(src, {"group00001": 2, "group00002": 2}, np.random.default_rng(8))
    first = import_deeppcb(src, tmp_path / "ds", CurateParams(workers=1)).dataset
    run = CliRunner().invoke(app, ["export", str(tmp_path / "ds"), "--format", "deeppcb",
                                   "--out", str(tmp_path / "exported")])
    assert run.exit_code == 0, run.output
    again = import_deeppcb(tmp_path / "exported", tmp_path / "ds2", CurateParams(workers=1)).dataset

    def boxes(dataset):
        paths = dataset.samples.set_index("sample_id")["path"]
        table = dataset.labels.assign(path=dataset.labels["sample_id"].map(paths))
        return table[["path", "label", "x1", "y1", "x2", "y2"]].sort_values(
            ["path", "label", "x1", "y1"]).reset_index(drop=True)

    assert boxes(again).equals(boxes(first))
    assert (again.samples["role"] == "tested").sum() == 4


def test_export_refuses_bad_requests(tmp_path):
    src = tmp_path / "deeppcb"
    write_deeppcb_layout(src, {"group00001": 1}, np.random.default_rng(9))
    import_deeppcb(src, tmp_path / "ds", CurateParams(workers=1))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("x")
    runner = CliRunner()
    busy = runner.invoke(app, ["export", str(tmp_path / "ds"), "-f", "deeppcb", "-o",
                               str(tmp_path / "busy")])
    assert busy.exit_code == 2 and "not empty" in busy.output
    unknown = runner.invoke(app, ["export", str(tmp_path / "ds"), "-f", "tfrecord", "-o",
                                  str(tmp_path / "x")])
    assert unknown.exit_code == 2
    missing = runner.invoke(app, ["export", str(tmp_path / "nope"), "-f", "coco", "-o",
                                  str(tmp_path / "y")])
    assert missing.exit_code == 2 and str(tmp_path / "nope") in missing.output
    assert re.search("no such dataset folder|no samples.parquet", missing.output)


# --- import coco | yolo | voc ------------------------------------------------------------------

def _boxes_by_id(dataset) -> pd.DataFrame:
    return dataset.labels[["sample_id", "label", "x1", "y1", "x2", "y2", "mask"]].sort_values(
        ["sample_id", "label", "x1", "y1"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def split_dataset(tmp_path_factory):
    """A DeepPCB import with train/val/test splits and one instance mask."""
    root = tmp_path_factory.mktemp("split")
    write_deeppcb_layout(root / "deeppcb", {"group00001": 3, "group00002": 3},
                         np.random.default_rng(12))
    dataset = import_deeppcb(root / "deeppcb", root / "ds", CurateParams(workers=1)).dataset
    samples = dataset.samples
    images = samples.index[samples["status"] == "ok"]
    samples.loc[images, "split"] = np.resize(["train", "val", "test"], len(images))
    first = dataset.labels.index[0]
    box = dataset.labels.loc[first]
    mask = np.zeros((160, 160), bool)
    mask[int(box.y1) + 2:int(box.y2) - 2, int(box.x1) + 2:int(box.x2) - 2] = True
    dataset.labels.loc[first, "mask"] = encode_mask(mask)
    save(dataset)
    return root / "ds"


@pytest.mark.parametrize("fmt", ["coco", "yolo", "voc"])
def test_import_of_an_export_gives_the_dataset_back(fmt, split_dataset, tmp_path):
    first = load(split_dataset)
    export_dataset(split_dataset, fmt, tmp_path / fmt)
    result = import_labelled(fmt, tmp_path / fmt, tmp_path / "again", CurateParams(workers=1))
    again = load(tmp_path / "again", check_files=True)

    exported = first.samples[first.samples["status"] == "ok"]
    images = again.samples[again.samples["reason"] != "not_an_image_file"]  # not the JSON...
    assert set(images["sample_id"]) == set(exported["sample_id"])
    # Boxes to the pixel, classes, masks, and the defect-free images (no boxes) too.
    expected = _boxes_by_id(first)
    expected = expected[expected["sample_id"].isin(exported["sample_id"])].reset_index(drop=True)
    assert _boxes_by_id(again).equals(expected)
    assert (expected["mask"] != "").sum() == 1
    assert again.info.classes == first.info.classes
    splits = again.samples.set_index("sample_id")["split"]
    assert (splits[exported["sample_id"]].to_numpy() == exported["split"].to_numpy()).all()
    assert result.report["annotated_images"] == len(exported)
    assert set(images["status"]) == {"ok"}


def _coco(images: list[dict], annotations: list[dict], names=("open", "short")) -> dict:
    return {"images": images, "annotations": annotations,
            "categories": [{"id": i + 1, "name": n} for i, n in enumerate(names)]}


def _write_png(path: Path, shape=(40, 60), value=0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(path)) + value)
    assert cv2.imwrite(str(path), rng.integers(0, 256, (*shape, 3), np.uint8))


def test_coco_split_folders_from_other_tools(tmp_path):
    """Plain COCO (no pcbforge extras) per split: image ids repeat across the files."""
    src = tmp_path / "coco"
    for split, offset in (("train", 0), ("valid", 100)):
        for n in (1, 2):
            _write_png(src / split / "images" / f"{n}.png", value=offset + n)
        (src / split / "_annotations.coco.json").write_text(json.dumps(_coco(
            [{"id": 1, "file_name": "1.png", "width": 60, "height": 40},
             {"id": 2, "file_name": "2.png", "width": 60, "height": 40}],
            [{"id": 1, "image_id": 1, "category_id": 2, "bbox": [5, 6, 10, 12]}])))
    _write_png(src / "train" / "images" / "stray.png", value=7)  # not in the annotations
    result = import_labelled("coco", src, tmp_path / "ds", CurateParams(workers=1))
    dataset = load(tmp_path / "ds", check_files=True)
    samples = dataset.samples.set_index("path")
    assert samples.loc["train/images/1.png", "split"] == "train"
    assert samples.loc["valid/images/2.png", "split"] == "val"
    assert samples["sample_id"].is_unique
    assert (samples.loc["train/images/stray.png", ["status", "reason"]].tolist()
            == ["skipped", "not_in_annotations"])
    assert result.report["images_not_in_annotations"] == 1
    assert len(dataset.labels) == 2 and set(dataset.labels["label"]) == {"short"}
    row = dataset.labels.iloc[0]
    assert (row.x1, row.y1, row.x2, row.y2) == (5.0, 6.0, 15.0, 18.0)


def test_a_corrupt_listed_image_is_recorded_not_fatal(tmp_path):
    src = tmp_path / "coco"
    _write_png(src / "images" / "good.png")
    (src / "images" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (src / "annotations.json").write_text(json.dumps(_coco(
        [{"id": 1, "file_name": "good.png", "width": 60, "height": 40},
         {"id": 2, "file_name": "bad.png", "width": 60, "height": 40}],
        [{"id": 1, "image_id": 2, "category_id": 1, "bbox": [1, 1, 5, 5]}])))
    import_labelled("coco", src, tmp_path / "ds", CurateParams(workers=1))
    samples = load(tmp_path / "ds").samples.set_index("path")
    assert samples.loc["bad.png", "status"] == "corrupt"
    assert samples.loc["good.png", "status"] == "ok"


def test_a_labelled_image_is_kept_before_its_unlabelled_copies(tmp_path, rng):
    """A lossless copy that sorts first (and wins every other keeper rule) must not make
    the annotated image a duplicate: the boxes belong to the annotated one."""
    src = tmp_path / "deeppcb"
    write_deeppcb_layout(src, {"group10": 2}, rng)
    tested = src / "group10" / "10" / "10000_test.jpg"
    copies = src / "aaa-copies"
    copies.mkdir()
    cv2.imwrite(str(copies / "first.png"), cv2.imread(str(tested)))  # lossless, more rank
    (copies / "second.jpg").write_bytes(tested.read_bytes())
    import_deeppcb(src, tmp_path / "ds", CurateParams(workers=1))
    samples = load(tmp_path / "ds").samples.set_index("path")
    assert samples.loc["group10/10/10000_test.jpg", "status"] == "ok"
    for copy in ("aaa-copies/first.png", "aaa-copies/second.jpg"):
        assert samples.loc[copy, "status"] == "duplicate"
        assert samples.loc[copy, "duplicate_of"] == "group10/10/10000_test.jpg"


def _cli_import(*args: str):
    return CliRunner().invoke(app, ["import", *args, "--workers", "1"])


@pytest.mark.parametrize(("fmt", "breakage", "message"), [
    ("yolo", "delete_label", r"label file of .*img1\.png not found"),
    ("yolo", "class_9", r"\.txt:1: class index 9 out of range"),
    ("yolo", "outside", r"\.txt:1: box .* is outside the 60x40 image"),
    ("voc", "delete_label", r"label file of .*img1\.png not found"),
    ("voc", "outside", r"img1\.xml: object 1 .* is outside the 60x40 image"),
    ("coco", "outside", r"annotation id 1 .* is outside the 60x40 image"),
    ("coco", "class_9", r"annotation id 1: unknown category_id 9"),
    ("coco", "same_id", r"duplicate sample id 'same'"),
])
def test_import_errors_name_the_file(fmt, breakage, message, tmp_path):
    root = tmp_path / "src"
    for n in (1, 2):
        _write_png(root / f"img{n}.png", value=n)
    samples = pd.DataFrame({"sample_id": ["a", "b"], "path": ["img1.png", "img2.png"],
                            "width": [60, 60], "height": [40, 40], "split": ["", ""],
                            "synthetic": [False, False]})
    labels = pd.DataFrame({"sample_id": ["a"], "label": ["open"], "x1": [10.0], "y1": [5.0],
                           "x2": [20.0], "y2": [15.0], "mask": [""], "synthetic": [False],
                           "params": [""]})
    out = tmp_path / fmt
    if fmt == "yolo":
        save_yolo(samples, labels, ["open"], root, out)
        txt = out / "labels" / "train" / "img1.txt"
        if breakage == "delete_label":
            txt.unlink()
        else:
            txt.write_text("9 0.5 0.5 0.1 0.1\n" if breakage == "class_9" else
                           "0 0.95 0.5 0.2 0.2\n")
    elif fmt == "voc":
        save_voc(samples, labels, ["open"], root, out)
        xml = out / "Annotations" / "img1.xml"
        if breakage == "delete_label":
            xml.unlink()
        else:
            xml.write_text(xml.read_text().replace("<xmax>20</xmax>", "<xmax>61</xmax>"))
    else:
        json_path = save_coco(samples, labels, ["open"], root, out)
        data = json.loads(json_path.read_text())
        if breakage == "outside":
            data["annotations"][0]["bbox"] = [50, 5, 20, 10]
        elif breakage == "class_9":
            data["annotations"][0]["category_id"] = 9
        else:
            for image in data["images"]:
                image["pcbforge"]["sample_id"] = "same"
        json_path.write_text(json.dumps(data))
    run = _cli_import(fmt, str(out), "--out", str(tmp_path / "ds"))
    assert run.exit_code == 2, run.output
    assert re.search(message, run.output), run.output
    assert not (tmp_path / "ds").exists()  # checked before any work is written
    if breakage == "delete_label":
        allowed = _cli_import(fmt, str(out), "--out", str(tmp_path / "ds"),
                              "--allow-missing-labels")
        assert allowed.exit_code == 0, allowed.output
        assert len(load(tmp_path / "ds").samples) == 2


def test_unknown_format_and_missing_files(tmp_path):
    unknown = _cli_import("tfrecord", str(tmp_path), "--out", str(tmp_path / "ds"))
    assert unknown.exit_code == 2 and "No such command 'tfrecord'" in unknown.output
    empty = tmp_path / "empty"
    empty.mkdir()
    for fmt, what in (("coco", "no COCO annotations JSON"), ("yolo", "data.yaml: not found"),
                      ("voc", "no Annotations/")):
        run = _cli_import(fmt, str(empty), "--out", str(tmp_path / "ds"))
        assert run.exit_code == 2 and what in run.output, run.output
    with pytest.raises(ValueError, match="unknown format 'tfrecord'"):
        read_labelled("tfrecord", empty)


def test_deeppcb_label_problems_hold_the_image_back(tmp_path):
    src = tmp_path / "deeppcb"
    write_deeppcb_layout(src, {"group00003": 3}, np.random.default_rng(6))
    (src / "group00003" / "00003_not" / "00003000.txt").write_text("12 30 40 oops 2\n")
    (src / "group00003" / "00003_not" / "00003001.txt").unlink()
    (src / "group00003" / "00003_not" / "00003002.txt").write_text("100 100 170 120 3\n")
    result = import_deeppcb(src, tmp_path / "ds", CurateParams(workers=1))
    samples = load(tmp_path / "ds").samples.set_index("path")
    reasons = samples.loc[[f"group00003/00003/0000300{n}_test.jpg" for n in range(3)], "reason"]
    assert reasons.tolist() == ["bad_label_line", "missing_label_file", "box_outside"]
    assert (samples.loc[reasons.index, "status"] == "skipped").all()
    problems = [str(p) for p in result.problems]
    assert any(p.startswith("group00003/00003_not/00003000.txt:1: not integers") for p in problems)
    assert any(p.startswith("group00003/00003_not/00003002.txt:1: box (100, 100, 170, 120) is "
                            "outside") for p in problems)


@pytest.mark.parametrize("fmt", ["coco", "yolo", "voc"])
def test_export_finds_images_whose_names_are_not_utf8(fmt, curated, tmp_path):
    """The samples table spells such a name with ``\\xNN`` escapes; the export reads the
    file by its real name (as ``Dataset.image_path`` does)."""
    odd = curated.samples[curated.samples["path"].str.contains("\\x", regex=False)
                          & (curated.samples["status"] == "ok")]
    assert len(odd) == 1
    report = export_dataset(curated.out, fmt, tmp_path / fmt)
    assert sum(part["images"] for part in report["splits"].values()) == int(
        (curated.samples["status"] == "ok").sum())
