"""``pcbforge qa``: registration and label checks of inspection pairs.

Every tested image with a template is registered to it (global shift and rotation, a
local displacement map), their difference is measured, and each label is checked
against it: changes no box covers, boxes with no change, boxes moved off their change,
classes the change contradicts, boxes that do not fit. Datasets without templates get
the box checks that need no reference. Findings come with a proposed correction that a
person accepts or rejects (in the FiftyOne App, or by editing ``qa.csv``);
:func:`apply_findings` writes the accepted ones into a new dataset.

- :func:`run_qa`: DATASET -> ``qa.parquet``/``qa.csv`` (one row per finding),
  ``qa_registration.parquet`` (one row per pair), ``qa.json`` (the summary) and crops.
- :func:`apply_findings`: DATASET + accepted finding ids -> a corrected new dataset.
- :func:`check_pair`: the pure per-pair function any engine maps.
"""

from importlib import import_module

from pcbforge.qa.params import QAParams

#: Where each public name lives (imported when first used: the parameters stay light for
#: the parts that only read them).
_LAZY = {"apply_findings": "pcbforge.qa.apply", "check_pair": "pcbforge.qa.checks",
         "run_qa": "pcbforge.qa.runner"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pcbforge.qa' has no attribute {name!r}")


__all__ = ["QAParams", "apply_findings", "check_pair", "run_qa"]
