import cv2
import numpy as np
import pytest

from pcbforge.curate.hashing import (
    N_VARIANTS,
    dihedral,
    dihedral_inverse,
    hash_to_hex,
    hex_to_hash,
    perceptual_hashes,
    pixel_hash,
    thumbnail,
)


def _hamming(a, b) -> int:
    return bin(int(a) ^ int(b)).count("1")


@pytest.mark.parametrize("variant", range(N_VARIANTS))
def test_dihedral_inverse_undoes_the_transform(variant):
    image = np.arange(12).reshape(3, 4)
    back = dihedral(dihedral(image, variant), dihedral_inverse(variant))
    np.testing.assert_array_equal(back, image)


@pytest.mark.parametrize("variant", range(N_VARIANTS))
@pytest.mark.parametrize("shape", [(3, 4), (5, 5), (3, 4, 2)])
def test_dihedral_is_the_mirror_then_quarter_turns(variant, shape):
    image = np.arange(np.prod(shape)).reshape(shape)
    expected = np.rot90(image[:, ::-1] if variant >= 4 else image, variant % 4)
    np.testing.assert_array_equal(dihedral(image, variant), expected)


@pytest.mark.parametrize("variant", range(1, N_VARIANTS))
def test_transformed_copy_hash_is_a_variant_of_the_original(board, variant):
    codes, _ = perceptual_hashes(thumbnail(board))
    copy_codes, _ = perceptual_hashes(thumbnail(np.ascontiguousarray(dihedral(board, variant))))
    # The copy's identity hash equals the original's hash under that transform.
    assert _hamming(copy_codes[0], codes[variant]) <= 2


def test_near_copies_stay_near_and_distinct_boards_stay_far(board):
    from pcbforge.synth.boards import draw_board

    codes, weak = perceptual_hashes(thumbnail(board))
    jpeg = cv2.imdecode(cv2.imencode(".jpg", board, [cv2.IMWRITE_JPEG_QUALITY, 50])[1], 0)
    half = cv2.resize(board, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    brighter = np.clip(board.astype(int) + 20, 0, 255).astype(np.uint8)
    for copy in (jpeg, half, brighter):
        assert _hamming(perceptual_hashes(thumbnail(copy))[0][0], codes[0]) <= 6
    others = [draw_board(np.random.default_rng(seed), 640) for seed in (100, 101, 102)]
    for other in others:
        assert _hamming(perceptual_hashes(thumbnail(other))[0][0], codes[0]) >= 14
    assert bin(int(weak[0])).count("1") == 8


def test_pixel_hash_depends_on_values_shape_and_dtype():
    a = np.zeros((4, 6), np.uint8)
    assert pixel_hash(a) == pixel_hash(a.copy())
    assert pixel_hash(a) != pixel_hash(a.reshape(6, 4))
    assert pixel_hash(a) != pixel_hash(a.astype(np.uint16))
    b = a.copy()
    b[0, 0] = 1
    assert pixel_hash(a) != pixel_hash(b)


def test_hex_round_trip():
    value = np.uint64(0xFEDCBA9876543210)
    assert hash_to_hex(value) == "fedcba9876543210"
    assert hex_to_hash(hash_to_hex(value)) == value


@pytest.mark.parametrize("variant", range(N_VARIANTS))
def test_occupancy_hash_of_a_transformed_copy_is_a_variant(board, variant):
    from pcbforge.curate.hashing import content_hashes

    codes, fraction = content_hashes(thumbnail(board))
    moved, _ = content_hashes(thumbnail(np.ascontiguousarray(dihedral(board, variant))))
    assert moved[0] == codes[variant]
    assert 0.0 < fraction < 1.0


def test_occupancy_hash_moves_little_for_a_small_defect(board):
    from pcbforge.curate.hashing import content_hashes
    from pcbforge.synth.boards import add_local_defect

    defective, _ = add_local_defect(board, np.random.default_rng(5), "spur")
    clean, _ = content_hashes(thumbnail(board))
    changed, _ = content_hashes(thumbnail(defective))
    assert _hamming(clean[0], changed[0]) <= 2
