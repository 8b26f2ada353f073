"""Accepted findings -> a corrected new dataset; the source is never changed. The round
trip through the FiftyOne App's tags, too."""

from __future__ import annotations

import pandas as pd
import pytest

from pcbforge.core.boxes import iou
from pcbforge.datasets.dataset import load, save
from pcbforge.datasets.qa_tables import ACCEPT, PROPOSALS_FIELD, REJECT
from pcbforge.qa import apply_findings, run_qa
from pcbforge.qa.apply import APPLY_REPORT, ApplyError, read_accepted
from tests.qa.pairs import LABELLED_SHORT, SHORT, padded


def _boxes(dataset, sample_id: str) -> list[tuple]:
    rows = dataset.labels[dataset.labels["sample_id"] == sample_id]
    return [(r.label, (r.x1, r.y1, r.x2, r.y2)) for r in rows.itertuples()]


def test_accepting_every_proposal_fixes_every_planted_error(planted, tmp_path):
    run_qa(planted, crops_per_kind=0)
    before = (planted / "labels.parquet").read_bytes()
    findings = pd.read_parquet(planted / "qa.parquet")
    report = apply_findings(planted, findings["finding_id"].tolist(), tmp_path / "fixed")
    assert (planted / "labels.parquet").read_bytes() == before  # never in place
    assert report["applied"] == 4 and report["skipped"] == 1  # the registration: no change
    assert report["applied_by_action"] == {"add": 1, "delete": 1, "move": 1, "relabel": 1}
    fixed = load(tmp_path / "fixed", check_files=True)
    added = [b for label, b in _boxes(fixed, "s_deleted") if label == "short"]
    assert len(added) == 1 and iou(added[0], padded(SHORT)) > 0.7
    assert [label for label, _ in _boxes(fixed, "s_phantom")] == ["short"]
    (label, moved), = _boxes(fixed, "s_moved")
    assert label == "short" and iou(moved, LABELLED_SHORT) > 0.6
    assert [label for label, _ in _boxes(fixed, "s_swapped")] == ["short"]
    # qa on the corrected dataset finds only the registration left.
    run_qa(tmp_path / "fixed", crops_per_kind=0)
    left = pd.read_parquet(tmp_path / "fixed" / "qa.parquet")
    assert left["kind"].tolist() == ["misregistered"]
    assert (tmp_path / "fixed" / APPLY_REPORT).is_file()


def test_a_box_is_found_again_after_the_labels_were_reordered(planted, tmp_path):
    run_qa(planted, crops_per_kind=0)
    findings = pd.read_parquet(planted / "qa.parquet")
    dataset = load(planted)
    dataset.labels = dataset.labels.iloc[::-1].reset_index(drop=True)  # rows renumbered
    save(dataset)
    swapped = findings[findings["kind"] == "class_suspect"]["finding_id"].tolist()
    apply_findings(planted, swapped, tmp_path / "fixed")
    fixed = load(tmp_path / "fixed")
    assert [label for label, _ in _boxes(fixed, "s_swapped")] == ["short"]
    assert sorted(fixed.labels["label"]) == sorted(
        dataset.labels["label"].replace({"open": "short"}).where(
            dataset.labels["sample_id"] == "s_swapped", dataset.labels["label"]))


def test_a_box_changed_since_qa_ran_is_skipped_with_its_reason(planted, tmp_path):
    run_qa(planted, crops_per_kind=0)
    findings = pd.read_parquet(planted / "qa.parquet")
    dataset = load(planted)
    moved = dataset.labels["sample_id"] == "s_moved"
    dataset.labels.loc[moved, "x1"] += 1
    save(dataset)
    fid = findings.loc[findings["kind"] == "misplaced_box", "finding_id"].tolist()
    report = apply_findings(planted, fid + ["qnotafinding"], tmp_path / "fixed")
    assert report["applied"] == 0
    reasons = {o["finding_id"]: o["reason"] for o in report["findings"]}
    assert "no longer in the labels" in reasons[fid[0]]
    assert "not a finding" in reasons["qnotafinding"]


def test_decisions_files_and_refusals(planted, tmp_path):
    run_qa(planted, crops_per_kind=0)
    findings = pd.read_parquet(planted / "qa.parquet")
    decisions = pd.DataFrame({"finding_id": findings["finding_id"],
                              "decision": [ACCEPT, REJECT] * 2 + [ACCEPT]})
    decisions.to_csv(tmp_path / "decisions.csv", index=False)
    assert read_accepted(tmp_path / "decisions.csv") == findings["finding_id"].iloc[
        [0, 2, 4]].tolist()
    decisions.to_parquet(tmp_path / "decisions.parquet")
    assert read_accepted(tmp_path / "decisions.parquet") == read_accepted(
        tmp_path / "decisions.csv")
    with pytest.raises(ApplyError, match="is the dataset itself"):
        apply_findings(planted, tmp_path / "decisions.csv", planted)
    (tmp_path / "bad.csv").write_text("id\nq1\n")
    with pytest.raises(ApplyError, match="no finding_id column"):
        read_accepted(tmp_path / "bad.csv")
    (planted / "qa.parquet").unlink()
    with pytest.raises(ApplyError, match="run `pcbforge qa"):
        apply_findings(planted, [], tmp_path / "x")


def test_accept_in_fiftyone_then_apply(fiftyone_db, planted, tmp_path):
    from pcbforge.datasets.fiftyone import from_fiftyone, to_fiftyone
    from pcbforge.datasets.qa_tables import DECISIONS_CSV

    run_qa(planted, crops_per_kind=0)
    findings = pd.read_parquet(planted / "qa.parquet").set_index("finding_id")
    fo_dataset = to_fiftyone(planted, "qa-roundtrip")
    # The reviewer accepts the phantom box's deletion and rejects the relabel.
    wanted = {findings.index[findings["kind"] == "empty_box"][0]: [ACCEPT],
              findings.index[findings["kind"] == "class_suspect"][0]: [REJECT]}
    for sample in fo_dataset.exists(PROPOSALS_FIELD):
        for detection in sample[PROPOSALS_FIELD].detections:
            if detection.finding_id in wanted:
                detection.tags = wanted[detection.finding_id]
        sample.save()
    from_fiftyone("qa-roundtrip", tmp_path / "back")
    report = apply_findings(planted, tmp_path / "back" / DECISIONS_CSV, tmp_path / "fixed")
    assert report["accepted"] == 1 and report["applied_by_action"] == {"delete": 1}
    fixed = load(tmp_path / "fixed")
    assert [label for label, _ in _boxes(fixed, "s_phantom")] == ["short"]
    assert [label for label, _ in _boxes(fixed, "s_swapped")] == ["open"]
