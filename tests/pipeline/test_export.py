"""``pcbforge export --templates``: each tested image with its template beside it (COCO,
YOLO), templates as images without boxes (the default, byte for byte as before) or left
out; a COCO or YOLO pair export imported again gives the pairs back."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pcbforge import __version__
from pcbforge.cli.main import app
from pcbforge.curate import CurateParams
from pcbforge.datasets.dataset import Dataset, DatasetInfo, load, save, with_defaults
from pcbforge.datasets.masks import encode_mask
from pcbforge.pipeline import export_dataset, import_labelled

CLASSES = ["open", "short", "spur"]
#: path -> (role, template_path, split, status, (height, width))
SAMPLES = {
    "templates/board_a.png": ("template", "", "train", "ok", (48, 64)),
    "images/t0.png": ("tested", "templates/board_a.png", "train", "ok", (48, 64)),
    "images/t1.png": ("tested", "templates/board_a.png", "train", "ok", (48, 64)),
    "templates/board_b.png": ("template", "", "val", "ok", (40, 56)),
    "images/sub/t2.jpg": ("tested", "templates/board_b.png", "val", "ok", (40, 56)),
    "images/lone.png": ("", "", "val", "ok", (32, 32)),
    # A corrupt template: its tested image has nothing to be paired with.
    "templates/board_c.png": ("template", "", "test", "corrupt", (0, 0)),
    "images/t3.png": ("tested", "templates/board_c.png", "test", "ok", (30, 30)),
}
#: Tested images with a usable template, by split.
PAIRED = {"train": ["images/t0.png", "images/t1.png"], "val": ["images/sub/t2.jpg"],
          "test": []}


def write_paired_dataset(root: Path) -> Path:
    """``root/ds``: tested images with their templates (a shared one, a JPEG tested image
    on a PNG template, a corrupt template), an image without any, boxes and a mask."""
    rng = np.random.default_rng(21)
    ds = root / "ds"
    for path, (_, _, _, status, shape) in SAMPLES.items():
        (ds / path).parent.mkdir(parents=True, exist_ok=True)
        if status == "corrupt":
            (ds / path).write_bytes(b"\x89PNG\r\n\x1a\n truncated")
        else:
            assert cv2.imwrite(str(ds / path), rng.integers(0, 256, (*shape, 3), np.uint8))
    samples = pd.DataFrame({
        "sample_id": [f"s{i}" for i in range(len(SAMPLES))], "path": list(SAMPLES),
        "role": [v[0] for v in SAMPLES.values()],
        "template_path": [v[1] for v in SAMPLES.values()],
        "split": [v[2] for v in SAMPLES.values()], "status": [v[3] for v in SAMPLES.values()],
        "height": [v[4][0] for v in SAMPLES.values()],
        "width": [v[4][1] for v in SAMPLES.values()],
        "synthetic": [v[0] == "tested" for v in SAMPLES.values()],
        "group": ["a", "a", "a", "b", "b", "lone", "c", "c"],
    })
    ids = dict(zip(samples["path"], samples["sample_id"], strict=True))
    disc = np.zeros((40, 56), bool)
    disc[10:20, 12:30] = True
    labels = pd.DataFrame({
        "sample_id": [ids["images/t0.png"], ids["images/t0.png"], ids["images/sub/t2.jpg"],
                      ids["images/lone.png"], ids["images/t3.png"]],
        "label": ["open", "short", "spur", "open", "short"],
        "x1": [2.0, 20.5, 10.0, 1.0, 3.0], "y1": [3.0, 4.25, 8.0, 1.0, 3.0],
        "x2": [12.0, 40.0, 32.0, 9.0, 9.0], "y2": [13.0, 30.5, 22.0, 9.0, 9.0],
        "mask": ["", "", encode_mask(disc), "", ""],
        "synthetic": [True, True, True, False, True],
        "params": ['{"seed": 1}', "", "", "", ""],
    })
    samples, labels = with_defaults(samples, labels)
    save(Dataset(ds, samples, labels, DatasetInfo(classes=CLASSES)))
    return ds


@pytest.fixture(scope="module")
def paired(tmp_path_factory) -> Path:
    return write_paired_dataset(tmp_path_factory.mktemp("paired"))


def label_files_digest(out: Path, tmp: Path) -> dict[str, str]:
    """Every file of an export: the sha256 of the label and config files (the version and
    the temporary folder's path spelled out of them), and of an image's bytes."""
    found = {}
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.suffix in (".json", ".txt", ".yaml", ".xml"):
            data = data.replace(__version__.encode(), b"VERSION").replace(
                str(tmp.resolve()).encode(), b"TMP").replace(str(tmp).encode(), b"TMP")
        found[path.relative_to(out).as_posix()] = hashlib.sha256(data).hexdigest()[:16]
    return found


#: What the export wrote before it could pair templates (label and config files: their
#: sha256; images: copies of the dataset's files). ``negatives`` must keep writing it.
NEGATIVES_EXPORT = {
    "coco": {
        "test/annotations.json": "23affe0cb818b212",
        "train/annotations.json": "6782767f02208ca1",
        "val/annotations.json": "5c1067bd8905ebff",
        "test/images/images/t3.png": "images/t3.png",
        "train/images/images/t0.png": "images/t0.png",
        "train/images/images/t1.png": "images/t1.png",
        "train/images/templates/board_a.png": "templates/board_a.png",
        "val/images/images/lone.png": "images/lone.png",
        "val/images/images/sub/t2.jpg": "images/sub/t2.jpg",
        "val/images/templates/board_b.png": "templates/board_b.png",
    },
    "yolo": {
        "data.yaml": "666971998300d1e3",
        "dataset.yaml": "666971998300d1e3",
        "labels/test/images__t3.txt": "b099e346ef732634",
        "labels/train/images__t0.txt": "f353e99aa37bed77",
        "labels/train/images__t1.txt": "e3b0c44298fc1c14",
        "labels/train/templates__board_a.txt": "e3b0c44298fc1c14",
        "labels/val/images__lone.txt": "15289acf3a46edd5",
        "labels/val/images__sub__t2.txt": "370defbccc30bb4c",
        "labels/val/templates__board_b.txt": "e3b0c44298fc1c14",
        "pcbforge_samples.json": "e0c810ad1bc6f54c",
        "images/test/images__t3.png": "images/t3.png",
        "images/train/images__t0.png": "images/t0.png",
        "images/train/images__t1.png": "images/t1.png",
        "images/train/templates__board_a.png": "templates/board_a.png",
        "images/val/images__lone.png": "images/lone.png",
        "images/val/images__sub__t2.jpg": "images/sub/t2.jpg",
        "images/val/templates__board_b.png": "templates/board_b.png",
    },
}


def expected_files(fmt: str, dataset: Path) -> dict[str, str]:
    """:data:`NEGATIVES_EXPORT` with each image's source file hashed as the digest does."""
    return {name: (hashlib.sha256((dataset / value).read_bytes()).hexdigest()[:16]
                   if name.endswith((".png", ".jpg")) else value)
            for name, value in NEGATIVES_EXPORT[fmt].items()}


@pytest.mark.parametrize("fmt", ["coco", "yolo"])
def test_negatives_is_the_default_and_writes_what_it_always_did(fmt, paired, tmp_path):
    """Templates are images without boxes, and every file has the bytes it had before the
    option existed."""
    default = export_dataset(paired, fmt, tmp_path / "default")
    explicit = export_dataset(paired, fmt, tmp_path / "negatives", templates="negatives")
    for out in ("default", "negatives"):
        written = label_files_digest(tmp_path / out, tmp_path / out)
        assert written.pop("export_report.json")
        assert written == expected_files(fmt, paired)
        report = json.loads((tmp_path / out / "export_report.json").read_text())
        assert set(report) == {"command", "format", "dataset", "out", "include_status",
                               "splits"}
    assert default["splits"] == explicit["splits"]
    assert default["splits"]["train"] == {"images": 3, "boxes": 2}


def _paths(dataset: Path) -> dict[str, str]:
    """sample_id -> path of the paired dataset."""
    samples = pd.read_parquet(dataset / "samples.parquet")
    return dict(zip(samples["sample_id"], samples["path"], strict=True))


def _templates_of(dataset: Path) -> dict[str, str]:
    """Tested image path -> its template's path (every tested image of :data:`SAMPLES`)."""
    return {path: template for path, (role, template, *_) in SAMPLES.items()
            if role == "tested"}


def test_coco_pair_names_each_tested_image_s_template(paired, tmp_path):
    report = export_dataset(paired, "coco", tmp_path / "coco", templates="pair")
    assert report["templates"] == "pair"
    assert report["splits"]["train"] == {"images": 2, "boxes": 2, "paired": 2, "unpaired": 0}
    assert report["splits"]["test"] == {"images": 1, "boxes": 1, "paired": 0, "unpaired": 1}
    ids = {path: sample_id for sample_id, path in _paths(paired).items()}
    templates = _templates_of(paired)
    for split, names in PAIRED.items():
        coco = json.loads((tmp_path / "coco" / split / "annotations.json").read_text())
        entries = {image["file_name"]: image for image in coco["images"]}
        # Templates are no images of their own: only tested images and the lone image.
        assert not any(name.startswith("templates/") for name in entries)
        for name, image in entries.items():
            if name in names:
                template = templates[name]
                assert image["template_file_name"] == template
                assert image["pcbforge"]["template_sample_id"] == ids[template]
                written = tmp_path / "coco" / split / "images" / template
                assert written.read_bytes() == (paired / template).read_bytes()
            else:  # no template (the lone image), or a corrupt one
                assert "template_file_name" not in image
                assert "template_sample_id" not in image["pcbforge"]
    assert not (tmp_path / "coco" / "test" / "images" / "templates").exists()


def test_yolo_pair_writes_a_templates_tree_beside_images(paired, tmp_path):
    report = export_dataset(paired, "yolo", tmp_path / "yolo", templates="pair")
    out = tmp_path / "yolo"
    assert report["splits"]["val"] == {"images": 2, "boxes": 2, "paired": 1, "unpaired": 0}
    written = sorted(p.relative_to(out).as_posix() for p in (out / "templates").rglob("*")
                     if p.is_file())
    # Named as the tested image is, with the template's own extension.
    assert written == ["templates/train/images__t0.png", "templates/train/images__t1.png",
                       "templates/val/images__sub__t2.png"]
    board_a = (paired / "templates/board_a.png").read_bytes()
    assert (out / written[0]).read_bytes() == board_a == (out / written[1]).read_bytes()
    assert (out / written[2]).read_bytes() == (paired / "templates/board_b.png").read_bytes()
    images = sorted(p.name for p in (out / "images").rglob("*") if p.is_file())
    assert not any(name.startswith("templates__") for name in images)
    assert sorted(p.name for p in (out / "labels").rglob("*.txt")) == [
        "images__lone.txt", "images__sub__t2.txt", "images__t0.txt", "images__t1.txt",
        "images__t3.txt"]
    sidecar = json.loads((out / "pcbforge_samples.json").read_text())["splits"]
    assert sidecar["train"]["images__t0.png"]["template_path"] == "templates/board_a.png"
    assert "template_path" not in sidecar["test"]["images__t3.png"]


@pytest.mark.parametrize("fmt", ["coco", "yolo", "voc"])
def test_omit_leaves_every_template_out(fmt, paired, tmp_path):
    report = export_dataset(paired, fmt, tmp_path / fmt, templates="omit")
    assert report["templates"] == "omit"
    files = [p.relative_to(tmp_path / fmt).as_posix()
             for p in (tmp_path / fmt).rglob("*") if p.is_file()]
    assert not any("board_" in name for name in files)
    assert not (tmp_path / fmt / "templates").exists()
    assert sum(part["images"] for part in report["splits"].values()) == 5  # tested + lone
    if fmt == "coco":
        for split in PAIRED:
            text = (tmp_path / fmt / split / "annotations.json").read_text()
            assert "template" not in text


@pytest.mark.parametrize(("fmt", "mode", "message"), [
    ("voc", "pair", "a voc export cannot write templates as 'pair'; it can: negatives, omit"),
    ("deeppcb", "omit", "a deeppcb export cannot write templates as 'omit'; it can: pair, "
                        "negatives"),
    ("coco", "pairs", "templates: expected one of pair, negatives, omit, got 'pairs'"),
], ids=["voc_pair", "deeppcb_omit", "unknown_mode"])
def test_a_mode_the_format_cannot_write_is_refused(fmt, mode, message, paired, tmp_path):
    with pytest.raises(ValueError, match=re.escape(message)):
        export_dataset(paired, fmt, tmp_path / "out", templates=mode)
    assert not (tmp_path / "out").exists()


def test_the_cli_takes_templates(paired, tmp_path):
    runner = CliRunner()
    run = runner.invoke(app, ["export", str(paired), "-f", "coco", "-o", str(tmp_path / "c"),
                              "--templates", "pair"])
    assert run.exit_code == 0, run.output
    assert "train: 2 images, 2 with their template" in run.output
    assert json.loads((tmp_path / "c" / "export_report.json").read_text())["templates"] == "pair"
    refused = runner.invoke(app, ["export", str(paired), "-f", "voc", "-o", str(tmp_path / "v"),
                                  "--templates", "pair"])
    assert refused.exit_code == 2
    assert "a voc export cannot write templates as 'pair'" in refused.output
    unknown = runner.invoke(app, ["export", str(paired), "-f", "coco", "-o",
                                  str(tmp_path / "u"), "--templates", "both"])
    assert unknown.exit_code == 2 and "pair" in unknown.output


@pytest.mark.parametrize("fmt", ["coco", "yolo"])
def test_a_pair_export_imported_again_gives_the_pairs_back(fmt, paired, tmp_path):
    export_dataset(paired, fmt, tmp_path / fmt, templates="pair")
    result = import_labelled(fmt, tmp_path / fmt, tmp_path / "again", CurateParams(workers=1))
    again = load(tmp_path / "again", check_files=True)
    samples = again.samples.set_index("sample_id")
    original = _paths(paired)
    tested = samples[samples["template_path"] != ""]
    # Every paired tested image is back (by its sample id) with its template beside it.
    assert sorted(original[i] for i in tested.index) == sorted(
        name for names in PAIRED.values() for name in names)
    by_path = samples.reset_index().set_index("path")
    for sample_id, row in tested.iterrows():
        template = by_path.loc[row["template_path"]]
        assert template["role"] == "template" and row["role"] == "tested"
        # YOLO holds a copy per tested image: curation finds the copies of a shared one.
        assert template["status"] == ("ok" if fmt == "coco" or original[sample_id]
                                      != "images/t1.png" else "duplicate")
        assert template["split"] == row["split"]
        assert template["group"] == row["group"]  # one leakage group
        expected = _templates_of(paired)[original[sample_id]]
        assert (again.image_root / row["template_path"]).read_bytes() == (
            paired / expected).read_bytes()
        if fmt == "coco":  # the template's own sample id comes back too
            assert template["sample_id"] == {p: i for i, p in original.items()}[expected]
    assert not (again.labels["sample_id"].isin(
        samples.index[samples["role"] == "template"])).any()
    unpaired = [i for i, p in original.items() if p in ("images/lone.png", "images/t3.png")]
    assert (samples.loc[unpaired, "template_path"] == "").all()
    assert (samples.loc[unpaired, "role"] == "").all()
    assert result.report["paired_images"] == 3
    assert result.report["annotated_images"] == 5  # templates counted apart
    assert result.report["templates"] == (2 if fmt == "coco" else 3)
    assert result.report["images_not_in_annotations"] == 0


def test_fiftyone_reads_pair_exports_as_the_tested_images(fiftyone_db, paired, tmp_path):
    """The extra field and the templates/ tree are invisible to FiftyOne's importers: they
    read the split's tested images and their boxes, no template."""
    fo = fiftyone_db
    export_dataset(paired, "coco", tmp_path / "coco", templates="pair")
    export_dataset(paired, "yolo", tmp_path / "yolo", templates="pair")
    datasets = []
    try:
        coco = fo.Dataset.from_dir(
            dataset_type=fo.types.COCODetectionDataset,
            data_path=str(tmp_path / "coco" / "train" / "images"),
            labels_path=str(tmp_path / "coco" / "train" / "annotations.json"))
        datasets.append(coco)
        yolo = fo.Dataset.from_dir(dataset_dir=str(tmp_path / "yolo"),
                                   dataset_type=fo.types.YOLOv5Dataset, split="train")
        datasets.append(yolo)
        for dataset in (coco, yolo):
            names = sorted(Path(p).name for p in dataset.values("filepath"))
            assert names in (["t0.png", "t1.png"], ["images__t0.png", "images__t1.png"])
            boxes = sum(len(value.detections) for sample in dataset
                        for _, value in sample.iter_fields()
                        if isinstance(value, fo.Detections))
            assert boxes == 2
    finally:
        for dataset in datasets:
            dataset.delete()
