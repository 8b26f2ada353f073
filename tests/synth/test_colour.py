"""Tests for procedural colour boards (:mod:`pcbforge.synth.colour`) and for defects drawn
on colour boards and on grey photographic boards: the right colour at each place, exact
labels, the topology rules the binary tests check."""

from __future__ import annotations

import io
import json
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from pcbforge.synth.analysis import analyze_board, etch_layout_board, side_fill
from pcbforge.synth.boards import COPPER, draw_board, draw_layout, render_photo_like
from pcbforge.synth.colour import (
    FINISHES,
    LAYOUT_CHUNK,
    MASK_COLOURS,
    MIN_SEPARATION,
    SILK_CLEARANCE_PX,
    ColourLayout,
    Region,
    colour_separation,
    embed_layout,
    finishes_for,
    layout_from_png,
    render_colour,
    sample_colour,
)
from pcbforge.synth.compose import SynthConfig, SynthImage, copper_of, synthesize_image
from pcbforge.synth.pipeline import board_png, read_board_and_layout
from pcbforge.synth.registry import DEFECTS
from pcbforge.synth.topology import check_topology

_KERNEL3 = np.ones((3, 3), np.uint8)
SIZE = 480


def _colour_board(seed: int, mask: str = "green", finish: str = "any", size: int = SIZE):
    rng = np.random.default_rng(seed)
    layout = draw_layout(rng, size)
    return layout, render_colour(layout, sample_colour(rng, layout, mask=mask, finish=finish))


@pytest.fixture(scope="module")
def colour_boards():
    """Six boards, every mask colour once (green twice), finishes drawn."""
    masks = ["green", "blue", "red", "black", "white", "green"]
    return {seed: _colour_board(seed, mask) for seed, mask in enumerate(masks)}


# --- the boards ------------------------------------------------------------------------


def test_same_seed_same_bytes_and_other_seeds_differ() -> None:
    first = board_png(4, 1, 256, "colour", "any", "any")
    assert first == board_png(4, 1, 256, "colour", "any", "any")
    assert first != board_png(4, 2, 256, "colour", "any", "any")
    assert first != board_png(5, 1, 256, "colour", "any", "any")


def test_colour_board_has_the_binary_boards_layout(tmp_path) -> None:
    for index in range(3):
        binary = cv2.imdecode(np.frombuffer(board_png(7, index, 320), np.uint8),
                              cv2.IMREAD_UNCHANGED)
        path = tmp_path / f"c{index}.png"
        path.write_bytes(board_png(7, index, 320, "colour", "any", "any"))
        image, layout = read_board_and_layout(str(path))
        assert image.shape == (320, 320, 3) and layout is not None
        np.testing.assert_array_equal(layout.copper, (binary == COPPER).view(np.uint8))


@pytest.mark.parametrize("mask", list(MASK_COLOURS))
def test_every_region_shows_its_colour(mask) -> None:
    layout, board = _colour_board(11, mask)
    regions = board.layout.regions
    present = set(np.unique(regions).tolist())
    assert present == {Region.mask, Region.covered, Region.finish, Region.hole, Region.silk}
    pixels = board.image.astype(np.float32) / board.layout.gain[..., None]
    for region in present - {Region.silk}:
        inner = cv2.erode((regions == region).view(np.uint8), _KERNEL3) > 0
        median = np.median(pixels[inner], axis=0)
        expected = board.layout.palette[region]
        assert np.abs(median - expected).max() < 6, (mask, Region(region).name, median,
                                                     expected)
    # Silkscreen strokes are 1-2 px wide, so the blur blends them with the mask: most of
    # their pixels are still nearer the ink than the mask.
    ink, under = board.layout.palette[Region.silk], board.layout.palette[Region.mask]
    along = ((pixels[regions == Region.silk] - under) @ (ink - under)) / float(
        (ink - under) @ (ink - under))
    assert np.median(along) > 0.5, (mask, np.median(along))
    if mask == "green":  # a green mask is green
        b, g, r = board.layout.palette[Region.mask]
        assert g > 1.5 * max(b, r)
    # Covered copper is the mask's lighter tint; the finish is none of the mask's colours.
    cov, msk = board.layout.palette[Region.covered], board.layout.palette[Region.mask]
    assert np.linalg.norm(cov - msk) > MIN_SEPARATION
    assert board.layout.params["finish"] in FINISHES


