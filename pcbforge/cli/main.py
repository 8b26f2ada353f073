"""The ``pcbforge`` command: a thin typer shell over the Python API."""

from __future__ import annotations

import typer

from pcbforge import __version__
from pcbforge.cli._util import guard_commands, tidy_help
from pcbforge.cli.audit import audit_command
from pcbforge.cli.build import build_command
from pcbforge.cli.classes import classes_command
from pcbforge.cli.curate import curate_command
from pcbforge.cli.doctor import doctor_command
from pcbforge.cli.evaluate import evaluate_command
from pcbforge.cli.export import export_command
from pcbforge.cli.importer import import_app
from pcbforge.cli.mine import mine_command
from pcbforge.cli.qa import qa_command
from pcbforge.cli.report import report_command
from pcbforge.cli.split import split_command
from pcbforge.cli.synth import synth_app
from pcbforge.cli.tile import tile_command
from pcbforge.cli.untile import untile_command
from pcbforge.cli.view import view_command
from pcbforge.env import apply_offline_defaults

app = typer.Typer(
    name="pcbforge",
    help="Clean, leakage-free, well-labelled PCB inspection datasets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("build")(build_command)
app.command("curate", no_args_is_help=True)(curate_command)
app.command("split", no_args_is_help=True)(split_command)
app.command("audit", no_args_is_help=True)(audit_command)
app.command("classes", no_args_is_help=True)(classes_command)
app.command("qa", no_args_is_help=True)(qa_command)
app.command("evaluate", no_args_is_help=True)(evaluate_command)
app.command("mine", no_args_is_help=True)(mine_command)
app.command("tile", no_args_is_help=True)(tile_command)
app.command("untile", no_args_is_help=True)(untile_command)
app.command("export", no_args_is_help=True)(export_command)
app.command("view", no_args_is_help=True)(view_command)
app.command("report", no_args_is_help=True)(report_command)
app.command("doctor")(doctor_command)
app.add_typer(import_app, name="import")
app.add_typer(synth_app, name="synth")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pcbforge {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    apply_offline_defaults()


tidy_help(app)
guard_commands(app)


def main() -> None:
    app()
