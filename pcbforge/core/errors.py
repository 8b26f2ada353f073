"""Errors of the ground floor, and how a storage failure reads in one line.

A full disk, a read-only file system or a missing permission can strike any write, in
any worker process, on any engine. Wherever it surfaces, :func:`storage_error` turns the
``OSError`` into a :class:`StorageError` whose message names the error and the path; the
CLI prints that one line and exits with :data:`EXIT_STORAGE`.
"""

from __future__ import annotations

import errno
import os

#: Exit code of a command ended by a storage error (sysexits' EX_IOERR).
EXIT_STORAGE = 74
#: Exit code of a command refused because another process writes its output (EX_TEMPFAIL).
EXIT_BUSY = 75

#: ``OSError`` numbers that mean "the storage cannot take this write (or read)", not a bug.
STORAGE_ERRNOS = frozenset({
    errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO,
    errno.EFBIG, errno.EMFILE, errno.ENFILE, errno.ENAMETOOLONG,
})


class StorageError(OSError):
    """A write or read the storage refused (disk full, read-only, permission...).

    ``str()`` is one line: what failed and on which path."""

    def __str__(self) -> str:
        what = self.strerror or os.strerror(self.errno or 0)
        where = f": {self.filename}" if self.filename else ""
        return f"{what.lower()}{where}"


class OutputBusyError(RuntimeError):
    """Another process is writing the same output folder."""


def storage_error(err: BaseException) -> StorageError | None:
    """The :class:`StorageError` that ``err`` (or an exception it was raised from) stands
    for, or ``None`` when it is not a storage failure."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, StorageError):
            return current
        if isinstance(current, OSError) and current.errno in STORAGE_ERRNOS:
            return StorageError(current.errno, current.strerror or os.strerror(current.errno),
                                current.filename)
        current = current.__cause__ or current.__context__
    return None
