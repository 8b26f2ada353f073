"""curate's verdicts on a generated corpus are the ones recorded before its speed work.

``golden/verdicts_seed3.csv`` holds, per path, what curate decided (status, reason,
duplicate_of / _reason / _transform, group, group_size) and the hashes those decisions
rest on (pixel_hash, phash), as written by the code before the inspection and
verification were made faster (2026-12). The corpus is generated here from seeds: a
messy folder (broken files, copies, re-encodes, rotations, defect variants, photos) and
640 px binarised tiles with their defective variants and copies. A difference is a change
of behaviour, not of speed. To record the file again (only for an intended change):

    python tests/curate/test_golden.py tests/curate/golden/verdicts_seed3.csv
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

GOLDEN = Path(__file__).parent / "golden" / "verdicts_seed3.csv"
COLUMNS = ["path", "status", "reason", "duplicate_of", "duplicate_reason",
           "duplicate_transform", "group", "group_size", "pixel_hash", "phash"]


def write_golden_corpus(root: Path) -> Path:
    """The corpus: ``root/messy`` and ``root/tiles``; returns ``root``."""
    from pcbforge.synth.boards import DEFECT_KINDS, add_local_defect, draw_board
    from pcbforge.synth.messy import make_messy_corpus

    make_messy_corpus(root / "messy", seed=3, n_boards=8, n_photos=4)
    tiles = root / "tiles"
    tiles.mkdir()
    rng = np.random.default_rng(3)
    for n in range(12):
        board = draw_board(rng, 640)
        cv2.imwrite(str(tiles / f"t{n:02d}_temp.jpg"), board)
        defective, _ = add_local_defect(board, rng, DEFECT_KINDS[n % len(DEFECT_KINDS)])
        cv2.imwrite(str(tiles / f"t{n:02d}_test.jpg"), defective)
        copy = {0: np.rot90(board), 1: board[:, ::-1], 2: cv2.resize(board, (320, 320)),
                3: cv2.GaussianBlur(board, (0, 0), 1.5)}.get(n % 6)
        if copy is not None:
            cv2.imwrite(str(tiles / f"t{n:02d}_copy.jpg"), np.ascontiguousarray(copy),
                        [cv2.IMWRITE_JPEG_QUALITY, 60])
    sparse = np.full((640, 640), 255, np.uint8)  # bare substrate, a few traces
    sparse[100:112, 50:600] = 0
    sparse[400:600, 300:310] = 0
    cv2.imwrite(str(tiles / "sparse_temp.png"), sparse)
    sparse[200:215, 200:215] = 0  # spurious copper
    cv2.imwrite(str(tiles / "sparse_test.png"), sparse)
    return root


def verdicts(src: Path, out: Path, workers: int) -> pd.DataFrame:
    from pcbforge.curate.runner import CurateParams, curate

    curate(src, out, CurateParams(workers=workers))
    table = pd.read_parquet(out / "samples.parquet")
    return table[COLUMNS].astype(str).reset_index(drop=True)


@pytest.fixture(scope="module")
def golden_corpus(tmp_path_factory) -> Path:
    return write_golden_corpus(tmp_path_factory.mktemp("golden") / "src")


@pytest.mark.parametrize("workers", [1, 2], ids=["inline", "two_workers"])
def test_verdicts_are_the_recorded_ones(golden_corpus, tmp_path, workers):
    expected = pd.read_csv(GOLDEN, dtype=str, keep_default_na=False)
    actual = verdicts(golden_corpus, tmp_path / "dataset", workers)
    assert list(actual["path"]) == list(expected["path"])
    differ = actual.ne(expected).any(axis=1)
    assert not differ.any(), pd.concat(
        {"recorded": expected[differ], "now": actual[differ]}, axis=1).to_string()
    # The corpus exercises every verdict the verification can give.
    assert {"exact_duplicate", "near_duplicate", "transformed_duplicate"} <= set(
        expected["duplicate_reason"])
    assert expected["status"].nunique() == 4  # ok, duplicate, corrupt, low_quality


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        corpus = write_golden_corpus(Path(scratch) / "src")
        verdicts(corpus, Path(scratch) / "dataset", 2).to_csv(sys.argv[1], index=False)
