"""``pcbforge untile DS --predictions P --format F --out PANEL_PREDICTIONS``: predictions
made on the tiles of a tiled dataset, back on their panels, one box per defect."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

from pcbforge.cli._util import PredictionFormatOption, fail, validation_message


def untile_command(
    dataset: Annotated[Path, typer.Argument(help="A tiled dataset (`pcbforge tile`'s output).")],
    predictions: Annotated[Path, typer.Option(
        "--predictions", "-p",
        help="The model's predictions on the tiles: a COCO results JSON, a folder of YOLO or "
             "DeepPCB txt files, or a pcbforge table (parquet or csv).")],
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="The panel predictions table to write (.parquet or .csv).")],
    fmt: PredictionFormatOption = "coco-results",
    coco_gt: Annotated[Path | None, typer.Option(
        "--coco-gt", help="For coco-results: the COCO annotations.json its ids refer to.")
    ] = None,
    merge_iou: Annotated[float, typer.Option(
        help="Boxes of one class from two tiles with at least this IoU are one defect.")
    ] = 0.5,
    seam_px: Annotated[float, typer.Option(
        help="A box side this close to a tile edge inside the panel is cut by the seam.")
    ] = 2.0,
    seam_overlap: Annotated[float, typer.Option(
        help="Pieces on both sides of a seam join when their extents along it overlap this "
             "much (1-D IoU).")] = 0.5,
) -> None:
    """Bring predictions made on tiles back to panel coordinates: duplicates of
    overlapping tiles merged, boxes cut at a seam joined; a table that `pcbforge evaluate
    PANELS --format pcbforge` reads."""
    from pcbforge.datasets.dataset import DatasetError
    from pcbforge.evaluate.untile import UntileParams, report_path, untile_predictions

    try:
        params = UntileParams(merge_iou=merge_iou, seam_px=seam_px, seam_overlap=seam_overlap)
    except ValidationError as err:
        fail(validation_message(err))
    try:
        report = untile_predictions(dataset, predictions, fmt, out, coco_gt=coco_gt,
                                    params=params)
    except (DatasetError, ValueError) as err:
        fail(err)
    Console().print(
        f"untile: {report['tile_predictions']} tile predictions -> "
        f"{report['panel_predictions']} panel predictions on {report['panels']} "
        f"panel{'' if report['panels'] == 1 else 's'} "
        f"({report['merged_duplicates']} merged duplicates, {report['seam_joins']} seam "
        f"joins, {report['merged_both_ways']} both, {report['unmerged']} from one tile) | "
        f"wrote {report['out']} | report: {report_path(report['out'])}", soft_wrap=True)
