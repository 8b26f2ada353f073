"""The FORMATS registry: one record per label format, read by import, export, the recipe,
the build and the CLI, so a new format is one module (here: one section of this file)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pcbforge.curate import CurateParams
from pcbforge.datasets import load
from pcbforge.datasets.dataset import image_file
from pcbforge.datasets.formats import (
    FORMATS,
    LabelFormat,
    ReadOptions,
    SourcePart,
    UnknownFormatError,
    format_names,
    get_format,
    register_format,
    unregister_format,
)
from pcbforge.datasets.formats_common import (
    SAMPLE_COLUMNS,
    copy_image,
    inside_root,
    labels_frame,
    read_image_size,
)

# --- a toy format, all in one place: a CSV of boxes beside an images/ folder ------------------

BOXES_CSV = "boxes.csv"
CSV_COLUMNS = ["image", "split", "label", "x1", "y1", "x2", "y2"]


def discover_box_csv(src: Path) -> list[SourcePart]:
    table = src / BOXES_CSV if src.is_dir() else src
    if not table.is_file():
        raise FileNotFoundError(f"{src}: no {BOXES_CSV} here")
    return [SourcePart(table)]


def load_box_csv(part: SourcePart, options):
    rows = pd.read_csv(part.path, dtype=str, keep_default_na=False)
    root = part.path.parent / "images"
    samples, boxes = [], []
    for image, group in rows.groupby("image", sort=False):
        file = inside_root(root, image, f"{part.path}: {image}",
                           allow_outside=options.allow_outside)
        width, height = read_image_size(file)
        sample_id = f"boxcsv-{len(samples)}"
        samples.append({"sample_id": sample_id, "id_given": False, "path": image,
                        "file": str(file), "width": width, "height": height,
                        "split": group["split"].iloc[0], "synthetic": False})
        boxes += [{"sample_id": sample_id, "label": box.label,
                   **{c: float(getattr(box, c)) for c in ("x1", "y1", "x2", "y2")},
                   "mask": "", "synthetic": False, "params": ""}
                  for box in group[group["label"] != ""].itertuples()]
    classes = sorted({box["label"] for box in boxes})
    return pd.DataFrame(samples, columns=SAMPLE_COLUMNS), labels_frame(boxes), classes


def save_box_csv(samples, labels, classes, image_root, out: Path, split: str) -> dict:
    rows = []
    for sample in samples.itertuples():
        copy_image(image_file(image_root, sample.path), out / "images" / sample.path)
        mine = labels[labels["sample_id"] == sample.sample_id]
        rows += [[sample.path, sample.split, box.label, box.x1, box.y1, box.x2, box.y2]
                 for box in mine.itertuples()] or [[sample.path, sample.split, "", "", "", "",
                                                    ""]]
    pd.DataFrame(rows, columns=CSV_COLUMNS).to_csv(out / BOXES_CSV, index=False)
    return {"images": len(samples), "boxes": len(labels)}


BOX_CSV = LabelFormat(name="boxcsv", help="a CSV of boxes beside an images/ folder",
                      source_help="Folder with boxes.csv and images/.",
                      discover=discover_box_csv, load=load_box_csv, save=save_box_csv,
                      per_split=False)

# --- the tests ------------------------------------------------------------------------------


@pytest.fixture
def box_csv():
    register_format(BOX_CSV)
    try:
        yield BOX_CSV
    finally:
        unregister_format(BOX_CSV.name)


def _toy_source(root: Path) -> Path:
    """Five textured images, four listed in boxes.csv (one without boxes), one not."""
    rng = np.random.default_rng(3)
    rows = []
    for number, split in enumerate(["train", "train", "val", "test", None]):
        name = f"tile_{number}.png"
        (root / "images").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "images" / name), rng.integers(0, 256, (96, 128, 3), np.uint8))
        if split is None:
            continue  # on disk, not in the annotations
        if number == 1:
            rows.append([name, split, "", "", "", "", ""])
            continue
        rows += [[name, split, "open", 10, 12, 40, 30], [name, split, "short", 50, 5, 90, 60]]
    pd.DataFrame(rows, columns=CSV_COLUMNS).to_csv(root / BOXES_CSV, index=False)
    return root


def _boxes(dataset) -> list[tuple]:
    paths = dataset.samples.set_index("sample_id")["path"]
    return sorted((paths[b.sample_id], b.label, b.x1, b.y1, b.x2, b.y2)
                  for b in dataset.labels.itertuples())


def test_a_registered_format_is_imported_and_exported_by_the_generic_code(box_csv, tmp_path):
    from pcbforge.pipeline import (
        EXPORT_FORMATS,
        LABELLED_FORMATS,
        export_dataset,
        import_labelled,
        read_labelled,
    )

    assert "boxcsv" in LABELLED_FORMATS and "boxcsv" in EXPORT_FORMATS  # live views
    src = _toy_source(tmp_path / "toy")
    result = import_labelled("boxcsv", src, tmp_path / "ds", CurateParams(workers=1))
    dataset = load(tmp_path / "ds", check_files=True)
    samples = dataset.samples.set_index("path")
    assert dataset.info.classes == ["open", "short"]
    assert len(dataset.labels) == 6 and set(samples["source"]) == {"boxcsv"}
    assert samples.loc["tile_2.png", "split"] == "val"
    assert samples.loc["tile_4.png", "reason"] == "not_in_annotations"
    assert (samples.drop(index="tile_4.png")["status"] == "ok").all()
    assert result.report["command"] == "import boxcsv"

    report = export_dataset(tmp_path / "ds", "boxcsv", tmp_path / "exported")
    assert report["format"] == "boxcsv" and report["splits"] == {"all": {"images": 4,
                                                                          "boxes": 6}}
    table, boxes, classes = read_labelled("boxcsv", tmp_path / "exported")
    assert sorted(table["path"]) == sorted(samples.index.drop("tile_4.png"))
    assert len(boxes) == 6 and classes == ["open", "short"]
    # And back in: the same boxes on the same images.
    import_labelled("boxcsv", tmp_path / "exported", tmp_path / "ds2", CurateParams(workers=1))
    assert _boxes(load(tmp_path / "ds2")) == _boxes(dataset)


def test_a_registered_format_is_a_recipe_source_kind_and_export_format(box_csv, tmp_path):
    from pcbforge.pipeline.recipe import RecipeError, load_recipe

    src = tmp_path / "toy"
    text = (f"sources: [{{name: toy, kind: boxcsv, path: {src}}}]\n"
            f"synth: {{enabled: false}}\nexport: {{formats: [boxcsv, coco]}}\n")
    recipe = load_recipe(text=text)
    assert recipe.sources[0].kind == "boxcsv" and recipe.export.formats == ["boxcsv", "coco"]
    with pytest.raises(RecipeError, match=r"sources\[0\]: images is a COCO option"):
        load_recipe(text=text.replace("path: ", "images: /x, path: "))
    unregister_format("boxcsv")
    with pytest.raises(RecipeError) as caught:
        load_recipe(text=text)
    assert ("sources[0].kind: unknown source kind 'boxcsv'; valid kinds: procedural, folder, "
            "deeppcb, coco, yolo, voc") in str(caught.value)
    assert "export.formats[0]: not a format that can be exported" in str(caught.value)
    register_format(BOX_CSV)  # for the fixture's unregister


def test_a_build_reads_a_registered_format(box_csv, tmp_path):
    from pcbforge.pipeline import build
    from pcbforge.pipeline.recipe import load_recipe

    src = _toy_source(tmp_path / "toy")
    recipe = load_recipe(text=f"sources: [{{name: toy, kind: boxcsv, path: {src}}}]\n"
                              f"synth: {{enabled: false}}\nsplit: {{ratios: [0.5, 0.25, 0.25]}}\n"
                              f"audit: {{require_clean: false}}\n"
                              f"export: {{formats: [boxcsv]}}\n"
                              f"report: {{examples_per_class: 0, rejected_examples: 0}}\n")
    build(tmp_path / "build", recipe, workers=1)
    dataset = load(tmp_path / "build")
    assert len(dataset.labels) == 6 and set(dataset.samples["source_kind"]) == {"boxcsv"}
    exported = SourcePart(tmp_path / "build" / "export" / "boxcsv" / BOXES_CSV)
    table, boxes, _ = load_box_csv(exported, ReadOptions())
    assert len(table) + len(boxes) > 0 and set(boxes["label"]) <= {"open", "short"}
    # The merge curates in a scratch folder of its stage and keeps only the table.
    merge = tmp_path / "build" / "stages" / "merge"
    assert sorted(p.name for p in merge.iterdir() if p.is_dir()) == ["images"]

def test_unknown_and_incapable_formats_name_the_valid_ones(tmp_path):
    from pcbforge.pipeline import export_dataset, read_labelled

    with pytest.raises(UnknownFormatError, match="unknown format 'tfrecord'; choose one of "
                                                 "coco, yolo, voc, deeppcb"):
        get_format("tfrecord")
    with pytest.raises(ValueError, match="unknown format 'tfrecord'; choose one of coco, yolo, "
                                         "voc$"):
        read_labelled("tfrecord", tmp_path)
    with pytest.raises(ValueError, match="'deeppcb' cannot be imported this way; formats "
                                         "that can: coco, yolo, voc"):
        read_labelled("deeppcb", tmp_path)
    with pytest.raises(ValueError, match="unknown format 'tfrecord'; choose one of coco, yolo, "
                                         "voc, deeppcb"):
        export_dataset(tmp_path, "tfrecord", tmp_path / "out")
    with pytest.raises(ValueError, match="already registered"):
        register_format(FORMATS["coco"])
    with pytest.raises(ValueError, match="built in"):
        unregister_format("coco")


def test_the_cli_offers_the_registry_s_formats():
    from pcbforge.cli.main import app

    assert format_names(can="import") == ("coco", "yolo", "voc")
    assert format_names(can="export") == ("coco", "yolo", "voc", "deeppcb")
    listed = CliRunner().invoke(app, ["import", "--help"], env={"COLUMNS": "200"})
    for name in ("deeppcb", *format_names(can="import")):
        assert f" {name} " in listed.output, listed.output
    wrong = CliRunner().invoke(app, ["export", "ds", "--format", "tfrecord", "--out", "x"],
                               env={"COLUMNS": "200"})
    assert wrong.exit_code == 2 and "coco" in wrong.output and "deeppcb" in wrong.output
    # Each command takes the options its format reads, and only those.
    coco = CliRunner().invoke(app, ["import", "coco", "--help"], env={"COLUMNS": "200"}).output
    yolo = CliRunner().invoke(app, ["import", "yolo", "--help"], env={"COLUMNS": "200"}).output
    assert "--images" in coco and "--allow-missing-labels" not in coco
    assert "--allow-missing-labels" in yolo and "--images" not in yolo
