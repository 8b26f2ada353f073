"""The help every command prints: flags without a type, arguments by their upper-case name,
and one meaning of ``--workers``."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from pcbforge.cli.main import app

runner = CliRunner()


def _command_paths(command=None, path=()) -> list[tuple[str, ...]]:
    """Every command and group of the CLI, as the words that name it."""
    command = command if command is not None else typer.main.get_command(app)
    found = [path]
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        found += _command_paths(sub, (*path, name))
    return found


COMMANDS = _command_paths()


def _help(path: tuple[str, ...]) -> str:
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def test_every_command_is_covered() -> None:
    names = {" ".join(path) for path in COMMANDS}
    assert {"build", "curate", "audit", "import coco", "synth defects", "synth boards"} <= names


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "pcbforge")
def test_flags_show_no_type_and_arguments_their_name(path) -> None:
    text = _help(path)
    assert "<bool>" not in text
    usage = next(line for line in text.splitlines() if "Usage:" in line)
    assert "{" not in usage, usage
    for argument in re.findall(r"\[?([A-Za-z_]+)\]?(?:\.\.\.)?\s*$", usage.split("[OPTIONS]")[-1]):
        assert argument.isupper() or argument in ("COMMAND", "ARGS"), usage


def test_usage_names_arguments_in_capitals() -> None:
    assert "Usage: pcbforge curate [OPTIONS] SRC" in _help(("curate",))
    assert "Usage: pcbforge build [OPTIONS] [RECIPE]" in _help(("build",))


WORKER_COMMANDS = [("build",), ("curate",), ("audit",), ("synth", "defects"),
                   ("synth", "boards"), ("import", "deeppcb"), ("import", "coco"),
                   ("import", "yolo"), ("import", "voc")]


@pytest.mark.parametrize("path", WORKER_COMMANDS, ids=" ".join)
def test_workers_means_the_same_everywhere(path) -> None:
    """``--workers`` defaulted to 1 for build and synth, to all cores elsewhere."""
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    option = next(p for p in command.params if p.name == "workers")
    assert option.default == 0  # not given: all cores, at most 8
    assert "all cores, at most 8" in (option.help or "")


@pytest.mark.parametrize(("args", "target"), [
    (["build", "--out", "{out}"], "pcbforge.pipeline.build"),
    (["synth", "boards", "--out", "{out}"], "pcbforge.synth.pipeline.write_boards"),
], ids=["build", "synth_boards"])
def test_workers_not_given_is_every_core(args, target, monkeypatch, tmp_path) -> None:
    """build and synth took one worker when ``--workers`` was not given; every other
    command all cores (at most 8)."""
    import importlib

    from pcbforge.cli import _util

    seen = {}

    def record(*_, workers, **__):
        seen["workers"] = workers
        raise typer.Exit(0)

    module, name = target.rsplit(".", 1)
    monkeypatch.setattr(importlib.import_module(module), name, record)
    monkeypatch.setattr(_util, "default_workers", lambda: 3)
    result = runner.invoke(app, [a.format(out=tmp_path / "out") for a in args])
    assert seen == {"workers": 3}, result.output
    result = runner.invoke(app, [a.format(out=tmp_path / "out") for a in args]
                           + ["--workers", "1"])
    assert seen == {"workers": 1}, result.output
    assert "1 runs everything in this process" in _help(tuple(args[:-2]))


def test_bracketed_defaults_are_not_eaten_by_markup() -> None:
    """Rich reads ``[default: ...]`` in a help string as a markup tag and drops it."""
    text = " ".join(_help(("curate",)).split())
    assert "(default: all cores, at most 8)" in text
    assert "$PCBFORGE_SCHEDULER" in text
    assert "else 48, DeepPCB's" in " ".join(_help(("synth", "defects")).split())
