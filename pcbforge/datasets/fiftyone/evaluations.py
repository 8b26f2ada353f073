"""``pcbforge evaluate``'s evaluations in FiftyOne: each evaluation kept in
``DATASET/evaluations/NAME/`` becomes a Detections field, a summary in the dataset's info
and saved views of its errors.

- **Field** ``eval_<NAME>`` (``NAME`` with every character but letters, digits and ``_``
  as ``_``; ``_2``, ``_3``... when two names meet or a samples column has it): on each
  sample with a prediction or a labelled box in the evaluation, one detection per
  prediction (label = the predicted class, ``confidence`` = its score, ``prediction_id``,
  ``outcome`` ``tp``/``fp``, ``fp_kind``, ``iou``, ``truth_id``) and one per labelled box
  the model missed (``outcome`` ``fn``, label = the box's class, ``truth_id``, no
  confidence). Each detection is tagged with its outcome, so the App's label-tag filter
  shows ``tp``, ``fp`` or ``fn`` alone. Samples with neither (a clean board the model
  left alone, a sample outside the split) have no value. The matching is DeepPCB's, made
  by ``pcbforge evaluate``: nothing is matched again here.
- **Summary**: ``info["evaluations"][NAME]`` holds the numbers of ``metrics.json``
  (:func:`evaluation_info`).
- **Saved views**, only those with samples: ``eval_<NAME>_fp_<class>`` (samples with a
  false positive of that class, showing those only), ``eval_<NAME>_fn_<class>`` (missed
  boxes of that class), ``eval_<NAME>_low_conf_tp`` (true positives scored below the
  best-F threshold, ``deeppcb.threshold`` of ``metrics.json``: the ones that operating
  point throws away; when there are none, the lowest-scored tenth of the true positives,
  ties included; ``info["evaluations"][NAME]["low_conf_tp"]`` says which).

The files are read through :mod:`pcbforge.datasets.evaluation_tables` only. An
evaluation that cannot be read is left out with a one-line warning.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pcbforge.datasets.dataset import Dataset
from pcbforge.datasets.evaluation_tables import (
    EVALUATIONS_DIR,
    METRICS_JSON,
    EvaluationError,
    evaluation_names,
    read_evaluation,
    read_outcomes,
)
from pcbforge.datasets.fiftyone.fields import (
    ensure_detections_field,
    finite,
    image_size_of,
    relative_box,
)
from pcbforge.datasets.formats_common import text_value
from pcbforge.datasets.samples import image_sizes

#: Field of an evaluation: ``eval_<name>``; its views start with the field's name.
EVAL_PREFIX = "eval_"
#: Outcomes, also the tag of each detection.
TP, FP, FN = "tp", "fp", "fn"
#: Suffix of the view of true positives with low scores.
LOW_CONF_TP = "low_conf_tp"
#: How the low-confidence true positives were chosen (``info[...]["low_conf_tp"]["rule"]``).
BELOW_THRESHOLD = "below_best_f_threshold"
LOWEST_DECILE = "lowest_decile"
#: Attributes of each detection (besides label, box, confidence and tags).
ATTRIBUTES = (("prediction_id", "StringField"), ("outcome", "StringField"),
              ("fp_kind", "StringField"), ("iou", "FloatField"), ("truth_id", "StringField"))
_PREDICTION_COLUMNS = ("prediction_id", "sample_id", "label", "score", "x1", "y1", "x2", "y2",
                       "outcome", "truth_id", "iou", "fp_kind")
_TRUTH_COLUMNS = ("truth_id", "sample_id", "label", "x1", "y1", "x2", "y2", "outcome")


@dataclass(frozen=True)
class LowConfidence:
    """Which true positives count as low-confidence: ``score < cutoff`` with
    :data:`BELOW_THRESHOLD`, ``score <= cutoff`` with :data:`LOWEST_DECILE`; ``rule`` is
    ``None`` when the evaluation has no scored true positive."""

    rule: str | None
    cutoff: float | None

    def mask(self, scores: pd.Series) -> pd.Series:
        if self.rule == BELOW_THRESHOLD:
            return scores < self.cutoff
        if self.rule == LOWEST_DECILE:
            return scores <= self.cutoff
        return pd.Series(False, index=scores.index)


@dataclass(frozen=True, eq=False)
class ShownEvaluation:
    """One evaluation as FiftyOne shows it: its field, ``metrics.json``, its predictions
    and its missed boxes (rows of samples in the dataset only)."""

    name: str
    field: str
    summary: dict
    predictions: pd.DataFrame
    misses: pd.DataFrame
    low_conf: LowConfidence

    def classes(self) -> list[str]:
        """The evaluation's classes, then any other label of its rows (sorted)."""
        known = [str(c) for c in self.summary.get("classes") or []]
        seen = set(self.predictions["label"]) | set(self.misses["label"])
        return known + sorted(seen - set(known))


