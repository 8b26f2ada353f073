"""Label files may only name images inside their dataset (issue 25, failure 4), and label
files are read only when they are regular files of a sane size (a FIFO never hangs)."""

from __future__ import annotations

import json
import os
import signal
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pcbforge.core.files import PathOutsideRootError
from pcbforge.datasets.coco import load_coco
from pcbforge.datasets.deeppcb import read_deeppcb
from pcbforge.datasets.voc import load_voc
from pcbforge.datasets.yolo import load_yolo
from tests.conftest import write_deeppcb_layout

OUTSIDE_HOW = {"dotdot": "climbs out with '..'", "absolute": "is absolute",
               "link": "leads out through a link"}


@contextmanager
def within(seconds: int):
    """Fail instead of hanging (the old readers opened a FIFO and waited for a writer)."""
    def expire(signum, frame):
        raise TimeoutError(f"still reading after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _image(path: Path, size: int = 32) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((size, size, 3), 90, np.uint8))
    return path


@pytest.fixture
def secret(tmp_path) -> Path:
    """An image the user can read that belongs to no dataset."""
    return _image(tmp_path / "secret" / "outside.jpg")


def _outside_name(how: str, inside: Path, secret: Path) -> str:
    """A name that, relative to ``inside``, leads to ``secret`` in the way ``how`` says."""
    if how == "absolute":
        return str(secret)
    if how == "dotdot":
        return os.path.relpath(secret, inside)
    inside.mkdir(parents=True, exist_ok=True)
    (inside / "link.jpg").symlink_to(secret)
    return "link.jpg"


# --- COCO -------------------------------------------------------------------------------------


def _coco(ds: Path, file_names: list[str], **extra) -> Path:
    _image(ds / "images" / "a.jpg")
    payload = {
        "images": [{"id": i, "file_name": name, "width": 32, "height": 32}
                   for i, name in enumerate(file_names, start=1)],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 5, 5]}],
        "categories": [{"id": 1, "name": "open"}],
    }
    payload.update(extra)
    json_path = ds / "instances.json"
    json_path.write_text(json.dumps(payload))
    return json_path


@pytest.mark.parametrize("how", list(OUTSIDE_HOW))
def test_coco_file_name_outside_the_images_folder_is_refused(how, tmp_path, secret):
    ds = tmp_path / "ds"
    name = _outside_name(how, ds / "images", secret)
    json_path = _coco(ds, ["a.jpg", name])
    # As the importer calls it (candidate folders) and as a library user would (one folder).
    for images_dir in ([ds / "images", ds / "data", ds], ds / "images"):
        with pytest.raises(PathOutsideRootError) as caught:
            load_coco(json_path, images_dir=images_dir)
        message = str(caught.value)
        assert message.startswith(f"{json_path}: images[1] (id 2) file_name: "), message
        assert repr(name) in message and OUTSIDE_HOW[how] in message
        assert "--allow-outside-root" in message


def test_coco_outside_is_refused_without_an_images_folder(tmp_path):
    json_path = _coco(tmp_path / "ds", ["a.jpg", "../../secret/outside.jpg"])
    with pytest.raises(PathOutsideRootError, match=r"images\[1\] \(id 2\) file_name"):
        load_coco(json_path)


@pytest.mark.parametrize("how", list(OUTSIDE_HOW))
def test_coco_outside_is_accepted_when_asked(how, tmp_path, secret):
    ds = tmp_path / "ds"
    name = _outside_name(how, ds / "images", secret)
    samples, labels, _ = load_coco(_coco(ds, ["a.jpg", name]), images_dir=ds / "images",
                                   allow_outside=True)
    assert Path(samples["file"].iloc[1]).resolve() == secret.resolve()
    assert len(labels) == 1


def test_coco_link_that_stays_inside_is_fine(tmp_path):
    ds = tmp_path / "ds"
    _image(ds / "images" / "real" / "b.jpg")
    (ds / "images" / "alias.jpg").symlink_to(ds / "images" / "real" / "b.jpg")
    samples, _, _ = load_coco(_coco(ds, ["a.jpg", "alias.jpg", "real/../real/b.jpg"]),
                              images_dir=ds / "images")
    assert len(samples) == 3