def test_silkscreen_lies_on_mask_away_from_copper(colour_boards) -> None:
    inked = 0
    for layout, board in colour_boards.values():
        silk = board.layout.regions == Region.silk
        solid = ((layout.board == COPPER) | layout.holes).view(np.uint8)
        away = cv2.distanceTransform(1 - solid, cv2.DIST_L2, 5)
        assert (away[silk] > SILK_CLEARANCE_PX).all()
        inked += int(silk.sum())
        colour = np.asarray(board.layout.params["palette"]["silk"])
        assert (colour > 200).all() or (colour < 60).all()  # white, or black on white mask
    assert inked > 500


def test_vias_are_holes_in_rings_of_finish(colour_boards) -> None:
    for _, board in colour_boards.values():
        holes = board.layout.regions == Region.hole
        assert holes.any()
        ring = (cv2.dilate(holes.view(np.uint8), _KERNEL3) > 0) & ~holes
        assert (board.layout.regions[ring] == Region.finish).mean() > 0.95


def test_illumination_is_mild_and_noise_is_present(colour_boards) -> None:
    for _, board in colour_boards.values():
        gain = board.layout.gain
        assert 0.85 < gain.min() < gain.max() < 1.15
        inner = cv2.erode((board.layout.regions == Region.mask).view(np.uint8),
                          np.ones((5, 5), np.uint8)) > 0
        assert 1.0 < board.image[inner].std(axis=0).min() < 8.0


@pytest.mark.parametrize("mask", list(MASK_COLOURS))
def test_every_finish_drawn_on_a_mask_can_be_told_apart(mask) -> None:
    allowed = finishes_for(mask)
    assert allowed
    for finish in allowed:
        for seed in range(3):
            palette = sample_colour(np.random.default_rng(seed), draw_layout(
                np.random.default_rng(seed), 96), mask=mask, finish=finish)["palette"]
            assert colour_separation(palette) >= MIN_SEPARATION - 8  # jitter: +-4 a channel


def test_copper_is_recovered_from_the_clean_board(colour_boards) -> None:
    for _, board in colour_boards.values():
        wrong = board.layout.copper_of(board.image) != board.layout.copper
        assert wrong.mean() < 0.004
        assert not cv2.morphologyEx(wrong.view(np.uint8), cv2.MORPH_OPEN, _KERNEL3).any()


def test_layout_travels_in_the_png_and_readers_ignore_it() -> None:
    _, board = _colour_board(3, "blue", "enig", 200)
    ok, png = cv2.imencode(".png", board.image)
    data = embed_layout(png.tobytes(), board.layout)
    assert LAYOUT_CHUNK in data[:64]  # right after the header
    np.testing.assert_array_equal(cv2.imdecode(np.frombuffer(data, np.uint8),
                                               cv2.IMREAD_UNCHANGED), board.image)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data)))[..., ::-1],
                                  board.image)
    again = layout_from_png(data)
    np.testing.assert_array_equal(again.regions, board.layout.regions)
    assert again.params["palette"] == board.layout.params["palette"]
    assert again.params["mask"] == "blue" and again.params["finish"] == "enig"
    assert "silk" not in again.params  # the map holds it as drawn
    assert layout_from_png(png.tobytes()) is None
    assert layout_from_png(b"not a png") is None


