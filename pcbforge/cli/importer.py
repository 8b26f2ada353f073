"""``pcbforge import FORMAT SRC --out DATASET``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

from pcbforge.cli._util import (
    EngineOption,
    SchedulerOption,
    engine_options,
    fail,
    validation_message,
)
from pcbforge.cli.curate import print_summary
from pcbforge.core.files import DEFAULT_MAX_FILE_BYTES
from pcbforge.curate import CurateError, CurateParams
from pcbforge.curate.inspect import InspectParams
from pcbforge.curate.runner import WORKER_MODULES
from pcbforge.engine import EngineKind, default_workers

import_app = typer.Typer(no_args_is_help=True, help="Import labelled datasets (runs curation).")

_MB = 1 << 20
#: ``--allow-outside-root``: shared by every import command.
AllowOutsideOption = Annotated[bool, typer.Option(
    "--allow-outside-root",
    help="Accept image paths in the label files that lead outside the dataset folder ('..', "
         "absolute paths, links leading out); default: refuse them, naming file and line.")]
#: ``--max-file-mb``: shared by every import command.
MaxFileOption = Annotated[int, typer.Option(
    "--max-file-mb", min=1,
    help="Files above this many MB are recorded as too_large without being read.")]


def _curate_params(workers: int, max_file_mb: int) -> CurateParams:
    try:
        return CurateParams(workers=workers or default_workers(),
                            inspect=InspectParams(max_file_bytes=max_file_mb * _MB))
    except ValidationError as err:
        fail(validation_message(err))


@import_app.command("deeppcb", no_args_is_help=True)
def import_deeppcb_command(
    src: Annotated[Path, typer.Argument(help="Folder in DeepPCB layout (groupN/N/X_test.jpg).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Dataset folder to write.")],
    workers: Annotated[
        int, typer.Option(help="Worker processes (default: all cores, at most 8).")
    ] = 0,
    engine: EngineOption = EngineKind.local,
    scheduler: SchedulerOption = None,
    allow_outside_root: AllowOutsideOption = False,
    max_file_mb: MaxFileOption = DEFAULT_MAX_FILE_BYTES // _MB,
) -> None:
    """Import DeepPCB: tested images with templates, boards, lists and defect boxes."""
    from pcbforge.pipeline import import_deeppcb

    errors = Console(stderr=True)
    params = _curate_params(workers, max_file_mb)
    with engine_options(engine, params.workers, scheduler, WORKER_MODULES) as run:
        try:
            result = import_deeppcb(src, out, params, progress=True, engine=run,
                                    allow_outside_root=allow_outside_root)
        except (CurateError, FileNotFoundError, ValueError) as err:
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
                     scheduler: str | None = None, *, allow_outside_root: bool = False,
                     max_file_mb: int = DEFAULT_MAX_FILE_BYTES // _MB) -> None:
    from pcbforge.datasets.dataset import DatasetError
    from pcbforge.pipeline import import_labelled

    params = _curate_params(workers, max_file_mb)
    with engine_options(engine, params.workers, scheduler, WORKER_MODULES) as run:
        try:
            result = import_labelled(
                fmt, src, out, params, images=images,
                missing_labels="empty" if missing else "error", progress=True, engine=run,
                allow_outside_root=allow_outside_root,
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
    allow_outside_root: AllowOutsideOption = False,
    max_file_mb: MaxFileOption = DEFAULT_MAX_FILE_BYTES // _MB,
) -> None:
    """Import COCO detection labels (boxes) with curation of every image."""
    _import_labelled("coco", src, out, workers, False, images, engine, scheduler,
                     allow_outside_root=allow_outside_root, max_file_mb=max_file_mb)


@import_app.command("yolo", no_args_is_help=True)
def import_yolo_command(
    src: Annotated[Path, typer.Argument(help=_SRC_HELP["yolo"])],
    out: Annotated[Path, typer.Option("--out", "-o", help="Dataset folder to write.")],
    allow_missing_labels: Annotated[bool, _MISSING_LABELS] = False,
    workers: Annotated[int, _WORKERS] = 0,
    engine: EngineOption = EngineKind.local,
    scheduler: SchedulerOption = None,
    allow_outside_root: AllowOutsideOption = False,
    max_file_mb: MaxFileOption = DEFAULT_MAX_FILE_BYTES // _MB,
) -> None:
    """Import a YOLO (Ultralytics) detection folder, every split its data.yaml names."""
    _import_labelled("yolo", src, out, workers, allow_missing_labels, None, engine, scheduler,
                     allow_outside_root=allow_outside_root, max_file_mb=max_file_mb)


@import_app.command("voc", no_args_is_help=True)
def import_voc_command(
    src: Annotated[Path, typer.Argument(help=_SRC_HELP["voc"])],
    out: Annotated[Path, typer.Option("--out", "-o", help="Dataset folder to write.")],
    allow_missing_labels: Annotated[bool, _MISSING_LABELS] = False,
    workers: Annotated[int, _WORKERS] = 0,
    engine: EngineOption = EngineKind.local,
    scheduler: SchedulerOption = None,
    allow_outside_root: AllowOutsideOption = False,
    max_file_mb: MaxFileOption = DEFAULT_MAX_FILE_BYTES // _MB,
) -> None:
    """Import Pascal VOC XML annotations."""
    _import_labelled("voc", src, out, workers, allow_missing_labels, None, engine, scheduler,
                     allow_outside_root=allow_outside_root, max_file_mb=max_file_mb)
