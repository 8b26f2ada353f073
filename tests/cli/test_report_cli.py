"""``pcbforge report``: the report section of a build's recipe copy, read below the CLI."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from pcbforge.cli.main import app
from pcbforge.pipeline import RecipeError, report_settings
from pcbforge.pipeline.recipe import ReportSection

runner = CliRunner()


def test_a_folder_without_a_recipe_gets_the_defaults(tmp_path) -> None:
    assert report_settings(tmp_path) == ReportSection()


def test_the_recipe_copy_sets_the_section(tmp_path) -> None:
    (tmp_path / "recipe.yaml").write_text("name: x\nreport:\n  examples_per_class: 2\n")
    assert report_settings(tmp_path).examples_per_class == 2


@pytest.mark.parametrize("text", ["report: [1, 2", "report:\n  no_such_setting: 1\n", "- a\n"],
                         ids=["bad_yaml", "unknown_setting", "not_a_mapping"])
def test_an_unreadable_recipe_copy_is_one_line_naming_it(tmp_path, text) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text)
    with pytest.raises(RecipeError, match="recipe.yaml"):
        report_settings(tmp_path)
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(recipe) in lines[0]