def test_a_damaged_layout_chunk_is_an_error() -> None:
    _, board = _colour_board(3, "green", "any", 128)
    ok, png = cv2.imencode(".png", board.image)
    data = bytearray(embed_layout(png.tobytes(), board.layout))
    data[50] ^= 0xFF  # inside the chunk's JSON header: the CRC no longer matches
    with pytest.raises(ValueError, match="damaged"):
        layout_from_png(bytes(data))
    header = json.dumps({"format": "something else"}).encode() + b"\0"
    chunk = (struct.pack(">I", len(header)) + LAYOUT_CHUNK + header
             + struct.pack(">I", zlib.crc32(LAYOUT_CHUNK + header)))
    with pytest.raises(ValueError, match="not a pcbforge layout"):
        layout_from_png(png.tobytes()[:33] + chunk + png.tobytes()[33:])


def test_a_layout_that_does_not_fit_its_image_is_refused(tmp_path) -> None:
    _, small = _colour_board(3, "green", "any", 128)
    _, large = _colour_board(3, "green", "any", 160)
    ok, png = cv2.imencode(".png", large.image)
    path = tmp_path / "board.png"
    path.write_bytes(embed_layout(png.tobytes(), small.layout))
    with pytest.raises(ValueError, match="does not fit"):
        read_board_and_layout(str(path))
    with pytest.raises(ValueError, match="regions"):
        ColourLayout(np.full((4, 4), 9, np.uint8), small.layout.params)


def test_unknown_colours_are_refused() -> None:
    layout = draw_layout(np.random.default_rng(0), 96)
    with pytest.raises(ValueError, match="unknown mask colour 'purple'.*green"):
        sample_colour(np.random.default_rng(0), layout, mask="purple")
    with pytest.raises(ValueError, match="unknown finish 'silver'.*enig"):
        sample_colour(np.random.default_rng(0), layout, finish="silver")


# --- defects on colour boards ------------------------------------------------------------


@pytest.fixture(scope="module")
def made(colour_boards) -> dict[int, tuple]:
    config = SynthConfig(defects_per_image=(8, 12), defect_free_share=0.0)
    return {seed: (board, synthesize_image(board.image, np.random.default_rng(40 + seed),
                                           config, layout=board.layout))
            for seed, (_, board) in colour_boards.items()}


def test_labels_hold_their_topology_on_colour_boards(made) -> None:
    placed = {}
    for seed, (board, result) in made.items():
        assert not result.binary
        np.testing.assert_array_equal(result.template, board.image)
        before, after = board.layout.copper, board.layout.copper_of(result.image)
        for label in result.labels:
            x1, y1, x2, y2 = label["box"]
            ok, why = check_topology(label["label"], before[y1:y2, x1:x2], after[y1:y2, x1:x2])
            assert ok, (seed, label["label"], label["box"], why)
            placed[label["label"]] = placed.get(label["label"], 0) + 1
    assert set(placed) == set(DEFECTS) and sum(placed.values()) >= 45
    # A defect whose label fails on the final pair is dropped, never kept: a few are (an
    # edge moved into a box's border by the acquisition warp reads as an island or hole).
    dropped = sum(sum(r.dropped.values()) for _, r in made.values())
    assert dropped <= 0.12 * sum(placed.values())


def test_each_class_takes_the_colour_of_the_other_side_at_its_place(made) -> None:
    """Inside a defect's mask (a pixel in from its blended edge): copper added shows the
    copper of that place (under the mask: the covered tint; in a pad's opening: the
    finish), copper removed what lies under it (mask; in a pad: a dark void)."""
    seen = set()
    for seed, (board, result) in made.items():
        layout = board.layout
        classified = layout.copper_of(result.image)
        for label in result.labels:
            adds = DEFECTS[label["label"]].adds_copper
            inner = cv2.erode(label["mask"].view(np.uint8), _KERNEL3) > 0
            if inner.sum() < 6:
                continue
            # The colour family: the palette's reading of every inner pixel is the class's.
            assert (classified[inner] == adds).mean() > 0.9, (seed, label["label"])
            # The colour: the expected region's, lit as the board is. The acquisition warp
            # moves the image (and the masks) by up to 2 px and JPEG blurs colour, so a
            # narrow defect's pixels lean a little towards what was there: measured as the
            # way from the template's colour to the expected one, they are most of it.
            side = layout.side(adds, (0, 0, SIZE, SIZE))[inner]
            for region in np.unique(side):
                here = side == region
                if here.sum() < 6:
                    continue
                lit = layout.gain[inner][here, None]
                expected = layout.palette[region] * lit
                before = result.template[inner][here].astype(np.float32)
                got = result.image[inner][here].astype(np.float32)
                way = ((got - before) * (expected - before)).sum(1) / (
                    (expected - before) ** 2).sum(1)
                assert np.median(way) > 0.7, (seed, label["label"], Region(region).name)
                seen.add((adds, Region(region).name))
    assert {(True, "covered"), (False, "mask"), (False, "void")} <= seen


