"""Detection metrics on tables: DeepPCB's protocol with an account of every box, a
confusion matrix, and COCO's mAP computed by pycocotools.

Inputs are two tables. ``predictions``: ``sample_id, label, score, x1, y1, x2, y2`` and
optionally ``prediction_id``; ``truths``: ``sample_id, label, x1, y1, x2, y2`` and
optionally ``truth_id``. Boxes are pixel ``x1, y1, x2, y2`` with exclusive ends (COCO's
``[x, y, width, height]`` is made only inside :func:`coco_map`). Missing ids become
``p0, p1, ...`` and ``t0, t1, ...`` in row order. An empty table with no columns at all
(``pd.DataFrame([])``) counts as no rows.

DeepPCB's matching (:func:`match_predictions`): per image and class, predictions are
taken by decreasing score (equal scores in row order); each takes the not yet matched
truth of its class and image with the highest IoU, if that IoU is above the threshold
(``> 0.33`` strictly, DeepPCB's rule; ``>=`` with ``strict=False``; equal IoUs go to
the first truth). A false positive is then sorted into one ``fp_kind``, the first that
applies:

* ``duplicate``: it overlaps a truth of its own class above the threshold; as matching
  left it out, every such truth was already taken by a higher-scored prediction.
* ``class``: it overlaps, above the threshold, a truth of *another* class that no
  prediction of that class matched (the truth's final outcome is ``fn``): a class
  confusion.
* ``localization``: its best IoU with a truth of its class is above 0.1 but not above
  the threshold.
* ``background``: none of these.

Pure functions: no file I/O, no randomness.
"""

from __future__ import annotations

import contextlib
import io
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from pcbforge.core.boxes import iou

#: DeepPCB's correctness threshold: IoU must be greater than this.
DEEPPCB_IOU = 0.33
#: A false positive whose best same-class IoU exceeds this (but not the match threshold)
#: is a localization error.
LOCALIZATION_IOU = 0.1
#: The confusion matrix's row and column for "no box".
BACKGROUND = "background"
FP_KINDS = ("duplicate", "class", "localization", "background")

BOX = ["x1", "y1", "x2", "y2"]
PREDICTION_COLUMNS = ["prediction_id", "sample_id", "label", "score", *BOX, "outcome",
                      "truth_id", "iou", "fp_kind"]
TRUTH_COLUMNS = ["truth_id", "sample_id", "label", *BOX, "outcome", "prediction_id",
                 "score", "iou"]


# --------------------------------------------------------------------------- inputs

def _normalize(table: pd.DataFrame, *, kind: str) -> pd.DataFrame:
    """A clean copy: ids as str (made if absent, checked unique), ``sample_id`` and
    ``label`` as str, score and box as float, a fresh RangeIndex."""
    if kind == "predictions":
        required, id_column, prefix = ["sample_id", "label", "score", *BOX], "prediction_id", "p"
    else:
        required, id_column, prefix = ["sample_id", "label", *BOX], "truth_id", "t"
    if len(table.columns) == 0 and len(table) == 0:
        table = pd.DataFrame({name: [] for name in required})
    missing = [name for name in required if name not in table.columns]
    if missing:
        raise ValueError(f"{kind} need the columns {required}; missing {missing} "
                         f"(got {list(table.columns)})")
    if id_column in table.columns:
        ids = table[id_column].astype(str).to_numpy()
        repeated = pd.Series(ids)[pd.Series(ids).duplicated()].unique().tolist()
        if repeated:
            raise ValueError(f"{kind}: {id_column} must be unique; repeated: {repeated[:5]}")
    else:
        ids = np.array([f"{prefix}{i}" for i in range(len(table))], dtype=object)
    out = pd.DataFrame({id_column: ids,
                        "sample_id": table["sample_id"].astype(str).to_numpy(),
                        "label": table["label"].astype(str).to_numpy()})
    for name in required[2:]:
        out[name] = table[name].to_numpy(dtype=float)
    return out


