"""DeepPCB's detection protocol: per-class AP, mAP and the best F-score.

A detection is correct when its IoU with a not yet matched ground-truth box of the
same class and image exceeds 0.33 (strictly). Detections are taken in decreasing
score order; each ground-truth box is matched at most once, so a second detection of
one defect is a false positive. AP is the area under the precision-recall curve
with precision made monotone (all points, as PASCAL VOC 2010+ and DeepPCB's
evaluation compute it). The F-score is taken over all classes together, at the
score threshold where it is best.

Pure functions on plain tuples; no image I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pcbforge.core.boxes import iou
from pcbforge.evaluate.metrics import (
    DEEPPCB_IOU,
    average_precision,
    best_f_score,
    match_predictions,
)

Box = tuple[float, float, float, float]  # x1, y1, x2, y2, exclusive ends


@dataclass(frozen=True)
class Detection:
    image: str
    label: str
    score: float
    box: Box


@dataclass(frozen=True)
class Truth:
    image: str
    label: str
    box: Box


@dataclass
class Evaluation:
    """What :func:`evaluate` found."""

    ap: dict[str, float | None]  # per class; None where the class has no ground truth
    mean_ap: float
    f_score: float
    threshold: float  # score threshold of the best F-score
    precision: float  # at that threshold
    recall: float
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # class -> truths, dets

    def as_dict(self) -> dict:
        return {"ap": self.ap, "mAP": self.mean_ap, "f_score": self.f_score,
                "threshold": self.threshold, "precision": self.precision,
                "recall": self.recall, "counts": self.counts}


def best_truth(box: Box, truths: Sequence[Sequence], iou_threshold: float = DEEPPCB_IOU
               ) -> int:
    """Index of the box in ``truths`` (``x1, y1, x2, y2, ...`` each) that ``box`` overlaps
    most, if that IoU exceeds ``iou_threshold``; else -1. Ties go to the first."""
    best, best_iou = -1, iou_threshold
    for k, truth in enumerate(truths):
        overlap = iou(box, tuple(truth[:4]))  # type: ignore[arg-type]
        if overlap > best_iou:
            best, best_iou = k, overlap
    return best


def match(detections: Sequence[Detection], truths: Sequence[Truth],
          iou_threshold: float = DEEPPCB_IOU) -> np.ndarray:
    """Whether each detection (in the given order) is a true positive: pcbforge
    evaluate's matching (:func:`pcbforge.evaluate.metrics.match_predictions`) on the
    tuples. Detections are visited by decreasing score (stable for ties, so input order
    breaks them); each one takes the unmatched same-class, same-image truth of highest
    IoU, if that IoU exceeds ``iou_threshold``."""
    box_columns = ["x1", "y1", "x2", "y2"]
    predictions = pd.DataFrame(
        [(d.image, d.label, float(d.score), *map(float, d.box)) for d in detections],
        columns=["sample_id", "label", "score", *box_columns])
    boxes = pd.DataFrame([(t.image, t.label, *map(float, t.box)) for t in truths],
                         columns=["sample_id", "label", *box_columns])
    per_prediction, _ = match_predictions(predictions, boxes, iou_threshold=iou_threshold)
    return (per_prediction["outcome"] == "tp").to_numpy()


def evaluate(detections: Iterable[Detection], truths: Iterable[Truth],
             classes: Sequence[str], iou_threshold: float = DEEPPCB_IOU) -> Evaluation:
    """Per-class AP, mAP over the classes that have ground truth, and the best F-score."""
    detections, truths = list(detections), list(truths)
    unknown = {d.label for d in detections} - set(classes)
    if unknown:
        raise ValueError(f"detections of unknown classes {sorted(unknown)}; "
                         f"classes are {list(classes)}")
    # Stable sort by score: equal scores keep the caller's order, so results are exact.
    detections = sorted(detections, key=lambda d: -d.score)
    correct = match(detections, truths, iou_threshold)
    ap: dict[str, float | None] = {}
    counts: dict[str, dict[str, int]] = {}
    for name in classes:
        picked = np.array([d.label == name for d in detections], bool)
        n_truths = sum(t.label == name for t in truths)
        counts[name] = {"truths": int(n_truths), "detections": int(picked.sum())}
        ap[name] = average_precision(correct[picked], n_truths) if n_truths else None
    scored = [v for v in ap.values() if v is not None]
    mean_ap = float(np.mean(scored)) if scored else 0.0
    f_score, threshold, precision, recall = best_f_score(
        np.array([d.score for d in detections], float), correct, len(truths))
    return Evaluation(ap, mean_ap, f_score, threshold, precision, recall, counts)


__all__ = ["DEEPPCB_IOU", "Detection", "Evaluation", "Truth", "best_truth", "evaluate",
           "match"]
