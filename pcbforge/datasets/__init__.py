"""pcbforge datasets: the dataset folder (samples, labels, dataset.json) and format I/O.

``load(path)`` reads and validates a dataset folder; ``save(dataset)`` writes one. The
label-format modules (``coco``, ``yolo``, ``voc``, ``deeppcb``) convert at the edges, each
owning its discovery, load and save; :data:`FORMATS` (``formats``) is their registry, read
by import, export, the build recipe and the CLI (``register_format`` adds one).
``to_fiftyone`` and ``from_fiftyone`` are loaded on first use: importing fiftyone takes
seconds, and ``import pcbforge`` must not pay for it.
"""

from pcbforge.datasets.dataset import (
    Dataset,
    DatasetError,
    DatasetInfo,
    load,
    save,
    validate,
)
from pcbforge.datasets.formats import FORMATS, LabelFormat, get_format, register_format

__all__ = ["FORMATS", "Dataset", "DatasetError", "DatasetInfo", "LabelFormat", "from_fiftyone",
           "get_format", "load", "register_format", "save", "to_fiftyone", "validate"]

_LAZY = {"to_fiftyone": "pcbforge.datasets.fiftyone",
         "from_fiftyone": "pcbforge.datasets.fiftyone"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