def evaluation_field(name: str, taken: set[str]) -> str:
    """``eval_<name>`` as a field name, not one of ``taken`` (compared ignoring case, as
    the App's view slugs are); the name is added to ``taken``."""
    base = EVAL_PREFIX + re.sub(r"[^0-9A-Za-z_]", "_", name)
    field, number = base, 1
    lowered = {t.lower() for t in taken}
    while field.lower() in lowered:
        number += 1
        field = f"{base}_{number}"
    taken.add(field)
    return field


def low_confidence(summary: dict, predictions: pd.DataFrame) -> LowConfidence:
    """The true positives below the best-F threshold of ``metrics.json``, else (none
    there) the lowest-scored tenth of them (at least one, ties included)."""
    scores = predictions.loc[predictions["outcome"] == TP, "score"].dropna()
    if scores.empty:
        return LowConfidence(None, None)
    threshold = (summary.get("deeppcb") or {}).get("threshold")
    if finite(threshold) and (scores < float(threshold)).any():
        return LowConfidence(BELOW_THRESHOLD, float(threshold))
    ranked = scores.sort_values(kind="stable")
    return LowConfidence(LOWEST_DECILE, float(ranked.iloc[math.ceil(len(ranked) / 10) - 1]))


def load_evaluations(dataset: Dataset, taken: Iterable[str] = ()
                     ) -> tuple[list[ShownEvaluation], list[str]]:
    """Every evaluation of ``dataset`` that can be read, by name, and one line per
    problem (an evaluation left out, rows about samples that are not in the dataset).
    ``taken``: field names the evaluations' fields must not take."""
    taken = set(taken)
    known = set(dataset.samples["sample_id"].astype(str))
    folder = dataset.root / EVALUATIONS_DIR
    names = evaluation_names(dataset.root)
    problems = [f"{path}: not an evaluation (no {METRICS_JSON}); not shown"
                for path in sorted(folder.iterdir() if folder.is_dir() else [])
                if path.is_dir() and not path.name.startswith(".") and path.name not in names]
    shown = []
    for name in names:
        try:
            summary, predictions, truths = _read(dataset.root, name)
        except (EvaluationError, OSError, ValueError, KeyError, TypeError) as err:
            problems.append(f"{folder / name}: evaluation not shown: {_one_line(err)}")
            continue
        stale = int((~predictions["sample_id"].isin(known)).sum()
                    + (~truths["sample_id"].isin(known)).sum())
        if stale:
            problems.append(f"{folder / name}: {stale} rows are about samples that are not in "
                            f"the dataset (not shown); run pcbforge evaluate again")
            predictions = predictions[predictions["sample_id"].isin(known)]
            truths = truths[truths["sample_id"].isin(known)]
        misses = truths[truths["outcome"] == FN].reset_index(drop=True)
        predictions = predictions.reset_index(drop=True)
        shown.append(ShownEvaluation(name, evaluation_field(name, taken), summary, predictions,
                                     misses, low_confidence(summary, predictions)))
    return shown, problems


