"""``pcbforge split DATASET --ratios 0.7,0.15,0.15 [--seed S] [--group-by COL ...]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from pcbforge.cli._util import fail, validation_message


def split_command(
    dataset: Annotated[Path, typer.Argument(help="A pcbforge dataset folder.")],
    ratios: Annotated[str, typer.Option(help="train,val,test shares; they sum to 1.")] = (
        "0.7,0.15,0.15"),
    seed: Annotated[int, typer.Option(help="Seed of the candidate splits.")] = 0,
    group_by: Annotated[list[str] | None, typer.Option(
        "--group-by", help="Column whose equal values must share a split (board, lot...); "
                           "repeat for several.")] = None,
    reshuffle: Annotated[bool, typer.Option(
        help="Start over: forget earlier assignments (the test set changes).")] = False,
) -> None:
    """Assign train/val/test by leakage group, balanced by defect class."""
    from pcbforge.datasets.dataset import DatasetError
    from pcbforge.split import SplitError, SplitParams, split_dataset

    try:
        values = tuple(float(v) for v in ratios.split(","))
        if len(values) != 3:
            raise ValueError
    except ValueError:
        fail(f"--ratios must be three numbers train,val,test (e.g. 0.7,0.15,0.15), got {ratios!r}")
    try:
        params = SplitParams(ratios=values, seed=seed, group_by=tuple(group_by or ()),
                             reshuffle=reshuffle)
    except ValidationError as err:
        fail(validation_message(err))
    try:
        report = split_dataset(dataset, params)
    except (SplitError, DatasetError) as err:
        fail(err)
    print_split_table(report, Console())


def print_split_table(report: dict, console: Console) -> None:
    """Rows: each class (box counts), defect-free images, images; per split the count and
    its share of the row's total (the target is the split's ratio)."""
    splits = report["splits"]
    columns = [c for c in next(iter(splits.values())) if c not in ("ratio", "groups",
                                                                      "deviation")]
    table = Table(title=f"split: {report['assigned_images']} images in {report['groups']} "
                        f"groups")
    table.add_column("count")
    table.add_column("total", justify="right")
    for name, row in splits.items():
        table.add_column(f"{name} (target {row['ratio']:.2f})", justify="right")
    for column in [*columns, "groups"]:
        total = sum(row[column] for row in splits.values())
        cells = [f"{row[column]} ({row[column] / total:.3f})" if total else "0"
                 for row in splits.values()]
        name = {"defect_free_images": "defect-free images"}.get(column, column)
        table.add_row(name if column in columns[-2:] + ["groups"] else f"{name} boxes",
                      str(total), *cells)
    console.print(table)
    console.print(
        f"largest deviation of a class share from its ratio: {report['max_class_deviation']:.4f}"
        f" ({report['worst_class']}); images {report['max_image_deviation']:.4f}, defect-free "
        f"{report['max_defect_free_deviation']:.4f}"
    )
    console.print(f"method: {report['method']}; kept {report['groups_kept_from_earlier_split']}"
                  f" earlier groups, placed {report['groups_placed_now']}")
    if report["groups_split_earlier_across_splits"]:
        console.print(f"[yellow]warning:[/] {report['groups_split_earlier_across_splits']} "
                      f"groups were already on several sides (run `pcbforge audit`)")
    console.print(f"report: {report['dataset']}/split_report.json")
