"""Reference model A: candidates from the pair difference, classified by a small CNN.

Each candidate (see :mod:`pcbforge.bench.candidates`) is cut from the tested image and
the aligned template as a two-channel square crop, resized to ``CROP`` px, with the
box's width and height as two extra inputs (a resized crop forgets its scale). The
network says which of DeepPCB's six classes the candidate is, or ``background``.
A detection is the candidate's box with its most likely defect class, scored by that
class's probability; same-class detections whose boxes overlap are merged into one
(:func:`merge_fragments`: pieces of one defect).

Crops are pure numpy/OpenCV (:func:`pair_samples`, :func:`pair_candidates`, which any
engine can map over pairs); torch is needed only to train and run the network
(``pip install -e .[bench]``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from pcbforge.bench.candidates import CandidateParams, find_candidates
from pcbforge.bench.metrics import Detection, best_truth
from pcbforge.core.boxes import iou
from pcbforge.datasets.deeppcb import DEEPPCB_CLASSES

CLASSES: tuple[str, ...] = (*DEEPPCB_CLASSES, "background")
BACKGROUND = len(CLASSES) - 1
CROP = 40  # px per side of a crop fed to the network
SIZE_SCALE = 64.0  # box sides are given to the network in units of this many px

Box = tuple[int, int, int, int]


@dataclass
class Samples:
    """Parallel arrays: crops (N, C, CROP, CROP) uint8 (C image channels: 2 for this
    model, tested and aligned template), sizes (N, 2) float32, labels (N,) int64."""

    crops: np.ndarray
    sizes: np.ndarray
    labels: np.ndarray

    @staticmethod
    def empty(channels: int = 2) -> Samples:
        return Samples(np.zeros((0, channels, CROP, CROP), np.uint8), np.zeros((0, 2), np.float32),
                       np.zeros(0, np.int64))

    @staticmethod
    def concat(parts: Sequence[Samples]) -> Samples:
        channels = parts[0].crops.shape[1] if parts else 2
        parts = [p for p in parts if len(p.labels)] or [Samples.empty(channels)]
        return Samples(np.concatenate([p.crops for p in parts]),
                       np.concatenate([p.sizes for p in parts]),
                       np.concatenate([p.labels for p in parts]))

    def __len__(self) -> int:
        return len(self.labels)


def crop_stack(images: Sequence[np.ndarray], box: Box) -> np.ndarray:
    """(len(images), CROP, CROP) uint8: the square around ``box`` (at least 8 px a side)
    cut from each image at the same place (outside the image: its border replicated) and
    resized to ``CROP``."""
    x1, y1, x2, y2 = box
    side = max(x2 - x1, y2 - y1, 8)
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    left, top = int(round(cx - side / 2.0)), int(round(cy - side / 2.0))
    out = np.empty((len(images), CROP, CROP), np.uint8)
    for k, image in enumerate(images):
        pad = side
        padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        window = padded[top + pad:top + pad + side, left + pad:left + pad + side]
        out[k] = cv2.resize(window, (CROP, CROP), interpolation=cv2.INTER_AREA)
    return out


def crop_pair(tested: np.ndarray, template: np.ndarray, box: Box) -> np.ndarray:
    """(2, CROP, CROP) uint8: the square around ``box`` in both images, resized."""
    return crop_stack((tested, template), box)


def box_size(box: Box) -> tuple[float, float]:
    """The box's width and height in units of ``SIZE_SCALE`` px (the network's size input)."""
    return (box[2] - box[0]) / SIZE_SCALE, (box[3] - box[1]) / SIZE_SCALE


def read_gray(path: str) -> np.ndarray:
    """The image at ``path`` as 8-bit gray; ``ValueError`` when it cannot be decoded."""
    image = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise ValueError(f"cannot decode {path}")
    return image


def pair_samples(task: tuple[str, str, list[tuple[int, int, int, int, str]]]) -> Samples:
    """Training crops of one pair: every labelled box, every candidate that matches one
    (with its label) and every other candidate (as background)."""
    template_path, tested_path, truths = task
    tested, template = read_gray(tested_path), read_gray(template_path)
    candidates, aligned = find_candidates(tested, template, CandidateParams())
    crops, sizes, labels = [], [], []

    def add(box: Box, label: int) -> None:
        crops.append(crop_pair(tested, aligned, box))
        sizes.append(box_size(box))
        labels.append(label)

    for x1, y1, x2, y2, name in truths:
        add((x1, y1, x2, y2), DEEPPCB_CLASSES.index(name))
    for box in candidates:
        best = best_truth(box, truths)
        add(box, DEEPPCB_CLASSES.index(truths[best][4]) if best >= 0 else BACKGROUND)
    if not labels:
        return Samples.empty()
    return Samples(np.stack(crops), np.asarray(sizes, np.float32), np.asarray(labels, np.int64))


def pair_candidates(task: tuple[str, str]) -> tuple[list[Box], Samples]:
    """Candidates of one pair to classify: their boxes and crops (labels unknown: -1)."""
    template_path, tested_path = task
    tested, template = read_gray(tested_path), read_gray(template_path)
    boxes, aligned = find_candidates(tested, template, CandidateParams())
    if not boxes:
        return [], Samples.empty()
    return boxes, Samples(np.stack([crop_pair(tested, aligned, b) for b in boxes]),
                          np.asarray([box_size(b) for b in boxes], np.float32),
                          np.full(len(boxes), -1, np.int64))


def conv_block(cin: int, cout: int, stride: int = 1):
    """A 3x3 convolution (no bias, ``stride``), batch norm and ReLU: the unit of the
    benchmark's small networks (needs torch)."""
    from torch import nn

    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def build_network(channels: int = 2):
    """The pair classifier: four conv blocks on ``channels`` crop channels, global pooling,
    box size, two dense layers."""
    import torch
    from torch import nn

    class PairNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()

            self.features = nn.Sequential(
                conv_block(channels, 16), conv_block(16, 16), nn.MaxPool2d(2),  # 20
                conv_block(16, 32), nn.MaxPool2d(2),  # 10
                conv_block(32, 64), nn.MaxPool2d(2),  # 5
                conv_block(64, 96), nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.head = nn.Sequential(nn.Linear(96 + 2, 64), nn.ReLU(inplace=True),
                                      nn.Dropout(0.2), nn.Linear(64, len(CLASSES)))

        def forward(self, crops, sizes):
            return self.head(torch.cat([self.features(crops), sizes], dim=1))

    return PairNet()


def _dihedral(crops, sizes, k: int):
    """One of the 8 rotations/flips (k in 0..7); a quarter turn swaps width and height."""
    import torch

    if k & 4:
        crops = torch.flip(crops, dims=(3,))
    turns = k & 3
    if turns:
        crops = torch.rot90(crops, turns, dims=(2, 3))
        if turns % 2:
            sizes = sizes[:, [1, 0]]
    return crops, sizes


@dataclass
class TrainReport:
    samples: int
    per_class: dict[str, int]
    epochs: int
    seconds: float


def train(samples: Samples, *, epochs: int = 8, seed: int = 0, device: str = "cpu",
          batch: int = 128, log: Callable[[str], None] = print):
    """Train a fresh :func:`build_network` (as many input channels as the crops have) on
    ``samples``; return ``(model, report)``. Same samples, seed and device: same model."""
    import torch

    if not len(samples):
        raise ValueError("no training samples")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_network(samples.crops.shape[1]).to(device)
    counts = np.bincount(samples.labels, minlength=len(CLASSES))
    # Rare classes weigh more (inverse square root of their share); absent ones nothing.
    weights = np.where(counts > 0, 1.0 / np.sqrt(np.maximum(counts, 1) / counts.sum()), 0.0)
    weights = weights / weights[counts > 0].mean()
    loss_fn = torch.nn.CrossEntropyLoss(weight=torch.tensor(weights, dtype=torch.float32,
                                                            device=device))
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    steps = epochs * math.ceil(len(samples) / batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=3e-3, total_steps=steps)
    crops = torch.from_numpy(samples.crops)
    sizes = torch.from_numpy(samples.sizes)
    labels = torch.from_numpy(samples.labels)
    start = time.perf_counter()
    model.train()
    for epoch in range(epochs):
        order = torch.from_numpy(rng.permutation(len(samples)))
        total = 0.0
        for first in range(0, len(samples), batch):
            pick = order[first:first + batch]
            x = crops[pick].to(device, torch.float32) / 255.0
            s = sizes[pick].to(device)
            x, s = _dihedral(x, s, int(rng.integers(8)))
            loss = loss_fn(model(x, s), labels[pick].to(device))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            total += loss.item() * len(pick)
        log(f"    epoch {epoch + 1:2d}/{epochs}  loss {total / len(samples):.3f}")
    model.eval()
    report = TrainReport(len(samples), {CLASSES[i]: int(c) for i, c in enumerate(counts)},
                         epochs, round(time.perf_counter() - start, 1))
    return model, report


def classify(model, samples: Samples, *, device: str = "cpu", batch: int = 512) -> np.ndarray:
    """(N, classes) probabilities, averaged over the 8 rotations/flips."""
    import torch

    out = np.zeros((len(samples), len(CLASSES)), np.float32)
    with torch.no_grad():
        for first in range(0, len(samples), batch):
            x = torch.from_numpy(samples.crops[first:first + batch]).to(device,
                                                                        torch.float32) / 255.0
            s = torch.from_numpy(samples.sizes[first:first + batch]).to(device)
            probs = sum(torch.softmax(model(*_dihedral(x, s, k)), dim=1) for k in range(8))
            out[first:first + batch] = (probs / 8).cpu().numpy()
    return out


def detections(image: str, boxes: list[Box], probs: np.ndarray) -> list[Detection]:
    """One detection per candidate: its most likely defect class and that probability."""
    found = []
    for box, p in zip(boxes, probs, strict=True):
        k = int(np.argmax(p[:BACKGROUND]))
        found.append(Detection(image, DEEPPCB_CLASSES[k], float(p[k]),
                               tuple(float(v) for v in box)))  # type: ignore[arg-type]
    return found


def merge_fragments(found: Sequence[Detection]) -> list[Detection]:
    """One detection per defect: same-class detections of one image whose boxes overlap are
    pieces of one defect, so they become one box (their union) with the best score.

    A defect drawn as several strokes (a dotted brush, a ragged edge) gives several
    candidates, and each alone matches its truth box poorly or is a duplicate, which the
    protocol counts as a false positive. Two labelled defects of one class almost never
    overlap (11 such pairs among the 6,213 boxes of DeepPCB's five train boards), so an
    overlap means one defect. Detections are taken by decreasing score, so a fragment
    joins the strongest box it touches; the result does not depend on the input order.
    """
    order = sorted(found, key=lambda d: (d.image, -d.score, d.label, d.box))
    kept: list[Detection] = []
    for d in order:
        for k, other in enumerate(kept):
            if other.image == d.image and other.label == d.label and iou(other.box, d.box) > 0:
                a, b = other.box, d.box
                kept[k] = Detection(other.image, other.label, other.score,
                                    (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]),
                                     max(a[3], b[3])))
                break
        else:
            kept.append(d)
    return kept


__all__ = ["BACKGROUND", "CLASSES", "CROP", "Samples", "TrainReport", "box_size",
           "build_network", "classify", "conv_block", "crop_pair", "crop_stack", "detections",
           "merge_fragments", "pair_candidates", "pair_samples", "read_gray", "train"]
