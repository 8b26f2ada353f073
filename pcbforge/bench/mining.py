"""Does ``pcbforge mine`` put the model's errors first? Measured on a model's detections
on test boards in DeepPCB's layout (e.g. what the transfer benchmark writes in
``OUT/detections/``).

The test boards are imported as a dataset (``pcbforge import deeppcb``) and the
detections scored there by ``pcbforge evaluate``. A model's **errors** on an image are
what it gets wrong at its operating point, the evaluation's best-F threshold ``t``: false
alarms scoring at least ``t``, and defects not found by a prediction scoring at least
``t``. The population is the tested images (the ones the model was run on).

Two rankings of ``mine``, each cut at its first ``share`` of the images:

* ``errors``: ``mine --kind errors`` on the labelled dataset (the ranking for images
  someone has labelled: missed boxes and scored false alarms);
* ``uncertainty``: ``mine --kind uncertain`` on a copy of the dataset with its labels
  and splits hidden (no label is used: nearness of the scores to ``threshold`` and their
  entropy), what a user gets on a fresh batch of unlabelled images.

Each is compared with a random cut of the same size (its expected errors: ``k`` times the
mean errors per image) and with the best possible cut (the ``k`` images with the most
errors). ``factor`` = errors in the cut / errors a random cut holds on average.
"""

from __future__ import annotations

import math
import re
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from pcbforge.datasets.dataset import Dataset, empty_labels, load, save
from pcbforge.datasets.evaluation_tables import read_outcomes
from pcbforge.evaluate.mine import mine_dataset, read_ranked
from pcbforge.evaluate.runner import evaluate_dataset

RANKINGS = ("errors", "uncertainty")


def image_errors(dataset: Path, name: str, threshold: float) -> pd.Series:
    """Per sample of the evaluation ``name``: false alarms scoring ``>= threshold`` plus
    labelled boxes no prediction scoring ``>= threshold`` found (greedy matching by score
    makes the matches above a threshold the same as in the full evaluation)."""
    predictions, truths = read_outcomes(dataset, name)
    false_alarms = predictions[(predictions["outcome"] == "fp")
                               & (predictions["score"] >= threshold)]
    found = (truths["outcome"] == "tp") & (truths["score"].fillna(-1.0) >= threshold)
    missed = truths[~found]
    return (false_alarms["sample_id"].astype(str).value_counts()
            .add(missed["sample_id"].astype(str).value_counts(), fill_value=0)
            .astype(int))


def hide_labels(dataset: Path, out: Path) -> Path:
    """A copy of ``dataset``'s tables at ``out`` without labels and splits (its images
    are the same files): every image unlabelled, as a new batch from the line would be."""
    data = load(dataset)
    if out.exists():
        shutil.rmtree(out)
    info = data.info.model_copy(update={"image_root": str(data.image_root.resolve())})
    samples = data.samples.assign(split="")
    return save(Dataset(out, samples, empty_labels(), info), out)


def cut_errors(order: Sequence[str], errors: dict[str, int], k: int) -> int:
    """Errors held by the first ``k`` images of ``order``."""
    return int(sum(errors.get(sample_id, 0) for sample_id in list(order)[:k]))


