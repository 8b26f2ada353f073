"""Resumability: a build killed (SIGKILL) in the middle of synthesis leaves no stage
marked done that is not, and running it again gives the same bytes as a build that was
never interrupted."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pcbforge.pipeline import build
from pcbforge.pipeline.recipe import load_recipe
from tests.pipeline.conftest import output_hashes

#: Enough synthetic images (one process) that synthesis runs for a few seconds.
RESUME_RECIPE = """
name: resume
seed: 3
sources:
  - {name: boards, kind: procedural, count: 3, size: 640}
synth:
  images: 48
report: {examples_per_class: 1, rejected_examples: 0}
"""


def _start_build(recipe: Path, out: Path, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-c", "from pcbforge.cli.main import main; main()", "build",
               str(recipe), "--out", str(out), "--quiet", "--workers", "1"]
    return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True,
                            cwd=Path(__file__).resolve().parents[2])


def _kill_during_synthesis(process: subprocess.Popen, out: Path, log: Path,
                           at_least: int = 4, timeout: float = 240.0) -> list[Path]:
    """SIGKILL the build (its whole process group) once synthesis has written
    ``at_least`` images into a staging folder (the stage's, or synthesize's own stage of
    it beside it); returns what is there of them (their lock files included)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        partial = sorted((out / "stages").glob("*.synth.partial-*"))
        if any(len(list((p / "images").glob("syn_*"))) >= at_least for p in partial):
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(30)
            return partial
        if process.poll() is not None:
            pytest.fail(f"the build ended (code {process.returncode}) before it could be "
                        f"killed in synthesis:\n{log.read_text()}")
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    pytest.fail(f"synthesis did not start within {timeout} s:\n{log.read_text()}")


def test_killed_in_synthesis_then_rerun_gives_the_uninterrupted_bytes(tmp_path):
    recipe_file = tmp_path / "resume.yaml"
    recipe_file.write_text(RESUME_RECIPE)
    recipe = load_recipe(recipe_file)
    out = tmp_path / "dataset"

    # The reference: an uninterrupted build at the same place, then moved away.
    reference = build(out, recipe, workers=1)
    assert "synth" in reference.ran
    expected = output_hashes(out)
    shutil.move(out, tmp_path / "reference")

    log = tmp_path / "killed.log"
    partial = _kill_during_synthesis(_start_build(recipe_file, out, log), out, log)
    state = out / ".build" / "state"
    assert sorted(p.stem for p in state.glob("*.json")) == ["source-boards"]
    assert any(p.is_dir() for p in partial)  # and synthesize's lock of its stage
    assert not (out / "stages" / "synth").exists()
    # The killed build's marker stays: its folder is not a complete build.
    assert (out / ".build" / "running.json").is_file()

    resumed = build(out, recipe, workers=1)
    assert resumed.ran == ["synth", "merge", "split", "audit", "qa", "export", "report"]
    assert not any(p.exists() for p in partial)  # the dead run's staging folders are gone
    assert not (out / ".build" / "running.json").exists()
    assert not (tmp_path / ".dataset.lock").exists()  # the writer lock, released
    got = output_hashes(out)
    assert sorted(got) == sorted(expected)
    assert [k for k in expected if got[k] != expected[k]] == []
    assert build(out, recipe, workers=1).ran == []
