"""A recipe mixing a DeepPCB-layout folder (one of its groups) and a messy folder, with
synthetic defects on procedural boards: real defects exist, so val and test stay real."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from pcbforge.datasets import load
from pcbforge.pipeline import build
from pcbforge.pipeline.recipe import load_recipe
from tests.conftest import write_deeppcb_layout


@pytest.fixture(scope="module")
def mixed(messy_corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("mixed")
    deeppcb = root / "deeppcb"
    write_deeppcb_layout(deeppcb, {"group00010": 8, "group00020": 3},
                         np.random.default_rng(5))
    messy, manifest = messy_corpus
    recipe_file = root / "mixed.yaml"
    recipe_file.write_text(f"""
name: mixed
sources:
  - {{name: real, kind: deeppcb, path: deeppcb, groups: [group00010]}}
  - {{name: messy, kind: folder, path: {messy}}}
  - {{name: boards, kind: procedural, count: 3, size: 320}}
synth:
  boards: [boards]
  images_per_class: 1
  defects_per_image: [2, 4]
  balance: fill
  etch_px: [0, 1]
split:
  ratios: [0.6, 0.2, 0.2]
report: {{examples_per_class: 2, rejected_examples: 6}}
""")
    recipe = load_recipe(recipe_file)
    out = root / "dataset"
    return build(out, recipe, workers=1), out, recipe, manifest


def test_mixed_sources_build_with_real_val_and_test(mixed):
    result, out, _, manifest = mixed
    assert result.ran[:3] == ["source-real", "source-messy", "source-boards"]
    dataset = load(out, check_files=True)
    samples = dataset.samples
    assert set(samples["source"]) == {"real", "messy", "boards", "synth"}
    real = samples[samples["source"] == "real"]
    assert not real["path"].str.contains("group00020").any()  # only the group asked for
    assert (real["role"] == "tested").sum() == 8
    # The messy folder curated with the other sources: each file keeps the status and
    # reason it has curated alone (nothing in the other sources duplicates it).
    messy = samples[samples["source"] == "messy"].set_index("path")
    alone = load(out / "stages" / "source-messy" / "dataset").samples
    alone = alone.set_index("messy/" + alone["path"])
    assert sorted(messy.index) == sorted(alone.index)
    for column in ("status", "reason"):
        assert messy[column].to_dict() == alone[column].to_dict()
    assert (manifest["expected_status"] == "corrupt").sum() >= 9
    expected_corrupt = int((messy["status"] == "corrupt").sum())
    assert expected_corrupt >= 9
    synthetic = samples["synthetic"].astype(bool)
    assert set(samples.loc[synthetic, "split"]) <= {"train", ""}
    assert not samples.loc[synthetic & samples["split"].isin(["val", "test"])].size
    # etch_px reached synthesis: etched boards are their images' own templates, on the
    # synthetic images' side of the split.
    tested = samples[synthetic & (samples["role"] == "tested")]
    etched = tested[tested["template_path"].str.contains("templates/augmented/")]
    assert 0 < len(etched) < len(tested)
    by_path = samples.set_index("path")
    assert set(by_path.loc[etched["template_path"], "split"]) == {"train"}
    assert set(samples.loc[~synthetic & (samples["status"] == "ok"), "split"]) == {
        "train", "val", "test"}
    real_labels = dataset.labels[dataset.labels["sample_id"].isin(real["sample_id"])]
    assert len(real_labels) == 16 and not real_labels["synthetic"].any()
    report = json.loads((out / "report.json").read_text())
    assert report["synthetic_policy"]["applied"] == "train"
    assert report["synthetic_policy"]["real_defects"] is True
    for split in ("val", "test"):
        assert report["splits"][split]["images"]["synthetic"] == 0
    assert report["audit"]["clean"] is True
    assert report["status"]["corrupt"] == expected_corrupt
    assert any(item["status"] == "corrupt" for item in report["rejected"])
    # balance: fill draws the classes the real labels lack (not spur and open) more.
    weights = dict(zip(load_recipe(out / "recipe.yaml").synth.classes,
                       result.stages[3].summary["class_weights"], strict=True))
    assert weights["short"] > weights["spur"] and weights["short"] > weights["open"]


def test_rerun_skips_and_a_touched_source_reruns_from_its_stage(mixed):
    _, out, recipe, _ = mixed
    assert build(out, recipe, workers=1).ran == []
    messy_path = recipe.sources[1].path
    first = sorted(p for p in messy_path.rglob("*.png") if p.is_file())[0]
    stat = first.stat()
    os.utime(first, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    try:
        ran = build(out, recipe, workers=1).ran
    finally:
        os.utime(first, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert ran == ["source-messy", "merge", "split", "audit", "qa", "export", "report"]
