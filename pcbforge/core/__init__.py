"""The ground floor every command stands on: files, locks, staged outputs, progress.

Imports nothing else of pcbforge. What lives here is solved once for every command:

* :mod:`pcbforge.core.files`: atomic file writes, bounded reads of regular files only,
  paths that must stay inside a root.
* :mod:`pcbforge.core.output`: one writer per output folder (a lock beside it), and
  outputs built in a hidden stage and swapped in so that a kill at any instruction
  leaves the previous complete output or the new one.
* :mod:`pcbforge.core.errors`: the storage errors (disk full, permission denied,
  read-only file system...) that end a command with one line and a distinct exit code.
* :mod:`pcbforge.core.progress`: the progress bar every long step shows.
* :mod:`pcbforge.core.decode`: strict image decoding (a reason for every file that
  cannot be used); :mod:`pcbforge.core.scan`: folder listing, without recursion or
  loops; :mod:`pcbforge.core.unionfind`: disjoint sets for groups.
"""

from pcbforge.core.errors import (
    EXIT_BUSY,
    EXIT_STORAGE,
    OutputBusyError,
    StorageError,
    storage_error,
)
from pcbforge.core.files import (
    DEFAULT_MAX_FILE_BYTES,
    PathOutsideRootError,
    UnreadableFileError,
    atomic_write,
    read_regular_file,
    resolve_inside,
    write_bytes,
    write_json,
)
from pcbforge.core.output import (
    OutputLock,
    interrupted_output,
    recover_output,
    staged_output,
    swap_into_place,
    swapped_in,
)
from pcbforge.core.progress import progress_bar

__all__ = [
    "DEFAULT_MAX_FILE_BYTES", "EXIT_BUSY", "EXIT_STORAGE", "OutputBusyError", "OutputLock",
    "PathOutsideRootError", "StorageError", "UnreadableFileError", "atomic_write",
    "interrupted_output", "progress_bar", "read_regular_file", "recover_output",
    "resolve_inside", "staged_output", "storage_error", "swap_into_place", "swapped_in",
    "write_bytes", "write_json",
]
