"""pcbforge: clean, leakage-free, well-labelled PCB inspection datasets.

The Python API, for notebooks and scripts (examples in ``docs/api.md``)::

    import pcbforge as pf

    pf.write_boards("boards", count=6)            # procedural defect-free boards
    pf.synthesize("boards", "synth", count=12)    # defects drawn on them, as a dataset
    dataset = pf.load("synth")                    # its samples and labels tables
    pf.split_dataset("synth", seed=0)             # leakage-free train/val/test
    pf.audit_dataset("synth")                     # prove it
    pf.qa_dataset("synth")                        # check the labels against templates
    pf.evaluate_predictions("synth", "model.json", "coco-results")  # score a model on it
    pf.export("synth", "coco", "synth-coco")      # COCO, YOLO, VOC or DeepPCB
    pf.tile_dataset("panels", "tiles")            # whole panels cut into training tiles
    pf.untile_predictions("tiles", "run.json", "coco-results", "panel-predictions.parquet")
    pf.import_dataset("coco", "synth-coco", "imported")
    pf.curate_images("photos", "curated")         # any folder of images
    pf.to_fiftyone("synth")                       # browse it in the FiftyOne App

Each name is loaded on first use (PEP 562): ``import pcbforge`` imports nothing else,
and has no side effects: nothing here touches the network, the environment or global
library state. Commands set their defaults on entry (see
:func:`pcbforge.env.apply_offline_defaults`).

The verbs that act on a folder are named for what they take (``curate_images``,
``split_dataset``, ``audit_dataset``, ``qa_dataset``): ``pcbforge.curate``,
``pcbforge.split``, ``pcbforge.audit`` and ``pcbforge.qa`` are modules, and a module
imported later would replace a package attribute of the same name.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> (module, attribute), imported on first use.
_LAZY: dict[str, tuple[str, str]] = {
    "curate_images": ("pcbforge.curate.runner", "curate"),
    "CurateParams": ("pcbforge.curate.runner", "CurateParams"),
    "load": ("pcbforge.datasets.dataset", "load"),
    "Dataset": ("pcbforge.datasets.dataset", "Dataset"),
    "SplitParams": ("pcbforge.split", "SplitParams"),
    "audit_dataset": ("pcbforge.audit", "audit"),
    "synthesize": ("pcbforge.synth.pipeline", "synthesize"),
    "write_boards": ("pcbforge.synth.pipeline", "write_boards"),
    "export": ("pcbforge.pipeline", "export_dataset"),
    "to_fiftyone": ("pcbforge.datasets.fiftyone", "to_fiftyone"),
    "qa_dataset": ("pcbforge.qa.runner", "run_qa"),
    "apply_qa": ("pcbforge.qa.apply", "apply_findings"),
    "QAParams": ("pcbforge.qa.params", "QAParams"),
    "evaluate_predictions": ("pcbforge.evaluate.runner", "evaluate_dataset"),
    "from_fiftyone": ("pcbforge.datasets.fiftyone", "from_fiftyone"),
    "tile_dataset": ("pcbforge.datasets.tiling", "tile_dataset"),
    "TileParams": ("pcbforge.datasets.tiling", "TileParams"),
    "untile_predictions": ("pcbforge.evaluate.untile", "untile_predictions"),
}

if TYPE_CHECKING:  # what the lazy names are, for type checkers and editors
    from pcbforge.audit import audit as audit_dataset
    from pcbforge.curate.runner import CurateParams
    from pcbforge.curate.runner import curate as curate_images
    from pcbforge.datasets.dataset import Dataset, load
    from pcbforge.datasets.fiftyone import from_fiftyone, to_fiftyone
    from pcbforge.datasets.tiling import TileParams, tile_dataset
    from pcbforge.evaluate.runner import evaluate_dataset as evaluate_predictions
    from pcbforge.evaluate.untile import untile_predictions
    from pcbforge.pipeline import ImportResult
    from pcbforge.pipeline import export_dataset as export
    from pcbforge.qa.apply import apply_findings as apply_qa
    from pcbforge.qa.params import QAParams
    from pcbforge.qa.runner import run_qa as qa_dataset
    from pcbforge.split import SplitParams
    from pcbforge.synth.pipeline import synthesize, write_boards


def split_dataset(path, params: SplitParams | None = None, **settings: Any) -> dict:
    """Assign the ``split`` column of the dataset folder ``path`` (leakage-free, stratified
    by class) and return the report; ``settings`` are :class:`SplitParams` fields
    (``ratios``, ``seed``, ``group_by``...), or pass ``params`` whole.

    See :func:`pcbforge.split.split_dataset`."""
    from pcbforge.split import SplitParams, split_dataset

    if params is not None and settings:
        raise TypeError(f"give params or settings, not both (got settings {sorted(settings)})")
    return split_dataset(path, params if params is not None else SplitParams(**settings))


def import_dataset(fmt: str, src, out, **options: Any) -> ImportResult:
    """Import the labelled source ``src`` in format ``fmt`` (``deeppcb``, ``coco``,
    ``yolo`` or ``voc``) as the dataset folder ``out``: every image curated, the labels
    joined on. ``options`` go to :func:`pcbforge.pipeline.import_deeppcb` or
    :func:`pcbforge.pipeline.import_labelled` (``params``, ``images``, ...)."""
    from pcbforge.pipeline import LABELLED_FORMATS, import_deeppcb, import_labelled

    if fmt == "deeppcb":
        return import_deeppcb(src, out, **options)
    if fmt in LABELLED_FORMATS:
        return import_labelled(fmt, src, out, **options)
    raise ValueError(f"unknown format {fmt!r}; expected one of "
                     f"{', '.join(('deeppcb', *LABELLED_FORMATS))}")


def __getattr__(name: str):
    if name in _LAZY:
        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value  # the next lookup is a plain attribute
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = ["CurateParams", "Dataset", "QAParams", "SplitParams", "TileParams", "__version__",
           "apply_qa", "audit_dataset", "curate_images", "evaluate_predictions", "export",
           "from_fiftyone", "import_dataset", "load", "qa_dataset", "split_dataset",
           "synthesize", "tile_dataset", "to_fiftyone", "untile_predictions", "write_boards"]
