"""Commands that need several parts: composed here, so no part imports another.

``import_deeppcb``: curation checks on every file of a DeepPCB-layout folder
(corrupt files are recorded, not crashed on), then the layout's pairs, boards,
lists and boxes joined onto the samples table, written as a pcbforge dataset.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pcbforge import __version__
from pcbforge.curate import CurateParams, curate
from pcbforge.datasets.dataset import (
    Dataset,
    DatasetInfo,
    empty_labels,
    sample_id_for,
    save,
    with_defaults,
)
from pcbforge.datasets.deeppcb import DEEPPCB_CLASSES, LayoutProblem, read_deeppcb
from pcbforge.datasets.samples import write_json

#: DeepPCB list files -> pcbforge split (DeepPCB's train/val part is one list).
_LIST_SPLITS = {"trainval": "train", "test": "test", "": ""}


@dataclass
class ImportResult:
    dataset: Dataset
    problems: list[LayoutProblem] = field(default_factory=list)
    report: dict = field(default_factory=dict)


def import_deeppcb(
    src: Path | str, out: Path | str, params: CurateParams | None = None, *, progress: bool = False
) -> ImportResult:
    """Import a DeepPCB-layout folder into the dataset folder ``out``."""
    started = time.perf_counter()
    src = Path(src)
    layout = read_deeppcb(src)  # raises FileNotFoundError when it is not that layout
    curated = curate(src, out, params, progress=progress)
    out = curated.out
    samples = curated.samples.merge(layout.samples, on="path", how="left")
    for column in ("role", "template_path", "board", "pair", "listed_in"):
        samples[column] = samples[column].fillna("")
    samples["source"] = "deeppcb"
    samples["split"] = samples["listed_in"].map(_LIST_SPLITS).fillna("")
    samples["group"] = _join_pair_groups(samples)
    samples["group_size"] = samples.groupby("group")["group"].transform("size").astype(np.int64)
    samples = samples.rename(columns={"listed_in": "deeppcb_list"})
    samples["sample_id"] = [sample_id_for(p, "deeppcb") for p in samples["path"]]

    ids = dict(zip(samples["path"], samples["sample_id"], strict=True))
    labels = empty_labels()
    if len(layout.labels):
        labels = pd.DataFrame({
            "sample_id": layout.labels["path"].map(ids),
            "label": layout.labels["label"],
            **{c: layout.labels[c].astype(np.float64) for c in ("x1", "y1", "x2", "y2")},
            "mask": "", "synthetic": False, "params": "",
        })
    samples, labels = with_defaults(samples, labels)
    info = DatasetInfo(
        classes=list(DEEPPCB_CLASSES),
        image_root=str(src.resolve()),
        provenance=[{"command": "import deeppcb", "source": str(src.resolve()),
                     "pcbforge_version": __version__}],
    )
    dataset = Dataset(out, samples, labels, info)
    save(dataset)
    report = {
        **curated.report,
        "command": "import deeppcb",
        "groups": int(samples["group"].nunique()),
        "groups_with_several_images": int((samples["group_size"] > 1).groupby(
            samples["group"]).first().sum()),
        "tested_images": int((samples["role"] == "tested").sum()),
        "templates": int((samples["role"] == "template").sum()),
        "boards": int(samples.loc[samples["board"] != "", "board"].nunique()),
        "labels": len(labels),
        "labels_per_class": {k: int(v) for k, v in labels["label"].value_counts().items()},
        "layout_problems": [str(p) for p in layout.problems],
        "import_s": round(time.perf_counter() - started, 3),
    }
    write_json(out / "report.json", report)
    return ImportResult(dataset, layout.problems, report)


def _join_pair_groups(samples: pd.DataFrame) -> pd.Series:
    """A tested image and its template share a group, whatever pixels said.

    Curation groups them when it verifies the pair as one scene (96.8% of
    DeepPCB's pairs); the layout states it, so the import joins the rest.
    """
    groups = samples["group"].astype(str).tolist()
    parent = {g: g for g in groups}

    def find(g: str) -> str:
        while parent[g] != g:
            parent[g] = parent[parent[g]]
            g = parent[g]
        return g

    by_path = dict(zip(samples["path"], groups, strict=True))
    for path, template in zip(samples["path"], samples["template_path"], strict=True):
        if template and template in by_path:
            a, b = find(by_path[path]), find(by_path[template])
            if a != b:
                parent[max(a, b)] = min(a, b)
    # A merged group keeps the smallest of its members' group ids.
    return pd.Series([find(g) for g in groups], index=samples.index)
