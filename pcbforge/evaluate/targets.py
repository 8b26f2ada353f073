"""Targeted synthesis: class weights for ``synth`` from what a model misses.

An evaluation (``pcbforge evaluate``) says, per class, which share of the labelled
defects the model found at its best-F threshold (recall). The synthetic defects of a
class are then drawn in proportion to ``1 - recall``, with a floor so that no class
disappears from the training set: more of what the model gets wrong, some of everything.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from pcbforge.datasets.evaluation_tables import (
    EVALUATIONS_DIR,
    METRICS_JSON,
    EvaluationError,
    read_evaluation,
)

#: The least weight a class gets (its share of draws against a class the model always
#: misses, weight 1).
WEIGHT_FLOOR = 0.1


def read_for_balance(evaluation: Path | str) -> tuple[dict, str]:
    """``metrics.json`` of an evaluation given as its folder
    (``DATASET/evaluations/NAME``) or the file itself; and a note naming it."""
    path = Path(evaluation)
    if path.is_file() and path.name == METRICS_JSON:
        path = path.parent
    if path.parent.name != EVALUATIONS_DIR:
        raise EvaluationError(f"{evaluation}: expected an evaluation, DATASET/"
                              f"{EVALUATIONS_DIR}/NAME (or its {METRICS_JSON}), as "
                              "`pcbforge evaluate` writes it")
    metrics = read_evaluation(path.parent.parent, path.name)
    return metrics, f"from-evaluation {path.name} (split {metrics.get('split', '?')})"


def weights_from_evaluation(metrics: dict, classes: Sequence[str],
                            floor: float = WEIGHT_FLOOR) -> list[float]:
    """Per class of ``classes``: ``max((1 - recall) / worst, floor)``, recall at the
    evaluation's best-F threshold (DeepPCB's rule), ``worst`` the largest ``1 - recall``
    of the classes. A class the evaluation has no labelled box of gets weight 1: nothing
    says the model finds it. A model that misses nothing gets every class alike (weight
    1). Raises :class:`EvaluationError` when the evaluation knows none of ``classes``."""
    if not 0 < floor <= 1:
        raise ValueError(f"floor must be in (0, 1], got {floor}")
    per_class = metrics.get("deeppcb", {}).get("per_class", {})
    known = [c for c in classes if c in per_class]
    if not known:
        raise EvaluationError(
            f"evaluation {metrics.get('name', '?')!r} scores none of the classes "
            f"{', '.join(classes)} (it scores {', '.join(per_class) or 'nothing'})")
    misses: list[float | None] = []
    for name in classes:
        recall = per_class.get(name, {}).get("recall")
        unknown = recall is None or (isinstance(recall, float) and math.isnan(recall))
        misses.append(None if unknown else 1.0 - float(recall))
    worst = max((m for m in misses if m is not None), default=0.0)
    return [1.0 if m is None or worst <= 0 else round(max(m / worst, floor), 6)
            for m in misses]


__all__ = ["WEIGHT_FLOOR", "read_for_balance", "weights_from_evaluation"]
