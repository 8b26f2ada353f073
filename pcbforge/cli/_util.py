"""Helpers shared by the CLI commands."""

from __future__ import annotations

from typing import NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console


def fail(message: object) -> NoReturn:
    """Print one clear error line on stderr (never wrapped) and exit with code 2."""
    Console(stderr=True).print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(code=2)


def validation_message(err: ValidationError) -> str:
    """One line for the first problem of a pydantic model built from CLI options."""
    first = err.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"invalid option {where}: {first['msg']} (got {first.get('input')!r})"
