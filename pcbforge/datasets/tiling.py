"""Whole panels cut into training tiles, as a new pcbforge dataset.

AOI machines scan whole panels, several thousand pixels a side; detectors train on tiles
of a few hundred. :func:`tile_dataset` cuts every usable image of a dataset, its labels
and its template into tiles, and records where each tile came from, so that

* a panel's tiles share one leakage ``group`` (the panel's, or the panel's sample id when
  it has none) and its split: ``pcbforge split`` and ``audit`` keep them on one side;
* each tile of a tested image keeps its template pair: the template is cut into the same
  windows (``template_path`` names the template's tile);
* predictions made on the tiles can be brought back to the panel
  (:mod:`pcbforge.evaluate.untile`) from the tile columns :data:`TILE_COLUMNS`.

The grid (:func:`tile_origins`): along each axis, tiles of ``size`` every ``size -
overlap`` px from 0, and the last one aligned to the image edge, so every pixel is in a
tile and no tile is smaller than ``size`` where the image is at least that big; an axis
shorter than ``size`` is one tile of its length (a small image is one tile, as it is).

Boxes (:func:`place_boxes`): a box is clipped to each tile it meets and kept there when at
least ``min_visible`` of its area is inside. A box no tile holds that well (larger than a
tile, or across a corner where four tiles meet) is kept, clipped, in the tile that holds
most of it: no labelled defect is lost. Each tile label's ``params`` gets a ``tile``
record: ``truncated``, the ``cut`` sides, the ``visible`` share and the ``panel_box``.
Instance masks are cut with their boxes.

The per-panel work (:func:`cut_panel`) is a pure, top-level function of one task that any
engine maps; the same inputs give the same bytes, whatever the engine or worker count.
"""

from __future__ import annotations

import errno
import hashlib
import json
import re
import time
from collections import Counter
from contextlib import nullcontext
from enum import Enum
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from pcbforge import __version__
from pcbforge.core.decode import decode_image_bytes
from pcbforge.core.files import (
    DEFAULT_MAX_FILE_BYTES,
    UnreadableFileError,
    read_regular_file,
    write_bytes,
    write_json,
)
from pcbforge.core.output import staged_output
from pcbforge.core.progress import progress_bar
from pcbforge.datasets.dataset import (
    DATASET_JSON,
    Dataset,
    DatasetInfo,
    apply_previous_splits,
    load,
    previous_splits,
    sample_id_for,
    save,
    with_defaults,
)
from pcbforge.datasets.masks import decode_mask, encode_mask
from pcbforge.datasets.samples import USABLE_STATUSES
from pcbforge.engine import Engine, LocalEngine

#: Where each tile came from: the panel's sample id and path, the tile's offset and size
#: in the panel, and the panel's size (untile needs it to tell a seam from the border).
TILE_COLUMNS = ("panel_id", "panel_path", "tile_x", "tile_y", "tile_width", "tile_height",
                "panel_width", "panel_height")
#: Panel columns every tile keeps (with ``carry``, more); the rest describe the panel's
#: file (hash, size, quality scores) and would be wrong for a tile.
CARRIED_COLUMNS = ("status", "reason", "detail", "low_quality_reason", "duplicate_reason",
                   "synthetic", "source", "source_kind", "source_split", "role", "board",
                   "split")
TILE_REPORT = "tile_report.json"
#: The folder of the tile images inside the tiled dataset.
TILES_DIR = "tiles"
#: Modules a worker imports once (the fork server preloads them).
WORKER_MODULES = ("numpy", "cv2", "pcbforge.datasets.tiling")
#: Extension of each lossless format a tile can be written in.
LOSSLESS_EXTENSIONS = {"png": ".png", "bmp": ".bmp", "tiff": ".tif"}
SIDES = ("left", "top", "right", "bottom")


class TileError(ValueError):
    """Arguments or data that cannot be tiled as asked (one clear line)."""


class TileImageFormat(str, Enum):
    """How tiles are written: ``png`` always, or ``source``: the panel's own format where
    it is lossless (PNG, BMP, TIFF), PNG otherwise."""

    png = "png"
    source = "source"


