"""Reading a defect's brush style back from a pair, on drawn shapes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from pcbforge.bench.strokes import (
    STYLES,
    classify,
    folder_styles,
    pair_styles,
    stroke_features,
    stroke_style,
    style_shares,
)
from pcbforge.synth.brush import restyle
from tests.conftest import write_deeppcb_layout


def _blob() -> np.ndarray:
    m = np.zeros((40, 40), np.uint8)
    cv2.ellipse(m, (20, 20), (13, 8), 20, 0, 360, 1, -1)
    return m


def _lattice() -> np.ndarray:
    m = np.zeros((40, 40), np.uint8)
    m[8:32, 8:32] = 1
    m[11:30:4, 11:30:4] = 0  # single-pixel holes, as overlapping stamped strokes leave
    return m


def _ring() -> np.ndarray:
    m = np.zeros((40, 40), np.uint8)
    cv2.ellipse(m, (20, 20), (12, 9), 0, 0, 360, 1, 3)
    return m


def test_features_of_drawn_shapes() -> None:
    assert stroke_features(np.zeros((5, 5), np.uint8))["area"] == 0
    solid = stroke_features(_blob())
    assert solid["holes"] == 0 and solid["hole_share"] == 0
    lattice = stroke_features(_lattice())
    assert lattice["holes"] == 25 and lattice["largest_hole"] == 1
    ring = stroke_features(_ring())
    assert ring["largest_hole"] > 50 and ring["hole_share"] > 0.3
    plus = np.zeros((7, 7), np.uint8)
    plus[3, 1:6] = 1
    plus[1:6, 3] = 1
    assert stroke_features(plus)["tips"] > 0.4


def test_a_notch_open_to_the_outside_is_no_hole() -> None:
    m = _blob()
    m[20, 5:12] = 0  # a slit from the edge inwards
    assert stroke_features(m)["holes"] == 0


def test_classify_drawn_shapes() -> None:
    assert classify(stroke_features(_blob())) == "solid"
    assert classify(stroke_features(_lattice())) == "stamped"
    assert classify(stroke_features(_ring())) == "outline"


def test_classify_reads_back_the_brush_styles() -> None:
    region = np.zeros((44, 44), np.uint8)
    cv2.ellipse(region, (22, 22), (15, 9), 30, 0, 360, 1, -1)
    stamped = {"name": "stamped", "arm": 1, "thick": 1, "spacing": 2.0, "pitch": 2.2,
               "wobble": 0.5, "jitter": 0.0, "trail": True, "reach": 1, "seed": 1}
    assert classify(stroke_features(restyle(region, {"name": "solid"}))) == "solid"
    assert classify(stroke_features(restyle(region, stamped))) == "stamped"
    assert classify(stroke_features(restyle(region, {**stamped, "name": "outline"}))) == "outline"


def test_stroke_style_reads_the_change_inside_the_box() -> None:
    template = np.zeros((80, 80), np.uint8)
    template[:, 50:] = 1  # a conductor on the right
    tested = template.copy()
    tested[20:60, 0:40] = _lattice()
    box = (0, 20, 40, 60)
    assert stroke_style(template, tested, box) == "stamped"
    assert stroke_style(template, template, box) == "solid"  # no change at all
    # Same defect, solid: the lattice filled in.
    filled = template.copy()
    filled[28:52, 8:32] = 1
    assert stroke_style(template, filled, (0, 20, 40, 60)) == "solid"
    rows = pair_styles(template, tested, [(*box, "copper"), (50, 0, 80, 20, "spur")])
    assert [r["label"] for r in rows] == ["copper", "spur"]
    assert [r["style"] for r in rows] == ["stamped", "solid"]


def test_style_shares_count_every_style() -> None:
    import pandas as pd

    table = pd.DataFrame({"label": ["open", "open", "open", "short"],
                          "style": ["stamped", "solid", "solid", "solid"]})
    shares = style_shares(table).set_index("label")
    assert list(shares.columns) == [*STYLES, "n"]
    assert shares.loc["open", "stamped"] == round(1 / 3, 3)
    assert shares.loc["open", "outline"] == 0
    assert shares.loc["short", "n"] == 1
    assert style_shares(table.iloc[:0]).empty


def test_folder_styles_walk_a_deeppcb_folder(tmp_path: Path) -> None:
    expected = write_deeppcb_layout(tmp_path, {"group100": 2, "group200": 1},
                                    np.random.default_rng(0))
    table = folder_styles(tmp_path)
    assert len(table) == expected["boxes"]
    assert set(table["board"]) == {"group100", "group200"}
    assert set(table["style"]) <= set(STYLES)
    assert len(folder_styles(tmp_path, {"group200"})) == 2
