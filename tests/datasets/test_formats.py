"""COCO, YOLO and VOC export/import: lossless round trips, clear errors, FiftyOne reads them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from pcbforge.datasets.coco import load_coco, save_coco
from pcbforge.datasets.formats_common import flat_file_names
from pcbforge.datasets.masks import decode_mask, encode_mask
from pcbforge.datasets.voc import load_voc, save_voc
from pcbforge.datasets.yolo import load_yolo, save_yolo

CLASSES = ["open", "short", "spur"]
BOX = ["x1", "y1", "x2", "y2"]


@pytest.fixture
def tiny(tmp_path) -> tuple[pd.DataFrame, pd.DataFrame, Path]:
    """Three images (nested and flat paths, PNG and JPEG), one without boxes, one mask."""
    rng = np.random.default_rng(0)
    root = tmp_path / "src"
    shapes = {"a/b/img1.png": (48, 64), "img2.jpg": (80, 80), "c/empty.png": (48, 64)}
    for path, (height, width) in shapes.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(root / path), rng.integers(0, 256, (height, width, 3), np.uint8))
    samples = pd.DataFrame({
        "sample_id": ["s1", "s2", "s3"], "path": list(shapes),
        "width": [w for _, w in shapes.values()], "height": [h for h, _ in shapes.values()],
        "split": ["train", "train", "train"], "synthetic": [False, True, False],
    })
    disc = np.zeros((48, 64), np.uint8)
    cv2.circle(disc, (20, 12), 6, 1, -1)  # inside the first box (10, 5, 30, 20)
    labels = pd.DataFrame({
        "sample_id": ["s1", "s1", "s2", "s2"],
        "label": ["open", "short", "spur", "open"],
        "x1": [10.0, 10.5, 0.0, 12.0], "y1": [5.0, 7.25, 0.0, 14.0],
        "x2": [30.0, 40.75, 80.0, 50.0], "y2": [20.0, 33.5, 80.0, 60.0],
        "mask": [encode_mask(disc.astype(bool)), "", "", ""],
        "synthetic": [False, True, True, False],
        "params": ["", '{"seed": 3, "kind": "short"}', '{"seed": 4}', ""],
    })
    return samples, labels, root


def _save_load(fmt: str, samples, labels, root: Path, out: Path):
    if fmt == "coco":
        json_path = save_coco(samples, labels, CLASSES, root, out)
        return load_coco(json_path, images_dir=out / "images")
    if fmt == "yolo":
        save_yolo(samples, labels, CLASSES, root, out, split="train")
        return load_yolo(out, split="train")
    save_voc(samples, labels, CLASSES, root, out)
    return load_voc(out)


def _sorted(labels: pd.DataFrame) -> pd.DataFrame:
    return labels.sort_values(["sample_id", "label", "x1"]).reset_index(drop=True)


@pytest.mark.parametrize("fmt", ["coco", "yolo", "voc"], ids=["coco", "yolo", "voc"])
def test_round_trip(fmt, tiny, tmp_path):
    samples, labels, root = tiny
    got_samples, got_labels, got_classes = _save_load(fmt, samples, labels, root, tmp_path / fmt)

    assert got_classes == CLASSES
    assert set(got_samples["path"]) == set(samples["path"])
    assert set(got_samples["sample_id"]) == set(samples["sample_id"])
    by_id = got_samples.set_index("sample_id")
    for sample in samples.itertuples():
        assert (by_id.at[sample.sample_id, "width"], by_id.at[sample.sample_id, "height"]) == (
            sample.width, sample.height)
        assert by_id.at[sample.sample_id, "path"] == sample.path
        assert bool(by_id.at[sample.sample_id, "synthetic"]) == sample.synthetic
    assert "s3" in set(got_samples["sample_id"]) and not (got_labels["sample_id"] == "s3").any()

    assert list(got_labels.columns) == list(labels.columns)
    expected, got = _sorted(labels), _sorted(got_labels)
    assert len(got) == len(expected)
    assert list(got["sample_id"]) == list(expected["sample_id"])
    assert list(got["label"]) == list(expected["label"])
    np.testing.assert_allclose(got[BOX].to_numpy(float), expected[BOX].to_numpy(float),
                               rtol=0, atol=1e-6)
    assert list(got["synthetic"]) == list(expected["synthetic"])
    assert list(got["params"]) == list(expected["params"])
    assert list(got["mask"]) == list(expected["mask"])  # masks survive every format


def test_yolo_files_follow_the_ultralytics_layout(tiny, tmp_path):
    samples, labels, root = tiny
    out = save_yolo(samples, labels, CLASSES, root, tmp_path / "yolo")
    import yaml

    config = yaml.safe_load((out / "data.yaml").read_text())
    assert config["train"] == "./images/train/"
    assert config["names"] == {0: "open", 1: "short", 2: "spur"} and config["nc"] == 3
    assert sorted(p.name for p in (out / "images" / "train").iterdir()) == [
        "a__b__img1.png", "c__empty.png", "img2.jpg"]
    assert (out / "labels" / "train" / "c__empty.txt").read_text() == ""
    first = (out / "labels" / "train" / "a__b__img1.txt").read_text().splitlines()[0]
    assert first == "0 0.31250000 0.26041667 0.31250000 0.31250000"
    # Without the side file the boxes still load, to the 8-decimal precision, without extras.
    (out / "pcbforge_samples.json").unlink()
    got_samples, got_labels, _ = load_yolo(out)
    assert set(got_samples["path"]) == {"a__b__img1.png", "c__empty.png", "img2.jpg"}
    assert len(got_labels) == 4 and not got_labels["synthetic"].any()
    assert got_labels[BOX].to_numpy(float).min() >= -1e-6


def test_flat_file_names_are_unique():
    names = flat_file_names(["a/b.png", "a__b.png", "A/B.jpg", "c.png"])
    assert names == ["a__b.png", "a__b-1.png", "A__B-2.jpg", "c.png"]


def test_voc_writes_one_based_inclusive_corners(tiny, tmp_path):
    samples, labels, root = tiny
    out = save_voc(samples, labels, CLASSES, root, tmp_path / "voc")
    text = (out / "Annotations" / "a__b__img1.xml").read_text()
    assert "<xmin>11</xmin>" in text and "<xmax>30</xmax>" in text  # box x1=10, x2=30
    assert "<xmin>11.5</xmin>" in text and "<xmax>40.75</xmax>" in text
    assert (out / "labels.txt").read_text().splitlines() == CLASSES


def test_yolo_unknown_class_names_file_and_line(tiny, tmp_path):
    samples, labels, root = tiny
    out = save_yolo(samples, labels, CLASSES, root, tmp_path / "yolo")
    txt = out / "labels" / "train" / "img2.txt"
    txt.write_text(txt.read_text() + "7 0.5 0.5 0.1 0.1\n")
    with pytest.raises(ValueError, match=r"img2\.txt:3: class index 7 out of range"):
        load_yolo(out)
    txt.write_text("0 0.5 0.5\n")
    with pytest.raises(ValueError, match=r"img2\.txt:1: expected"):
        load_yolo(out)


def test_coco_unknown_category_names_annotation(tiny, tmp_path):
    samples, labels, root = tiny
    json_path = save_coco(samples, labels, CLASSES, root, tmp_path / "coco")
    data = json.loads(json_path.read_text())
    data["annotations"][2]["category_id"] = 99
    json_path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"annotation id 3: unknown category_id 99"):
        load_coco(json_path)


def test_coco_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="annotations.json"):
        load_coco(tmp_path / "annotations.json")


def test_unknown_label_is_refused_on_save(tiny, tmp_path):
    samples, labels, root = tiny
    with pytest.raises(ValueError, match="'open'"):
        save_yolo(samples, labels, ["short", "spur"], root, tmp_path / "yolo")


def test_missing_image_names_path(tiny, tmp_path):
    samples, labels, root = tiny
    (root / "img2.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="img2.jpg"):
        save_voc(samples, labels, CLASSES, root, tmp_path / "voc")


@pytest.fixture(scope="module")
def fo(fiftyone_db):
    """FiftyOne on a throwaway database (see ``fiftyone_db`` in conftest.py)."""
    return fiftyone_db


def _detections(sample, fo) -> list:
    """The detections of whichever field the importer used (names differ by importer)."""
    for _, value in sample.iter_fields():
        if isinstance(value, fo.Detections):
            return value.detections
    return []


def _fiftyone_boxes(dataset, fo, path_of) -> dict[str, list[tuple]]:
    boxes = {}
    for sample in dataset:
        width, height = sample.metadata.width, sample.metadata.height
        boxes[path_of(sample.filepath)] = sorted(
            (d.label, *(np.array(d.bounding_box) * [width, height, width, height]))
            for d in _detections(sample, fo)
        )
    return boxes


def _our_boxes(samples: pd.DataFrame, labels: pd.DataFrame) -> dict[str, list[tuple]]:
    paths = dict(zip(samples["sample_id"], samples["path"], strict=True))
    boxes: dict[str, list[tuple]] = {path: [] for path in paths.values()}
    for box in labels.itertuples():
        boxes[paths[box.sample_id]].append((box.label, box.x1, box.y1, box.x2 - box.x1,
                                            box.y2 - box.y1))
    return {path: sorted(items) for path, items in boxes.items()}


def _assert_same(theirs: dict, ours: dict) -> None:
    assert set(theirs) == set(ours)
    for path, items in ours.items():
        assert [t[0] for t in theirs[path]] == [o[0] for o in items], path
        np.testing.assert_allclose(np.array([t[1:] for t in theirs[path]], float).reshape(-1, 4),
                                   np.array([o[1:] for o in items], float).reshape(-1, 4),
                                   rtol=0, atol=1e-6, err_msg=path)


def test_fiftyone_reads_yolo_and_coco_exports(fo, tiny, tmp_path):
    samples, labels, root = tiny
    yolo_dir = save_yolo(samples, labels, CLASSES, root, tmp_path / "yolo")
    coco_json = save_coco(samples, labels, CLASSES, root, tmp_path / "coco")
    yolo_samples, yolo_labels, _ = load_yolo(yolo_dir)
    coco_samples, coco_labels, _ = load_coco(coco_json)
    flat_to_path = dict(zip(flat_file_names(samples["path"]), samples["path"], strict=True))

    datasets = []
    try:
        yolo = fo.Dataset.from_dir(dataset_dir=str(yolo_dir), dataset_type=fo.types.YOLOv5Dataset,
                                   split="train")
        datasets.append(yolo)
        yolo.compute_metadata()
        assert yolo.default_classes == CLASSES or yolo.info.get("classes") == CLASSES
        _assert_same(_fiftyone_boxes(yolo, fo, lambda p: flat_to_path[Path(p).name]),
                     _our_boxes(yolo_samples, yolo_labels))

        images = tmp_path / "coco" / "images"
        coco = fo.Dataset.from_dir(dataset_type=fo.types.COCODetectionDataset,
                                   data_path=str(images), labels_path=str(coco_json))
        datasets.append(coco)
        coco.compute_metadata()
        _assert_same(_fiftyone_boxes(coco, fo, lambda p: Path(p).relative_to(images).as_posix()),
                     _our_boxes(coco_samples, coco_labels))
    finally:
        for dataset in datasets:
            dataset.delete()


def test_yolo_splits_accumulate_in_one_folder(tiny, tmp_path):
    samples, labels, root = tiny
    out = tmp_path / "yolo"
    save_yolo(samples.iloc[:2], labels, CLASSES, root, out, split="train")
    save_yolo(samples.iloc[2:], labels, CLASSES, root, out, split="val")
    train, train_labels, _ = load_yolo(out, "train")
    val, val_labels, _ = load_yolo(out, "val")
    assert set(train["sample_id"]) == {"s1", "s2"} and len(train_labels) == 4
    assert list(val["sample_id"]) == ["s3"] and val_labels.empty
    assert set(val["split"]) == {"val"}
    with pytest.raises(ValueError, match="has classes"):
        save_yolo(samples.iloc[2:], labels, [*CLASSES, "mousebite"], root, out, split="test")


def test_yolo_split_keys_become_pcbforge_splits(tiny, tmp_path):
    """Roboflow names the validation split ``valid``; a labelling batch or a hold-out may
    have a key of its own, which is no split of pcbforge's (and must still load)."""
    samples, labels, root = tiny
    out = tmp_path / "yolo"
    save_yolo(samples.iloc[:2], labels, CLASSES, root, out, split="valid")
    save_yolo(samples.iloc[2:], labels, CLASSES, root, out, split="batch")
    assert set(load_yolo(out, "valid")[0]["split"]) == {"val"}
    assert set(load_yolo(out, "batch")[0]["split"]) == {""}


