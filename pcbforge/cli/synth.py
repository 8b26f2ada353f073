"""``pcbforge synth ...``: generated data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from pcbforge.cli._util import fail

synth_app = typer.Typer(no_args_is_help=True, help="Generate boards, defects and test corpora.")


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
