"""Reference model A's post-processing: one detection per defect."""

from __future__ import annotations

import itertools

import numpy as np

from pcbforge.bench.metrics import Detection, Truth, evaluate
from pcbforge.bench.reference import CROP, Samples, crop_pair, crop_stack, merge_fragments


def test_crops_of_several_images_are_cut_at_the_same_place() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 256, (2, 120, 100), dtype=np.uint8)
    box = (90, 5, 130, 25)  # runs off the right edge: the border is replicated
    stack = crop_stack((a, b, a), box)
    assert stack.shape == (3, CROP, CROP)
    assert np.array_equal(stack[:2], crop_pair(a, b, box)) and np.array_equal(stack[0], stack[2])


def test_samples_keep_their_channel_count_when_concatenated_empty() -> None:
    assert Samples.concat([Samples.empty(3)]).crops.shape == (0, 3, CROP, CROP)
    assert Samples.concat([]).crops.shape == (0, 2, CROP, CROP)


def test_overlapping_pieces_of_one_class_become_one_box_with_the_best_score() -> None:
    pieces = [Detection("a", "copper", 0.6, (10, 10, 40, 40)),
              Detection("a", "copper", 0.9, (30, 12, 60, 38)),
              Detection("a", "copper", 0.4, (55, 20, 80, 50))]
    merged = merge_fragments(pieces)
    assert merged == [Detection("a", "copper", 0.9, (10, 10, 80, 50))]


def test_other_classes_other_images_and_separate_boxes_stay_apart() -> None:
    dets = [Detection("a", "copper", 0.9, (10, 10, 40, 40)),
            Detection("a", "spur", 0.8, (20, 20, 50, 50)),  # another class
            Detection("b", "copper", 0.7, (20, 20, 50, 50)),  # another image
            Detection("a", "copper", 0.6, (40, 10, 70, 40))]  # touches only along an edge
    assert sorted(merge_fragments(dets), key=lambda d: -d.score) == dets


def test_the_result_does_not_depend_on_the_input_order() -> None:
    dets = [Detection("a", "open", 0.5, (0, 0, 20, 20)),
            Detection("a", "open", 0.7, (15, 15, 35, 35)),
            Detection("a", "open", 0.3, (100, 100, 120, 120)),
            Detection("a", "short", 0.9, (5, 5, 25, 25))]
    outcomes = {tuple(merge_fragments(list(p))) for p in itertools.permutations(dets)}
    assert len(outcomes) == 1


def test_a_defect_split_in_pieces_is_found_once_instead_of_missed() -> None:
    truth = [Truth("a", "copper", (0, 0, 90, 30))]
    # A dotted stroke: four candidates, none with IoU > 0.33 against the defect's box.
    pieces = [Detection("a", "copper", 0.9 - 0.1 * k, (22 * k, 0, 22 * k + 25, 30))
              for k in range(4)]
    assert evaluate(pieces, truth, ("copper",)).ap["copper"] == 0.0
    merged = merge_fragments(pieces)
    assert merged == [Detection("a", "copper", 0.9, (0, 0, 91, 30))]
    assert evaluate(merged, truth, ("copper",)).ap["copper"] == 1.0
