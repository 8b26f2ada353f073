"""Output folders: one writer at a time, built in a stage, swapped in whole.

Every command that writes a folder (a dataset, an export, a report) does it through
:func:`staged_output`::

    with staged_output(out, command="curate") as stage:
        ...write everything into ``stage``...
    # here ``out`` holds the new output, complete

The protocol, and why a kill at any instruction is safe:

1. **Lock.** ``.NAME.lock`` beside ``out`` is held with ``flock`` for the whole run and
   records the holder's pid, host and command. The kernel drops the lock when its
   process dies, so a lock left by a killed run is taken over by the next one; a live
   holder makes the second writer fail at once with :class:`OutputBusyError`.
2. **Recover.** Under the lock, leftovers of killed runs are cleaned: hidden stage
   folders are removed, and a previous output parked by an interrupted two-step swap is
   put back first.
3. **Stage.** The new output is written into ``.NAME.partial-PID`` beside ``out`` (with
   ``clone=True`` it starts as a hard-link copy of the current output, for commands that
   change a few files of a folder holding images).
4. **Swap.** On Linux the stage and ``out`` are exchanged in one ``renameat2(...,
   RENAME_EXCHANGE)`` call: before it ``out`` is the old output, after it the new one;
   the old one, now under the stage's name, is then removed. Where the exchange is not
   available, the old output is renamed to ``.NAME.old-PID`` and the stage onto ``out``;
   a kill between those two renames leaves no ``out`` and the old output parked, which
   step 2 of the next run (or the reader's message from :func:`interrupted_output`)
   puts back.

On any error the stage is removed and the error raised: nothing half-written is left.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pcbforge.core.errors import OutputBusyError

_PARTIAL = ".partial-"
_OLD = ".old-"
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _hidden(out: Path, kind: str) -> str:
    return f".{out.name}{kind}"


def lock_path(out: Path | str) -> Path:
    """Where the writer lock of the output folder ``out`` lives (beside it)."""
    out = Path(out)
    return out.parent / f".{out.name}.lock"


#: Locks this process holds: path -> [fd, depth] (a nested acquire of the same folder).
_HELD: dict[str, list[int]] = {}


def _forget_locks_in_child() -> None:
    # A forked child shares the parent's lock; its copies are closed so that the lock
    # ends with the parent, and the child does not think it holds it.
    for fd, _ in _HELD.values():
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_locks_in_child)


class OutputLock:
    """One writer per output folder, for every command (see the module docstring).

    Re-entrant within a process: a function that holds the lock may call another that
    takes it again for the same folder."""

    def __init__(self, out: Path | str, command: str = ""):
        self.out = Path(os.path.realpath(out))
        self.path = lock_path(self.out)
        self.command = command

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        key = str(self.path)
        if key in _HELD:
            _HELD[key][1] += 1
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(10):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise OutputBusyError(
                    f"{self.out} is being written by another pcbforge process "
                    f"({_describe(holder)}); wait for it to finish or stop it") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the previous holder removed the file between our open and lock
                os.close(fd)
                continue
            _write_holder(fd, self.command)
            _HELD[key] = [fd, 1]
            return
        raise OutputBusyError(f"cannot take the writer lock {self.path}")

    def release(self) -> None:
        key = str(self.path)
        held = _HELD.get(key)
        if held is None:
            return
        held[1] -= 1
        if held[1]:
            return
        del _HELD[key]
        try:
            os.unlink(self.path)  # while still locked: a waiter then re-checks the inode
        except OSError:
            pass
        os.close(held[0])


def holder_record(command: str) -> dict:
    """Who is writing: this process's pid and host, ``command`` and since when (what a
    lock file, or a marker such as a build's, records for the messages of others)."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
            "since": time.strftime("%Y-%m-%dT%H:%M:%S")}


def _write_holder(fd: int, command: str) -> None:
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder_record(command)) + "\n").encode(), 0)
    except OSError:
        pass  # a full disk: the flock itself is the lock; the record only helps the message


