"""The public Python API (``import pcbforge as pf``): cheap to import, every name resolves,
and every example of docs/api.md runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import pcbforge as pf

API_DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"
#: A fenced ```python block of a Markdown page: (line of its first code line, code).
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks(page: Path) -> list[tuple[int, str]]:
    text = page.read_text(encoding="utf-8")
    return [(text.count("\n", 0, match.start(1)) + 1, match.group(1))
            for match in PYTHON_BLOCK.finditer(text)]


def test_importing_pcbforge_imports_nothing_else():
    code = ("import sys, pcbforge; "
            "print(sorted(m for m in sys.modules if m.startswith('pcbforge.') "
            "or m in ('numpy', 'pandas', 'fiftyone', 'cv2')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_every_public_name_resolves_without_importing_fiftyone():
    code = ("import sys, pcbforge as pf\n"
            "missing = [name for name in pf.__all__ if getattr(pf, name, None) is None]\n"
            "assert not missing, missing\n"
            "assert 'fiftyone' not in sys.modules\n"
            "print(sorted(set(pf.__all__) - set(dir(pf))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_the_verbs_survive_their_modules_being_imported():
    """``pcbforge.curate``, ``.split`` and ``.audit`` are modules: importing one binds it
    as an attribute of the package, which must not hide a verb of the API."""
    import pcbforge.audit
    import pcbforge.curate
    import pcbforge.split  # noqa: F401

    for verb in ("curate_images", "split_dataset", "audit_dataset"):
        assert callable(getattr(pf, verb)), verb
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        pf.no_such_name  # noqa: B018


def test_import_dataset_names_the_formats_it_knows(tmp_path):
    with pytest.raises(ValueError, match="unknown format 'tiff'; expected one of deeppcb, "):
        pf.import_dataset("tiff", tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_split_dataset_takes_params_or_settings_not_both(tmp_path):
    with pytest.raises(TypeError, match="not both"):
        pf.split_dataset(tmp_path, pf.SplitParams(), seed=1)


def test_the_api_page_has_examples():
    blocks = python_blocks(API_DOC)
    assert len(blocks) >= 6
    used = "\n".join(code for _, code in blocks)
    for name in pf.__all__:
        if not name.startswith("_") and name[0].islower():
            assert f"pf.{name}(" in used, f"docs/api.md has no example of pf.{name}"


def test_the_examples_of_the_api_page_run(fiftyone_db, tmp_path, monkeypatch):
    """Every ```python block of docs/api.md, in order, in one namespace, in an empty
    folder: what a reader pasting them into a notebook gets."""
    monkeypatch.chdir(tmp_path)
    before = set(fiftyone_db.list_datasets())
    namespace: dict = {"__name__": "__api_doc__"}
    try:
        for line, code in python_blocks(API_DOC):
            # Padded so that a traceback names the line of docs/api.md.
            exec(compile("\n" * (line - 1) + code, str(API_DOC), "exec"), namespace)
    finally:
        for name in set(fiftyone_db.list_datasets()) - before:
            fiftyone_db.delete_dataset(name)
    assert pf.load(tmp_path / "synth-reviewed").samples["tags"].str.contains(
        "bad_label").sum() == 1
