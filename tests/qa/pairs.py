"""Hand-made inspection pairs for qa: a binary board (dark copper on white) with its
defects at known places, and helpers to write pairs and datasets of them."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from pcbforge.datasets.dataset import Dataset, DatasetInfo, save, with_defaults
from pcbforge.qa.checks import Box, PairJob

SIZE = 320
#: Where the hand-made defects are (x1, y1, x2, y2, exclusive), tight.
SHORT = (205, 100, 236, 110)  # joins the traces at x=200 and x=240
OPEN = (155, 150, 166, 160)  # cuts the trace at x=160
PIN_HOLE = (274, 116, 283, 125)  # a hole in the pad
LABELLED_SHORT = (196, 90, 244, 120)  # as an operator draws it: padded


def board() -> np.ndarray:
    """The template: six vertical traces, a bus joining the first three, pads, a large
    pad and rings (structure both ways for registration)."""
    image = np.full((SIZE, SIZE), 255, np.uint8)
    for i in range(6):
        x = 40 + 40 * i
        cv2.rectangle(image, (x - 5, 30), (x + 5, 285), 0, -1)
        cv2.circle(image, (x, 290), 12, 0, -1)
        cv2.circle(image, (x, 290), 4, 255, -1)
    cv2.rectangle(image, (40, 55), (120, 65), 0, -1)
    cv2.rectangle(image, (262, 100), (300, 140), 0, -1)
    for x, y in ((280, 200), (280, 250), (20, 160)):
        cv2.circle(image, (x, y), 10, 0, 3)
    cv2.line(image, (280, 30), (310, 60), 0, 6)
    return image


def with_defects(*defects: str) -> np.ndarray:
    """The board with the named defects drawn (``short``, ``open``, ``pin-hole``)."""
    image = board()
    for defect in defects:
        x1, y1, x2, y2 = {"short": SHORT, "open": OPEN, "pin-hole": PIN_HOLE}[defect]
        cv2.rectangle(image, (x1, y1), (x2 - 1, y2 - 1), 0 if defect == "short" else 255, -1)
    return image


def padded(box: tuple, pad: int = 10) -> tuple:
    x1, y1, x2, y2 = box
    return (max(x1 - pad, 0), max(y1 - pad, 0), min(x2 + pad, SIZE), min(y2 + pad, SIZE))


def write_pair(folder: Path, name: str, test_image: np.ndarray, template: np.ndarray
               ) -> tuple[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / f"{name}_test.png"), test_image)
    cv2.imwrite(str(folder / f"{name}_temp.png"), template)
    return str(folder / f"{name}_test.png"), str(folder / f"{name}_temp.png")


def job(folder: Path, test_image: np.ndarray, template: np.ndarray | None = None,
        boxes: list[tuple] = (), name: str = "p", **params) -> PairJob:
    """A :class:`PairJob` of the pair written into ``folder``; ``boxes`` are
    ``(label, (x1, y1, x2, y2))``."""
    from pcbforge.qa.params import QAParams

    template = board() if template is None else template
    test_path, temp_path = write_pair(folder, name, test_image, template)
    return PairJob(name, test_path, temp_path,
                   tuple(Box(i, label, *map(float, xyxy)) for i, (label, xyxy)
                         in enumerate(boxes)), params=QAParams(**params))


def kinds(result) -> list[tuple[str, str]]:
    return sorted((f["kind"], f["detail"]) for f in result.findings)


def write_dataset(root: Path, pairs: dict[str, tuple[np.ndarray, np.ndarray, list]]
                  ) -> Path:
    """A pcbforge dataset at ``root/ds`` of ``{name: (tested, template, boxes)}`` with the
    images in ``root/images``: tested rows name their template; templates are rows too."""
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows, labels = [], []
    for name, (test_image, template, boxes) in pairs.items():
        cv2.imwrite(str(images / f"{name}_test.png"), test_image)
        if template is not None:
            cv2.imwrite(str(images / f"{name}_temp.png"), template)
        height, width = test_image.shape[:2]
        rows.append({"sample_id": f"s_{name}", "path": f"{name}_test.png", "role": "tested",
                     "template_path": f"{name}_temp.png" if template is not None else "",
                     "width": width, "height": height, "group": name})
        if template is not None:
            rows.append({"sample_id": f"t_{name}", "path": f"{name}_temp.png",
                         "role": "template", "template_path": "", "width": width,
                         "height": height, "group": name})
        for label, (x1, y1, x2, y2) in boxes:
            labels.append({"sample_id": f"s_{name}", "label": label, "x1": float(x1),
                           "y1": float(y1), "x2": float(x2), "y2": float(y2)})
    samples, table = with_defaults(pd.DataFrame(rows), pd.DataFrame(labels) if labels
                                   else None)
    info = DatasetInfo(classes=["open", "short", "mousebite", "spur", "copper", "pin-hole"],
                       image_root=str(images))
    save(Dataset(root / "ds", samples, table, info))
    return root / "ds"


def write_planted(tmp_path: Path) -> Path:
    """A dataset with one error of each kind, each in its own pair, and a clean pair."""
    shifted = cv2.warpAffine(board(), np.float32([[1, 0, 5], [0, 1, -4]]), (SIZE, SIZE),
                             borderMode=cv2.BORDER_REPLICATE)
    return write_dataset(tmp_path, {
        "clean": (with_defects("short", "open"), board(),
                  [("short", LABELLED_SHORT), ("open", padded(OPEN))]),
        "deleted": (with_defects("short", "open"), board(), [("open", padded(OPEN))]),
        "phantom": (with_defects("short"), board(),
                    [("short", LABELLED_SHORT), ("pin-hole", (150, 200, 175, 225))]),
        "moved": (with_defects("short"), board(), [("short", (196, 190, 244, 220))]),
        "swapped": (with_defects("short"), board(), [("open", LABELLED_SHORT)]),
        "shifted": (with_defects("short"), shifted, [("short", LABELLED_SHORT)]),
    })
