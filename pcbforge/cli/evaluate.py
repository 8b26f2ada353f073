"""``pcbforge evaluate DATASET --predictions P``: a model's predictions scored on the
dataset's labels, kept in ``DATASET/evaluations/NAME/``; ``--compare A B`` puts two
evaluations side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pcbforge.cli._util import (
    PredictionFormatOption,
    fail,
)


def _number(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.3f}"


def evaluate_command(
    dataset: Annotated[Path, typer.Argument(help="A pcbforge dataset folder.")],
    predictions: Annotated[Path | None, typer.Option(
        "--predictions", "-p",
        help="The model's predictions: a COCO results JSON, a folder of YOLO or DeepPCB txt "
             "files, or a pcbforge table (parquet or csv).")] = None,
    fmt: PredictionFormatOption = "coco-results",
    split: Annotated[str, typer.Option(
        help="The split to evaluate on (train, val, test), or 'all' (a table per split "
             "too).")] = "test",
    name: Annotated[str | None, typer.Option(
        help="The evaluation's name, a folder of DATASET/evaluations/ (default: the "
             "predictions file's name without extension).")] = None,
    coco_gt: Annotated[Path | None, typer.Option(
        "--coco-gt", help="For coco-results: the COCO annotations.json the image_id and "
                          "category_id values refer to (default: ids are sample ids or "
                          "file names, categories the dataset's classes from 1).")] = None,
    compare: Annotated[tuple[str, str] | None, typer.Option(
        metavar="A B", help="Compare two evaluations of DATASET instead of running "
                            "one.")] = None,
) -> None:
    """Score a model's predictions on the dataset's labels (DeepPCB's rule, IoU > 0.33: AP
    per class and mAP; COCO mAP@[.5:.95]; the best F-score; a confusion matrix) and keep
    every prediction's and box's outcome in DATASET/evaluations/NAME/."""
    from pcbforge.datasets import DatasetError
    from pcbforge.evaluate.runner import compare_evaluations, evaluate_dataset

    try:
        if compare is not None:
            if predictions is not None:
                fail("--compare reads two kept evaluations; leave out --predictions")
            _print_comparison(compare_evaluations(dataset, *compare))
            return
        if predictions is None:
            fail("expected --predictions P (or --compare A B)")
        summary = evaluate_dataset(dataset, predictions, fmt, name=name, split=split,
                                   coco_gt=coco_gt)
    except (DatasetError, ValueError) as err:
        fail(err)
    _print_summary(summary, dataset)


def _print_summary(summary: dict, dataset: Path) -> None:
    from pcbforge.datasets.evaluation_tables import EVALUATIONS_DIR

    console = Console()
    deeppcb, coco = summary["deeppcb"], summary["coco"]
    table = Table(title=f"evaluation {summary['name']} on split {summary['split']} "
                        f"({summary['images']} images)")
    for column in ("class", "boxes", "predictions", "tp", "fp", "fn", "AP (IoU>0.33)",
                   "COCO AP"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for cls in summary["classes"]:
        counts = deeppcb["counts"].get(cls, {})
        table.add_row(cls, str(counts.get("truths", 0)), str(counts.get("predictions", 0)),
                      str(counts.get("tp", 0)), str(counts.get("fp", 0)),
                      str(counts.get("fn", 0)), _number(deeppcb["ap"].get(cls)),
                      _number(coco["ap"].get(cls)))
    console.print(table)
    if summary.get("by_split"):
        parts = Table(title="by split")
        for column in ("split", "images", "boxes", "mAP", "COCO mAP", "F"):
            parts.add_column(column, justify="left" if column == "split" else "right")
        for part, numbers in summary["by_split"].items():
            parts.add_row(part, str(numbers["images"]), str(numbers["truths"]),
                          _number(numbers["deeppcb"]["mAP"]), _number(numbers["coco"]["mAP"]),
                          _number(numbers["deeppcb"]["f_score"]))
        console.print(parts)
    ignored = summary["ignored_outside_split"]
    note = f"; {ignored} predictions on images outside the split left out" if ignored else ""
    console.print(
        f"mAP {_number(deeppcb['mAP'])} (IoU > {summary['iou_threshold']:g}), COCO mAP "
        f"{_number(coco['mAP'])} (AP50 {_number(coco['AP50'])}), F "
        f"{_number(deeppcb['f_score'])} at score {_number(deeppcb['threshold'], 2)}; "
        f"tp {summary['tp']}, fp {summary['fp']}, fn {summary['fn']}{note} | report: "
        f"{Path(dataset) / EVALUATIONS_DIR / summary['name']}", soft_wrap=True)


def _print_comparison(report: dict) -> None:
    console = Console()
    table = Table(title=f"{report['first']} -> {report['second']} (split {report['split']})")
    for column in ("class", "AP first", "AP second", "change", "COCO AP first",
                   "COCO AP second", "change"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for row in report["classes"]:
        table.add_row(row["class"], _number(row["ap_first"]), _number(row["ap_second"]),
                      _signed(row["ap_delta"]), _number(row["coco_ap_first"]),
                      _number(row["coco_ap_second"]), _signed(row["coco_ap_delta"]))
    console.print(table)
    overall = report["overall"]
    console.print("; ".join(
        f"{key} {_number(v['first'])} -> {_number(v['second'])} ({_signed(v['delta'])})"
        for key, v in overall.items()), soft_wrap=True)
