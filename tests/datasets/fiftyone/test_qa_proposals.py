"""``pcbforge qa``'s findings in FiftyOne: one proposal per finding in ``qa_proposals``, a
``qa_<kind>`` view per kind, and the reviewer's ``accept``/``reject`` tags brought back as
``qa_decisions.csv`` (never as labels). ``qa.parquet`` is made by hand here with
:func:`findings_table`, so nothing of qa's runner is needed."""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from pcbforge.cli.main import app
from pcbforge.datasets.dataset import load
from pcbforge.datasets.fiftyone import (
    FROM_FIFTYONE_REPORT,
    from_fiftyone,
    table_view_counts,
    to_fiftyone,
    view_counts,
)
from pcbforge.datasets.fiftyone.export import QA_VIEW_PREFIX
from pcbforge.datasets.fiftyone.write_back import DECISION_COLUMNS
from pcbforge.datasets.qa_tables import (
    ACCEPT,
    BOX_FIT,
    CLASS_SUSPECT,
    DECISIONS_CSV,
    MISSING_LABEL,
    PAIR_ERROR,
    PROPOSALS_FIELD,
    QA_PARQUET,
    REJECT,
    finding_id,
    findings_table,
)

NAN = float("nan")


def _finding(sample_id: str, kind: str, *, label_row: int = -1, label: str = "",
             box=(NAN, NAN, NAN, NAN), action: str = "none", proposed_label: str = "",
             proposed=(NAN, NAN, NAN, NAN), detail: str = "", score: float = 0.5) -> dict:
    x1, y1, x2, y2 = box
    px1, py1, px2, py2 = proposed
    return {"finding_id": finding_id(sample_id, kind, label_row, box), "sample_id": sample_id,
            "kind": kind, "detail": detail, "score": score, "reason": f"{kind} here",
            "label_row": label_row, "label": label, "x1": x1, "y1": y1, "x2": x2, "y2": y2,
            "action": action, "proposed_label": proposed_label,
            "px1": px1, "py1": py1, "px2": px2, "py2": py2}


def _findings(dataset) -> list[dict]:
    """Four findings on the inspection dataset: a refit and a relabel of real boxes, a
    box to add, a broken pair with no box at all."""
    labels, samples = dataset.labels, dataset.samples
    real = labels[~labels["synthetic"]].sort_values("sample_id")
    first, second = real.index[0], real.index[1]
    box = tuple(float(labels.at[first, c]) for c in ("x1", "y1", "x2", "y2"))
    other = tuple(float(labels.at[second, c]) for c in ("x1", "y1", "x2", "y2"))
    corrupt = samples.loc[samples["status"] == "corrupt", "sample_id"].iloc[0]
    return [
        _finding(labels.at[first, "sample_id"], BOX_FIT, label_row=int(first),
                 label=labels.at[first, "label"], box=box, action="refit", detail="too_large",
                 proposed=(box[0] + 8, box[1] + 8, box[2] - 8, box[3] - 8), score=0.9),
        _finding(labels.at[second, "sample_id"], CLASS_SUSPECT, label_row=int(second),
                 label=labels.at[second, "label"], box=other, action="relabel",
                 proposed_label="open" if labels.at[second, "label"] != "open" else "short"),
        _finding(labels.at[first, "sample_id"], MISSING_LABEL, box=(10.0, 20.0, 42.0, 60.0),
                 action="add", proposed_label="spur", proposed=(10.0, 20.0, 42.0, 60.0),
                 detail="defect_like", score=0.75),
        _finding(corrupt, PAIR_ERROR, detail="unreadable"),
    ]


def _write_findings(root: Path, rows: list[dict]) -> pd.DataFrame:
    table = findings_table(rows)
    table.to_parquet(root / QA_PARQUET, index=False)
    return table


def _proposals(fo_dataset) -> dict[str, tuple]:
    """finding id -> (sample key, detection) of every proposal in FiftyOne."""
    found = {}
    for key, detections in zip(fo_dataset.values("pcbforge_id"),
                               fo_dataset.values(f"{PROPOSALS_FIELD}.detections"),
                               strict=True):
        for detection in detections or []:
            found[detection.finding_id] = (key, detection)
    return found


def _tag(fo_dataset, tags: dict[str, list[str]]) -> None:
    """Tag proposals through FiftyOne's Python API, as a reviewer does in the App."""
    for sample in fo_dataset.exists(PROPOSALS_FIELD):
        for detection in sample[PROPOSALS_FIELD].detections:
            if detection.finding_id in tags:
                detection.tags = list(tags[detection.finding_id])
        sample.save()


@pytest.fixture
def qa_root(inspection_dataset, tmp_path) -> Path:
    root = shutil.copytree(inspection_dataset, tmp_path / "ds")
    _write_findings(root, _findings(load(root)))
    return root