def test_coco_export_writes_the_mask_as_rle_segmentation(tiny, tmp_path):
    samples, labels, root = tiny
    data = json.loads(save_coco(samples, labels, CLASSES, root, tmp_path / "coco").read_text())
    first = data["annotations"][0]
    assert set(first["segmentation"]) == {"size", "counts"}
    assert first["segmentation"]["size"] == [48, 64]
    assert first["area"] == decode_mask(labels["mask"][0]).sum()
    assert "segmentation" not in data["annotations"][1]


def test_coco_polygons_are_read_as_masks(tmp_path):
    image = tmp_path / "images" / "a.png"
    image.parent.mkdir()
    cv2.imwrite(str(image), np.zeros((20, 30, 3), np.uint8))
    # Corners in continuous coordinates: pycocotools fills pixels 2..11 x 3..8 (10 x 6), as
    # the box (2, 3, 12, 9) with exclusive ends covers.
    square = [[2, 3, 12, 3, 12, 9, 2, 9]]
    (tmp_path / "annotations.json").write_text(json.dumps({
        "images": [{"id": 7, "file_name": "a.png", "width": 30, "height": 20}],
        "annotations": [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [2, 3, 10, 6],
                         "segmentation": square}],
        "categories": [{"id": 1, "name": "short"}],
    }))
    samples, labels, _ = load_coco(tmp_path / "annotations.json", tmp_path / "images")
    mask = decode_mask(labels["mask"][0])
    assert mask.shape == (20, 30) and mask.sum() == 10 * 6 and mask[3:9, 2:12].all()
    assert samples["sample_id"][0] == "coco-7" and not samples["id_given"][0]