def test_boxes_are_exact_and_hold_every_thick_change(made) -> None:
    margin = round(SynthConfig().margin_px)
    for seed, (board, result) in made.items():
        h, w = board.image.shape[:2]
        moved = (board.layout.copper_of(result.image) ^ board.layout.copper).view(np.uint8)
        thick = cv2.morphologyEx(moved, cv2.MORPH_OPEN, _KERNEL3)
        for label in result.labels:
            mask = label["mask"]
            rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
            tight = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
            assert tuple(label["tight"]) == tight
            x1, y1, x2, y2 = tight
            assert tuple(label["box"]) == (max(x1 - margin, 0), max(y1 - margin, 0),
                                           min(x2 + margin, w), min(y2 + margin, h))
        for box in [label["box"] for label in result.labels] + [
                region["box"] for region in result.nuisance_regions]:
            x1, y1, x2, y2 = box
            thick[y1:y2, x1:x2] = 0
        assert not thick.any(), seed


def _same(a: SynthImage, b: SynthImage) -> bool:
    return (a.image.tobytes() == b.image.tobytes()
            and [lab["box"] for lab in a.labels] == [lab["box"] for lab in b.labels])


def test_same_seed_same_bytes_on_colour_boards(colour_boards) -> None:
    _, board = colour_boards[2]
    runs = [synthesize_image(board.image, np.random.default_rng(9), layout=board.layout)
            for _ in range(2)]
    assert _same(*runs)
    shared = synthesize_image(board.image, np.random.default_rng(9),
                              analysis=analyze_board(board.image, layout=board.layout))
    assert _same(shared, runs[0])


def test_without_its_layout_a_colour_board_is_read_as_two_levels(colour_boards) -> None:
    """Why a colour board carries its layout: Otsu's two-level reading of mask, covered
    copper, finish, silkscreen and holes (copper the light side, dark on a white mask)
    always puts the silkscreen on the copper's side, and may split the colours between
    covered copper and the finish (on the blue board here: a quarter of it wrong)."""
    wrong = []
    for _, board in colour_boards.values():
        side = "dark" if board.layout.params["mask"] == "white" else "light"
        guessed = analyze_board(board.image, copper=side).copper
        assert guessed[board.layout.regions == Region.silk].mean() > 0.9
        wrong.append(float((guessed != board.layout.copper).mean()))
        assert (analyze_board(board.image, layout=board.layout).copper
                == board.layout.copper).all()
    assert min(wrong) > 0.004 and max(wrong) > 0.2


def test_etching_a_colour_board_grows_its_copper_and_labels_hold(colour_boards) -> None:
    _, board = colour_boards[1]
    image, layout = etch_layout_board(board.image, board.layout, 2)
    grown = (layout.copper > 0) & (board.layout.copper == 0)
    assert grown.sum() > 1000 and not (board.layout.copper > layout.copper).any()
    assert (layout.regions[board.layout.regions == Region.hole] == Region.hole).all()
    assert (layout.copper_of(image) != layout.copper).mean() < 0.01
    config = SynthConfig(etch_px=(2, 2), defect_free_share=0.0)
    result = synthesize_image(board.image, np.random.default_rng(3), config,
                              layout=board.layout)
    np.testing.assert_array_equal(result.template, image)
    after = layout.copper_of(result.image)
    assert result.labels
    for label in result.labels:
        x1, y1, x2, y2 = label["box"]
        assert check_topology(label["label"], layout.copper[y1:y2, x1:x2],
                              after[y1:y2, x1:x2])[0]