def score_detections(labelled: Path, hidden: Path, detections: Path, tested: Sequence[str],
                     *, share: float = 0.1, threshold: float = 0.5) -> dict:
    """Both rankings of one detections table (a pcbforge predictions table) against a
    random and the best cut of ``share`` of the ``tested`` sample ids."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", detections.stem)  # an evaluation's name
    metrics = evaluate_dataset(labelled, detections, "pcbforge", name=name, split="all")
    operating = float(metrics["deeppcb"]["threshold"])
    errors = image_errors(labelled, name, operating).to_dict()
    population = [str(s) for s in tested]
    errors = {s: int(errors.get(s, 0)) for s in population}
    total = sum(errors.values())
    k = max(1, math.ceil(share * len(population)))
    expected = k * total / len(population) if population else 0.0
    best = sorted(errors.values(), reverse=True)[:k]
    result = {"detections": detections.stem, "images": len(population), "k": k,
              "mAP": metrics["deeppcb"]["mAP"], "operating_threshold": operating,
              "errors": total, "random_expected": round(expected, 3),
              "best_possible": int(sum(best)), "rankings": {}}
    wanted = set(population)
    for ranking, dataset, kind in (("errors", labelled, "errors"),
                                   ("uncertainty", hidden, "uncertain")):
        mine_dataset(dataset, detections, "pcbforge", name=name, kind=kind,
                     threshold=threshold)
        ranked = read_ranked(dataset, name)
        order = [s for s in ranked["sample_id"].astype(str) if s in wanted]
        held = cut_errors(order, errors, k)
        result["rankings"][ranking] = {
            "errors_in_cut": held,
            "factor": round(held / expected, 3) if expected else None,
            "share_of_errors": round(held / total, 3) if total else None}
    return result


def run_mining_benchmark(detections: Sequence[Path], test_dir: Path, workdir: Path, *,
                         test_boards: set[str] | None = None, share: float = 0.1,
                         threshold: float = 0.5, log: Callable[[str], None] = print
                         ) -> dict:
    """Import the test boards (of ``test_boards`` only, when given) of ``test_dir`` into
    ``workdir``, then :func:`score_detections` for every table of ``detections``."""
    from pcbforge.pipeline.ingest import import_deeppcb

    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], got {share}")
    if not detections:
        raise ValueError("no detections tables given")
    boards_root = workdir / "test-boards"
    if boards_root.exists():
        shutil.rmtree(boards_root)
    boards = sorted(test_boards) if test_boards else sorted(
        p.name for p in Path(test_dir).iterdir() if p.is_dir())
    for board in boards:
        shutil.copytree(Path(test_dir) / board, boards_root / board)
    labelled = workdir / "labelled"
    import_deeppcb(boards_root, labelled)
    hidden = hide_labels(labelled, workdir / "hidden")
    samples = load(labelled).samples
    tested = samples.loc[samples["role"] == "tested", "sample_id"].astype(str).tolist()
    log(f"test boards {', '.join(boards)}: {len(tested)} tested images")
    rows = []
    for table in detections:
        row = score_detections(labelled, hidden, Path(table), tested, share=share,
                               threshold=threshold)
        log(f"{row['detections']}: " + ", ".join(
            f"{r} factor {v['factor']}" for r, v in row["rankings"].items()))
        rows.append(row)
    factors = {r: [row["rankings"][r]["factor"] for row in rows
                   if row["rankings"][r]["factor"] is not None] for r in RANKINGS}
    return {"test_dir": str(test_dir), "boards": boards, "share": share,
            "threshold": threshold, "tested_images": len(tested), "tables": rows,
            "mean_factor": {r: round(float(np.mean(v)), 3) if v else None
                            for r, v in factors.items()}}


def markdown_table(payload: dict) -> str:
    """One row per detections table: errors, the random and best cut, and each ranking's
    errors in the cut with its factor."""
    share = f"{payload['share']:.0%}"
    lines = [f"Top {share} of {payload['tested_images']} tested images (boards "
             f"{', '.join(payload['boards'])}); errors at each model's best-F threshold.", "",
             "| detections | mAP | errors | random " + share + " | best " + share
             + " | mine errors | factor | mine uncertainty (labels hidden) | factor |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in payload["tables"]:
        e, u = row["rankings"]["errors"], row["rankings"]["uncertainty"]
        lines.append(f"| {row['detections']} | {row['mAP']:.3f} | {row['errors']} | "
                     f"{row['random_expected']:.1f} | {row['best_possible']} | "
                     f"{e['errors_in_cut']} | {e['factor']} | {u['errors_in_cut']} | "
                     f"{u['factor']} |")
    mean = payload["mean_factor"]
    lines += ["", f"Mean factor: errors ranking {mean['errors']}, uncertainty ranking "
                  f"{mean['uncertainty']}.", ""]
    return "\n".join(lines)


__all__ = ["RANKINGS", "cut_errors", "hide_labels", "image_errors", "markdown_table",
           "run_mining_benchmark", "score_detections"]
