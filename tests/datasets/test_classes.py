"""The class vocabulary: built-in aliases, the user's map and added classes, typos refused
with the closest class, new names kept (or refused when strict)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from pydantic import ValidationError

from pcbforge.datasets.classes import (
    BUILTIN_ALIASES,
    PCB_CLASSES,
    ClassVocabulary,
    UnknownClassError,
    canonical,
    class_key,
    class_summary,
    ordered_classes,
    relabel,
    resolve_classes,
    source_label,
    suggest,
)
from pcbforge.datasets.deeppcb import DEEPPCB_CLASSES

PKU_NAMES = ["missing_hole", "mouse_bite", "open_circuit", "short", "spur", "spurious_copper"]


def test_deeppcb_s_classes_are_the_built_in_classes_in_their_order():
    assert PCB_CLASSES == DEEPPCB_CLASSES
    assert list(BUILTIN_ALIASES)[:6] == list(DEEPPCB_CLASSES)
    assert [canonical(name) for name in DEEPPCB_CLASSES] == list(DEEPPCB_CLASSES)


@pytest.mark.parametrize(("name", "expected"), [
    ("open_circuit", "open"), ("Open_circuit", "open"), ("open circuit", "open"),
    ("OPEN", "open"), ("opens", "open"), ("open_circuits", "open"),
    ("short_circuit", "short"), ("Short", "short"), ("shorts", "short"),
    ("mouse_bite", "mousebite"), ("Mouse-Bite", "mousebite"), ("mousebites", "mousebite"),
    ("spurious_copper", "copper"), ("Spurious copper", "copper"), ("Spurs", "spur"),
    ("pinhole", "pin-hole"), ("pin_hole", "pin-hole"), ("Pin Holes", "pin-hole"),
    ("missing_hole", "missing_hole"), ("Missing_hole", "missing_hole"),
], ids=lambda value: str(value))
def test_spellings_of_a_built_in_class_become_that_class(name, expected):
    assert canonical(name) == expected


def test_missing_hole_is_its_own_class_not_a_pin_hole():
    """PKU's missing_hole is an absent drilled hole, DeepPCB's pin-hole a void in copper."""
    assert canonical("missing_hole") == "missing_hole" != canonical("pinhole")
    mapped = ClassVocabulary(map={"missing_hole": "pin-hole"})
    assert canonical("Missing_hole", mapped) == "pin-hole"
    assert canonical("missing holes", mapped) == "pin-hole"


def test_pku_names_give_six_classes_with_missing_hole_kept():
    resolution = resolve_classes(PKU_NAMES)
    assert resolution.classes == ["missing_hole", "mousebite", "open", "short", "spur",
                                  "copper"]
    assert resolution.renamed == {"mouse_bite": "mousebite", "open_circuit": "open",
                                  "spurious_copper": "copper"}
    assert resolution.new == []
    together = ordered_classes([*resolution.classes, *DEEPPCB_CLASSES])
    assert together == [*DEEPPCB_CLASSES, "missing_hole"]
    mapped = resolve_classes(PKU_NAMES, ClassVocabulary(map={"missing_hole": "pin-hole"}))
    assert ordered_classes([*mapped.classes, *DEEPPCB_CLASSES]) == list(DEEPPCB_CLASSES)


@pytest.mark.parametrize(("name", "closest"), [
    ("mousbite", "mousebite"), ("coper", "copper"), ("pin_hoel", "pin-hole"),
    ("spurious_coper", "copper"), ("missng_hole", "missing_hole"), ("mousbites", "mousebite"),
], ids=lambda value: str(value))
def test_a_near_miss_of_a_known_class_is_refused_naming_the_closest(name, closest):
    with pytest.raises(UnknownClassError) as caught:
        canonical(name)
    assert caught.value.name == name and caught.value.suggestion == closest
    message = str(caught.value)
    assert f"unknown class {name!r} (did you mean {closest!r}?)" in message
    assert f"--class-map {name}={closest}" in message and f"--add-class {name}" in message


@pytest.mark.parametrize("name", ["scratch", "shirt", "opening", "person", "car", "a"])
def test_a_name_far_from_every_class_is_kept_as_a_new_class(name):
    assert canonical(name) == name
    resolution = resolve_classes(["open", name])
    assert resolution.new == [name] and resolution.classes == ["open", name]


def test_strict_refuses_every_unknown_name_and_lists_the_known_classes():
    strict = ClassVocabulary(strict=True)
    with pytest.raises(UnknownClassError, match=r"unknown class 'scratch' \(known classes: "
                                                r"open, short, mousebite, spur, copper, "
                                                r"pin-hole, missing_hole\)"):
        canonical("scratch", strict)
    assert canonical("open_circuit", strict) == "open"
    assert canonical("Scratch", ClassVocabulary(add=["scratch"], strict=True)) == "scratch"
    assert canonical("dent", ClassVocabulary(map={"dent": "short"}, strict=True)) == "short"


def test_an_added_class_is_kept_even_when_close_to_a_built_in_one():
    vocabulary = ClassVocabulary(add=["mousbite"])
    assert canonical("mousbite", vocabulary) == "mousbite"
    assert canonical("mouse_bite", vocabulary) == "mousebite"
    assert vocabulary.known_classes()[-1] == "mousbite"


def test_the_map_wins_over_a_built_in_alias_and_resolves_its_target():
    vocabulary = ClassVocabulary(map={"spur": "copper", "defect_a": "Scratch"})
    assert canonical("Spurs", vocabulary) == "copper"
    assert canonical("defect-a", vocabulary) == "Scratch"
    assert canonical("scratch", vocabulary) == "Scratch"  # a class the map names is known
    assert resolve_classes(["scratch"], vocabulary).new == []


@pytest.mark.parametrize(("fields", "message"), [
    ({"map": {"x": "pin_hoel"}}, r"map: 'x' -> unknown class 'pin_hoel' \(did you mean "
                                 r"'pin-hole'\?\)"),
    ({"map": {"x": "scratch"}, "strict": True}, r"map: 'x' -> unknown class 'scratch'"),
    ({"map": {"Missing_Hole": "pin-hole", "missing-hole": "open"}}, r"are one name"),
    ({"add": ["Shorts"]}, r"'Shorts' is the built-in class 'short' already"),
    ({"add": ["scratch", "Scratch"]}, r"are one class"),
    ({"add": ["--"]}, r"needs a letter or digit"),
    ({"mapping": {}}, r"Extra inputs are not permitted"),
], ids=["typo-target", "strict-new-target", "one-name-twice", "builtin-added", "added-twice",
        "empty", "unknown-key"])
def test_a_bad_vocabulary_is_refused_saying_why(fields, message):
    with pytest.raises(ValidationError, match=message):
        ClassVocabulary(**fields)


def test_suggest_and_keys():
    assert class_key(" Mouse_Bite ") == class_key("mouse-bite") == "mousebite"
    assert suggest("mousbite") == "mousebite"
    assert suggest("zzzz") is None
    assert suggest("shrt") == "short"


def test_every_spelling_of_an_added_class_becomes_it():
    vocabulary = ClassVocabulary(add=["scratch"])
    assert {canonical(n, vocabulary) for n in ("Scratch", "scratches", "SCRATCH")} == {
        "scratch"}


def test_new_spellings_of_one_name_become_one_class():
    resolution = resolve_classes(["Scratch", "scratch", "SCRATCH"])
    assert resolution.classes == ["Scratch"] and resolution.new == ["Scratch"]
    assert resolution.renamed == {"scratch": "Scratch", "SCRATCH": "Scratch"}


def _labels(rows) -> pd.DataFrame:
    return pd.DataFrame([{"sample_id": s, "label": label, "x1": 0.0, "y1": 0.0, "x2": 4.0,
                          "y2": 4.0, "mask": "", "synthetic": False, "params": params}
                         for s, label, params in rows])


def test_relabel_keeps_the_source_name_in_params():
    labels = _labels([("a", "open_circuit", ""), ("a", "open", ""),
                      ("b", "mouse_bite", '{"texture_seed":3}'), ("b", "short", "free text")])
    mapping = {"open_circuit": "open", "open": "open", "mouse_bite": "mousebite",
               "short": "short"}
    out = relabel(labels, mapping)
    assert out["label"].tolist() == ["open", "open", "mousebite", "short"]
    assert out["params"].tolist() == ['{"source_label":"open_circuit"}', "",
                                      '{"source_label":"mouse_bite","texture_seed":3}',
                                      "free text"]
    assert [source_label(p) for p in out["params"]] == ["open_circuit", "", "mouse_bite", ""]
    assert labels["label"].tolist()[0] == "open_circuit"  # the caller's table is untouched
    assert relabel(out, {"open": "open"}).equals(out)


def test_class_summary_counts_boxes_per_split_and_images():
    samples = pd.DataFrame({"sample_id": ["a", "b", "c", "d"],
                            "status": ["ok", "ok", "ok", "skipped"],
                            "split": ["train", "val", "", "train"]})
    labels = relabel(_labels([("a", "open_circuit", ""), ("a", "open", ""),
                              ("b", "open", ""), ("c", "missing_hole", ""),
                              ("d", "open", "")]),
                     {"open_circuit": "open"})
    summary = class_summary(samples, labels, [*DEEPPCB_CLASSES, "missing_hole"])
    rows = {row["class"]: row for row in summary["classes"]}
    assert rows["open"]["boxes"] == {"train": 2, "val": 1, "test": 0, "none": 0}
    assert rows["open"]["boxes_not_ok"] == 1 and rows["open"]["images"] == 2
    assert rows["open"]["aliases_seen"] == ["open_circuit"]
    assert rows["missing_hole"]["boxes"]["none"] == 1 and rows["missing_hole"]["builtin"]
    assert summary["count"] == 7 and summary["other"] == []
    assert summary["boxes"] == 5 and summary["boxes_ok"] == 4 and summary["images"] == 3
    assert summary["empty_classes"] == ["short", "mousebite", "spur", "copper", "pin-hole"]
    assert json.loads(json.dumps(summary)) == summary  # JSON as it is
