"""core.output: one writer per folder, outputs swapped in whole, leftovers recovered."""

from __future__ import annotations

import json
import os
import signal
import time

import numpy as np
import pytest

from pcbforge.core import output
from pcbforge.core.errors import OutputBusyError
from pcbforge.core.output import (
    OutputLock,
    interrupted_output,
    lock_path,
    recover_output,
    staged_output,
    swap_into_place,
)


def _tree(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _write_version(folder, version: int, files: int = 5) -> None:
    for n in range(files):
        (folder / f"part{n}.txt").write_text(f"version {version} part {n}\n" * 200)


def test_staged_output_swaps_in_the_new_folder_whole(tmp_path):
    out = tmp_path / "ds"
    with staged_output(out, command="test") as stage:
        assert stage.parent == tmp_path and stage.name.startswith(".ds.partial-")
        assert not out.exists()
        _write_version(stage, 1)
    assert _tree(out)["part0.txt"].startswith(b"version 1")
    with staged_output(out) as stage:
        _write_version(stage, 2, files=2)
    assert sorted(_tree(out)) == ["part0.txt", "part1.txt"]
    assert sorted(os.listdir(tmp_path)) == ["ds"]  # no stage, no lock, nothing parked


def test_an_error_leaves_the_previous_output_and_no_stage(tmp_path):
    out = tmp_path / "ds"
    with staged_output(out) as stage:
        _write_version(stage, 1)
    before = _tree(out)
    with pytest.raises(OSError), staged_output(out) as stage:
        _write_version(stage, 2)
        raise OSError(28, "No space left on device", str(stage / "x"))
    assert _tree(out) == before
    assert sorted(os.listdir(tmp_path)) == ["ds"]


def test_clone_starts_from_the_current_output_without_touching_it(tmp_path):
    out = tmp_path / "ds"
    with staged_output(out) as stage:
        _write_version(stage, 1)
        (stage / "images").mkdir()
        (stage / "images" / "a.png").write_bytes(b"png")
    with staged_output(out, clone=True) as stage:
        assert _tree(stage) == _tree(out)
        linked = os.stat(stage / "images" / "a.png").st_ino
        assert linked == os.stat(out / "images" / "a.png").st_ino
        (stage / "part0.txt").unlink()  # replace, never write into a linked file
        (stage / "part0.txt").write_text("new")
        assert _tree(out)["part0.txt"].startswith(b"version 1")
    assert (out / "part0.txt").read_text() == "new"
    assert (out / "images" / "a.png").read_bytes() == b"png"


def test_a_second_writer_is_refused_while_the_first_holds_the_lock(tmp_path):
    out = tmp_path / "ds"
    with OutputLock(out, command="curate"):
        record = json.loads(lock_path(out).read_text())
        assert record["pid"] == os.getpid() and record["command"] == "curate"
        pid = os.fork()
        if pid == 0:  # another process: must be refused at once
            try:
                with staged_output(out, command="synth"):
                    os._exit(1)
            except OutputBusyError as err:
                os._exit(0 if "curate" in str(err) and str(os.getppid()) in str(err) else 2)
            os._exit(3)
        assert os.waitpid(pid, 0)[1] == 0
    assert not lock_path(out).exists()


def test_the_lock_of_a_killed_writer_is_taken_over(tmp_path):
    out = tmp_path / "ds"
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        OutputLock(out, command="curate").acquire()
        os.write(write, b"1")
        time.sleep(60)
        os._exit(0)
    os.read(read, 1)
    with pytest.raises(OutputBusyError, match=f"pid {pid}"):
        OutputLock(out).acquire()
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert lock_path(out).exists()  # left behind by the killed holder...
    with staged_output(out) as stage:  # ...and taken over
        _write_version(stage, 1)
    assert out.is_dir()


def test_the_lock_is_reentrant_in_one_process(tmp_path):
    with OutputLock(tmp_path / "ds"), OutputLock(tmp_path / "ds"):
        pass
    assert not lock_path(tmp_path / "ds").exists()
    with pytest.raises(RuntimeError, match="inside another"), \
            staged_output(tmp_path / "ds"), staged_output(tmp_path / "ds"):
        pass


def test_a_parked_previous_output_is_put_back_before_anything_else(tmp_path):
    """What the two-rename swap leaves when killed between its renames: no output, the
    previous one parked. Readers are told; the next writer restores it first."""
    out = tmp_path / "ds"
    with staged_output(out) as stage:
        _write_version(stage, 1)
    before = _tree(out)
    parked = tmp_path / ".ds.old-99999"
    os.replace(out, parked)
    (tmp_path / ".ds.partial-99999").mkdir()  # the new output's stage, never swapped in
    message = interrupted_output(out)
    assert message and str(parked) in message and "run the command again" in message.lower()
    with OutputLock(out):
        done = recover_output(out)
    assert _tree(out) == before and done[0].startswith("restored")
    assert sorted(os.listdir(tmp_path)) == ["ds"]
    assert interrupted_output(out) is None


def test_the_two_rename_fallback_swaps_too(tmp_path, monkeypatch):
    monkeypatch.setattr(output, "_exchange", lambda a, b: False)
    out = tmp_path / "ds"
    with staged_output(out) as stage:
        _write_version(stage, 1)
    with staged_output(out) as stage:
        _write_version(stage, 2)
    assert _tree(out)["part0.txt"].startswith(b"version 2")
    assert sorted(os.listdir(tmp_path)) == ["ds"]


def test_swap_exchanges_in_one_step(tmp_path):
    if output._RENAMEAT2 is None:
        pytest.skip("renameat2 is not available on this system")
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "n").write_text("n")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "o").write_text("o")
    swap_into_place(tmp_path / "new", tmp_path / "out")
    assert os.listdir(tmp_path / "out") == ["n"] and not (tmp_path / "new").exists()


@pytest.mark.parametrize("fallback", [False, True], ids=["exchange", "two-renames"])
def test_sigkill_at_random_points_leaves_the_old_or_the_new_output(tmp_path, fallback):
    """20 kills at seeded random moments of a writer replacing a 3-version output: after
    each kill the folder is the previous complete output or the new one, or (two-rename
    fallback only) absent with the previous one parked, which the next writer restores."""
    rng = np.random.default_rng(0)
    out = tmp_path / "ds"
    with staged_output(out) as stage:
        _write_version(stage, 0, files=40)
    versions = {0: _tree(out)}
    for kill in range(20):
        version = kill + 1
        pid = os.fork()
        if pid == 0:
            if fallback:
                output._exchange = lambda a, b: False
            with staged_output(out) as stage:
                _write_version(stage, version, files=40)
            os._exit(0)
        time.sleep(float(rng.uniform(0, 0.02)))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        if out.exists():
            found = _tree(out)
            assert found in (versions[max(versions)], _expected(version)), kill
            if found == _expected(version):
                versions[version] = found
        else:
            assert fallback and interrupted_output(out), kill
        with staged_output(out) as stage:  # the next run recovers and completes
            _write_version(stage, version, files=40)
        versions[version] = _tree(out)
        assert sorted(os.listdir(tmp_path)) == ["ds"]


def _expected(version: int) -> dict[str, bytes]:
    return {f"part{n}.txt": (f"version {version} part {n}\n" * 200).encode() for n in range(40)}
