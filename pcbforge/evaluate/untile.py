"""Predictions made on tiles brought back to their panels, one box per defect.

A tiled dataset (:func:`pcbforge.datasets.tiling.tile_dataset`) records each tile's
panel and offset. :func:`untile_predictions` reads predictions on its tiles (any format
:func:`~pcbforge.evaluate.predictions.read_predictions` reads), shifts every box into its
panel, and merges what the overlap of the tiles made twice:

* **Seam-cut sides.** A side of a predicted box that lies within ``seam_px`` of its tile's
  edge, where that edge is inside the panel (not its border), is *cut*: the defect may go
  on in the neighbouring tile, so that side says nothing about where it ends.
* **Joins** (within one panel and class, between boxes of different tiles): a
  *duplicate* when the boxes' IoU is at least ``merge_iou`` (the same defect seen whole
  in two overlapping tiles, or whole in one and mostly in the other); a *seam join* when
  one box is cut on a side, the other reaches past that side, the two meet or overlap
  along it, and their extents across it overlap by at least ``seam_overlap`` (1-D IoU):
  the two pieces of a defect that a seam cuts in two, or a piece and the whole.
* **Clusters.** Joins are taken strongest first (IoU, or the cross-seam overlap) and two
  clusters are joined only when no tile has a box in both: a tile shows one piece of a
  defect at most, so the model's own boxes in one tile are never merged (its NMS already
  decided them), and two neighbouring defects cannot chain through a third box.
* **The panel box** of a cluster: each side is the score-weighted mean of that side over
  the boxes not cut there; where every box is cut on a side (a defect that ends on a
  seam), the outermost of them. The score is the cluster's highest: a defect seen whole
  in one tile is not made less certain by a fragment in the next. ``tiles`` counts the
  boxes merged.

The result, a pcbforge predictions table (``sample_id`` and ``path`` of the panel,
``label, score, x1, y1, x2, y2``, ``tiles``), is what ``pcbforge evaluate`` reads with
``--format pcbforge`` on the panel dataset.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from pcbforge import __version__
from pcbforge.core.boxes import iou
from pcbforge.core.files import atomic_write, write_json
from pcbforge.core.unionfind import UnionFind
from pcbforge.datasets.dataset import load
from pcbforge.datasets.tiling import TILE_COLUMNS
from pcbforge.evaluate.predictions import read_predictions

#: Columns of the panel predictions table.
UNTILE_COLUMNS = ("sample_id", "path", "label", "score", "x1", "y1", "x2", "y2", "tiles")
_BOX = ("x1", "y1", "x2", "y2")
_SIDES = ("left", "top", "right", "bottom")


class UntileError(ValueError):
    """A dataset that is not tiled, or an output that cannot be written (one line)."""


class UntileParams(BaseModel):
    """How boxes of overlapping tiles are merged (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    merge_iou: float = Field(0.5, gt=0.0, le=1.0)
    seam_px: float = Field(2.0, ge=0.0)
    seam_overlap: float = Field(0.5, gt=0.0, le=1.0)


def cut_sides(boxes: np.ndarray, tiles: np.ndarray, panels: np.ndarray,
              seam_px: float) -> np.ndarray:
    """``(N, 4)`` flags: left, top, right, bottom side of each tile-coordinate box within
    ``seam_px`` of its tile's edge where that edge is inside the panel.

    ``tiles``: ``(N, 4)`` tile ``x, y, width, height``; ``panels``: ``(N, 2)`` panel width
    and height."""
    x, y, w, h = (tiles[:, k] for k in range(4))
    x1, y1, x2, y2 = (boxes[:, k] for k in range(4))
    return np.stack([(x > 0) & (x1 <= seam_px),
                     (y > 0) & (y1 <= seam_px),
                     (x + w < panels[:, 0]) & (x2 >= w - seam_px),
                     (y + h < panels[:, 1]) & (y2 >= h - seam_px)], axis=1)


def _extent_iou(a1: float, a2: float, b1: float, b2: float) -> float:
    inter = min(a2, b2) - max(a1, b1)
    union = max(a2, b2) - min(a1, b1)
    return inter / union if inter > 0 and union > 0 else 0.0


def _seam_strength(a, b, cut_a, params: UntileParams) -> float:
    """The cross-seam overlap when ``b`` continues ``a`` past one of ``a``'s cut sides
    (0 when it does not): ``b`` reaches past the cut side, the two meet or overlap along
    it, and their extents across it overlap by at least ``seam_overlap``."""
    best = 0.0
    tol = params.seam_px
    for side, is_cut in enumerate(cut_a):
        if not is_cut:
            continue
        if side == 0:  # left: b reaches further left and meets a
            along = b[0] < a[0] and b[2] >= a[0] - tol
        elif side == 2:
            along = b[2] > a[2] and b[0] <= a[2] + tol
        elif side == 1:
            along = b[1] < a[1] and b[3] >= a[1] - tol
        else:
            along = b[3] > a[3] and b[1] <= a[3] + tol
        if not along:
            continue
        across = (_extent_iou(a[1], a[3], b[1], b[3]) if side in (0, 2)
                  else _extent_iou(a[0], a[2], b[0], b[2]))
        if across >= params.seam_overlap:
            best = max(best, across)
    return best


def merge_boxes(boxes: np.ndarray, scores: np.ndarray, tiles: np.ndarray, cut: np.ndarray,
                params: UntileParams | None = None) -> list[tuple[list[int], str]]:
    """Clusters of the panel boxes of one panel and class (``(N, 4)`` ``x1, y1, x2, y2``,
    with their scores, tile ids and :func:`cut_sides`), as ``(member indices, how)`` in
    first-member order; ``how`` is ``single``, ``duplicate``, ``seam`` or ``both`` (the
    kinds of join that made it). See the module docstring for the rule."""
    params = params or UntileParams()
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    n = len(boxes)
    tol = params.seam_px
    order = np.argsort(boxes[:, 0], kind="stable")
    edges = []
    # Sweep along x: only boxes that meet (within the seam tolerance) can join.
    for position, i in enumerate(order):
        for j in order[position + 1:]:
            if boxes[j, 0] > boxes[i, 2] + tol:
                break
            if tiles[i] == tiles[j] or boxes[j, 1] > boxes[i, 3] + tol \
                    or boxes[i, 1] > boxes[j, 3] + tol:
                continue
            a, b = (i, j) if i < j else (j, i)
            overlap = iou(boxes[a], boxes[b])
            if overlap >= params.merge_iou:
                edges.append((-overlap, a, b, "duplicate"))
                continue
            seam = max(_seam_strength(boxes[a], boxes[b], cut[a], params),
                       _seam_strength(boxes[b], boxes[a], cut[b], params))
            if seam > 0:
                edges.append((-seam, a, b, "seam"))
    edges.sort()
    sets = UnionFind(n)
    tiles_of = {i: {tiles[i]} for i in range(n)}
    kinds_of: dict[int, set[str]] = {i: set() for i in range(n)}
    for _, a, b, kind in edges:
        ra, rb = sets.find(a), sets.find(b)
        if ra == rb or tiles_of[ra] & tiles_of[rb]:
            continue
        sets.union(ra, rb)
        root = sets.find(ra)
        tiles_of[root] = tiles_of.pop(ra if root != ra else rb) | tiles_of[root]
        kinds_of[root] = kinds_of.pop(ra if root != ra else rb) | kinds_of[root] | {kind}
    members: dict[int, list[int]] = {}
    for i in range(n):
        members.setdefault(sets.find(i), []).append(i)
    clusters = []
    for root, indices in members.items():
        kinds = kinds_of[root]
        how = ("single" if not kinds else "both" if len(kinds) == 2 else next(iter(kinds)))
        clusters.append((indices, how))
    return clusters


def fuse_cluster(boxes: np.ndarray, scores: np.ndarray, cut: np.ndarray
                 ) -> tuple[tuple[float, float, float, float], float]:
    """The panel box and score of one cluster (see the module docstring)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64)
    weights = scores if scores.sum() > 0 else np.ones_like(scores)
    fused = []
    for side in range(4):
        voters = ~cut[:, side]
        if voters.any():
            fused.append(float(np.average(boxes[voters, side], weights=weights[voters])))
        else:
            values = boxes[:, side]
            fused.append(float(values.min() if side < 2 else values.max()))
    return tuple(fused), float(scores.max())


def panel_predictions(tiles: pd.DataFrame, predictions: pd.DataFrame,
                      params: UntileParams | None = None) -> tuple[pd.DataFrame, dict]:
    """Tile predictions (``sample_id`` of a tile, ``label, score, x1..y2`` in the tile)
    as panel predictions of :data:`UNTILE_COLUMNS`, and the counts of what was merged.

    ``tiles``: the tiled dataset's samples (with :data:`TILE_COLUMNS`)."""
    params = params or UntileParams()
    table = tiles.set_index("sample_id")
    found = predictions.join(table[list(TILE_COLUMNS)], on="sample_id", how="left")
    unplaced = found["panel_id"].isna() | (found["panel_id"].astype(str) == "")
    if unplaced.any():
        raise UntileError(f"sample {found['sample_id'][unplaced].iloc[0]!r} has no tile "
                          f"record ({unplaced.sum()} predictions on such samples): expected "
                          f"every sample of the tiled dataset to name its panel_id")
    frame = found[["tile_x", "tile_y", "tile_width", "tile_height"]].to_numpy(np.float64)
    panel_size = found[["panel_width", "panel_height"]].to_numpy(np.float64)
    local = found[list(_BOX)].to_numpy(np.float64)
    cut = cut_sides(local, frame, panel_size, params.seam_px)
    shifted = local + np.column_stack([frame[:, 0], frame[:, 1], frame[:, 0], frame[:, 1]])
    tile_index = pd.factorize(found["sample_id"])[0]
    rows = []
    counts = {"duplicate": 0, "seam": 0, "both": 0, "single": 0}
    groups = found.assign(_row=np.arange(len(found))).groupby(["panel_id", "label"],
                                                                sort=True)
    for (panel_id, label), group in groups:
        index = group["_row"].to_numpy()
        clusters = merge_boxes(shifted[index], found["score"].to_numpy()[index],
                               tile_index[index], cut[index], params)
        for members, how in clusters:
            chosen = index[members]
            box, score = fuse_cluster(shifted[chosen], found["score"].to_numpy()[chosen],
                                      cut[chosen])
            width, height = panel_size[chosen[0]]
            box = (max(box[0], 0.0), max(box[1], 0.0), min(box[2], width),
                   min(box[3], height))
            counts[how] += 1
            rows.append((panel_id, found["panel_path"].iloc[chosen[0]], label, score, *box,
                         len(chosen)))
    out = pd.DataFrame(rows, columns=list(UNTILE_COLUMNS))
    out = out.astype({"sample_id": str, "path": str, "label": str, "tiles": np.int64,
                      **{c: np.float64 for c in ("score", *_BOX)}})
    out = out.sort_values(["sample_id", "score", *_BOX, "label"],
                          ascending=[True, False, True, True, True, True, True],
                          kind="mergesort").reset_index(drop=True)
    summary = {"tile_predictions": len(predictions), "panel_predictions": len(out),
               "panels": int(out["sample_id"].nunique()),
               "merged_duplicates": counts["duplicate"], "seam_joins": counts["seam"],
               "merged_both_ways": counts["both"], "unmerged": counts["single"]}
    return out, summary


def untile_predictions(dataset: Path | str, predictions: Path | str, fmt: str,
                       out: Path | str, *, coco_gt: Path | str | None = None,
                       params: UntileParams | None = None) -> dict:
    """Read predictions made on the tiles of the tiled dataset ``dataset`` (format
    ``fmt``, as ``pcbforge evaluate`` reads them), bring them back to their panels, merge
    the duplicates of overlapping tiles and the boxes cut at seams, and write the panel
    predictions table ``out`` (``.parquet`` or ``.csv``, atomically), and the report beside
    it (:func:`report_path`: ``OUT-STEM.untile.json``). Returns the report.

    Raises :class:`UntileError` for a dataset that is not tiled or an ``out`` of another
    kind, and :class:`~pcbforge.evaluate.predictions.PredictionsError` for predictions that
    do not fit the tiles (an image that is not a tile of ``dataset`` among them)."""
    out = Path(out)
    kind = out.suffix.lower()
    if kind not in (".parquet", ".csv"):
        raise UntileError(f"--out {out}: expected a .parquet or .csv file name for the panel "
                          f"predictions table")
    tiled = load(dataset)
    missing = [c for c in TILE_COLUMNS if c not in tiled.samples.columns]
    if missing:
        raise UntileError(f"{dataset} is not a tiled dataset: its samples have no "
                          f"{', '.join(missing)} column (make one with `pcbforge tile`)")
    table = read_predictions(tiled, predictions, fmt, coco_gt=coco_gt)
    panels, summary = panel_predictions(tiled.samples, table, params)
    if kind == ".parquet":
        atomic_write(out, lambda tmp: panels.to_parquet(tmp, index=False))
    else:
        atomic_write(out, lambda tmp: panels.to_csv(tmp, index=False))
    report = {"command": "untile", "pcbforge_version": __version__, "dataset": str(dataset),
              "predictions": str(predictions), "format": getattr(fmt, "value", fmt),
              "out": str(out), "parameters": (params or UntileParams()).model_dump(mode="json"),
              **summary}
    write_json(report_path(out), report)
    return report


def report_path(out: Path | str) -> Path:
    """Where :func:`untile_predictions` writes its report for the table ``out``:
    ``run3-panels.parquet`` -> ``run3-panels.untile.json``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.untile.json")


__all__ = ["UNTILE_COLUMNS", "UntileError", "UntileParams", "cut_sides", "fuse_cluster",
           "merge_boxes", "panel_predictions", "report_path", "untile_predictions"]
