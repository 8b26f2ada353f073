"""``audit``: prove a split leak-free, or show where it leaks.

Leaks are pairs of samples on different sides (two splits of one dataset, or two
datasets with ``against``) that show one board region:

- ``exact`` / ``duplicate`` / ``transformed_duplicate``: the same image (same bytes or
  pixels; re-encoded, resized, cropped slightly; rotated or flipped), and
- ``defect_variant``: one board region with and without a defect,

all found by curation's own search and pixel verification, run afresh on the samples'
images; plus ``same_group``: samples that the split's leakage groups (curation ``group``,
``template_path``, ``group_by`` columns) tie together.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from pcbforge.core.files import write_json
from pcbforge.curate.dedupe import VARIANT_NAMES, DedupeParams, find_duplicates
from pcbforge.curate.runner import CACHE_DIR, THUMBS_FILE, CurateParams, inspect_files
from pcbforge.curate.scan import FoundFile
from pcbforge.datasets.dataset import Dataset, load
from pcbforge.engine import LocalEngine
from pcbforge.split import SPLIT_NAMES, leakage_groups

AUDIT_JSON = "audit.json"
#: Statuses whose images can end up in training or evaluation.
_USABLE = ("ok", "duplicate", "low_quality")


def _sides(dataset: Dataset, name: str, every_row: bool) -> pd.DataFrame:
    rows = dataset.samples[dataset.samples["status"].isin(_USABLE)]
    if not every_row:
        rows = rows[rows["split"].isin(SPLIT_NAMES)]
    return pd.DataFrame({
        "dataset": name, "sample_id": rows["sample_id"].to_numpy(),
        "path": rows["path"].to_numpy(), "split": rows["split"].to_numpy(),
        # object, not str: a file name that is not UTF-8 maps back to surrogate escapes,
        # which an Arrow string column cannot hold.
        "file": pd.Series([str(dataset.image_path(p)) for p in rows["path"]], dtype=object),
        "index": rows.index.to_numpy(),
    })


def audit(dataset_path: Path | str, against: Path | str | None = None, *,
          group_by: tuple[str, ...] = (), workers: int = 1, progress: bool = False) -> dict:
    """Find leaks (see the module docstring); writes ``audit.json`` into the dataset and
    returns the report (``clean`` is True when nothing leaks)."""
    dataset = load(dataset_path)
    other = load(against) if against is not None else None
    mine = _sides(dataset, "dataset", every_row=False)
    if other is None and mine.empty:
        raise ValueError(f"{dataset_path}: no sample has a split; run `pcbforge split` first")
    parts = [mine] + ([_sides(other, "against", every_row=True)] if other is not None else [])
    rows = pd.concat(parts, ignore_index=True)
    rows["side"] = (rows["dataset"] + "/" + rows["split"]) if other is not None else rows["split"]
    if other is not None:
        rows.loc[rows["dataset"] == "against", "side"] = "against"

    leaks = _pixel_leaks(rows, workers, progress)
    if other is None:
        leaks += _group_leaks(dataset, rows, group_by)
    seen, unique = set(), []
    for leak in leaks:
        key = tuple(sorted((leak["a"], leak["b"])))
        if key not in seen:
            seen.add(key)
            unique.append(leak)
    per_class = _per_class(dataset)
    report = {
        "command": "audit",
        "dataset": str(dataset_path),
        "against": str(against) if against is not None else None,
        "images_checked": len(rows),
        "clean": not unique,
        "leaks": len(unique),
        "leaks_by_reason": pd.Series([leak["reason"] for leak in unique],
                                     dtype=object).value_counts().to_dict(),
        "pairs": unique,
        "per_class": per_class,
    }
    write_json(Path(dataset_path) / AUDIT_JSON, report)
    return report


def _pixel_leaks(rows: pd.DataFrame, workers: int, progress: bool) -> list[dict]:
    files = [FoundFile(path, file) for path, file in zip(rows["path"], rows["file"],
                                                         strict=True)]
    params = CurateParams(workers=workers)
    with tempfile.TemporaryDirectory(prefix="pcbforge-audit-") as stage, \
            LocalEngine(workers) as engine:
        table, thumbs, hashes = inspect_files(files, params, Path(stage), engine, progress)
        _, stats = find_duplicates(table, thumbs, hashes, DedupeParams(), engine=engine,
                                   thumbs_path=Path(stage) / CACHE_DIR / THUMBS_FILE)
        del thumbs
    side = rows["side"].to_numpy()
    leaks = []
    for i, j, reason, distance, variant in stats.edges:
        if side[i] == side[j]:
            continue
        if reason == "duplicate" and variant:
            reason = "transformed_duplicate"
        elif reason == "variant":
            reason = "defect_variant"
        leaks.append(_pair(rows, i, j, reason, distance,
                           VARIANT_NAMES[variant] if variant else ""))
    return leaks


def _group_leaks(dataset: Dataset, rows: pd.DataFrame, group_by: tuple[str, ...]) -> list[dict]:
    samples = dataset.samples
    groups = leakage_groups(samples, group_by)
    group_of_row = groups[rows["index"].to_numpy()]
    leaks = []
    for _, members in pd.Series(np.arange(len(rows))).groupby(group_of_row):
        sides = rows["side"].to_numpy()[members.to_numpy()]
        first_of_side = {}
        for member, side in zip(members.to_numpy(), sides, strict=True):
            first_of_side.setdefault(side, member)
        anchors = list(first_of_side.values())
        for other in anchors[1:]:
            leaks.append(_pair(rows, anchors[0], other, "same_group", -1, ""))
    return leaks


def _pair(rows: pd.DataFrame, i: int, j: int, reason: str, distance: int,
          transform: str) -> dict:
    return {"a": str(rows.at[i, "path"]), "a_side": str(rows.at[i, "side"]),
            "b": str(rows.at[j, "path"]), "b_side": str(rows.at[j, "side"]),
            "reason": reason, "phash_distance": int(distance), "transform": transform}


def _per_class(dataset: Dataset) -> dict:
    split_of = dataset.samples.set_index("sample_id")["split"]
    labels = dataset.labels.assign(split=dataset.labels["sample_id"].map(split_of))
    table = {}
    for split in SPLIT_NAMES:
        part = labels[labels["split"] == split]
        images = dataset.samples[dataset.samples["split"] == split]
        table[split] = {"images": len(images),
                        **{c: int((part["label"] == c).sum()) for c in dataset.info.classes}}
    return table


__all__ = ["AUDIT_JSON", "audit"]
