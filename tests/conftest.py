"""Shared, seeded fixtures: everything the tests use is generated here."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
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


def write_deeppcb_layout(root: Path, boards: dict[str, int], rng: np.random.Generator,
                         list_name: str = "trainval") -> dict:
    """groupN/N/X_{temp,test}.jpg and groupN/N_not/X.txt, with real drawn defects, listed
    in ``<list_name>.txt``."""
    from pcbforge.synth.boards import add_local_defect, draw_board

    expected = {"boxes": 0, "tested": 0}
    lines = []
    for group, tiles in boards.items():
        number = group.removeprefix("group")
        (root / group / number).mkdir(parents=True)
        (root / group / f"{number}_not").mkdir()
        for tile in range(tiles):
            pair = f"{number}{tile:03d}"
            board = draw_board(rng, 160)
            tested, (x1, y1, x2, y2) = add_local_defect(board, rng, "spur")
            cv2.imwrite(str(root / group / number / f"{pair}_temp.jpg"), board)
            cv2.imwrite(str(root / group / number / f"{pair}_test.jpg"), tested)
            # Spaces as in the real files, commas as in DeepPCB's README, blank lines.
            text = f"{x1} {y1} {x2} {y2} 4\n\n{x1},{y1},{x2},{y2},1\n"
            (root / group / f"{number}_not" / f"{pair}.txt").write_text(text)
            lines.append(f"{group}/{number}/{pair}.jpg {group}/{number}_not/{pair}.txt")
            expected["boxes"] += 2
            expected["tested"] += 1
    (root / f"{list_name}.txt").write_text("\n".join(lines) + "\n")
    return expected
