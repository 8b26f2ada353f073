"""``evaluate_dataset``: score a model's predictions on a dataset's labels.

The predictions (any format :mod:`pcbforge.evaluate.predictions` reads) are matched to
the labelled boxes of one split (DeepPCB's rule: IoU > 0.33, greedy by score), scored
(:mod:`pcbforge.evaluate.metrics`: per-class AP and mAP, COCO mAP@[.5:.95] through
pycocotools, the best F-score, a confusion matrix with background), and written to
``DATASET/evaluations/NAME/``: one row per prediction and per labelled box with its
outcome, and ``metrics.json``. Several evaluations stay side by side;
:func:`compare_evaluations` puts two of them next to each other.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd

from pcbforge import __version__
from pcbforge.core.files import write_json
from pcbforge.core.output import staged_output
from pcbforge.datasets.dataset import Dataset, load, require_folder
from pcbforge.datasets.evaluation_tables import (
    CONFUSION_CSV,
    EVALUATIONS_DIR,
    METRICS_JSON,
    PREDICTIONS_PARQUET,
    TRUTHS_PARQUET,
    EvaluationError,
    read_evaluation,
)
from pcbforge.datasets.samples import USABLE_STATUSES, image_sizes
from pcbforge.evaluate.metrics import DEEPPCB_IOU, evaluate_tables
from pcbforge.evaluate.predictions import read_predictions

#: ``--split`` value that evaluates every usable image, with a table per split.
ALL_SPLITS = "all"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def run_name(name: str | None, predictions: Path | str, what: str = "evaluation",
             error: type[ValueError] = EvaluationError) -> str:
    """``name``, or the predictions file's stem; a plain folder name either way (``what``
    names the run in the ``error`` raised otherwise)."""
    chosen = name if name else Path(predictions).stem
    if not _NAME.match(chosen):
        raise error(f"{what} name {chosen!r}: expected letters, digits, '.', '_' or '-' (up "
                    "to 100, not starting with '.'); pass --name")
    return chosen


def evaluation_name(name: str | None, predictions: Path | str) -> str:
    """:func:`run_name` of an evaluation."""
    return run_name(name, predictions)


def evaluated_samples(data: Dataset, split: str) -> pd.DataFrame:
    """The usable samples of ``split`` (every split with ``"all"``). Templates are
    images like any other here: a good board with no label, where a prediction is a false
    alarm."""
    samples = data.samples
    usable = samples[samples["status"].isin(USABLE_STATUSES)]
    if split == ALL_SPLITS:
        chosen = usable
    else:
        chosen = usable[usable["split"].fillna("").astype(str) == split]
    if chosen.empty:
        present = sorted({str(s) for s in usable["split"].fillna("") if str(s)})
        raise EvaluationError(
            f"{data.root}: no usable images in split {split!r} (splits here: "
            f"{', '.join(present) or 'none; run `pcbforge split` first'}); pass --split "
            f"{' or '.join(present + [ALL_SPLITS])}")
    return chosen.reset_index(drop=True)


def truth_table(data: Dataset, sample_ids: set[str]) -> pd.DataFrame:
    """The labelled boxes of ``sample_ids``; ``truth_id`` is the row of labels.parquet."""
    labels = data.labels.reset_index(drop=True)
    kept = labels[labels["sample_id"].astype(str).isin(sample_ids)]
    return pd.DataFrame({
        "truth_id": [f"t{row}" for row in kept.index],
        "sample_id": kept["sample_id"].astype(str).to_numpy(),
        "label": kept["label"].astype(str).to_numpy(),
        **{c: kept[c].astype(float).to_numpy() for c in ("x1", "y1", "x2", "y2")}})


def _summary_of(result: dict) -> dict:
    """The numbers of an :func:`evaluate_tables` result (no tables)."""
    per_pred, per_truth = result["predictions"], result["truths"]
    return {"images": result["images"], "predictions": len(per_pred),
            "truths": len(per_truth),
            "tp": int((per_truth["outcome"] == "tp").sum()),
            "fp": int((per_pred["outcome"] == "fp").sum()),
            "fn": int((per_truth["outcome"] == "fn").sum()),
            "deeppcb": result["deeppcb"], "coco": result["coco"],
            "confusion": result["confusion"]}


def evaluate_dataset(dataset: Path | str, predictions: Path | str, fmt: str, *,
                     name: str | None = None, split: str = "test",
                     coco_gt: Path | str | None = None,
                     iou_threshold: float = DEEPPCB_IOU) -> dict:
    """Score the predictions in ``predictions`` (format ``fmt``) on the labels of
    ``split`` (``"all"``: every usable image, with a summary per split) and write them to
    ``DATASET/evaluations/NAME/`` (``NAME``: ``name``, else the predictions' stem):
    ``predictions.parquet`` and ``truths.parquet`` (each row's outcome), ``confusion.csv``
    and ``metrics.json``. Predictions on images outside the split are left out and
    counted. Returns the summary (``metrics.json``)."""
    require_folder(dataset)
    data = load(dataset)
    chosen = evaluation_name(name, predictions)
    samples = evaluated_samples(data, split)
    ids = [str(s) for s in samples["sample_id"]]
    table = read_predictions(data, predictions, fmt, coco_gt=coco_gt)
    inside = table["sample_id"].astype(str).isin(set(ids))
    outside = int((~inside).sum())
    table = table[inside].reset_index(drop=True)
    table.insert(0, "prediction_id", [f"p{i}" for i in range(len(table))])
    truths = truth_table(data, set(ids))
    classes = list(data.info.classes)
    sizes = image_sizes(samples)
    result = evaluate_tables(table, truths, classes, ids, sizes, iou_threshold=iou_threshold)
    summary = {"command": "evaluate", "name": chosen, "dataset": str(data.root),
               "predictions_file": str(predictions), "format": fmt, "split": split,
               "iou_threshold": iou_threshold, "classes": classes,
               "ignored_outside_split": outside, **_summary_of(result)}
    if split == ALL_SPLITS:
        by_split = {}
        split_of = dict(zip(ids, samples["split"].fillna("").astype(str), strict=True))
        for part in sorted(set(split_of.values())):
            part_ids = [s for s in ids if split_of[s] == part]
            keep = set(part_ids)
            sub = evaluate_tables(table[table["sample_id"].isin(keep)],
                                  truths[truths["sample_id"].isin(keep)], classes, part_ids,
                                  {s: sizes[s] for s in part_ids},
                                  iou_threshold=iou_threshold)
            numbers = _summary_of(sub)
            numbers.pop("confusion")
            by_split[part or "unsplit"] = numbers
        summary["by_split"] = by_split
    summary["pcbforge_version"] = __version__
    with staged_output(data.root, command="evaluate", clone=True) as stage:
        folder = stage / EVALUATIONS_DIR / chosen
        if folder.exists():  # an earlier evaluation of that name (the stage is a copy)
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        result["predictions"].to_parquet(folder / PREDICTIONS_PARQUET, index=False)
        result["truths"].to_parquet(folder / TRUTHS_PARQUET, index=False)
        confusion = pd.DataFrame(result["confusion"]).T
        confusion.index.name = "true"
        confusion.to_csv(folder / CONFUSION_CSV)
        write_json(folder / METRICS_JSON, summary)
    return summary


def compare_evaluations(dataset: Path | str, first: str, second: str) -> dict:
    """Two evaluations side by side: per-class AP (DeepPCB rule) and COCO AP, mAP, F, with
    ``second - first``. Both must be of the same split and classes."""
    a, b = read_evaluation(dataset, first), read_evaluation(dataset, second)
    if a["split"] != b["split"]:
        raise EvaluationError(f"{first} is of split {a['split']!r}, {second} of "
                              f"{b['split']!r}: compare evaluations of one split")
    rows = []

    def delta(x, y):
        return None if x is None or y is None else y - x

    for cls in a["classes"]:
        ap_a, ap_b = a["deeppcb"]["ap"].get(cls), b["deeppcb"]["ap"].get(cls)
        coco_a, coco_b = a["coco"]["ap"].get(cls), b["coco"]["ap"].get(cls)
        rows.append({"class": cls, "ap_first": ap_a, "ap_second": ap_b,
                     "ap_delta": delta(ap_a, ap_b), "coco_ap_first": coco_a,
                     "coco_ap_second": coco_b, "coco_ap_delta": delta(coco_a, coco_b)})
    overall = {}
    for key, get in (("mAP", lambda m: m["deeppcb"]["mAP"]),
                     ("coco_mAP", lambda m: m["coco"]["mAP"]),
                     ("f_score", lambda m: m["deeppcb"]["f_score"])):
        overall[key] = {"first": get(a), "second": get(b), "delta": delta(get(a), get(b))}
    return {"first": first, "second": second, "split": a["split"], "classes": rows,
            "overall": overall}


__all__ = ["ALL_SPLITS", "compare_evaluations", "evaluate_dataset", "evaluated_samples",
           "evaluation_name", "run_name", "truth_table"]
