"""``audit``: prove a split leak-free, or show where it leaks.

Leaks are pairs of samples on different sides (two splits of one dataset, or two
datasets with ``against``) that show one board region:

- ``exact`` / ``duplicate`` / ``transformed_duplicate``: the same image (same bytes or
  pixels; re-encoded, resized, cropped slightly; rotated or flipped), and
- ``defect_variant``: one board region with and without a defect,

all found by curation's own search and pixel verification, run afresh on the samples'
images; plus ``same_group``: samples that the split's leakage groups (curation ``group``,
``template_path``, ``group_by`` columns) tie together.

With ``verify`` it also proves the images are still the ones the dataset describes: each
image whose row has a ``sha256`` is hashed again, and any that changed, vanished or can no
longer be read is named (:func:`verify_images`).
"""

from __future__ import annotations

import hashlib
import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd

from pcbforge.core.files import (
    DEFAULT_MAX_FILE_BYTES,
    UnreadableFileError,
    read_regular_file,
    write_json,
)
from pcbforge.core.output import staged_output
from pcbforge.core.progress import progress_bar
from pcbforge.core.scan import FoundFile
from pcbforge.curate.dedupe import VARIANT_NAMES, DedupeParams, find_duplicates
from pcbforge.curate.runner import (
    CACHE_DIR,
    COARSE_FILE,
    THUMBS_FILE,
    CurateParams,
    inspect_files,
)
from pcbforge.datasets.dataset import Dataset, load, require_folder
from pcbforge.datasets.samples import USABLE_STATUSES
from pcbforge.engine import Engine, LocalEngine
from pcbforge.split import SPLIT_NAMES, leakage_groups

AUDIT_JSON = "audit.json"


def _sides(dataset: Dataset, name: str, every_row: bool) -> pd.DataFrame:
    rows = dataset.samples[dataset.samples["status"].isin(USABLE_STATUSES)]
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
          group_by: tuple[str, ...] = (), workers: int = 1, progress: bool = False,
          verify: bool = False, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
          engine: Engine | None = None) -> dict:
    """Find leaks (see the module docstring); writes ``audit.json`` into the dataset and
    returns the report (``clean`` is True when nothing leaks).

    ``verify`` also re-hashes every image that has a ``sha256`` (see
    :func:`verify_images`); ``images_intact`` is then False when any image no longer
    matches its row. A dataset with no split yet can be verified alone: the leak search
    needs splits and is then skipped (``leak_check`` says so).

    ``engine``: a started engine (local pool or Dask cluster) for the leak search's
    per-image work; without one, a local pool of ``workers`` processes for this call.

    ``audit.json`` is written like every output: into a hard-link copy of the folder,
    swapped in whole under the folder's writer lock, which is held for the whole audit
    so that the report describes the dataset as it is."""
    require_folder(dataset_path, writer=True)  # a killed swap is put back by staged_output
    with staged_output(dataset_path, command="audit", clone=True) as stage:
        report = _audit(dataset_path, against, group_by, workers, progress, verify,
                        max_file_bytes, engine)
        write_json(stage / AUDIT_JSON, report)
    return report


def _audit(dataset_path, against, group_by, workers, progress, verify, max_file_bytes,
           engine) -> dict:
    dataset = load(dataset_path)
    other = load(against) if against is not None else None
    integrity = (verify_images(dataset, workers=workers, progress=progress,
                               max_bytes=max_file_bytes) if verify else None)
    mine = _sides(dataset, "dataset", every_row=False)
    if other is None and mine.empty and not verify:
        raise ValueError(f"{dataset_path}: no sample has a split; run `pcbforge split` first")
    leak_check = "done"
    if other is None and mine.empty:
        leak_check = "skipped: no sample has a split (run `pcbforge split` first)"
        unique = []
        images_checked = 0
    else:
        unique, images_checked = _leaks(dataset, mine, other, group_by, workers, progress,
                                        engine)
    report = {
        "command": "audit",
        "dataset": str(dataset_path),
        "against": str(against) if against is not None else None,
        "leak_check": leak_check,
        "images_checked": images_checked,
        "clean": not unique,
        "leaks": len(unique),
        "leaks_by_reason": pd.Series([leak["reason"] for leak in unique],
                                     dtype=object).value_counts().to_dict(),
        "pairs": unique,
        "per_class": _per_class(dataset),
    }
    if integrity is not None:
        report["images_intact"] = not integrity["mismatches"]
        report["integrity"] = integrity
    return report


