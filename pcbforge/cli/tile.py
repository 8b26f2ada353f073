"""``pcbforge tile SRC --size 640 --overlap 64 --out DS``: whole panels cut into training
tiles, as a dataset whose tiles keep their panel's group, split and template pair."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

from pcbforge.cli._util import (
    EngineOption,
    SchedulerOption,
    WorkersOption,
    engine_line,
    engine_options,
    fail,
    validation_message,
    workers_of,
)
from pcbforge.datasets.tiling import TileImageFormat
from pcbforge.engine import EngineKind


def tile_command(
    src: Annotated[Path, typer.Argument(help="A pcbforge dataset folder of panels.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Dataset folder to write.")],
    size: Annotated[int, typer.Option(help="Tile side in px.")] = 640,
    overlap: Annotated[int, typer.Option(help="Px shared by neighbouring tiles.")] = 64,
    min_visible: Annotated[float, typer.Option(
        help="Share of a box's area a tile must hold to keep it (a box no tile holds that "
             "well goes to the tile holding most of it).")] = 0.5,
    image_format: Annotated[TileImageFormat, typer.Option(
        "--image-format", help="png: lossless PNG; source: the panel's format where it is "
                               "lossless (PNG, BMP, TIFF), PNG otherwise.")] = (
        TileImageFormat.png),
    carry: Annotated[list[str] | None, typer.Option(
        "--carry", help="A further panel column every tile keeps (lot, session...); "
                        "repeat for several.")] = None,
    workers: WorkersOption = 0,
    engine: EngineOption = EngineKind.local,
    scheduler: SchedulerOption = None,
) -> None:
    """Cut every usable image, its boxes, masks and template into tiles; a panel's tiles
    share its leakage group and split, and record the panel and their offset."""
    from pcbforge.datasets.dataset import DatasetError
    from pcbforge.datasets.tiling import WORKER_MODULES, TileError, TileParams, tile_dataset

    workers = workers_of(workers)
    try:
        params = TileParams(size=size, overlap=overlap, min_visible=min_visible,
                            image_format=image_format, carry=tuple(carry or ()))
    except ValidationError as err:
        fail(validation_message(err))
    with engine_options(engine, workers, scheduler, WORKER_MODULES) as run:
        try:
            report = tile_dataset(src, out, params, workers=workers, progress=True,
                                  engine=run)
        except (TileError, DatasetError) as err:
            fail(err)
    print_tile_summary(report, Console())


def print_tile_summary(report: dict, console: Console) -> None:
    boxes, templates = report["boxes"], report["templates"]
    console.print(f"tiled {report['panels_tiled']} of {report['panels']} panels into "
                  f"{report['tiles']} tiles ({report['parameters']['size']} px, overlap "
                  f"{report['parameters']['overlap']}); "
                  f"{sum(report['panels_skipped_by_status'].values())} unusable samples left "
                  f"out", soft_wrap=True)
    console.print(f"boxes: {boxes['panel_boxes']} on the panels -> {boxes['tile_boxes']} on "
                  f"the tiles ({boxes['truncated']} truncated, "
                  f"{boxes['pieces_dropped_below_min_visible']} pieces below --min-visible "
                  f"left out, {boxes['kept_below_min_visible']} kept below it); masks cut "
                  f"{report['masks']['cut']}", soft_wrap=True)
    if templates["tiles_paired"] or templates["tiles_without_their_template"]:
        console.print(f"templates: {templates['tiles_paired']} tiles paired, "
                      f"{templates['tiles_without_their_template']} without their template",
                      soft_wrap=True)
    for failure in report["panels_failed"][:5]:
        console.print(f"[yellow]failed:[/] {failure['path']}: {failure['reason']} "
                      f"({failure['detail']})", soft_wrap=True)
    console.print(f"{engine_line(report.get('engine'))} | report: "
                  f"{report['dataset']}/tile_report.json", soft_wrap=True)
