"""Optional albumentations stage over a tested/template pair and its defect labels.

:func:`build_augment` turns a preset (a built-in name or a YAML file in albumentations'
own serialisation format) into an ``A.Compose`` that moves the tested image, its template
(``additional_targets={"template": "image"}``, so both get the same geometry and the same
photometric draw), the instance masks and the boxes together. :func:`augment_pair` runs
it once, deterministically from the caller's ``numpy.random.Generator``.

The masks are the truth: after the transform, a defect whose mask is empty (cropped or
shifted away) is dropped with its box and label, and every surviving box is recomputed as
the tight box of its mask. Albumentations' own boxes are only used when no masks are given;
boxes still go through ``BboxParams`` so presets with box-aware crops
(``BBoxSafeRandomCrop``, ``AtLeastOneBBoxRandomCrop``) work. Output size may differ from
input size (a preset may crop, resize or rotate a non-square image by 90 degrees); masks
and boxes are in the output's pixel frame.

Seeding, and why not ``A.Compose(..., seed=...)``: in albumentations 2.0.8
``Compose.set_random_seed(seed)`` (which the ``seed`` argument calls) gives every child
transform its *own* generator seeded with the *same* value, so transforms with equal
``p`` fire together (``HorizontalFlip(p=0.5)`` and ``VerticalFlip(p=0.5)`` are then always
both on or both off). :func:`augment_pair` instead hands one shared pair of generators,
seeded from the caller's ``rng``, to the whole pipeline with ``Compose.set_random_state``,
so transforms draw one after another from a single stream.

Albumentations is imported lazily (after :func:`pcbforge.env.apply_offline_defaults`, so it
does not check PyPI for updates), never at import time of this module.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from importlib import resources
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pcbforge.datasets.masks import mask_box
from pcbforge.env import apply_offline_defaults

if TYPE_CHECKING:
    import albumentations as A


class AugmentPreset(str, Enum):
    """Built-in presets, each a YAML file in ``pcbforge/synth/presets/``."""

    light = "light"  # flips, 90 degree turns, small affine, mild brightness/contrast/gamma/noise
    geometric = "geometric"  # the same geometry, no photometric change


#: Built-in preset files, in the ``presets`` folder of the ``pcbforge.synth`` package.
PRESET_FILES: dict[AugmentPreset, str] = {
    AugmentPreset.light: "light.yaml",
    AugmentPreset.geometric: "geometric.yaml",
}

#: Label fields carried with the boxes: the class name, and the defect's input position
#: (how boxes are matched back to defects when no masks are given).
LABEL_FIELDS = ("labels", "defect_index")

# Binarized boards are re-thresholded here (copper 0, substrate 255).
_BINARY_THRESHOLD = 128
_SEED_HIGH = np.iinfo(np.int64).max


class AugmentConfig(BaseModel):
    """The augment stage of ``pcbforge synth``; ``preset=None`` switches it off."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: A built-in preset name (see :class:`AugmentPreset`) or the path of a YAML file in
    #: albumentations' serialisation format (``A.save(..., data_format="yaml")``).
    preset: str | None = None
    #: Probability that an image is augmented at all (multiplies the preset's own ``p``).
    p: float = Field(default=1.0, ge=0.0, le=1.0)

    @field_validator("preset", mode="before")
    @classmethod
    def _path_to_str(cls, value: object) -> object:
        return str(value) if isinstance(value, PathLike) else value

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, value: str | None) -> str | None:
        if value is not None:
            _read_preset(value)  # raises ValueError: unknown name, missing or unreadable file
        return value

    def build(self) -> A.Compose | None:
        """The pipeline of :func:`build_augment`, or None when augmenting is off."""
        if self.preset is None:
            return None
        return build_augment(self.preset, p=self.p)


@dataclass(frozen=True)
class Augmented:
    """One augmented pair with its surviving defects.

    ``masks``, ``boxes`` (``(K, 4)`` float64 pixel ``x1, y1, x2, y2``, exclusive ends) and
    ``labels`` are parallel; ``kept`` (``(K,)`` int64, ascending) gives each survivor's
    position in the input lists, so the caller can keep per-defect parameters in step:
    ``params = [params[i] for i in result.kept]``.
    """

    image: np.ndarray
    template: np.ndarray
    masks: list[np.ndarray]
    boxes: np.ndarray
    labels: list[str]
    kept: np.ndarray


def _albumentations() -> Any:
    apply_offline_defaults()  # before the first import: no PyPI update check
    import albumentations

    return albumentations


def _preset_names() -> str:
    return ", ".join(p.value for p in AugmentPreset)


