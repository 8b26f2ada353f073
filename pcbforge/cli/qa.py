"""``pcbforge qa DATASET``: registration and label checks; ``--apply ACCEPTED --out NEW``
writes the accepted corrections into a new dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.table import Table

from pcbforge.cli._util import (
    EngineOption,
    SchedulerOption,
    WorkersOption,
    engine_options,
    fail,
    workers_of,
)
from pcbforge.engine import EngineKind

#: Findings listed in the terminal (all of them are in qa.parquet / qa.csv).
_SHOWN = 15


def qa_command(
    dataset: Annotated[Path, typer.Argument(help="A pcbforge dataset folder.")],
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Where to write qa's files (default: into DATASET). With "
                            "--apply: the new, corrected dataset folder.")] = None,
    apply: Annotated[Path | None, typer.Option(
        "--apply", metavar="ACCEPTED",
        help="Write the corrections of the accepted findings into --out, a new dataset: "
             "ACCEPTED is a CSV or parquet with a finding_id column (qa_decisions.csv from "
             "`pcbforge view --from-fiftyone`, or qa.csv cut down to the rows you accept); a "
             "decision column, when present, keeps only its 'accept' rows.")] = None,
    register: Annotated[bool, typer.Option(
        "--register", help="Also write each registered template (moved onto its tested "
                           "image) to qa/registered/<sample_id>.png.")] = False,
    copper: Annotated[Literal["dark", "light"] | None, typer.Option(
        help="Which grey levels are copper (default dark, as in DeepPCB).")] = None,
    diff_threshold: Annotated[int | None, typer.Option(
        min=1, max=255, help="Grey levels a pixel must differ by to count as changed "
                             "(default: a quarter of the pair's copper/substrate "
                             "contrast, 64 on binarized scans).")] = None,
    min_region: Annotated[int | None, typer.Option(
        "--min-region", min=1, help="Smallest unlabelled change reported (changed px after "
                                    "a 3x3 opening; default 12).")] = None,
    shift_tolerance: Annotated[float | None, typer.Option(
        min=0, help="Global shift (px) beyond which a pair is misregistered (default "
                    "1.5).")] = None,
    crops: Annotated[int, typer.Option(
        min=0, help="Crops drawn per finding kind and detail (qa/crops/, shown in "
                    "report.html).")] = 20,
    seed: Annotated[int, typer.Option(help="Which findings get crops.")] = 0,
    workers: WorkersOption = 0,
    engine: EngineOption = EngineKind.local,
    scheduler: SchedulerOption = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Check every tested/template pair (registration, changes outside boxes, empty,
    moved and mis-classed boxes, box fit) and every box; write qa.parquet, qa.csv,
    qa_registration.parquet, qa.json and crops. Exit 0 with or without findings."""
    from pcbforge.datasets.dataset import DatasetError
    from pcbforge.qa import QAParams
    from pcbforge.qa.apply import ApplyError, apply_findings

    if apply is not None:
        if out is None:
            fail("--apply needs --out NEW (the corrected dataset is always a new folder)")
        try:
            report = apply_findings(dataset, apply, out)
        except (DatasetError, ApplyError, ValueError) as err:
            fail(err)
        _print_applied(report, out)
        return
    from pcbforge.qa.runner import WORKER_MODULES, run_qa

    given = {"copper": copper, "diff_threshold": diff_threshold, "min_region_px": min_region,
             "shift_tolerance_px": shift_tolerance}
    params = QAParams(**{k: v for k, v in given.items() if v is not None})
    workers = workers_of(workers)
    with engine_options(engine, workers, scheduler, WORKER_MODULES) as run:
        try:
            summary = run_qa(dataset, out, params=params, workers=workers, engine=run,
                             progress=not quiet, register=register, crops_per_kind=crops,
                             seed=seed)
        except (DatasetError, ValueError) as err:
            fail(err)
    _print_summary(summary, (out or dataset))


def _print_summary(summary: dict, where: Path) -> None:
    from pcbforge.datasets.qa_tables import KINDS, NONE, QA_JSON
    from pcbforge.qa.runner import read_findings

    console = Console()
    table = Table(title="qa findings")
    table.add_column("kind")
    table.add_column("detail")
    table.add_column("findings", justify="right")
    details = summary["by_detail"]
    for kind in KINDS:
        for key in sorted(k for k in details if k.split("/")[0] == kind):
            table.add_row(kind, key.split("/", 1)[1], str(details[key]))
    if details:
        console.print(table)
        findings = read_findings(where)
        # Those with a correction to decide on first, surest first.
        top = (findings.assign(_fix=findings["action"] != NONE)
               .sort_values(["_fix", "score"], ascending=False, kind="stable").head(_SHOWN))
        shown = Table(title=f"findings to review first ({len(top)} of {len(findings)}; all "
                            f"in qa.csv)")
        for column in ("sample_id", "kind", "label", "action", "reason"):
            shown.add_column(column, overflow="fold")
        for row in top.itertuples():
            shown.add_row(row.sample_id, row.kind, row.label, row.action, row.reason)
        console.print(shown)
    reg = summary["registration"]
    console.print(
        f"{summary['findings']} findings in {summary['samples']} images "
        f"({summary['pairs']} pairs with a template, {reg['misregistered']} misregistered) "
        f"| report: {where / QA_JSON}", soft_wrap=True)


def _print_applied(report: dict, out: Path) -> None:
    from pcbforge.qa.apply import APPLY_REPORT

    actions = ", ".join(f"{k} {v}" for k, v in report["applied_by_action"].items()) or "none"
    skipped = (f"; {report['skipped']} skipped (see {APPLY_REPORT})"
               if report["skipped"] else "")
    Console().print(
        f"applied {report['applied']} of {report['accepted']} accepted findings ({actions})"
        f"{skipped}; boxes {report['boxes_before']} -> {report['boxes_after']} | dataset: "
        f"{out}", soft_wrap=True)
