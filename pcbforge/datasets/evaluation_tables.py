"""What ``pcbforge evaluate`` keeps, as files and tables: the names every part shares
(evaluate writes them; FiftyOne, ``mine``, ``synth --balance`` and the report read them).

``DATASET/evaluations/NAME/`` holds one evaluation:

- ``predictions.parquet``: one row per prediction: ``prediction_id, sample_id, label,
  score, x1, y1, x2, y2, outcome`` (``tp``/``fp``), ``truth_id`` (the box it matched, ""
  when none), ``iou``, ``fp_kind`` (``duplicate``, ``class``, ``localization``,
  ``background``; "" for a true positive);
- ``truths.parquet``: one row per labelled box of the split: ``truth_id`` (``t`` + its row
  in ``labels.parquet``), ``sample_id, label, x1, y1, x2, y2, outcome`` (``tp``/``fn``),
  ``prediction_id`` and ``score`` of the prediction that found it, ``iou``;
- ``confusion.csv``: the confusion matrix, true class by row, ``background`` last;
- ``metrics.json``: the summary (``name, split, classes, images, predictions, truths, tp,
  fp, fn``, ``deeppcb`` {``ap`` per class, ``mAP``, ``f_score``, ``threshold``,
  ``precision``, ``recall``, ``per_class``, ``counts``}, ``coco`` {``mAP, AP50, AP75``,
  ``ap`` per class}, ``confusion``, ``by_split`` with ``--split all``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

EVALUATIONS_DIR = "evaluations"
METRICS_JSON = "metrics.json"
PREDICTIONS_PARQUET = "predictions.parquet"
TRUTHS_PARQUET = "truths.parquet"
CONFUSION_CSV = "confusion.csv"


class EvaluationError(ValueError):
    """An evaluation that is not there, or input ``evaluate`` cannot use."""


def evaluation_names(dataset: Path | str) -> list[str]:
    """The names of the evaluations kept in ``dataset``, sorted."""
    folder = Path(dataset) / EVALUATIONS_DIR
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / METRICS_JSON).is_file())


def read_evaluation(dataset: Path | str, name: str) -> dict:
    """``metrics.json`` of the evaluation ``name`` of ``dataset``."""
    path = Path(dataset) / EVALUATIONS_DIR / name / METRICS_JSON
    if not path.is_file():
        known = evaluation_names(dataset)
        raise EvaluationError(f"{dataset}: no evaluation {name!r} (evaluations here: "
                              f"{', '.join(known) or 'none'})")
    return json.loads(path.read_text(encoding="utf-8"))


def read_outcomes(dataset: Path | str, name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The per-prediction and per-box tables of the evaluation ``name``."""
    read_evaluation(dataset, name)  # a clear error when it is not there
    folder = Path(dataset) / EVALUATIONS_DIR / name
    return (pd.read_parquet(folder / PREDICTIONS_PARQUET),
            pd.read_parquet(folder / TRUTHS_PARQUET))


__all__ = ["CONFUSION_CSV", "EVALUATIONS_DIR", "METRICS_JSON", "PREDICTIONS_PARQUET",
           "TRUTHS_PARQUET", "EvaluationError", "evaluation_names", "read_evaluation",
           "read_outcomes"]