def _check_labels(table: pd.DataFrame, classes: Sequence[str], kind: str) -> None:
    unknown = sorted(set(table["label"]) - set(classes))
    if unknown:
        raise ValueError(f"{kind} of unknown classes {unknown}; classes are {list(classes)}")


def _check_images(table: pd.DataFrame, sample_ids: Sequence[str], kind: str) -> None:
    unknown = sorted(set(table["sample_id"]) - set(sample_ids))
    if unknown:
        raise ValueError(f"{kind} on {len(unknown)} images not among sample_ids, e.g. "
                         f"{unknown[:5]}")


def _above(strict: bool) -> Callable[[float, float], bool]:
    return operator.gt if strict else operator.ge


def _iou_matrix(pred_boxes: np.ndarray, truth_boxes: np.ndarray) -> np.ndarray:
    """IoU of every prediction (rows) with every truth (columns), by the shared
    :func:`pcbforge.core.boxes.iou`."""
    out = np.zeros((len(pred_boxes), len(truth_boxes)))
    for r, p in enumerate(pred_boxes):
        for c, t in enumerate(truth_boxes):
            out[r, c] = iou(p, t)
    return out


def _by_image(table: pd.DataFrame) -> dict[str, np.ndarray]:
    """Row positions of each image, in row order."""
    if table.empty:
        return {}
    groups = table.groupby("sample_id", sort=False).indices
    return {str(k): np.asarray(v) for k, v in groups.items()}


def _greedy(scores: np.ndarray, ious: np.ndarray, allowed: np.ndarray, threshold: float,
            above: Callable[[float, float], bool]) -> np.ndarray:
    """For each prediction (row), the column of the truth it takes, or -1.

    Rows go by decreasing score (stable); each takes the free allowed column of highest
    IoU passing ``above(iou, threshold)``, the first on a tie.
    """
    taken = np.zeros(ious.shape[1], bool)
    chosen = np.full(ious.shape[0], -1)
    for r in np.argsort(-scores, kind="stable"):
        best, best_iou = -1, threshold
        for c in range(ious.shape[1]):
            if taken[c] or not allowed[r, c]:
                continue
            overlap = ious[r, c]
            if overlap > best_iou or (best < 0 and above(overlap, threshold)):
                best, best_iou = c, overlap
        if best >= 0:
            taken[best] = True
            chosen[r] = best
    return chosen


# --------------------------------------------------------------------------- matching

