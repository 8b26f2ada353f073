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
