"""Tests for the albumentations augment stage over tested/template pairs."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import pydantic
import pytest
import yaml

from pcbforge.datasets.masks import mask_box
from pcbforge.synth.augment import (
    AugmentConfig,
    Augmented,
    AugmentPreset,
    augment_pair,
    build_augment,
)
from pcbforge.synth.boards import draw_board

SIZE = 256
REPO_ROOT = Path(__file__).resolve().parents[2]
# Filled circles (x, y, radius): one near the left edge, one in the right half.
DEFECTS = ((20, 128, 8), (170, 90, 10))
LABELS = ["spur", "copper"]


def make_pair(kind: str = "binary") -> tuple[np.ndarray, np.ndarray, list[np.ndarray], np.ndarray]:
    """``(tested, template, masks, boxes)``: a procedural board with two copper blobs.

    ``kind``: ``"binary"`` (0/255), ``"gray"`` (blurred, 40..220) or ``"bgr"`` (colour).
    """
    template = draw_board(np.random.default_rng(11), SIZE)
    tested = template.copy()
    masks = []
    for x, y, r in DEFECTS:
        mask = np.zeros((SIZE, SIZE), np.uint8)
        cv2.circle(mask, (x, y), r, 1, thickness=-1)
        tested[mask > 0] = 0
        masks.append(mask)
    boxes = np.array([mask_box(m) for m in masks])
    if kind != "binary":
        tested, template = (
            (40 + cv2.GaussianBlur(a, (5, 5), 0).astype(np.float64) * (180 / 255)).astype(np.uint8)
            for a in (tested, template)
        )
    if kind == "bgr":
        tint = np.array([0.5, 0.9, 0.7])  # greenish solder mask
        tested, template = ((a[..., None] * tint).astype(np.uint8) for a in (tested, template))
    return tested, template, masks, boxes


def run(transform: A.Compose, seed: int, kind: str = "binary", binary: bool = True) -> Augmented:
    tested, template, masks, boxes = make_pair(kind)
    return augment_pair(transform, tested, template, masks, boxes, LABELS,
                        np.random.default_rng(seed), binary=binary)


def digest(result: Augmented) -> str:
    h = hashlib.sha256()
    for a in (result.image, result.template, *result.masks, result.boxes, result.kept):
        h.update(repr((a.shape, a.dtype.str)).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    h.update(repr(result.labels).encode())
    return h.hexdigest()


def light_gray_digest(seed: int) -> str:
    """Run by the cross-process test in a fresh interpreter, too."""
    return digest(run(build_augment("light"), seed, kind="gray", binary=False))


def write_preset(path: Path, transforms: list[dict]) -> Path:
    doc = {"__version__": A.__version__,
           "transform": {"__class_fullname__": "Compose", "p": 1.0, "transforms": transforms}}
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize("preset", list(AugmentPreset), ids=[p.value for p in AugmentPreset])
@pytest.mark.parametrize("kind", ["binary", "gray", "bgr"])
def test_builtin_presets_load_and_run(preset: AugmentPreset, kind: str) -> None:
    transform = build_augment(preset.value)
    tested, _, _, _ = make_pair(kind)
    for seed in range(4):
        out = run(transform, seed, kind=kind, binary=kind == "binary")
        assert out.image.dtype == out.template.dtype == np.uint8
        assert out.image.shape == out.template.shape == tested.shape  # presets keep the size
        assert len(out.masks) == len(out.boxes) == len(out.labels) == len(out.kept)
        assert set(out.kept.tolist()) <= {0, 1}


def test_equal_rng_states_give_identical_bytes() -> None:
    first = run(build_augment("light"), 5, kind="gray", binary=False)
    transform = build_augment("light")
    again = [run(transform, 5, kind="gray", binary=False) for _ in range(2)]
    assert digest(first) == digest(again[0]) == digest(again[1])


def test_identical_bytes_across_processes() -> None:
    code = "from tests.synth.test_augment import light_gray_digest as d; print(d(5))"
    env = {**os.environ, "PYTHONHASHSEED": "12345", "NO_ALBUMENTATIONS_UPDATE": "1"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == light_gray_digest(5)


def test_different_rng_states_differ() -> None:
    transform = build_augment("light")
    digests = {digest(run(transform, seed, kind="gray", binary=False)) for seed in range(8)}
    assert len(digests) >= 6


def test_transforms_draw_independently(tmp_path: Path) -> None:
    # albumentations 2.0's Compose(seed=...) seeds every transform alike, so two p=0.5 flips
    # would always fire together; augment_pair must give them one shared stream instead.
    path = write_preset(tmp_path / "flips.yaml", [
        {"__class_fullname__": "HorizontalFlip", "p": 0.5},
        {"__class_fullname__": "VerticalFlip", "p": 0.5},
    ])
    transform = build_augment(path)
    image = np.arange(64, dtype=np.uint8).reshape(8, 8)
    outcomes = set()
    for seed in range(40):
        out = augment_pair(transform, image, image, [], np.zeros((0, 4)), [],
                           np.random.default_rng(seed), binary=False)
        h = int(out.image[0, 0] in (image[0, -1], image[-1, -1]))
        v = int(out.image[0, 0] in (image[-1, 0], image[-1, -1]))
        outcomes.add((h, v))
    assert outcomes == {(0, 0), (0, 1), (1, 0), (1, 1)}


def test_binary_boards_stay_binary() -> None:
    transform = build_augment("light")
    for seed in range(8):
        out = run(transform, seed)
        assert set(np.unique(out.image)) <= {0, 255}
        assert set(np.unique(out.template)) <= {0, 255}
        for mask in out.masks:
            assert mask.dtype == np.uint8
            assert set(np.unique(mask)) <= {0, 1}


@pytest.mark.parametrize("kind", ["binary", "bgr"])
def test_horizontal_flip_moves_masks_and_boxes_exactly(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "hflip.yaml"
    A.save(A.Compose([A.HorizontalFlip(p=1.0)]), str(path), data_format="yaml")
    tested, template, masks, boxes = make_pair(kind)
    out = run(build_augment(path), 0, kind=kind, binary=kind == "binary")

    np.testing.assert_array_equal(out.image, tested[:, ::-1])
    np.testing.assert_array_equal(out.template, template[:, ::-1])
    assert out.kept.tolist() == [0, 1]
    assert out.labels == LABELS
    for got, mask in zip(out.masks, masks, strict=True):
        np.testing.assert_array_equal(got, mask[:, ::-1])
    x1, y1, x2, y2 = boxes.T
    np.testing.assert_array_equal(out.boxes, np.stack([SIZE - x2, y1, SIZE - x1, y2], axis=1))


def test_without_masks_boxes_come_from_albumentations(tmp_path: Path) -> None:
    path = write_preset(tmp_path / "hflip.yaml", [{"__class_fullname__": "HorizontalFlip", "p": 1}])
    tested, template, _, boxes = make_pair()
    out = augment_pair(build_augment(path), tested, template, None, boxes, LABELS,
                       np.random.default_rng(0), binary=True)
    x1, y1, x2, y2 = boxes.T
    np.testing.assert_allclose(out.boxes, np.stack([SIZE - x2, y1, SIZE - x1, y2], axis=1))
    assert out.kept.tolist() == [0, 1]
    assert out.labels == LABELS
    assert out.masks == []


def test_template_receives_the_same_geometry() -> None:
    transform = build_augment("geometric")
    tested, template, _, _ = make_pair("gray")
    moved = 0
    for seed in range(12):
        # Equal inputs come out equal only if both got the same geometric draw.
        same = augment_pair(transform, template, template.copy(), [], np.zeros((0, 4)), [],
                            np.random.default_rng(seed), binary=False)
        np.testing.assert_array_equal(same.image, same.template)
        moved += not np.array_equal(same.image, template)

        # With defects, the pair differs only at (the moved) defects.
        out = run(transform, seed)
        near_defects = cv2.dilate(np.maximum.reduce(out.masks), np.ones((5, 5), np.uint8))
        assert not np.any((out.image != out.template) & (near_defects == 0))
    assert moved >= 8


def test_defect_cropped_away_is_dropped(tmp_path: Path) -> None:
    path = write_preset(tmp_path / "crop.yaml", [
        {"__class_fullname__": "Crop", "p": 1.0,
         "x_min": 128, "y_min": 0, "x_max": SIZE, "y_max": SIZE},
    ])
    tested, template, masks, _ = make_pair()
    out = run(build_augment(path), 0)

    assert out.image.shape == out.template.shape == (SIZE, SIZE - 128)
    np.testing.assert_array_equal(out.image, tested[:, 128:])
    assert out.kept.tolist() == [1]  # the left-edge defect is gone, with its label
    assert out.labels == [LABELS[1]]
    np.testing.assert_array_equal(out.masks[0], masks[1][:, 128:])
    assert out.boxes.tolist() == [list(mask_box(masks[1][:, 128:]))]


def test_no_defects() -> None:
    tested, template, _, _ = make_pair()
    out = augment_pair(build_augment("light"), tested, template, [], np.zeros((0, 4)), [],
                       np.random.default_rng(0), binary=True)
    assert out.boxes.shape == (0, 4)
    assert out.masks == [] and out.labels == [] and out.kept.tolist() == []


def test_inputs_are_not_modified() -> None:
    tested, template, masks, boxes = make_pair("gray")
    copies = [a.copy() for a in (tested, template, *masks, boxes)]
    for seed in range(4):
        augment_pair(build_augment("light"), tested, template, masks, boxes, LABELS,
                     np.random.default_rng(seed), binary=False)
    for before, after in zip(copies, (tested, template, *masks, boxes), strict=True):
        np.testing.assert_array_equal(before, after)


def test_unknown_preset_lists_the_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown augment preset 'heavy'") as info:
        build_augment("heavy")
    assert "light" in str(info.value) and "geometric" in str(info.value)
    assert "YAML file" in str(info.value)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("transform: [unclosed\n", "not valid YAML"),
        ("- HorizontalFlip\n", "expected albumentations' serialisation format"),
        ("transform:\n  __class_fullname__: NoSuchTransform\n  p: 1\n", "unknown transform"),
        pytest.param("transform:\n  __class_fullname__: HorizontalFlip\n  p: 1\n  bogus: 2\n",
                     "HorizontalFlip: bogus",  # albumentations only warns; we raise
                     marks=pytest.mark.filterwarnings("ignore:Argument.*not valid:UserWarning")),
        ("transform:\n  __class_fullname__: Affine\n  p: 1\n  scale: big\n",
         "cannot build the transforms"),
    ],
    ids=["not-yaml", "not-a-mapping", "unknown-class", "unknown-arg", "bad-value"],
)
def test_bad_preset_file_names_the_file(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=reason) as info:
        build_augment(path)
    assert str(path) in str(info.value)


def test_input_shapes_are_checked() -> None:
    tested, template, masks, boxes = make_pair()
    transform = build_augment("geometric")
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"template: expected uint8 \(256, 256\)"):
        augment_pair(transform, tested, template[:128], masks, boxes, LABELS, rng, binary=True)
    with pytest.raises(ValueError, match="masks: expected 2"):
        augment_pair(transform, tested, template, masks[:1], boxes, LABELS, rng, binary=True)
    with pytest.raises(ValueError, match=r"boxes: expected \(2, 4\)"):
        augment_pair(transform, tested, template, masks, boxes[:1], LABELS, rng, binary=True)
    with pytest.raises(ValueError, match="expected an A.Compose from build_augment"):
        augment_pair(A.Compose([A.HorizontalFlip()]), tested, template, masks, boxes, LABELS,
                     rng, binary=True)


def test_config(tmp_path: Path) -> None:
    assert AugmentConfig().build() is None
    assert isinstance(AugmentConfig(preset="light", p=0.5).build(), A.Compose)
    path = write_preset(tmp_path / "mine.yaml", [{"__class_fullname__": "VerticalFlip", "p": 1}])
    assert AugmentConfig(preset=path).preset == str(path)
    with pytest.raises(pydantic.ValidationError, match="light, geometric"):
        AugmentConfig(preset="heavy")
    with pytest.raises(pydantic.ValidationError, match="extra"):
        AugmentConfig(preset="light", strength=2)
    with pytest.raises(pydantic.ValidationError):
        AugmentConfig(preset="light", p=1.5)
