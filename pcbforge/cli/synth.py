"""``pcbforge synth defects|boards|messy``: defects on good boards, procedural boards, messy
test corpora.

``pcbforge synth --boards SRC ...`` (the form before ``defects`` existed) still runs
``synth defects`` and says so in one line on stderr."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import click
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from pcbforge.cli._util import (
    EngineOption,
    SchedulerOption,
    TidyGroup,
    WorkersOption,
    counted,
    engine_line,
    engine_options,
    fail,
    validation_message,
    workers_of,
)
from pcbforge.engine import EngineKind


class BoardStyle(str, Enum):
    binary = "binary"
    colour = "colour"


class MaskColour(str, Enum):
    green = "green"
    blue = "blue"
    red = "red"
    black = "black"
    white = "white"
    any = "any"


class Finish(str, Enum):
    enig = "enig"
    hasl = "hasl"
    copper = "copper"
    any = "any"


#: The sub-command that ``pcbforge synth --boards ...`` (no sub-command) still runs.
LEGACY_COMMAND = "defects"


class SynthGroup(TidyGroup):
    """``synth``'s sub-commands; options straight after ``synth`` (the old form of
    ``synth defects``) go to ``synth defects``, with a one-line note."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0].startswith("-") and args[0] not in ctx.help_option_names:
            Console(stderr=True).print(
                f"note: `pcbforge synth {args[0]} ...` is now `pcbforge synth {LEGACY_COMMAND} "
                f"{args[0]} ...`; the old form will be removed", soft_wrap=True,
                highlight=False, markup=False)
            args = [LEGACY_COMMAND, *args]
        return super().parse_args(ctx, args)


synth_app = typer.Typer(
    cls=SynthGroup,
    no_args_is_help=True,
    help="Synthetic data: `defects` drawn on good boards (labelled exactly), procedural "
         "`boards`, `messy` test folders.",
)


def _pair(text: str, option: str, sep: str, example: str) -> tuple[int, int]:
    """``N`` or ``MIN{sep}MAX`` as a pair of ints; a clear error otherwise."""
    try:
        parts = [int(v) for v in text.split(sep)]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2:
        fail(f"{option} must be N or MIN{sep}MAX (e.g. {example}), got {text!r}")
    return parts[0], parts[1]


