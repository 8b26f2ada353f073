"""``apply_findings``: the corrections of accepted qa findings, written into a new dataset.

The source dataset is never changed. Each accepted finding's proposal (``add``,
``delete``, ``move``, ``refit``, ``relabel``) is applied to the box it names, which is
found again by its sample, class and position (the ``label_row`` of ``qa.parquet`` is
only trusted when that row still holds the same box): a box that changed since qa ran is
skipped, with the reason, never guessed at.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from pcbforge.core.files import write_json
from pcbforge.core.output import staged_output
from pcbforge.datasets.dataset import Dataset, load, read_table, save
from pcbforge.datasets.qa_tables import ACCEPT, ADD, DELETE, MOVE, NONE, QA_PARQUET, REFIT, RELABEL

APPLY_REPORT = "qa_apply_report.json"
#: Box coordinates closer than this (px) are the same (qa rounds them to 0.1 px).
_SAME_PX = 0.06


class ApplyError(ValueError):
    """Input that ``--apply`` cannot use; the message says what to do."""


def read_accepted(path: Path | str) -> list[str]:
    """The accepted finding ids of a CSV or parquet file (``finding_id`` column; with a
    ``decision`` column, only its ``accept`` rows), in file order, without repeats."""
    path = Path(path)
    if not path.is_file():
        raise ApplyError(f"{path}: no such file (expected qa_decisions.csv or a cut-down "
                         "qa.csv)")
    with open(path, "rb") as head:
        parquet = head.read(4) == b"PAR1"
    try:
        table = pd.read_parquet(path) if parquet else pd.read_csv(path, dtype=str)
    except (ValueError, OSError, pd.errors.ParserError) as err:
        raise ApplyError(f"{path}: not a readable table ({err})") from err
    if "finding_id" not in table.columns:
        raise ApplyError(f"{path}: no finding_id column (columns: {list(table.columns)})")
    if "decision" in table.columns:
        table = table[table["decision"].astype(str).str.strip().str.lower() == ACCEPT]
    ids = table["finding_id"].dropna().astype(str).str.strip()
    return list(dict.fromkeys(i for i in ids if i))


def _find_box(labels: pd.DataFrame, finding: dict) -> int | None:
    """Position in ``labels`` of the box ``finding`` is about, or None when no row holds it
    any more."""
    coords = np.array([finding[c] for c in ("x1", "y1", "x2", "y2")], float)

    def same(row: int) -> bool:
        box = labels.iloc[row]
        return (str(box["sample_id"]) == finding["sample_id"]
                and str(box["label"]) == finding["label"]
                and bool(np.all(np.abs(box[["x1", "y1", "x2", "y2"]].to_numpy(float)
                                       - coords) <= _SAME_PX)))

    row = int(finding["label_row"])
    if 0 <= row < len(labels) and same(row):
        return row
    for candidate in np.flatnonzero(labels["sample_id"].astype(str).to_numpy()
                                    == finding["sample_id"]):
        if same(int(candidate)):
            return int(candidate)
    return None


def _proposed(finding: dict) -> tuple[float, float, float, float] | None:
    box = tuple(float(finding[c]) for c in ("px1", "py1", "px2", "py2"))
    return None if any(math.isnan(v) for v in box) else box


def _apply(dataset: Dataset, findings: pd.DataFrame, accepted: list[str]
           ) -> tuple[pd.DataFrame, list[dict]]:
    labels = dataset.labels.reset_index(drop=True).copy()
    classes = set(dataset.info.classes)
    by_id = {str(r["finding_id"]): r for r in findings.to_dict("records")}
    wanted = set(accepted)
    deleted, touched, added, outcome = set(), set(), [], []
    # In qa.parquet's order: the same accepted set gives the same dataset.
    for fid in [f for f in by_id if f in wanted] + [f for f in accepted if f not in by_id]:
        finding = by_id.get(fid)
        if finding is None:
            outcome.append({"finding_id": fid, "applied": False,
                            "reason": "not a finding of this dataset's qa.parquet"})
            continue
        action, why = finding["action"], ""
        row = _find_box(labels, finding) if action != ADD else None
        box = _proposed(finding)
        if action == NONE:
            why = "the finding proposes no change to the labels"
        elif action != ADD and row is None:
            why = "its box is no longer in the labels (changed since qa ran)"
        elif row in deleted:
            why = "its box is deleted by another accepted finding"
        elif action in (MOVE, REFIT) and row in touched:
            why = "its box is already changed by another accepted finding"
        elif action in (ADD, MOVE, REFIT) and box is None:
            why = "the finding has no proposed box"
        elif action in (ADD, RELABEL) and classes and finding["proposed_label"] not in classes:
            why = f"class {finding['proposed_label']!r} is not one of {sorted(classes)}"
        if why:
            outcome.append({"finding_id": fid, "applied": False, "reason": why})
            continue
        if action == DELETE:
            deleted.add(row)
        elif action in (MOVE, REFIT):
            labels.loc[row, ["x1", "y1", "x2", "y2"]] = box
            labels.loc[row, "mask"] = ""  # the mask was of the old place
            touched.add(row)
        elif action == RELABEL:
            labels.loc[row, "label"] = finding["proposed_label"]
        elif action == ADD:
            added.append({"sample_id": finding["sample_id"],
                          "label": finding["proposed_label"], "x1": box[0], "y1": box[1],
                          "x2": box[2], "y2": box[3], "mask": "", "synthetic": False,
                          "params": ""})
        outcome.append({"finding_id": fid, "applied": True, "action": action,
                        "reason": finding["reason"]})
    labels = labels.drop(index=sorted(deleted))
    if added:
        labels = pd.concat([labels, pd.DataFrame(added, columns=labels.columns)],
                           ignore_index=True)
    return labels.reset_index(drop=True), outcome


def apply_findings(dataset: Path | str, accepted: Path | str | list[str],
                   out: Path | str) -> dict:
    """Write ``dataset`` with the corrections of the ``accepted`` findings (ids, or a file
    of them: see :func:`read_accepted`) into the new folder ``out``; return the report
    (also ``out/qa_apply_report.json``)."""
    source = load(dataset)
    out = Path(out)
    if out.resolve() == source.root.resolve():
        raise ApplyError(f"--out {out} is the dataset itself; corrections go into a new "
                         "folder (the source labels stay as they are)")
    if not (source.root / QA_PARQUET).is_file():
        raise ApplyError(f"{source.root}: no {QA_PARQUET}; run `pcbforge qa {dataset}` first")
    findings = read_table(source.root / QA_PARQUET, ("finding_id", "action", "sample_id"))
    ids = read_accepted(accepted) if isinstance(accepted, (str, Path)) else list(accepted)
    labels, outcome = _apply(source, findings, ids)
    info = source.info.model_copy(deep=True)
    info.image_root = str(source.image_root.resolve())
    applied = [o for o in outcome if o["applied"]]
    info.provenance.append({"step": "qa_apply", "source": str(source.root.resolve()),
                            "accepted": len(ids), "applied": len(applied)})
    report = {
        "command": "qa --apply", "dataset": str(dataset), "out": str(out),
        "accepted": len(ids), "applied": len(applied), "skipped": len(outcome) - len(applied),
        "applied_by_action": {a: sum(o.get("action") == a for o in applied)
                              for a in (ADD, DELETE, MOVE, REFIT, RELABEL)
                              if any(o.get("action") == a for o in applied)},
        "boxes_before": len(source.labels), "boxes_after": len(labels),
        "findings": outcome,
    }
    with staged_output(out, command="qa --apply") as stage:
        save(Dataset(stage, source.samples.copy(), labels, info), stage)
        write_json(stage / APPLY_REPORT, report)
    return report


__all__ = ["APPLY_REPORT", "ApplyError", "apply_findings", "read_accepted"]
