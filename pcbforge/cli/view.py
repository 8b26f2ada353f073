"""``pcbforge view DATASET``: the dataset in the FiftyOne App, until Ctrl-C.

``pcbforge view --from-fiftyone NAME --out DATASET`` brings the labels and tags edited in
FiftyOne back into a pcbforge dataset.
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pcbforge.cli._util import fail

VIEW_REPORT = "view_report.json"


class _QuietBundledMongo(logging.Filter):
    """FiftyOne warns that the MongoDB it bundles (6.0) is its oldest supported one: not
    something a pcbforge user can act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "oldest supported major version of MongoDB" not in record.getMessage()


def view_command(
    dataset: Annotated[Path | None, typer.Argument(
        help="A pcbforge dataset folder.")] = None,
    name: Annotated[str | None, typer.Option(
        help="FiftyOne dataset name (default: the folder's name).")] = None,
    port: Annotated[int, typer.Option(min=1, max=65535, help="App port.")] = 5151,
    address: Annotated[str, typer.Option(
        help="Address the App listens on. Only loopback (127.0.0.1, ::1, localhost) unless "
             "--allow-remote.")] = "127.0.0.1",
    remote: Annotated[bool, typer.Option(
        "--remote", help="Open no browser here: serve the App to another machine "
                         "(e.g. through ssh -L).")] = False,
    allow_remote: Annotated[bool, typer.Option(
        "--allow-remote", help="Let --address be a non-loopback address (e.g. 0.0.0.0). "
                               "The App has no login and serves any file you can read to "
                               "anyone who reaches the port; prefer `ssh -L 5151:localhost:"
                               "5151 HOST`.")] = False,
    launch: Annotated[bool, typer.Option(
        "--launch/--no-launch", help="Start the App; --no-launch only loads or updates the "
                                     "FiftyOne dataset and prints the summary.")] = True,
    from_fiftyone: Annotated[str | None, typer.Option(
        "--from-fiftyone", metavar="NAME",
        help="Bring the labels and tags of the FiftyOne dataset NAME back into --out.")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="With --from-fiftyone: the dataset folder to write (the source "
                            "dataset, or a new folder).")] = None,
) -> None:
    """Look at every sample, box, duplicate cluster, quality issue and split in the
    FiftyOne App; bring edits made there back with --from-fiftyone."""
    logging.getLogger("fiftyone.core.odm.database").addFilter(_QuietBundledMongo())
    if from_fiftyone is not None:
        if dataset is not None:
            fail("give DATASET to view it, or --from-fiftyone NAME --out DATASET, not both")
        if out is None:
            fail("--from-fiftyone needs --out DATASET (the source dataset or a new folder)")
        _bring_back(from_fiftyone, out)
        return
    if dataset is None:
        fail("give a dataset folder: pcbforge view DATASET")
    if out is not None:
        fail("--out is for --from-fiftyone; pcbforge view DATASET writes nothing but its report")
    if launch:
        _check_address(address, port, allow_remote)
    _view(dataset, name, port, address, remote, launch, allow_remote)


def _check_address(address: str, port: int, allow_remote: bool) -> None:
    """Refuse a non-loopback address without --allow-remote; warn with it. Before any
    work: the check is about what the user asked, not about the dataset."""
    from pcbforge.datasets.fiftyone import is_loopback, remote_warning

    if is_loopback(address):
        return
    if not allow_remote:
        fail(f"refusing to serve the App on {address}: it has no login and its /media "
             f"endpoint serves any file you can read to anyone who reaches port {port}. "
             f"From another machine use `ssh -L {port}:localhost:{port} THIS_HOST`; to "
             "accept the risk, pass --allow-remote")
    Console(stderr=True).print(f"[bold yellow]warning:[/] {escape(remote_warning(address, port))}",
                               soft_wrap=True, highlight=False)


