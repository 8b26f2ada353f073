"""Inspection over partitions of the file list, for engines that run on a cluster.

Each partition is one task: it inspects its files, writes their thumbnails to its own
``.npy`` file and its rows of the samples table, with the hashes, to its own parquet part,
and returns a few counts. The run then gathers the parts into one table and the hash
arrays. No process ever holds more than one partition's files, and no two tasks write
the same file (safe on a shared file system, where cluster workers write the stage).

Thumbnail slots are numbered exactly as :func:`pcbforge.curate.runner.inspect_files`
numbers them (every file not skipped by the scan, in path order), and partitions are cut
so that partition ``k`` holds slots ``[k * P, (k + 1) * P)``: slot ``s`` lives in part
``s // P``, row ``s % P``. Hashes therefore land at the same slots as with the local
engine, and the duplicate search sees the same arrays.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pcbforge.core.scan import FoundFile
from pcbforge.curate.hashing import N_VARIANTS
from pcbforge.curate.inspect import Inspection, InspectParams, empty_row, inspect_file
from pcbforge.curate.verify import coarse_record, coarse_record_dtype

#: Hash columns a samples part carries until the gather takes them off.
HASH_KINDS = ("code", "weak", "content")
HASH_COLUMNS = tuple(f"_{kind}_{v}" for kind in HASH_KINDS for v in range(N_VARIANTS))


@dataclass(frozen=True)
class Partition:
    """Files ``items`` (each with its thumbnail slot, -1 for skipped files) of part ``index``,
    which stores the thumbnails of slots ``first_slot`` to ``first_slot + n_slots - 1``."""

    index: int
    items: tuple[tuple[int, FoundFile], ...]
    first_slot: int
    n_slots: int

    @property
    def name(self) -> str:
        return f"part-{self.index:06d}"


def thumbnail_slots(files: list[FoundFile]) -> np.ndarray:
    """Slot of each file in the thumbnail store: consecutive over files not skipped, else -1."""
    slots = np.full(len(files), -1, dtype=np.int64)
    images = [n for n, found in enumerate(files) if not found.skip_reason]
    slots[images] = np.arange(len(images))
    return slots


def plan_partitions(files: list[FoundFile], partition_slots: int) -> list[Partition]:
    """Cut the file list so that partition ``k`` holds thumbnail slots ``[kP, (k+1)P)``
    (skipped files ride with the partition they sit in; at least one partition)."""
    if partition_slots < 1:
        raise ValueError(f"partition_slots must be >= 1, got {partition_slots}")
    slots = thumbnail_slots(files)
    slotted = np.flatnonzero(slots >= 0)  # file position of each slot
    n_slots = len(slotted)
    # Each partition after the first starts at the file of its first slot.
    starts = [0] + slotted[partition_slots::partition_slots].tolist()
    ends = starts[1:] + [len(files)]
    items = list(zip(slots.tolist(), files, strict=True))
    return [
        Partition(k, tuple(items[start:end]), k * partition_slots,
                  max(0, min(partition_slots, n_slots - k * partition_slots)))
        for k, (start, end) in enumerate(zip(starts, ends, strict=True))
    ]


def inspect_partition(partition: Partition, params: InspectParams, parts_dir: str,
                      thumbs_dir: str, coarse_dir: str | None = None) -> dict:
    """Task: inspect a partition's files and write its thumbnails and samples part (and
    the thumbnails' coarse views, into ``coarse_dir`` when given).

    Returns ``{"index", "files", "images"}``. Writing is atomic per file, so a task re-run
    after its worker died overwrites nothing half-written.
    """
    inspections = (inspect_file(found, params) for _, found in partition.items)
    return write_partition(partition, inspections, parts_dir, thumbs_dir, params.thumb_size,
                           coarse_dir)


def inspect_item(item: tuple[int, FoundFile], params: InspectParams) -> Inspection:
    """Task: one file of a partition (its thumbnail comes back with the row); used to find
    the file that kills its worker."""
    return inspect_file(item[1], params)


def crashed_inspection(item: tuple[int, FoundFile], attempts: str = "every attempt"
                       ) -> Inspection:
    """The row of a file whose worker process died while reading it, on every attempt (a
    decoder crash, or memory exhausted): corrupt, ``worker_crash``."""
    found = item[1]
    row = empty_row(found)
    row.update(status="corrupt", reason="worker_crash",
               detail=f"the worker process died while inspecting this file ({attempts})")
    try:
        row["bytes"] = os.stat(found.fs_path).st_size
    except OSError:
        pass
    return Inspection(row, None, None, None)


def write_partition(partition: Partition, inspections, parts_dir: str, thumbs_dir: str,
                    thumb_size: int, coarse_dir: str | None = None) -> dict:
    """Write the thumbnails (in slot order, zeros where nothing decoded) and the samples part
    of a partition from its inspections, consumed one at a time; with ``coarse_dir``, the
    thumbnails' coarse views too (records of
    :func:`~pcbforge.curate.verify.coarse_record_dtype`, read with :class:`PartedCoarse`)."""
    rows: list[dict] = []
    hashes = np.zeros((len(partition.items), len(HASH_COLUMNS)), dtype=np.uint64)
    blank = bytes(thumb_size * thumb_size)
    thumbs_path = Path(thumbs_dir) / f"{partition.name}.npy"
    record_dtype = coarse_record_dtype(thumb_size)
    coarse = np.zeros(partition.n_slots, dtype=record_dtype)
    images = 0
    with _AtomicFile(thumbs_path) as handle:
        np.lib.format.write_array_header_1_0(handle, {
            "descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False,
            "shape": (partition.n_slots, thumb_size, thumb_size)})
        for n, ((slot, _), inspection) in enumerate(zip(partition.items, inspections,
                                                         strict=True)):
            row = inspection.row
            if slot >= 0:
                if inspection.thumb is not None:
                    handle.write(np.ascontiguousarray(inspection.thumb, np.uint8).tobytes())
                    row["thumb_index"] = slot
                    images += 1
                    if inspection.coarse is not None:
                        coarse[slot - partition.first_slot] = coarse_record(inspection.coarse)
                else:
                    handle.write(blank)
            if inspection.codes is not None:
                hashes[n, : len(inspection.codes)] = inspection.codes
                hashes[n, N_VARIANTS : N_VARIANTS + len(inspection.weak)] = inspection.weak
                hashes[n, 2 * N_VARIANTS :] = inspection.content_codes
            rows.append(row)
    table = pd.DataFrame(rows)
    for column, values in zip(HASH_COLUMNS, hashes.T, strict=True):
        table[column] = values
    parquet = Path(parts_dir) / f"{partition.name}.parquet"
    with _AtomicFile(parquet) as handle:
        table.to_parquet(handle, index=False)
    if coarse_dir is not None:
        with _AtomicFile(Path(coarse_dir) / f"{partition.name}.npy") as handle:
            np.save(handle, coarse)
    return {"index": partition.index, "files": len(partition.items), "images": images}


def gather_partitions(parts_dir: Path, partitions: list[Partition]
                      ) -> tuple[pd.DataFrame, np.ndarray]:
    """The samples table (rows in file order) and the (n_slots, 24) hash array of all parts."""
    n_slots = sum(p.n_slots for p in partitions)
    hashes = np.zeros((max(n_slots, 1), len(HASH_COLUMNS)), dtype=np.uint64)
    tables = []
    for partition in partitions:
        table = pd.read_parquet(Path(parts_dir) / f"{partition.name}.parquet")
        slots = np.array([slot for slot, _ in partition.items], dtype=np.int64)
        decoded = slots >= 0
        hashes[slots[decoded]] = table.loc[decoded, list(HASH_COLUMNS)].to_numpy(np.uint64)
        tables.append(table.drop(columns=list(HASH_COLUMNS)))
    return pd.concat(tables, ignore_index=True), hashes


@dataclass(frozen=True)
class PartedStore:
    """A store written per partition (one ``.npy`` file per part in ``folder``, as
    :func:`write_partition` writes them), indexed by slot like one array: slot ``s`` is
    row ``s % partition_slots`` of part ``s // partition_slots``. ``size``: the side of
    the thumbnails. Reads a slot at a time with ``pread`` (no memory map), so a worker
    reading slots across the whole corpus keeps no pages of it resident. Small and
    picklable: tasks get it as an argument."""

    folder: str
    partition_slots: int
    n_slots: int
    size: int

    def __len__(self) -> int:
        return self.n_slots

    def _read(self, slot, nbytes: int, what: str) -> bytes:
        slot = int(slot)
        if not 0 <= slot < self.n_slots:
            raise IndexError(f"{what} slot {slot} outside [0, {self.n_slots})")
        part, row = divmod(slot, self.partition_slots)
        path = os.path.join(self.folder, f"part-{part:06d}.npy")
        with open(path, "rb") as handle:
            np.lib.format.read_magic(handle)
            np.lib.format.read_array_header_1_0(handle)  # written by write_partition
            data = os.pread(handle.fileno(), nbytes, handle.tell() + row * nbytes)
        if len(data) != nbytes:
            raise ValueError(f"{path}: {what} row {row} is truncated")
        return data


class PartedThumbs(PartedStore):
    """The thumbnail store of a Dask run: ``store[slot]`` is one (size, size) thumbnail."""

    def __getitem__(self, slot) -> np.ndarray:
        data = self._read(slot, self.size * self.size, "thumbnail")
        return np.frombuffer(data, np.uint8).reshape(self.size, self.size)


class PartedCoarse(PartedStore):
    """The coarse views a Dask run's inspection stored (``coarse_dir`` of
    :func:`write_partition`); ``store[slots]`` with an array of slots gives their records
    as one array (what pixel verification reads per chunk of pairs)."""

    def __getitem__(self, slots) -> np.ndarray:
        dtype = coarse_record_dtype(self.size)
        records = np.empty(np.shape(slots), dtype=dtype)
        flat = records.reshape(-1)
        for n, slot in enumerate(np.atleast_1d(slots)):
            flat[n] = np.frombuffer(self._read(slot, dtype.itemsize, "coarse-view"), dtype)[0]
        return records if np.ndim(slots) > 0 else records[()]


class _AtomicFile:
    """A binary file written under a temporary name and renamed into place on success."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.part")

    def __enter__(self):
        self.handle = open(self.tmp, "wb")
        return self.handle

    def __exit__(self, kind, *exc) -> None:
        try:
            self.handle.close()  # flushes: a full disk can fail here too
            if kind is None:
                os.replace(self.tmp, self.path)
        except BaseException:
            self.tmp.unlink(missing_ok=True)
            raise
        if kind is not None:
            self.tmp.unlink(missing_ok=True)