# --- grey photographic boards --------------------------------------------------------------

COPPER_GREY, SUBSTRATE_GREY = 75.0, 185.0


def _grey_photo(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A procedural board photographed in grey: copper dark, substrate light, lit
    unevenly (the smooth light of a photo-like image, 0.78-1.22), with grain, blur and
    sensor noise. Returns the image, the binary board and the light."""
    rng = np.random.default_rng(seed)
    board = draw_board(rng, SIZE)
    light = cv2.cvtColor(render_photo_like(rng, SIZE, SIZE), cv2.COLOR_BGR2GRAY)
    light = cv2.GaussianBlur(light.astype(np.float32), (0, 0), 40)
    light = 0.78 + 0.44 * (light - light.min()) / max(float(np.ptp(light)), 1.0)
    base = np.where(board == COPPER, np.float32(COPPER_GREY), np.float32(SUBSTRATE_GREY))
    base = cv2.GaussianBlur((base + rng.normal(0, 5, base.shape)).astype(np.float32),
                            (0, 0), 0.9) * light
    image = np.clip(np.round(base + rng.normal(0, 2, base.shape)), 0, 255).astype(np.uint8)
    return image, board, light


def _grey_made(**config) -> list[tuple]:
    config = SynthConfig(defects_per_image=(8, 12), defect_free_share=0.0, **config)
    out = []
    for seed in range(4):
        image, board, light = _grey_photo(seed)
        out.append((image, board, light, synthesize_image(image, np.random.default_rng(seed),
                                                           config)))
    return out


def test_grey_photo_defects_take_the_local_grey_of_the_other_side() -> None:
    """Without the acquisition warp (which moves a small defect's edge over its inside),
    a defect's inside has the grey of the other side at its place, not the board's."""
    local_error, global_error = [], []
    for image, _, light, result in _grey_made(nuisance={"enabled": False}):
        a = analyze_board(image)
        assert a.layout is None and not a.binary
        for label in result.labels:
            adds = DEFECTS[label["label"]].adds_copper
            inner = cv2.erode(label["mask"].view(np.uint8), _KERNEL3) > 0
            if inner.sum() < 6:
                continue
            truth = float(((COPPER_GREY if adds else SUBSTRATE_GREY) * light)[inner].mean())
            got = float(result.image[inner].mean())
            local_error.append(abs(got - truth))
            overall = float((a.copper_colour if adds else a.substrate_colour)[0])
            global_error.append(abs(overall - truth))
            x1, y1, x2, y2 = label["tight"]
            fill, texture = side_fill(a, adds, (x1, y1, x2, y2))
            assert fill.shape == (y2 - y1, x2 - x1, 1) and (texture > 0).all()
    assert len(local_error) >= 25
    # At that place, not the board's median: the light moves the greys by +-20 %.
    assert np.mean(local_error) < 5.0 and np.max(local_error) < 15.0
    assert np.mean(global_error) > 2 * np.mean(local_error)


def test_grey_photo_labels_hold_their_topology() -> None:
    placed = 0
    for image, board, _, result in _grey_made():
        a = analyze_board(image)
        before, after = a.copper, copper_of(a, result.image)
        assert (before != (board == COPPER)).mean() < 0.02  # the board is read right
        for label in result.labels:
            x1, y1, x2, y2 = label["box"]
            ok, why = check_topology(label["label"], before[y1:y2, x1:x2], after[y1:y2, x1:x2])
            assert ok, (label["label"], why)
            placed += 1
    assert placed >= 30
