"""``pcbforge classes DATASET``: the dataset's classes, the names they were imported under,
boxes per split and images, as a table; ``classes.json`` for programs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pcbforge.cli._util import fail


def classes_command(
    dataset: Annotated[Path, typer.Argument(help="A pcbforge dataset folder.",
                                            file_okay=False)],
) -> None:
    """Show the dataset's class vocabulary: each class, the source names its boxes were
    imported under, boxes on ok images per split, boxes on other images, and images; write
    DATASET/classes.json."""
    from pcbforge.core.errors import storage_error
    from pcbforge.datasets.dataset import DatasetError
    from pcbforge.pipeline import CLASSES_JSON, class_report

    try:
        report = class_report(dataset)
    except (DatasetError, OSError, ValueError) as err:
        if storage_error(err) is not None:
            raise  # disk full, read-only...: one line and exit 74 (cli._util.guarded)
        fail(err)
    console = Console()
    print_class_table(report, console)
    console.print(summary_line(report) + f"; report: {dataset / CLASSES_JSON}",
                  soft_wrap=True)


def print_class_table(report: dict, console: Console) -> None:
    """One row per class: the names it was imported under, boxes on ok images per split,
    boxes on other images, ok images holding it; a class that is not built in is marked
    ``(new)``, one the labels use but the dataset does not declare ``(undeclared)``."""
    table = Table(title="classes")
    table.add_column("class", no_wrap=True)
    table.add_column("imported as", overflow="fold")
    splits = list(report["classes"][0]["boxes"]) if report["classes"] else []
    for name in [*splits, "not ok", "images"]:
        table.add_column({"none": "no split"}.get(name, name), justify="right")
    for row in report["classes"]:
        mark = "" if row["builtin"] else (" (new)" if row["declared"] else " (undeclared)")
        table.add_row(row["class"] + mark, ", ".join(row["aliases_seen"]),
                      *(str(row["boxes"][s]) for s in splits), str(row["boxes_not_ok"]),
                      str(row["images"]))
    console.print(table)


def summary_line(report: dict) -> str:
    """``7 classes (6 built-in; not built in: missing_hole), 120 boxes on 40 ok images...``"""
    other = f"; not built in: {', '.join(report['other'])}" if report["other"] else ""
    empty = (f"; no boxes: {', '.join(report['empty_classes'])}"
             if report["empty_classes"] else "")
    return (f"{report['count']} classes ({len(report['builtin'])} built-in{other}), "
            f"{report['boxes_ok']} boxes on {report['images']} ok images "
            f"({report['boxes']} in all); {report['renamed']} classes imported under other "
            f"names{empty}")
