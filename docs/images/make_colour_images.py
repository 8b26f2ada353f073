"""Draw the colour-board figures of docs/synthesis.md (run from the repository root):

    python docs/images/make_colour_images.py

``colour-boards.png``: crops of three procedural colour boards (``pcbforge synth boards
--style colour``), green/ENIG, blue/HASL and black/bare copper. ``colour-defects.png``:
a tested image drawn on a green board with ``pcbforge synth defects``' default settings,
each label's box and class drawn over it. Seeded: the same bytes on every run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pcbforge.synth.compose import SynthConfig, synthesize_image  # noqa: E402
from pcbforge.synth.pipeline import board_png, read_board_and_layout  # noqa: E402

HERE = Path(__file__).resolve().parent
#: One colour per class (BGR), bright enough on every mask.
CLASS_COLOURS = {"open": (255, 255, 0), "short": (0, 0, 255), "mousebite": (255, 0, 255),
                 "spur": (0, 255, 255), "copper": (0, 140, 255), "pin-hole": (255, 255, 255)}


def _board(seed: int, index: int, mask: str, finish: str, folder: Path):
    path = folder / f"board_{mask}.png"
    path.write_bytes(board_png(seed, index, 640, "colour", mask, finish))
    return read_board_and_layout(str(path))


def _busiest(regions: np.ndarray, side: int) -> tuple[int, int]:
    """The window (on a 20 px grid) that shows the most kinds of region (mask, covered
    copper, finish, hole, silkscreen), then the most silkscreen."""
    def score(x: int, y: int) -> tuple[float, int]:
        counts = np.bincount(regions[y:y + side, x:x + side].ravel(), minlength=6)
        kinds = sum(min(counts[r] / 150.0, 1.0) for r in (0, 1, 2, 4, 5))
        return kinds, int(counts[5])

    h, w = regions.shape
    return max(((x, y) for x in range(0, w - side + 1, 20) for y in range(0, h - side + 1, 20)),
               key=lambda p: score(*p))


def _write(name: str, image: np.ndarray) -> None:
    ok, data = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    assert ok
    (HERE / name).write_bytes(data.tobytes())
    print(f"{name}: {image.shape[1]}x{image.shape[0]} px, {len(data) / 1024:.0f} KiB")


def main() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        crops = []
        for index, mask, finish in ((2, "green", "enig"), (5, "blue", "hasl"),
                                    (7, "black", "copper")):
            image, layout = _board(1, index, mask, finish, Path(tmp))
            x, y = _busiest(layout.regions, 160)
            crops.append(image[y:y + 160, x:x + 160])
        gap = np.full((160, 6, 3), 255, np.uint8)
        _write("colour-boards.png", np.hstack([crops[0], gap, crops[1], gap, crops[2]]))

        image, layout = _board(3, 0, "green", "enig", Path(tmp))
        config = SynthConfig(defects_per_image=(12, 12), defect_free_share=0.0)
        made = synthesize_image(image, np.random.default_rng(11), config, layout=layout)
    side = 320

    def inside(box, x0, y0) -> bool:
        return box[0] >= x0 and box[1] >= y0 and box[2] <= x0 + side and box[3] <= y0 + side

    # The window (on a 32 px grid) that holds the most whole boxes.
    x0, y0 = max(((x, y) for x in range(0, 641 - side, 32) for y in range(0, 641 - side, 32)),
                 key=lambda p: sum(inside(label["box"], *p) for label in made.labels))
    crop = made.image[y0:y0 + side, x0:x0 + side].copy()
    shown = 0
    for label in made.labels:
        x1, y1, x2, y2 = (int(v) for v in label["box"])
        if not inside(label["box"], x0, y0):
            continue
        colour = CLASS_COLOURS[label["label"]]
        cv2.rectangle(crop, (x1 - x0, y1 - y0), (x2 - x0 - 1, y2 - y0 - 1), colour, 1)
        cv2.putText(crop, label["label"], (x1 - x0, max(y1 - y0 - 3, 8)),
                    cv2.FONT_HERSHEY_PLAIN, 0.8, colour, 1, cv2.LINE_AA)
        shown += 1
    print(f"{shown} of {len(made.labels)} defects in the crop")
    _write("colour-defects.png", crop)


if __name__ == "__main__":
    main()
