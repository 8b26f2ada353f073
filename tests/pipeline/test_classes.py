"""One class vocabulary across imports and builds: a YOLO set with PKU-Market-PCB's names
and a DeepPCB-layout folder give DeepPCB's six classes (seven with ``missing_hole`` kept),
``--class-map`` on the import commands, near misses refused, and ``pcbforge classes``."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from pcbforge.cli.main import app
from pcbforge.curate import CurateParams
from pcbforge.datasets import load
from pcbforge.datasets.classes import ClassVocabulary, source_label
from pcbforge.datasets.deeppcb import DEEPPCB_CLASSES
from pcbforge.pipeline import SourceError, build, import_deeppcb, import_labelled
from pcbforge.pipeline.recipe import RecipeError, load_recipe
from tests.conftest import write_deeppcb_layout

#: PKU-Market-PCB's class names, in its data.yaml order.
PKU_NAMES = ["missing_hole", "mouse_bite", "open_circuit", "short", "spur", "spurious_copper"]
#: Boxes of each image of the PKU-style set, by class index.
PKU_BOXES = [[0, 0, 1], [2, 3, 4], [5, 0]]


def write_pku_yolo(root: Path, names=PKU_NAMES, boxes=PKU_BOXES) -> Counter:
    """A YOLO folder with PKU-style names: noise images (distinct, so curation keeps each),
    boxes of the given class indices; returns the boxes per name."""
    rng = np.random.default_rng(21)
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    yaml_names = "".join(f"  {i}: {name}\n" for i, name in enumerate(names))
    (root / "data.yaml").write_text(f"path: .\ntrain: images/train\nnames:\n{yaml_names}")
    counts: Counter = Counter()
    for number, indices in enumerate(boxes):
        image = rng.integers(0, 256, (96, 128, 3), np.uint8)
        assert cv2.imwrite(str(root / "images" / "train" / f"board{number}.png"), image)
        lines = [f"{index} {0.2 + 0.25 * k:.4f} 0.5000 0.1000 0.1500"
                 for k, index in enumerate(indices)]
        (root / "labels" / "train" / f"board{number}.txt").write_text("\n".join(lines) + "\n")
        counts.update(names[i] for i in indices)
    return counts


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """A PKU-style YOLO folder and a DeepPCB-layout folder (a spur and an open per tile)."""
    root = tmp_path_factory.mktemp("class-sources")
    pku = write_pku_yolo(root / "pku")
    deeppcb = write_deeppcb_layout(root / "deeppcb", {"group00031": 2},
                                   np.random.default_rng(3))
    assert deeppcb["boxes"] == 4
    return root, pku


def _per_class(dataset) -> dict[str, int]:
    return {k: int(v) for k, v in dataset.labels["label"].value_counts().items()}


# --- import ------------------------------------------------------------------------------


def test_a_yolo_import_canonicalises_pku_names_and_keeps_the_source_name(sources, tmp_path):
    root, pku = sources
    result = import_labelled("yolo", root / "pku", tmp_path / "ds", CurateParams(workers=1))
    dataset = load(tmp_path / "ds")
    assert dataset.info.classes == ["missing_hole", "mousebite", "open", "short", "spur",
                                    "copper"]
    assert _per_class(dataset) == {"missing_hole": 3, "mousebite": 1, "open": 1, "short": 1,
                                   "spur": 1, "copper": 1}
    seen = {(row.label, source_label(row.params)) for row in dataset.labels.itertuples()}
    assert seen == {("missing_hole", ""), ("mousebite", "mouse_bite"),
                    ("open", "open_circuit"), ("short", ""), ("spur", ""),
                    ("copper", "spurious_copper")}
    assert result.report["classes"]["renamed"] == {
        "mouse_bite": "mousebite", "open_circuit": "open", "spurious_copper": "copper"}
    assert result.report["classes"]["new"] == []
    assert dataset.info.provenance[0]["classes"]["renamed"]["open_circuit"] == "open"


def test_a_user_map_applies_to_an_import(sources, tmp_path):
    root, _ = sources
    vocabulary = ClassVocabulary(map={"missing_hole": "pin-hole"})
    import_labelled("yolo", root / "pku", tmp_path / "ds", CurateParams(workers=1),
                    classes=vocabulary)
    dataset = load(tmp_path / "ds")
    assert dataset.info.classes == ["pin-hole", "mousebite", "open", "short", "spur", "copper"]
    assert _per_class(dataset)["pin-hole"] == 3
    # DeepPCB's names are built-in classes: a map that does not name them leaves them be.
    import_deeppcb(root / "deeppcb", tmp_path / "deep", CurateParams(workers=1),
                   classes=vocabulary)
    deep = load(tmp_path / "deep")
    assert deep.info.classes == list(DEEPPCB_CLASSES)
    assert "classes" not in deep.info.provenance[0]
    assert (deep.labels["params"] == "").all()


def test_a_near_miss_stops_the_import_before_any_work(tmp_path):
    src = tmp_path / "typo"
    write_pku_yolo(src, names=["mousbite", "open"], boxes=[[0, 1]])
    with pytest.raises(SourceError, match=r"unknown class 'mousbite' \(did you mean "
                                          r"'mousebite'\?\)"):
        import_labelled("yolo", src, tmp_path / "ds", CurateParams(workers=1))
    assert not (tmp_path / "ds").exists()
    # Unless the user keeps it, or maps it.
    import_labelled("yolo", src, tmp_path / "kept", CurateParams(workers=1),
                    classes=ClassVocabulary(add=["mousbite"]))
    assert load(tmp_path / "kept").info.classes == ["mousbite", "open"]


def test_a_name_unlike_any_class_is_kept_and_reported_unless_strict(tmp_path):
    src = tmp_path / "other"
    write_pku_yolo(src, names=["scratch", "short_circuit"], boxes=[[0, 1, 0]])
    result = import_labelled("yolo", src, tmp_path / "ds", CurateParams(workers=1))
    assert load(tmp_path / "ds").info.classes == ["scratch", "short"]
    assert result.report["classes"]["new"] == ["scratch"]
    with pytest.raises(SourceError, match=r"unknown class 'scratch' \(known classes: open, "):
        import_labelled("yolo", src, tmp_path / "strict", CurateParams(workers=1),
                        classes=ClassVocabulary(strict=True))


def test_the_import_cli_maps_adds_and_refuses_class_names(sources, tmp_path):
    root, _ = sources
    runner = CliRunner()
    run = runner.invoke(app, ["import", "yolo", str(root / "pku"), "--out",
                              str(tmp_path / "ds"), "--workers", "1",
                              "--class-map", "missing_hole=pin-hole",
                              "--class-map", "Spur=copper"])
    assert run.exit_code == 0, run.output
    assert "classes renamed: missing_hole -> pin-hole, mouse_bite -> mousebite" in run.output
    dataset = load(tmp_path / "ds")
    assert _per_class(dataset) == {"pin-hole": 3, "copper": 2, "mousebite": 1, "open": 1,
                                   "short": 1}
    bad = runner.invoke(app, ["import", "yolo", str(root / "pku"), "--out",
                              str(tmp_path / "bad"), "--class-map", "missing_hole"])
    assert bad.exit_code == 2 and "--class-map: expected FROM=TO" in bad.output
    typo = runner.invoke(app, ["import", "yolo", str(root / "pku"), "--out",
                               str(tmp_path / "bad"), "--class-map", "missing_hole=pinhoel"])
    assert typo.exit_code == 2
    assert "unknown class 'pinhoel' (did you mean 'pin-hole'?)" in typo.output
    strict = runner.invoke(app, ["import", "deeppcb", str(root / "deeppcb"), "--out",
                                 str(tmp_path / "deep"), "--workers", "1",
                                 "--add-class", "scratch", "--strict-classes"])
    assert strict.exit_code == 0, strict.output
    assert load(tmp_path / "deep").info.classes == list(DEEPPCB_CLASSES)


def test_the_import_cli_warns_of_new_classes(tmp_path):
    src = tmp_path / "other"
    write_pku_yolo(src, names=["scratch", "open"], boxes=[[0, 1]])
    run = CliRunner().invoke(app, ["import", "yolo", str(src), "--out", str(tmp_path / "ds"),
                                   "--workers", "1"])
    assert run.exit_code == 0, run.output
    assert "note: 1 label names are no built-in class and were kept as classes of their " \
           "own: scratch" in " ".join(run.output.split())
    strict = CliRunner().invoke(app, ["import", "yolo", str(src), "--out",
                                      str(tmp_path / "no"), "--strict-classes"])
    assert strict.exit_code == 2 and "unknown class 'scratch'" in strict.output


# --- build -------------------------------------------------------------------------------


def _recipe(root: Path, classes: str = "") -> str:
    return f"""
