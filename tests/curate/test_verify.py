import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from pcbforge.curate.hashing import thumbnail
from pcbforge.curate.verify import Relation, VerifyParams, compare_thumbnails
from pcbforge.synth.boards import add_local_defect, draw_board

DEFECTS = ["spur", "pinhole", "short", "open"]


def _copies(board, rng):
    return {
        "jpeg_q40": cv2.imdecode(cv2.imencode(".jpg", board, [cv2.IMWRITE_JPEG_QUALITY, 40])[1], 0),
        "half": cv2.resize(board, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA),
        "up_1_5": cv2.resize(board, None, fx=1.5, fy=1.5, interpolation=cv2.INTER_CUBIC),
        "brighter": np.clip(board.astype(int) + 25, 0, 255).astype(np.uint8),
        "darker_gain": (board * 0.85).astype(np.uint8),
        "noise": np.clip(board + rng.normal(0, 6, board.shape), 0, 255).astype(np.uint8),
        "blur": cv2.GaussianBlur(board, (0, 0), 1.2),
    }


COPY_KINDS = ["jpeg_q40", "half", "up_1_5", "brighter", "darker_gain", "noise", "blur"]


@pytest.mark.parametrize("kind", COPY_KINDS, ids=COPY_KINDS)
def test_copies_verify_as_duplicates(board, kind):
    copy = _copies(board, np.random.default_rng(0))[kind]
    result = compare_thumbnails(thumbnail(board), thumbnail(copy))
    assert result.relation is Relation.DUPLICATE, result


@pytest.mark.parametrize("kind", DEFECTS, ids=DEFECTS)
def test_small_defect_is_a_variant_not_a_duplicate(board, kind):
    defective, box = add_local_defect(board, np.random.default_rng(3), kind)
    result = compare_thumbnails(thumbnail(board), thumbnail(defective))
    assert result.relation is Relation.VARIANT, (result, box)
    assert result.same_scene
    # ...also after the defective tile was re-encoded as JPEG.
    jpeg = cv2.imdecode(cv2.imencode(".jpg", defective, [cv2.IMWRITE_JPEG_QUALITY, 75])[1], 0)
    assert compare_thumbnails(thumbnail(board), thumbnail(jpeg)).relation is Relation.VARIANT


def test_distinct_boards_are_different(board):
    other = draw_board(np.random.default_rng(99), 640)
    result = compare_thumbnails(thumbnail(board), thumbnail(other))
    assert result.relation is Relation.DIFFERENT


def test_aspect_change_makes_different(board):
    result = compare_thumbnails(thumbnail(board), thumbnail(board), aspect_change=0.3)
    assert result.relation is Relation.DIFFERENT


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="equal shapes"):
        compare_thumbnails(np.zeros((8, 8), np.uint8), np.zeros((8, 9), np.uint8))


def test_params_validated():
    with pytest.raises(ValidationError):
        VerifyParams(tolerance_px=9)