def test_every_finding_is_a_proposal_with_its_attributes(fiftyone_db, qa_root, caplog):
    dataset = load(qa_root)
    rows = findings_table(_findings(dataset)).set_index("finding_id")
    stale = _finding("not-a-sample", MISSING_LABEL, box=(1.0, 1.0, 5.0, 5.0))
    _write_findings(qa_root, [*_findings(dataset), stale])
    with caplog.at_level(logging.WARNING):
        fo_dataset = to_fiftyone(qa_root, "qa-proposals")
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("1 findings are about samples that are not in the dataset" in w
               for w in warnings), warnings
    proposals = _proposals(fo_dataset)
    assert set(proposals) == set(rows.index)  # the stale one is not shown
    sizes = dataset.samples.set_index("sample_id")[["width", "height"]]
    for fid, (key, detection) in proposals.items():
        row = rows.loc[fid]
        assert key == row["sample_id"]
        assert detection.label == (row["proposed_label"] or row["kind"])
        assert (detection.kind, detection.detail, detection.action, detection.reason,
                detection.box_label) == (row["kind"], row["detail"], row["action"],
                                         row["reason"], row["label"])
        assert detection.score == pytest.approx(row["score"])
        assert detection.tags == []
        corners = [row[c] for c in ("px1", "py1", "px2", "py2")]
        if any(math.isnan(v) for v in corners):
            corners = [row[c] for c in ("x1", "y1", "x2", "y2")]
        if any(math.isnan(v) for v in corners):
            assert detection.bounding_box == [0.0, 0.0, 1.0, 1.0]
            continue
        width, height = sizes.loc[key, "width"], sizes.loc[key, "height"]
        x1, y1, x2, y2 = corners
        assert detection.bounding_box == pytest.approx(
            [x1 / width, y1 / height, (x2 - x1) / width, (y2 - y1) / height])
    # A refit is drawn at its new box; a relabel (no new box) where the box is.
    refit = rows.index[rows["kind"] == BOX_FIT][0]
    assert proposals[refit][1].bounding_box[0] * sizes.loc[rows.at[refit, "sample_id"],
                                                           "width"] == pytest.approx(
        rows.at[refit, "x1"] + 8)
    # Proposals are not labels: ground_truth is the labels table's.
    assert fo_dataset.count(f"{PROPOSALS_FIELD}.detections") == 4
    assert fo_dataset.count("ground_truth.detections") == len(dataset.labels)
    assert fo_dataset.info["pcbforge"]["proposals_field"] == PROPOSALS_FIELD


def test_a_view_per_kind_counts_what_the_table_says(fiftyone_db, qa_root):
    fo_dataset = to_fiftyone(qa_root, "qa-views")
    counts = view_counts(fo_dataset)
    qa_views = [name for name in counts if name.startswith(QA_VIEW_PREFIX)]
    # In qa's order of kinds, after pcbforge's other views.
    assert qa_views == [QA_VIEW_PREFIX + k for k in (PAIR_ERROR, MISSING_LABEL,
                                                     CLASS_SUSPECT, BOX_FIT)]
    assert list(counts)[-4:] == qa_views
    assert counts == table_view_counts(load(qa_root))
    assert {counts[name] for name in qa_views} == {1}
    for kind in (PAIR_ERROR, CLASS_SUSPECT, BOX_FIT, MISSING_LABEL):
        view = fo_dataset.load_saved_view(QA_VIEW_PREFIX + kind)
        # Only that kind's proposals; the boxes stay.
        assert set(view.distinct(f"{PROPOSALS_FIELD}.detections.kind")) == {kind}


def test_a_rerun_replaces_the_proposals_and_keeps_tags_of_findings_still_there(
        fiftyone_db, qa_root):
    rows = _findings(load(qa_root))
    refit, relabel, add, broken = (row["finding_id"] for row in rows)
    fo_dataset = to_fiftyone(qa_root, "qa-rerun")
    _tag(fo_dataset, {refit: [ACCEPT], relabel: [REJECT]})

    _write_findings(qa_root, rows[:1] + rows[2:])  # qa ran again: the relabel is gone
    again = to_fiftyone(qa_root, "qa-rerun")
    proposals = _proposals(again)
    assert set(proposals) == {refit, add, broken}
    assert proposals[refit][1].tags == [ACCEPT] and proposals[add][1].tags == []
    counts = view_counts(again)
    assert QA_VIEW_PREFIX + CLASS_SUSPECT not in counts
    assert not again.has_saved_view(QA_VIEW_PREFIX + CLASS_SUSPECT)
    assert counts == table_view_counts(load(qa_root))

    (qa_root / QA_PARQUET).unlink()  # no qa any more: field and views go
    gone = to_fiftyone(qa_root, "qa-rerun")
    assert PROPOSALS_FIELD not in gone.get_field_schema()
    assert not [v for v in gone.list_saved_views() if v.startswith(QA_VIEW_PREFIX)]
    assert view_counts(gone) == table_view_counts(load(qa_root))
    assert gone.info["pcbforge"]["proposals_field"] is None


