"""``pcbforge import FORMAT SRC --out DATASET``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from pcbforge.cli._util import fail
from pcbforge.cli.curate import print_summary
from pcbforge.curate import CurateError, CurateParams
from pcbforge.engine import default_workers

import_app = typer.Typer(no_args_is_help=True, help="Import labelled datasets (runs curation).")


@import_app.command("deeppcb", no_args_is_help=True)
def import_deeppcb_command(
    src: Annotated[Path, typer.Argument(help="Folder in DeepPCB layout (groupN/N/X_test.jpg).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Dataset folder to write.")],
    workers: Annotated[
        int, typer.Option(help="Worker processes (default: all cores, at most 8).")
    ] = 0,
) -> None:
    """Import DeepPCB: tested images with templates, boards, lists and defect boxes."""
    from pcbforge.pipeline import import_deeppcb

    errors = Console(stderr=True)
    try:
        result = import_deeppcb(
            src, out, CurateParams(workers=workers or default_workers()), progress=True
        )
    except (CurateError, FileNotFoundError) as err:
        fail(err)
    console = Console()
    for problem in result.problems:
        errors.print(f"[yellow]skipped:[/] {problem}", soft_wrap=True)
    print_summary(result.report, console)
    report = result.report
    per_class = ", ".join(f"{k} {v}" for k, v in sorted(report["labels_per_class"].items()))
    console.print(
        f"DeepPCB: {report['tested_images']} tested images, {report['templates']} templates, "
        f"{report['boards']} boards, {report['labels']} boxes ({per_class}); "
        f"{len(result.problems)} layout problems"
    )
