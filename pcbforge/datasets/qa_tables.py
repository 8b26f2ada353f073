"""What ``pcbforge qa`` finds, as tables: the names, columns and files every part shares
(qa writes them; FiftyOne, the report and ``--apply`` read them).

``qa.parquet`` (and ``qa.csv``) hold one row per finding:

=================  ===========================================================================
column             meaning
=================  ===========================================================================
finding_id         stable id (same inputs, same id): ``q`` + 12 hex digits
sample_id          the tested image's sample
kind               one of :data:`KINDS`
detail             the finer kind (e.g. ``defect_like`` / ``misregistration_like`` for a
                   ``missing_label``; ``too_large`` / ``cuts_change`` / ``duplicate`` for a
                   ``box_fit``)
score              0..1, higher is surer
reason             one line a person reads
label_row          the row of the box in ``labels.parquet`` (-1: the finding has no box)
label              that box's class ("" when none)
x1, y1, x2, y2     where the finding is (the box, or the change region), pixels, exclusive ends
action             the proposed correction, one of :data:`ACTIONS`
proposed_label     the class the correction gives ("" when none)
px1, py1, px2, py2 the box the correction gives (NaN when none)
=================  ===========================================================================

``qa_registration.parquet`` holds one row per tested/template pair: see
:data:`REGISTRATION_COLUMNS`.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

QA_PARQUET = "qa.parquet"
QA_CSV = "qa.csv"
QA_JSON = "qa.json"
REGISTRATION_PARQUET = "qa_registration.parquet"
#: Crops (tested | template | difference, the finding drawn) for the report and the docs.
CROPS_DIR = "qa/crops"
#: Registered templates written by ``--register``.
REGISTERED_DIR = "qa/registered"
#: What :func:`from_fiftyone` brings back: ``finding_id, decision`` (``accept``/``reject``).
DECISIONS_CSV = "qa_decisions.csv"
#: The FiftyOne label field with one detection per finding (its proposal).
PROPOSALS_FIELD = "qa_proposals"
#: Label tags a reviewer sets on a proposal in the FiftyOne App.
ACCEPT, REJECT = "accept", "reject"

#: Pair level.
MISREGISTERED = "misregistered"
PAIR_ERROR = "pair_error"  # missing/unreadable template or image, sizes differ
#: Label checks against the template.
MISSING_LABEL = "missing_label"
EMPTY_BOX = "empty_box"
MISPLACED_BOX = "misplaced_box"
CLASS_SUSPECT = "class_suspect"
BOX_FIT = "box_fit"
#: Without templates too.
BOX_SANITY = "box_sanity"  # degenerate, outside the image, duplicate
SIZE_OUTLIER = "size_outlier"  # a box far from its class's size or aspect

KINDS = (MISREGISTERED, PAIR_ERROR, MISSING_LABEL, EMPTY_BOX, MISPLACED_BOX, CLASS_SUSPECT,
         BOX_FIT, BOX_SANITY, SIZE_OUTLIER)

#: Proposed corrections. ``add``: a new box (``proposed_label``, ``px..``); ``delete``: the
#: box ``label_row`` goes; ``move`` / ``refit``: it gets the box ``px..``; ``relabel``: it
#: gets ``proposed_label``; ``none``: nothing to change in the labels (e.g. a registration).
ADD, DELETE, MOVE, REFIT, RELABEL, NONE = "add", "delete", "move", "refit", "relabel", "none"
ACTIONS = (ADD, DELETE, MOVE, REFIT, RELABEL, NONE)

FINDING_COLUMNS = ("finding_id", "sample_id", "kind", "detail", "score", "reason",
                   "label_row", "label", "x1", "y1", "x2", "y2", "action", "proposed_label",
                   "px1", "py1", "px2", "py2")

REGISTRATION_COLUMNS = (
    "sample_id",
    "dx", "dy",  # px that move the template onto the tested image (sub-pixel)
    "rotation_deg",  # about the image centre, counter-clockwise positive
    "residual_p95",  # px: 95th percentile of the local displacement left after the fit
    "tiles",  # tiles that gave a local displacement
    "misregistered",  # bool: beyond the tolerances
    "reason",  # why it is misregistered ("" when not)
    "registered_template",  # path written by --register ("" otherwise)
)


def finding_id(sample_id: str, kind: str, label_row: int, box: tuple) -> str:
    """The stable id of a finding."""
    key = f"{sample_id}\0{kind}\0{label_row}\0" + ",".join(f"{float(v):.1f}" for v in box)
    return "q" + hashlib.blake2b(key.encode(), digest_size=6).hexdigest()


def empty_findings() -> pd.DataFrame:
    """A findings table with no rows and the right column types."""
    floats = ("score", "x1", "y1", "x2", "y2", "px1", "py1", "px2", "py2")
    return pd.DataFrame({
        column: pd.Series(dtype=np.float64 if column in floats else
                          np.int64 if column == "label_row" else object)
        for column in FINDING_COLUMNS})


def findings_table(rows: list[dict]) -> pd.DataFrame:
    """Rows (dicts with the :data:`FINDING_COLUMNS`; ``px..`` may be missing) as a table."""
    table = empty_findings()
    if not rows:
        return table
    frame = pd.DataFrame(rows).reindex(columns=list(FINDING_COLUMNS))
    for column in FINDING_COLUMNS:
        frame[column] = frame[column].astype(table[column].dtype) \
            if column not in ("px1", "py1", "px2", "py2") else frame[column].astype(float)
    return frame


__all__ = [
    "ACCEPT", "ACTIONS", "ADD", "BOX_FIT", "BOX_SANITY", "CLASS_SUSPECT", "CROPS_DIR",
    "DECISIONS_CSV", "DELETE", "EMPTY_BOX", "FINDING_COLUMNS", "KINDS", "MISPLACED_BOX",
    "MISREGISTERED", "MISSING_LABEL", "MOVE", "NONE", "PAIR_ERROR", "PROPOSALS_FIELD",
    "QA_CSV", "QA_JSON", "QA_PARQUET", "REFIT", "REGISTERED_DIR", "REGISTRATION_COLUMNS",
    "REGISTRATION_PARQUET", "REJECT", "RELABEL", "SIZE_OUTLIER", "empty_findings",
    "finding_id", "findings_table",
]
