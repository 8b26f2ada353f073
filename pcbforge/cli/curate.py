"""``pcbforge curate SRC --out DATASET``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

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
from pcbforge.core.files import DEFAULT_MAX_FILE_BYTES
from pcbforge.curate.dedupe import DedupeParams
from pcbforge.curate.inspect import InspectParams
from pcbforge.curate.quality import CHECKS, QualityThresholds
from pcbforge.curate.runner import WORKER_MODULES, CurateError, CurateParams, curate
from pcbforge.engine import EngineKind


class Materialize(str, Enum):
    none = "none"
    copy = "copy"
    link = "link"


def with_check_options(command: Callable) -> Callable:
    """Give ``command`` one ``--<threshold>`` option per registered quality check (its
    help from the check, its type and default from :class:`QualityThresholds`), passed in
    its ``**thresholds``: typer reads the signature, so a new check needs no edit here."""
    signature = inspect.signature(command, eval_str=True)
    fields = QualityThresholds.model_fields
    options = [
        inspect.Parameter(
            check.threshold,
            inspect.Parameter.KEYWORD_ONLY,
            annotation=Annotated[fields[check.threshold].annotation,
                                 typer.Option(help=check.help)],
            default=fields[check.threshold].default,
        )
        for check in CHECKS.values()
    ]
    named = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    command.__signature__ = signature.replace(parameters=named + options)
    return command


@with_check_options
def curate_command(
    src: Annotated[
        Path, typer.Argument(help="Folder of images to scan (only read, never changed).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Dataset folder to write.")],
    workers: WorkersOption = 0,
    engine: EngineOption = EngineKind.local,
    scheduler: SchedulerOption = None,
    copy_kept: Annotated[
        bool, typer.Option("--copy-kept", help="Copy the kept (ok) images to DATASET/images.")
    ] = False,
    link_kept: Annotated[
        bool, typer.Option("--link-kept", help="Symlink the kept images into DATASET/images.")
    ] = False,
    transformed: Annotated[
        bool,
        typer.Option(
            "--transformed/--no-transformed",
            help="Also find rotated (90/180/270) and mirrored copies.",
        ),
    ] = True,
    max_distance: Annotated[
        int, typer.Option(help="pHash Hamming radius for duplicate candidates (of 64 bits).")
    ] = 12,
    max_pixels: Annotated[
        int, typer.Option(help="Refuse images declaring more pixels (decompression bombs).")
    ] = 400_000_000,
    max_file_mb: Annotated[
        int, typer.Option("--max-file-mb", help="Files above this many MB are not read "
                          "(corrupt/too_large).")
    ] = DEFAULT_MAX_FILE_BYTES >> 20,
    **thresholds: float,
) -> None:
    """Find corrupt, low-quality and duplicate images; write DATASET/samples.parquet."""
    if copy_kept and link_kept:
        fail("choose one of --copy-kept and --link-kept")
    if max_file_mb < 1:
        fail(f"--max-file-mb: expected a whole number of MB, at least 1; got {max_file_mb}")
    try:
        params = CurateParams(
            workers=workers_of(workers),
            inspect=InspectParams(
                max_pixels=max_pixels,
                max_file_bytes=max_file_mb << 20,
                transformed=transformed,
                quality=QualityThresholds(**thresholds),
            ),
            dedupe=DedupeParams(max_distance=max_distance, transformed=transformed),
            materialize="copy" if copy_kept else "link" if link_kept else "none",
        )
    except ValidationError as err:
        fail(validation_message(err))
    with engine_options(engine, params.workers, scheduler, WORKER_MODULES) as run:
        try:
            result = curate(src, out, params, progress=True, engine=run)
        except CurateError as err:
            fail(str(err))
    print_summary(result.report, Console())


def print_summary(report: dict, console: Console) -> None:
    table = Table(title=f"curate: {report['files']} files -> {report['dataset']}")
    table.add_column("status")
    table.add_column("files", justify="right")
    table.add_column("reasons")
    for status, count in report["counts"].items():
        reasons = ", ".join(
            f"{key.split('/', 1)[1]} {value}"
            for key, value in report["reasons"].items()
            if key.startswith(status + "/")
        )
        table.add_row(status, str(count), reasons)
    console.print(table)
    search = report["duplicate_search"]
    console.print(
        f"groups: {report['groups']} ({report['groups_with_several_images']} with several images)"
        f" | candidate pairs {search['candidate_pairs']}, verified duplicates "
        f"{search['duplicate_pairs_verified']}, defect variants {search['variant_pairs_verified']}"
        f", rejected by pixels {search['pairs_rejected_by_pixels']}"
    )
    if search.get("occupancy_unsearched_images"):
        console.print(
            f"[yellow]note:[/] {search['occupancy_unsearched_images']} images with look-alike "
            "block occupancy (dense tiles of one product) were matched by their pHash only",
            soft_wrap=True)
    console.print(
        f"{report['images_per_second']} images/s in {report['timings']['total_s']} s | "
        f"{engine_line(report.get('engine'))} | report: {report['dataset']}/report.json"
    )
