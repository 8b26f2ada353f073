"""The recipe: defaults, validation, and errors that name the key and the valid keys."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from pcbforge.cli.main import app
from pcbforge.pipeline.recipe import (
    DeepPCBSource,
    FolderSource,
    RecipeError,
    default_recipe_text,
    load_recipe,
    recipe_yaml,
)

ONE_SOURCE = "sources: [{name: boards, kind: procedural}]\n"


def _error(text: str) -> str:
    with pytest.raises(RecipeError) as caught:
        load_recipe(text=text)
    return str(caught.value)


def test_the_embedded_default_makes_every_class_from_procedural_boards():
    recipe = load_recipe()
    assert [s.kind for s in recipe.sources] == ["procedural"]
    assert recipe.synth.classes == ["open", "short", "mousebite", "spur", "copper", "pin-hole"]
    assert recipe.synth.total_images == 60
    assert recipe.board_sources() == ["boards"]
    assert recipe.export.formats == ["coco", "yolo"]
    assert recipe.split.synthetic == "auto"
    assert "procedural" in default_recipe_text()


def test_a_filled_in_recipe_loads_back_the_same():
    recipe = load_recipe()
    assert load_recipe(text=recipe_yaml(recipe)) == recipe


def test_unknown_top_level_key_is_named_with_the_valid_keys():
    message = _error(ONE_SOURCE + "splt: {ratios: [0.8, 0.1, 0.1]}\n")
    assert "unknown key 'splt' at the top level" in message
    assert "did you mean 'split'?" in message
    assert "valid keys: version, name, seed, sources, classes, curate, synth, split, audit, " \
           "qa, export, report" in message


def test_unknown_key_in_a_source_lists_that_kind_s_keys():
    message = _error("sources:\n  - {name: boards, kind: procedural}\n"
                     "  - {name: real, kind: deeppcb, path: /data, group: [group1]}\n")
    assert "unknown key 'group' in sources[1] (did you mean 'groups'?)" in message
    assert message.endswith("valid keys: kind, name, path, groups")


def test_unknown_key_deep_in_curation_thresholds():
    message = _error(ONE_SOURCE + "curate: {inspect: {quality: {min_sid: 3}}}\n")
    assert "unknown key 'min_sid' in curate.inspect.quality" in message
    assert "valid keys: min_side," in message


@pytest.mark.parametrize(("text", "expected"), [
    ("sources: [{name: b, kind: pascal}]\n", "sources[0].kind: unknown source kind 'pascal'; "
                                             "valid kinds: procedural, folder, deeppcb"),
    ("sources: [{name: b}]\n", "sources[0]: a source needs a kind"),
    ("name: x\n", "sources: Field required"),
    (ONE_SOURCE + "split: {ratios: [0.5, 0.5, 0.5]}\n", "split.ratios: ratios must sum to 1"),
    (ONE_SOURCE + "synth: {images: 5, images_per_class: 2}\n",
     "give images or images_per_class, not both"),
    (ONE_SOURCE + "synth: {boards: [real]}\n", "synth.boards names 'real', which is not a "
                                               "source (sources: boards)"),
    (ONE_SOURCE + "synth: {classes: [open, scratch]}\n",
     "synth.classes: unknown defect class 'scratch'"),
    (ONE_SOURCE + "export: {formats: [coco, tfrecord]}\n", "export.formats[1]"),
    ("sources: [{name: m, kind: folder, path: /x}]\n", "synth needs good boards"),
    ("sources: [{name: synth, kind: procedural}]\n", "'synth' is reserved"),
    ("sources: [{name: a, kind: procedural}, {name: a, kind: procedural}]\n",
     "source name 'a' is used twice"),
    ("sources: [{name: B, kind: procedural}]\n", "sources[0].name: source names are"),
    ("sources: [{name: b, kind: procedural}\nsplit: x\n", "not valid YAML (line 2"),
    ("- just\n- a list\n", "a recipe is a mapping of sections"),
    ("sources: [{name: y, kind: yolo, path: /x, images: /y}]\nsynth: {enabled: false}\n",
     "images is a COCO option"),
    (ONE_SOURCE + "qa: {diff_threshold: 300}\n", "qa.diff_threshold: Input should be less "
                                                 "than or equal to 255"),
    (ONE_SOURCE + "qa: {copper: green}\n", "qa.copper: Input should be 'dark' or 'light'"),
])
def test_invalid_recipes_say_what_and_where(text, expected):
    assert expected in _error(text)


def test_paths_are_relative_to_the_recipe_file(tmp_path):
    recipe_file = tmp_path / "recipes" / "mine.yaml"
    recipe_file.parent.mkdir()
    recipe_file.write_text("sources:\n  - {name: real, kind: deeppcb, path: ../data, "
                           "groups: [group00041]}\n  - {name: messy, kind: folder, path: "
                           "messy}\nsynth: {balance: fill}\n")
    recipe = load_recipe(recipe_file)
    real, messy = recipe.sources
    assert isinstance(real, DeepPCBSource) and isinstance(messy, FolderSource)
    assert real.path == tmp_path / "recipes" / ".." / "data"
    assert messy.path == tmp_path / "recipes" / "messy"
    assert recipe.board_sources() == ["real"]  # deeppcb templates by default, not the folder


def test_balance_weights_name_known_classes_that_are_drawn():
    recipe = load_recipe(text=ONE_SOURCE + "synth: {classes: [open, short], "
                                           "balance: {open: 3, short: 1}}\n")
    assert recipe.synth.balance == {"open": 3, "short": 1}
    assert "balance names 'spur'" in _error(
        ONE_SOURCE + "synth: {classes: [open, short], balance: {spur: 1}}\n")


def test_defects_per_mp_replaces_the_count_per_image():
    recipe = load_recipe(text=ONE_SOURCE + "synth: {defects_per_mp: [7.3, 29.3]}\n")
    assert recipe.synth.defects_per_mp == (7.3, 29.3)
    assert recipe.synth.defects_per_image is None
    assert load_recipe(text=recipe_yaml(recipe)) == recipe  # null count, density: loads again
    assert load_recipe(text=ONE_SOURCE).synth.defects_per_image == (3, 12)
    assert "synth: give defects_per_image or defects_per_mp, not both" in _error(
        ONE_SOURCE + "synth: {defects_per_image: [3, 12], defects_per_mp: [7.3, 29.3]}\n")
    assert "synth.defects_per_mp: must be 0 < min <= max" in _error(
        ONE_SOURCE + "synth: {defects_per_mp: [5, 2]}\n")
    assert "synth.defects_per_image: must be 1 <= min <= max <= 255" in _error(
        ONE_SOURCE + "synth: {defects_per_image: [0, 3]}\n")


def test_the_synth_stage_draws_the_recipe_s_density(tmp_path):
    """The recipe's density reaches the synthesis settings, and ``balance: fill`` counts
    the defects it asks for from each board's size."""
    import cv2
    import numpy as np

    from pcbforge.pipeline.stages import synth_config
    from pcbforge.synth.pipeline import Board

    boards = []
    for index, size in enumerate((640, 1280)):
        file = tmp_path / f"board_{index}.png"
        cv2.imwrite(str(file), np.full((size, size), 255, np.uint8))
        boards.append(Board(str(file), f"templates/board_{index}.png", f"g{index}"))
    recipe = load_recipe(text=ONE_SOURCE + "synth: {images: 4, classes: [open, short], "
                                           "defects_per_mp: [10, 10], balance: fill}\n")
    config = synth_config(recipe, boards, None, {"open": 20})
    assert config.defects_per_mp == (10.0, 10.0) and config.defects_per_image is None
    # 2 images of 4 (0.4096 MP) and 2 of 16 (1.6384 MP) defects: 40 asked, 60 with the
    # real 20 opens, 30 per class: every synthetic open 10, every short 30.
    assert config.class_weights == (10.0, 30.0)
    per_image = synth_config(load_recipe(text=ONE_SOURCE), boards, None, {})
    assert per_image.defects_per_image == (3, 12) and per_image.defects_per_mp is None