class TileParams(BaseModel):
    """What :func:`tile_dataset` cuts: tiles of ``size`` px with ``overlap`` px between
    neighbours; boxes kept in a tile with at least ``min_visible`` of their area inside;
    ``carry``: further panel columns every tile keeps (a lot, a capture session...)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int = Field(640, ge=16)
    overlap: int = Field(64, ge=0)
    min_visible: float = Field(0.5, gt=0.0, le=1.0)
    image_format: TileImageFormat = TileImageFormat.png
    carry: tuple[str, ...] = ()

    @field_validator("overlap")
    @classmethod
    def _overlap_below_size(cls, value: int, info: ValidationInfo) -> int:
        size = info.data.get("size")
        if size is not None and value >= size:
            raise ValueError(f"overlap must be smaller than the tile size (got overlap "
                             f"{value} >= size {size}): the tiles would not advance")
        return value


# --- the grid and the boxes (pure) -------------------------------------------------------


def tile_origins(length: int, size: int, overlap: int) -> list[int]:
    """Tile starts along one axis of ``length`` px: every ``size - overlap`` px from 0,
    then one aligned to the end (``length - size``); ``[0]`` when ``length <= size``."""
    if size <= 0 or not 0 <= overlap < size:
        raise ValueError(f"expected 0 <= overlap < size, got overlap {overlap}, size {size}")
    if length <= size:
        return [0]
    return [*range(0, length - size, size - overlap), length - size]


def tile_grid(width: int, height: int, size: int, overlap: int
              ) -> list[tuple[int, int, int, int]]:
    """The tiles of a ``width`` x ``height`` image as ``(x, y, w, h)``, row by row."""
    tile_w, tile_h = min(size, width), min(size, height)
    return [(x, y, tile_w, tile_h) for y in tile_origins(height, size, overlap)
            for x in tile_origins(width, size, overlap)]


def visible_shares(boxes: np.ndarray, tiles: list[tuple[int, int, int, int]]) -> np.ndarray:
    """``(N, T)``: the share of each box's area (``(N, 4)`` panel ``x1, y1, x2, y2``)
    inside each tile ``(x, y, w, h)``."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    grid = np.asarray(tiles, dtype=np.float64).reshape(-1, 4)
    tx1, ty1 = grid[:, 0], grid[:, 1]
    tx2, ty2 = tx1 + grid[:, 2], ty1 + grid[:, 3]
    x1, y1, x2, y2 = (boxes[:, k:k + 1] for k in range(4))
    inter_w = np.clip(np.minimum(x2, tx2) - np.maximum(x1, tx1), 0.0, None)
    inter_h = np.clip(np.minimum(y2, ty2) - np.maximum(y1, ty1), 0.0, None)
    return inter_w * inter_h / ((x2 - x1) * (y2 - y1)).clip(min=1e-12)


