"""The package imports without fiftyone; fiftyone imports with pcbforge's defaults, even in
a process that ran Dask."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def test_importing_pcbforge_does_not_import_fiftyone():
    modules = ", ".join(f"pcbforge.datasets.fiftyone.{name}" for name in
                        ("app", "export", "fields", "library", "media", "write_back"))
    code = (f"import sys, pcbforge, pcbforge.datasets, pcbforge.cli.main, {modules}; "
            "assert 'fiftyone' not in sys.modules, 'imported'; "
            "from pcbforge.datasets import to_fiftyone, from_fiftyone; print(to_fiftyone.__name__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "to_fiftyone"


def test_fiftyone_imports_after_dask_put_the_importlib_metadata_backport_in_place():
    """distributed imports the importlib_metadata backport, whose finder then answers
    stdlib metadata queries with KeyError for missing fields; FiftyOne's eta reads one at
    import. A process that ran Dask must still be able to open FiftyOne."""
    pytest.importorskip("distributed")
    code = ("import sys, distributed, importlib_metadata\n"
            "assert any(type(f).__module__.startswith('importlib_metadata') "
            "for f in sys.meta_path), 'backport finder not installed'\n"
            "from pcbforge.datasets.fiftyone import import_fiftyone\n"
            "fo = import_fiftyone()\n"
            "try:\n"
            "    importlib_metadata.metadata('voxel51-eta')['no-such-field']\n"
            "except KeyError:\n"
            "    pass\n"
            "else:\n"
            "    raise AssertionError('backport left lenient')\n"
            "print(fo.__name__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, env={**os.environ, "FIFTYONE_DO_NOT_TRACK": "true"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("fiftyone")
