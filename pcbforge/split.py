"""Leakage-free train / val / test assignment of whole groups, balanced by class.

The unit of assignment is a *leakage group*: the connected components of

- curation's ``group`` (exact, near and transformed duplicates, and defect/template
  variants of one board region),
- ``template_path`` (a tested or synthetic image and the good board it was compared with
  or made from),
- any ``group_by`` columns (board, lot, capture session...).

Each group is a vector of counts: defect boxes per class (from the labels), defect-free
images and images (``ok`` samples only). A split is scored by how far each split's share of
each count is from its ratio:

``score = max class deviation + 0.5 * max image/defect-free deviation + 0.05 * RMS of all
deviations + 1 for each class missing from a split that could have it``

where a deviation is ``|count in split / count overall - ratio|``. Small problems (at most
``exhaustive_max_groups`` free groups) are solved exactly by enumerating every assignment;
larger ones by iterative-stratification greedy fills from several seeded orders, each
improved by steepest-descent moves and swaps of groups, keeping the best score.

Assignments already made by an earlier ``split`` are pinned: a group with an assigned
member stays there (the test set only grows), and only new groups are placed, into the
splits furthest below their targets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pcbforge import __version__
from pcbforge.core.files import write_json
from pcbforge.core.output import staged_output
from pcbforge.core.unionfind import UnionFind
from pcbforge.datasets.dataset import SPLITS, load, require_folder, save

SPLIT_NAMES = SPLITS[1:]  # ("train", "val", "test"): SPLITS also allows "" (unassigned)
#: Statuses that are assigned a split; duplicates then follow their group.
ASSIGNED_STATUS = "ok"


class SplitError(ValueError):
    """Arguments or data that cannot be split as asked (one clear line)."""


class SplitParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ratios: tuple[float, float, float] = (0.7, 0.15, 0.15)
    seed: int = 0
    group_by: tuple[str, ...] = ()
    reshuffle: bool = False
    candidates: int = Field(8, ge=1, le=256)
    exhaustive_max_groups: int = Field(12, ge=0, le=15)

    @field_validator("ratios")
    @classmethod
    def _ratios(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(not np.isfinite(r) or r < 0 for r in value):
            raise ValueError(f"ratios must be >= 0, got {list(value)}")
        if abs(sum(value) - 1.0) > 1e-6:
            raise ValueError(f"ratios must sum to 1, got {list(value)} (sum {sum(value):g})")
        return value


@dataclass
class Assignment:
    """Where each group goes (index into :data:`SPLIT_NAMES`) and how it was found."""

    split_of_group: np.ndarray
    method: str
    score: float
    candidates: list[float] = field(default_factory=list)


def leakage_groups(samples: pd.DataFrame, group_by: tuple[str, ...] = ()) -> np.ndarray:
    """Leakage group label (0..G-1, in first-row order) of each row of ``samples``."""
    unknown = [c for c in group_by if c not in samples.columns]
    if unknown:
        raise SplitError(f"unknown group column {unknown[0]!r}; columns: "
                         f"{', '.join(sorted(samples.columns))}")
    n = len(samples)
    sets = UnionFind(n)
    columns = ["group", *group_by]
    for column in columns:
        if column not in samples.columns:
            continue
        values = samples[column].fillna("").astype(str).to_numpy()
        first: dict[str, int] = {}
        for row, value in enumerate(values):
            if value:
                sets.union(first.setdefault(value, row), row)
    if "template_path" in samples.columns:
        row_of = {path: row for row, path in enumerate(samples["path"])}
        for row, template in enumerate(samples["template_path"].fillna("")):
            if template in row_of:
                sets.union(row, row_of[template])
    roots = sets.labels()
    _, labels = np.unique(roots, return_inverse=True)
    # Renumber by first appearance so labels do not depend on union order.
    order = pd.unique(labels)
    remap = np.empty(len(order), dtype=np.int64)
    remap[order] = np.arange(len(order))
    return remap[labels]


def group_counts(samples: pd.DataFrame, labels: pd.DataFrame, groups: np.ndarray,
                 classes: list[str]) -> tuple[np.ndarray, list[str]]:
    """Count matrix ``(G, K)``: boxes per class, defect-free images, images (ok rows)."""
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    ok = (samples["status"] == ASSIGNED_STATUS).to_numpy()
    row_of = pd.Series(np.arange(len(samples)), index=samples["sample_id"].to_numpy())
    boxes = labels[labels["sample_id"].isin(samples["sample_id"][ok])]
    box_rows = row_of.reindex(boxes["sample_id"]).to_numpy().astype(np.int64)
    columns = [*classes, "defect_free_images", "images"]
    counts = np.zeros((n_groups, len(columns)), dtype=np.float64)
    class_index = {c: k for k, c in enumerate(classes)}
    box_columns = boxes["label"].map(class_index).to_numpy().astype(np.int64)
    np.add.at(counts, (groups[box_rows], box_columns), 1.0)
    has_boxes = np.zeros(len(samples), dtype=bool)
    has_boxes[box_rows] = True
    np.add.at(counts[:, -2], groups[ok & ~has_boxes], 1.0)
    np.add.at(counts[:, -1], groups[ok], 1.0)
    return counts, columns


class _Scorer:
    """Vectorised score of split totals ``(..., S, K)`` (see the module docstring)."""

    def __init__(self, counts: np.ndarray, ratios: np.ndarray, n_classes: int,
                 other_weight: float = 0.5):
        self.other_weight = other_weight
        self.totals = counts.sum(axis=0)
        self.ratios = ratios
        self.is_class = np.zeros(counts.shape[1], dtype=bool)
        self.is_class[:n_classes] = True
        # A class can be in every split with a ratio when it is in enough groups.
        groups_with = (counts[:, :n_classes] > 0).sum(axis=0)
        self.must_have = np.zeros(counts.shape[1], dtype=bool)
        self.must_have[:n_classes] = groups_with >= int((ratios > 0).sum())
        self.positive = ratios > 0

    def __call__(self, split_totals: np.ndarray) -> np.ndarray:
        deviation = _deviation(split_totals, self.totals, self.ratios)
        class_dev = np.where(self.is_class, deviation, 0.0).max(axis=(-2, -1))
        other_dev = np.where(self.is_class, 0.0, deviation).max(axis=(-2, -1))
        rms = np.sqrt((deviation**2).mean(axis=(-2, -1)))
        missing = (split_totals == 0) & self.must_have & self.positive[:, None]
        return (class_dev + self.other_weight * other_dev + 0.05 * rms
                + missing.sum(axis=(-2, -1)))


def _deviation(split_totals: np.ndarray, overall: np.ndarray, ratios: np.ndarray) -> np.ndarray:
    """``|share - ratio|`` of split totals ``(..., S, K)`` (columns with no count: 0)."""
    used = overall > 0
    share = split_totals / np.where(used, overall, 1.0)
    return np.where(used, np.abs(share - ratios[:, None]), 0.0)


def deviations(counts: np.ndarray, split_of_group: np.ndarray, ratios) -> np.ndarray:
    """``|share - ratio|`` per split and count column (columns with no count: 0)."""
    ratios = np.asarray(ratios, dtype=np.float64)
    totals = _split_totals(counts, split_of_group, len(ratios))
    return _deviation(totals, counts.sum(axis=0), ratios)


def _split_totals(counts: np.ndarray, split_of_group: np.ndarray, n_splits: int) -> np.ndarray:
    totals = np.zeros((n_splits, counts.shape[1]))
    np.add.at(totals, split_of_group[split_of_group >= 0], counts[split_of_group >= 0])
    return totals


def assign(counts: np.ndarray, ratios, n_classes: int, pinned: np.ndarray | None = None, *,
           seed: int = 0, candidates: int = 8, exhaustive_max_groups: int = 12) -> Assignment:
    """Place every group that ``pinned`` leaves free (-1) into a split."""
    ratios = np.asarray(ratios, dtype=np.float64)
    n_groups = len(counts)
    pinned = np.full(n_groups, -1) if pinned is None else np.asarray(pinned, dtype=np.int64)
    free = np.flatnonzero(pinned < 0)
    scorer = _Scorer(counts, ratios, n_classes)
    base = _split_totals(counts, pinned, len(ratios))
    open_splits = np.flatnonzero(ratios > 0)
    if len(free) == 0:
        return Assignment(pinned.copy(), "nothing new to place", float(scorer(base)))
    if len(open_splits) ** len(free) <= len(open_splits) ** exhaustive_max_groups:
        choice, score = _exhaustive(counts[free], base, open_splits, scorer)
        result = pinned.copy()
        result[free] = choice
        return Assignment(result, f"exhaustive search over {len(open_splits)}^{len(free)} "
                                  f"assignments of {len(free)} groups", score)
    best, scores = None, []
    flat_scorer = _Scorer(counts, ratios, n_classes, other_weight=1.0)
    for candidate in range(candidates):
        rng = np.random.default_rng([seed, candidate])
        choice = _greedy(counts[free], base, ratios, open_splits, rng)
        # Descent gets stuck on the weighted max: first balance every count alike, then
        # refine under the real score.
        choice, _ = _local_search(counts[free], base, choice, open_splits, flat_scorer, rng)
        choice, score = _local_search(counts[free], base, choice, open_splits, scorer, rng)
        scores.append(score)
        if best is None or score < best[1] - 1e-12:
            best = (choice, score)
    result = pinned.copy()
    result[free] = best[0]
    return Assignment(result, f"iterative stratification + local search over {len(free)} "
                              f"groups, best of {candidates} seeded candidates", best[1],
                      scores)


def _exhaustive(counts, base, open_splits, scorer) -> tuple[np.ndarray, float]:
    n_free, n_open = len(counts), len(open_splits)
    total = n_open**n_free
    best_score, best_index = np.inf, 0
    chunk = 1 << 16
    powers = n_open ** np.arange(n_free)
    for start in range(0, total, chunk):
        index = np.arange(start, min(start + chunk, total))
        digits = (index[:, None] // powers[None, :]) % n_open  # (n, F)
        totals = np.repeat(base[None], len(index), axis=0)
        for d, split in enumerate(open_splits):
            totals[:, split] += (digits == d).astype(np.float64) @ counts
        scores = scorer(totals)
        k = int(np.argmin(scores))
        if scores[k] < best_score - 1e-12:
            best_score, best_index = float(scores[k]), int(index[k])
    digits = (best_index // powers) % n_open
    return open_splits[digits], best_score


def _greedy(counts, base, ratios, open_splits, rng) -> np.ndarray:
    """Iterative stratification: largest (in normalised counts) groups first, each into the
    split that most lacks what it carries; random jitter makes the seeded candidates differ."""
    overall = counts.sum(axis=0) + base.sum(axis=0)
    scale = 1.0 / np.where(overall > 0, overall, 1.0)
    weight = (counts * scale).sum(axis=1)
    order = np.argsort(-weight * (1.0 + 0.25 * rng.random(len(counts))), kind="stable")
    totals = base.copy()
    target = ratios[:, None] * overall[None, :]
    choice = np.empty(len(counts), dtype=np.int64)
    for g in order:
        need = ((target[open_splits] - totals[open_splits]) * scale * counts[g]).sum(axis=1)
        split = open_splits[int(np.argmax(need))]
        choice[g] = split
        totals[split] += counts[g]
    return choice


def _local_search(counts, base, choice, open_splits, scorer, rng,
                  max_rounds: int = 5000) -> tuple[np.ndarray, float]:
    """Steepest descent over moves of one group; when none helps, over swaps of two groups
    in different splits (a seeded sample of pairs when there are many)."""
    choice = choice.copy()
    n_splits = len(scorer.ratios)
    totals = base + _split_totals(counts, choice, n_splits)
    current = float(scorer(totals))
    for _ in range(max_rounds):
        # Moves: every group to every other open split.
        best_gain, best_move = 1e-12, None
        for split in open_splits:
            movable = np.flatnonzero(choice != split)
            if not len(movable):
                continue
            trial = np.repeat(totals[None], len(movable), axis=0)
            trial[np.arange(len(movable)), choice[movable]] -= counts[movable]
            trial[:, split] += counts[movable]
            scores = scorer(trial)
            k = int(np.argmin(scores))
            if current - scores[k] > best_gain:
                best_gain, best_move = current - scores[k], ("move", movable[k], split)
        if best_move is None:
            best_move = _best_swap(counts, totals, choice, scorer, current, rng)
            if best_move is None:
                break
        if best_move[0] == "move":
            _, g, split = best_move
            totals[choice[g]] -= counts[g]
            totals[split] += counts[g]
            choice[g] = split
        else:
            _, a, b = best_move
            split_a, split_b = choice[a], choice[b]
            totals[split_a] += counts[b] - counts[a]
            totals[split_b] += counts[a] - counts[b]
            choice[a], choice[b] = split_b, split_a
        current = float(scorer(totals))
    return choice, current


def _best_swap(counts, totals, choice, scorer, current, rng, max_pairs: int = 200_000):
    n = len(counts)
    if n * (n - 1) // 2 <= max_pairs:
        a, b = np.triu_indices(n, k=1)
    else:
        a = rng.integers(0, n, max_pairs)
        b = rng.integers(0, n, max_pairs)
    keep = choice[a] != choice[b]
    a, b = a[keep], b[keep]
    best, best_gain = None, 1e-12
    for start in range(0, len(a), 1 << 15):
        ia, ib = a[start:start + (1 << 15)], b[start:start + (1 << 15)]
        trial = np.repeat(totals[None], len(ia), axis=0)
        delta = counts[ib] - counts[ia]
        rows = np.arange(len(ia))
        trial[rows, choice[ia]] += delta
        trial[rows, choice[ib]] -= delta
        scores = scorer(trial)
        k = int(np.argmin(scores))
        if current - scores[k] > best_gain:
            best_gain, best = current - scores[k], ("swap", int(ia[k]), int(ib[k]))
    return best


def _pinned_groups(samples: pd.DataFrame, groups: np.ndarray, n_groups: int
                   ) -> tuple[np.ndarray, list[int]]:
    """Split of each group from earlier assignments (-1: none); groups whose assigned
    members disagree keep the split most of them have and are listed as conflicts."""
    pinned = np.full(n_groups, -1, dtype=np.int64)
    conflicts = []
    split = samples["split"].fillna("").to_numpy()
    assigned = np.flatnonzero(np.isin(split, SPLIT_NAMES))
    if not len(assigned):
        return pinned, conflicts
    table = pd.DataFrame({"group": groups[assigned],
                          "split": [SPLIT_NAMES.index(s) for s in split[assigned]]})
    for group, members in table.groupby("group")["split"]:
        counts = np.bincount(members.to_numpy(), minlength=len(SPLIT_NAMES))
        pinned[group] = int(np.argmax(counts))
        if (counts > 0).sum() > 1:
            conflicts.append(int(group))
    return pinned, conflicts


@dataclass
class SplitResult:
    samples: pd.DataFrame
    report: dict


def split_samples(samples: pd.DataFrame, labels: pd.DataFrame, classes: list[str],
                  params: SplitParams, *, previous: dict | None = None) -> SplitResult:
    """The samples table with its ``split`` column assigned, and the split report.

    ``previous`` is the ``split`` record of ``dataset.json`` when an earlier ``split``
    made the current assignments; only then are they kept (pinned). Split values that
    came from elsewhere (an imported list) are kept in ``source_split`` and replaced.
    """
    samples = samples.copy().reset_index(drop=True)
    classes = list(classes) or sorted(labels["label"].unique())
    groups = leakage_groups(samples, params.group_by)
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    counts, columns = group_counts(samples, labels, groups, classes)
    eligible = np.flatnonzero(counts[:, -1] > 0)
    open_splits = [name for name, r in zip(SPLIT_NAMES, params.ratios, strict=True) if r > 0]
    if len(eligible) < len(open_splits):
        raise SplitError(f"only {len(eligible)} group(s) of ok images for {len(open_splits)} "
                         f"splits ({', '.join(open_splits)}): nothing can be held out without "
                         f"leaking")
    split_column = samples["split"].fillna("").astype(str)
    if previous is None and (split_column != "").any() and "source_split" not in samples:
        samples["source_split"] = split_column  # values that came with the data
    if previous is not None and not params.reshuffle:
        pinned_all, conflicts = _pinned_groups(samples, groups, n_groups)
    else:
        pinned_all, conflicts = np.full(n_groups, -1, dtype=np.int64), []
    pinned = pinned_all[eligible]
    result = assign(counts[eligible], params.ratios, len(classes), pinned, seed=params.seed,
                    candidates=params.candidates,
                    exhaustive_max_groups=params.exhaustive_max_groups)
    split_of_group = np.full(n_groups, -1, dtype=np.int64)
    split_of_group[eligible] = result.split_of_group
    # Groups with no ok image keep an earlier split (their duplicates follow it).
    split_of_group = np.where(split_of_group < 0, pinned_all, split_of_group)
    split_of_row = split_of_group[groups]
    status = samples["status"].to_numpy()
    follows = np.isin(status, (ASSIGNED_STATUS, "duplicate")) & (split_of_row >= 0)
    names = np.array(SPLIT_NAMES, dtype=object)
    samples["split"] = np.where(follows, names[np.maximum(split_of_row, 0)], "")
    report = _report(samples, counts[eligible], result, columns, classes, params, eligible,
                     pinned, conflicts)
    return SplitResult(samples, report)


def _report(samples, counts, result, columns, classes, params, eligible, pinned,
            conflicts) -> dict:
    dev = deviations(counts, result.split_of_group, params.ratios)
    totals = _split_totals(counts, result.split_of_group, len(SPLIT_NAMES))
    n_classes = len(classes)
    per_split = {}
    for s, name in enumerate(SPLIT_NAMES):
        per_split[name] = {
            "ratio": params.ratios[s],
            "groups": int((result.split_of_group == s).sum()),
            **{column: int(totals[s, k]) for k, column in enumerate(columns)},
            "deviation": {column: round(float(dev[s, k]), 4) for k, column in enumerate(columns)},
        }
    class_dev = dev[:, :n_classes]
    worst = np.unravel_index(np.argmax(class_dev), class_dev.shape) if n_classes else None
    return {
        "command": "split",
        "parameters": params.model_dump(mode="json"),
        "method": result.method,
        "score": round(result.score, 6),
        "candidate_scores": [round(s, 6) for s in result.candidates],
        "groups": len(eligible),
        "groups_kept_from_earlier_split": int((pinned >= 0).sum()),
        "groups_placed_now": int((pinned < 0).sum()),
        "groups_split_earlier_across_splits": len(conflicts),
        "assigned_images": int((samples["split"] != "").sum()),
        "max_class_deviation": round(float(class_dev.max()), 4) if n_classes else 0.0,
        "worst_class": (f"{classes[worst[1]]} in {SPLIT_NAMES[worst[0]]}"
                        if worst is not None else ""),
        "max_image_deviation": round(float(dev[:, -1].max()), 4),
        "max_defect_free_deviation": round(float(dev[:, -2].max()), 4),
        "classes_missing": {name: [c for k, c in enumerate(classes) if totals[s, k] == 0
                                   and counts[:, k].sum() > 0]
                            for s, name in enumerate(SPLIT_NAMES) if params.ratios[s] > 0},
        "splits": per_split,
    }


SPLIT_REPORT = "split_report.json"


def split_dataset(path, params: SplitParams) -> dict:
    """Assign the ``split`` column of the dataset folder ``path`` and write
    ``split_report.json``; returns the report.

    The folder is rewritten as a whole: the new tables go into a hard-link copy of it,
    which is swapped in when complete, under the folder's writer lock. A kill at any
    point leaves the dataset as it was before or as it is after; never a new split
    column beside old labels."""
    require_folder(path, writer=True)  # a killed swap is put back by staged_output
    with staged_output(path, command="split", clone=True) as stage:
        # Read under the lock: no other writer can change the folder until the swap.
        dataset = load(path)
        result = split_samples(dataset.samples, dataset.labels, dataset.info.classes, params,
                               previous=dataset.info.split)
        dataset.samples = result.samples
        dataset.info.split = {**params.model_dump(mode="json", exclude={"reshuffle"}),
                              "method": result.report["method"],
                              "pcbforge_version": __version__}
        save(dataset, stage)  # replaces the linked files: the live folder is not touched
        report = {**result.report, "dataset": str(path)}
        write_json(stage / SPLIT_REPORT, report)
    return report
