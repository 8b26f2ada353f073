"""The detector designs the transfer benchmark trains: one registry, one interface.

Every design is a :class:`DetectorDesign`:

* ``train_data(pair)`` / ``test_data(pair)``: what one pair ``(template path, tested path,
  labelled boxes)`` gives to train on / to run on. Pure, picklable top-level functions,
  so any engine can map them over pairs and their results can be cached: they do not
  depend on the seed. A pair with no labels is a defect-free pair (background only).
* ``fit(items, options)``: a fresh model trained on the items of several pairs (a pair's
  item may be repeated to weigh it); ``(model, TrainReport)``. Same items and options:
  same model.
* ``detect(model, items, images, device)``: :class:`Detected` on the test pairs' items,
  each detection named by its pair's tested image, scored with DeepPCB's protocol
  (:mod:`pcbforge.bench.metrics`) by the benchmark.

Designs (:class:`DetectorName`):

* ``reference``: reference model A (:mod:`pcbforge.bench.reference`): candidates from the
  aligned pair difference, a CNN on tested/template crops.
* ``opening``: binarize at 128, XOR, 3x3 opening, candidates, a CNN on
  tested/template/XOR crops (:mod:`pcbforge.bench.opening`).
* ``single-image``: template-free, a CenterNet-style detector on the tested image alone
  (:mod:`pcbforge.bench.single_image`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from pcbforge.bench import opening, reference, single_image
from pcbforge.bench.metrics import Detection, best_truth

PairTask = tuple[str, str, list[tuple[int, int, int, int, str]]]


class DetectorName(str, Enum):
    REFERENCE = "reference"
    OPENING = "opening"
    SINGLE_IMAGE = "single-image"


@dataclass(frozen=True)
class TrainOptions:
    """How one model is trained: epochs, seed (torch and numpy), device, and a logger."""

    epochs: int
    seed: int
    device: str = "cpu"
    log: Callable[[str], None] = print


@dataclass
class Detected:
    """A design's detections on the test pairs, and what else it can say about them
    (e.g. the candidate designs' confusion table)."""

    detections: list[Detection]
    details: dict = field(default_factory=dict)


@dataclass(frozen=True)
class DetectorDesign:
    """One detector design (see the module)."""

    name: str
    summary: str
    default_epochs: int
    train_data: Callable[[PairTask], Any]
    test_data: Callable[[PairTask], Any]
    fit: Callable[[Sequence[Any], TrainOptions], tuple[Any, reference.TrainReport]]
    detect: Callable[[Any, Sequence[Any], Sequence[str], str], Detected]
    #: The candidate boxes of one test item, for designs that have candidates (their
    #: recall bounds what the classifier can find); ``None`` for the others.
    candidates: Callable[[Any], list] | None = None


# -- the two candidate designs: per-pair crops (Samples), candidates + crops to test ------

def reference_train_data(pair: PairTask) -> reference.Samples:
    """Reference model A's training crops of one pair."""
    return reference.pair_samples(pair)


def reference_test_data(pair: PairTask) -> tuple[list, reference.Samples]:
    """Reference model A's candidates of one pair and their crops."""
    return reference.pair_candidates((pair[0], pair[1]))


def opening_train_data(pair: PairTask) -> reference.Samples:
    """The ``opening`` design's training crops of one pair."""
    return opening.pair_samples(pair)


def opening_test_data(pair: PairTask) -> tuple[list, reference.Samples]:
    """The ``opening`` design's candidates of one pair and their crops."""
    return opening.pair_candidates((pair[0], pair[1]))


def fit_crops(items: Sequence[reference.Samples], options: TrainOptions):
    """Reference model A's classifier (as many input channels as the crops) on the
    concatenated crops."""
    return reference.train(reference.Samples.concat(list(items)), epochs=options.epochs,
                           seed=options.seed, device=options.device, log=options.log)


def detect_candidates(model, items: Sequence[tuple[list, reference.Samples]],
                      images: Sequence[str], device: str) -> Detected:
    """Every candidate classified (8 flips/turns averaged), labelled with its likeliest
    defect class, fragments merged per image; details: the confusion table (truth class
    of each candidate, ``background`` for none, -> predicted class -> count) when the
    items carry truths (see :func:`confusion`)."""
    samples = reference.Samples.concat([s for _, s in items])
    probs = reference.classify(model, samples, device=device)
    found, at = [], 0
    for name, (boxes, crops) in zip(images, items, strict=True):
        found += reference.merge_fragments(
            reference.detections(name, boxes, probs[at:at + len(crops)]))
        at += len(crops)
    return Detected(found, {"probabilities": probs})


def confusion(truths: Sequence[list], items: Sequence[tuple[list, Any]],
              probs: np.ndarray) -> dict[str, dict[str, int]]:
    """Truth class of each candidate (``background`` for a candidate matching no defect)
    -> predicted class (argmax, background included) -> count."""
    table: dict[str, dict[str, int]] = {}
    at = 0
    for boxes, (candidates, _) in zip(truths, items, strict=True):
        for k, box in enumerate(candidates):
            best = best_truth(box, boxes)
            truth = boxes[best][4] if best >= 0 else "background"
            predicted = reference.CLASSES[int(np.argmax(probs[at + k]))]
            row = table.setdefault(truth, {})
            row[predicted] = row.get(predicted, 0) + 1
        at += len(candidates)
    return {k: dict(sorted(v.items())) for k, v in sorted(table.items())}


def candidate_boxes(item: tuple[list, Any]) -> list:
    """The candidate boxes of a candidate design's test item."""
    return item[0]


# -- the single-image design: whole tested images ---------------------------------------

def single_image_train_data(pair: PairTask) -> single_image.ImageSample:
    """The tested image and its labelled boxes (none: a negative image)."""
    return single_image.image_sample((pair[1], pair[2]))


def single_image_test_data(pair: PairTask) -> single_image.ImageSample:
    """The tested image alone (its labels are for the metric, not for the detector)."""
    return single_image.image_sample((pair[1], []))


def fit_single_image(items: Sequence[single_image.ImageSample], options: TrainOptions):
    """The CenterNet-style detector on the images."""
    return single_image.train(list(items), epochs=options.epochs, seed=options.seed,
                              device=options.device, log=options.log)


def detect_single_image(model, items: Sequence[single_image.ImageSample],
                        images: Sequence[str], device: str) -> Detected:
    """The detector's peaks on every whole test image."""
    return Detected(single_image.detections(model, images, items, device=device))


DETECTORS: dict[DetectorName, DetectorDesign] = {
    DetectorName.REFERENCE: DetectorDesign(
        "reference", "candidates from the aligned pair difference (thicker than 2 px), "
        "CNN on tested/template crops", 8, reference_train_data, reference_test_data,
        fit_crops, detect_candidates, candidates=candidate_boxes),
    DetectorName.OPENING: DetectorDesign(
        "opening", "binarize at 128, XOR, 3x3 opening, candidates, CNN on "
        "tested/template/XOR crops", 8, opening_train_data, opening_test_data, fit_crops,
        detect_candidates, candidates=candidate_boxes),
    DetectorName.SINGLE_IMAGE: DetectorDesign(
        "single-image", "template-free CenterNet-style detector on the tested image alone",
        12, single_image_train_data, single_image_test_data, fit_single_image,
        detect_single_image),
}


def detector_names() -> list[str]:
    """The registered designs' names, in registry order."""
    return [name.value for name in DETECTORS]


def detector(name: str) -> DetectorDesign:
    """The design called ``name``; ``ValueError`` listing the valid names otherwise."""
    try:
        return DETECTORS[DetectorName(name)]
    except ValueError as err:
        raise ValueError(f"unknown detector {name!r}; valid: {', '.join(detector_names())}"
                         ) from err


__all__ = ["DETECTORS", "Detected", "DetectorDesign", "DetectorName", "PairTask",
           "TrainOptions", "candidate_boxes", "confusion", "detector", "detector_names"]
