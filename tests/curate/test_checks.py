"""The CHECKS registry: built-in checks, the CLI options made from it, and a toy check
added in one place (the ``too_wide`` fixture) that reaches the samples table."""

import cv2
import numpy as np
import pandas as pd
import pytest
import typer
from pydantic import Field

from pcbforge.cli.curate import curate_command
from pcbforge.curate.inspect import InspectParams
from pcbforge.curate.quality import (
    CHECKS,
    SCORE_COLUMNS,
    CheckName,
    Measured,
    QualityCheck,
    QualityThresholds,
    apply_checks,
    get_check,
    register_check,
)
from pcbforge.curate.runner import CurateParams, curate
from pcbforge.datasets.samples import read_samples


class WideThresholds(QualityThresholds):
    """The built-in thresholds plus the toy check's."""

    max_aspect: float = Field(3.0, gt=1, description="Long/short side above this is too_wide.")


TOO_WIDE = QualityCheck(
    name="too_wide",
    measure=lambda m: max(m.width, m.height) / min(m.width, m.height),
    score_column="aspect_score",
    threshold="max_aspect",
    flagged_when="above",
    help="Long side over short side above this is too_wide.",
)


@pytest.fixture
def too_wide():
    """The toy check, registered for one test (inline runs see it: workers=1)."""
    register_check(TOO_WIDE)
    yield TOO_WIDE
    del CHECKS[TOO_WIDE.name]


def _write(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(".png", image)
    assert ok
    path.write_bytes(data.tobytes())


@pytest.fixture
def wide_and_square(tmp_path):
    rng = np.random.default_rng(7)
    src = tmp_path / "src"
    _write(src / "square.png", rng.integers(0, 256, (120, 120), dtype=np.uint8))
    _write(src / "strip.png", rng.integers(0, 256, (60, 300), dtype=np.uint8))
    _write(src / "blank.png", np.full((60, 300), 255, np.uint8))  # blank comes first
    return src


def test_a_toy_check_reaches_the_samples_table(too_wide, wide_and_square, tmp_path):
    params = CurateParams(workers=1, inspect=InspectParams(quality=WideThresholds()))
    result = curate(wide_and_square, tmp_path / "dataset", params)
    samples = read_samples(tmp_path / "dataset").set_index("path")
    assert samples.loc["strip.png", "aspect_score"] == pytest.approx(5.0)
    assert samples.loc["square.png", "aspect_score"] == pytest.approx(1.0)
    assert tuple(samples.loc["strip.png", ["status", "reason", "low_quality_reason"]]) == (
        "low_quality", "too_wide", "too_wide")
    assert samples.loc["square.png", "status"] == "ok"
    # Registry order: blank is checked before the toy check, which still gets its score.
    assert samples.loc["blank.png", "reason"] == "blank"
    assert samples.loc["blank.png", "aspect_score"] == pytest.approx(5.0)
    assert result.report["reasons"]["low_quality/too_wide"] == 1


def test_the_toy_threshold_is_honoured(too_wide):
    thumb = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    from pcbforge.curate.quality import quality_scores

    measured = Measured(thumb, quality_scores(thumb), 300, 60)
    assert apply_checks(measured, WideThresholds())[1] == "too_wide"
    scores, reason = apply_checks(measured, WideThresholds(max_aspect=6))
    assert (scores["aspect_score"], reason) == (5.0, "")


def test_a_check_whose_threshold_is_missing_says_which(too_wide):
    thumb = np.zeros((8, 8), np.uint8) + 128
    from pcbforge.curate.quality import quality_scores

    measured = Measured(thumb, quality_scores(thumb), 300, 60)
    with pytest.raises(KeyError, match="'max_aspect'.*QualityThresholds: min_side"):
        apply_checks(measured, QualityThresholds())


def test_built_in_checks_add_no_columns(wide_and_square, tmp_path):
    result = curate(wide_and_square, tmp_path / "dataset", CurateParams(workers=1))
    score_columns = sorted(c for c in result.samples.columns if c.endswith("_score"))
    assert score_columns == sorted((*SCORE_COLUMNS, "content_score"))


def test_registry_order_and_thresholds_match_the_params_model():
    assert list(CHECKS) == list(CheckName)
    assert [CHECKS[name].name for name in CheckName] == [name.value for name in CheckName]
    assert [check.threshold for check in CHECKS.values()] == list(QualityThresholds.model_fields)


def test_unknown_check_lists_the_valid_ones():
    assert get_check("blank") is CHECKS[CheckName.blank]
    with pytest.raises(KeyError, match="unknown quality check 'blurry'; expected one of: "
                                       "too_small, blank, too_dark, too_bright"):
        get_check("blurry")


def test_registering_a_taken_name_or_column_raises():
    with pytest.raises(ValueError, match="'blank' is already registered"):
        register_check(CHECKS[CheckName.blank])
    clash = QualityCheck("dim", lambda m: 0.0, "dark_score", "dark_max", "below", "")
    with pytest.raises(ValueError, match="'dark_score' of 'dim' is already written"):
        register_check(clash)
    badly_named = QualityCheck("dim", lambda m: 0.0, "dimness", "dark_max", "below", "")
    with pytest.raises(ValueError, match="ending in '_score', got 'dimness'"):
        register_check(badly_named)
    assert "dim" not in CHECKS


def test_curate_cli_offers_one_option_per_check():
    app = typer.Typer()
    app.command()(curate_command)
    options = {p.name: p for p in typer.main.get_command(app).params}
    for check in CHECKS.values():
        option = options[check.threshold]
        assert option.help == check.help
        assert option.default == QualityThresholds.model_fields[check.threshold].default
        assert option.opts == ["--" + check.threshold.replace("_", "-")]


def test_cli_thresholds_reach_the_params(tmp_path, wide_and_square):
    from typer.testing import CliRunner

    from pcbforge.cli.main import app

    out = tmp_path / "dataset"
    result = CliRunner().invoke(app, ["curate", str(wide_and_square), "--out", str(out),
                                      "--workers", "1", "--min-side", "100"])
    assert result.exit_code == 0, result.output
    samples = pd.read_parquet(out / "samples.parquet").set_index("path")
    assert samples.loc["strip.png", "reason"] == "too_small"  # 60 px < 100
    assert samples.loc["square.png", "status"] == "ok"
