"""pcbforge datasets: the dataset folder (samples, labels, dataset.json) and format I/O.

``load(path)`` reads and validates a dataset folder; ``save(dataset)`` writes one. The
format modules (``deeppcb``, ``coco``, ``yolo``, ``voc``, ``fiftyone_io``) convert at the
edges. ``to_fiftyone`` and ``from_fiftyone`` are loaded on first use: importing
fiftyone takes seconds, and ``import pcbforge`` must not pay for it.
"""

from pcbforge.datasets.dataset import (
    Dataset,
    DatasetError,
    DatasetInfo,
    load,
    save,
    validate,
)

__all__ = ["Dataset", "DatasetError", "DatasetInfo", "from_fiftyone", "load", "save",
           "to_fiftyone", "validate"]

_LAZY = {"to_fiftyone": "pcbforge.datasets.fiftyone_io",
         "from_fiftyone": "pcbforge.datasets.fiftyone_io"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
