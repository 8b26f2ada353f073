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


def _scene_pairs(board):
    """Thumbnail pairs of every relation: copies, defect variants, other boards, rotations."""
    from pcbforge.curate.hashing import dihedral

    rng = np.random.default_rng(11)
    thumb = thumbnail(board)
    pairs = [(thumb, thumbnail(copy)) for copy in _copies(board, rng).values()]
    for kind in DEFECTS:
        defective, _ = add_local_defect(board, rng, kind)
        pairs.append((thumb, thumbnail(defective)))
    for seed in (99, 100):
        pairs.append((thumb, thumbnail(draw_board(np.random.default_rng(seed), 640))))
    sparse = np.full_like(board, 255)
    sparse[300:340, 100:500] = 0
    pairs.append((thumbnail(sparse), thumb))
    pairs += [(thumb, np.ascontiguousarray(dihedral(thumb, variant))) for variant in range(8)]
    return pairs


def test_pair_relation_is_the_relation_compare_thumbnails_finds(board):
    from pcbforge.curate.verify import coarse_view, pair_relation, subsample_levels

    params = VerifyParams()
    relations = set()
    for a, b in _scene_pairs(board):
        expected = compare_thumbnails(a, b, params).relation
        relations.add(expected)
        assert pair_relation(a, b, params) is expected
        known = (coarse_view(a), coarse_view(b))
        levels = (subsample_levels(a), subsample_levels(b))
        assert pair_relation(a, b, params, coarse=known, levels=levels) is expected
    assert relations == set(Relation)  # every branch was taken


@pytest.mark.parametrize("shape", [(256, 256), (255, 255), (64, 48), (33, 40)],
                         ids=["even", "odd", "wide_even", "mixed"])
@pytest.mark.parametrize("variant", range(8))
def test_subsample_levels_of_a_transform_are_a_parity_of_the_original(shape, variant):
    from pcbforge.curate.hashing import dihedral
    from pcbforge.curate.verify import subsample_levels, subsample_parity

    image = np.random.default_rng(variant).integers(0, 256, shape, dtype=np.uint8)
    moved = np.ascontiguousarray(dihedral(image, variant))
    parity = subsample_parity(image.shape, variant)
    assert np.array_equal(np.sort(moved[::2, ::2], axis=None),
                          np.sort(image[parity[0]::2, parity[1]::2], axis=None))
    assert subsample_levels(moved) == subsample_levels(image, parity)


@pytest.mark.parametrize("variant", range(8))
def test_a_stored_coarse_view_is_the_view_of_the_thumbnail(board, variant):
    from pcbforge.curate.hashing import dihedral, occupancy_of
    from pcbforge.curate.verify import (
        coarse_record,
        coarse_view,
        coarse_view_of_record,
        coarse_view_of_small,
    )

    thumb = thumbnail(board)
    occupancy = occupancy_of(thumb)
    shared = coarse_view_of_small(occupancy.small, occupancy.levels, occupancy.distance)
    stored = coarse_view_of_record(coarse_record(shared)).transformed(variant)
    direct = coarse_view(np.ascontiguousarray(dihedral(thumb, variant)))
    assert np.array_equal(stored.small, direct.small)
    assert (stored.grey_range, stored.energy, stored.mean, stored.std) == (
        direct.grey_range, direct.energy, direct.mean, direct.std)
