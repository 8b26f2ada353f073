"""``pcbforge build [RECIPE] --out DATASET [--workers N] [--engine dask]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pcbforge.cli._util import EngineOption, SchedulerOption, WorkersOption, fail, workers_of
from pcbforge.engine import EngineError, EngineKind


def build_command(
    recipe: Annotated[Path | None, typer.Argument(
        help="Recipe YAML (see README: recipe reference); none: the embedded default "
             "(procedural boards, synthetic defects).", dir_okay=False)] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Build folder (the dataset).")
                   ] = None,
    workers: WorkersOption = 0,
    show_recipe: Annotated[bool, typer.Option(
        "--show-recipe", help="Print the recipe with every default filled in, and exit.")
    ] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
    engine: EngineOption = EngineKind.local,
    scheduler: SchedulerOption = None,
) -> None:
    """Run the whole pipeline from one recipe: sources -> synth -> curate -> split ->
    audit -> qa -> export -> report. Re-running skips the stages whose inputs did not change.
    Every stage runs on one engine, opened once for the run."""
    from pcbforge.core.errors import storage_error
    from pcbforge.pipeline import BuildError, build
    from pcbforge.pipeline.recipe import RecipeError, load_recipe, recipe_yaml

    try:
        loaded = load_recipe(recipe)
    except RecipeError as err:
        fail(err)
    if show_recipe:
        typer.echo(recipe_yaml(loaded), nl=False)
        return
    if out is None:
        fail("give --out DATASET (the build folder)")
    console = Console()
    where = recipe if recipe is not None else "the embedded default recipe"
    console.print(f"build [bold]{loaded.name}[/] from {where} into {out}")

    def on_stage(number: int, stage, event: str, result) -> None:
        head = f"[{number}/{total}] {stage.title}"
        if event == "skip":
            console.print(f"{head}: [dim]skipped (inputs unchanged)[/]")
        elif event == "start":
            console.print(f"{head} ...")
        else:
            console.print(f"{head}: done in {result.seconds:.1f} s ({_line(result.summary)})")

    from pcbforge.pipeline.stages import plan

    total = len(plan(loaded))
    try:
        result = build(out, loaded, workers=workers_of(workers), progress=not quiet,
                       console=console,
                       on_stage=on_stage, engine=engine.value, scheduler=scheduler)
    except (BuildError, RecipeError, EngineError, ValueError) as err:
        if storage_error(err) is not None:
            raise  # disk full, read-only...: one line and exit 74 (cli._util.guarded)
        fail(err)
    print_summary(result, console)
    audit = result.report.get("audit") or {}
    if audit.get("clean") is False and loaded.audit.require_clean:
        console.print("[bold red]the audit found leaks[/] (audit.require_clean: true)")
        raise typer.Exit(code=3)


def _line(summary: dict) -> str:
    parts = []
    for key, value in summary.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        elif isinstance(value, list):
            value = "/".join(f"{v:.0f}" for v in value)
        elif value is None:
            continue
        parts.append(f"{key} {value}")
    return "; ".join(parts)


def print_summary(result, console: Console) -> None:
    table = Table(title=f"build: {result.out}")
    for column in ("stage", "run", "seconds", "result"):
        table.add_column(column, justify="right" if column == "seconds" else "left")
    for stage in result.stages:
        table.add_row(stage.name, "ran" if stage.ran else "skipped",
                      f"{stage.seconds:.1f}" if stage.ran else "-", _line(stage.summary))
    console.print(table)
    report = result.report
    if report:
        splits = Table(title="ok images and defect boxes per split (real + synthetic)")
        for column in ("split", "images", "boxes", *report["classes"]):
            splits.add_column(column, justify="left" if column == "split" else "right")
        for name, part in report["splits"].items():
            boxes = part["boxes"]
            splits.add_row(
                name, f"{part['images']['real']} + {part['images']['synthetic']}",
                str(sum(b["real"] + b["synthetic"] for b in boxes.values())),
                *[f"{boxes[c]['real']} + {boxes[c]['synthetic']}" for c in report["classes"]])
        console.print(splits)
        policy = report.get("synthetic_policy") or {}
        if policy:
            console.print(f"synthetic images: {policy['note']}")
        audit = report.get("audit") or {}
        if audit:
            verdict = ("[green]clean[/]" if audit["clean"] else
                       f"[red]{audit['leaks']} leaks[/] {audit['leaks_by_reason']}")
            console.print(f"audit: {verdict} ({audit['images_checked']} images checked)")
        for fmt, export in report.get("exports", {}).items():
            console.print(f"export {fmt}: {result.out / export['folder']}")
    console.print(f"report: {result.out / 'report.html'}")
    console.print(f"open it in FiftyOne: pcbforge view {result.out}")
