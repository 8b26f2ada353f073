"""``audit --verify``: every image is hashed again; one whose bytes changed, that vanished
or that can no longer be read is named, and the command exits 3."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from pcbforge.audit import audit
from pcbforge.cli.audit import EXIT_IMAGES_CHANGED
from pcbforge.cli.main import app
from pcbforge.curate import CurateParams, curate
from pcbforge.synth.boards import draw_board

runner = CliRunner()


@pytest.fixture
def curated(tmp_path):
    """Four boards curated (their rows carry sha256); the images stay in src/."""
    rng = np.random.default_rng(5)
    (tmp_path / "src").mkdir()
    for n in range(4):
        cv2.imwrite(str(tmp_path / "src" / f"board{n}.png"), draw_board(rng, 128))
    curate(tmp_path / "src", tmp_path / "ds", CurateParams(workers=1))
    return tmp_path


def _verify(root) -> tuple[int, str, dict]:
    run = runner.invoke(app, ["audit", str(root / "ds"), "--verify", "--workers", "1"])
    return run.exit_code, run.output, json.loads((root / "ds" / "audit.json").read_text())


def test_untouched_images_pass(curated):
    code, output, report = _verify(curated)
    assert code == 0, output
    assert "all 4 images match their sha256" in output
    assert report["images_intact"] and report["integrity"]["images"] == 4
    assert report["integrity"]["mismatches"] == []
    assert report["leak_check"].startswith("skipped")


def test_a_changed_image_is_named(curated):
    image = curated / "src" / "board2.png"
    data = bytearray(image.read_bytes())
    data[-20] ^= 0xFF
    image.write_bytes(bytes(data))
    code, output, report = _verify(curated)
    assert code == EXIT_IMAGES_CHANGED, output
    assert "board2.png" in output and "changed" in output
    assert [(m["path"], m["problem"]) for m in report["integrity"]["mismatches"]] == [
        ("board2.png", "changed")]
    assert not report["images_intact"]


def test_a_deleted_image_is_named(curated):
    (curated / "src" / "board1.png").unlink()
    code, output, report = _verify(curated)
    assert code == EXIT_IMAGES_CHANGED, output
    assert [(m["path"], m["problem"]) for m in report["integrity"]["mismatches"]] == [
        ("board1.png", "missing")]


def test_a_fifo_in_an_image_s_place_is_named_without_waiting(curated):
    image = curated / "src" / "board0.png"
    image.unlink()
    os.mkfifo(image)
    report = audit(curated / "ds", verify=True)
    [found] = report["integrity"]["mismatches"]
    assert found["path"] == "board0.png" and found["problem"] == "unreadable"
    assert "FIFO" in found["detail"]


def test_verify_runs_with_the_leak_search_after_a_split(curated):
    assert runner.invoke(app, ["split", str(curated / "ds"), "--ratios", "0.5,0.25,0.25"]
                         ).exit_code == 0
    (curated / "src" / "board3.png").write_bytes(b"replaced")
    run = runner.invoke(app, ["audit", str(curated / "ds"), "--verify", "--workers", "1"])
    assert run.exit_code == EXIT_IMAGES_CHANGED, run.output
    report = json.loads((curated / "ds" / "audit.json").read_text())
    assert report["leak_check"] == "done"
    assert [m["path"] for m in report["integrity"]["mismatches"]] == ["board3.png"]


def test_without_verify_nothing_is_hashed(curated):
    assert runner.invoke(app, ["split", str(curated / "ds"), "--ratios", "0.5,0.25,0.25"]
                         ).exit_code == 0
    report = audit(curated / "ds")
    assert "integrity" not in report and "images_intact" not in report


def test_audit_is_refused_while_another_writer_runs(curated):
    """Before: audit wrote audit.json into a folder another command was writing."""
    from tests.test_split_output import _hold_lock

    holder = _hold_lock(curated / "ds")
    try:
        run = runner.invoke(app, ["audit", str(curated / "ds"), "--verify", "--workers", "1"])
    finally:
        holder.kill()
        holder.wait()
    assert run.exit_code == 75, run.output
    assert "is being written by another pcbforge process" in run.output
    assert not (curated / "ds" / "audit.json").exists()
    # Only the dead holder's lock file is left; the next writer takes it over.
    assert sorted(n for n in os.listdir(curated) if n.startswith(".ds.")) == [".ds.lock"]