def match_predictions(predictions: pd.DataFrame, truths: pd.DataFrame, *,
                      iou_threshold: float = DEEPPCB_IOU, strict: bool = True,
                      localization_iou: float = LOCALIZATION_IOU
                      ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Match predictions to truths by DeepPCB's rule (see the module docstring).

    Returns ``(per_prediction, per_truth)``, each in its input's row order:

    * per prediction: ``prediction_id, sample_id, label, score, x1..y2``, ``outcome``
      (``"tp"``/``"fp"``), ``truth_id`` (the matched truth, ``""`` if none), ``iou``
      (with the matched truth; for a false positive its best IoU with any truth of its
      class and image, 0.0 if none), ``fp_kind`` (``""`` for a true positive, else one
      of :data:`FP_KINDS`);
    * per truth: ``truth_id, sample_id, label, x1..y2``, ``outcome`` (``"tp"``/``"fn"``),
      ``prediction_id`` (``""`` if none), ``score`` and ``iou`` of that prediction (NaN
      if none).
    """
    preds = _normalize(predictions, kind="predictions")
    gts = _normalize(truths, kind="truths")
    above = _above(strict)
    p_boxes, t_boxes = preds[BOX].to_numpy(), gts[BOX].to_numpy()
    p_labels, t_labels = preds["label"].to_numpy(), gts["label"].to_numpy()
    scores = preds["score"].to_numpy()

    matched = np.full(len(preds), -1)  # truth row of each prediction
    pred_iou = np.zeros(len(preds))
    fp_kind = np.full(len(preds), "", dtype=object)
    truth_pred = np.full(len(gts), -1)  # prediction row of each truth
    truth_iou = np.full(len(gts), np.nan)
    truths_of = _by_image(gts)
    for sample, p_rows in _by_image(preds).items():
        t_rows = truths_of.get(sample, np.zeros(0, int))
        ious = _iou_matrix(p_boxes[p_rows], t_boxes[t_rows])
        same = p_labels[p_rows][:, None] == t_labels[t_rows][None, :]
        chosen = _greedy(scores[p_rows], ious, same, iou_threshold, above)
        found = np.zeros(len(t_rows), bool)
        found[chosen[chosen >= 0]] = True
        for r, c in enumerate(chosen):
            row = p_rows[r]
            if c >= 0:
                matched[row] = t_rows[c]
                pred_iou[row] = ious[r, c]
                truth_pred[t_rows[c]] = row
                truth_iou[t_rows[c]] = ious[r, c]
                continue
            own = ious[r][same[r]]
            best_own = float(own.max()) if own.size else 0.0
            pred_iou[row] = best_own
            if any(above(v, iou_threshold) for v in own):
                fp_kind[row] = "duplicate"
            elif any(above(ious[r, k], iou_threshold) and not same[r, k] and not found[k]
                     for k in range(len(t_rows))):
                fp_kind[row] = "class"
            elif best_own > localization_iou:
                fp_kind[row] = "localization"
            else:
                fp_kind[row] = "background"

    t_ids, p_ids = gts["truth_id"].to_numpy(), preds["prediction_id"].to_numpy()
    per_pred = preds.copy()
    per_pred["outcome"] = np.where(matched >= 0, "tp", "fp")
    per_pred["truth_id"] = [t_ids[k] if k >= 0 else "" for k in matched]
    per_pred["iou"] = pred_iou
    per_pred["fp_kind"] = fp_kind
    per_truth = gts.copy()
    per_truth["outcome"] = np.where(truth_pred >= 0, "tp", "fn")
    per_truth["prediction_id"] = [p_ids[k] if k >= 0 else "" for k in truth_pred]
    per_truth["score"] = [scores[k] if k >= 0 else np.nan for k in truth_pred]
    per_truth["iou"] = truth_iou
    return per_pred[PREDICTION_COLUMNS], per_truth[TRUTH_COLUMNS]


# --------------------------------------------------------------------------- DeepPCB

def average_precision(correct_by_score: np.ndarray, n_truths: int) -> float:
    """All-point AP (PASCAL VOC 2010+, DeepPCB) of predictions already sorted by
    decreasing score, ``correct_by_score`` saying which are true positives."""
    if n_truths == 0:
        raise ValueError("average precision needs at least one ground-truth box")
    correct_by_score = np.asarray(correct_by_score, bool)
    if len(correct_by_score) == 0:
        return 0.0
    tp = np.cumsum(correct_by_score)
    fp = np.cumsum(~correct_by_score)
    recall = np.concatenate([[0.0], tp / n_truths, [1.0]])
    precision = np.concatenate([[0.0], tp / (tp + fp), [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1]) + 1
    return float(np.sum((recall[steps] - recall[steps - 1]) * precision[steps]))


def best_f_score(scores: np.ndarray, correct: np.ndarray, n_truths: int
            ) -> tuple[float, float, float, float]:
    """Best F-score over score thresholds (keeping every prediction scored >= it), from
    predictions sorted by decreasing score: ``(f, threshold, precision, recall)``."""
    if len(scores) == 0 or n_truths == 0:
        return 0.0, 1.0, 0.0, 0.0
    tp = np.cumsum(correct)
    kept = np.arange(1, len(scores) + 1)
    # A threshold keeps every prediction of equal score: evaluate at the last of each run.
    ends = np.r_[np.flatnonzero(scores[1:] != scores[:-1]), len(scores) - 1]
    precision = tp[ends] / kept[ends]
    recall = tp[ends] / n_truths
    f = np.where(precision + recall > 0, 2 * precision * recall
                 / np.maximum(precision + recall, 1e-12), 0.0)
    best = int(np.argmax(f))
    return (float(f[best]), float(scores[ends[best]]), float(precision[best]),
            float(recall[best]))


def deeppcb_metrics(per_pred: pd.DataFrame, per_truth: pd.DataFrame,
                    classes: Sequence[str]) -> dict[str, Any]:
    """DeepPCB's numbers from :func:`match_predictions`' two tables.

    Returns a dict: ``ap`` (class -> all-point AP, None for a class without truths),
    ``mAP`` (mean over the classes with truths; 0.0 if none has), the best F-score over
    all classes together (``f_score``, the score ``threshold`` that gives it, and
    ``precision``, ``recall`` there; 0.0, 1.0, 0.0, 0.0 with no predictions or no
    truths), ``per_class`` at that threshold (class -> ``precision`` (None if it kept no
    prediction), ``recall`` (None without truths), ``f_score`` = 2 tp / (kept + truths)
    (None if both are 0), ``tp``, ``fp``, ``fn``), and ``counts`` over all predictions
    (class -> ``truths``, ``predictions``, ``tp``, ``fp``, ``fn``, and the false
    positives by ``fp_kind``).
    """
    _check_labels(per_pred, classes, "predictions")
    _check_labels(per_truth, classes, "truths")
    order = np.argsort(-per_pred["score"].to_numpy(dtype=float), kind="stable")
    ranked = per_pred.iloc[order]
    scores = ranked["score"].to_numpy(dtype=float)
    correct = (ranked["outcome"] == "tp").to_numpy()
    labels = ranked["label"].to_numpy()
    truth_labels = per_truth["label"].to_numpy()
    truth_found = (per_truth["outcome"] == "tp").to_numpy()

    f_score, threshold, precision, recall = best_f_score(scores, correct, len(per_truth))
    kept = scores >= threshold if len(scores) else np.zeros(0, bool)
    kinds = ranked["fp_kind"].to_numpy()
    ap: dict[str, float | None] = {}
    per_class: dict[str, dict[str, Any]] = {}
    counts: dict[str, dict[str, Any]] = {}
    for name in classes:
        mine = labels == name
        n_truths = int(np.sum(truth_labels == name))
        ap[name] = average_precision(correct[mine], n_truths) if n_truths else None
        tp_k = int(np.sum(correct & mine & kept))
        kept_k = int(np.sum(mine & kept))
        per_class[name] = {
            "precision": tp_k / kept_k if kept_k else None,
            "recall": tp_k / n_truths if n_truths else None,
            "f_score": 2 * tp_k / (kept_k + n_truths) if kept_k + n_truths else None,
            "tp": tp_k, "fp": kept_k - tp_k, "fn": n_truths - tp_k}
        tp_all = int(np.sum(correct & mine))
        counts[name] = {
            "truths": n_truths, "predictions": int(mine.sum()), "tp": tp_all,
            "fp": int(mine.sum()) - tp_all,
            "fn": n_truths - int(np.sum(truth_found & (truth_labels == name))),
            "fp_kinds": {kind: int(np.sum(mine & (kinds == kind))) for kind in FP_KINDS}}
    scored = [v for v in ap.values() if v is not None]
    return {"ap": ap, "mAP": float(np.mean(scored)) if scored else 0.0,
            "f_score": f_score, "threshold": threshold, "precision": precision,
            "recall": recall, "per_class": per_class, "counts": counts}


# --------------------------------------------------------------------------- confusion

def confusion_matrix(predictions: pd.DataFrame, truths: pd.DataFrame,
                     classes: Sequence[str], *, iou_threshold: float = DEEPPCB_IOU,
                     score_threshold: float = 0.0, strict: bool = True) -> pd.DataFrame:
    """Counts of true class (rows, then ``"background"``) against predicted class
    (columns, then ``"background"``).

    The rule: only predictions scored ``>= score_threshold`` take part. In each image
    they are taken by decreasing score (equal scores in row order), and each takes the
    not yet matched truth of *any* class with the highest IoU above ``iou_threshold``
    (``>``, or ``>=`` with ``strict=False``; equal IoUs go to the first truth). A
    matched pair counts at (truth's class, prediction's class); a truth left unmatched
    counts at (its class, background), a prediction left unmatched at (background, its
    class). (background, background) is always 0. Because the class is ignored while
    matching, a class confusion shows off the diagonal instead of as a missed truth and
    a spurious prediction.
    """
    preds = _normalize(predictions, kind="predictions")
    gts = _normalize(truths, kind="truths")
    _check_labels(preds, classes, "predictions")
    _check_labels(gts, classes, "truths")
    preds = preds[preds["score"] >= score_threshold].reset_index(drop=True)
    names = [*classes, BACKGROUND]
    index = {name: k for k, name in enumerate(names)}
    counts = np.zeros((len(names), len(names)), dtype=np.int64)
    above = _above(strict)
    p_boxes, t_boxes = preds[BOX].to_numpy(), gts[BOX].to_numpy()
    p_labels, t_labels = preds["label"].to_numpy(), gts["label"].to_numpy()
    scores = preds["score"].to_numpy()
    truth_taken = np.zeros(len(gts), bool)
    truths_of = _by_image(gts)
    for sample, p_rows in _by_image(preds).items():
        t_rows = truths_of.get(sample, np.zeros(0, int))
        ious = _iou_matrix(p_boxes[p_rows], t_boxes[t_rows])
        allowed = np.ones(ious.shape, bool)
        chosen = _greedy(scores[p_rows], ious, allowed, iou_threshold, above)
        for r, c in enumerate(chosen):
            predicted = index[p_labels[p_rows[r]]]
            if c >= 0:
                truth_taken[t_rows[c]] = True
                counts[index[t_labels[t_rows[c]]], predicted] += 1
            else:
                counts[index[BACKGROUND], predicted] += 1
    for label in t_labels[~truth_taken]:
        counts[index[label], index[BACKGROUND]] += 1
    return pd.DataFrame(counts, index=pd.Index(names, name="true"),
                        columns=pd.Index(names, name="predicted"))


# --------------------------------------------------------------------------- COCO

def coco_map(predictions: pd.DataFrame, truths: pd.DataFrame, classes: Sequence[str],
             sample_ids: Sequence[str], sizes: Mapping[str, tuple[int, int]] | None = None
             ) -> dict[str, Any]:
    """COCO's box mAP@[.5:.95], AP50, AP75 and per-class AP@[.5:.95], by pycocotools'
    ``COCOeval`` (iouType ``"bbox"``, its default 100 detections per image, area "all").

    The ground truth is built in memory: images ``1..N`` in ``sample_ids`` order (with
    ``sizes[sample_id] = (width, height)`` when given), categories ``1..K`` in ``classes``
    order, annotations ``[x1, y1, x2 - x1, y2 - y1]`` with ``area = w * h`` and
    ``iscrowd = 0``; the detections go through ``COCO.loadRes``. pycocotools' prints
    are silenced.

    Returns ``{"mAP", "AP50", "AP75", "ap": {class: AP@[.5:.95]}}``. A number COCOeval
    cannot define (its -1: no truths at all, or for ``ap`` none of that class) is None.
    With no predictions ``COCO.loadRes`` fails, so it is not called: every number is
    0.0 where there are truths and None where there are none.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    preds = _normalize(predictions, kind="predictions")
    gts = _normalize(truths, kind="truths")
    _check_labels(preds, classes, "predictions")
    _check_labels(gts, classes, "truths")
    sample_ids = [str(s) for s in sample_ids]
    if len(set(sample_ids)) != len(sample_ids):
        raise ValueError("sample_ids must be unique")
    _check_images(preds, sample_ids, "predictions")
    _check_images(gts, sample_ids, "truths")
    if sizes is not None:
        unsized = [s for s in sample_ids if s not in sizes]
        if unsized:
            raise ValueError(f"sizes has no (width, height) for {len(unsized)} images, e.g. "
                             f"{unsized[:5]}")

    image_id = {s: k + 1 for k, s in enumerate(sample_ids)}
    category_id = {name: k + 1 for k, name in enumerate(classes)}
    n_truths = gts["label"].value_counts().to_dict()
    if preds.empty:
        value = 0.0 if len(gts) else None
        return {"mAP": value, "AP50": value, "AP75": value,
                "ap": {name: 0.0 if n_truths.get(name) else None for name in classes}}

    images = []
    for s in sample_ids:
        width, height = sizes[s] if sizes is not None else (0, 0)
        images.append({"id": image_id[s], "file_name": s, "width": int(width),
                       "height": int(height)})
    annotations = []
    for k, row in enumerate(gts.itertuples(index=False)):
        w, h = row.x2 - row.x1, row.y2 - row.y1
        annotations.append({"id": k + 1, "image_id": image_id[row.sample_id],
                            "category_id": category_id[row.label],
                            "bbox": [row.x1, row.y1, w, h], "area": w * h, "iscrowd": 0})
    detections = [{"image_id": image_id[row.sample_id], "category_id": category_id[row.label],
                   "bbox": [row.x1, row.y1, row.x2 - row.x1, row.y2 - row.y1],
                   "score": row.score}
                  for row in preds.itertuples(index=False)]
    categories = [{"id": category_id[name], "name": name} for name in classes]

    with contextlib.redirect_stdout(io.StringIO()):
        ground = COCO()
        ground.dataset = {"images": images, "annotations": annotations,
                          "categories": categories}
        ground.createIndex()
        found = ground.loadRes(detections)
        run = COCOeval(ground, found, "bbox")
        run.evaluate()
        run.accumulate()
        run.summarize()
    precision = run.eval["precision"]  # [iou, recall, category, area, max detections]
    per_class: dict[str, float | None] = {}
    for k, name in enumerate(classes):
        values = precision[:, :, k, 0, -1]
        values = values[values > -1]
        per_class[name] = float(np.mean(values)) if values.size else None

    def defined(value: float) -> float | None:
        return None if value == -1 else float(value)

    return {"mAP": defined(run.stats[0]), "AP50": defined(run.stats[1]),
            "AP75": defined(run.stats[2]), "ap": per_class}


# --------------------------------------------------------------------------- bundle

def evaluate_tables(predictions: pd.DataFrame, truths: pd.DataFrame, classes: Sequence[str],
                    sample_ids: Sequence[str],
                    sizes: Mapping[str, tuple[int, int]] | None = None, *,
                    iou_threshold: float = DEEPPCB_IOU, score_threshold: float = 0.0
                    ) -> dict[str, Any]:
    """Everything at once: ``deeppcb`` (:func:`deeppcb_metrics`), ``coco``
    (:func:`coco_map`), ``confusion`` (:func:`confusion_matrix` as ``{true: {predicted:
    count}}``, at ``score_threshold``), the tables ``predictions`` and ``truths`` from
    :func:`match_predictions`, and the number of ``images`` evaluated.

    Every prediction and truth must lie on one of ``sample_ids``; images with neither
    still count (for COCO).
    """
    preds = _normalize(predictions, kind="predictions")
    gts = _normalize(truths, kind="truths")
    _check_labels(preds, classes, "predictions")
    _check_labels(gts, classes, "truths")
    _check_images(preds, [str(s) for s in sample_ids], "predictions")
    _check_images(gts, [str(s) for s in sample_ids], "truths")
    per_pred, per_truth = match_predictions(preds, gts, iou_threshold=iou_threshold)
    confusion = confusion_matrix(preds, gts, classes, iou_threshold=iou_threshold,
                                 score_threshold=score_threshold)
    return {"images": len(sample_ids),
            "deeppcb": deeppcb_metrics(per_pred, per_truth, classes),
            "coco": coco_map(preds, gts, classes, sample_ids, sizes),
            "confusion": {true: {pred: int(n) for pred, n in row.items()}
                          for true, row in confusion.iterrows()},
            "predictions": per_pred, "truths": per_truth}


__all__ = ["BACKGROUND", "DEEPPCB_IOU", "FP_KINDS", "LOCALIZATION_IOU", "PREDICTION_COLUMNS",
           "TRUTH_COLUMNS", "average_precision", "best_f_score", "coco_map",
           "confusion_matrix", "deeppcb_metrics", "evaluate_tables", "match_predictions"]
