"""``mine_dataset``: rank a dataset's images to look at or to label next, from a model's
predictions.

Two kinds of image, two rankings:

* **Labelled** images are ranked by the model's **errors**. A sample is labelled when the
  dataset holds a label on it *or* its split is ``train``, ``val`` or ``test`` (a split
  image without a label is a good board, where any prediction is a false alarm).
  Predictions are matched to its boxes by DeepPCB's rule (:func:`match_predictions`, IoU
  > 0.33, greedy by score) and the image scores ``error_score = fn + fp_score_sum``: each
  missed box costs 1, each false alarm its score (a confident false alarm costs more).
* **Unlabelled** images (the rest: no label and no split) are ranked by the model's
  **uncertainty**, the mean of the terms available, each in [0, 1]:

  - ``nearness``: the highest ``1 - |score - t| / max(t, 1 - t)`` over the image's
    predictions (1 for a score exactly at the decision threshold ``t``, 0 at 0 or 1);
  - ``entropy``: the mean binary entropy of the scores, in bits
    (``-s log2 s - (1 - s) log2 (1 - s)``);
  - ``disagreement`` (with a second prediction set): the largest difference between the
    two sets on one box. Boxes of the first set are matched to those of the second by the
    same rule (same class, IoU > 0.33, greedy by score); a matched pair differs by
    ``|score1 - score2|``, a box without a partner by its own score.

  An image without predictions scores 0 on every term.

Images are ranked within their kind by score (highest first, then by ``sample_id``);
errors come before uncertain images. The ranking is then de-duplicated with curation's
leakage ``group`` (near-duplicates and a board's variants share one): within each kind at
most ``per_group`` images of a group are selected (an image without a group is a group of
its own), so one board does not fill the list; ``top`` keeps the first ``top`` selected.
A labelled image the model got right (``error_score`` 0) is not selected.

``DATASET/mining/NAME/`` holds ``ranked.parquet`` (+ ``.csv``): one row per image
considered, the selected ones first in rank order, then the others with the reason they
were left out; and ``mining.json``, the summary. The selected images can also be written
as a labelling batch in COCO or YOLO (:func:`write_batch`); the dataset and its images are
never changed.
"""

from __future__ import annotations

import math
import shutil
from enum import Enum
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from pcbforge import __version__
from pcbforge.core.files import write_json
from pcbforge.core.output import staged_output
from pcbforge.datasets.dataset import Dataset, load, require_folder
from pcbforge.datasets.formats import get_format
from pcbforge.datasets.samples import USABLE_STATUSES
from pcbforge.evaluate.metrics import DEEPPCB_IOU, match_predictions
from pcbforge.evaluate.predictions import read_predictions
from pcbforge.evaluate.runner import run_name, truth_table

MINING_DIR = "mining"
RANKED_PARQUET = "ranked.parquet"
RANKED_CSV = "ranked.csv"
MINING_JSON = "mining.json"
#: The report a labelling batch writes into its folder: the name ``pcbforge export`` uses,
#: so that either command may replace the other's folder and importers skip the file.
BATCH_REPORT = "export_report.json"
#: The split a labelling batch is written as: none, so each format lays it out as it
#: does an unsplit export (COCO: ``all/``; YOLO: split ``train``, which Ultralytics and
#: labelling tools expect).
BATCH_SPLIT = ""
#: Splits whose images count as labelled even without a box (good boards).
LABELLED_SPLITS = ("train", "val", "test")
#: ``split`` values beyond the split names: every usable image, or those with no split.
ALL_SPLITS, UNSPLIT = "all", "unsplit"

ERROR, UNCERTAIN = "error", "uncertain"
#: ``left_out`` reasons: the model got a labelled image right, another image of its group
#: ranks higher, or it comes after the first ``top``.
CORRECT, GROUP, TOP = "correct", "group", "top"
ERROR_TERMS = ("boxes", "fn", "fp", "fp_score_sum", "error_score")
UNCERTAINTY_TERMS = ("nearness", "entropy", "disagreement", "uncertainty")
RANKED_COLUMNS = ("rank", "sample_id", "path", "split", "group", "kind", "score", "selected",
                  "left_out", "predictions", *ERROR_TERMS, *UNCERTAINTY_TERMS)