# --- Messages that say what arrived and what was expected (issue 25, failure 8) ----------------


def _coco_file(tmp_path: Path, **changes) -> Path:
    """A one-image COCO file with one box; ``changes`` replace its top-level keys."""
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((20, 30, 3), np.uint8))
    payload = {
        "images": [{"id": 1, "file_name": "a.png", "width": 30, "height": 20}],
        "annotations": [{"id": 5, "image_id": 1, "category_id": 1, "bbox": [2, 3, 10, 6]}],
        "categories": [{"id": 1, "name": "short"}],
    }
    payload.update(changes)
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({k: v for k, v in payload.items() if v is not None}))
    return path


def test_coco_without_annotations_is_an_error_naming_the_file(tmp_path):
    path = _coco_file(tmp_path, annotations=None)
    with pytest.raises(ValueError, match=r"instances\.json: expected an 'annotations' list, got "
                                         r"no 'annotations' key \(without it every image would "
                                         r"read as defect-free"):
        load_coco(path)


def test_coco_with_an_empty_annotations_list_has_images_without_defects(tmp_path):
    samples, labels, classes = load_coco(_coco_file(tmp_path, annotations=[]))
    assert len(samples) == 1 and labels.empty and classes == ["short"]


COCO_IMAGE = {"id": 1, "file_name": "a.png", "width": 30, "height": 20}
COCO_BOX = {"id": 5, "image_id": 1, "category_id": 1, "bbox": [2, 3, 10, 6]}