def _density(text: str) -> tuple[float, float]:
    """``--defects-per-mp``: ``D`` or ``MIN,MAX`` as a pair of floats; a clear error
    otherwise (the config checks the values)."""
    try:
        parts = [float(v) for v in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2:
        fail(f"--defects-per-mp must be D or MIN,MAX defects per megapixel (e.g. 7.3,29.3), "
             f"got {text!r}")
    return parts[0], parts[1]


@synth_app.command(LEGACY_COMMAND, no_args_is_help=True)
def defects_command(
    boards: Annotated[Path, typer.Option(
        help="Good boards: a folder of images, or a pcbforge dataset (its templates, or its "
             "ok unlabelled images).", exists=True, file_okay=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Dataset folder to write.")],
    count: Annotated[int, typer.Option(help="Defective images to make.")] = 100,
    defects_per_image: Annotated[str | None, typer.Option(
        help="N or MIN-MAX defects per image (default 3-12).")] = None,
    defects_per_mp: Annotated[str | None, typer.Option(
        help="Defects per megapixel instead, D or MIN,MAX: round(D x the image's MP) per "
             "image, within 1-255 (7.3,29.3 asks 3-12 of a 640x640 tile); not with "
             "--defects-per-image.")] = None,
    classes: Annotated[str, typer.Option(
        help="Comma-separated classes: open, short, mousebite, spur, copper, pin-hole.")] = (
        "open,short,mousebite,spur,copper,pin-hole"),
    seed: Annotated[int, typer.Option(help="Same seed, same bytes.")] = 0,
    workers: WorkersOption = 0,
    engine: EngineOption = EngineKind.local,
    scheduler: SchedulerOption = None,
    px_per_mm: Annotated[float | None, typer.Option(
        help="Board resolution; defect sizes scale with it (default: the dataset's, else "
             "48, DeepPCB's).")] = None,
    box: Annotated[str, typer.Option(
        help="padded: defect plus DeepPCB's 10 px margin; tight: the defect's extent.")] = (
        "padded"),
    copper: Annotated[str, typer.Option(help="dark: copper darker than substrate (DeepPCB); "
                                             "light: the opposite.")] = "dark",
    nuisance: Annotated[bool, typer.Option(
        help="Acquisition nuisance (misregistration, rough edges, JPEG) in tested images.")
    ] = True,
    background: Annotated[bool, typer.Option(
        help="Background nuisance: thick non-defect changes (a feature displaced locally, "
             "specks, broken edges), recorded per image in nuisance_regions.")] = True,
    defect_free_share: Annotated[float, typer.Option(
        help="Share of tested images with no defect (template plus nuisance, no labels).")
    ] = 0.1,
    brush: Annotated[bool, typer.Option(
        help="Brush styles: a share of each class drawn as stamped cross-brush hatching or "
             "a stamped outline, as many real defects are; --no-brush: all solid.")] = True,
    painted: Annotated[bool, typer.Option(
        "--painted/--scanned",
        help="Binary boards: paint defects pixel-exact on the scanned image (as DeepPCB's "
             "were drawn), or draw them before the scan so they get its blur.")] = True,
    augment: Annotated[str | None, typer.Option(
        help="albumentations preset for the pair: light, geometric, or a YAML file.")] = None,
    etch_px: Annotated[str, typer.Option(
        help="Etch variation: grow each board's copper by N px, or by MIN,MAX drawn per "
             "image (negative shrinks it); the etched board is that image's template.")
    ] = "0",
    image_format: Annotated[str, typer.Option("--format", help="png or jpg.")] = "png",
    balance: Annotated[str, typer.Option(
        help="uniform: every class alike; from-evaluation: each class in proportion to what "
             "a model misses in --evaluation (1 - recall, relative to the class missed "
             "most, at least 0.1).")] = "uniform",
    evaluation: Annotated[Path | None, typer.Option(
        help="With --balance from-evaluation: an evaluation folder, DATASET/evaluations/"
             "NAME, as `pcbforge evaluate` writes it.")] = None,
) -> None:
    """Draw defects on good boards and label them exactly (boxes, masks, params)."""
    from pcbforge.datasets.dataset import DatasetError
    from pcbforge.synth.brush import NO_BRUSH
    from pcbforge.synth.compose import SynthConfig
    from pcbforge.synth.pipeline import WORKER_MODULES, SynthError, source_px_per_mm, synthesize

    workers = workers_of(workers)
    if defects_per_image is not None and defects_per_mp is not None:
        fail("give --defects-per-image or --defects-per-mp, not both")
    if defects_per_mp is not None:
        how_many = {"defects_per_mp": _density(defects_per_mp)}
    else:
        how_many = {"defects_per_image": _pair(defects_per_image or "3-12",
                                               "--defects-per-image", "-", "3-12")}
    if balance not in ("uniform", "from-evaluation"):
        fail(f"--balance: expected uniform or from-evaluation, got {balance!r}")
    if (balance == "from-evaluation") != (evaluation is not None):
        fail("--balance from-evaluation and --evaluation EVAL go together")
    try:
        dataset_px = source_px_per_mm(boards)
        config = SynthConfig.model_validate({
            "classes": classes,
            **how_many,
            "px_per_mm": px_per_mm or dataset_px or 48.0, "box": box, "copper": copper,
            "nuisance": {"enabled": nuisance}, "augment": {"preset": augment},
            "background": {"enabled": background}, "defect_free_share": defect_free_share,
            "painted_defects": painted, **({} if brush else {"brush": NO_BRUSH}),
            "etch_px": _pair(etch_px, "--etch-px", ",", "0,1"),
        })
        if evaluation is not None:
            from pcbforge.evaluate.targets import read_for_balance, weights_from_evaluation

            metrics, note = read_for_balance(evaluation)
            config = config.model_copy(update={
                "class_weights": tuple(weights_from_evaluation(metrics, config.classes)),
                "balance": note})
            config = SynthConfig.model_validate(config.model_dump())
    except ValidationError as err:
        fail(validation_message(err))
    except (SynthError, DatasetError, ValueError) as err:
        fail(err)
    with engine_options(engine, workers, scheduler, WORKER_MODULES) as run:
        try:
            report = synthesize(boards, out, count=count, seed=seed, config=config,
                                workers=workers, image_format=image_format, engine=run)
        except (SynthError, DatasetError, ValueError) as err:
            fail(err)
    print_synth_summary(report, Console())


def print_synth_summary(report: dict, console: Console) -> None:
    table = Table(title=f"synth: {report['images']} images from {report['boards_used']} boards")
    for column in ("class", "defects", "dropped"):
        table.add_column(column, justify="left" if column == "class" else "right")
    names = sorted(set(report["defects"]) | set(report["dropped"]))
    for name in names:
        table.add_row(name, str(report["defects"].get(name, 0)),
                      str(report["dropped"].get(name, 0)))
    table.add_row("total", str(report["defects_total"]), str(sum(report["dropped"].values())))
    console.print(table)
    console.print(f"{report.get('defect_free_images', 0)} defect-free images; "
                  f"{report.get('nuisance_regions', 0)} background nuisance regions")
    console.print(f"{report['redrawn']} redrawn spots; {len(report['failed_images'])} boards "
                  f"could not be used; {report['images_per_second']} images/s")
    for failure in report["failed_images"][:5]:
        console.print(f"[yellow]failed:[/] image {failure['index']} from {failure['board']}: "
                      f"{failure['reason']}")
    console.print(f"{engine_line(report.get('engine'))} | report: "
                  f"{report['dataset']}/synth_report.json")


@synth_app.command("boards", no_args_is_help=True)
def boards_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the boards into.")],
    count: Annotated[int, typer.Option(help="Boards to draw.")] = 20,
    seed: Annotated[int, typer.Option(help="Same seed, same bytes.")] = 0,
    size: Annotated[int, typer.Option(help="Tile side in px.")] = 640,
    workers: WorkersOption = 0,
    style: Annotated[BoardStyle, typer.Option(
        help="binary: DeepPCB-like binarized tiles; colour: the same copper as a colour "
             "photograph (solder mask, covered traces, pad finish, silkscreen, holes, "
             "lighting, noise), its layout kept in the PNG.")] = BoardStyle.binary,
    mask: Annotated[MaskColour, typer.Option(
        help="Colour boards: solder mask colour, or any (drawn per board, mostly green).")
    ] = MaskColour.green,
    finish: Annotated[Finish, typer.Option(
        help="Colour boards: finish of exposed copper (enig: gold, hasl: silver, copper: "
             "bare), or any (drawn per board).")] = Finish.any,
) -> None:
    """Draw defect-free procedural boards (binarized DeepPCB-like tiles, or colour)."""
    from pcbforge.synth.pipeline import SynthError, write_boards

    try:
        names = write_boards(out, count=count, seed=seed, size=size,
                             workers=workers_of(workers), style=style.value, mask=mask.value,
                             finish=finish.value)
    except SynthError as err:
        fail(err)
    what = "PNG" if style is BoardStyle.binary else (
        f"colour PNG, {mask.value} mask, {finish.value} finish")
    Console().print(f"wrote {counted(len(names), 'board')} ({size}x{size} {what}) to {out}")


@synth_app.command("messy", no_args_is_help=True)
def messy_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to create (must be new).")],
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same bytes.")] = 0,
    boards: Annotated[int, typer.Option(help="Procedural boards to start from.")] = 6,
    photos: Annotated[int, typer.Option(help="Photo-like images to start from.")] = 3,
) -> None:
    """Write a messy image folder (copies, re-encodes, broken files) to try curate on."""
    from pcbforge.synth.messy import make_messy_corpus

    console = Console()
    try:
        manifest = make_messy_corpus(out, seed=seed, n_boards=boards, n_photos=photos)
    except ValueError as err:
        fail(err)
    counts = manifest["expected_status"].value_counts().to_dict()
    console.print(f"wrote {len(manifest)} files to {out}: " +
                  ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
