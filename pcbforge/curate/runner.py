"""``curate``: scan a folder, inspect every file, find duplicates, write a dataset.

The source folder is only ever read. The dataset is built in a hidden stage beside
it and swapped into place at the end (:func:`pcbforge.core.staged_output`), so an
interrupted run leaves no half-written dataset that looks complete, and simply
running again works.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Collection
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from pcbforge import __version__
from pcbforge.core.files import write_json
from pcbforge.core.output import staged_output
from pcbforge.core.progress import progress_bar
from pcbforge.core.scan import FoundFile, scan_folder
from pcbforge.curate.dedupe import DedupeParams, ImageHashes, find_duplicates
from pcbforge.curate.hashing import N_VARIANTS
from pcbforge.curate.inspect import (
    InspectParams,
    create_coarse_store,
    create_thumb_store,
    inspect_into_store,
)
from pcbforge.curate.partitions import (
    PartedCoarse,
    PartedThumbs,
    crashed_inspection,
    gather_partitions,
    inspect_item,
    inspect_partition,
    plan_partitions,
    write_partition,
)
from pcbforge.datasets.dataset import (
    DATASET_JSON,
    DatasetInfo,
    apply_previous_splits,
    previous_splits,
    sample_id_for,
)
from pcbforge.datasets.samples import STATUSES, write_samples
from pcbforge.engine import Engine, LocalEngine

REPORT_JSON = "report.json"
#: A `pcbforge build` folder holds this (its stage markers): never replaced by curate/import.
BUILD_STATE_DIR = ".build"
CACHE_DIR = "cache"
THUMBS_FILE = "thumbs.npy"
#: Coarse views of the thumbnails, read by pixel verification; removed once it is done.
COARSE_FILE = "coarse.npy"
#: With a Dask engine: the thumbnails as one file per partition (cache/thumbs/part-*.npy).
THUMBS_PARTS_DIR = "thumbs"
COARSE_PARTS_DIR = "coarse-parts"
HASHES_FILE = "phash_variants.npy"
#: With a Dask engine: the samples table as partitioned parquet, while the run gathers it.
PARTS_DIR = "parts"


#: Modules the worker processes need, imported once by the fork server.
WORKER_MODULES = ("pcbforge.curate.inspect", "pcbforge.curate.dedupe")


class CurateError(Exception):
    """A problem with the command's own input: reported in one line, no traceback."""


