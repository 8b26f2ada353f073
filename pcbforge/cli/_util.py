"""Helpers shared by the CLI commands."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console


def fail(message: object) -> NoReturn:
    """Print one clear error line on stderr (never wrapped) and exit with code 2."""
    Console(stderr=True).print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(code=2)
