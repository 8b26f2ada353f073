"""``pcbforge audit DATASET [--against OTHER] [--verify]``: exit 0 when clean, 1 when it
leaks, 3 when ``--verify`` finds an image that no longer matches its row."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pcbforge.cli._util import (
    EngineOption,
    SchedulerOption,
    WorkersOption,
    engine_options,
    fail,
    workers_of,
)
from pcbforge.engine import EngineKind

#: Leaking pairs and changed images printed (all of them are in audit.json).
_SHOWN = 20
#: Exit code when ``--verify`` finds an image that changed, vanished or cannot be read
#: (it wins over leaks' 1: training on the wrong pixels is the worse problem).
EXIT_IMAGES_CHANGED = 3


def audit_command(
    dataset: Annotated[Path, typer.Argument(help="A split pcbforge dataset folder.")],
    against: Annotated[Path | None, typer.Option(
        help="Another dataset (e.g. a frozen test set): any image of it that shows a board "
             "region of DATASET is a leak.")] = None,
    group_by: Annotated[list[str] | None, typer.Option(
        "--group-by", help="Columns whose equal values must share a split (as in split).")
    ] = None,
    workers: WorkersOption = 0,
    engine: EngineOption = EngineKind.local,
    scheduler: SchedulerOption = None,
    verify: Annotated[bool, typer.Option(
        "--verify", help="Also hash every image again and name each one whose bytes no "
                         "longer match the sha256 in its row, or that is missing or "
                         f"unreadable (exit {EXIT_IMAGES_CHANGED}). Works before a split "
                         "too (the leak search is then skipped).")] = False,
) -> None:
    """Find duplicates, transformed copies, defect/template variants and shared groups
    across splits (or against another dataset). Exit 0: clean; 1: leaks; 3: --verify
    found images that no longer match their rows; 2: bad arguments or dataset."""
    from pcbforge.audit import audit
    from pcbforge.curate.runner import WORKER_MODULES
    from pcbforge.datasets.dataset import DatasetError
    from pcbforge.split import SplitError

    workers = workers_of(workers)
    with engine_options(engine, workers, scheduler, WORKER_MODULES) as run:
        try:
            report = audit(dataset, against, group_by=tuple(group_by or ()), workers=workers,
                           progress=True, verify=verify, engine=run)
        except (DatasetError, SplitError, ValueError) as err:
            fail(err)
    console = Console()
    intact = _print_integrity(report, console)
    if report["leak_check"] != "done":
        console.print(f"leak search {report['leak_check']} | report: {dataset}/audit.json")
        if not intact:
            raise typer.Exit(code=EXIT_IMAGES_CHANGED)
        return
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
        if not intact:
            raise typer.Exit(code=EXIT_IMAGES_CHANGED)
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
    raise typer.Exit(code=1 if intact else EXIT_IMAGES_CHANGED)


def _print_integrity(report: dict, console: Console) -> bool:
    """Print what ``--verify`` found; True when every image matches (or none was asked)."""
    integrity = report.get("integrity")
    if integrity is None:
        return True
    mismatches = integrity["mismatches"]
    unhashed = (f" ({integrity['without_sha256']} rows have no sha256 and were not checked)"
                if integrity["without_sha256"] else "")
    if not mismatches:
        console.print(f"[green]intact:[/] all {integrity['images']} images match their "
                      f"sha256{unhashed}", soft_wrap=True)
        return True
    table = Table(title=f"{len(mismatches)} images no longer match their rows"
                        + (f" (first {_SHOWN})" if len(mismatches) > _SHOWN else ""))
    for column in ("path", "problem", "detail"):
        table.add_column(column, overflow="fold")
    for found in mismatches[:_SHOWN]:
        table.add_row(found["path"], found["problem"], found["detail"])
    console.print(table)
    console.print(f"[red]changed:[/] {len(mismatches)} of {integrity['images']} images no "
                  f"longer match the sha256 in their rows{unhashed}", soft_wrap=True)
    return False
