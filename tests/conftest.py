"""Shared, seeded fixtures: everything the tests use is generated here."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def board() -> np.ndarray:
    """A 640x640 binarised procedural board (copper 0, substrate 255)."""
    from pcbforge.synth.boards import draw_board

    return draw_board(np.random.default_rng(7), size=640)


@pytest.fixture(scope="session")
def messy_corpus(tmp_path_factory):
    """A generated messy folder (every corrupt/valid/duplicate kind) and its manifest."""
    from pcbforge.synth.messy import make_messy_corpus

    root = tmp_path_factory.mktemp("messy") / "src"
    manifest = make_messy_corpus(root, seed=0, hostile=True)
    return root, manifest


@pytest.fixture(scope="session")
def curated(messy_corpus, tmp_path_factory):
    """The messy corpus curated once (2 workers), shared by read-only tests."""
    from pcbforge.curate.runner import CurateParams, curate

    root, _ = messy_corpus
    out = tmp_path_factory.mktemp("curated") / "dataset"
    return curate(root, out, CurateParams(workers=2))