def _read_preset(preset: str | Path) -> tuple[str, str]:
    """``(description for messages, YAML text)`` of a built-in name or a YAML file path."""
    try:
        builtin = AugmentPreset(preset) if isinstance(preset, str) else None
    except ValueError:
        builtin = None
    if builtin is not None:
        folder = resources.files("pcbforge.synth").joinpath("presets")
        resource = folder.joinpath(PRESET_FILES[builtin])
        return f"built-in preset {builtin.value!r}", resource.read_text(encoding="utf-8")
    path = Path(preset)
    if not path.is_file():
        raise ValueError(
            f"unknown augment preset {str(preset)!r}: expected a built-in preset "
            f"({_preset_names()}) or the path of an existing YAML file in albumentations' "
            f"serialisation format (A.save(..., data_format='yaml'))"
        )
    try:
        return f"preset file {str(path)!r}", path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read augment preset file {str(path)!r}: {err}") from err


def _invalid_args(transforms: Sequence[Any]) -> list[str]:
    """``"Transform: arg"`` for every argument albumentations ignored (it only warns)."""
    found = []
    for t in transforms:
        found += [f"{type(t).__name__}: {arg}" for arg in getattr(t, "invalid_args", None) or []]
        found += _invalid_args(getattr(t, "transforms", []))
    return found


def load_preset(preset: str | Path) -> tuple[list[Any], float]:
    """The transforms of a preset and its top-level ``p``.

    A file holding a ``Compose`` gives that Compose's transforms (its ``bbox_params`` and
    ``additional_targets`` are replaced by :func:`build_augment`'s); any other single
    transform (``OneOf``, ``HorizontalFlip``, ...) is returned as a one-item list.
    Raises ``ValueError`` naming the preset when it is unknown, unreadable, not YAML, not in
    albumentations' format, or passes arguments a transform does not take.
    """
    A = _albumentations()
    source, text = _read_preset(preset)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValueError(f"{source} is not valid YAML: {err}") from err
    if not isinstance(data, dict) or not isinstance(data.get("transform"), dict):
        got = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(
            f"{source}: expected albumentations' serialisation format, a mapping with a "
            f"'transform' mapping (as A.save(..., data_format='yaml') writes), got {got}"
        )
    try:
        loaded = A.from_dict(data)
    except KeyError as err:
        raise ValueError(
            f"{source}: unknown transform or missing '__class_fullname__': {err}"
        ) from err
    except (TypeError, ValueError, AttributeError) as err:
        raise ValueError(f"{source}: cannot build the transforms: {err}") from err
    if type(loaded) is A.Compose:
        transforms, p = list(loaded.transforms), float(loaded.p)
    elif isinstance(loaded, A.BaseCompose | A.BasicTransform):
        transforms, p = [loaded], 1.0
    else:
        raise ValueError(
            f"{source}: expected an albumentations transform, got {type(loaded).__name__}"
        )
    invalid = _invalid_args(transforms)
    if invalid:
        raise ValueError(f"{source}: argument(s) not taken by the transform: {', '.join(invalid)}")
    return transforms, p


