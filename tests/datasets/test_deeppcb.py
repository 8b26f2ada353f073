"""DeepPCB layout reader, on generated folders in the same layout."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pcbforge.datasets.deeppcb import (
    DEEPPCB_CLASSES,
    deeppcb_pairs,
    parse_annotation,
    read_deeppcb,
)
from tests.conftest import write_deeppcb_layout

SHARED_DEEPPCB = Path(__file__).resolve().parents[2].parent / "shared/data/deeppcb-trainval"


def test_pairs_for_benchmarks_hold_template_tested_and_boxes(tmp_path):
    write_deeppcb_layout(tmp_path, {"group00001": 2, "group00002": 1}, np.random.default_rng(2))
    pairs = deeppcb_pairs(tmp_path)
    assert len(pairs) == 3
    for template, tested, boxes in pairs:
        assert template.name.endswith("_temp.jpg") and template.is_file()
        assert tested.name == template.name.replace("_temp", "_test") and tested.is_file()
        assert [b[4] for b in boxes] == ["spur", "open"]
        assert all(b[0] < b[2] and b[1] < b[3] for b in boxes)
    only = deeppcb_pairs(tmp_path, {"group00002"})
    assert [p[1].parts[-3] for p in only] == ["group00002"]


def test_reads_pairs_boards_boxes_and_lists(tmp_path):
    boards = {"group00001": 3, "group00002": 2}
    expected = write_deeppcb_layout(tmp_path, boards, np.random.default_rng(0))
    layout = read_deeppcb(tmp_path)
    tested = layout.samples[layout.samples["role"] == "tested"]
    templates = layout.samples[layout.samples["role"] == "template"]
    assert len(tested) == expected["tested"] == len(templates)
    assert set(layout.samples["board"]) == {"group00001", "group00002"}
    assert (tested["template_path"].str.endswith("_temp.jpg")).all()
    assert set(tested["template_path"]) == set(templates["path"])
    assert (layout.samples["listed_in"] == "trainval").all()
    assert len(layout.labels) == expected["boxes"]
    assert set(layout.labels["label"]) == {"spur", "open"}
    assert layout.problems == []


def test_malformed_lines_are_reported_with_file_and_line(tmp_path):
    write_deeppcb_layout(tmp_path, {"group00001": 1}, np.random.default_rng(1))
    annotation = tmp_path / "group00001/00001_not/00001000.txt"
    annotation.write_text("10 10 30 30 2\n10 10 30\n10 10 30 30 9\n40 40 20 20 3\nten 1 2 3 4\n")
    layout = read_deeppcb(tmp_path)
    assert len(layout.labels) == 1 and layout.labels["label"].iloc[0] == "short"
    where = [f"{p.path}:{p.line}" for p in layout.problems]
    assert where == [f"group00001/00001_not/00001000.txt:{n}" for n in (2, 3, 4, 5)]
    assert "unknown defect type 9" in str(layout.problems[1])


def test_missing_template_and_annotation_are_reported(tmp_path):
    write_deeppcb_layout(tmp_path, {"group00001": 2}, np.random.default_rng(2))
    (tmp_path / "group00001/00001/00001000_temp.jpg").unlink()
    (tmp_path / "group00001/00001_not/00001001.txt").unlink()
    layout = read_deeppcb(tmp_path)
    messages = [str(p) for p in layout.problems]
    assert any("00001000_test.jpg: template" in m for m in messages)
    assert any("00001001_test.jpg: annotation" in m for m in messages)


def test_not_a_deeppcb_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no DeepPCB tested images"):
        read_deeppcb(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        read_deeppcb(tmp_path / "nope")


@pytest.mark.parametrize(
    ("line", "label"),
    [("1 2 3 4 1", "open"), ("1,2,3,4,6", "pin-hole"), ("1, 2, 3, 4, 5", "copper")],
    ids=["spaces", "commas", "comma_space"],
)
def test_parse_annotation_separators(line, label):
    boxes, problems = parse_annotation(line, "a.txt")
    assert problems == [] and boxes[0]["label"] == label
    assert (boxes[0]["x1"], boxes[0]["y1"], boxes[0]["x2"], boxes[0]["y2"]) == (1, 2, 3, 4)


def test_classes_follow_deeppcb_type_ids():
    assert DEEPPCB_CLASSES == ("open", "short", "mousebite", "spur", "copper", "pin-hole")


@pytest.mark.skipif(not SHARED_DEEPPCB.is_dir(), reason="DeepPCB train/val not beside the repo")
def test_real_deeppcb_trainval_counts():
    layout = read_deeppcb(SHARED_DEEPPCB)
    assert (layout.samples["role"] == "tested").sum() == 1000
    assert (layout.samples["role"] == "template").sum() == 1000
    assert layout.samples["board"].nunique() == 7
    assert layout.labels["label"].value_counts().to_dict() == {
        "open": 1283, "short": 1028, "mousebite": 1379, "spur": 1142, "copper": 1010,
        "pin-hole": 1031,
    }
    assert layout.problems == []


def test_write_then_read_gives_the_same_pairs_and_boxes(tmp_path):
    from pcbforge.datasets.deeppcb import save_deeppcb

    write_deeppcb_layout(tmp_path / "a", {"group00003": 3}, np.random.default_rng(6))
    first = read_deeppcb(tmp_path / "a")
    tested = first.samples[first.samples["role"] == "tested"].assign(
        sample_id=lambda t: t["path"], split="train"
    )
    labels = first.labels.assign(sample_id=first.labels["path"])
    counts = save_deeppcb(tested, labels, tmp_path / "a", tmp_path / "b")
    assert counts == {"written": 3, "skipped": 0}
    second = read_deeppcb(tmp_path / "b")
    columns = ["path", "label", "x1", "y1", "x2", "y2"]
    pd.testing.assert_frame_equal(
        second.labels[columns].reset_index(drop=True), first.labels[columns].reset_index(drop=True)
    )
    assert (second.samples["listed_in"] == "trainval").all()
    for name in ("00003000_test.jpg", "00003000_temp.jpg"):
        source = (tmp_path / "a/group00003/00003" / name).read_bytes()
        assert (tmp_path / "b/group00003/00003" / name).read_bytes() == source


def test_export_of_a_synthetic_dataset_stays_inside_out(tmp_path):
    """A synthetic dataset's ``board`` is its source board's file path: the DeepPCB
    layout names that board ``groupNNNNN`` instead of making folders of the path."""
    from pcbforge.pipeline import export_dataset
    from pcbforge.synth.pipeline import synthesize, write_boards

    boards = tmp_path / "boards"
    write_boards(boards, count=2, seed=0, size=160)
    synthesize(boards, tmp_path / "synth", count=4, seed=0, workers=1)
    before = sorted(p.name for p in boards.iterdir())
    report = export_dataset(tmp_path / "synth", "deeppcb", tmp_path / "out")
    assert sorted(p.name for p in boards.iterdir()) == before
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.is_dir()) == [
        "group00000", "group00001"]
    assert report["splits"]["all"]["written"] == 4
    images = sorted(p.relative_to(tmp_path / "out").parts[0]
                    for p in (tmp_path / "out").rglob("*.jpg"))
    assert len(images) == 8 and set(images) == {"group00000", "group00001"}  # test + temp
