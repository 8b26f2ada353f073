"""``build`` and ``report`` as writers among the others: one writer lock per folder for
every command, a build that is killed leaves a folder the readers refuse and the next
build finishes, leftovers of killed runs go away, and ``report`` is staged whole."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pcbforge.cli.main import app
from pcbforge.core import EXIT_BUSY, EXIT_STORAGE, OutputBusyError, OutputLock
from pcbforge.pipeline import build
from pcbforge.pipeline.recipe import load_recipe
from tests.pipeline.conftest import SMALL_RECIPE, output_hashes

REPO = Path(__file__).resolve().parents[2]
RUNNING = Path(".build") / "running.json"


def _python(script: str, *args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *map(str, args)],
                            cwd=REPO, start_new_session=True, **popen)


def _wait_for(path: Path, process: subprocess.Popen, what: str, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            pytest.fail(f"{what}: the process ended (code {process.returncode}) first")
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(0.02)


@contextmanager
def _held_lock(out: Path, tmp_path: Path, command: str = "curate"):
    """Another process holding the writer lock of ``out``, as every command takes it."""
    ready = tmp_path / f"lock-ready-{out.name}"
    holder = _python("""
        import sys, pathlib
        from pcbforge.core import OutputLock
        with OutputLock(sys.argv[1], command=sys.argv[2]):
            pathlib.Path(sys.argv[3]).touch()
            sys.stdin.read()
        """, out, command, ready, stdin=subprocess.PIPE)
    try:
        _wait_for(ready, holder, "the lock holder")
        yield holder
    finally:
        holder.stdin.close()
        holder.wait(30)


def _copy_build(small_build, target: Path) -> Path:
    _, out = small_build
    shutil.copytree(out, target, symlinks=True)
    return target


def test_a_build_is_refused_while_another_process_writes_its_folder(small_recipe, tmp_path):
    out = tmp_path / "ds"
    with _held_lock(out, tmp_path, "curate"):
        with pytest.raises(OutputBusyError, match="being written by another pcbforge process"):
            build(out, small_recipe, workers=1)
        recipe = tmp_path / "small.yaml"
        recipe.write_text(SMALL_RECIPE)
        result = CliRunner().invoke(app, ["build", str(recipe), "--out", str(out), "--quiet"])
    assert result.exit_code == EXIT_BUSY, result.output
    text = " ".join(result.output.split())
    assert "being written by another pcbforge process" in text and "`curate`" in text
    assert not out.exists()  # the refused build wrote nothing


def test_other_writers_are_refused_while_a_build_runs_and_its_kill_frees_the_folder(
        small_build, tmp_path):
    """A real rebuild over a complete build, paused as its first stage starts: a second
    build, a curate and a report into its folder are refused (exit 75, naming the
    build); killed there, its lock is taken over and its marker says the folder is not a
    complete build."""
    import cv2
    import numpy as np

    out = _copy_build(small_build, tmp_path / "ds")
    ready, go = tmp_path / "paused", tmp_path / "go"
    recipe_text = SMALL_RECIPE + "export: {formats: [coco, yolo, voc]}\n"
    builder = _python("""
        import sys, time, pathlib
        from pcbforge.pipeline import build
        from pcbforge.pipeline.recipe import load_recipe
        out, ready, go, text = sys.argv[1:5]
        def on_stage(number, stage, event, result):
            if event == "start" and not pathlib.Path(ready).exists():
                pathlib.Path(ready).touch()
                while not pathlib.Path(go).exists():
                    time.sleep(0.02)
        build(out, load_recipe(text=text), workers=1, on_stage=on_stage)
        """, out, ready, go, recipe_text, stdin=subprocess.DEVNULL)
    try:
        _wait_for(ready, builder, "the build's first stage")
        src = tmp_path / "src"
        src.mkdir()
        cv2.imwrite(str(src / "board.png"), np.full((64, 64), 200, np.uint8))
        recipe = tmp_path / "small.yaml"
        recipe.write_text(SMALL_RECIPE)
        curated = CliRunner().invoke(app, ["curate", str(src), "--out", str(out),
                                           "--workers", "1"])
        assert curated.exit_code == 2  # never replaces a build folder, running or not
        assert "is a `pcbforge build` folder" in " ".join(curated.output.split())
        for args in (["build", str(recipe), "--out", str(out), "--quiet"],
                     ["report", str(out), "--quiet"]):
            result = CliRunner().invoke(app, args)
            assert result.exit_code == EXIT_BUSY, (args, result.output)
            text = " ".join(result.output.split())
            assert f"pid {builder.pid}" in text and "`build`" in text, text
        assert json.loads((out / RUNNING).read_text())["pid"] == builder.pid
    finally:
        os.killpg(builder.pid, signal.SIGKILL)
        builder.wait(30)
    assert (out / RUNNING).is_file()  # killed: the folder is not a complete build
    with OutputLock(out, command="test"):  # the dead build's lock is taken over
        pass


def test_a_build_killed_while_publishing_is_finished_by_the_next_one(small_build, tmp_path):
    """Killed (SIGKILL) in the export stage of a rebuild over a complete build (the top
    files are being replaced): the marker stays, and the next build completes with the
    bytes of a build that was never interrupted."""
    recipe_text = SMALL_RECIPE + "export: {formats: [coco, yolo, voc]}\n"
    recipe_file = tmp_path / "more.yaml"
    recipe_file.write_text(recipe_text)
    recipe = load_recipe(recipe_file)
    for side in ("reference", "killed"):
        (tmp_path / side).mkdir()
    reference = _copy_build(small_build, tmp_path / "reference" / "dataset")
    assert build(reference, recipe, workers=1).ran == ["export", "report"]
    expected = output_hashes(reference)

    out = _copy_build(small_build, tmp_path / "killed" / "dataset")  # the report names it
    log = tmp_path / "killed.log"
    builder = _python("from pcbforge.cli.main import main; main()", "build", recipe_file,
                      "--out", out, "--quiet", stdin=subprocess.DEVNULL,
                      stdout=log.open("w"), stderr=subprocess.STDOUT)
    exported = out / ".build" / "state" / "export.json"
    deadline = time.monotonic() + 120
    while exported.exists():  # removed when the export stage starts
        if builder.poll() is not None or time.monotonic() > deadline:
            os.killpg(builder.pid, signal.SIGKILL)
            pytest.fail(f"the export stage did not start:\n{log.read_text()}")
        time.sleep(0.005)
    time.sleep(0.2)  # into the stage: the dataset files and exports being replaced
    os.killpg(builder.pid, signal.SIGKILL)
    builder.wait(30)
    assert (out / RUNNING).is_file(), log.read_text()

    resumed = build(out, recipe, workers=1)
    # The kill fell in the export stage, or (on a fast machine) just after it finished.
    assert resumed.ran in (["export", "report"], ["report"])
    assert not (out / RUNNING).exists()
    got = output_hashes(out)
    # Only files that name the build folder itself may differ (it is another folder).
    differ = sorted(k for k in set(got) | set(expected) if got.get(k) != expected.get(k))
    assert [k for k in differ if str(out).encode() not in (out / k).read_bytes()] == []


def test_a_folder_whose_build_did_not_finish_is_refused_by_the_readers(small_build, tmp_path):
    """The reader side of the running marker (``datasets.dataset.load``, so split, audit,
    export, view and report): refused with a message that says what to do."""
    from pcbforge.datasets import load
    from pcbforge.datasets.dataset import DatasetError

    out = _copy_build(small_build, tmp_path / "ds")
    (out / RUNNING).write_text(json.dumps({"command": "build", "pid": 999999999}))
    with pytest.raises(DatasetError, match="pcbforge build"):
        load(out)
    for args in (["audit", str(out), "--workers", "1"], ["split", str(out)],
                 ["export", str(out), "--format", "coco", "--out", str(tmp_path / "coco")],
                 ["report", str(out), "--quiet"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code not in (0, 1), (args, result.output)
        assert "pcbforge build" in " ".join(result.output.split()), (args, result.output)
    assert not (tmp_path / "coco").exists()


def test_leftovers_of_killed_runs_are_removed_by_the_next_build(small_build, small_recipe,
                                                                 tmp_path):
    out = _copy_build(small_build, tmp_path / "ds")
    expected = output_hashes(out)
    leftovers = [out / "stages" / ".synth.partial-999999999",  # a stage's
                 out / "stages" / "..synth.partial-9.partial-9",  # a command's inside it
                 out / ".report.partial-999999999",  # the report's
                 tmp_path / ".ds.partial-999999999"]  # another command's, beside the folder
    for folder in leftovers:
        (folder / "images").mkdir(parents=True)
        (folder / "images" / "half.png").write_bytes(b"\x89PNG half")
    (out / ".samples.parquet.abc.part").write_bytes(b"half")
    (out / ".build" / "state" / ".merge.json.abc.part").write_text("{")

    result = build(out, small_recipe, workers=1)
    assert result.ran == []
    assert [p for p in leftovers if p.exists()] == []
    assert output_hashes(out) == expected
    assert not (out / RUNNING).exists()


def test_a_failed_first_stage_leaves_the_previous_build_readable(small_build, small_recipe,
                                                                   tmp_path, monkeypatch):
    """Nothing a reader sees changed (the stage's output was never swapped in): no
    marker stays behind; a failure after a stage was swapped in keeps it."""
    import pcbforge.pipeline.stages as stages

    out = _copy_build(small_build, tmp_path / "ds")
    expected = output_hashes(out)
    (out / ".build" / "state" / "split.json").unlink()  # the split stage runs again

    def broken(ctx, folder):
        raise RuntimeError("injected failure")

    monkeypatch.setattr(stages, "run_split", broken)
    with pytest.raises(Exception, match="injected failure"):
        build(out, small_recipe, workers=1)
    assert not (out / RUNNING).exists()
    assert output_hashes(out) == expected

    monkeypatch.undo()
    monkeypatch.setattr(stages, "run_audit", broken)
    (out / ".build" / "state" / "audit.json").unlink()  # the audit stage runs again too
    with pytest.raises(Exception, match="injected failure"):
        build(out, small_recipe, workers=1)  # split swapped in, then audit failed
    assert (out / RUNNING).is_file()


# --- report ------------------------------------------------------------------------------


def test_report_is_refused_while_another_process_writes_the_dataset(small_build, tmp_path):
    out = _copy_build(small_build, tmp_path / "ds")
    expected = output_hashes(out)
    with _held_lock(out, tmp_path, "split"):
        result = CliRunner().invoke(app, ["report", str(out), "--quiet"])
    assert result.exit_code == EXIT_BUSY, result.output
    assert "`split`" in result.output
    assert output_hashes(out) == expected


def test_report_is_staged_whole_a_failure_at_its_last_write_changes_nothing(
        small_build, tmp_path, monkeypatch):
    """A full disk at the last file (report.html): the folder is as it was (old code
    had swapped report/ and replaced report.json already), nothing staged is left, and
    the CLI says so in one line with exit 74."""
    import pcbforge.pipeline.report as report_module

    out = _copy_build(small_build, tmp_path / "ds")
    recipe = out / "recipe.yaml"  # another report section: the new report differs
    recipe.write_text(recipe.read_text().replace("examples_per_class: 2",
                                                 "examples_per_class: 1"))
    expected = output_hashes(out)
    real = report_module.atomic_write

    def full_disk(path, writer):
        if Path(path).name == "report.html":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, writer)

    monkeypatch.setattr(report_module, "atomic_write", full_disk)
    result = CliRunner().invoke(app, ["report", str(out), "--quiet"])
    assert result.exit_code == EXIT_STORAGE, result.output
    assert "no space left on device" in result.output.lower()
    assert output_hashes(out) == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no stage, no lock

    monkeypatch.undo()
    result = CliRunner().invoke(app, ["report", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    changed = {k for k, v in output_hashes(out).items() if expected.get(k) != v}
    assert {"report.json", "report.html"} <= changed
    assert all(k in ("report.json", "report.html") or k.startswith("report/")
               for k in changed), changed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_report_again_gives_the_same_bytes_as_the_build(small_build, tmp_path):
    (tmp_path / "copy").mkdir()
    out = _copy_build(small_build, tmp_path / "copy" / "dataset")  # the report names it
    expected = output_hashes(out)
    result = CliRunner().invoke(app, ["report", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert output_hashes(out) == expected


# --- a DeepPCB source's groups -----------------------------------------------------------


def test_deeppcb_groups_are_imported_and_a_link_out_of_the_source_stops_the_build(tmp_path):
    """The group view's own links are accepted (the import checks roots now), but a
    link inside a group that leads out of the source is refused, naming it."""
    import numpy as np

    from pcbforge.pipeline import BuildError
    from tests.conftest import write_deeppcb_layout

    src = tmp_path / "deeppcb"
    write_deeppcb_layout(src, {"group00010": 2, "group00020": 1}, np.random.default_rng(5))
    recipe = load_recipe(text=f"""
sources:
  - {{name: real, kind: deeppcb, path: {src}, groups: [group00010]}}
synth: {{enabled: false}}
""")
    from pcbforge.pipeline.runner import BuildContext
    from pcbforge.pipeline.stages import run_source

    folder = tmp_path / "stage"
    folder.mkdir()
    summary = run_source(recipe.sources[0], BuildContext(tmp_path / "out", recipe), folder)
    assert summary["labels"] == 4 and summary["layout_problems"] == 0, summary

    secret = tmp_path / "secret.jpg"
    secret.write_bytes(b"not yours")
    (src / "group00010" / "00010" / "00010009_test.jpg").symlink_to(secret)
    with pytest.raises(BuildError, match="00010009_test.jpg.*leads out through a link"):
        build(tmp_path / "out", recipe, workers=1)