def _read(root: Path, name: str) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    summary = read_evaluation(root, name)
    if not isinstance(summary, dict):
        raise ValueError(f"{METRICS_JSON} holds {type(summary).__name__}, not an object")
    predictions, truths = read_outcomes(root, name)
    for table, columns, what in ((predictions, _PREDICTION_COLUMNS, "predictions"),
                                 (truths, _TRUTH_COLUMNS, "truths")):
        missing = [c for c in columns if c not in table.columns]
        if missing:
            raise ValueError(f"{what} table lacks columns {', '.join(missing)} (expected "
                             f"{', '.join(columns)})")
    text = ("prediction_id", "sample_id", "label", "outcome", "truth_id", "fp_kind")
    predictions = predictions.assign(
        **{c: predictions[c].map(text_value) for c in text},
        **{c: pd.to_numeric(predictions[c], errors="raise").astype(float)
           for c in ("score", "x1", "y1", "x2", "y2", "iou")})
    truths = truths.assign(
        **{c: truths[c].map(text_value) for c in ("truth_id", "sample_id", "label", "outcome")},
        **{c: pd.to_numeric(truths[c], errors="raise").astype(float)
           for c in ("x1", "y1", "x2", "y2")})
    return summary, predictions, truths


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def evaluation_view_counts(evaluations: list[ShownEvaluation]) -> dict[str, int]:
    """Samples in each evaluation view, from the tables; views without samples are left
    out (they are not made). In order: per evaluation, false positives by class, misses
    by class, low-confidence true positives."""
    counts = {}
    for evaluation in evaluations:
        predictions, misses = evaluation.predictions, evaluation.misses
        for cls in evaluation.classes():
            chosen = predictions[(predictions["outcome"] == FP) & (predictions["label"] == cls)]
            counts[f"{evaluation.field}_{FP}_{cls}"] = chosen["sample_id"].nunique()
        for cls in evaluation.classes():
            counts[f"{evaluation.field}_{FN}_{cls}"] = \
                misses.loc[misses["label"] == cls, "sample_id"].nunique()
        tps = predictions[predictions["outcome"] == TP]
        counts[f"{evaluation.field}_{LOW_CONF_TP}"] = \
            tps.loc[evaluation.low_conf.mask(tps["score"]), "sample_id"].nunique()
    return {name: int(count) for name, count in counts.items() if count}


def evaluation_info(evaluations: list[ShownEvaluation]) -> dict[str, dict]:
    """``info["evaluations"]``: evaluation name -> its numbers (``metrics.json``'s
    DeepPCB and COCO summary, counts, split) and where FiftyOne shows it."""
    counts = evaluation_view_counts(evaluations)
    info = {}
    for evaluation in evaluations:
        summary = evaluation.summary
        deeppcb, coco = summary.get("deeppcb") or {}, summary.get("coco") or {}
        info[evaluation.name] = {
            "field": evaluation.field, "split": summary.get("split"),
            "mAP": deeppcb.get("mAP"), "coco_mAP": coco.get("mAP"), "AP50": coco.get("AP50"),
            "AP75": coco.get("AP75"), "f_score": deeppcb.get("f_score"),
            "threshold": deeppcb.get("threshold"), "precision": deeppcb.get("precision"),
            "recall": deeppcb.get("recall"), "ap": deeppcb.get("ap"), "coco_ap": coco.get("ap"),
            **{key: summary.get(key) for key in ("images", "predictions", "truths", "tp", "fp",
                                                 "fn", "iou_threshold", "format",
                                                 "predictions_file", "pcbforge_version")},
            "low_conf_tp": {"rule": evaluation.low_conf.rule,
                            "cutoff": evaluation.low_conf.cutoff},
            "views": [name for name in counts if name.startswith(evaluation.field + "_")],
        }
    return info


# ------------------------------------------------------------------------------ FiftyOne


def set_evaluations(fo, fo_dataset, dataset: Dataset, samples: pd.DataFrame, ids: list[str],
                    evaluations: list[ShownEvaluation], previous: dict[str, str],
                    key_field: str) -> dict[str, str]:
    """Set each evaluation's field on every sample (``None`` where it has no row), and
    delete the fields an earlier run made (``previous``: name -> field) that no evaluation
    has now. Returns evaluation name -> field."""
    made = {evaluation.name: evaluation.field for evaluation in evaluations}
    schema = fo_dataset.get_field_schema()
    for field in set(previous.values()) - set(made.values()):
        if field in schema:
            fo_dataset.delete_sample_field(field)
    for evaluation in evaluations:
        ensure_detections_field(fo, fo_dataset, evaluation.field,
                                tuple((a, getattr(fo, t)) for a, t in ATTRIBUTES),
                                replace_other=True)  # not ours (or of another kind)
        values = _detections(fo, dataset, samples, evaluation)
        fo_dataset.set_values(evaluation.field, dict(zip(ids, values, strict=True)),
                              key_field=key_field)
    return made


