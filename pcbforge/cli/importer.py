"""``pcbforge import FORMAT SRC --out DATASET``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from pcbforge.cli._util import EngineOption, SchedulerOption, engine_options, fail
from pcbforge.cli.curate import print_summary
from pcbforge.curate import CurateError, CurateParams
from pcbforge.curate.runner import WORKER_MODULES
from pcbforge.engine import EngineKind, default_workers

import_app = typer.Typer(no_args_is_help=True, help="Import labelled datasets (runs curation).")


@import_app.command("deeppcb", no_args_is_help=True)
def import_deeppcb_command(
    src: Annotated[Path, typer.Argument(help="Folder in DeepPCB layout (groupN/N/X_test.jpg).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Dataset folder to write.")],
    workers: Annotated[
        int, typer.Option(help="Worker processes (default: all cores, at most 8).")
    ] = 0,
    engine: EngineOption = EngineKind.local,
    scheduler: SchedulerOption = None,
) -> None:
    """Import DeepPCB: tested images with templates, boards, lists and defect boxes."""
    from pcbforge.pipeline import import_deeppcb

    errors = Console(stderr=True)
    params = CurateParams(workers=workers or default_workers())
    with engine_options(engine, params.workers, scheduler, WORKER_MODULES) as run:
        try:
            result = import_deeppcb(src, out, params, progress=True, engine=run)
        except (CurateError, FileNotFoundError) as err:
            fail(err)
    console = Console()
    for problem in result.problems:
        errors.print(f"[yellow]problem:[/] {problem}", soft_wrap=True)
    print_summary(result.report, console)
    report = result.report
    console.print(
        f"DeepPCB: {report['tested_images']} tested images, {report['templates']} templates, "
        f"{report['boards']} boards, {report['labels']} boxes ({_per_class(report)}); "
        f"{len(result.problems)} layout problems (their images are skipped)"
    )


def _per_class(report: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(report["labels_per_class"].items()))


_MISSING_LABELS = typer.Option(
    "--allow-missing-labels",
    help="Read an image without a label file as an image with no defects (default: error).",
)


def _import_labelled(fmt: str, src: Path, out: Path, workers: int, missing: bool,
                     images: Path | None = None, engine: EngineKind = EngineKind.local,
                     scheduler: str | None = None) -> None:
    from pcbforge.datasets.dataset import DatasetError
    from pcbforge.pipeline import import_labelled

    params = CurateParams(workers=workers or default_workers())
    with engine_options(engine, params.workers, scheduler, WORKER_MODULES) as run:
        try:
            result = import_labelled(
                fmt, src, out, params, images=images,
                missing_labels="empty" if missing else "error", progress=True, engine=run,
            )
        except (CurateError, DatasetError, FileNotFoundError, ValueError) as err:
            fail(err)
    console = Console()
    print_summary(result.report, console)
    report = result.report
    splits = ", ".join(f"{k} {v}" for k, v in report["splits"].items())
    console.print(
        f"{fmt}: {report['annotated_images']} annotated images ({splits}), {report['labels']} "
        f"boxes ({_per_class(report)}); {report['images_not_in_annotations']} images under "
        f"{result.dataset.info.image_root} not in the annotations (skipped)"
    )


_SRC_HELP = {
    "coco": "COCO instances JSON, or a folder holding one (or split folders each holding one).",
    "yolo": "YOLO folder with data.yaml, images/<split>/ and labels/<split>/.",
    "voc": "VOC folder with Annotations/ and JPEGImages/ (or split folders each holding one).",
}
_WORKERS = typer.Option(help="Worker processes (default: all cores, at most 8).")


@import_app.command("coco", no_args_is_help=True)
def import_coco_command(
    src: Annotated[Path, typer.Argument(help=_SRC_HELP["coco"])],
    out: Annotated[Path, typer.Option("--out", "-o", help="Dataset folder to write.")],
    images: Annotated[Path | None, typer.Option(
        help="Folder the JSON's file_name values are relative to (default: images/ or data/ "
             "beside the JSON, else its folder).")] = None,
    workers: Annotated[int, _WORKERS] = 0,
    engine: EngineOption = EngineKind.local,
    scheduler: SchedulerOption = None,
) -> None:
    """Import COCO detection labels (boxes) with curation of every image."""
    _import_labelled("coco", src, out, workers, False, images, engine, scheduler)


@import_app.command("yolo", no_args_is_help=True)
def import_yolo_command(
    src: Annotated[Path, typer.Argument(help=_SRC_HELP["yolo"])],
    out: Annotated[Path, typer.Option("--out", "-o", help="Dataset folder to write.")],
    allow_missing_labels: Annotated[bool, _MISSING_LABELS] = False,
    workers: Annotated[int, _WORKERS] = 0,
    engine: EngineOption = EngineKind.local,
    scheduler: SchedulerOption = None,
) -> None:
    """Import a YOLO (Ultralytics) detection folder, every split its data.yaml names."""
    _import_labelled("yolo", src, out, workers, allow_missing_labels, None, engine, scheduler)


@import_app.command("voc", no_args_is_help=True)
def import_voc_command(
    src: Annotated[Path, typer.Argument(help=_SRC_HELP["voc"])],
    out: Annotated[Path, typer.Option("--out", "-o", help="Dataset folder to write.")],
    allow_missing_labels: Annotated[bool, _MISSING_LABELS] = False,
    workers: Annotated[int, _WORKERS] = 0,
    engine: EngineOption = EngineKind.local,
    scheduler: SchedulerOption = None,
) -> None:
    """Import Pascal VOC XML annotations."""
    _import_labelled("voc", src, out, workers, allow_missing_labels, None, engine, scheduler)