class CurateParams(BaseModel):
    """Everything that shapes a curation run (written into the report)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    workers: int = Field(1, ge=1, le=256)
    inspect: InspectParams = InspectParams()
    dedupe: DedupeParams = DedupeParams()
    materialize: Literal["none", "copy", "link"] = "none"


@dataclass
class CurateResult:
    out: Path
    samples: pd.DataFrame
    report: dict = field(default_factory=dict)


def curate(
    src: Path | str,
    out: Path | str,
    params: CurateParams | None = None,
    *,
    progress: bool = False,
    engine: Engine | None = None,
    prefer: Collection[str] = (),
) -> CurateResult:
    """Curate the image folder ``src`` into the dataset folder ``out``.

    ``prefer``: paths (relative to ``src``, ``/``-separated) kept before their copies
    whatever the other keeper rules say; importers pass the images their annotations
    name, so a labelled image is never marked a duplicate of an unlabelled copy.

    ``engine``: a started engine to run the per-file work on (see
    :func:`pcbforge.engine.open_engine`); by default a :class:`LocalEngine` of
    ``params.workers`` processes. With a Dask engine, files are inspected in
    partitions and duplicates searched on the cluster, with the same result;
    its workers must see ``src`` and the parent of ``out`` at the same paths.

    ``out`` is written through :func:`pcbforge.core.staged_output`: one writer at a
    time (another raises :class:`pcbforge.core.OutputBusyError`), built in a hidden
    stage and swapped in whole, so a kill at any point leaves the previous dataset or
    the new one.

    Raises :class:`CurateError` for unusable arguments (missing or empty
    source, output inside the source, unwritable output...). Bad files never
    raise: each gets a row with a status and a reason.
    """
    params = params or CurateParams()
    src_path, out_path = check_paths(Path(src), Path(out))
    with staged_output(out_path, command="curate") as stage:
        # Under the lock and after recovery, before the stage replaces the old output.
        earlier = previous_splits(out_path)
        result = curate_into(src_path, stage, params, progress=progress, engine=engine,
                             prefer=prefer, out_for_checks=out_path, earlier=earlier)
    result.out = out_path
    return result


def curate_into(
    src: Path | str,
    folder: Path | str,
    params: CurateParams | None = None,
    *,
    progress: bool = False,
    engine: Engine | None = None,
    prefer: Collection[str] = (),
    out_for_checks: Path | str | None = None,
    earlier: tuple[dict | None, dict[str, str]] = (None, {}),
) -> CurateResult:
    """The work of :func:`curate`, written into the existing empty folder ``folder``
    (a stage the caller holds the lock of and swaps in): no lock, no swap.

    ``out_for_checks``: the output folder ``folder`` will become; it is checked against
    ``src`` (see :func:`check_paths`), never scanned, and named in the report.
    ``earlier``: :func:`previous_splits` of that output, read before it is replaced;
    when it was split, every known sample keeps its split.
    """
    params = params or CurateParams()
    stage = Path(folder)
    out_path = Path(out_for_checks) if out_for_checks is not None else stage
    src_path, out_path = check_paths(Path(src), out_path)
    timings: dict[str, float] = {}
    started = time.perf_counter()

    tick = time.perf_counter()
    scan = scan_folder(src_path, exclude=out_path)
    if not scan.files:
        raise CurateError(f"no files found under {src_path}")
    timings["scan_s"] = time.perf_counter() - tick

    table, hashes, stats, where = inspect_and_dedupe(
        scan.files, params, stage, engine, prefer, progress, timings)

    tick = time.perf_counter()
    table = write_tables(table, hashes, scan.files, params, stage, earlier)
    timings["write_s"] = time.perf_counter() - tick
    timings["total_s"] = time.perf_counter() - started

    report = _report(src_path, out_path, table, params, timings, stats, scan, where)
    write_json(stage / REPORT_JSON, report)
    # The images stay where they are: the dataset records where that is.
    split_record = earlier[0]  # None unless the output was split: its record carries over
    info = DatasetInfo(image_root=str(src_path), split=split_record, provenance=[{
        "command": "curate", "source": str(src_path),
        "parameters": params.model_dump(mode="json"),
    }])
    write_json(stage / DATASET_JSON, info.model_dump(mode="json"))
    return CurateResult(out_path, table, report)


def inspect_and_dedupe(files: list[FoundFile], params: CurateParams, stage: Path,
                       engine: Engine | None, prefer: Collection[str], progress: bool,
                       timings: dict[str, float]):
    """Inspect every file, then find duplicates, on ``engine`` (default: a
    :class:`LocalEngine` of ``params.workers`` opened for this step). Returns the samples
    table (with ``thumb_index`` and ``preferred``), the hashes, the search statistics and
    the engine's description; ``inspect_s`` and ``dedupe_s`` go to ``timings``."""
    own_engine = engine is None
    with LocalEngine(params.workers, preload=WORKER_MODULES) if own_engine \
            else nullcontext(engine) as engine:
        where = engine.describe()
        tick = time.perf_counter()
        if engine.kind == "dask":
            table, thumbs, hashes = inspect_partitioned(files, params, stage, engine, progress)
            thumbs_path = None
            coarse_path = PartedCoarse(str(stage / CACHE_DIR / COARSE_PARTS_DIR),
                                       thumbs.partition_slots, thumbs.n_slots,
                                       params.inspect.thumb_size)
        else:
            table, thumbs, hashes = inspect_files(files, params, stage, engine, progress)
            thumbs_path = stage / CACHE_DIR / THUMBS_FILE
            coarse_path = stage / CACHE_DIR / COARSE_FILE
        table["preferred"] = table["path"].isin(set(prefer))
        timings["inspect_s"] = time.perf_counter() - tick

        tick = time.perf_counter()
        with progress_bar(progress, "verifying duplicate candidates", None) as advance:
            table, stats = find_duplicates(
                table, thumbs, hashes, params.dedupe, thumbs_path=thumbs_path,
                coarse_path=coarse_path, engine=engine, workdir=stage / CACHE_DIR,
                progress=advance,
            )
        # Working files of the verification, not of the dataset.
        if isinstance(coarse_path, PartedCoarse):
            shutil.rmtree(coarse_path.folder)
        else:
            coarse_path.unlink()
        timings["dedupe_s"] = time.perf_counter() - tick
    return table, hashes, stats, where


