"""A small build made once per session (procedural boards only), shared read-only."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

#: The embedded default's shape, small: 4 boards, 12 synthetic images.
SMALL_RECIPE = """
name: small
seed: 0
sources:
  - {name: boards, kind: procedural, count: 4, size: 320}
synth:
  images_per_class: 2
  defects_per_image: [2, 4]
report:
  examples_per_class: 2
  rejected_examples: 4
"""


def output_hashes(root: Path) -> dict[str, str]:
    """Every file of a build folder but its ``.build`` state: sha256 of a file's bytes,
    the target of a link (links are not followed)."""
    found = {}
    for folder, dirs, files in os.walk(root):
        rel = Path(folder).relative_to(root)
        if rel.parts[:1] == (".build",):
            dirs[:] = []
            continue
        for name in dirs + files:
            path = Path(folder) / name
            key = (rel / name).as_posix()
            if path.is_symlink():
                found[key] = "-> " + os.readlink(path)
            elif path.is_file():
                found[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


@pytest.fixture(scope="session")
def small_recipe():
    from pcbforge.pipeline.recipe import load_recipe

    return load_recipe(text=SMALL_RECIPE)


@pytest.fixture(scope="session")
def small_build(small_recipe, tmp_path_factory):
    """``(BuildResult, folder)`` of :data:`SMALL_RECIPE`, built once with one worker."""
    from pcbforge.pipeline import build

    out = tmp_path_factory.mktemp("small-build") / "dataset"
    return build(out, small_recipe, workers=1), out
