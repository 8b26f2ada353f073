"""``pcbforge export``: a dataset's usable samples written in another format, per split.

Any format of the registry (:data:`pcbforge.datasets.formats.FORMATS`) that can be
exported: the format writes the rows (its ``save``), this module chooses them, stages the
folder and writes the report.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pcbforge.core.files import write_json
from pcbforge.core.output import staged_output
from pcbforge.datasets.dataset import Dataset, load
from pcbforge.datasets.formats import FormatNames, LabelFormat, get_format

#: The formats :func:`export_dataset` writes (a live view of the registry).
EXPORT_FORMATS = FormatNames("export")
#: The report an export writes into its folder; it also marks the folder as an export.
EXPORT_REPORT = "export_report.json"


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
    split; DeepPCB one layout with ``trainval.txt``/``test.txt``. The export,
    ``export_report.json`` included, is built in a hidden stage and swapped into
    place (:func:`pcbforge.core.staged_output`); an earlier export in ``out`` is
    replaced, any other non-empty folder refused.
    """
    label_format = get_format(fmt, can="export")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is a file")
    if out.is_dir() and any(out.iterdir()) and not (out / EXPORT_REPORT).is_file():
        raise ValueError(f"--out {out} exists, is not empty and is not a pcbforge export; "
                         "refusing to replace it")
    dataset = load(dataset_path, check_files=True)
    rows = dataset.samples[dataset.samples["status"].isin(include_status)]
    labels = dataset.labels[dataset.labels["sample_id"].isin(rows["sample_id"])]
    with staged_output(out, command="export") as stage:
        counts = _save_parts(label_format, rows, labels, dataset, stage)
        if label_format.finish is not None:
            label_format.finish(stage, out.resolve())
        report = {"command": "export", "format": label_format.name,
                  "dataset": str(dataset_path), "out": str(out),
                  "include_status": list(include_status), "splits": counts}
        write_json(stage / EXPORT_REPORT, report)
    return report


def _save_parts(label_format: LabelFormat, rows: pd.DataFrame, labels: pd.DataFrame,
                dataset: Dataset, stage: Path) -> dict[str, dict[str, int]]:
    """Every split saved into ``stage`` (one call per split, or one for all the rows when
    the format writes the splits itself): the counts of each, by split name."""
    if not label_format.per_split:
        return {"all": _save_split(label_format, rows, labels, dataset, stage, "")}
    counts = {}
    for split in sorted(set(rows["split"]) - {""}) or [""]:
        part = rows if split == "" else rows[rows["split"] == split]
        part_labels = labels[labels["sample_id"].isin(part["sample_id"])]
        counts[split or "all"] = _save_split(label_format, part, part_labels, dataset, stage,
                                             split)
    return counts


def _save_split(label_format: LabelFormat, samples: pd.DataFrame, labels: pd.DataFrame,
                dataset: Dataset, stage: Path, split: str) -> dict[str, int]:
    return label_format.save(samples, labels, dataset.info.classes, dataset.image_root,
                             stage, split)
