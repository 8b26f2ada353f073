"""Detector design ``single-image``: a template-free detector that sees only the tested image.

The kind of detector most teams train: no template, no difference image. A small fully
convolutional network in the CenterNet style (objects as points): at stride 4 it predicts
one heatmap per defect class (a peak at each defect's box centre), the box's width and
height, and the centre's sub-cell offset. It is trained from scratch (no downloaded
weights) with the focal loss on the heatmap and L1 on size and offset, on random
``CROP_PX`` crops with flips and quarter turns; it is run on the whole image, and its
detections are the heatmap's local maxima (3x3 max-pool) above a floor, top ``TOP_K``.

Images with no labels (the tested images of defect-free pairs) are its negatives: crops
whose target heatmap is zero everywhere.

The data side is pure numpy/OpenCV (:func:`image_sample`, :func:`encode_targets`,
:func:`decode`, :func:`random_crop`, :func:`dihedral`); torch is needed only to train and
run the network.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from pcbforge.bench.metrics import Detection
from pcbforge.bench.reference import TrainReport, conv_block, read_gray
from pcbforge.datasets.deeppcb import DEEPPCB_CLASSES

STRIDE = 4  # input px per output cell
CROP_PX = 256  # training crop side (a multiple of ALIGN)
ALIGN = 16  # the network's total stride: inputs are padded to a multiple of it
TOP_K = 100  # detections kept per image, best first
SCORE_FLOOR = 0.01  # heatmap peaks below this are not detections
MIN_VISIBLE = 0.3  # a box cut by a crop stays a target if this share of it is inside


@dataclass(frozen=True)
class ImageSample:
    """One image to train on or run on: its gray pixels as PNG bytes (lossless, small for
    binarized boards), its boxes ``(N, 4)`` float32 ``x1, y1, x2, y2`` and class indices
    ``(N,)`` int64 into :data:`DEEPPCB_CLASSES` (none: a defect-free image)."""

    png: bytes
    boxes: np.ndarray
    classes: np.ndarray

    def image(self) -> np.ndarray:
        """The gray image, decoded."""
        return cv2.imdecode(np.frombuffer(self.png, np.uint8), cv2.IMREAD_GRAYSCALE)


@dataclass(frozen=True)
class Targets:
    """What the network should output for one image (output cells of ``STRIDE`` px):
    ``heatmap`` (C, h, w) in 0..1 with exactly 1 at each box centre's cell, ``size``
    (2, h, w) box width and height in cells and ``offset`` (2, h, w) the centre's position
    inside its cell (0..1), both set only where ``mask`` (h, w) is 1."""

    heatmap: np.ndarray
    size: np.ndarray
    offset: np.ndarray
    mask: np.ndarray


def image_sample(task: tuple[str, list[tuple[int, int, int, int, str]]]) -> ImageSample:
    """The training (or test) sample of one tested image: ``(path, labelled boxes)``."""
    path, truths = task
    ok, png = cv2.imencode(".png", read_gray(path))
    if not ok:
        raise ValueError(f"cannot encode {path}")
    boxes = np.asarray([t[:4] for t in truths], np.float32).reshape(-1, 4)
    classes = np.asarray([DEEPPCB_CLASSES.index(t[4]) for t in truths], np.int64)
    return ImageSample(png.tobytes(), boxes, classes)


def gaussian_radius(height: float, width: float, min_overlap: float = 0.7) -> float:
    """CenterNet's radius (in the same units as the box sides): the largest centre shift
    that still leaves a box of this size with IoU >= ``min_overlap`` to the truth."""
    a1, b1 = 1.0, height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1 ** 2 - 4 * a1 * c1)) / 2
    a2, b2 = 4.0, 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + math.sqrt(b2 ** 2 - 4 * a2 * c2)) / 2
    a3, b3 = 4 * min_overlap, -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def draw_gaussian(heat: np.ndarray, cx: int, cy: int, radius: int) -> None:
    """Raise ``heat`` (h, w) in place to a Gaussian of ``radius`` cells peaking at exactly 1
    on cell ``(cx, cy)`` (the larger value wins where Gaussians meet)."""
    sigma = (2 * radius + 1) / 6.0
    span = np.arange(-radius, radius + 1, dtype=np.float32)
    kernel = np.exp(-(span[None, :] ** 2 + span[:, None] ** 2) / (2 * sigma * sigma))
    height, width = heat.shape
    left, right = min(cx, radius), min(width - cx, radius + 1)
    top, bottom = min(cy, radius), min(height - cy, radius + 1)
    window = heat[cy - top:cy + bottom, cx - left:cx + right]
    patch = kernel[radius - top:radius + bottom, radius - left:radius + right]
    np.maximum(window, patch, out=window)


def encode_targets(boxes: np.ndarray, classes: np.ndarray, shape: tuple[int, int],
                   num_classes: int = len(DEEPPCB_CLASSES)) -> Targets:
    """The :class:`Targets` of boxes in an image of ``shape`` (height, width) px: each box's
    centre cell, Gaussian radius from its size in cells, size and offset at that cell."""
    height, width = math.ceil(shape[0] / STRIDE), math.ceil(shape[1] / STRIDE)
    heatmap = np.zeros((num_classes, height, width), np.float32)
    size = np.zeros((2, height, width), np.float32)
    offset = np.zeros((2, height, width), np.float32)
    mask = np.zeros((height, width), np.float32)
    for (x1, y1, x2, y2), k in zip(boxes, classes, strict=True):
        w, h = (x2 - x1) / STRIDE, (y2 - y1) / STRIDE
        if w <= 0 or h <= 0:
            continue
        cx, cy = (x1 + x2) / 2 / STRIDE, (y1 + y2) / 2 / STRIDE
        ix, iy = min(int(cx), width - 1), min(int(cy), height - 1)
        radius = max(0, int(gaussian_radius(h, w)))
        draw_gaussian(heatmap[int(k)], ix, iy, radius)
        size[:, iy, ix] = w, h
        offset[:, iy, ix] = cx - ix, cy - iy
        mask[iy, ix] = 1.0
    return Targets(heatmap, size, offset, mask)


def decode(heatmap: np.ndarray, size: np.ndarray, offset: np.ndarray, *,
           top_k: int = TOP_K, floor: float = SCORE_FLOOR
           ) -> list[tuple[float, float, float, float, int, float]]:
    """Boxes ``(x1, y1, x2, y2, class, score)`` in input px from network outputs (heatmap
    scores in 0..1): every cell that is the maximum of its 3x3 neighbourhood in its class
    and scores at least ``floor``, the ``top_k`` best, by decreasing score (ties: class,
    then row, then column)."""
    peaks = []
    kernel = np.ones((3, 3), np.uint8)
    for k, heat in enumerate(heatmap.astype(np.float32)):
        top = cv2.dilate(heat, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
        ys, xs = np.nonzero((heat >= top) & (heat >= floor))
        peaks += [(-float(heat[y, x]), k, int(y), int(x)) for y, x in zip(ys, xs, strict=True)]
    peaks.sort()
    out = []
    for negative, k, y, x in peaks[:top_k]:
        cx, cy = (x + offset[0, y, x]) * STRIDE, (y + offset[1, y, x]) * STRIDE
        w, h = max(float(size[0, y, x]), 0.0) * STRIDE, max(float(size[1, y, x]), 0.0) * STRIDE
        out.append((float(cx - w / 2), float(cy - h / 2), float(cx + w / 2), float(cy + h / 2),
                    k, -negative))
    return out


def random_crop(image: np.ndarray, boxes: np.ndarray, classes: np.ndarray,
                rng: np.random.Generator, side: int = CROP_PX
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A ``side`` x ``side`` window at a random place (an image smaller than that is first
    padded with its border) and the boxes in it, clipped; a box less than ``MIN_VISIBLE``
    inside is dropped."""
    height, width = image.shape
    if height < side or width < side:
        image = cv2.copyMakeBorder(image, 0, max(side - height, 0), 0, max(side - width, 0),
                                   cv2.BORDER_REPLICATE)
        height, width = image.shape
    x0 = int(rng.integers(0, width - side + 1))
    y0 = int(rng.integers(0, height - side + 1))
    window = image[y0:y0 + side, x0:x0 + side]
    moved = boxes - np.float32([x0, y0, x0, y0])
    clipped = np.clip(moved, 0, side)
    area = (moved[:, 2] - moved[:, 0]) * (moved[:, 3] - moved[:, 1])
    inside = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    keep = inside >= MIN_VISIBLE * np.maximum(area, 1e-6)
    return window, clipped[keep].reshape(-1, 4), classes[keep]