def place_boxes(boxes: np.ndarray, tiles: list[tuple[int, int, int, int]],
                min_visible: float) -> list[tuple[int, int, float, tuple[str, ...]]]:
    """Which tile keeps which box: ``(box index, tile index, visible share, cut sides)``
    for every box kept in a tile, by box then tile.

    ``boxes``: ``(N, 4)`` panel ``x1, y1, x2, y2``. A box is kept in each tile holding at
    least ``min_visible`` of its area; one that no tile holds that well, in the tile that
    holds most of it (the first such tile). ``cut``: the sides of the box that the tile's
    edges cut off."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if not len(boxes) or not tiles:
        return []
    visible = visible_shares(boxes, tiles)
    keep = visible >= min_visible - 1e-9
    orphans = ~keep.any(axis=1) & (visible.max(axis=1) > 0)
    keep[orphans, np.argmax(visible[orphans], axis=1)] = True
    grid = np.asarray(tiles, dtype=np.float64)
    tx1, ty1 = grid[:, 0], grid[:, 1]
    tx2, ty2 = tx1 + grid[:, 2], ty1 + grid[:, 3]
    x1, y1, x2, y2 = (boxes[:, k:k + 1] for k in range(4))
    cut = np.stack([x1 < tx1, y1 < ty1, x2 > tx2, y2 > ty2], axis=-1)  # (N, T, 4)
    return [(int(b), int(t), float(visible[b, t]),
             tuple(side for side, flag in zip(SIDES, cut[b, t], strict=True) if flag))
            for b, t in zip(*np.nonzero(keep), strict=True)]


def tile_label_params(params: object, record: dict) -> str:
    """A label's ``params`` text with the ``tile`` record added (a text that is not a
    JSON object is kept under ``params``)."""
    text = "" if params is None or (isinstance(params, float) and np.isnan(params)) \
        else str(params)
    value: object = {}
    if text:
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = {"params": text}
    if not isinstance(value, dict):
        value = {"params": value}
    return json.dumps({**value, "tile": record}, separators=(",", ":"), sort_keys=True)


def tile_name(panel_id: str, panel_path: str, x: int, y: int, extension: str) -> str:
    """The tile's path in the tiled dataset: one folder per panel (by sample id, so two
    panels never share one), the panel's file stem (readable) and the tile's offset."""
    stem = Path(panel_path.replace("\\", "/")).stem
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._")[:80] or "panel"
    return f"{TILES_DIR}/{panel_id}/{stem}_x{x:05d}_y{y:05d}{extension}"


def encode_tile(pixels: np.ndarray, fmt: str) -> bytes:
    """Canonical pixels (grey, RGB or RGBA; 8 or 16 bits) encoded losslessly as ``fmt``
    (``png``, ``bmp`` or ``tiff``); the same pixels give the same bytes."""
    if pixels.ndim == 3 and pixels.shape[2] == 3:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    elif pixels.ndim == 3 and pixels.shape[2] == 4:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_RGBA2BGRA)
    params = [cv2.IMWRITE_PNG_COMPRESSION, 3] if fmt == "png" else []
    ok, data = cv2.imencode(LOSSLESS_EXTENSIONS[fmt], np.ascontiguousarray(pixels), params)
    if not ok:
        raise ValueError(f"cannot encode a {pixels.dtype} tile as {fmt}")
    return data.tobytes()


# --- one panel (the per-item work) -------------------------------------------------------


def _read_panel(file: str, max_bytes: int):
    """The decoded panel, or ``(reason, detail)`` when it cannot be used."""
    try:
        data = read_regular_file(file, max_bytes)
    except FileNotFoundError:
        return ("missing", f"{file} does not exist")
    except UnreadableFileError as err:
        return (err.reason, err.detail)
    except OSError as err:
        if err.errno in (errno.EACCES, errno.EPERM):  # a finding about this file
            return ("unreadable", f"{file}: {err.strerror}")
        raise
    decoded = decode_image_bytes(data)
    if not decoded.ok:
        return (decoded.error, decoded.detail)
    return decoded


def cut_panel(task: dict) -> dict:
    """Cut one panel into tiles written under the folder ``task["stage"]``; returns the
    tiles, their labels and the counts (a pure per-item function for any engine).

    ``task``: ``panel_id``, ``path`` (samples-table path), ``file`` (on disk), ``stage``,
    ``size``, ``overlap``, ``min_visible``, ``image_format``, ``max_bytes``, ``width`` and
    ``height`` as the samples table records them (0: unknown), and ``labels``: the
    panel's label rows (``label, x1, y1, x2, y2, mask, synthetic, params``). A panel that
    cannot be read gives an ``error``; a failed write (a full disk) raises."""
    panel = _read_panel(task["file"], task["max_bytes"])
    result = {"panel_id": task["panel_id"], "error": "", "detail": "", "tiles": [],
              "labels": [], "pieces_dropped": 0, "kept_below_min_visible": 0,
              "masks_cut": 0, "masks_emptied": 0, "format": ""}
    if isinstance(panel, tuple):
        result["error"], result["detail"] = panel
        return result
    height, width = panel.pixels.shape[:2]
    recorded = (int(task["width"]), int(task["height"]))
    if all(recorded) and recorded != (width, height):
        result["error"] = "size_mismatch"
        result["detail"] = (f"the image is {width}x{height}, the samples table records "
                            f"{recorded[0]}x{recorded[1]} (its labels' frame); re-import it")
        return result
    fmt = panel.format if task["image_format"] == TileImageFormat.source.value else "png"
    fmt = fmt if fmt in LOSSLESS_EXTENSIONS else "png"
    result.update(format=fmt, width=width, height=height)
    tiles = tile_grid(width, height, task["size"], task["overlap"])
    for x, y, w, h in tiles:
        name = tile_name(task["panel_id"], task["path"], x, y, LOSSLESS_EXTENSIONS[fmt])
        data = encode_tile(panel.pixels[y:y + h, x:x + w], fmt)
        write_bytes(Path(task["stage"]) / name, data, inside=task["stage"])
        result["tiles"].append({"path": name, "x": x, "y": y, "width": w, "height": h,
                                "sha256": hashlib.sha256(data).hexdigest(),
                                "bytes": len(data), "format": fmt})
    labels = task["labels"]
    boxes = np.array([[r["x1"], r["y1"], r["x2"], r["y2"]] for r in labels],
                     dtype=np.float64).reshape(-1, 4)
    kept = place_boxes(boxes, tiles, task["min_visible"])
    # Pieces that a tile shows but does not keep (below min_visible).
    result["pieces_dropped"] = (int((visible_shares(boxes, tiles) > 0).sum()) - len(kept)
                                if len(boxes) else 0)
    masks: dict[int, np.ndarray | None] = {}
    for box, tile, visible, cut in kept:
        row = labels[box]
        x, y, w, h = tiles[tile]
        x1, y1, x2, y2 = boxes[box]
        if visible < task["min_visible"] - 1e-9:
            result["kept_below_min_visible"] += 1
        mask = ""
        if str(row.get("mask") or ""):
            if box not in masks:  # decode once per box, drop after its last tile
                masks = {box: decode_mask(row["mask"])}
            window = masks[box][y:y + h, x:x + w]
            if window.any():
                mask = encode_mask(window)
                result["masks_cut"] += 1
            else:
                result["masks_emptied"] += 1
        record = {"truncated": bool(cut), "cut": list(cut), "visible": round(visible, 4),
                  "panel_box": [float(v) for v in (x1, y1, x2, y2)]}
        result["labels"].append({
            "tile": tile, "label": row["label"],
            "x1": max(x1, x) - x + 0.0, "y1": max(y1, y) - y + 0.0,
            "x2": min(x2, x + w) - x + 0.0, "y2": min(y2, y + h) - y + 0.0,
            "mask": mask, "synthetic": bool(row.get("synthetic", False)),
            "params": tile_label_params(row.get("params"), record),
            "truncated": bool(cut)})
    return result


# --- the dataset ---------------------------------------------------------------------------


def _check_out(src: Path, out: Path) -> None:
    real_src, real_out = src.resolve(), out.resolve()
    if real_out == real_src or real_src in real_out.parents or real_out in real_src.parents:
        raise TileError(f"--out {out} and the source {src} must not contain each other; "
                        f"choose another place")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        try:
            info = json.loads((out / DATASET_JSON).read_text(encoding="utf-8"))
            # The last step: a folder some other command made from tiles is not ours.
            ours = info.get("provenance", [{}])[-1].get("step") == "tile"
        except (OSError, ValueError, AttributeError, IndexError):
            ours = False
        if not ours:
            raise TileError(f"--out {out} exists and is not an earlier `pcbforge tile` "
                            f"output; give a new folder")


def _text(value: object) -> str:
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) \
        else str(value)


def _tasks(dataset: Dataset, panels: pd.DataFrame, params: TileParams, stage: Path,
           max_bytes: int) -> list[dict]:
    label_rows = dataset.labels.reset_index(drop=True)
    by_sample = {key: rows for key, rows in label_rows.groupby("sample_id", sort=False)}
    size_of = panels.reindex(columns=["width", "height"]).apply(
        pd.to_numeric, errors="coerce").fillna(0)
    tasks = []
    for (_, panel), (width, height) in zip(panels.iterrows(), size_of.to_numpy(),
                                           strict=True):
        rows = by_sample.get(panel["sample_id"])
        labels = [] if rows is None else [
            {"label": r.label, "x1": float(r.x1), "y1": float(r.y1), "x2": float(r.x2),
             "y2": float(r.y2), "mask": _text(r.mask), "synthetic": bool(r.synthetic),
             "params": _text(r.params)} for r in rows.itertuples()]
        tasks.append({"panel_id": str(panel["sample_id"]), "path": str(panel["path"]),
                      "file": str(dataset.image_path(str(panel["path"]))),
                      "stage": str(stage), "size": params.size, "overlap": params.overlap,
                      "min_visible": params.min_visible,
                      "image_format": params.image_format.value, "max_bytes": max_bytes,
                      "width": int(width), "height": int(height), "labels": labels})
    return tasks


def _tile_rows(panels: pd.DataFrame, results: list[dict], params: TileParams
               ) -> tuple[list[dict], list[dict], dict]:
    """The tiles' sample rows and label rows, and the pairing counts."""
    window_of = {}  # (panel path, x, y, w, h) -> tile path: where template tiles are
    by_id = panels.set_index("sample_id", drop=False)
    for result in results:
        panel_path = str(by_id.at[result["panel_id"], "path"])
        for tile in result["tiles"]:
            window_of[(panel_path, tile["x"], tile["y"], tile["width"], tile["height"])] = \
                tile["path"]
    carried = [c for c in (*CARRIED_COLUMNS, *params.carry) if c in panels.columns]
    samples, labels = [], []
    pairing = Counter()
    for result in results:
        panel = by_id.loc[result["panel_id"]]
        group = _text(panel.get("group")) or str(panel["sample_id"])
        template = _text(panel.get("template_path"))
        duplicate_of = _text(panel.get("duplicate_of"))
        for tile in result["tiles"]:
            window = (tile["x"], tile["y"], tile["width"], tile["height"])
            sample_id = sample_id_for(tile["path"], "tile")
            row = {column: panel[column] for column in carried}
            row.update({
                "sample_id": sample_id, "path": tile["path"], "group": group,
                "template_path": window_of.get((template, *window), "") if template else "",
                "duplicate_of": (window_of.get((duplicate_of, *window), "")
                                 if duplicate_of else ""),
                "width": tile["width"], "height": tile["height"], "sha256": tile["sha256"],
                "bytes": tile["bytes"], "format": tile["format"], "lossless": True,
                "panel_id": str(panel["sample_id"]), "panel_path": str(panel["path"]),
                "tile_x": tile["x"], "tile_y": tile["y"], "tile_width": tile["width"],
                "tile_height": tile["height"], "panel_width": result["width"],
                "panel_height": result["height"],
            })
            row["split"] = _text(panel.get("split"))  # earlier tile splits win, below
            if template:
                pairing["paired" if row["template_path"] else "unpaired"] += 1
            samples.append(row)
            tile["sample_id"] = sample_id
        for label in result["labels"]:
            labels.append({"sample_id": result["tiles"][label["tile"]]["sample_id"],
                           **{k: label[k] for k in ("label", "x1", "y1", "x2", "y2", "mask",
                                                    "synthetic", "params")}})
    return samples, labels, dict(pairing)


