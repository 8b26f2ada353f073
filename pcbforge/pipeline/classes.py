"""``pcbforge classes DATASET``: a dataset's class vocabulary (each class, the source names
its boxes were imported under, boxes per split, images), written as ``classes.json``."""

from __future__ import annotations

from pathlib import Path

from pcbforge.core.files import write_json
from pcbforge.core.output import staged_output
from pcbforge.datasets.classes import class_summary
from pcbforge.datasets.dataset import load, require_folder

CLASSES_JSON = "classes.json"


def class_report(dataset_path: Path | str) -> dict:
    """The class summary of the dataset folder ``dataset_path`` (see
    :func:`pcbforge.datasets.classes.class_summary`), with what each import renamed or kept
    as a new class (``dataset.json``'s provenance); written into the folder as
    ``classes.json`` like every output (a hard-link copy swapped in whole, under the
    folder's writer lock)."""
    require_folder(dataset_path, writer=True)  # a killed swap is put back by staged_output
    with staged_output(dataset_path, command="classes", clone=True) as stage:
        dataset = load(dataset_path)
        report = {"command": "classes", "dataset": str(dataset_path),
                  **class_summary(dataset.samples, dataset.labels, dataset.info.classes),
                  "imports": [{"command": p.get("command", ""), "source": p.get("source", ""),
                               **p["classes"]}
                              for p in dataset.info.provenance if "classes" in p]}
        write_json(stage / CLASSES_JSON, report)
    return report


__all__ = ["CLASSES_JSON", "class_report"]