def _detections(fo, dataset: Dataset, samples: pd.DataFrame,
                evaluation: ShownEvaluation) -> list:
    """One :class:`Detections` per sample (in ``samples`` order): its predictions, then
    its missed boxes; ``None`` for a sample with neither."""
    sizes = image_sizes(samples)
    predictions = {key: rows for key, rows in
                   evaluation.predictions.groupby("sample_id", sort=False)}
    misses = {key: rows for key, rows in evaluation.misses.groupby("sample_id", sort=False)}
    out = []
    for _, sample in samples.iterrows():
        key = str(sample["sample_id"])
        if key not in predictions and key not in misses:
            out.append(None)
            continue
        try:
            size = image_size_of(dataset, sizes, sample)
        except ValueError:  # no image size: the detections cover the whole tile
            size = None
        detections = []
        if key in predictions:
            for row in predictions[key].itertuples(index=False):
                detections.append(fo.Detection(
                    label=row.label, bounding_box=_box(row, size),
                    confidence=_number(row.score), tags=[row.outcome],
                    prediction_id=row.prediction_id, outcome=row.outcome,
                    fp_kind=row.fp_kind, iou=_number(row.iou), truth_id=row.truth_id))
        if key in misses:
            for row in misses[key].itertuples(index=False):
                detections.append(fo.Detection(
                    label=row.label, bounding_box=_box(row, size), confidence=None,
                    tags=[FN], prediction_id="", outcome=FN, fp_kind="", iou=None,
                    truth_id=row.truth_id))
        out.append(fo.Detections(detections=detections))
    return out


def _box(row, size: tuple[int, int] | None) -> list[float]:
    """Pixel ``x1, y1, x2, y2`` as FiftyOne's relative ``[x, y, w, h]`` (the whole image
    when the size or a corner is unknown)."""
    corners = (row.x1, row.y1, row.x2, row.y2)
    if size is None or not all(finite(v) for v in corners):
        return [0.0, 0.0, 1.0, 1.0]
    return relative_box(corners, *size)


def _number(value: object) -> float | None:
    return float(value) if finite(value) else None


def evaluation_views(fo_dataset, evaluations: list[ShownEvaluation]) -> dict[str, tuple]:
    """View name -> ``(view, description)`` of every evaluation view with samples (names
    and order of :func:`evaluation_view_counts`)."""
    from fiftyone import ViewField as F

    wanted = evaluation_view_counts(evaluations)
    views = {}
    for evaluation in evaluations:
        field, name = evaluation.field, evaluation.name
        for cls in evaluation.classes():
            views[f"{field}_{FP}_{cls}"] = (
                fo_dataset.filter_labels(field, (F("outcome") == FP) & (F("label") == cls)),
                f"{name}: samples with a false positive {cls!r} (those predictions)")
            views[f"{field}_{FN}_{cls}"] = (
                fo_dataset.filter_labels(field, (F("outcome") == FN) & (F("label") == cls)),
                f"{name}: samples with a missed {cls!r} box (those boxes)")
        low = evaluation.low_conf
        if low.rule is not None:
            below = F("confidence") < low.cutoff if low.rule == BELOW_THRESHOLD \
                else F("confidence") <= low.cutoff
            how = (f"below the best-F threshold {low.cutoff:.4g}" if low.rule == BELOW_THRESHOLD
                   else f"in the lowest-scored tenth (score <= {low.cutoff:.4g})")
            views[f"{field}_{LOW_CONF_TP}"] = (
                fo_dataset.filter_labels(field, (F("outcome") == TP) & below),
                f"{name}: true positives scored {how}")
    return {view: views[view] for view in wanted}


__all__ = ["ATTRIBUTES", "BELOW_THRESHOLD", "EVAL_PREFIX", "FN", "FP", "LOWEST_DECILE",
           "LOW_CONF_TP", "TP", "LowConfidence", "ShownEvaluation", "evaluation_field",
           "evaluation_info", "evaluation_view_counts", "evaluation_views", "load_evaluations",
           "low_confidence", "set_evaluations"]