def dihedral(image: np.ndarray, boxes: np.ndarray, k: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """One of the 8 flips/quarter turns (``k`` in 0..7) of a square image and its boxes:
    bit 2 flips left-right, bits 0-1 turn counter-clockwise (as ``np.rot90``)."""
    side = image.shape[1]
    boxes = boxes.astype(np.float32).copy()
    if k & 4:
        image = image[:, ::-1]
        boxes[:, [0, 2]] = side - boxes[:, [2, 0]]
    for _ in range(k & 3):
        image = np.rot90(image)
        x1, y1, x2, y2 = boxes.T.copy()
        boxes = np.stack([y1, side - x2, y2, side - x1], axis=1)
    return np.ascontiguousarray(image), boxes.reshape(-1, 4)


def build_network(num_classes: int = len(DEEPPCB_CLASSES)):
    """A small encoder-decoder: stride 2-16 encoder, lateral merges back to stride 4, and
    one head for the class heatmaps (logits), box size and offset (~0.2 GMAC on 256 px)."""
    from torch import nn

    class CenterNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.s4 = nn.Sequential(conv_block(1, 16, 2), conv_block(16, 24, 2), conv_block(24, 24))
            self.s8 = nn.Sequential(conv_block(24, 48, 2), conv_block(48, 48))
            self.s16 = nn.Sequential(conv_block(48, 96, 2), conv_block(96, 96))
            self.lat8 = nn.Conv2d(48, 96, 1)
            self.up8 = conv_block(96, 32)
            self.lat4 = nn.Conv2d(24, 32, 1)
            self.up4 = conv_block(32, 32)
            self.head = nn.Sequential(conv_block(32, 32), nn.Conv2d(32, num_classes + 4, 1))
            # A 0.1 prior on every heatmap cell, so the focal loss starts calm.
            self.head[-1].bias.data[:num_classes] = -2.19

        def forward(self, x):
            f4 = self.s4(x)
            f8 = self.s8(f4)
            f16 = self.s16(f8)
            up = nn.functional.interpolate(f16, scale_factor=2, mode="nearest")
            m8 = self.up8(up + self.lat8(f8))
            up = nn.functional.interpolate(m8, scale_factor=2, mode="nearest")
            out = self.head(self.up4(up + self.lat4(f4)))
            return out[:, :num_classes], out[:, num_classes:]

    return CenterNet()


def focal_loss(logits, target):
    """CenterNet's penalty-reduced focal loss (alpha 2, beta 4), per positive cell."""
    import torch

    pred = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    positive = target.eq(1).float()
    pos = torch.log(pred) * (1 - pred) ** 2 * positive
    neg = torch.log(1 - pred) * pred ** 2 * (1 - target) ** 4 * (1 - positive)
    return -(pos.sum() + neg.sum()) / positive.sum().clamp(min=1.0)


def training_batch(samples: Sequence[ImageSample], rng: np.random.Generator
                   ) -> tuple[np.ndarray, ...]:
    """One batch of crops from ``samples`` (one random crop and dihedral turn each):
    images (B, 1, CROP_PX, CROP_PX) float32 in 0..1 and the stacked :class:`Targets`."""
    images, heat, size, offset, mask = [], [], [], [], []
    for sample in samples:
        window, boxes, classes = random_crop(sample.image(), sample.boxes, sample.classes, rng)
        window, boxes = dihedral(window, boxes, int(rng.integers(8)))
        targets = encode_targets(boxes, classes, window.shape)
        images.append(window[None].astype(np.float32) / 255.0)
        heat.append(targets.heatmap)
        size.append(targets.size)
        offset.append(targets.offset)
        mask.append(targets.mask)
    return tuple(np.stack(v) for v in (images, heat, size, offset, mask))


def train(samples: Sequence[ImageSample], *, epochs: int = 12, crops_per_image: int = 2,
          seed: int = 0, device: str = "cpu", batch: int = 16,
          log: Callable[[str], None] = print):
    """Train a fresh :func:`build_network` on ``samples`` (each epoch: ``crops_per_image``
    random crops of every image, shuffled); return ``(model, report)``. Same samples, seed
    and device: same model."""
    import torch

    if not samples:
        raise ValueError("no training images")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_network().to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    per_epoch = len(samples) * crops_per_image
    steps = epochs * math.ceil(per_epoch / batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=2e-3, total_steps=steps)
    start = time.perf_counter()
    model.train()
    for epoch in range(epochs):
        order = np.tile(np.arange(len(samples)), crops_per_image)[rng.permutation(per_epoch)]
        total = 0.0
        for first in range(0, per_epoch, batch):
            pick = order[first:first + batch]
            images, heat, size, offset, mask = (
                torch.from_numpy(v).to(device)
                for v in training_batch([samples[i] for i in pick], rng))
            heat_logits, box = model(images)
            m = mask[:, None]
            n = mask.sum().clamp(min=1.0)
            loss = (focal_loss(heat_logits, heat)
                    + 0.1 * (torch.abs(box[:, :2] - size) * m).sum() / n
                    + (torch.abs(torch.sigmoid(box[:, 2:]) - offset) * m).sum() / n)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            total += loss.item() * len(pick)
        log(f"    epoch {epoch + 1:2d}/{epochs}  loss {total / per_epoch:.3f}")
    model.eval()
    counts = np.bincount(np.concatenate([s.classes for s in samples]),
                         minlength=len(DEEPPCB_CLASSES))
    per_class = {name: int(c) for name, c in zip(DEEPPCB_CLASSES, counts, strict=True)}
    per_class["defect-free images"] = sum(1 for s in samples if not len(s.classes))
    return model, TrainReport(len(samples), per_class, epochs,
                              round(time.perf_counter() - start, 1))


def detect(model, image: np.ndarray, *, device: str = "cpu") -> list[tuple]:
    """:func:`decode`'s boxes for one whole gray image (padded to a multiple of ``ALIGN``
    with its border; boxes clipped to the image)."""
    import torch

    height, width = image.shape
    padded = cv2.copyMakeBorder(image, 0, -height % ALIGN, 0, -width % ALIGN,
                                cv2.BORDER_REPLICATE)
    with torch.no_grad():
        x = torch.from_numpy(padded[None, None].astype(np.float32) / 255.0).to(device)
        heat_logits, box = model(x)
        heat = torch.sigmoid(heat_logits)[0].cpu().numpy()
        box = box[0].cpu().numpy()
    found = decode(heat, box[:2], 1 / (1 + np.exp(-box[2:])))
    return [(max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height)), k, s)
            for x1, y1, x2, y2, k, s in found]


def detections(model, images: Sequence[str], samples: Sequence[ImageSample], *,
               device: str = "cpu") -> list[Detection]:
    """Every detection of the model on each sample's whole image, named ``images[i]``."""
    found = []
    for name, sample in zip(images, samples, strict=True):
        for x1, y1, x2, y2, k, score in detect(model, sample.image(), device=device):
            found.append(Detection(name, DEEPPCB_CLASSES[k], score, (x1, y1, x2, y2)))
    return found


__all__ = ["CROP_PX", "STRIDE", "ImageSample", "Targets", "build_network", "decode", "detect",
           "detections", "dihedral", "draw_gaussian", "encode_targets", "focal_loss",
           "gaussian_radius", "image_sample", "random_crop", "train", "training_batch"]
