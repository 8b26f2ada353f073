"""How a defect was drawn: solid, stamped with a cross brush, or as a hollow outline.

Many of DeepPCB's defects were hand-drawn with a small stamped "+" brush dabbed along
thin strokes laid side by side, which leaves a lattice of 1-6 px holes inside the
defect and "+" teeth on its edge; some are hollow loops of that brush; the rest are solid
(see :mod:`pcbforge.synth.brush`, which draws those styles). This module reads the style
back from an image pair, the same way for real and synthetic pairs, so the generator's
style shares can be measured and compared.

The change inside a box is the pair's significant change
(:func:`pcbforge.bench.shapes.box_change`: template XOR tested, the 1-2 px edge bands
dropped). Its features (:func:`stroke_features`):

- ``holes``: enclosed unchanged pockets (4-connected, not touching the box's edge) of at
  most :data:`SMALL_HOLE` px: the brush's lattice;
- ``hole_share``: enclosed unchanged pixels (any size) over the filled change's pixels;
- ``largest_hole``: the largest enclosed pocket (px);
- ``tips``: changed pixels with exactly one changed 4-neighbour (a "+" arm's end), over
  the changed pixels' boundary length.

:func:`classify` (registry :data:`RULES`, tried in order): ``stamped`` when there are at
least :data:`MIN_HOLES` small holes (pockets of at most 6 px enclosed by the change);
``outline`` when one pocket of at least :data:`RING_HOLE` px makes up :data:`RING_SHARE` of the
filled shape (a loop); else ``solid``. Pure per-pair functions; :func:`folder_styles`
walks a DeepPCB-layout folder and :func:`style_shares` summarises its rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from pcbforge.bench.shapes import box_change, copper_of_gray
from pcbforge.datasets.deeppcb import deeppcb_pairs

#: Largest pocket (px) that counts as one of the brush lattice's holes.
SMALL_HOLE = 6
#: Fewest small holes that make a defect ``stamped``.
MIN_HOLES = 3
#: Smallest pocket (px) of a hollow ``outline``.
RING_HOLE = 4
#: Least share of the filled shape that the pockets of an ``outline`` make up.
RING_SHARE = 0.2
#: The styles :func:`classify` returns.
STYLES = ("solid", "stamped", "outline")

_CROSS = np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]], np.uint8)


def stroke_features(change: np.ndarray) -> dict[str, float]:
    """The features of a 0/1 change mask (see the module docstring). An empty mask has
    every feature 0."""
    mask = (np.asarray(change) > 0).astype(np.uint8)
    if mask.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {mask.shape}")
    if not mask.any():
        return {"area": 0.0, "holes": 0.0, "hole_share": 0.0, "largest_hole": 0.0,
                "tips": 0.0}
    # Pockets: background components (4-connected) that do not touch the crop's edge.
    framed = np.pad(1 - mask, 1, constant_values=1)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(framed, connectivity=4)
    outside = labels[0, 0]
    sizes = stats[:, cv2.CC_STAT_AREA].copy()
    sizes[outside] = 0
    pockets = sizes[1:][sizes[1:] > 0] if n > 1 else np.zeros(0, np.int64)
    area = int(mask.sum())
    filled = area + int(pockets.sum())
    neighbours = cv2.filter2D(mask, -1, _CROSS, borderType=cv2.BORDER_CONSTANT)
    tips = int(((neighbours == 1) & (mask > 0)).sum())
    edge = int(((neighbours < 4) & (mask > 0)).sum())
    return {"area": float(area),
            "holes": float((pockets <= SMALL_HOLE).sum()),
            "hole_share": float(pockets.sum() / max(filled, 1)),
            "largest_hole": float(pockets.max()) if len(pockets) else 0.0,
            "tips": float(tips / max(edge, 1))}


def _stamped(f: dict[str, float]) -> bool:
    return f["holes"] >= MIN_HOLES


def _outline(f: dict[str, float]) -> bool:
    return f["largest_hole"] >= RING_HOLE and f["hole_share"] >= RING_SHARE


#: Style -> rule on the features, tried in this order; ``solid`` when none holds.
RULES: dict[str, Callable[[dict[str, float]], bool]] = {
    "stamped": _stamped,
    "outline": _outline,
}


def classify(features: dict[str, float]) -> str:
    """The first style of :data:`RULES` whose rule holds for ``features``, else
    ``solid``."""
    for name, rule in RULES.items():
        if rule(features):
            return name
    return "solid"


def stroke_style(template_copper: np.ndarray, tested_copper: np.ndarray,
                 box: tuple[int, int, int, int]) -> str:
    """``solid``, ``stamped`` or ``outline``: how the defect inside ``box`` (x1, y1, x2,
    y2, exclusive ends) was drawn, from the pair's 0/1 copper only. Pure."""
    return classify(stroke_features(box_change(template_copper, tested_copper, box)))


def pair_styles(template_copper: np.ndarray, tested_copper: np.ndarray,
                boxes: Iterable[tuple]) -> list[dict[str, object]]:
    """One row per box ``(x1, y1, x2, y2, label)``: ``label``, ``box``, ``style`` and the
    features of :func:`stroke_features`. Pure: any engine can map it over pairs."""
    rows: list[dict[str, object]] = []
    for box in boxes:
        f = stroke_features(box_change(template_copper, tested_copper, box[:4]))
        rows.append({"label": str(box[4]), "box": tuple(int(v) for v in box[:4]),
                     "style": classify(f), **f})
    return rows


def folder_styles(root: Path | str, boards: set[str] | None = None) -> pd.DataFrame:
    """Every labelled defect of a DeepPCB-layout folder (of the ``boards`` groups only,
    when given): ``board`` (the group folder), ``tested`` (its path), and the columns of
    :func:`pair_styles`. Copper is dark, as in DeepPCB."""
    rows: list[dict[str, object]] = []
    for template, tested, boxes in deeppcb_pairs(root, boards):
        a = cv2.imread(str(template), cv2.IMREAD_GRAYSCALE)
        b = cv2.imread(str(tested), cv2.IMREAD_GRAYSCALE)
        if a is None or b is None or a.shape != b.shape:
            continue
        board = Path(tested).parent.parent.name
        for row in pair_styles(copper_of_gray(a), copper_of_gray(b), boxes):
            rows.append({"board": board, "tested": str(tested), **row})
    columns = ["board", "tested", "label", "box", "style", "area", "holes", "hole_share",
               "largest_hole", "tips"]
    return pd.DataFrame(rows, columns=columns)


def style_shares(table: pd.DataFrame, by: tuple[str, ...] = ("label",)) -> pd.DataFrame:
    """Share of each style of :data:`STYLES` per group of ``by`` (rows), with the count
    ``n``. Every style has a column, 0 where absent."""
    if table.empty:
        return pd.DataFrame(columns=[*by, *STYLES, "n"])
    counts = table.groupby([*by, "style"]).size().unstack("style", fill_value=0)
    counts = counts.reindex(columns=list(STYLES), fill_value=0)
    n = counts.sum(axis=1)
    shares = counts.div(n, axis=0).round(3)
    shares["n"] = n
    return shares.reset_index()
