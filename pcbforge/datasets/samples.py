"""The samples table: one row per file, the single source of truth.

Written as ``samples.parquet`` (typed, for programs) and ``samples.csv`` (for
people and spreadsheets). Reports and views are computed from it.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pandas as pd

#: Statuses a sample can have, in order of precedence.
STATUSES = ("corrupt", "low_quality", "duplicate", "skipped", "ok")

#: Leading columns, in this order; any further columns follow alphabetically.
LEADING_COLUMNS = (
    "path",
    "status",
    "reason",
    "detail",
    "duplicate_of",
    "duplicate_reason",
    "duplicate_transform",
    "group",
    "group_size",
    "sha256",
    "pixel_hash",
    "phash",
    "width",
    "height",
    "format",
    "extension_format",
    "format_mismatch",
    "mode",
    "channels",
    "bit_depth",
    "exif_orientation",
    "frames",
    "lossless",
    "bytes",
    "low_quality_reason",
)

SAMPLES_PARQUET = "samples.parquet"
SAMPLES_CSV = "samples.csv"


def order_columns(table: pd.DataFrame) -> pd.DataFrame:
    leading = [c for c in LEADING_COLUMNS if c in table.columns]
    rest = sorted(c for c in table.columns if c not in leading)
    return table[leading + rest]


def write_samples(table: pd.DataFrame, folder: Path) -> None:
    """Write the table as parquet and CSV into ``folder``, each atomically."""
    table = order_columns(table).reset_index(drop=True)
    atomic_write(folder / SAMPLES_PARQUET, lambda path: table.to_parquet(path, index=False))
    atomic_write(folder / SAMPLES_CSV, lambda path: table.to_csv(path, index=False))


def read_samples(folder: Path) -> pd.DataFrame:
    path = Path(folder) / SAMPLES_PARQUET
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {folder} a pcbforge dataset?")
    return pd.read_parquet(path)


def write_json(path: Path, payload: dict) -> None:
    text = json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _file_mode() -> int:
    """The mode a plain ``open(path, "w")`` gives a new file under the current umask."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


#: Read once: changing the umask is process-wide, so it is not done per file.
_FILE_MODE = _file_mode()


def atomic_write(path: Path, writer) -> None:
    """Call ``writer(tmp_path)`` then rename onto ``path``: readers never see half a file.

    The file gets the usual mode for the user's umask (``mkstemp`` alone would leave it
    readable by its owner only)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(handle)
    try:
        writer(tmp)
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