# --- YOLO -------------------------------------------------------------------------------------


def _yolo(ds: Path, train: str = "./images/train/") -> Path:
    _image(ds / "images" / "train" / "a.jpg")
    (ds / "labels" / "train").mkdir(parents=True, exist_ok=True)
    (ds / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.25 0.25\n")
    (ds / "data.yaml").write_text(f"names:\n  0: open\nnc: 1\ntrain: {train}\n")
    return ds


@pytest.mark.parametrize("how", ["dotdot", "absolute"])
def test_yolo_split_folder_outside_the_dataset_is_refused(how, tmp_path):
    elsewhere = tmp_path / "elsewhere" / "images" / "train"
    _yolo(tmp_path / "elsewhere")
    ds = tmp_path / "ds"
    ds.mkdir()
    name = str(elsewhere) if how == "absolute" else "../elsewhere/images/train"
    _yolo(ds, train=name)
    with pytest.raises(PathOutsideRootError) as caught:
        load_yolo(ds, "train")
    message = str(caught.value)
    # data.yaml is "names:", "  0: open", "nc: 1", "train: ...": the split is on line 4.
    assert message.startswith(f"{ds / 'data.yaml'}:4: split 'train': "), message
    assert OUTSIDE_HOW[how] in message
    samples, labels, _ = load_yolo(ds, "train", allow_outside=True)
    assert len(samples) == 1 and len(labels) == 1


def test_yolo_image_link_leading_out_is_refused(tmp_path, secret):
    ds = _yolo(tmp_path / "ds")
    (ds / "images" / "train" / "b.jpg").symlink_to(secret)
    (ds / "labels" / "train" / "b.txt").write_text("")
    with pytest.raises(PathOutsideRootError, match=r"b\.jpg: image path 'images/train/b\.jpg' "
                                                   r"leads out through a link"):
        load_yolo(ds, "train")
    samples, _, _ = load_yolo(ds, "train", allow_outside=True)
    assert sorted(Path(f).name for f in samples["file"]) == ["a.jpg", "b.jpg"]


def test_yolo_link_inside_the_dataset_is_fine(tmp_path):
    ds = _yolo(tmp_path / "ds")
    _image(ds / "originals" / "b.jpg")
    (ds / "images" / "train" / "b.jpg").symlink_to(ds / "originals" / "b.jpg")
    (ds / "labels" / "train" / "b.txt").write_text("")
    samples, _, _ = load_yolo(ds, "train")
    assert len(samples) == 2


# --- VOC --------------------------------------------------------------------------------------


def _voc_xml(filename: str, with_box: bool = True) -> str:
    box = ("<object><name>open</name><bndbox><xmin>3</xmin><ymin>3</ymin><xmax>8</xmax>"
           "<ymax>8</ymax></bndbox></object>") if with_box else ""
    return (f"<annotation>\n  <folder>JPEGImages</folder>\n  <filename>{filename}</filename>\n"
            f"  <size><width>32</width><height>32</height><depth>3</depth></size>\n"
            f"  {box}\n</annotation>\n")


def _voc(ds: Path, filename: str) -> Path:
    _image(ds / "JPEGImages" / "a.jpg")
    (ds / "Annotations").mkdir(parents=True, exist_ok=True)
    (ds / "Annotations" / "a.xml").write_text(_voc_xml("a.jpg"))
    (ds / "Annotations" / "b.xml").write_text(_voc_xml(filename))
    return ds


@pytest.mark.parametrize("how", list(OUTSIDE_HOW))
def test_voc_filename_outside_jpegimages_is_refused(how, tmp_path, secret):
    ds = tmp_path / "ds"
    name = _outside_name(how, ds / "JPEGImages", secret)
    _voc(ds, name)
    with pytest.raises(PathOutsideRootError) as caught:
        load_voc(ds)
    message = str(caught.value)
    assert message.startswith(f"{ds / 'Annotations' / 'b.xml'}:3: filename: "), message
    assert repr(name) in message and OUTSIDE_HOW[how] in message
    samples, labels, _ = load_voc(ds, allow_outside=True)
    files = {Path(f).resolve() for f in samples["file"]}
    assert secret.resolve() in files and len(labels) == 2


def test_voc_unlabelled_image_link_leading_out_is_refused(tmp_path, secret):
    ds = _voc(tmp_path / "ds", "a.jpg")
    (ds / "Annotations" / "b.xml").unlink()
    (ds / "JPEGImages" / "c.jpg").symlink_to(secret)
    with pytest.raises(PathOutsideRootError, match=r"c\.jpg: image path 'c\.jpg' leads out"):
        load_voc(ds, missing_labels="empty")
    samples, _, _ = load_voc(ds, missing_labels="empty", allow_outside=True)
    assert len(samples) == 2


# --- DeepPCB ----------------------------------------------------------------------------------


def test_deeppcb_list_line_naming_a_path_outside_is_a_problem(tmp_path):
    root = tmp_path / "deeppcb"
    write_deeppcb_layout(root, {"group00001": 2}, np.random.default_rng(0))
    lines = (root / "trainval.txt").read_text().splitlines()
    lines[1] = "../../secret/00001001.jpg group00001/00001_not/00001001.txt"
    lines.append(f"group00001/00001/00001000.jpg {tmp_path}/secret/labels.txt")
    (root / "trainval.txt").write_text("\n".join(lines) + "\n")
    layout = read_deeppcb(root)
    found = [str(p) for p in layout.problems]
    assert any(p.startswith("trainval.txt:2: image path '../../secret/00001001.jpg' climbs "
                            "out with '..'") for p in found), found
    assert any(p.startswith("trainval.txt:3: annotation path") and "is absolute" in p
               for p in found), found
    assert "secret" not in "".join(layout.samples["listed_in"])
    allowed = read_deeppcb(root, allow_outside=True)
    assert allowed.problems == []


def test_deeppcb_image_link_leading_out_holds_the_image_back(tmp_path):
    root = tmp_path / "deeppcb"
    write_deeppcb_layout(root, {"group00001": 2}, np.random.default_rng(0))
    tested = root / "group00001" / "00001" / "00001001_test.jpg"
    secret = tmp_path / "secret.jpg"
    tested.rename(secret)
    tested.symlink_to(secret)
    layout = read_deeppcb(root)
    row = layout.samples.set_index("path").loc["group00001/00001/00001001_test.jpg"]
    assert row["label_problem"] == "outside_root"
    assert any(str(p).startswith("group00001/00001/00001001_test.jpg: image path") and
               "leads out through a link" in str(p) for p in layout.problems)
    assert not (layout.labels["path"] == "group00001/00001/00001001_test.jpg").any()
    allowed = read_deeppcb(root, allow_outside=True)
    assert allowed.problems == []
    assert (allowed.labels["path"] == "group00001/00001/00001001_test.jpg").sum() == 2


# --- Bounded reads of label files ---------------------------------------------------------------


def test_coco_fifo_is_refused_by_name(tmp_path):
    json_path = tmp_path / "instances.json"
    os.mkfifo(json_path)
    with within(10), pytest.raises(ValueError, match=r"instances\.json: a FIFO \(named pipe\)"):
        load_coco(json_path)


def test_voc_fifo_annotation_does_not_hang(tmp_path):
    ds = _voc(tmp_path / "ds", "a.jpg")
    (ds / "Annotations" / "b.xml").unlink()
    os.mkfifo(ds / "Annotations" / "b.xml")
    with within(10), pytest.raises(ValueError, match=r"b\.xml: a FIFO \(named pipe\)"):
        load_voc(ds)


@pytest.mark.parametrize("missing_labels", ["error", "empty"])
def test_yolo_label_file_that_is_a_device_is_refused_not_skipped(missing_labels, tmp_path):
    ds = _yolo(tmp_path / "ds")
    (ds / "labels" / "train" / "a.txt").unlink()
    (ds / "labels" / "train" / "a.txt").symlink_to("/dev/zero")
    with within(10), pytest.raises(ValueError, match=r"a\.txt: a character device"):
        load_yolo(ds, "train", missing_labels=missing_labels)


def test_yolo_label_file_above_the_cap_is_not_read(tmp_path):
    ds = _yolo(tmp_path / "ds")
    os.truncate(ds / "labels" / "train" / "a.txt", (16 << 20) + 1)  # sparse: nothing written
    with pytest.raises(ValueError, match=r"a\.txt: larger than the 16,777,216-byte limit for "
                                         r"a YOLO label file"):
        load_yolo(ds, "train")


def test_deeppcb_fifo_annotation_and_list_are_problems_not_hangs(tmp_path):
    root = tmp_path / "deeppcb"
    write_deeppcb_layout(root, {"group00001": 2}, np.random.default_rng(0))
    annotation = root / "group00001" / "00001_not" / "00001001.txt"
    annotation.unlink()
    os.mkfifo(annotation)
    (root / "trainval.txt").unlink()
    os.mkfifo(root / "trainval.txt")
    with within(10):
        layout = read_deeppcb(root)
    found = [str(p) for p in layout.problems]
    assert "group00001/00001_not/00001001.txt: a FIFO (named pipe), not a regular file (a " \
           "DeepPCB annotation file must be one); not read" in found, found
    assert any(p.startswith("trainval.txt: a FIFO") for p in found), found
    row = layout.samples.set_index("path").loc["group00001/00001/00001001_test.jpg"]
    assert row["label_problem"] == "unreadable_label_file"


# --- Through the CLI, as a new user would -------------------------------------------------------


def test_import_coco_cli_refuses_outside_paths_unless_asked(tmp_path, tmp_path_factory, secret):
    from pcbforge.cli.main import app

    ds = tmp_path / "ds"
    json_path = _coco(ds, ["a.jpg", "../../secret/outside.jpg"])
    # Not under tmp_path: accepted, the outside image widens the source to all of tmp_path.
    out = tmp_path_factory.mktemp("out") / "imported"
    runner = CliRunner()
    refused = runner.invoke(app, ["import", "coco", str(json_path), "--out", str(out),
                                  "--workers", "1"])
    assert refused.exit_code == 2, refused.output
    assert "images[1] (id 2) file_name" in refused.output
    assert "--allow-outside-root" in refused.output
    assert not out.exists()
    accepted = runner.invoke(app, ["import", "coco", str(json_path), "--out", str(out),
                                   "--workers", "1", "--allow-outside-root",
                                   "--max-file-mb", "64"])
    assert accepted.exit_code == 0, accepted.output
    assert (out / "samples.parquet").is_file()


def test_import_max_file_mb_reaches_the_curation(tmp_path, tmp_path_factory):
    from pcbforge.cli.main import app

    ds = tmp_path / "ds"
    json_path = _coco(ds, ["a.jpg", "big.png"])
    noise = np.random.default_rng(0).integers(0, 256, (800, 800, 3), np.uint8)
    assert cv2.imwrite(str(ds / "images" / "big.png"), noise)  # about 1.9 MB: no compression
    assert (ds / "images" / "big.png").stat().st_size > 1 << 20
    payload = json.loads(json_path.read_text())
    payload["images"][1].update(width=800, height=800)
    json_path.write_text(json.dumps(payload))
    out = tmp_path_factory.mktemp("out") / "imported"
    run = CliRunner().invoke(app, ["import", "coco", str(json_path), "--out", str(out),
                                   "--workers", "1", "--max-file-mb", "1"])
    assert run.exit_code == 0, run.output
    samples = pd.read_parquet(out / "samples.parquet").set_index("path")
    assert (samples.at["big.png", "status"], samples.at["big.png", "reason"]) == (
        "corrupt", "too_large")
    assert samples.at["a.jpg", "reason"] != "too_large"  # (flat grey: low_quality)
