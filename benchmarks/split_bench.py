"""Class balance of `pcbforge split` against scikit-learn's group splitters.

    python benchmarks/split_bench.py DATASET [--group-by board] [--seeds 10]

DATASET is a pcbforge dataset (e.g. `pcbforge import deeppcb DIR --out DATASET`). For each
seed, every method splits the same leakage groups 0.7/0.15/0.15; printed: the largest
deviation of a class's box share in a split from its ratio (median and worst over seeds).
scikit-learn's StratifiedGroupKFold (20 folds: 14/3/3) stratifies by each group's most
common class; GroupShuffleSplit ignores classes.
"""

from __future__ import annotations

import argparse

import numpy as np

from pcbforge.datasets import load
from pcbforge.split import SplitParams, assign, deviations, group_counts, leakage_groups


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset")
    parser.add_argument("--group-by", action="append", default=[])
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()
    from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold

    dataset = load(args.dataset)
    classes = dataset.info.classes
    groups = leakage_groups(dataset.samples, tuple(args.group_by))
    counts, _ = group_counts(dataset.samples, dataset.labels, groups, classes)
    counts = counts[counts[:, -1] > 0]
    ratios = (0.7, 0.15, 0.15)
    n_classes = len(classes)
    ids = np.arange(len(counts))
    label = counts[:, :n_classes].argmax(axis=1)
    results: dict[str, list[float]] = {"pcbforge split": [], "StratifiedGroupKFold": [],
                                       "GroupShuffleSplit": []}
    method = ""
    for seed in range(args.seeds):
        found = assign(counts, ratios, n_classes, seed=seed,
                       exhaustive_max_groups=SplitParams().exhaustive_max_groups)
        method = found.method
        results["pcbforge split"].append(deviations(counts, found.split_of_group, ratios)
                                         [:, :n_classes].max())
        folds = min(20, len(ids))
        split = np.zeros(len(ids), dtype=np.int64)
        sgkf = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        try:
            for fold, (_, test) in enumerate(sgkf.split(ids, label, ids)):
                split[test] = 0 if fold < round(0.7 * folds) else (
                    1 if fold < round(0.85 * folds) else 2)
            results["StratifiedGroupKFold"].append(deviations(counts, split, ratios)
                                                   [:, :n_classes].max())
        except ValueError:  # too few groups per class for its folds
            pass
        outer = GroupShuffleSplit(n_splits=1, test_size=0.3, random_state=seed)
        train, rest = next(outer.split(ids, groups=ids))
        inner = GroupShuffleSplit(n_splits=1, test_size=0.5, random_state=seed)
        val, test = next(inner.split(rest, groups=rest))
        split = np.zeros(len(ids), dtype=np.int64)
        split[rest[val]], split[rest[test]] = 1, 2
        results["GroupShuffleSplit"].append(deviations(counts, split, ratios)
                                            [:, :n_classes].max())
    print(f"{len(counts)} groups (group-by: {args.group_by or 'default'}); pcbforge: {method}")
    for name, values in results.items():
        if not values:
            print(f"{name:22s} cannot split {len(counts)} groups this way")
            continue
        print(f"{name:22s} largest class-share deviation: median {np.median(values):.4f}, "
              f"worst {np.max(values):.4f} over {args.seeds} seeds")


if __name__ == "__main__":
    main()