_KIND_ORDER = {ERROR: 0, UNCERTAIN: 1}


class MiningError(ValueError):
    """A mining request that cannot be carried out; the message says what to change."""


class MineKind(str, Enum):
    """Which images :func:`mine_dataset` ranks."""

    errors = "errors"
    uncertain = "uncertain"
    both = "both"


class BatchFormat(str, Enum):
    """The formats a labelling batch is written in."""

    coco = "coco"
    yolo = "yolo"


class MineParams(BaseModel):
    """How images are chosen and ranked (see the module's notes)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: ``all``, a split name, or ``unsplit`` (the images with no split).
    split: str = ALL_SPLITS
    kind: MineKind = MineKind.both
    #: The decision threshold ``t`` that ``nearness`` measures the scores against.
    threshold: float = Field(0.5, gt=0.0, lt=1.0)
    #: A prediction and a box (or two predictions) match when their IoU is above this.
    iou_threshold: float = Field(DEEPPCB_IOU, ge=0.0, lt=1.0)
    #: Images selected per leakage group and kind; 0: no cap.
    per_group: int = Field(1, ge=0)
    #: Images selected in all; 0: every one the group cap leaves.
    top: int = Field(0, ge=0)
    #: Predictions scored below this are dropped first (the low-confidence tail that
    #: detectors write for mAP).
    min_score: float = Field(0.0, ge=0.0, le=1.0)


# --------------------------------------------------------------------------- pure terms

def labelled_samples(samples: pd.DataFrame, labels: pd.DataFrame) -> np.ndarray:
    """Which rows of ``samples`` are labelled: a label on them, or a split of
    :data:`LABELLED_SPLITS`."""
    has_label = samples["sample_id"].astype(str).isin(set(labels["sample_id"].astype(str)))
    in_split = samples["split"].fillna("").astype(str).isin(LABELLED_SPLITS)
    return (has_label | in_split).to_numpy()


def nearness(scores: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """``1 - |score - t| / max(t, 1 - t)``: 1 at the threshold ``t``, 0 at the far end."""
    scores = np.asarray(scores, dtype=float)
    return 1.0 - np.abs(scores - threshold) / max(threshold, 1.0 - threshold)


def binary_entropy(scores: np.ndarray) -> np.ndarray:
    """The entropy of a yes/no with probability ``score``, in bits: 1 at 0.5, 0 at 0 or 1."""
    p = np.clip(np.asarray(scores, dtype=float), 0.0, 1.0)
    out = np.zeros_like(p)
    inside = (p > 0.0) & (p < 1.0)
    q = p[inside]
    out[inside] = -(q * np.log2(q) + (1.0 - q) * np.log2(1.0 - q))
    return out


def error_terms(predictions: pd.DataFrame, truths: pd.DataFrame, sample_ids: list[str], *,
                iou_threshold: float = DEEPPCB_IOU) -> pd.DataFrame:
    """Per image of ``sample_ids`` (index, in that order): ``predictions``, ``boxes``,
    ``fn`` (boxes no prediction found), ``fp`` (predictions that found no box),
    ``fp_score_sum`` (their scores) and ``error_score = fn + fp_score_sum``."""
    per_pred, per_truth = match_predictions(predictions, truths, iou_threshold=iou_threshold)
    index = pd.Index(sample_ids, name="sample_id")

    def count(table: pd.DataFrame) -> pd.Series:
        return table.groupby("sample_id").size().reindex(index, fill_value=0)

    false = per_pred[per_pred["outcome"] == "fp"]
    out = pd.DataFrame({
        "predictions": count(per_pred),
        "boxes": count(per_truth),
        "fn": count(per_truth[per_truth["outcome"] == "fn"]),
        "fp": count(false),
        "fp_score_sum": false.groupby("sample_id")["score"].sum().reindex(index,
                                                                            fill_value=0.0),
    }, index=index)
    out["fp_score_sum"] = out["fp_score_sum"].astype(float)
    out["error_score"] = out["fn"] + out["fp_score_sum"]
    return out


def disagreement(first: pd.DataFrame, second: pd.DataFrame, sample_ids: list[str], *,
                 iou_threshold: float = DEEPPCB_IOU) -> pd.Series:
    """Per image of ``sample_ids``: the largest difference between two prediction sets on
    one box. ``first``'s boxes are matched to ``second``'s (same class, IoU above the
    threshold, greedy by ``first``'s score); a matched pair differs by the difference of
    their scores, a box without a partner in the other set by its own score. 0 when
    neither set has a box on the image."""
    other = second.reset_index(drop=True)
    other = other.assign(truth_id=[f"q{i}" for i in range(len(other))])
    per_pred, per_truth = match_predictions(first, other, iou_threshold=iou_threshold)
    score_of = dict(zip(other["truth_id"], other["score"].astype(float), strict=True))
    partner = per_pred["truth_id"].map(score_of)
    gap = np.where(per_pred["outcome"] == "tp",
                   (per_pred["score"] - partner).abs(), per_pred["score"])
    alone = per_truth[per_truth["outcome"] == "fn"]
    both = pd.concat([
        pd.DataFrame({"sample_id": per_pred["sample_id"], "gap": gap.astype(float)}),
        pd.DataFrame({"sample_id": alone["sample_id"],
                      "gap": alone["truth_id"].map(score_of).astype(float)})])
    index = pd.Index(sample_ids, name="sample_id")
    return both.groupby("sample_id")["gap"].max().reindex(index, fill_value=0.0) \
        .astype(float).rename("disagreement")


def uncertainty_terms(predictions: pd.DataFrame, sample_ids: list[str], *,
                      threshold: float = 0.5, second: pd.DataFrame | None = None,
                      iou_threshold: float = DEEPPCB_IOU) -> pd.DataFrame:
    """Per image of ``sample_ids`` (index, in that order): ``predictions``, ``nearness``
    (its highest over the image's predictions), ``entropy`` (the mean), ``disagreement``
    with ``second`` (NaN without it) and ``uncertainty``, the mean of the terms available.
    An image without predictions scores 0 on each."""
    index = pd.Index(sample_ids, name="sample_id")
    scores = predictions["score"].to_numpy(dtype=float)
    terms = pd.DataFrame({"sample_id": predictions["sample_id"].astype(str).to_numpy(),
                          "nearness": nearness(scores, threshold),
                          "entropy": binary_entropy(scores)})
    grouped = terms.groupby("sample_id")
    out = pd.DataFrame({
        "predictions": grouped.size().reindex(index, fill_value=0),
        "nearness": grouped["nearness"].max().reindex(index, fill_value=0.0),
        "entropy": grouped["entropy"].mean().reindex(index, fill_value=0.0),
    }, index=index)
    if second is not None:
        out["disagreement"] = disagreement(predictions, second, sample_ids,
                                           iou_threshold=iou_threshold)
        out["uncertainty"] = out[["nearness", "entropy", "disagreement"]].mean(axis=1)
    else:
        out["disagreement"] = np.nan
        out["uncertainty"] = out[["nearness", "entropy"]].mean(axis=1)
    return out


def rank_images(scored: pd.DataFrame, *, per_group: int = 1, top: int = 0) -> pd.DataFrame:
    """The rows of ``scored`` (``sample_id, group, kind, score``, any others kept) ranked:
    errors before uncertain images, each by score (highest first) then ``sample_id``.
    Walking down that order a row is selected unless it is an error row scoring 0
    (``left_out`` ``correct``), ``per_group`` rows of its kind and group are already
    selected (``group``; 0: no cap; an empty group is the row's own), or ``top`` rows are
    (``top``; 0: no limit). Adds ``rank`` (1, 2... for the selected rows, NA for the
    others), ``selected`` and ``left_out``; the selected rows come first, in rank order."""
    order = scored.assign(_kind=scored["kind"].map(_KIND_ORDER),
                          _id=scored["sample_id"].astype(str))
    order = order.sort_values(["_kind", "score", "_id"], ascending=[True, False, True],
                              kind="mergesort").reset_index(drop=True)
    taken: dict[tuple[str, str], int] = {}
    left_out, selected = [], 0
    for kind, group, sample_id, score in zip(order["kind"], order["group"], order["_id"],
                                             order["score"], strict=True):
        key = (kind, _group_key(group, sample_id))
        if kind == ERROR and not score > 0:
            left_out.append(CORRECT)
        elif per_group and taken.get(key, 0) >= per_group:
            left_out.append(GROUP)
        elif top and selected >= top:
            left_out.append(TOP)
        else:
            taken[key] = taken.get(key, 0) + 1
            selected += 1
            left_out.append("")
    order = order.drop(columns=["_kind", "_id"])
    order["left_out"] = left_out
    order["selected"] = order["left_out"] == ""
    order = pd.concat([order[order["selected"]], order[~order["selected"]]],
                      ignore_index=True)
    ranks = pd.array([pd.NA] * len(order), dtype="Int64")
    ranks[:selected] = np.arange(1, selected + 1)
    order.insert(0, "rank", ranks)
    return order


def _group_key(group: object, sample_id: str) -> str:
    text = "" if group is None or (isinstance(group, float) and math.isnan(group)) \
        else str(group)
    return f"group:{text}" if text else f"sample:{sample_id}"


# --------------------------------------------------------------------------- the dataset

def mining_name(name: str | None, predictions: Path | str) -> str:
    """``name``, or the predictions file's stem; a plain folder name either way."""
    return run_name(name, predictions, "mining", MiningError)


def mined_samples(data: Dataset, split: str) -> pd.DataFrame:
    """The usable samples of ``split`` (``all``: every one; ``unsplit``: those with no
    split), with ``labelled``."""
    samples = data.samples.reset_index(drop=True)
    samples = samples.assign(labelled=labelled_samples(samples, data.labels))
    usable = samples[samples["status"].isin(USABLE_STATUSES)]
    splits = usable["split"].fillna("").astype(str)
    if split == ALL_SPLITS:
        chosen = usable
    else:
        chosen = usable[splits == ("" if split == UNSPLIT else split)]
    if chosen.empty:
        present = sorted({s or UNSPLIT for s in splits})
        raise MiningError(f"{data.root}: no usable images in split {split!r} (here: "
                          f"{', '.join(present) or 'none'}); pass --split "
                          f"{' or '.join(present + [ALL_SPLITS])}")
    return chosen.reset_index(drop=True)


def _kept(table: pd.DataFrame, ids: set[str], min_score: float) -> tuple[pd.DataFrame, int]:
    """The predictions on ``ids`` scored at least ``min_score``, and how many others were
    on images outside ``ids``."""
    inside = table["sample_id"].astype(str).isin(ids)
    kept = table[inside & (table["score"] >= min_score)].reset_index(drop=True)
    return kept, int((~inside).sum())


def score_samples(data: Dataset, samples: pd.DataFrame, first: pd.DataFrame,
                  second: pd.DataFrame | None, params: MineParams) -> pd.DataFrame:
    """One row per sample of ``samples`` of the kinds ``params`` asks for: its place, its
    ``kind``, its ``score`` and the terms (NaN where they are of the other kind)."""
    kinds = params.kind.value
    parts = []
    labelled = samples[samples["labelled"]]
    if kinds in ("errors", "both") and len(labelled):
        ids = labelled["sample_id"].astype(str).tolist()
        terms = error_terms(first[first["sample_id"].isin(set(ids))], truth_table(data, set(ids)),
                            ids, iou_threshold=params.iou_threshold)
        parts.append(_rows(labelled, terms, ERROR, "error_score"))
    unlabelled = samples[~samples["labelled"]]
    if kinds in ("uncertain", "both") and len(unlabelled):
        ids = unlabelled["sample_id"].astype(str).tolist()
        keep = set(ids)
        terms = uncertainty_terms(
            first[first["sample_id"].isin(keep)], ids, threshold=params.threshold,
            second=None if second is None else second[second["sample_id"].isin(keep)],
            iou_threshold=params.iou_threshold)
        parts.append(_rows(unlabelled, terms, UNCERTAIN, "uncertainty"))
    if not parts:
        want = "labelled" if kinds == "errors" else "unlabelled"
        raise MiningError(f"{data.root}: no {want} images to rank in split {params.split!r} "
                          f"(labelled: a label, or split train/val/test); pass --kind both "
                          f"or another --split")
    return pd.concat(parts, ignore_index=True)


def _rows(samples: pd.DataFrame, terms: pd.DataFrame, kind: str, score: str) -> pd.DataFrame:
    ids = samples["sample_id"].astype(str).to_numpy()
    rows = pd.DataFrame({
        "sample_id": ids, "path": samples["path"].astype(str).to_numpy(),
        "split": samples["split"].fillna("").astype(str).to_numpy(),
        "group": samples["group"].fillna("").astype(str).to_numpy(), "kind": kind,
        "score": terms.loc[ids, score].to_numpy(dtype=float)})
    for column in ("predictions", *ERROR_TERMS, *UNCERTAINTY_TERMS):
        rows[column] = terms.loc[ids, column].to_numpy() if column in terms.columns else np.nan
    return rows


def _typed(ranked: pd.DataFrame) -> pd.DataFrame:
    """The ranked table in :data:`RANKED_COLUMNS` with fixed dtypes (the same bytes for the
    same inputs, whichever kinds are present)."""
    out = ranked.reindex(columns=list(RANKED_COLUMNS))
    ints = {"predictions": "int64"}
    floats = {c: "float64" for c in ("score", *ERROR_TERMS, *UNCERTAINTY_TERMS)}
    texts = {c: str for c in ("sample_id", "path", "split", "group", "kind", "left_out")}
    return out.astype({**texts, **floats, **ints, "selected": bool, "rank": "Int64"})


def mine_dataset(dataset: Path | str, predictions: Path | str, fmt: str, *,
                 second: Path | str | None = None, second_format: str | None = None,
                 coco_gt: Path | str | None = None, name: str | None = None,
                 split: str = ALL_SPLITS, kind: MineKind | str = MineKind.both,
                 threshold: float = 0.5, iou_threshold: float = DEEPPCB_IOU,
                 per_group: int = 1, top: int = 0, min_score: float = 0.0,
                 export: BatchFormat | str | None = None, out: Path | str | None = None
                 ) -> dict:
    """Rank ``dataset``'s images to look at or label next from the predictions in
    ``predictions`` (format ``fmt``, one of :data:`pcbforge.evaluate.predictions.FORMATS`;
    ``second``: another model's or run's, format ``second_format``, default ``fmt``) and
    write ``DATASET/mining/NAME/`` (``NAME``: ``name``, else the predictions' stem):
    ``ranked.parquet`` and ``ranked.csv``, and ``mining.json``. The other settings are
    :class:`MineParams` fields. With ``export`` (``coco`` or ``yolo``) the selected images,
    with their labels, are also written to the folder ``out`` as a labelling batch
    (:func:`write_batch`). Returns the summary (``mining.json``)."""
    params = MineParams(split=split, kind=kind, threshold=threshold,
                        iou_threshold=iou_threshold, per_group=per_group, top=top,
                        min_score=min_score)
    if (export is None) != (out is None):
        raise MiningError("a labelling batch needs both --export FORMAT and --out DIR; got "
                          + ("--export without --out" if out is None else
                             "--out without --export"))
    batch_format = None if export is None else _batch_format(export)
    require_folder(dataset)
    data = load(dataset)
    chosen = mining_name(name, predictions)
    if out is not None:
        _check_batch_folder(Path(out), data.root)
    samples = mined_samples(data, params.split)
    ids = set(samples["sample_id"].astype(str))
    first, outside = _kept(read_predictions(data, predictions, fmt, coco_gt=coco_gt), ids,
                           params.min_score)
    other = None
    if second is not None:
        other, _ = _kept(read_predictions(data, second, second_format or fmt,
                                          coco_gt=coco_gt), ids, params.min_score)
    if params.split == ALL_SPLITS:
        # A model is often run on one split only: the labelled images of splits no
        # prediction touches were not looked at, and their boxes are not its misses.
        splits = samples["split"].fillna("").astype(str)
        seen = set(first["sample_id"].astype(str))
        if other is not None:
            seen |= set(other["sample_id"].astype(str))
        touched = set(splits[samples["sample_id"].astype(str).isin(seen)])
        samples = samples[~samples["labelled"] | splits.isin(touched)].reset_index(drop=True)
    scored = score_samples(data, samples, first, other, params)
    ranked = _typed(rank_images(scored, per_group=params.per_group, top=params.top))
    summary = _summary(data, chosen, predictions, fmt, second, second_format, params, ranked,
                       outside)
    with staged_output(data.root, command="mine", clone=True) as stage:
        folder = stage / MINING_DIR / chosen
        if folder.exists():  # an earlier mining of that name (the stage is a copy)
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        ranked.to_parquet(folder / RANKED_PARQUET, index=False)
        ranked.to_csv(folder / RANKED_CSV, index=False)
        if batch_format is not None:
            summary["batch"] = write_batch(data, ranked[ranked["selected"]], batch_format,
                                           Path(out), mining=chosen)
        summary["pcbforge_version"] = __version__
        write_json(folder / MINING_JSON, summary)
    return summary


def _summary(data: Dataset, name: str, predictions: Path | str, fmt: str,
             second: Path | str | None, second_format: str | None, params: MineParams,
             ranked: pd.DataFrame, outside: int) -> dict:
    chosen = ranked[ranked["selected"]]
    errors = ranked[ranked["kind"] == ERROR]
    return {
        "command": "mine", "name": name, "dataset": str(data.root),
        "predictions_file": str(predictions), "format": getattr(fmt, "value", fmt),
        "second_file": None if second is None else str(second),
        "second_format": None if second is None else getattr(second_format or fmt, "value",
                                                             second_format or fmt),
        **params.model_dump(mode="json"),
        "images": len(ranked), "labelled": len(errors), "unlabelled": len(ranked) - len(errors),
        "selected": len(chosen),
        "selected_errors": int((chosen["kind"] == ERROR).sum()),
        "selected_uncertain": int((chosen["kind"] == UNCERTAIN).sum()),
        "left_out": {reason: int((ranked["left_out"] == reason).sum())
                     for reason in (CORRECT, GROUP, TOP)},
        "fn": int(errors["fn"].sum()), "fp": int(errors["fp"].sum()),
        "ignored_outside_split": outside,
        "formulas": {
            "error_score": "fn + fp_score_sum (each missed box 1, each false alarm its score)",
            "nearness": f"max over predictions of 1 - |score - {params.threshold:g}| / "
                        f"{max(params.threshold, 1 - params.threshold):g}",
            "entropy": "mean over predictions of -s*log2(s) - (1-s)*log2(1-s)",
            "disagreement": "max over boxes of |score1 - score2| for a matched pair, the "
                            "score of a box without a partner in the other set",
            "uncertainty": "mean of nearness, entropy and (with a second set) disagreement",
        },
        "first": [{"rank": int(r.rank), "sample_id": r.sample_id, "path": r.path,
                 "kind": r.kind, "score": float(r.score)}
                for r in chosen.head(10).itertuples(index=False)],
    }


# --------------------------------------------------------------------------- the batch

def _batch_format(export: BatchFormat | str) -> BatchFormat:
    value = getattr(export, "value", export)
    try:
        return BatchFormat(value)
    except ValueError as err:
        raise MiningError(f"unknown batch format {value!r}; expected one of: "
                          f"{', '.join(f.value for f in BatchFormat)}") from err


def _check_batch_folder(out: Path, dataset_root: Path) -> None:
    """Refuse a batch folder inside the dataset, a file, or a folder that holds something
    other than an earlier batch or export."""
    resolved, root = out.resolve(), dataset_root.resolve()
    if resolved == root or root in resolved.parents or resolved in root.parents:
        raise MiningError(f"--out {out}: expected a folder outside the dataset {dataset_root} "
                          f"(and not holding it)")
    if out.exists() and not out.is_dir():
        raise MiningError(f"--out {out} exists and is a file; expected a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / BATCH_REPORT).is_file():
        raise MiningError(f"--out {out} exists, is not empty and is not a pcbforge batch or "
                          f"export; refusing to replace it")


def write_batch(data: Dataset, selected: pd.DataFrame, fmt: BatchFormat | str, out: Path, *,
                mining: str = "") -> dict:
    """Write the images of ``selected`` (rows with ``sample_id``, in rank order) and their
    labels, if any, as a ``fmt`` folder ``out`` laid out like an unsplit export (copies:
    the dataset is not changed), with :data:`BATCH_REPORT` listing them. An earlier batch or
    export in ``out`` is replaced. Returns the report."""
    batch_format = _batch_format(fmt)
    _check_batch_folder(out, data.root)
    label_format = get_format(batch_format.value, can="export")
    ids = selected["sample_id"].astype(str).tolist()
    samples = data.samples.set_index(data.samples["sample_id"].astype(str)).loc[ids]
    samples = samples.reset_index(drop=True)
    labels = data.labels[data.labels["sample_id"].astype(str).isin(set(ids))]
    with staged_output(out, command="mine") as stage:
        counts = label_format.save(samples, labels, list(data.info.classes), data.image_root,
                                   stage, BATCH_SPLIT)
        if label_format.finish is not None:
            label_format.finish(stage, out.resolve())
        report = {"command": "mine", "format": batch_format.value, "dataset": str(data.root),
                  "mining": mining, "out": str(out), **counts,
                  "samples": [{"rank": int(r.rank), "sample_id": r.sample_id, "path": r.path,
                               "kind": r.kind, "score": float(r.score)}
                              for r in selected.itertuples(index=False)]}
        write_json(stage / BATCH_REPORT, report)
    return {key: value for key, value in report.items() if key != "samples"}


def read_ranked(dataset: Path | str, name: str) -> pd.DataFrame:
    """The ranked table of the mining ``name`` of ``dataset``."""
    path = Path(dataset) / MINING_DIR / name / RANKED_PARQUET
    if not path.is_file():
        raise MiningError(f"{dataset}: no mining {name!r} ({path} not found)")
    return pd.read_parquet(path)


__all__ = [
    "ALL_SPLITS", "BATCH_REPORT", "BATCH_SPLIT", "ERROR", "LABELLED_SPLITS", "MINING_DIR",
    "MINING_JSON", "RANKED_COLUMNS", "RANKED_CSV", "RANKED_PARQUET", "UNCERTAIN", "UNSPLIT",
    "BatchFormat", "MineKind", "MineParams", "MiningError", "binary_entropy", "disagreement",
    "error_terms", "labelled_samples", "mine_dataset", "mined_samples", "mining_name",
    "nearness", "rank_images", "read_ranked", "score_samples", "uncertainty_terms",
    "write_batch",
]