def write_tables(table: pd.DataFrame, hashes: ImageHashes, files: list[FoundFile],
                 params: CurateParams, stage: Path,
                 earlier: tuple[dict | None, dict[str, str]]) -> pd.DataFrame:
    """Write the samples table and the hash cache into ``stage`` (and the kept images,
    when ``params.materialize`` asks); return the table as written. ``earlier``: see
    :func:`curate_into`."""
    split_record, assigned = earlier
    if params.materialize != "none":
        _materialize(table, files, stage / "images", params.materialize)
    np.save(stage / CACHE_DIR / HASHES_FILE, hashes.codes)
    table = table.drop(columns=["thumb_index", "preferred"])
    if split_record is not None:  # re-curating a split dataset keeps its assignments
        table["sample_id"] = [sample_id_for(path) for path in table["path"]]
        table["split"] = ""
        table = apply_previous_splits(table, assigned)
    write_samples(table, stage)
    return table


def check_paths(src: Path, out: Path) -> tuple[Path, Path]:
    """``(src, out)`` resolved, or :class:`CurateError` when they cannot be a source and
    an output: missing or file source, one inside the other, a foreign ``out``."""
    if not src.exists():
        raise CurateError(f"source folder {src} does not exist")
    if not src.is_dir():
        raise CurateError(f"source {src} is a file, not a folder")
    src_real, out_real = src.resolve(), out.resolve()
    if out_real == src_real or src_real in out_real.parents:
        raise CurateError(f"--out {out} is inside the source folder {src}; choose another place")
    if out_real in src_real.parents:
        raise CurateError(f"the source folder {src} is inside --out {out}; choose another place")
    if out_real.exists():
        if not out_real.is_dir():
            raise CurateError(f"--out {out} exists and is a file")
        if (out_real / BUILD_STATE_DIR).is_dir():
            raise CurateError(f"--out {out} is a `pcbforge build` folder; replacing it would "
                              "lose the build: choose another place")
        if any(out_real.iterdir()) and not (out_real / REPORT_JSON).is_file():
            raise CurateError(
                f"--out {out} exists, is not empty and is not a pcbforge dataset; "
                "refusing to replace it"
            )
    parent = out_real.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise CurateError(f"cannot create --out {out}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CurateError(f"cannot write to {parent}: permission denied")
    return src_real, out_real


def inspect_files(files, params: CurateParams, stage: Path, engine: Engine, progress: bool):
    """Inspect every file; thumbnails go to a store with one slot per image file, and
    their coarse views (for pixel verification) to a second store, ``COARSE_FILE``."""
    size = params.inspect.thumb_size
    (stage / CACHE_DIR).mkdir()
    store = stage / CACHE_DIR / THUMBS_FILE
    coarse_store = stage / CACHE_DIR / COARSE_FILE
    slots = np.full(len(files), -1, dtype=np.int64)
    images = [n for n, found in enumerate(files) if not found.skip_reason]
    slots[images] = np.arange(len(images))
    # Ordinary writes, no writable memory map: a full disk must be an error, not SIGBUS.
    offset = create_thumb_store(store, max(len(images), 1), size)
    coarse_offset = create_coarse_store(coarse_store, max(len(images), 1), size)
    # Hashes share the thumbnails' slots (the row's ``thumb_index``).
    codes = np.zeros((max(len(images), 1), N_VARIANTS), dtype=np.uint64)
    weak = np.zeros_like(codes)
    content = np.zeros_like(codes)
    rows: list[dict] = []  # the latest rows, until ROWS_PER_FRAME of them become a frame
    frames: list[pd.DataFrame] = []
    done = 0
    work = partial(inspect_into_store, params=params.inspect, store=str(store),
                   offset=offset, coarse_store=str(coarse_store), coarse_offset=coarse_offset)
    items = list(zip(slots.tolist(), files, strict=True))
    chunks = plan_chunks(items, getattr(engine, "workers", 1))
    with progress_bar(progress, "inspecting", len(files)) as advance:
        for inspections in engine.map(work, chunks, chunksize=1):
            for inspection in inspections:
                if inspection.codes is not None:
                    slot = inspection.row["thumb_index"]
                    codes[slot, : len(inspection.codes)] = inspection.codes
                    weak[slot, : len(inspection.weak)] = inspection.weak
                    content[slot] = inspection.content_codes
                rows.append(inspection.row)
            done += len(inspections)
            if len(rows) >= ROWS_PER_FRAME:
                frames.append(pd.DataFrame(rows))
                rows = []
            advance(done, len(files))
    hashes = ImageHashes(codes=codes, weak=weak, content=content)
    if rows or not frames:
        frames.append(pd.DataFrame(rows))
    table = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    return table, np.load(store, mmap_mode="r"), hashes


#: Rows of the samples table held as dicts before they become a frame: a dict row costs
#: several times its share of the table (measured on 100,000 tiles: the parent's peak
#: during inspection fell from 373 to 281 MB, the run's from 576 to 428 MB).
ROWS_PER_FRAME = 8192


#: A chunk of files sent to a worker holds at most this many...
CHUNK_FILES = 64
#: ...and, past its first file, at most this share of all bytes per worker.
CHUNK_SHARE = 1 / 16


def plan_chunks(items: list[tuple[int, FoundFile]], workers: int
                ) -> list[list[tuple[int, FoundFile]]]:
    """Consecutive runs of ``items`` to inspect as one task each, balanced by bytes.

    One task per file costs a round trip as long as inspecting a small tile, so files
    go in chunks; but a chunk of 20 large photos at the end of the list keeps one
    worker busy for seconds after the others ran dry. A chunk holds at most
    ``CHUNK_FILES`` files, about a sixteenth of each worker's share of them, and of
    their bytes (sizes from ``os.stat``; a file that cannot be statted counts 0)."""
    sizes = []
    for _, found in items:
        try:
            sizes.append(os.stat(found.fs_path).st_size)
        except OSError:
            sizes.append(0)
    share = CHUNK_SHARE / max(workers, 1)
    max_files = max(4, min(CHUNK_FILES, int(len(items) * share)))
    max_bytes = max(sum(sizes) * share, 1.0)
    chunks: list[list[tuple[int, FoundFile]]] = []
    chunk: list[tuple[int, FoundFile]] = []
    chunk_bytes = 0
    for item, size in zip(items, sizes, strict=True):
        if chunk and (len(chunk) >= max_files or chunk_bytes + size > max_bytes):
            chunks.append(chunk)
            chunk, chunk_bytes = [], 0
        chunk.append(item)
        chunk_bytes += size
    if chunk:
        chunks.append(chunk)
    return chunks


def inspect_partitioned(files: list[FoundFile], params: CurateParams, stage: Path, engine,
                        progress: bool):
    """:func:`inspect_files` as one task per partition of the file list (Dask engine).

    Each task writes its samples part (``stage/parts``), thumbnails part
    (``stage/cache/thumbs``) and coarse-view part (``stage/cache/coarse-parts``, read by
    the verification through :class:`PartedCoarse`, then removed); the parts are then
    gathered into the table and the hash arrays, at the same thumbnail slots as
    :func:`inspect_files` uses. A partition whose task killed its worker on every attempt
    is inspected again one file per task, and the file that still kills its worker
    becomes ``corrupt``/``worker_crash``.
    """
    size = params.inspect.thumb_size
    partitions = plan_partitions(files, engine.partition_size)
    parts_dir, thumbs_dir = stage / PARTS_DIR, stage / CACHE_DIR / THUMBS_PARTS_DIR
    coarse_dir = stage / CACHE_DIR / COARSE_PARTS_DIR
    parts_dir.mkdir()
    thumbs_dir.mkdir(parents=True)
    coarse_dir.mkdir()
    work = partial(inspect_partition, params=params.inspect, parts_dir=str(parts_dir),
                   thumbs_dir=str(thumbs_dir), coarse_dir=str(coarse_dir))

    def file_by_file(partition):  # runs here, writing the parts the task could not
        inspections = engine.map(partial(inspect_item, params=params.inspect),
                                 partition.items, chunksize=1, on_crash=crashed_inspection)
        return write_partition(partition, inspections, str(parts_dir), str(thumbs_dir), size,
                               str(coarse_dir))

    done = 0
    with progress_bar(progress, "inspecting", len(files)) as advance:
        for summary in engine.map(work, partitions, chunksize=1, on_crash=file_by_file,
                                  confirm_crash=False):
            done += summary["files"]
            advance(done, len(files))
    table, flat = gather_partitions(parts_dir, partitions)
    shutil.rmtree(parts_dir)
    n_slots = sum(p.n_slots for p in partitions)
    hashes = ImageHashes(*(np.ascontiguousarray(flat[:, k * N_VARIANTS:(k + 1) * N_VARIANTS])
                           for k in range(3)))
    return table, PartedThumbs(str(thumbs_dir), engine.partition_size, n_slots, size), hashes


def _materialize(table: pd.DataFrame, files: list[FoundFile], folder: Path, how: str) -> None:
    by_path = {f.path: f for f in files}
    for path in table.loc[table["status"] == "ok", "path"]:
        source = by_path[path].fs_path
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if how == "copy":
            shutil.copy2(source, target)
        else:
            os.symlink(os.path.abspath(source), target)


def status_counts(table: pd.DataFrame) -> dict:
    """``counts`` (per status), ``reasons`` (per ``status/reason``) and group counts of a
    samples table: the parts of a report that follow the table when it changes."""
    counts = table["status"].value_counts()
    reasons = (
        table.loc[table["reason"] != ""]
        .groupby(["status", "reason"]).size()
        .reset_index(name="count")
    )
    return {
        "files": len(table),
        "counts": {status: int(counts.get(status, 0)) for status in STATUSES},
        "reasons": {
            f"{row.status}/{row.reason}": int(row.count) for row in reasons.itertuples()
        },
        "groups": int(table["group"].nunique()),
        "groups_with_several_images": int((table.groupby("group").size() > 1).sum()),
    }


def _report(src, out, table, params, timings, stats, scan, where: dict) -> dict:
    images = int((table["status"] != "skipped").sum())
    return {
        "command": "curate",
        "pcbforge_version": __version__,
        "source": str(src),
        "dataset": str(out),
        "engine": where,
        **status_counts(table),
        "duplicate_search": {
            "candidate_search": stats.search,
            "candidate_pairs": stats.candidate_pairs,
            "occupancy_candidate_pairs": stats.occupancy_candidate_pairs,
            "occupancy_unsearched_images": stats.occupancy_unsearched,
            "duplicate_pairs_verified": stats.duplicate_edges,
            "variant_pairs_verified": stats.variant_edges,
            "pairs_rejected_by_pixels": stats.rejected_pairs,
        },
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "images_per_second": round(images / timings["total_s"], 2) if timings["total_s"] else None,
        "parameters": params.model_dump(mode="json"),
        "warnings": {
            "symlink_loops_not_followed": scan.symlink_loops,
            "hidden_folders_not_scanned": scan.skipped_dirs,
            "listing_errors": scan.warnings,
        },
    }