@pytest.mark.parametrize(("changes", "expected"), [
    ({"annotations": {"a": 1}}, r"expected an 'annotations' list, got 'annotations' as a JSON "
                                r"dict"),
    ({"images": [5]}, r"images\[0\]: expected an object with 'id' and 'file_name', got 5"),
    ({"images": [{**COCO_IMAGE, "id": [1]}]}, r"images\[0\]: expected an integer 'id', got \[1\]"),
    ({"images": [{**COCO_IMAGE, "file_name": ""}]},
     r"images\[0\] \(id 1\): expected a 'file_name', got ''"),
    ({"images": [{**COCO_IMAGE, "width": "abc"}]},
     r"images\[0\] \(id 1\): expected a positive integer width and height, got 'abc' and 20"),
    ({"images": [{**COCO_IMAGE, "height": -20}]},
     r"images\[0\] \(id 1\): expected a positive integer width and height, got 30 and -20"),
    ({"images": [COCO_IMAGE, {**COCO_IMAGE}]},
     r"images\[1\]: image id 1 appears twice \(image ids must be unique\)"),
    ({"categories": [{"id": 1}]},
     r"categories\[0\] must be an object with an integer 'id' and a 'name', got \{'id': 1\}"),
    ({"categories": [{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]},
     r"categories\[1\]: category id 1 appears twice"),
    ({"annotations": ["box"]},
     r"annotations\[0\]: expected an object with image_id, category_id and bbox, got 'box'"),
    ({"annotations": [{k: v for k, v in COCO_BOX.items() if k != "bbox"}]},
     r"annotation id 5: has no 'bbox' \(expected \[x, y, width, height\]\)"),
    ({"annotations": [{**COCO_BOX, "bbox": "2310"}]},
     r"annotation id 5: bbox must be 4 numbers \[x, y, width, height\], got '2310'"),
    ({"annotations": [{**COCO_BOX, "bbox": [2, 3, 10]}]},
     r"annotation id 5: bbox must be 4 numbers \[x, y, width, height\], got "
     r"\[2, 3, 10\]"),
    ({"annotations": [{**COCO_BOX, "bbox": [2, 3, 0, 6]}]},
     r"annotation id 5: bbox \[2, 3, 0, 6\] is empty \(expected width > 0 and "
     r"height > 0\)"),
    ({"annotations": [{**COCO_BOX, "image_id": 9}]},
     r"annotation id 5: image_id 9 is not the id of an entry of 'images'"),
    ({"annotations": [{**COCO_BOX, "image_id": [1]}]},
     r"annotation id 5: image_id \[1\] is not the id of an entry of 'images'"),
], ids=["annotations-dict", "image-not-object", "image-id-list", "empty-file-name",
        "width-text", "height-negative", "image-id-twice", "category-without-name",
        "category-id-twice", "annotation-not-object", "no-bbox", "bbox-text", "bbox-3",
        "bbox-empty", "unknown-image", "image-id-list-in-annotation"])
def test_coco_messages_say_what_arrived(changes, expected, tmp_path):
    path = _coco_file(tmp_path, **changes)
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: {expected}"):
        load_coco(path)


def test_coco_first_image_without_file_name_is_named_as_such(tmp_path):
    path = _coco_file(tmp_path, images=[{"id": 1, "width": 30, "height": 20}])
    with pytest.raises(ValueError, match=r"instances\.json: images\[0\] has no 'file_name' "
                                         r"\(got \{'id': 1"):
        load_coco(path, images_dir=[tmp_path / "images", tmp_path])


def test_coco_image_in_none_of_the_folders_names_entry_and_folders(tmp_path):
    path = _coco_file(tmp_path, images=[{**COCO_IMAGE, "file_name": "gone.png"}])
    with pytest.raises(FileNotFoundError, match=r"images\[0\] file_name 'gone\.png' is in none "
                                                r"of .*; pass --images FOLDER"):
        load_coco(path, images_dir=[tmp_path / "images", tmp_path])


def test_coco_template_file_name_is_read_beside_file_name(tmp_path):
    cv2.imwrite(str(tmp_path / "t.png"), np.zeros((20, 30, 3), np.uint8))
    image = {**COCO_IMAGE, "template_file_name": "t.png",
             "pcbforge": {"sample_id": "s1", "template_sample_id": "s0"}}
    samples, _, _ = load_coco(_coco_file(tmp_path, images=[image]), images_dir=tmp_path)
    row = samples.iloc[0]
    assert (row.template_path, row.template_file, row.template_id) == (
        "t.png", str(tmp_path / "t.png"), "s0")
    plain, _, _ = load_coco(_coco_file(tmp_path), images_dir=tmp_path)
    assert (plain.iloc[0][["template_path", "template_file", "template_id"]] == "").all()


@pytest.mark.parametrize(("name", "error", "message"), [
    ("gone.png", FileNotFoundError, r"images\[0\] \(id 1\): template 'gone\.png' not found"),
    ("../t.png", ValueError, r"images\[0\] \(id 1\) template_file_name: .*outside"),
    ("", ValueError, r"template_file_name must name a file, got ''"),
], ids=["missing", "outside", "empty"])
def test_coco_bad_template_file_name_names_the_entry(name, error, message, tmp_path):
    (tmp_path / "in").mkdir()
    path = _coco_file(tmp_path / "in", images=[{**COCO_IMAGE, "template_file_name": name}])
    cv2.imwrite(str(tmp_path / "t.png"), np.zeros((20, 30, 3), np.uint8))
    with pytest.raises(error, match=message):
        load_coco(path, images_dir=tmp_path / "in")


def test_coco_bad_json_names_the_line(tmp_path):
    path = tmp_path / "instances.json"
    path.write_text('{\n  "images": [\n  oops\n]}\n')
    with pytest.raises(ValueError, match=r"instances\.json:3: not valid JSON"):
        load_coco(path)


def test_coco_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "instances.json"
    path.write_bytes(b'{"images": [],\n "info": "caf\xe9"}')
    with pytest.raises(ValueError, match=r"instances\.json:2: COCO annotations file is not "
                                         r"UTF-8 text \(byte 0xe9"):
        load_coco(path)


def test_voc_missing_bndbox_corner_is_named(tiny, tmp_path):
    samples, labels, root = tiny
    out = save_voc(samples, labels, CLASSES, root, tmp_path / "voc")
    xml = out / "Annotations" / "img2.xml"
    xml.write_text(re.sub(r"<xmax>[^<]*</xmax>", "", xml.read_text(), count=1))
    with pytest.raises(ValueError, match=r"img2\.xml: object 1: has no <bndbox><xmax> "
                                         r"\(expected xmin, ymin, xmax and ymax\)"):
        load_voc(out)


def test_empty_box_says_which_corners(tiny, tmp_path):
    samples, labels, root = tiny
    out = save_voc(samples, labels, CLASSES, root, tmp_path / "voc")
    xml = out / "Annotations" / "img2.xml"
    xml.write_text(re.sub(r"<xmax>[^<]*</xmax>", "<xmax>0</xmax>", xml.read_text(), count=1))
    with pytest.raises(ValueError, match=r"img2\.xml: object 1 \(img2\.jpg\): box \(x1=0, "
                                         r"y1=0, x2=0, y2=80\) is empty \(expected x2 > x1"):
        load_voc(out)


def test_yolo_names_keys_that_are_not_indices_are_shown(tiny, tmp_path):
    samples, labels, root = tiny
    out = save_yolo(samples, labels, CLASSES, root, tmp_path / "yolo")
    (out / "data.yaml").write_text("names:\n  a: open\ntrain: ./images/train/\n")
    with pytest.raises(ValueError, match=r"data\.yaml: names keys must be class indices 0, 1, "
                                         r"\.\.\., got \['a'\]"):
        load_yolo(out)