def test_tags_come_back_as_decisions_and_never_as_labels(fiftyone_db, qa_root, tmp_path):
    rows = _findings(load(qa_root))
    refit, relabel, add, broken = (row["finding_id"] for row in rows)
    fo_dataset = to_fiftyone(qa_root, "qa-decisions")
    _tag(fo_dataset, {refit: [ACCEPT], relabel: [REJECT], add: [ACCEPT, REJECT],
                      broken: ["looked_at"]})  # any other tag is no decision
    out = tmp_path / "reviewed"
    report = from_fiftyone("qa-decisions", out)

    assert report["qa_decisions"] == {"accept": 1, "reject": 1, "conflict": 1}
    assert json.loads((out / FROM_FIFTYONE_REPORT).read_text())["qa_decisions"] == \
        report["qa_decisions"]
    decisions = pd.read_csv(out / DECISIONS_CSV, dtype=str, keep_default_na=False)
    by_id = {row["finding_id"]: row for row in rows}
    expected = sorted((fid, by_id[fid]["sample_id"], by_id[fid]["kind"], by_id[fid]["action"],
                       decision)
                      for fid, decision in ((refit, "accept"), (relabel, "reject"),
                                            (add, "conflict")))
    assert list(decisions.columns) == list(DECISION_COLUMNS)
    assert [tuple(r) for r in decisions.itertuples(index=False)] == expected
    # The labels are the source's: no proposal became a box, no decision a label tag.
    source, back = load(qa_root), load(out, check_files=True)
    columns = ["sample_id", "label", "x1", "y1", "x2", "y2"]
    pd.testing.assert_frame_equal(
        back.labels[columns].sort_values(columns).reset_index(drop=True),
        source.labels[columns].sort_values(columns).reset_index(drop=True))
    assert set(back.samples["label_tags"]) == {""}
    assert report["boxes_added"] == report["boxes_removed"] == 0
    # Same tags, same bytes; into the source folder too.
    first = (out / DECISIONS_CSV).read_bytes()
    from_fiftyone("qa-decisions", out)
    assert (out / DECISIONS_CSV).read_bytes() == first
    from_fiftyone("qa-decisions", qa_root)
    assert (qa_root / DECISIONS_CSV).read_bytes() == first


def test_without_qa_parquet_nothing_changes(fiftyone_db, inspection_dataset, tmp_path):
    root = shutil.copytree(inspection_dataset, tmp_path / "ds")
    fo_dataset = to_fiftyone(root, "qa-none")
    assert PROPOSALS_FIELD not in fo_dataset.get_field_schema()
    assert not [v for v in view_counts(fo_dataset) if v.startswith(QA_VIEW_PREFIX)]
    assert view_counts(fo_dataset) == table_view_counts(load(root))
    report = from_fiftyone("qa-none", tmp_path / "back")
    assert "qa_decisions" not in report
    assert not (tmp_path / "back" / DECISIONS_CSV).exists()


def test_an_unreadable_qa_table_is_one_warning_and_no_proposals(fiftyone_db, qa_root,
                                                                 caplog):
    to_fiftyone(qa_root, "qa-broken")
    (qa_root / QA_PARQUET).write_bytes(b"PAR1 half a table")
    with caplog.at_level(logging.WARNING):
        fo_dataset = to_fiftyone(qa_root, "qa-broken")
    warnings = [r.getMessage() for r in caplog.records
                if r.levelno >= logging.WARNING and QA_PARQUET in r.getMessage()]
    assert len(warnings) == 1 and "not a readable parquet table" in warnings[0], warnings
    assert len(warnings[0].splitlines()) == 1
    assert PROPOSALS_FIELD not in fo_dataset.get_field_schema()
    assert view_counts(fo_dataset) == table_view_counts(load(qa_root))
    assert not [v for v in view_counts(fo_dataset) if v.startswith(QA_VIEW_PREFIX)]


def test_the_cli_counts_the_decisions_and_says_what_comes_next(fiftyone_db, qa_root,
                                                                tmp_path):
    runner = CliRunner()
    run = runner.invoke(app, ["view", str(qa_root), "--name", "qa-cli", "--no-launch"])
    assert run.exit_code == 0, run.output
    assert "qa_missing_label" in run.output and "(table:" not in run.output
    refit = _findings(load(qa_root))[0]["finding_id"]
    _tag(fiftyone_db.load_dataset("qa-cli"), {refit: [ACCEPT]})
    out = tmp_path / "reviewed"
    run = runner.invoke(app, ["view", "--from-fiftyone", "qa-cli", "--out", str(out)])
    assert run.exit_code == 0, run.output
    assert "; qa decisions: accept 1, reject 0, conflict 0 | report:" in run.output
    assert (f"next: pcbforge qa {qa_root.resolve()} --apply {out / DECISIONS_CSV} --out NEW"
            in run.output)
