"""``pcbforge report DATASET``: (re)write report.html and report.json."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from pcbforge.cli._util import fail


def report_command(
    dataset: Annotated[Path, typer.Argument(help="A pcbforge dataset folder (a build's, or "
                                                 "any other).", file_okay=False)],
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Write DATASET/report.html, report.json and the plots in report/ from the dataset's
    files (counts, splits, defect sizes, examples, rejected files, audit)."""
    from pcbforge.core.errors import storage_error
    from pcbforge.datasets.dataset import DatasetError
    from pcbforge.pipeline import RecipeError, report_settings
    from pcbforge.pipeline.report import REPORT_HTML, write_report

    try:
        settings = report_settings(dataset)  # a build's: the section it was built with
    except RecipeError as err:
        fail(err)
    try:
        report = write_report(dataset, settings, progress=not quiet)
    except (DatasetError, OSError, ValueError) as err:
        if storage_error(err) is not None:
            raise  # disk full, read-only...: one line and exit 74 (cli._util.guarded)
        fail(err)
    audit = report.get("audit")
    verdict = "no audit" if audit is None else ("audit clean" if audit["clean"] else
                                               f"audit: {audit['leaks']} leaks")
    Console().print(f"{report['files']} files, {len(report['plots'])} plots, {verdict}; "
                    f"report: {dataset / REPORT_HTML}")
