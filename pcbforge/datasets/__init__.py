"""pcbforge datasets: the dataset folder (samples, labels, dataset.json) and format I/O.

``load(path)`` reads and validates a dataset folder; ``save(dataset)`` writes one. The
format modules (``deeppcb``, ``coco``, ``yolo``, ``voc``) convert at the edges.
"""

from pcbforge.datasets.dataset import (
    Dataset,
    DatasetError,
    DatasetInfo,
    load,
    save,
    validate,
)

__all__ = ["Dataset", "DatasetError", "DatasetInfo", "load", "save", "validate"]
