"""``pcbforge audit DATASET [--against OTHER]``: exit 0 when clean, 1 when it leaks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pcbforge.cli._util import fail
from pcbforge.engine import default_workers

#: Leaking pairs printed (all of them are in audit.json).
_SHOWN = 20


def audit_command(
    dataset: Annotated[Path, typer.Argument(help="A split pcbforge dataset folder.")],
    against: Annotated[Path | None, typer.Option(
        help="Another dataset (e.g. a frozen test set): any image of it that shows a board "
             "region of DATASET is a leak.")] = None,
    group_by: Annotated[list[str] | None, typer.Option(
        "--group-by", help="Columns whose equal values must share a split (as in split).")
    ] = None,
    workers: Annotated[int, typer.Option(help="Worker processes (default: all cores).")] = 0,
) -> None:
    """Find duplicates, transformed copies, defect/template variants and shared groups
    across splits (or against another dataset)."""
    from pcbforge.audit import audit
    from pcbforge.datasets.dataset import DatasetError
    from pcbforge.split import SplitError

    try:
        report = audit(dataset, against, group_by=tuple(group_by or ()),
                       workers=workers or default_workers(), progress=True)
    except (DatasetError, SplitError, ValueError) as err:
        fail(err)
    console = Console()
    table = Table(title="per split: images and defect boxes per class")
    classes = list(next(iter(report["per_class"].values())))
    table.add_column("split")
    for column in classes:
        table.add_column(column, justify="right")
    for split, counts in report["per_class"].items():
        table.add_row(split, *(str(counts[c]) for c in classes))
    console.print(table)
    if report["clean"]:
        console.print(f"[green]clean:[/] no leak among {report['images_checked']} images "
                      f"| report: {dataset}/audit.json")
        return
    leaks = Table(title=f"{report['leaks']} leaking pairs"
                        + (f" (first {_SHOWN})" if report["leaks"] > _SHOWN else ""))
    for column in ("a", "side", "b", "side", "reason", "distance"):
        leaks.add_column(column, overflow="fold")
    for pair in report["pairs"][:_SHOWN]:
        reason = pair["reason"] + (f" ({pair['transform']})" if pair["transform"] else "")
        distance = str(pair["phash_distance"]) if pair["phash_distance"] >= 0 else "-"
        leaks.add_row(pair["a"], pair["a_side"], pair["b"], pair["b_side"], reason, distance)
    console.print(leaks)
    reasons = ", ".join(f"{k} {v}" for k, v in report["leaks_by_reason"].items())
    console.print(f"[red]leaks:[/] {report['leaks']} pairs ({reasons}) among "
                  f"{report['images_checked']} images | report: {dataset}/audit.json")
    raise typer.Exit(code=1)
