"""Tests for ``pcbforge synth defects`` (defects on good boards), ``pcbforge synth boards``
and the old form ``pcbforge synth --boards``."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from typer.testing import CliRunner

from pcbforge.cli.main import app
from pcbforge.datasets import load

runner = CliRunner()


@pytest.fixture(scope="module")
def boards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli") / "boards"
    result = runner.invoke(app, ["synth", "boards", "--out", str(folder), "--count", "2",
                                 "--size", "320", "--seed", "5"])
    assert result.exit_code == 0, result.output
    assert "wrote 2 boards" in result.output
    return folder


def _one_error_line(output: str) -> str:
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    assert lines[0].startswith("error:") and "Traceback" not in output
    return lines[0]


def test_boards_command_writes_seeded_boards(boards, tmp_path) -> None:
    assert sorted(p.name for p in boards.iterdir()) == ["board_000000.png", "board_000001.png"]
    again = tmp_path / "again"
    result = runner.invoke(app, ["synth", "boards", "-o", str(again), "--count", "1",
                                 "--size", "320", "--seed", "5"])
    assert result.exit_code == 0, result.output
    assert (again / "board_000000.png").read_bytes() == (boards / "board_000000.png"
                                                         ).read_bytes()


def test_synth_writes_a_dataset_and_its_report(boards, tmp_path) -> None:
    out = tmp_path / "dataset"
    result = runner.invoke(app, ["synth", "defects", "--boards", str(boards), "--out", str(out),
                                 "--count", "4", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert "synth: 4 images from 2 boards" in result.output
    assert "report:" in result.output
    report = json.loads((out / "synth_report.json").read_text())
    assert report["images"] == 4 and report["seed"] == 1 and report["failed_images"] == []
    dataset = load(out, check_files=True)
    assert (dataset.samples["role"] == "tested").sum() == 4
    assert len(dataset.labels) == report["defects_total"] > 0
    # Same command, same seed: the same bytes (re-running into its own output is allowed).
    images = {p.name: p.read_bytes() for p in (out / "images").iterdir()}
    again = runner.invoke(app, ["synth", "defects", "--boards", str(boards), "--out", str(out),
                                "--count", "4", "--seed", "1"])
    assert again.exit_code == 0, again.output
    assert {p.name: p.read_bytes() for p in (out / "images").iterdir()} == images


def test_options_reach_the_config(boards, tmp_path) -> None:
    out = tmp_path / "dataset"
    result = runner.invoke(app, ["synth", "defects", "--boards", str(boards), "--out", str(out),
                                 "--count", "2", "--seed", "2", "--classes", "spur, short",
                                 "--defects-per-image", "4", "--box", "tight",
                                 "--no-nuisance", "--format", "jpg", "--etch-px", "-1,1"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "synth_report.json").read_text())
    config = report["config"]
    assert config["classes"] == ["spur", "short"]
    assert config["defects_per_image"] == [4, 4] and config["etch_px"] == [-1, 1]
    assert config["box"] == "tight" and config["nuisance"]["enabled"] is False
    labels = pd.read_parquet(out / "labels.parquet")
    assert set(labels["label"]) <= {"spur", "short"} and len(labels) > 0
    for label in labels.itertuples():
        assert [label.x1, label.y1, label.x2, label.y2] == json.loads(label.params)["tight_box"]
    samples = pd.read_parquet(out / "samples.parquet")
    assert samples.loc[samples["role"] == "tested", "path"].str.endswith(".jpg").all()


def test_defects_per_mp_reaches_the_config_and_the_labels(boards, tmp_path) -> None:
    out = tmp_path / "dataset"
    result = runner.invoke(app, ["synth", "defects", "--boards", str(boards), "--out", str(out),
                                 "--count", "2", "--defect-free-share", "0",
                                 "--defects-per-mp", "40"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "synth_report.json").read_text())
    assert report["config"]["defects_per_mp"] == [40.0, 40.0]
    assert report["config"]["defects_per_image"] is None
    assert report["defects_requested"] == 2 * 4  # 40 x 0.1024 MP (320 x 320), rounded
    labels = pd.read_parquet(out / "labels.parquet")
    assert all(json.loads(p)["defects_per_mp"] == [40.0, 40.0] for p in labels["params"])


def test_defect_free_share_and_background_reach_the_config(boards, tmp_path) -> None:
    out = tmp_path / "dataset"
    result = runner.invoke(app, ["synth", "defects", "--boards", str(boards), "--out", str(out),
                                 "--count", "4", "--defect-free-share", "1",
                                 "--no-background"])
    assert result.exit_code == 0, result.output
    assert "4 defect-free images" in result.output
    report = json.loads((out / "synth_report.json").read_text())
    assert report["config"]["defect_free_share"] == 1.0
    assert report["config"]["background"]["enabled"] is False
    assert report["defects_total"] == 0 and report["nuisance_regions"] == 0
    samples = pd.read_parquet(out / "samples.parquet")
    tested = samples[samples["role"] == "tested"]
    assert len(tested) == 4 and (tested["nuisance_regions"] == "[]").all()
    assert len(pd.read_parquet(out / "labels.parquet")) == 0


@pytest.mark.parametrize("painted", [True, False])
def test_brush_and_painting_reach_the_config(boards, tmp_path, painted) -> None:
    out = tmp_path / "dataset"
    result = runner.invoke(app, ["synth", "defects", "--boards", str(boards), "--out", str(out),
                                 "--count", "3", "--defect-free-share", "0", "--no-brush",
                                 "--painted" if painted else "--scanned"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "synth_report.json").read_text())
    assert report["config"]["painted_defects"] is painted
    assert report["config"]["brush"]["probabilities"] == {}
    labels = pd.read_parquet(out / "labels.parquet")
    assert len(labels) and not any("brush" in json.loads(p) for p in labels["params"])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--classes", "foo"], r"unknown defect class 'foo'"),
        (["--classes", "spur,foo"], r"valid classes: open, short, mousebite, spur, copper"),
        (["--defects-per-image", "5-2"], r"defects.per.image.*5-2"),
        (["--defects-per-image", "0"], r"defects.per.image"),
        (["--defects-per-image", "three"], r"--defects-per-image must be N or MIN-MAX"),
        (["--defects-per-image", "1-2-3"], r"--defects-per-image must be N or MIN-MAX"),
        (["--etch-px", "one"], r"--etch-px must be N or MIN,MAX"),
        (["--etch-px", "2,1"], r"etch.px.*2, 1"),
        (["--etch-px", "0,9"], r"etch.px.*-8 <= min <= max <= 8"),
        (["--box", "loose"], r"box.*loose"),
        (["--copper", "shiny"], r"copper.*shiny"),
        (["--px-per-mm", "-3"], r"px.per.mm"),
        (["--augment", "nope"], r"unknown augment preset 'nope'"),
        (["--format", "bmp"], r"png.*bmp"),
        (["--count", "0"], r"count must be >= 1"),
        (["--defect-free-share", "1.5"], r"defect.free.share"),
        (["--defects-per-image", "3-12", "--defects-per-mp", "7.3,29.3"],
         r"give --defects-per-image or --defects-per-mp, not both"),
        (["--defects-per-mp", "dense"], r"--defects-per-mp must be D or MIN,MAX"),
        (["--defects-per-mp", "1,2,3"], r"--defects-per-mp must be D or MIN,MAX"),
        (["--defects-per-mp", "9,2"], r"defects.per.mp.*0 < min <= max"),
        (["--defects-per-mp", "0"], r"defects.per.mp.*0 < min <= max"),
    ],
    ids=["unknown_class", "one_unknown_class", "min_above_max", "zero_defects",
         "not_a_number", "three_parts", "etch_not_a_number", "etch_min_above_max",
         "etch_too_far", "bad_box", "bad_copper", "negative_px_per_mm",
         "unknown_augment", "bad_format", "zero_count", "share_above_one",
         "count_and_density", "density_not_a_number", "density_three_parts",
         "density_min_above_max", "zero_density"],
)
def test_bad_option_is_one_clear_line_and_exit_2(boards, tmp_path, extra, message) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["synth", "defects", "--boards", str(boards), "--out", str(out),
                                 "--count", "2", *extra])
    assert result.exit_code == 2, result.output
    assert re.search(message, _one_error_line(result.output))
    assert not out.exists()


@pytest.mark.parametrize(
    ("extra", "option"),
    [(["--defects-per-image", "5-2"], "defects_per_image"), (["--box", "loose"], "box")],
    ids=["defects_per_image", "box"],
)
def test_range_error_names_its_option_not_the_whole_config(boards, tmp_path, extra,
                                                           option) -> None:
    result = runner.invoke(app, ["synth", "defects", "--boards", str(boards), "--out",
                                 str(tmp_path / "out"), *extra])
    line = _one_error_line(result.output)
    assert f"invalid option {option}:" in line
    assert "'nuisance'" not in line and "'augment'" not in line


def test_bad_workers_is_one_clear_line_and_writes_nothing(boards, tmp_path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["synth", "defects", "--boards", str(boards), "--out", str(out),
                                 "--count", "1", "--workers", "-1"])
    assert result.exit_code == 2, result.output
    assert "workers" in _one_error_line(result.output)
    assert not out.exists()


def test_refuses_an_output_that_is_not_ours(boards, tmp_path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "keep.txt").write_text("keep")
    result = runner.invoke(app, ["synth", "defects", "--boards", str(boards), "--out", str(out),
                                 "--count", "1"])
    assert result.exit_code == 2, result.output
    assert "not an earlier `pcbforge synth` output" in _one_error_line(result.output)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_missing_boards_or_out(boards, tmp_path) -> None:
    result = runner.invoke(app, ["synth", "defects", "--boards", str(boards)])
    assert result.exit_code == 2
    assert "Missing option '--out'" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["synth", "defects", "--boards", str(tmp_path / "nowhere"), "--out",
                                 str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "Invalid value for '--boards'" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_empty_boards_folder_is_one_clear_line(tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["synth", "defects", "--boards", str(tmp_path / "empty"), "--out",
                                 str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "no good boards" in _one_error_line(result.output)


@pytest.mark.parametrize("args", [["synth", "defects"], ["synth", "boards"]],
                         ids=["defects", "boards"])
def test_no_arguments_shows_help(args) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code in (0, 2)
    assert "Usage" in result.output and "--out" in result.output
    assert "error:" not in result.output


@pytest.mark.parametrize("args", [["synth"], ["synth", "--help"]], ids=["bare", "help"])
def test_synth_help_lists_its_subcommands_and_no_options_of_theirs(args) -> None:
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code in (0, 2)
    assert "error:" not in result.output and "note:" not in result.output
    for word in ("defects", "boards", "messy"):
        assert word in result.output
    assert "--classes" not in result.output and "--count" not in result.output


def test_defects_help_lists_its_options() -> None:
    result = runner.invoke(app, ["synth", "defects", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for word in ("--boards", "--classes", "--defects-per-image", "--workers"):
        assert word in result.output


def test_the_old_form_runs_defects_and_says_so(boards, tmp_path) -> None:
    """``synth --boards`` sat beside the ``synth boards`` sub-command: it is now
    ``synth defects --boards``, and the old form still works, with a one-line note."""
    args = ["--boards", str(boards), "--count", "2", "--seed", "3"]
    new = runner.invoke(app, ["synth", "defects", *args, "--out", str(tmp_path / "new")])
    old = runner.invoke(app, ["synth", *args, "--out", str(tmp_path / "old")])
    assert new.exit_code == 0 and old.exit_code == 0, old.output
    assert "note:" not in new.stderr
    note = old.stderr.strip()
    assert note.startswith("note: `pcbforge synth --boards ...` is now `pcbforge synth "
                           "defects --boards ...`") and "\n" not in note, note
    for name in ("samples.parquet", "labels.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "new" / name),
                                      pd.read_parquet(tmp_path / "old" / name))
    images = sorted(p.name for p in (tmp_path / "new" / "images").iterdir())
    assert images == sorted(p.name for p in (tmp_path / "old" / "images").iterdir())
    assert all((tmp_path / "new" / "images" / n).read_bytes()
               == (tmp_path / "old" / "images" / n).read_bytes() for n in images)


@pytest.mark.parametrize("command", ["synth", "boards"])
def test_a_full_disk_is_one_line_exit_74_and_leaves_nothing(boards, small_disk,
                                                            command) -> None:
    """Issue 25, failure 3: the synth command (a group callback, which the CLI's common
    guard did not reach) ended in a traceback and left partial images."""
    # All but 96 KiB taken: a few images fill the rest.
    (small_disk / "filler").write_bytes(b"\0" * ((4 << 20) - (96 << 10)))
    out = small_disk / "out"
    args = (["synth", "defects", "--boards", str(boards)] if command == "synth"
            else ["synth", "boards", "--size", "320"])
    result = runner.invoke(app, [*args, "--count", "60", "--out", str(out), "--seed", "1"])
    assert result.exit_code == 74, result.output
    line = result.stderr.strip()
    assert line.startswith("error: no space left on device: ") and "\n" not in line, line
    assert "Traceback" not in result.output
    assert [p.name for p in small_disk.iterdir()] == ["filler"]


def test_boards_refuses_a_folder_of_other_files(tmp_path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "keep.txt").write_text("keep")
    result = runner.invoke(app, ["synth", "boards", "--out", str(out), "--count", "1"])
    assert result.exit_code == 2, result.output
    assert "not procedural boards" in _one_error_line(result.output)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_boards_style_colour_writes_colour_boards_with_their_layout(tmp_path) -> None:
    from pcbforge.synth.colour import layout_from_png

    args = ["synth", "boards", "--count", "2", "--size", "200", "--seed", "5",
            "--style", "colour", "--mask", "blue", "--finish", "enig"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    assert "wrote 2 boards (200x200 colour PNG, blue mask, enig finish)" in result.output
    again = runner.invoke(app, [*args, "--out", str(tmp_path / "b")])
    assert again.exit_code == 0, again.output
    for name in ("board_000000.png", "board_000001.png"):
        data = (tmp_path / "a" / name).read_bytes()
        assert data == (tmp_path / "b" / name).read_bytes()
        layout = layout_from_png(data)
        assert layout.params["mask"] == "blue" and layout.params["finish"] == "enig"


def test_boards_colour_choices_are_the_registrys() -> None:
    from pcbforge.cli.synth import Finish, MaskColour
    from pcbforge.synth.colour import FINISHES, MASK_COLOURS

    assert [m.value for m in MaskColour] == [*MASK_COLOURS, "any"]
    assert [f.value for f in Finish] == [*FINISHES, "any"]


def test_boards_refuses_an_unknown_mask_colour(tmp_path) -> None:
    result = runner.invoke(app, ["synth", "boards", "--out", str(tmp_path / "x"),
                                 "--style", "colour", "--mask", "purple"])
    assert result.exit_code == 2 and "purple" in result.output
    assert not (tmp_path / "x").exists()
