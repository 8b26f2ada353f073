"""``pcbforge export DATASET --format FORMAT --out DIR``: any format of the registry
(:data:`pcbforge.datasets.formats.FORMATS`) that can be exported."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from pcbforge.cli._util import fail
from pcbforge.datasets.dataset import DatasetError
from pcbforge.datasets.formats import TemplateMode, format_names

#: The choices of ``--format``: the registry's formats that can be exported.
ExportFormat = Enum("ExportFormat", {name: name for name in format_names(can="export")},
                    type=str)


def export_command(
    dataset: Annotated[Path, typer.Argument(help="A pcbforge dataset folder.")],
    format: Annotated[ExportFormat, typer.Option("--format", "-f", help="Format to write.")],
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="Folder to create, or an earlier export to replace.")],
    include_status: Annotated[
        str, typer.Option(help="Comma-separated statuses to export.")
    ] = "ok",
    templates: Annotated[TemplateMode, typer.Option(
        help="The templates (defect-free references of tested images): negatives: images "
             "without boxes; pair: written beside each tested image (COCO: its "
             "template_file_name; YOLO: templates/<split>/, named as in images/); omit: "
             "left out. DeepPCB always pairs.")] = TemplateMode.negatives,
) -> None:
    """Write the dataset for training: per split, boxes converted to the format."""
    from pcbforge.pipeline import export_dataset

    statuses = tuple(s.strip() for s in include_status.split(",") if s.strip())
    try:
        report = export_dataset(dataset, format.value, out, include_status=statuses,
                                templates=templates)
    except (DatasetError, ValueError, FileNotFoundError) as err:
        fail(err)
    parts = ", ".join(
        f"{split}: {counts.get('images', counts.get('written'))} images"
        + (f", {counts['paired']} with their template" if "paired" in counts else "")
        for split, counts in report["splits"].items()
    )
    Console().print(f"exported {format.value} to {out} ({parts}); report: {out}/export_report.json")
