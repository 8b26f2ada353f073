"""Per-file work: read, decode, hash and score one file.

:func:`inspect_file` is the unit any engine maps over a file list (a local
process pool now, Dask tasks later). It never raises for a bad file and never
writes anything: it returns a row of the samples table and the grey thumbnail
used later for pixel-level duplicate checks.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pcbforge.core.decode import (
    DEFAULT_MAX_PIXELS,
    LOSSLESS_FORMATS,
    decode_image_bytes,
    format_from_extension,
    to_gray_uint8,
)
from pcbforge.core.files import DEFAULT_MAX_FILE_BYTES, UnreadableFileError, read_regular_file
from pcbforge.core.scan import FoundFile
from pcbforge.curate.hashing import (
    THUMB_SIZE,
    hash_to_hex,
    occupancy_of,
    perceptual_hashes,
    pixel_hash,
    thumbnail,
)
from pcbforge.curate.quality import (
    SCORE_COLUMNS,
    Measured,
    QualityThresholds,
    apply_checks,
    check_score_columns,
    quality_scores,
)
from pcbforge.curate.verify import (
    CoarseView,
    coarse_record,
    coarse_record_dtype,
    coarse_view,
    coarse_view_of_small,
)


class InspectParams(BaseModel):
    """Parameters of the per-file work (picklable, validated)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_pixels: int = Field(DEFAULT_MAX_PIXELS, gt=0)
    quality: QualityThresholds = QualityThresholds()
    thumb_size: int = Field(THUMB_SIZE, ge=32, le=1024)
    transformed: bool = True  # compute hashes of rotated/mirrored variants
    #: Files above this many bytes are not read: status ``corrupt``, reason ``too_large``.
    max_file_bytes: int = Field(DEFAULT_MAX_FILE_BYTES, gt=0)


@dataclass
class Inspection:
    """What :func:`inspect_file` returns: a table row plus the thumbnail."""

    row: dict
    thumb: np.ndarray | None  # (thumb_size, thumb_size) uint8, None when undecodable
    codes: np.ndarray | None  # (8,) uint64 pHash of each dihedral variant
    weak: np.ndarray | None  # (8,) uint64 weak-bit masks
    content_codes: np.ndarray | None = None  # (8,) uint64 block-occupancy hashes
    coarse: CoarseView | None = None  # the thumbnail's coarse view, for pixel verification


def create_thumb_store(path: str | os.PathLike, slots: int, size: int) -> int:
    """Create the ``.npy`` thumbnail store of ``slots`` grey ``size`` x ``size`` thumbnails
    (sparse: no pixel written yet) and return the byte offset of slot 0.

    Workers fill it with :func:`write_thumb` (ordinary writes: a full disk is an
    ``OSError`` in the worker, where a memory map would kill it with SIGBUS)."""
    return create_store(path, (slots, size, size), np.dtype(np.uint8))


def create_coarse_store(path: str | os.PathLike, slots: int, thumb_size: int) -> int:
    """Create the ``.npy`` store of ``slots`` coarse views of ``thumb_size`` thumbnails
    (records of :func:`~pcbforge.curate.verify.coarse_record_dtype`), as
    :func:`create_thumb_store` does; returns the byte offset of slot 0."""
    return create_store(path, (slots,), coarse_record_dtype(thumb_size))


def create_store(path: str | os.PathLike, shape: tuple[int, ...], dtype: np.dtype) -> int:
    """Create a sparse ``.npy`` file of ``shape`` and ``dtype``; return where its data starts."""
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
              "shape": shape}
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, header)
        offset = handle.tell()
        handle.truncate(offset + int(np.prod(shape)) * dtype.itemsize)
    return offset


def write_thumb(store: str, offset: int, index: int, thumb: np.ndarray) -> None:
    """Write ``thumb`` into slot ``index`` of the store made by :func:`create_thumb_store`
    (``offset``: what it returned). Storage errors are raised naming the store."""
    write_slots(store, offset, [(index, thumb)])


