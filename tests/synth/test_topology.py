"""Tests for the topology rule of each defect class, on hand-drawn copper crops.

Every crop is 0/1 copper (1 = copper), 64x64 px, about the size of a DeepPCB box. Each
case names the only class whose rule it satisfies (or none), so a rule that is too loose
shows up as a second passing class and one that is too strict as no passing class.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pcbforge.synth.topology import (
    DefectClass,
    check_facts,
    check_topology,
    defect_class,
    describe_change,
    keeps_topology,
)

SIZE = 64
ALL_CLASSES = tuple(DefectClass)


def _blank() -> np.ndarray:
    return np.zeros((SIZE, SIZE), np.uint8)


def one_trace() -> np.ndarray:
    """A horizontal trace 14 px wide across the crop (rows 25-38)."""
    crop = _blank()
    crop[25:39, :] = 1
    return crop


def two_traces() -> np.ndarray:
    """Two horizontal traces 12 px wide with a 14 px gap (rows 12-23 and 38-49)."""
    crop = _blank()
    crop[12:24, :] = 1
    crop[38:50, :] = 1
    return crop


def corner() -> np.ndarray:
    """An L-shaped trace 14 px wide: in from the left, down to the bottom."""
    crop = _blank()
    crop[25:39, :39] = 1
    crop[25:, 25:39] = 1
    return crop


def two_stubs() -> np.ndarray:
    """Two traces with a 14 px gap that end inside the crop (top at x=44, bottom at 20)."""
    crop = _blank()
    crop[12:24, :45] = 1
    crop[38:50, 20:] = 1
    return crop


def pad() -> np.ndarray:
    """A 40x40 pad in the middle of the crop."""
    crop = _blank()
    crop[12:52, 12:52] = 1
    return crop


def _disc(crop: np.ndarray, centre: tuple[int, int], radius: int, value: int) -> np.ndarray:
    out = crop.copy()
    cv2.circle(out, centre, radius, value, thickness=-1)
    return out


def _bar(crop: np.ndarray, x0: int, y0: int, x1: int, y1: int, value: int) -> np.ndarray:
    """``crop`` with the rectangle x0..x1, y0..y1 (inclusive) set to ``value``."""
    out = crop.copy()
    cv2.rectangle(out, (x0, y0), (x1, y1), value, thickness=-1)
    return out


# (id, before, after, the one class whose rule holds, or None)
_T1, _T2, _PAD = one_trace(), two_traces(), pad()
CASES = [
    # Each class where its rule holds.
    ("open", _T1, _bar(_T1, 29, 20, 35, 43, 0), DefectClass.open),
    ("open_slanted", _T1, cv2.line(_T1.copy(), (26, 18), (38, 46), 0, 6), DefectClass.open),
    ("short", _T2, _bar(_T2, 29, 20, 34, 41, 1), DefectClass.short),
    ("mousebite", _T1, _disc(_T1, (32, 25), 5, 0), DefectClass.mousebite),
    ("spur", _T2, _bar(_T2, 29, 20, 34, 31, 1), DefectClass.spur),
    ("copper", _T2, _disc(_T2, (32, 31), 4, 1), DefectClass.copper),
    ("pin_hole", _PAD, _disc(_PAD, (32, 32), 5, 0), DefectClass.pin_hole),
    # A ring-shaped hole leaves a crumb of copper inside: still a pin-hole.
    ("pin_hole_ring", _PAD, _disc(_disc(_PAD, (32, 32), 8, 0), (32, 32), 2, 1),
     DefectClass.pin_hole),
    # Counter-examples: the change is of another class, or of none.
    ("short_touching_one_conductor_is_a_spur", _T2, _bar(_T2, 29, 20, 34, 33, 1),
     DefectClass.spur),
    ("open_not_cutting_through_is_a_mousebite", _T1, _bar(_T1, 29, 20, 35, 31, 0),
     DefectClass.mousebite),
    ("pin_hole_open_to_substrate_is_a_mousebite", _PAD, _disc(_PAD, (32, 14), 5, 0),
     DefectClass.mousebite),
    ("spur_as_island_is_copper", _T2, _bar(_T2, 29, 27, 34, 33, 1), DefectClass.copper),
    ("spur_bridging_two_conductors_is_a_short", _T2, _bar(_T2, 20, 20, 26, 41, 1),
     DefectClass.short),
    ("mousebite_cutting_the_trace_is_an_open", _T1, _disc(_T1, (32, 30), 9, 0),
     DefectClass.open),
    ("copper_attached_to_a_conductor_is_a_spur", _T2, _disc(_T2, (32, 26), 4, 1),
     DefectClass.spur),
    ("nothing_changed", _T2, _T2.copy(), None),
    ("thin_edge_band_only", _T2, _bar(_T2, 0, 24, 63, 25, 1), None),
]
CASE_IDS = [case[0] for case in CASES]


def passing(before: np.ndarray, after: np.ndarray) -> set[DefectClass]:
    return {cls for cls in ALL_CLASSES if check_topology(cls, before, after)[0]}


@pytest.mark.parametrize(("before", "after", "expected"), [c[1:] for c in CASES], ids=CASE_IDS)
def test_exactly_one_class_rule_holds(before, after, expected) -> None:
    assert passing(before, after) == ({expected} if expected else set())


@pytest.mark.parametrize(
    ("name", "before", "after", "reason"),
    [
        ("short", _T2, _bar(_T2, 29, 20, 34, 33, 1), "joins no two conductors"),
        ("open", _T1, _bar(_T1, 29, 20, 35, 31, 0), "cuts no conductor in two"),
        ("pin-hole", _PAD, _disc(_PAD, (32, 14), 5, 0), "no hole enclosed by copper"),
        ("spur", _T2, _bar(_T2, 29, 27, 34, 33, 1), "isolated island"),
        ("spur", _T2, _bar(_T2, 20, 20, 26, 41, 1), "joins two conductors"),
        ("mousebite", _T1, _disc(_T1, (32, 30), 9, 0), "cuts a conductor"),
        ("mousebite", _PAD, _disc(_PAD, (32, 32), 5, 0), "hole enclosed by copper"),
        ("copper", _T2, _bar(_T2, 20, 20, 26, 41, 1), "joins two conductors"),
        ("spur", _T1, _bar(_T1, 29, 20, 35, 43, 0), "no copper added"),
        ("open", _T2, _bar(_T2, 29, 20, 34, 41, 1), "no copper removed"),
    ],
    ids=["short_one_side", "open_partial", "pin_hole_open", "spur_island", "spur_bridge",
         "mousebite_cut", "mousebite_enclosed", "copper_bridge", "spur_removes",
         "open_adds"],
)
def test_failure_says_why(name, before, after, reason) -> None:
    ok, why = check_topology(name, before, after)
    assert not ok
    assert reason in why


def _shift(crop: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """``crop`` moved by (dx, dy) px, as misregistration moves a tested image."""
    matrix = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(crop, matrix, (SIZE, SIZE), flags=cv2.INTER_NEAREST,
                          borderMode=cv2.BORDER_REPLICATE)


SHIFTS = [(1, 0), (0, -1), (2, 0), (0, 2), (-2, 1), (2, -2), (1, 1)]
SHIFT_IDS = [f"dx{dx}_dy{dy}" for dx, dy in SHIFTS]
CLEAN = {"corner": corner(), "two_stubs": two_stubs(), "pad": _PAD}


@pytest.mark.parametrize("shift", SHIFTS, ids=SHIFT_IDS)
@pytest.mark.parametrize("crop", list(CLEAN.values()), ids=list(CLEAN))
def test_shift_without_defect_passes_no_class(crop, shift) -> None:
    shifted = _shift(crop, *shift)
    assert not np.array_equal(shifted, crop)  # the shift really changes pixels
    assert passing(crop, shifted) == set()


@pytest.mark.parametrize("shift", [(2, 1), (-1, -2), (1, 0), (0, -2)], ids=str)
def test_np_roll_without_defect_passes_no_class(shift) -> None:
    # The pad is clear of the crop's edges, so rolling wraps only substrate round.
    rolled = np.roll(_PAD, shift, axis=(0, 1))
    assert passing(_PAD, rolled) == set()


def edge_near_border() -> np.ndarray:
    """A trace whose upper edge lies 2 px inside the crop, and a pad below it."""
    crop = _blank()
    crop[2:16, :] = 1
    crop[40:54, 10:50] = 1
    return crop


@pytest.mark.parametrize(
    ("crop", "moved"),
    [
        (edge_near_border(), _shift(edge_near_border(), 0, -2)),
        (edge_near_border().T.copy(), _shift(edge_near_border().T.copy(), -2, 0)),
        (corner(), np.roll(corner(), (2, 1), axis=(0, 1))),
        (two_stubs(), np.roll(two_stubs(), (-1, -2), axis=(0, 1))),
    ],
    ids=["warp_dy-2_edge_at_top", "warp_dx-2_edge_at_left", "roll_corner",
         "roll_two_stubs"],
)
def test_shift_moving_a_band_along_the_crop_border_passes_no_class(crop, moved) -> None:
    assert passing(crop, moved) == set()


DEFECT_CASES = CASES[:8]


@pytest.mark.parametrize("shift", SHIFTS, ids=SHIFT_IDS)
@pytest.mark.parametrize(("before", "after", "expected"), [c[1:] for c in DEFECT_CASES],
                         ids=[c[0] for c in DEFECT_CASES])
def test_shifted_defect_still_passes_its_class(before, after, expected, shift) -> None:
    ok, why = check_topology(expected, before, _shift(after, *shift))
    assert ok, why


def test_describe_change_reports_the_facts() -> None:
    facts = describe_change(_T2, _bar(_T2, 29, 20, 34, 41, 1))
    assert facts["merges"] is True and facts["splits"] is False
    assert facts["added"] == 6 * 14 and facts["removed"] == 0
    facts = describe_change(_PAD, _disc(_PAD, (32, 32), 5, 0))
    assert facts["hole"] is True and facts["added"] == 0 and facts["removed"] > 0


def test_lazy_check_agrees_with_all_facts_on_random_changes() -> None:
    """check_topology computes only the facts a class needs; the verdict must be the one
    the full fact list gives."""
    rng = np.random.default_rng(0)
    for _ in range(60):
        before = (cv2.GaussianBlur(rng.random((40, 40)), (0, 0), 3) > 0.5).astype(np.uint8)
        after = before.copy()
        x, y, r = (int(v) for v in rng.integers(4, 36, 3) % [40, 40, 7] + [0, 0, 2])
        cv2.circle(after, (x, y), r, int(rng.integers(0, 2)), -1)
        facts = describe_change(before, after)
        for name in ALL_CLASSES:
            assert check_topology(name, before, after) == check_facts(name, facts)


def test_keeps_topology_is_no_join_cut_island_or_hole() -> None:
    """Hand cases (a join, a cut, an island, a hole: False; a thin shift: True) and random
    changes that add and remove at once agree with the full fact list."""
    assert not keeps_topology(_T2, _bar(_T2, 29, 20, 34, 41, 1))  # a bridge joins
    assert not keeps_topology(_T1, _bar(_T1, 29, 20, 35, 43, 0))  # a gap cuts
    assert not keeps_topology(_blank(), _disc(_blank(), (32, 32), 4, 1))  # an island
    assert not keeps_topology(_PAD, _disc(_PAD, (32, 32), 5, 0))  # a hole
    assert keeps_topology(_T1, np.roll(_T1, 1, axis=0))  # a 1 px shift: no join, no cut
    rng = np.random.default_rng(1)
    for _ in range(60):
        before = (cv2.GaussianBlur(rng.random((40, 40)), (0, 0), 3) > 0.5).astype(np.uint8)
        after = np.roll(before, tuple(int(v) for v in rng.integers(-3, 4, 2)), axis=(0, 1))
        facts = describe_change(before, after)
        expected = not any(facts[k] for k in ("merges", "splits", "island", "hole"))
        assert keeps_topology(before, after) == expected


def test_crops_of_other_dtypes_are_read_as_copper_where_nonzero() -> None:
    before, after = _T1 * 255, _bar(_T1, 29, 20, 35, 43, 0).astype(bool)
    assert check_topology("open", before, after) == (True, "")


def test_mismatched_crops_raise() -> None:
    with pytest.raises(ValueError, match="same shape|one shape"):
        describe_change(_T1, _T1[:, :32])
    with pytest.raises(ValueError):
        describe_change(np.zeros((4, 4, 3)), np.zeros((4, 4, 3)))


@pytest.mark.parametrize("name", ["scratch", "Short", "pinhole", ""], ids=str)
def test_unknown_class_raises_and_lists_valid_names(name) -> None:
    with pytest.raises(ValueError, match="unknown defect class") as err:
        check_topology(name, _T1, _T1)
    for cls in DefectClass:
        assert cls.value in str(err.value)
    with pytest.raises(ValueError, match="valid classes"):
        defect_class(name)


def test_class_names_and_enum_members_are_interchangeable() -> None:
    assert defect_class("pin-hole") is DefectClass.pin_hole
    assert defect_class(DefectClass.short) is DefectClass.short
    after = _disc(_PAD, (32, 32), 5, 0)
    assert check_topology("pin-hole", _PAD, after) == check_topology(DefectClass.pin_hole,
                                                                     _PAD, after)