def _leaks(dataset: Dataset, mine: pd.DataFrame, other: Dataset | None,
           group_by: tuple[str, ...], workers: int, progress: bool,
           engine: Engine | None = None) -> tuple[list[dict], int]:
    parts = [mine] + ([_sides(other, "against", every_row=True)] if other is not None else [])
    rows = pd.concat(parts, ignore_index=True)
    rows["side"] = (rows["dataset"] + "/" + rows["split"]) if other is not None else rows["split"]
    if other is not None:
        rows.loc[rows["dataset"] == "against", "side"] = "against"

    leaks = _pixel_leaks(rows, workers, progress, engine)
    if other is None:
        leaks += _group_leaks(dataset, rows, group_by)
    seen, unique = set(), []
    for leak in leaks:
        key = tuple(sorted((leak["a"], leak["b"])))
        if key not in seen:
            seen.add(key)
            unique.append(leak)
    return unique, len(rows)


#: What :func:`verify_images` found wrong with an image, in the report's ``problem``.
CHANGED, MISSING, UNREADABLE = "changed", "missing", "unreadable"


def verify_images(dataset: Dataset, *, workers: int = 1, progress: bool = False,
                  max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> dict:
    """Hash again every image whose row has a ``sha256`` and compare.

    Returns ``{"images": checked, "without_sha256": rows with none, "mismatches": [...]}``
    where each mismatch is ``{"path", "sample_id", "problem", "detail"}`` with ``problem``
    one of ``changed`` (other bytes), ``missing`` (no file) or ``unreadable`` (not a
    regular file, above ``max_bytes``, or refused by the system), in table order.
    Reads go through :func:`~pcbforge.core.files.read_regular_file`: a FIFO or device in
    the image's place is named, never waited on; a file the system refuses to read is a
    finding too, not a crash."""
    samples = dataset.samples
    recorded = (samples["sha256"].fillna("").astype(str) if "sha256" in samples.columns
                else pd.Series("", index=samples.index))
    rows = samples[recorded != ""]
    jobs = [(str(path), str(sample_id), dataset.image_path(str(path)), digest)
            for path, sample_id, digest in zip(rows["path"], rows["sample_id"],
                                               recorded[recorded != ""], strict=True)]
    mismatches = []
    # Threads: hashing and reading release the GIL; the work is I/O bound.
    with progress_bar(progress, "verifying image hashes", len(jobs)) as advance, \
            ThreadPoolExecutor(max(1, workers)) as pool:
        for (path, sample_id, _, _), found in zip(
                jobs, pool.map(lambda job: _check_image(job[2], job[3], max_bytes), jobs),
                strict=True):
            advance()
            if found is not None:
                mismatches.append({"path": path, "sample_id": sample_id, "problem": found[0],
                                   "detail": found[1]})
    return {"images": len(jobs), "without_sha256": int(len(samples) - len(rows)),
            "mismatches": mismatches}


def _check_image(file: Path, expected: str, max_bytes: int) -> tuple[str, str] | None:
    try:
        data = read_regular_file(file, max_bytes)
    except FileNotFoundError:
        return MISSING, f"{file} does not exist"
    except UnreadableFileError as err:
        return UNREADABLE, f"{file}: {err.detail}"
    except OSError as err:  # permission denied, an I/O error: this file is the finding
        return UNREADABLE, f"{file}: {err.strerror or err}"
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        return CHANGED, f"sha256 is {actual}, the row records {expected}"
    return None


def _pixel_leaks(rows: pd.DataFrame, workers: int, progress: bool,
                 engine: Engine | None = None) -> list[dict]:
    files = [FoundFile(path, file) for path, file in zip(rows["path"], rows["file"],
                                                         strict=True)]
    params = CurateParams(workers=workers)
    with tempfile.TemporaryDirectory(prefix="pcbforge-audit-") as stage, \
            nullcontext(engine) if engine is not None else LocalEngine(workers) as run:
        # One thumbnail store and one coarse-view store, also on a Dask engine: the workers
        # write their slots into them and the verification reads them (the LSH search
        # needs its workdir).
        table, thumbs, hashes = inspect_files(files, params, Path(stage), run, progress)
        _, stats = find_duplicates(table, thumbs, hashes, DedupeParams(), engine=run,
                                   thumbs_path=Path(stage) / CACHE_DIR / THUMBS_FILE,
                                   coarse_path=Path(stage) / CACHE_DIR / COARSE_FILE,
                                   workdir=Path(stage) / CACHE_DIR)
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


__all__ = ["AUDIT_JSON", "CHANGED", "MISSING", "UNREADABLE", "audit", "verify_images"]
