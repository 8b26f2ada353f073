"""The samples table: one row per file, the single source of truth.

Written as ``samples.parquet`` (typed, for programs) and ``samples.csv`` (for
people and spreadsheets). Reports and views are computed from it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pcbforge.core.files import atomic_write

#: Statuses a sample can have, in order of precedence.
STATUSES = ("corrupt", "low_quality", "duplicate", "skipped", "ok")
#: The statuses of samples whose images later steps use (qa, evaluate, mine, audit):
#: rejected and skipped files are curation's business.
USABLE_STATUSES = ("ok", "low_quality", "duplicate")

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


def template_rows(samples: pd.DataFrame) -> pd.Series:
    """Which rows are templates (the defect-free references of tested images): those whose
    ``role`` is ``template``, and those another row names in its ``template_path``."""
    role = samples.get("role", pd.Series("", index=samples.index)).fillna("").astype(str)
    named = samples.get("template_path", pd.Series("", index=samples.index))
    named = set(named.fillna("").astype(str)) - {""}
    return (role == "template") | samples["path"].astype(str).isin(named)


def image_sizes(samples: pd.DataFrame) -> dict[str, tuple[int, int]]:
    """``sample_id -> (width, height)`` from the table; ``(0, 0)`` parts where a size is
    missing (FiftyOne's export then reads the image header)."""
    width = pd.to_numeric(samples.get("width", pd.Series(0, index=samples.index)),
                          errors="coerce").fillna(0)
    height = pd.to_numeric(samples.get("height", pd.Series(0, index=samples.index)),
                           errors="coerce").fillna(0)
    return {str(key): (int(w), int(h)) for key, w, h in
            zip(samples["sample_id"], width, height, strict=True)}
