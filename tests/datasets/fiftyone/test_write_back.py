"""``from_fiftyone`` writes like every command: staged, swapped in whole, one writer at a
time; images are never written, only linked into the stage."""

from __future__ import annotations

import os
import shutil

import pytest

from pcbforge.core.errors import OutputBusyError
from pcbforge.datasets.dataset import load
from pcbforge.datasets.fiftyone import FROM_FIFTYONE_REPORT, from_fiftyone, to_fiftyone
from tests.test_split_output import _hold_lock


def _inodes(folder) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_ino
            for p in sorted(folder.rglob("*.png"))}


def test_back_into_the_source_swaps_the_folder_and_links_the_images(
        fiftyone_db, inspection_dataset, tmp_path):
    root = shutil.copytree(inspection_dataset, tmp_path / "ds")
    to_fiftyone(root, "staged-source")
    images = _inodes(root)
    tables = os.stat(root / "labels.parquet").st_ino
    from_fiftyone("staged-source", root)
    assert _inodes(root) == images  # the same files, never rewritten
    assert os.stat(root / "labels.parquet").st_ino != tables
    assert (root / FROM_FIFTYONE_REPORT).is_file()
    load(root, check_files=True)
    assert sorted(n for n in os.listdir(tmp_path) if n.startswith(".ds.")) == []


def test_a_second_writer_is_refused_and_nothing_is_written(
        fiftyone_db, inspection_dataset, tmp_path):
    """Before: the tables were replaced while another command was writing the folder."""
    root = shutil.copytree(inspection_dataset, tmp_path / "ds")
    to_fiftyone(root, "staged-busy")
    before = {name: (root / name).read_bytes() for name in
              ("samples.parquet", "labels.parquet", "dataset.json")}
    for out in (root, tmp_path / "new"):
        holder = _hold_lock(out)
        try:
            with pytest.raises(OutputBusyError, match="another pcbforge process"):
                from_fiftyone("staged-busy", out)
        finally:
            holder.kill()
            holder.wait()
    assert {name: (root / name).read_bytes() for name in before} == before
    assert not (root / FROM_FIFTYONE_REPORT).exists() and not (tmp_path / "new").exists()