def _view(dataset: Path, name: str | None, port: int, address: str, remote: bool,
          launch: bool, allow_remote: bool = False) -> None:
    from pcbforge.core.files import write_json
    from pcbforge.core.output import staged_output
    from pcbforge.datasets.dataset import DatasetError, load
    from pcbforge.datasets.fiftyone import (
        database_description,
        launch_app,
        shutdown,
        table_view_counts,
        to_fiftyone,
        view_counts,
        view_urls,
    )

    console = Console()
    try:
        fo_dataset = to_fiftyone(dataset, name)
        expected = table_view_counts(load(dataset))
    except (DatasetError, ValueError, FileNotFoundError) as err:
        fail(err)
    counts = view_counts(fo_dataset)
    table = Table()
    table.add_column("saved view")
    table.add_column("samples", justify="right")
    for view, count in counts.items():
        mark = "" if count == expected.get(view) else f" (table: {expected.get(view)})"
        table.add_row(view, f"{count}{mark}")
    console.print(f"FiftyOne dataset {fo_dataset.name!r}: {len(fo_dataset)} samples, "
                  f"{len(counts)} saved views", soft_wrap=True)
    console.print(table)
    report = {
        "command": "view", "dataset": str(dataset), "fiftyone_dataset": fo_dataset.name,
        "samples": len(fo_dataset), "views": counts, "table_counts": expected,
        "counts_match": all(counts[v] == expected.get(v) for v in counts),
        "database": database_description(), "url": None, "view_urls": {},
    }
    if not report["counts_match"]:
        console.print("[yellow]warning:[/] some view counts differ from the samples table")
    if launch:
        try:
            session, report["url"] = launch_app(fo_dataset, port=port, address=address,
                                                remote=remote, allow_remote=allow_remote)
        except (ValueError, OSError) as err:
            fail(err)
        report["view_urls"] = view_urls(fo_dataset, report["url"])
    try:
        # The report joins the dataset like every output: a hard-link copy of the folder
        # with it added, swapped in whole under the folder's writer lock.
        with staged_output(dataset, command="view", clone=True) as stage:
            write_json(stage / VIEW_REPORT, report)
    except BaseException:
        if launch:
            shutdown(session)  # no App left serving when the command ends with an error
        raise
    console.print(f"database: {report['database']} | report: {dataset / VIEW_REPORT}",
                  soft_wrap=True)
    if not launch:
        return
    console.print(f"App: {report['url']}  (Ctrl-C to stop)", soft_wrap=True)
    sys.stdout.flush()
    # Ctrl-C even where the shell started us with SIGINT ignored (a background job), and
    # SIGTERM (a service manager, a test) takes the same clean way out.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        session.wait(-1)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        console.print(shutdown(session))


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _bring_back(name: str, out: Path) -> None:
    from pcbforge.datasets.dataset import DatasetError
    from pcbforge.datasets.fiftyone import FROM_FIFTYONE_REPORT, from_fiftyone

    try:
        report = from_fiftyone(name, out)
    except (DatasetError, ValueError, FileNotFoundError) as err:
        fail(err)
    tags = ", ".join(f"{tag} {count}" for tag, count in report["sample_tags"].items()) or "none"
    decisions = report.get("qa_decisions")
    qa = "" if decisions is None else "; qa decisions: " + ", ".join(
        f"{decision} {count}" for decision, count in decisions.items())
    console = Console()
    console.print(
        f"brought FiftyOne dataset {name!r} back into {out}: {report['samples_in_fiftyone']} "
        f"samples, boxes {report['boxes_before']} -> {report['boxes_after']} "
        f"({report['boxes_unchanged']} unchanged, {report['boxes_added']} added, "
        f"{report['boxes_removed']} removed; a moved box is both); sample tags: {tags}{qa} | "
        f"report: {out / FROM_FIFTYONE_REPORT}",
        soft_wrap=True)
    if decisions is not None:
        from pcbforge.datasets.qa_tables import DECISIONS_CSV

        # The decisions name findings of the dataset qa ran on (its qa.parquet): the source.
        console.print(f"next: pcbforge qa {report['source']} --apply {out / DECISIONS_CSV} "
                      f"--out NEW", soft_wrap=True, highlight=False)
