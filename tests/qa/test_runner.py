"""run_qa over a dataset: every planted error found, the files it writes, and checks that
need no template."""

from __future__ import annotations

import json

import pandas as pd

from pcbforge.datasets.dataset import load
from pcbforge.datasets.qa_tables import FINDING_COLUMNS, REGISTRATION_COLUMNS
from pcbforge.qa import QAParams, run_qa
from pcbforge.qa.runner import box_sanity, size_outliers
from tests.qa.pairs import LABELLED_SHORT, board, padded, with_defects, write_dataset


def _found(folder) -> set[tuple[str, str]]:
    table = pd.read_parquet(folder / "qa.parquet")
    return set(zip(table["sample_id"], table["kind"], strict=True))


def test_every_planted_error_is_found_and_the_clean_pair_is_not(planted):
    summary = run_qa(planted, crops_per_kind=2)
    assert _found(planted) == {
        ("s_deleted", "missing_label"), ("s_phantom", "empty_box"),
        ("s_moved", "misplaced_box"), ("s_swapped", "class_suspect"),
        ("s_shifted", "misregistered")}
    assert summary["pairs"] == 6 and summary["samples"] == 6
    assert summary["findings"] == 5 and summary["registration"]["misregistered"] == 1


def test_the_files_it_writes(planted):
    summary = run_qa(planted, crops_per_kind=1)
    table = pd.read_parquet(planted / "qa.parquet")
    assert tuple(table.columns) == FINDING_COLUMNS
    assert pd.read_csv(planted / "qa.csv")["finding_id"].tolist() == table["finding_id"].tolist()
    registration = pd.read_parquet(planted / "qa_registration.parquet")
    assert tuple(registration.columns) == REGISTRATION_COLUMNS
    assert sorted(registration["sample_id"]) == sorted(f"s_{n}" for n in (
        "clean", "deleted", "phantom", "moved", "swapped", "shifted"))
    assert json.loads((planted / "qa.json").read_text()) == summary
    # One crop per kind, each a PNG named in qa.json.
    assert len(summary["crops"]) == 5
    for path in summary["crops"].values():
        assert (planted / path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    load(planted)  # the dataset is still a valid dataset


def test_same_dataset_same_bytes(planted, tmp_path):
    run_qa(planted, tmp_path / "a", workers=1)
    run_qa(planted, tmp_path / "b", workers=2)
    for name in ("qa.parquet", "qa.csv", "qa_registration.parquet", "qa.json"):
        a, b = (tmp_path / "a" / name).read_bytes(), (tmp_path / "b" / name).read_bytes()
        if name == "qa.json":
            a, b = json.loads(a), json.loads(b)
        assert a == b, name
    assert not (planted / "qa.parquet").exists()  # --out elsewhere leaves the dataset alone


def test_register_writes_the_aligned_templates(planted):
    run_qa(planted, register=True, crops_per_kind=0)
    registration = pd.read_parquet(planted / "qa_registration.parquet")
    for sid, path in zip(registration["sample_id"], registration["registered_template"],
                         strict=True):
        assert path == f"qa/registered/{sid}.png" and (planted / path).is_file()
    run_qa(planted, crops_per_kind=0)  # a run without --register removes them
    assert not (planted / "qa" / "registered").exists()


def test_bad_pairs_are_findings_not_crashes(tmp_path):
    root = write_dataset(tmp_path, {
        "ok": (with_defects("short"), board(), [("short", LABELLED_SHORT)]),
        "small": (with_defects("short"), board()[:200, :200], [("short", LABELLED_SHORT)]),
        "gone": (with_defects("short"), board(), [("short", LABELLED_SHORT)]),
    })
    (tmp_path / "images" / "gone_temp.png").unlink()
    run_qa(root, crops_per_kind=0)
    table = pd.read_parquet(root / "qa.parquet")
    assert sorted(zip(table["sample_id"], table["detail"], strict=True)) == [
        ("s_gone", "missing_template"), ("s_small", "size_mismatch")]


def test_box_sanity_without_templates(tmp_path):
    image = with_defects("short")
    root = write_dataset(tmp_path, {"alone": (image, None, [
        ("short", LABELLED_SHORT), ("short", (197, 90, 244, 121)), ("open", (10, 10, 11, 40)),
    ])})
    found = {(f["detail"], f["label_row"]) for f in box_sanity(load(root), QAParams())}
    assert found == {("duplicate", 1), ("degenerate", 2)}
    run_qa(root, crops_per_kind=0)
    summary = json.loads((root / "qa.json").read_text())
    assert summary["pairs"] == 0 and summary["without_template"] == 1


def test_size_outliers_by_class(tmp_path):
    boxes = [("spur", (10 + 12 * i, 10, 30 + 12 * i + i % 3, 30)) for i in range(12)]
    boxes.append(("spur", (0, 100, 200, 300)))  # 100 times the others' area
    root = write_dataset(tmp_path, {"alone": (with_defects("short"), None, boxes)})
    dataset = load(root)
    found = size_outliers(dataset, {"s_alone"}, QAParams())
    assert [(f["detail"], f["label_row"]) for f in found] == [("area", 12)]
    assert size_outliers(dataset, set(), QAParams()) == []


def test_recorded_nuisance_is_not_a_missing_label(tmp_path):
    root = write_dataset(tmp_path, {"syn": (with_defects("short"), board(), [])})
    dataset = load(root)
    samples = dataset.samples
    samples["nuisance_regions"] = ""
    samples.loc[samples["sample_id"] == "s_syn", "nuisance_regions"] = json.dumps(
        [{"kind": "speck", "box": list(padded((205, 100, 236, 110))), "area": 310}])
    from pcbforge.datasets.dataset import save

    save(dataset)
    run_qa(root, crops_per_kind=0)
    assert pd.read_parquet(root / "qa.parquet").empty
