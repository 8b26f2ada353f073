"""``pcbforge mine DATASET --predictions P``: the images to look at or label next, ranked
from a model's predictions (labelled images by its errors, unlabelled ones by its
uncertainty), kept in ``DATASET/mining/NAME/``; ``--export`` writes the chosen images as a
labelling batch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from pcbforge.cli._util import PredictionFormatOption, fail, validation_message
from pcbforge.datasets.dataset import DatasetError
from pcbforge.evaluate.mine import MINING_DIR, BatchFormat, MineKind, mine_dataset, read_ranked


def mine_command(
    dataset: Annotated[Path, typer.Argument(help="A pcbforge dataset folder.")],
    predictions: Annotated[Path, typer.Option(
        "--predictions", "-p",
        help="The model's predictions: a COCO results JSON, a folder of YOLO or DeepPCB txt "
             "files, or a pcbforge table (parquet or csv).")],
    fmt: PredictionFormatOption = "coco-results",
    second: Annotated[Path | None, typer.Option(
        "--second", help="A second prediction set (another model, or another run) on the "
                         "same images: their disagreement adds to the uncertainty.")] = None,
    second_format: Annotated[str | None, typer.Option(
        "--second-format", help="The format of --second (default: --format).")] = None,
    coco_gt: Annotated[Path | None, typer.Option(
        "--coco-gt", help="For coco-results: the COCO annotations.json the image_id and "
                          "category_id values refer to.")] = None,
    split: Annotated[str, typer.Option(
        help="Images to rank: 'all', a split (train, val, test) or 'unsplit'.")] = "all",
    kind: Annotated[MineKind, typer.Option(
        help="errors (labelled images, by the model's mistakes), uncertain (unlabelled "
             "images, by its doubt) or both (errors listed first).")] = MineKind.both,
    threshold: Annotated[float, typer.Option(
        help="The decision threshold the scores' nearness is measured to.")] = 0.5,
    per_group: Annotated[int, typer.Option(
        "--per-group", help="Images chosen per leakage group (a board's variants, "
                            "near-duplicates) and kind; 0: no cap.")] = 1,
    top: Annotated[int, typer.Option(help="Keep the first N chosen images; 0: all.")] = 0,
    min_score: Annotated[float, typer.Option(
        "--min-score", help="Drop predictions scored below this first.")] = 0.0,
    name: Annotated[str | None, typer.Option(
        help="The mining's name, a folder of DATASET/mining/ (default: the predictions "
             "file's name without extension).")] = None,
    export: Annotated[BatchFormat | None, typer.Option(
        help="Also write the chosen images, with their labels, as a labelling batch in this "
             "format (needs --out).")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="The batch folder (outside the dataset): created, or an earlier "
                            "batch or export replaced.")] = None,
) -> None:
    """Rank the images to look at or label next: labelled ones by the model's errors
    (missed boxes + false-alarm scores, IoU > 0.33), unlabelled ones by its uncertainty
    (scores near the threshold, their entropy, disagreement with --second), at most
    --per-group per leakage group. Kept in DATASET/mining/NAME/."""
    try:
        summary = mine_dataset(
            dataset, predictions, fmt, second=second, second_format=second_format,
            coco_gt=coco_gt, name=name, split=split, kind=kind.value, threshold=threshold,
            per_group=per_group, top=top, min_score=min_score,
            export=None if export is None else export.value, out=out)
    except ValidationError as err:
        fail(validation_message(err))
    except (DatasetError, ValueError, FileNotFoundError) as err:
        fail(err)
    _print_summary(summary, dataset)


def _number(value: float | None) -> str:
    return "" if value is None or value != value else f"{value:.3f}"


def _print_summary(summary: dict, dataset: Path) -> None:
    console = Console()
    ranked = read_ranked(dataset, summary["name"])
    chosen = ranked[ranked["selected"]].head(10)
    table = Table(title=f"mining {summary['name']}: the first {len(chosen)} of "
                        f"{summary['selected']} chosen images")
    for column in ("rank", "kind", "image", "split", "group", "score", "fn", "fp",
                   "near", "entropy", "disagree"):
        table.add_column(column, justify="left" if column in ("kind", "image", "split",
                                                               "group") else "right")
    for row in chosen.itertuples(index=False):
        error = row.kind == "error"
        table.add_row(str(row.rank), row.kind, row.path, row.split or "-", row.group or "-",
                      _number(row.score), str(int(row.fn)) if error else "",
                      str(int(row.fp)) if error else "", _number(row.nearness),
                      _number(row.entropy), _number(row.disagreement))
    console.print(table)
    left = summary["left_out"]
    batch = summary.get("batch")
    note = (f"; batch of {batch['images']} images ({batch['boxes']} boxes) as "
            f"{batch['format']} in {batch['out']}") if batch else ""
    console.print(
        f"ranked {summary['images']} images ({summary['labelled']} labelled by errors, "
        f"{summary['unlabelled']} unlabelled by uncertainty); chose {summary['selected']} "
        f"({summary['selected_errors']} errors, {summary['selected_uncertain']} uncertain); "
        f"left out {left['group']} by the group cap, {left['top']} beyond --top, "
        f"{left['correct']} without error{note} | report: "
        f"{Path(dataset) / MINING_DIR / summary['name']}", soft_wrap=True)
