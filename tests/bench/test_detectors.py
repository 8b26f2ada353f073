"""The detector registry: every design by name, one interface."""

from __future__ import annotations

import pytest

from pcbforge.bench.detectors import DETECTORS, DetectorName, detector, detector_names


def test_the_three_designs_are_registered_in_order() -> None:
    assert detector_names() == ["reference", "opening", "single-image"]
    for name in detector_names():
        design = detector(name)
        assert design.name == name and design.default_epochs >= 1 and design.summary
        for part in (design.train_data, design.test_data, design.fit, design.detect):
            assert callable(part)
    assert detector(DetectorName.OPENING) is DETECTORS[DetectorName.OPENING]


def test_candidate_designs_expose_their_candidates_and_the_single_image_one_does_not() -> None:
    assert detector("reference").candidates is not None
    assert detector("opening").candidates is not None
    assert detector("single-image").candidates is None


def test_an_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown detector 'yolo'; valid: reference, opening"):
        detector("yolo")


def test_per_pair_functions_are_picklable_for_any_engine() -> None:
    import pickle

    for design in DETECTORS.values():
        assert pickle.loads(pickle.dumps(design.train_data)) is design.train_data
        assert pickle.loads(pickle.dumps(design.test_data)) is design.test_data
