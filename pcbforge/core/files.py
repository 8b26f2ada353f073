"""Files: atomic writes, bounded reads of regular files only, paths kept inside a root."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

#: Files larger than this are not read (status ``corrupt``, reason ``too_large``) unless
#: the user raises the cap: 1 GiB holds a 16k x 16k 16-bit line-scan TIFF, uncompressed.
DEFAULT_MAX_FILE_BYTES = 1 << 30

_READ_CHUNK = 1 << 20


class UnreadableFileError(OSError):
    """A file that is not read: ``reason`` is a short code (``not_a_regular_file``,
    ``too_large``), ``detail`` one line for people."""

    def __init__(self, reason: str, detail: str, path: str = ""):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.path = path

    def __str__(self) -> str:
        return f"{self.path}: {self.detail}" if self.path else self.detail

    def __reduce__(self):  # keep reason and detail across processes
        return (type(self), (self.reason, self.detail, self.path))


class PathOutsideRootError(ValueError):
    """A path named by a label file that leads outside the folder it must stay in."""


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"


def check_regular(path: str | os.PathLike, max_bytes: int | None = None) -> os.stat_result:
    """``os.stat`` of ``path`` (links followed) when it is a regular file within
    ``max_bytes``; else raise :class:`UnreadableFileError` without opening it (opening a
    FIFO waits for a writer; opening a device can have side effects)."""
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise UnreadableFileError("not_a_regular_file",
                                  f"{_kind(info.st_mode)}, not a regular file", os.fspath(path))
    if max_bytes is not None and info.st_size > max_bytes:
        raise UnreadableFileError(
            "too_large", f"{info.st_size:,} bytes, above the {max_bytes:,}-byte limit "
            "(raise it with --max-file-mb); not read", os.fspath(path))
    return info


def read_regular_file(path: str | os.PathLike, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> bytes:
    """The bytes of the regular file ``path``, reading at most ``max_bytes``.

    FIFOs, sockets and devices (also behind links) and files above ``max_bytes`` raise
    :class:`UnreadableFileError` (never a hang, never an unbounded read); other failures
    raise the ``OSError`` the system gave."""
    check_regular(path, max_bytes)
    # O_NONBLOCK: if the path became a FIFO since the check, open() still returns at once.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnreadableFileError("not_a_regular_file",
                                      f"{_kind(info.st_mode)}, not a regular file",
                                      os.fspath(path))
        chunks, total = [], 0
        want = min(info.st_size, max_bytes) + 1  # one byte more tells a file that grew
        while True:
            size = want - total if total < want else _READ_CHUNK
            chunk = os.read(fd, min(size, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise UnreadableFileError(
                    "too_large", f"more than {max_bytes:,} bytes (raise the limit with "
                    "--max-file-mb); not read", os.fspath(path))
        return b"".join(chunks)
    finally:
        os.close(fd)


def resolve_inside(root: Path | str, name: str, *, allow_outside: bool = False) -> Path:
    """The file ``name`` (relative to ``root``) as an absolute path that stays inside
    ``root``: ``..`` parts, absolute names and links that lead out raise
    :class:`PathOutsideRootError`, unless ``allow_outside``."""
    root_path = Path(root).resolve()
    candidate = Path(name) if Path(name).is_absolute() else root_path / name
    resolved = candidate.resolve()
    if not allow_outside and resolved != root_path and root_path not in resolved.parents:
        how = ("is absolute" if Path(name).is_absolute()
               else "leads out through a link" if ".." not in Path(name).parts
               else "climbs out with '..'")
        raise PathOutsideRootError(
            f"image path {name!r} {how} and resolves to {resolved}, outside {root_path} "
            "(pass --allow-outside-root to accept it)")
    return resolved


def _file_mode() -> int:
    """The mode a plain ``open(path, "w")`` gives a new file under the current umask."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


#: Read once: changing the umask is process-wide, so it is not done per file.
_FILE_MODE = _file_mode()


def _make_folders(path: Path, inside: Path | str | None) -> None:
    if inside is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        return
    # Only the folders below ``inside``, one level at a time: a task that outlives its
    # failed run then fails on the stage that run removed instead of making it again.
    folder = Path(inside)
    for part in path.parent.relative_to(folder).parts:
        folder = folder / part
        try:
            os.mkdir(folder)
        except FileExistsError:
            pass


def atomic_write(path: Path | str, writer: Callable[[str], object], *,
                 inside: Path | str | None = None) -> None:
    """Call ``writer(tmp_path)`` then rename onto ``path``: readers never see half a file.

    Missing parent folders are made; with ``inside`` (a folder that must already exist)
    only those below it. The file gets the usual mode for the user's umask (``mkstemp``
    alone would leave it readable by its owner only). On any failure (a full disk
    included) the temporary file is removed and the error raised, naming ``path``."""
    path = Path(path)
    _make_folders(path, inside)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(handle)
    try:
        writer(tmp)
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except OSError as err:
        _unlink_quietly(tmp)
        if err.errno and not err.filename:
            # Writers such as pyarrow raise without the path ("error writing bytes to
            # file"): name the file, so a full disk reads as one line that says where.
            raise OSError(err.errno, os.strerror(err.errno), str(path)) from err
        raise
    except BaseException:
        _unlink_quietly(tmp)
        raise


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def write_bytes(path: Path | str, data: bytes, *, inside: Path | str | None = None) -> None:
    """Write ``data`` to ``path`` atomically (``inside``: see :func:`atomic_write`)."""
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data), inside=inside)


def write_json(path: Path | str, payload: dict) -> None:
    """Write ``payload`` as indented JSON, atomically."""
    text = json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