name: pku and deeppcb
sources:
  - {{name: pku, kind: yolo, path: {root / 'pku'}}}
  - {{name: deep, kind: deeppcb, path: {root / 'deeppcb'}}}
{classes}
synth: {{enabled: false}}
split: {{ratios: [0.6, 0.2, 0.2]}}
qa: {{enabled: false}}
export: {{formats: [coco]}}
report: {{examples_per_class: 1, rejected_examples: 0}}
"""


@pytest.mark.parametrize(("classes", "expected"), [
    ("classes: {map: {missing_hole: pin-hole}}",
     {"open": 3, "short": 1, "mousebite": 1, "spur": 3, "copper": 1, "pin-hole": 3}),
    ("", {"open": 3, "short": 1, "mousebite": 1, "spur": 3, "copper": 1, "pin-hole": 0,
          "missing_hole": 3}),
], ids=["missing_hole-mapped", "missing_hole-kept"])
def test_pku_and_deeppcb_built_together_share_one_class_list(sources, tmp_path, classes,
                                                              expected):
    root, _ = sources
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(_recipe(root, classes))
    build(tmp_path / "out", load_recipe(recipe_file), workers=1)
    dataset = load(tmp_path / "out")
    assert dataset.info.classes == list(expected)  # DeepPCB's order, missing_hole after
    counts = _per_class(dataset)
    assert {c: counts.get(c, 0) for c in expected} == expected
    assert set(counts) <= set(expected)
    coco = json.loads(next((tmp_path / "out" / "export" / "coco").glob(
        "*/annotations.json")).read_text())
    assert [c["name"] for c in coco["categories"]] == list(expected)
    merge = json.loads((tmp_path / "out" / "stages" / "merge" / "merge_report.json")
                       .read_text())
    assert merge["classes"]["per_source"]["pku"]["renamed"]["open_circuit"] == "open"
    # The source names travel with the boxes into the build.
    mapped = {source_label(p) for p in dataset.labels["params"]} - {""}
    assert {"mouse_bite", "open_circuit", "spurious_copper"} <= mapped
    assert ("missing_hole" in mapped) == ("missing_hole" not in expected)


def test_a_new_map_re_runs_the_labelled_sources(sources, tmp_path):
    root, _ = sources
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(_recipe(root))
    build(tmp_path / "out", load_recipe(recipe_file), workers=1)
    recipe_file.write_text(_recipe(root, "classes: {map: {missing_hole: pin-hole}}"))
    again = build(tmp_path / "out", load_recipe(recipe_file), workers=1)
    assert again.ran[:3] == ["source-pku", "source-deep", "merge"]
    assert "missing_hole" not in load(tmp_path / "out").info.classes


def test_the_recipe_s_classes_key_is_checked_when_it_loads(sources):
    root, _ = sources
    with pytest.raises(RecipeError, match=r"classes: map: 'missing_hole' -> unknown class "
                                          r"'pinhoel' \(did you mean 'pin-hole'\?\)"):
        load_recipe(text=_recipe(root, "classes: {map: {missing_hole: pinhoel}}"))
    with pytest.raises(RecipeError, match=r"unknown key 'maps' in classes \(did you mean "
                                          r"'map'\?\); valid keys: map, add, strict"):
        load_recipe(text=_recipe(root, "classes: {maps: {}}"))
    recipe = load_recipe(text=_recipe(root, "classes: {add: [scratch], strict: true}"))
    assert recipe.classes.add == ["scratch"] and recipe.classes.strict


def test_a_near_miss_in_a_source_stops_the_build_naming_it(tmp_path):
    src = tmp_path / "typo"
    write_pku_yolo(src, names=["mousbite", "open"], boxes=[[0, 1]])
    recipe = load_recipe(text=f"""