def _read_holder(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        return {}


def _describe(holder: dict) -> str:
    if not holder:
        return "holder unknown"
    parts = [f"pid {holder.get('pid')} on {holder.get('host')}"]
    if holder.get("command"):
        parts.append(f"`{holder['command']}`")
    if holder.get("since"):
        parts.append(f"since {holder['since']}")
    return ", ".join(parts)


def _leftovers(out: Path, kind: str) -> list[Path]:
    prefix = _hidden(out, kind)
    try:
        names = os.listdir(out.parent)
    except OSError:
        return []
    return sorted(out.parent / n for n in names if n.startswith(prefix))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except OSError:
            pass


def recover_output(out: Path | str) -> list[str]:
    """Clean what killed runs left beside ``out`` (call it holding the lock): a previous
    output parked by an interrupted swap goes back to ``out``; stages are removed.
    Returns what was done, one line each."""
    out = Path(os.path.realpath(out))
    done = []
    parked = _leftovers(out, _OLD)
    if parked and not os.path.lexists(out):
        os.replace(parked[-1], out)
        done.append(f"restored {out} from {parked[-1].name}")
        parked = parked[:-1]
    for leftover in parked + _leftovers(out, _PARTIAL):
        _remove(leftover)
        done.append(f"removed {leftover.name}")
    return done


def interrupted_output(out: Path | str) -> str | None:
    """For readers: a message when ``out`` is missing because a run was killed in the
    middle of its swap (the previous output is parked beside it), else ``None``."""
    out = Path(os.path.realpath(out))
    if os.path.lexists(out):
        return None
    parked = _leftovers(out, _OLD)
    if not parked:
        return None
    return (f"{out} was being replaced when its writer was killed; the previous output is "
            f"in {parked[-1]}. Run the command again (it puts it back first), or rename it "
            f"to {out.name}")


def _libc_renameat2():
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                         ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_RENAMEAT2 = _libc_renameat2()


def _exchange(a: Path, b: Path) -> bool:
    """Swap the names ``a`` and ``b`` in one atomic step; ``False`` when this system or
    file system cannot."""
    if _RENAMEAT2 is None:
        return False
    if _RENAMEAT2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def swap_into_place(stage: Path | str, out: Path | str) -> None:
    """Make the complete folder ``stage`` the output ``out`` (see the module docstring),
    removing the previous output. Hold the lock of ``out``."""
    stage, out = Path(stage), Path(out)
    if not os.path.lexists(out):
        os.replace(stage, out)
        return
    if _exchange(stage, out):
        _remove(stage)  # the previous output, under the stage's name
        return
    parked = out.parent / f"{_hidden(out, _OLD)}{os.getpid()}"
    os.replace(out, parked)
    os.replace(stage, out)
    _remove(parked)


def _link_tree(source: Path, target: Path) -> None:
    """``target`` as a copy of the folder ``source`` whose files are hard links (copies
    where links are refused). Writers must replace files, never write into them."""
    target.mkdir()
    for folder, dirs, files in os.walk(source):
        relative = os.path.relpath(folder, source)
        into = target if relative == "." else target / relative
        for name in dirs:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                os.symlink(os.readlink(path), into / name)
            else:
                (into / name).mkdir()
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(folder, d))]
        for name in files:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                os.symlink(os.readlink(path), into / name)
                continue
            try:
                os.link(path, into / name)
            except OSError:
                shutil.copy2(path, into / name)


def stage_path(out: Path | str) -> Path:
    """The hidden stage folder this process uses for ``out``."""
    out = Path(os.path.realpath(out))
    return out.parent / f"{_hidden(out, _PARTIAL)}{os.getpid()}"


@contextmanager
def swapped_in(out: Path | str, *, clone: bool = False) -> Iterator[Path]:
    """Recover leftovers, yield an empty stage folder (a hard-link copy of the current
    ``out`` with ``clone``), and swap it in when the block ends without an error; on an
    error the stage is removed and ``out`` is left as it was.

    Takes no lock: for a folder inside one whose lock the caller holds (a build's stage
    outputs, a dataset's ``report/``). Everything else uses :func:`staged_output`."""
    out = Path(os.path.realpath(out))
    recover_output(out)
    stage = stage_path(out)
    _remove(stage)
    try:
        if clone and out.is_dir():
            _link_tree(out, stage)
        else:
            stage.mkdir()
        yield stage
        swap_into_place(stage, out)
    except BaseException:
        _remove(stage)
        raise


@contextmanager
def staged_output(out: Path | str, *, command: str = "", clone: bool = False
                  ) -> Iterator[Path]:
    """Lock ``out``, then :func:`swapped_in`: recover leftovers, yield an empty stage
    folder (a hard-link copy of the current ``out`` with ``clone``), and swap it in when
    the block ends without an error. On an error the stage is removed and ``out`` is
    left as it was.

    Raises :class:`OutputBusyError` when another process writes ``out``."""
    out = Path(os.path.realpath(out))
    if str(lock_path(out)) in _HELD:
        raise RuntimeError(f"staged_output({out}) inside another staged_output of the same "
                           "folder: write into the outer stage instead")
    out.parent.mkdir(parents=True, exist_ok=True)
    with OutputLock(out, command), swapped_in(out, clone=clone) as stage:
        yield stage
