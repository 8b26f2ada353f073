"""``pcbforge synth`` under a kill, a full disk and a second writer: the output folder is
always the previous complete output or the new one, never a mix (issue 25, failures 2
and 3)."""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pcbforge.core import OutputLock, storage_error
from pcbforge.synth.pipeline import REPORT_JSON, synthesize, write_boards

#: Runs the CLI in a fresh interpreter: ``python -c CLI synth ...``.
CLI = "from pcbforge.cli.main import main; main()"
BOARD_SIZE = 320
COUNT = 80


@pytest.fixture(scope="module")
def boards(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("reliability") / "boards"
    write_boards(folder, count=3, seed=2, size=BOARD_SIZE, progress=False)
    return folder


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", CLI, *args]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _files(root: Path) -> dict[str, str]:
    """The sha256 of every file of a synth output but its report (it records timings),
    by path."""
    return {p.relative_to(root).as_posix(): _digest(p) for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != REPORT_JSON}


def _new_images(out: Path, old: dict[str, str]) -> int:
    """Images written, in ``out`` or in a stage beside it, that are not the files ``old``
    had (old code wrote into ``out`` itself, new code into its stage: the kill lands
    mid-run either way)."""
    found = 0
    for folder in [out] + list(out.parent.glob(f".{out.name}.partial-*")):
        try:
            for image in (folder / "images").iterdir():
                name = f"images/{image.name}"
                found += name not in old or _digest(image) != old[name]
        except OSError:
            continue  # a stage folder appearing or going away
    return found


def _kill_when_images_appear(command: list[str], out: Path, images: int = 5) -> None:
    """Run ``command`` in its own process group and SIGKILL the whole group (workers and
    fork server too) once ``images`` new images have been written."""
    old = _files(out)
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while _new_images(out, old) < images:
            assert process.poll() is None, (
                f"the run ended (rc {process.returncode}) before the kill: "
                f"{process.stderr.read().decode()[-2000:]}")
            assert time.monotonic() < deadline, "no image written within 120 s"
            time.sleep(0.01)
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(30)
        process.stderr.close()
    # Wait for the group's other processes (pool workers) to be gone too.
    for _ in range(500):
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.01)


def test_a_killed_rerun_leaves_the_previous_output_whole(boards, tmp_path) -> None:
    """Failure 2: seed 0's output, then seed 1 into it, killed part-way. Old code wrote
    the images in place: some were seed 1's while labels.parquet stayed seed 0's."""
    out = tmp_path / "sy"
    synthesize(boards, out, count=COUNT, seed=0, workers=2, progress=False)
    seed0 = _files(out)
    assert sum(name.startswith("images/") for name in seed0) == COUNT

    _kill_when_images_appear(_cli("synth", "defects", "--boards", str(boards),
                                  "--out", str(out), "--count", str(COUNT), "--seed", "1",
                                  "--workers", "2"), out)

    assert _files(out) == seed0  # every image, both tables and the header: seed 0's
    # The next run recovers the leftovers by itself and completes; its bytes are those of
    # a run that was never interrupted.
    synthesize(boards, out, count=COUNT, seed=1, workers=2, progress=False)
    clean = tmp_path / "clean"
    synthesize(boards, clean, count=COUNT, seed=1, workers=2, progress=False)
    assert _files(out) == _files(clean)
    assert _files(out) != seed0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean", "sy"]  # nothing left


def _fill(disk: Path, leave: int = 128 << 10) -> None:
    """Take all but ``leave`` bytes of ``disk``: a few images fill the rest."""
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    (disk / "filler").write_bytes(b"\0" * max(free - leave, 0))


@pytest.mark.parametrize("workers", [1, 2])
def test_a_full_disk_ends_with_one_line_and_leaves_the_previous_output(boards, small_disk,
                                                                       workers) -> None:
    """Failure 3: old code ended in a raw (Remote)Traceback and left partial images."""
    out = small_disk / "sy"
    synthesize(boards, out, count=2, seed=0, progress=False)
    before = _files(out)
    _fill(small_disk)
    start = time.monotonic()
    done = subprocess.run(_cli("synth", "defects", "--boards", str(boards),
                               "--out", str(out), "--count", "60", "--seed", "1",
                               "--workers", str(workers)),
                          capture_output=True, text=True, timeout=120)
    assert time.monotonic() - start < 60
    assert done.returncode == 74, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert lines[0].startswith("error: no space left on device: "), lines[0]
    assert str(small_disk) in lines[0]
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler", "sy"]  # no stage
    assert _files(out) == before


def test_a_full_disk_raises_the_storage_oserror_from_the_api(boards, small_disk) -> None:
    """In a worker or not, the OSError comes through (no 'crash' row, no wrapping)."""
    out = small_disk / "sy"
    _fill(small_disk)
    with pytest.raises(OSError) as raised:
        synthesize(boards, out, count=60, seed=1, workers=2, progress=False)
    found = storage_error(raised.value)
    assert found is not None and found.errno == errno.ENOSPC
    assert [p.name for p in small_disk.iterdir()] == ["filler"]


def test_a_second_writer_is_refused_with_one_line(boards, tmp_path) -> None:
    out = tmp_path / "sy"
    with OutputLock(out, "synth (another run)"):
        done = subprocess.run(_cli("synth", "defects", "--boards", str(boards),
                                   "--out", str(out), "--count", "1"),
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 75, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "being written by another pcbforge process" in lines[0], lines
    assert "synth (another run)" in lines[0]
    assert not out.exists()


def test_a_fifo_among_the_boards_fails_its_images_instead_of_hanging(tmp_path):
    """A board folder is scanned whole, FIFOs included: reading one must not block."""
    boards = tmp_path / "boards"
    write_boards(boards, count=2, seed=0, size=160, progress=False)
    os.mkfifo(boards / "zz_pipe.png")
    signal.alarm(60)  # the old read waited for a writer forever
    try:
        report = synthesize(boards, tmp_path / "sy", count=6, seed=0, workers=1,
                            progress=False)
    finally:
        signal.alarm(0)
    failed = report["failed_images"]
    assert len(failed) == 2 and report["images"] == 4  # images 2 and 5 use the FIFO
    assert all("FIFO" in f["reason"] for f in failed), failed
