"""Commands that need several parts: composed here, so no part imports another.

``import_deeppcb``: curation checks on every file of a DeepPCB-layout folder
(corrupt files are recorded, not crashed on), then the layout's pairs, boards,
lists and boxes joined onto the samples table, written as a pcbforge dataset.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pcbforge import __version__
from pcbforge.curate import CurateParams, curate
from pcbforge.curate.dedupe import UnionFind
from pcbforge.datasets.dataset import (
    Dataset,
    DatasetInfo,
    empty_labels,
    load,
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
    # Sorted codes: the union's smaller root is the smallest group id.
    codes, names = pd.factorize(samples["group"].astype(str), sort=True)
    sets = UnionFind(len(names))
    code_of = dict(zip(samples["path"], codes, strict=True))
    for path, template in zip(samples["path"], samples["template_path"], strict=True):
        if template and template in code_of:
            sets.union(int(code_of[path]), int(code_of[template]))
    # A merged group keeps the smallest of its members' group ids.
    return pd.Series(np.asarray(names)[sets.labels()[codes]], index=samples.index)


EXPORT_FORMATS = ("coco", "yolo", "voc", "deeppcb")


def export_dataset(
    dataset_path: Path | str,
    fmt: str,
    out: Path | str,
    *,
    include_status: tuple[str, ...] = ("ok",),
) -> dict:
    """Write a dataset's samples of the given statuses in ``fmt``, per split.

    COCO and VOC get one folder per split (``all`` when nothing is split);
    YOLO one folder with ``images/<split>`` and a ``data.yaml`` naming every
    split; DeepPCB one layout with ``trainval.txt``/``test.txt``. The export
    is built in a hidden folder and renamed into place.
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"--out {out} exists and is not empty")
    dataset = load(dataset_path, check_files=True)
    rows = dataset.samples[dataset.samples["status"].isin(include_status)]
    labels = dataset.labels[dataset.labels["sample_id"].isin(rows["sample_id"])]
    splits = sorted(set(rows["split"]) - {""}) or [""]
    stage = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    counts: dict[str, dict[str, int]] = {}
    try:
        if fmt == "deeppcb":
            from pcbforge.datasets.deeppcb import save_deeppcb

            counts["all"] = save_deeppcb(rows, labels, dataset.image_root, stage)
        else:
            for split in splits:
                part = rows if split == "" else rows[rows["split"] == split]
                part_labels = labels[labels["sample_id"].isin(part["sample_id"])]
                _save_split(fmt, part, part_labels, dataset, stage, split)
                counts[split or "all"] = {"images": len(part), "boxes": len(part_labels)}
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(stage, out)
        if fmt == "yolo":
            _point_yolo_yaml_at(out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    report = {"command": "export", "format": fmt, "dataset": str(dataset_path), "out": str(out),
              "include_status": list(include_status), "splits": counts}
    write_json(out / "export_report.json", report)
    return report


def _save_split(fmt, samples, labels, dataset, stage: Path, split: str) -> None:
    classes, root = dataset.info.classes, dataset.image_root
    if fmt == "coco":
        from pcbforge.datasets.coco import save_coco

        save_coco(samples, labels, classes, root, stage / (split or "all"))
    elif fmt == "voc":
        from pcbforge.datasets.voc import save_voc

        save_voc(samples, labels, classes, root, stage / (split or "all"))
    else:
        from pcbforge.datasets.yolo import save_yolo

        save_yolo(samples, labels, classes, root, stage, split=split or "train")


def _point_yolo_yaml_at(folder: Path) -> None:
    """The YOLO config's absolute ``path`` was the staging folder: point it at
    the final one (Ultralytics resolves a relative path elsewhere)."""
    import yaml

    from pcbforge.datasets.yolo import YAML_NAMES

    for name in YAML_NAMES:
        config_path = folder / name
        if config_path.is_file():
            config = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
            config["path"] = str(folder.resolve())
            config_path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True),
                                   encoding="utf-8")