def test_export_templates_default_to_negatives_and_pair_where_the_formats_can():
    assert load_recipe(text=ONE_SOURCE).export.templates == "negatives"
    recipe = load_recipe(text=ONE_SOURCE + "export: {formats: [coco, yolo, deeppcb], "
                                           "templates: pair}\n")
    assert recipe.export.templates == "pair"
    assert load_recipe(text=recipe_yaml(recipe)) == recipe
    assert "templates: pair\n" in recipe_yaml(recipe)
    assert ("export: templates: pair: a voc export cannot write templates that way (formats "
            "that can: coco, yolo, deeppcb)") in _error(
        ONE_SOURCE + "export: {formats: [coco, voc], templates: pair}\n")
    assert "export: templates: omit: a deeppcb export cannot" in _error(
        ONE_SOURCE + "export: {formats: [deeppcb], templates: omit}\n")
    assert "export.templates: Input should be 'pair', 'negatives' or 'omit'" in _error(
        ONE_SOURCE + "export: {templates: both}\n")


def test_the_qa_section_is_on_by_default_and_holds_the_qa_thresholds():
    from pcbforge.qa.params import QAParams

    assert load_recipe(text=ONE_SOURCE).qa.enabled
    recipe = load_recipe(text=ONE_SOURCE + "qa: {enabled: false, diff_threshold: 40, "
                                           "copper: light}\n")
    assert not recipe.qa.enabled
    assert recipe.qa.params() == QAParams(diff_threshold=40, copper="light")
    assert load_recipe(text=recipe_yaml(recipe)) == recipe
    message = _error(ONE_SOURCE + "qa: {enable: false}\n")
    assert "unknown key 'enable' in qa (did you mean 'enabled'?)" in message
    assert "diff_threshold" in message and message.endswith("enabled")


def test_cli_prints_the_recipe_error_and_exits_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(ONE_SOURCE + "export: {format: [coco]}\n")
    result = CliRunner().invoke(app, ["build", str(bad), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "unknown key 'format' in export (did you mean 'formats'?)" in result.output
    assert not (tmp_path / "out").exists()


def test_cli_shows_the_filled_in_default_recipe():
    result = CliRunner().invoke(app, ["build", "--show-recipe"])
    assert result.exit_code == 0, result.output
    assert load_recipe(text=result.output) == load_recipe()