def write_slots(store: str, offset: int, items: list[tuple[int, np.ndarray]]) -> None:
    """Write each ``(index, value)`` of ``items`` into slot ``index`` of a store made by
    :func:`create_store` (a slot holds as many bytes as ``value``), opening it once.
    Storage errors are raised naming the store."""
    if not items:
        return
    try:
        fd = os.open(store, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            for index, value in items:
                data = memoryview(np.ascontiguousarray(value)).cast("B")
                position = offset + index * len(data)
                while len(data):
                    written = os.pwrite(fd, data, position)
                    data, position = data[written:], position + written
        finally:
            os.close(fd)
    except OSError as err:
        raise OSError(err.errno, err.strerror, store) from err


def inspect_into_store(
    chunk: list[tuple[int, FoundFile]], params: InspectParams, store: str, offset: int,
    coarse_store: str | None = None, coarse_offset: int = 0,
) -> list[Inspection]:
    """:func:`inspect_file` for each ``(index, file)`` of ``chunk``, writing the thumbnail
    into slot ``index`` of the ``.npy`` thumbnail store (``offset``: where slot 0 starts)
    instead of returning it (saves sending 64 KiB per image back to the parent process),
    and its coarse view into the same slot of ``coarse_store`` when one is given (see
    :func:`create_coarse_store`). Each store is opened once per chunk."""
    inspections, thumbs, coarse = [], [], []
    for index, found in chunk:
        inspection = inspect_file(found, params)
        if inspection.thumb is not None:
            thumbs.append((index, inspection.thumb))
            if coarse_store is not None:
                coarse.append((index, coarse_record(inspection.coarse)))
            inspection.thumb = inspection.coarse = None
            inspection.row["thumb_index"] = index
        inspections.append(inspection)
    write_slots(store, offset, thumbs)
    if coarse_store is not None:
        write_slots(coarse_store, coarse_offset, coarse)
    return inspections


def empty_row(found: FoundFile) -> dict:
    """A row with every column present, before anything is known."""
    row = {
        "path": found.path,
        "status": "",
        "reason": "",
        "detail": "",
        "duplicate_of": "",
        "group": "",
        "sha256": "",
        "pixel_hash": "",
        "phash": "",
        "width": 0,
        "height": 0,
        "format": "",
        "extension_format": format_from_extension(found.path),
        "format_mismatch": False,
        "mode": "",
        "channels": 0,
        "bit_depth": 0,
        "exif_orientation": 0,
        "frames": 0,
        "lossless": False,
        "bytes": 0,
        "low_quality_reason": "",
        "thumb_index": -1,
    }
    row.update({column: np.nan for column in SCORE_COLUMNS + check_score_columns()})
    row["content_score"] = np.nan  # share of the frame holding content
    return row


#: Test-only hook: the absolute path of one file whose inspection kills the worker process,
#: as a crashing decoder would (tests of the Dask engine's worker-crash handling set it in
#: their cluster's worker environment). Unset, it does nothing.
CRASH_TEST_ENV = "PCBFORGE_TEST_CRASH_ON"


def _crash_if_planted(found: FoundFile) -> None:
    planted = os.environ.get(CRASH_TEST_ENV)
    if planted and os.path.realpath(found.fs_path) == os.path.realpath(planted):
        os._exit(70)  # no cleanup, no exception: what a segfault in a decoder looks like


def inspect_file(found: FoundFile, params: InspectParams) -> Inspection:
    """Read and analyse one file; every failure becomes a status and a reason."""
    row = empty_row(found)
    if found.skip_reason:
        row.update(status="skipped", reason=found.skip_reason)
        _fill_size(row, found)
        return Inspection(row, None, None, None)
    _crash_if_planted(found)
    try:
        # Regular files only, and bounded: a FIFO would hang the read, a device or a
        # huge file would exhaust memory.
        data = read_regular_file(found.fs_path, params.max_file_bytes)
    except UnreadableFileError as err:
        row.update(status="corrupt", reason=err.reason, detail=err.detail)
        _fill_size(row, found)
        return Inspection(row, None, None, None)
    except OSError as err:
        row.update(status="corrupt", reason="unreadable", detail=_os_error(err))
        _fill_size(row, found)
        return Inspection(row, None, None, None)
    return inspect_bytes(data, row, params)


def inspect_bytes(data: bytes, row: dict, params: InspectParams) -> Inspection:
    """The pure part of :func:`inspect_file`: bytes in, row and thumbnail out."""
    row["bytes"] = len(data)
    row["sha256"] = hashlib.sha256(data).hexdigest()
    decoded = decode_image_bytes(data, max_pixels=params.max_pixels)
    row.update(
        format=decoded.format,
        mode=decoded.mode,
        exif_orientation=decoded.exif_orientation,
        frames=decoded.frames,
    )
    if row["extension_format"] and decoded.format and decoded.format != "text":
        row["format_mismatch"] = row["extension_format"] != decoded.format
    if not decoded.ok:
        row.update(status="corrupt", reason=decoded.error, detail=decoded.detail)
        return Inspection(row, None, None, None)

    pixels = decoded.pixels
    row.update(
        width=decoded.width,
        height=decoded.height,
        channels=1 if pixels.ndim == 2 else int(pixels.shape[2]),
        bit_depth=decoded.bit_depth,
        lossless=_is_lossless(decoded.format, data),
        pixel_hash=pixel_hash(pixels),
    )
    gray = to_gray_uint8(pixels)
    thumb = thumbnail(gray, params.thumb_size)
    codes, weak = perceptual_hashes(thumb, variants=params.transformed)
    occupancy = occupancy_of(thumb)
    content_codes, row["content_score"] = occupancy.codes, occupancy.fraction
    # Verification's coarse view is the occupancy hash's shrink for a 256 px thumbnail.
    coarse = (coarse_view_of_small(occupancy.small, occupancy.levels, occupancy.distance)
              if occupancy.small.shape == (thumb.shape[0] // 4, thumb.shape[1] // 4)
              else coarse_view(thumb))
    row["phash"] = hash_to_hex(codes[0])
    scores = quality_scores(thumb)
    row.update(scores)
    check_scores, reason = apply_checks(
        Measured(thumb, scores, decoded.width, decoded.height), params.quality)
    row.update(check_scores)
    row["low_quality_reason"] = reason
    row["status"] = "low_quality" if reason else "ok"
    row["reason"] = reason
    return Inspection(row, thumb, codes, weak, content_codes, coarse)


def _is_lossless(fmt: str, data: bytes) -> bool:
    if fmt == "webp":
        return b"VP8L" in data[12:40]  # lossless WebP bitstream chunk
    return fmt in LOSSLESS_FORMATS


def _fill_size(row: dict, found: FoundFile) -> None:
    try:
        row["bytes"] = os.stat(found.fs_path).st_size
    except OSError:
        pass


def _os_error(err: OSError) -> str:
    return f"{type(err).__name__}: {err.strerror or err}"