def tile_dataset(src: Path | str, out: Path | str, params: TileParams | None = None, *,
                 workers: int = 1, progress: bool = False, engine: Engine | None = None,
                 max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> dict:
    """Cut every usable image of the dataset ``src`` (and its labels, masks and template)
    into tiles, written as the new dataset ``out`` with ``tile_report.json``; returns the
    report (see the module docstring).

    ``engine``: a started engine to map the per-panel work on; by default a
    :class:`LocalEngine` of ``workers`` processes. ``out`` is built in a stage and swapped
    in whole: a kill leaves the previous output or the new one. Re-running into an earlier
    output keeps the split of every tile it had (the test set only grows). Raises
    :class:`TileError` for an ``out`` that is (or holds, or is inside) ``src`` or that is
    another command's folder, and for an unknown ``carry`` column."""
    src, out = Path(src), Path(out)
    params = params or TileParams()
    dataset = load(src)
    unknown = [c for c in params.carry if c not in dataset.samples.columns]
    if unknown:
        raise TileError(f"--carry {unknown[0]!r} is not a column of {src}'s samples "
                        f"(columns: {', '.join(sorted(dataset.samples.columns))})")
    _check_out(src, out)  # before the lock too: a refused --out gets nothing beside it
    start = time.perf_counter()
    with staged_output(out, command="tile") as stage:
        _check_out(src, out)
        earlier_split, earlier = previous_splits(out)
        samples = dataset.samples.reset_index(drop=True)
        usable = samples["status"].isin(USABLE_STATUSES)
        panels = samples[usable]
        tasks = _tasks(dataset, panels, params, stage, max_file_bytes)
        results = []
        with progress_bar(progress, "tile", len(tasks)) as advance, \
                nullcontext(engine) if engine is not None \
                else LocalEngine(workers, preload=WORKER_MODULES) as run:
            where = run.describe()
            for result in run.map(cut_panel, tasks):
                results.append(result)
                advance()
        good = [r for r in results if not r["error"]]
        tile_samples, tile_labels, pairing = _tile_rows(panels, good, params)
        tiled = pd.DataFrame(tile_samples) if tile_samples else pd.DataFrame(
            columns=["sample_id", "path", "status", *TILE_COLUMNS])
        tiled, labels = with_defaults(tiled, pd.DataFrame(tile_labels) if tile_labels
                                      else None)
        tiled = apply_previous_splits(tiled, earlier)
        info = DatasetInfo(
            classes=list(dataset.info.classes), px_per_mm=dataset.info.px_per_mm,
            image_root=".", split=earlier_split or dataset.info.split,
            provenance=[*dataset.info.provenance,
                        {"step": "tile", "source": str(src),
                         **params.model_dump(mode="json"),
                         "pcbforge_version": __version__}])
        save(Dataset(stage, tiled, labels, info))
        report = _report(src, out, params, dataset, samples, usable, tasks, results,
                         pairing, where, time.perf_counter() - start)
        write_json(stage / TILE_REPORT, report)
    return report


def _report(src, out, params, dataset, samples, usable, tasks, results, pairing, where,
            seconds) -> dict:
    failed = [{"sample_id": r["panel_id"], "path": task["path"], "reason": r["error"],
               "detail": r["detail"]} for task, r in zip(tasks, results, strict=True)
              if r["error"]]
    good = [r for r in results if not r["error"]]
    tiled_ids = {r["panel_id"] for r in good}
    panel_boxes = int(dataset.labels["sample_id"].isin(tiled_ids).sum())
    skipped = samples.loc[~usable, "status"].value_counts().sort_index()
    counts = [len(r["tiles"]) for r in good]
    panel_list = []
    for task, result in zip(tasks, results, strict=True):
        panel_list.append({"sample_id": task["panel_id"], "path": task["path"],
                           "status": "failed" if result["error"] else "tiled",
                           "reason": result["error"], "tiles": len(result["tiles"]),
                           "boxes": len(task["labels"])})
    for _, row in samples[~usable].iterrows():
        panel_list.append({"sample_id": str(row["sample_id"]), "path": str(row["path"]),
                           "status": "skipped", "reason": f"status {row['status']}",
                           "tiles": 0, "boxes": 0})
    return {
        "command": "tile", "source": str(src), "dataset": str(out),
        "parameters": params.model_dump(mode="json"),
        "panels": len(tasks), "panels_tiled": len(good), "panels_failed": failed,
        "panels_skipped_by_status": {str(k): int(v) for k, v in skipped.items()},
        "tiles": int(sum(counts)),
        "tiles_per_panel": {"min": min(counts), "max": max(counts)} if counts else {},
        "boxes": {
            "panel_boxes": panel_boxes,
            "tile_boxes": int(sum(len(r["labels"]) for r in good)),
            "truncated": int(sum(label["truncated"] for r in good for label in r["labels"])),
            "pieces_dropped_below_min_visible": int(sum(r["pieces_dropped"] for r in good)),
            "kept_below_min_visible": int(sum(r["kept_below_min_visible"] for r in good)),
            "labels_of_unused_panels": int((~dataset.labels["sample_id"].isin(tiled_ids))
                                           .sum()),
        },
        "masks": {"cut": int(sum(r["masks_cut"] for r in good)),
                  "emptied": int(sum(r["masks_emptied"] for r in good))},
        "templates": {"tiles_paired": int(pairing.get("paired", 0)),
                      "tiles_without_their_template": int(pairing.get("unpaired", 0))},
        "engine": where, "seconds": round(seconds, 3),
        "panel_list": panel_list,
    }


__all__ = [
    "CARRIED_COLUMNS", "TILES_DIR", "TILE_COLUMNS", "TILE_REPORT", "TileError",
    "TileImageFormat", "TileParams", "cut_panel", "encode_tile", "place_boxes",
    "tile_dataset", "tile_grid", "tile_label_params", "tile_name", "tile_origins",
    "visible_shares",
]