def build_augment(preset: str | Path, *, p: float = 1.0) -> A.Compose:
    """The augment pipeline of a preset, ready for :func:`augment_pair`.

    Boxes go through ``BboxParams(format="pascal_voc", label_fields=LABEL_FIELDS,
    clip=True, filter_invalid_bboxes=True)``; the template is an ``"image"`` target; every
    mask is resized with nearest-neighbour interpolation (whatever the preset says) so masks
    stay 0/1. The Compose runs with probability ``p`` times the preset's own top-level ``p``.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
    A = _albumentations()
    transforms, preset_p = load_preset(preset)
    return A.Compose(
        transforms,
        bbox_params=A.BboxParams(
            format="pascal_voc",
            label_fields=list(LABEL_FIELDS),
            clip=True,
            filter_invalid_bboxes=True,
        ),
        additional_targets={"template": "image"},
        mask_interpolation=0,  # cv2.INTER_NEAREST
        p=p * preset_p,
    )


def _check_inputs(
    image: np.ndarray,
    template: np.ndarray,
    masks: Sequence[np.ndarray] | None,
    boxes: np.ndarray | Sequence[Sequence[float]],
    labels: Sequence[str],
) -> tuple[np.ndarray, list[np.ndarray] | None]:
    gray_or_bgr = image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)
    if image.dtype != np.uint8 or not gray_or_bgr:
        raise ValueError(
            f"image: expected uint8 HxW (gray) or HxWx3 (BGR), got {image.dtype} {image.shape}"
        )
    if template.dtype != np.uint8 or template.shape != image.shape:
        raise ValueError(
            f"template: expected uint8 {image.shape} like the image, "
            f"got {template.dtype} {template.shape}"
        )
    n = len(labels)
    box_array = np.asarray(boxes, dtype=np.float64)
    if box_array.size != 4 * n or (n and box_array.shape[-1] != 4):
        raise ValueError(f"boxes: expected ({n}, 4) for {n} labels, got shape {box_array.shape}")
    box_array = box_array.reshape(n, 4)
    if masks is None:
        return box_array, None
    if len(masks) != n:
        raise ValueError(f"masks: expected {n} (one per label), got {len(masks)}")
    mask_list = [np.asarray(m) for m in masks]
    for i, mask in enumerate(mask_list):
        if mask.shape != image.shape[:2]:
            raise ValueError(f"masks[{i}]: expected shape {image.shape[:2]}, got {mask.shape}")
    return box_array, [(m > 0).astype(np.uint8) for m in mask_list]


def _binarize(image: np.ndarray) -> np.ndarray:
    return np.where(image >= _BINARY_THRESHOLD, 255, 0).astype(np.uint8)


def augment_pair(
    transform: A.Compose,
    image: np.ndarray,
    template: np.ndarray,
    masks: Sequence[np.ndarray] | None,
    boxes: np.ndarray | Sequence[Sequence[float]],
    labels: Sequence[str],
    rng: np.random.Generator,
    *,
    binary: bool,
) -> Augmented:
    """Apply ``transform`` (from :func:`build_augment`) to a pair and its defects.

    ``image``/``template``: uint8 HxW or HxWx3 (BGR), same shape. ``masks``: one HxW 0/1
    mask per defect, or None to take albumentations' boxes as they come. ``boxes``: ``(N,
    4)`` pixel ``x1, y1, x2, y2`` (exclusive ends). ``labels``: N class names.

    Exactly one integer is drawn from ``rng``; equal ``rng`` states give identical bytes out,
    also across processes. ``binary=True`` re-thresholds image and template to 0/255 at 128
    (binarized boards stay binary). Masks always come back 0/1 uint8; defects whose mask is
    empty after the transform are dropped (see :class:`Augmented` ``kept``), the others get
    the tight box of their mask. The inputs are not modified; ``transform``'s random state
    is replaced for the call, so do not share one Compose between threads.
    """
    box_array, mask_list = _check_inputs(image, template, masks, boxes, labels)
    if "bboxes" not in getattr(transform, "processors", {}):
        raise ValueError(
            f"transform: expected an A.Compose from build_augment (with bbox_params), "
            f"got {type(transform).__name__} without box processing"
        )
    seed = int(rng.integers(_SEED_HIGH))
    # One shared stream for the whole pipeline (see the module docstring).
    transform.set_random_state(np.random.default_rng(seed), random.Random(seed))
    data: dict[str, Any] = {
        "image": image,
        "template": template,
        "bboxes": box_array,
        "labels": list(labels),
        "defect_index": list(range(len(labels))),
    }
    if mask_list:  # albumentations cannot take an empty mask list through every transform
        data["masks"] = mask_list
    out = transform(**data)

    out_image = np.array(out["image"], dtype=np.uint8)  # copies: no aliasing of the inputs
    out_template = np.array(out["template"], dtype=np.uint8)
    if binary:
        out_image, out_template = _binarize(out_image), _binarize(out_template)

    if mask_list is None:
        kept = np.array([round(float(i)) for i in out["defect_index"]], dtype=np.int64)
        out_boxes = np.asarray(out["bboxes"], dtype=np.float64).reshape(-1, 4)
        return Augmented(out_image, out_template, [], out_boxes, list(out["labels"]), kept)

    out_masks = [(np.asarray(m) > 0).astype(np.uint8) for m in out.get("masks", [])]
    boxes_by_defect = [mask_box(m) for m in out_masks]
    kept_list = [i for i, box in enumerate(boxes_by_defect) if box is not None]
    return Augmented(
        image=out_image,
        template=out_template,
        masks=[out_masks[i] for i in kept_list],
        boxes=np.array([boxes_by_defect[i] for i in kept_list], dtype=np.float64).reshape(-1, 4),
        labels=[labels[i] for i in kept_list],
        kept=np.array(kept_list, dtype=np.int64),
    )


__all__ = [
    "LABEL_FIELDS",
    "PRESET_FILES",
    "AugmentConfig",
    "AugmentPreset",
    "Augmented",
    "augment_pair",
    "build_augment",
    "load_preset",
]
