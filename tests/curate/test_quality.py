import numpy as np
import pytest
from pydantic import ValidationError

from pcbforge.curate.quality import Measured, QualityThresholds, apply_checks, quality_scores

T = QualityThresholds()


def low_quality_reason(thumb: np.ndarray, width: int, height: int, thresholds) -> str:
    """The reason the registered checks give a ``width`` x ``height`` image of ``thumb``."""
    return apply_checks(Measured(thumb, quality_scores(thumb), width, height), thresholds)[1]


@pytest.mark.parametrize(
    ("image", "size", "reason"),
    [
        (np.full((64, 64), 255, np.uint8), (640, 640), "blank"),
        (np.zeros((64, 64), np.uint8), (640, 640), "blank"),
        (np.random.default_rng(0).integers(0, 20, (64, 64)).astype(np.uint8), (640, 640),
         "too_dark"),
        (np.random.default_rng(0).integers(245, 256, (64, 64)).astype(np.uint8), (640, 640),
         "too_bright"),
        (np.random.default_rng(0).integers(0, 256, (64, 64)).astype(np.uint8), (20, 20),
         "too_small"),
        (np.random.default_rng(0).integers(0, 256, (64, 64)).astype(np.uint8), (640, 640), ""),
    ],
    ids=["white", "black", "dark", "bright", "small", "fine"],
)
def test_low_quality_reasons(image, size, reason):
    assert low_quality_reason(image, *size, T) == reason


def test_binarised_board_is_not_low_quality(board):
    # Mostly-copper or mostly-substrate tiles must not read as too dark/bright.
    assert low_quality_reason(board, 640, 640, T) == ""
    inverted = 255 - board
    assert low_quality_reason(inverted, 640, 640, T) == ""


def test_thresholds_reject_unknown_keys():
    with pytest.raises(ValidationError, match="extra"):
        QualityThresholds(dark=3)


@pytest.mark.parametrize("background", [255, 0], ids=["copper_on_substrate", "pinhole_in_pour"])
def test_a_lone_small_defect_is_content_not_a_blank_frame(background):
    # DeepPCB has tiles of bare substrate whose only content is the defect.
    tile = np.full((640, 640), background, np.uint8)
    tile[300:314, 200:214] = 255 - background  # a 14x14 px island / hole
    from pcbforge.curate.hashing import thumbnail

    assert low_quality_reason(thumbnail(tile), 640, 640, T) == ""


def test_a_single_dead_pixel_does_not_make_a_blank_frame_content():
    from pcbforge.curate.hashing import thumbnail

    frame = np.full((640, 640), 255, np.uint8)
    frame[10, 10] = 0
    assert low_quality_reason(thumbnail(frame), 640, 640, T) == "blank"
