"""The layer rules, checked on the source (an AST scan: no import runs).

Data flows one way: files -> datasets (tables) -> curate / synth (new rows and columns)
-> datasets (written tables, exports), composed by pipeline/ and driven by a thin cli/.

* ``core`` (the ground floor) imports nothing else of pcbforge; ``engine`` only core.
* ``datasets`` imports neither ``curate`` nor ``synth`` (nor what sits above them).
* ``synth`` does not import ``curate`` and ``curate`` does not import ``synth``.
* Nothing imports ``cli``; cli modules do no file I/O of their own.
* No module takes a private (``_name``) from another package.

Lazy imports inside functions count as much as those at the top of a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pcbforge"

#: part -> the parts it must not import ("*": every part but itself and those allowed).
FORBIDDEN: dict[str, set[str]] = {
    "core": {"*"},
    "engine": {"*"},
    "datasets": {"curate", "synth", "pipeline", "cli", "bench", "split", "audit", "qa"},
    "curate": {"synth", "pipeline", "cli", "bench"},
    "synth": {"curate", "pipeline", "cli", "bench"},
    "split": {"synth", "pipeline", "cli", "bench"},
    "audit": {"synth", "pipeline", "cli", "bench"},
    "qa": {"curate", "pipeline", "cli", "bench"},
    "evaluate": {"curate", "synth", "pipeline", "cli", "bench", "qa", "split", "audit"},
    "pipeline": {"cli"},
    "bench": {"cli"},
    "env": {"*"},
}
#: What a "*" part may still import.
ALLOWED: dict[str, set[str]] = {"core": {"core"}, "engine": {"core", "engine"},
                                "env": {"env"}}
#: Calls that read or write files: the CLI leaves them to the layers below. Methods (of a
#: path, a table, shutil), functions of ``os``, and the builtin ``open``.
FILE_IO_METHODS = frozenset({"write_text", "write_bytes", "read_text", "read_bytes",
                             "to_parquet", "to_csv", "read_parquet", "mkdir", "unlink",
                             "rmtree", "copyfile", "copy2", "copytree", "touch"})
FILE_IO_OS = frozenset({"replace", "rename", "remove", "unlink", "makedirs", "mkdir", "open"})


def part_of(module: str) -> str:
    """``pcbforge.curate.runner`` -> ``curate``; ``pcbforge.split`` -> ``split``."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else ""


def module_name(path: Path, root: Path) -> str:
    relative = path.relative_to(root.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(tree: ast.AST, module: str, is_package: bool):
    """``(line, imported module, imported names)`` for every import in ``tree``."""
    here = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield node.lineno, target, [alias.name for alias in node.names]


def _does_file_io(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id == "open"
    if not isinstance(func, ast.Attribute):
        return False
    if isinstance(func.value, ast.Name) and func.value.id == "os":
        return func.attr in FILE_IO_OS
    return func.attr in FILE_IO_METHODS


def violations(root: Path = PACKAGE) -> list[str]:
    """Every broken layer rule under the package folder ``root``, one line each."""
    found = []
    for path in sorted(root.rglob("*.py")):
        module = module_name(path, root)
        part = part_of(module)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        where = f"{path.relative_to(root.parent)}"
        for line, target, names in _imports(tree, module, path.name == "__init__.py"):
            if not target.startswith(f"{root.name}.") and target != root.name:
                continue
            other = part_of(target)
            forbidden = FORBIDDEN.get(part, set())
            if other and other != part and (
                    other in forbidden or ("*" in forbidden
                                           and other not in ALLOWED.get(part, set()))):
                found.append(f"{where}:{line}: {part} must not import {other} ({target})")
            elif other == "cli" and part != "cli":
                found.append(f"{where}:{line}: nothing imports the CLI ({target})")
            for name in names:
                if name.startswith("_") and not name.startswith("__") and other != part:
                    found.append(f"{where}:{line}: private name {name} taken from {target}")
        if part == "cli":
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and _does_file_io(node.func):
                    name = getattr(node.func, "attr", getattr(node.func, "id", ""))
                    if name:
                        found.append(f"{where}:{node.lineno}: the CLI does file I/O "
                                     f"({name}); leave it to the layers below")
    return found


def test_the_package_keeps_its_layers():
    assert violations() == []


@pytest.mark.parametrize("source, expected", [
    ("from pcbforge.curate.dedupe import DedupeParams\n", "synth must not import curate"),
    ("def f():\n    from pcbforge.cli.main import app\n", "synth must not import cli"),
    ("from pcbforge.datasets.dataset import _first_bad\n", "private name _first_bad"),
], ids=["synth-imports-curate", "lazy-cli-import", "private-name"])
def test_a_wrong_import_is_caught(tmp_path, source, expected):
    package = tmp_path / "pcbforge"
    (package / "synth").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "synth" / "__init__.py").write_text("")
    (package / "synth" / "bad.py").write_text(source)
    found = violations(package)
    assert len(found) == 1 and expected in found[0], found
    assert found[0].startswith("pcbforge/synth/bad.py:")


def test_relative_imports_and_file_io_in_the_cli_are_caught(tmp_path):
    package = tmp_path / "pcbforge"
    for folder in ("datasets", "cli"):
        (package / folder).mkdir(parents=True)
        (package / folder / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "datasets" / "bad.py").write_text("from ..curate import runner\n")
    (package / "cli" / "bad.py").write_text("def f(p):\n    p.write_text('x')\n")
    found = violations(package)
    assert any("datasets must not import curate" in f for f in found), found
    assert any("the CLI does file I/O (write_text)" in f for f in found), found