sources: [{{name: typo, kind: yolo, path: {src}}}]
synth: {{enabled: false}}
""")
    from pcbforge.pipeline import BuildError

    with pytest.raises(BuildError, match=r"stage source-typo failed: .*unknown class "
                                         r"'mousbite' \(did you mean 'mousebite'\?\)"):
        build(tmp_path / "out", recipe, workers=1)


# --- pcbforge classes --------------------------------------------------------------------


def test_classes_command_prints_the_vocabulary_and_writes_its_report(sources, tmp_path):
    root, _ = sources
    import_labelled("yolo", root / "pku", tmp_path / "ds", CurateParams(workers=1))
    run = CliRunner().invoke(app, ["classes", str(tmp_path / "ds")])
    assert run.exit_code == 0, run.output
    assert "mouse_bite" in run.output and "missing_hole" in run.output
    last = " ".join(run.output.strip().splitlines()[-2:])
    assert "6 classes (6 built-in), 8 boxes on 3 ok images (8 in all); 3 classes imported " \
           "under other names" in " ".join(last.split())
    report = json.loads((tmp_path / "ds" / "classes.json").read_text())
    rows = {row["class"]: row for row in report["classes"]}
    assert rows["open"]["aliases_seen"] == ["open_circuit"]
    assert rows["missing_hole"]["boxes"] == {"train": 3, "val": 0, "test": 0, "none": 0}
    assert rows["missing_hole"]["images"] == 2
    assert report["imports"][0]["renamed"]["spurious_copper"] == "copper"
    missing = CliRunner().invoke(app, ["classes", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "no such dataset folder" in missing.output
