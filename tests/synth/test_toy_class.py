"""A seventh defect class added in one place: one :class:`DefectSpec` registered.

The toy class, ``stain``, is a small square of spurious copper standing free in clear
substrate. Registered (and nothing else changed), it is synthesized, recorded in the
dataset's class list so the dataset validates, exported to COCO and YOLO, and shown in
FiftyOne. Before the registry, synthesis wrote DeepPCB's six classes as the class list
whatever it drew, so a seventh class's labels failed validation.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from pcbforge.datasets.dataset import load
from pcbforge.pipeline import export_dataset
from pcbforge.synth.analysis import BoardAnalysis
from pcbforge.synth.compose import SynthConfig
from pcbforge.synth.defects import Params
from pcbforge.synth.pipeline import synthesize, write_boards
from pcbforge.synth.registry import DEFECTS, DefectSpec, Facts, nets_near, registered

DEEPPCB_ORDER = ["open", "short", "mousebite", "spur", "copper", "pin-hole"]


# --- the toy class: everything it needs, in one spec ---------------------------------------

def _sample_stain(a: BoardAnalysis, rng: np.random.Generator) -> Params | None:
    """A square of 8-14 px (at 48 px/mm) in substrate at least its side from copper."""
    side = int(round(float(rng.uniform(8.0, 14.0)) * a.scale))
    h, w = a.shape
    for _ in range(24):
        y, x = int(rng.integers(side, h - 2 * side)), int(rng.integers(side, w - 2 * side))
        centre_y, centre_x = y + side // 2, x + side // 2
        if a.dist_substrate[centre_y, centre_x] >= 1.5 * side:
            return {"square": [x, y, side], "host": [centre_y, centre_x]}
    return None


def _square_bounds(params: Params) -> tuple[int, int, int, int]:
    x, y, side = params["square"]  # type: ignore[misc]
    return x, y, x + side, y + side


def _draw_square(params: Params, origin: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(size, np.uint8)
    x, y, side = params["square"]  # type: ignore[misc]
    x0, y0 = x - origin[0], y - origin[1]
    mask[max(y0, 0):max(y0 + side, 0), max(x0, 0):max(x0 + side, 0)] = 1
    return mask


def _clear_of_copper(a: BoardAnalysis, params: Params, region: np.ndarray,
                     origin: tuple[int, int]) -> bool:
    return not nets_near(a, region, origin, 5.0 * a.scale)


def _free_standing(facts: Facts) -> tuple[bool, str]:
    if facts["merges"] or not facts["island"]:
        return False, "not a free-standing stain"
    return True, ""


STAIN = DefectSpec("stain", adds_copper=True, sample=_sample_stain, topology=_free_standing,
                   clearance=_clear_of_copper, draw=_draw_square, bounds=_square_bounds)


# --- fixtures ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def boards(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("toy") / "boards"
    write_boards(out, count=3, seed=0, progress=False)
    return out


@pytest.fixture(scope="module")
def stained(boards, tmp_path_factory) -> tuple[Path, dict]:
    """A synthetic dataset drawn with the toy class registered (in-process: one worker)."""
    out = tmp_path_factory.mktemp("toy") / "stained"
    with registered(STAIN):
        config = SynthConfig(classes="stain,short", defects_per_image=(2, 4))
        report = synthesize(boards, out, count=6, seed=1, config=config, progress=False)
    return out, report


# --- tests ---------------------------------------------------------------------------------

def test_registering_adds_the_class_everywhere_and_unregistering_removes_it() -> None:
    with registered(STAIN) as spec:
        assert spec is DEFECTS["stain"]
        assert list(DEFECTS) == [*DEEPPCB_ORDER, "stain"]
        assert SynthConfig().classes == (*DEEPPCB_ORDER, "stain")
        assert SynthConfig(classes="stain").classes == ("stain",)
    assert list(DEFECTS) == DEEPPCB_ORDER
    with pytest.raises(ValueError, match="unknown defect class 'stain'"):
        SynthConfig(classes="stain")


def test_a_taken_name_is_refused() -> None:
    with pytest.raises(ValueError, match="already registered"):
        with registered(DefectSpec("short", adds_copper=True, sample=_sample_stain,
                                   topology=_free_standing)):
            pass
    assert DEFECTS["short"] is not STAIN and list(DEFECTS) == DEEPPCB_ORDER


def test_toy_class_is_synthesized_and_the_dataset_validates(stained) -> None:
    out, report = stained
    assert report["failed_images"] == []
    assert report["defects"].get("stain", 0) >= 3, report["defects"]
    dataset = load(out)  # validates: every label's class is in the class list
    assert dataset.info.classes == [*DEEPPCB_ORDER, "stain"]
    stains = dataset.labels[dataset.labels["label"] == "stain"]
    assert len(stains) == report["defects"]["stain"]
    for row in stains.itertuples():
        params = json.loads(row.params)
        x, y, side = params["square"]
        # The square's own drawing: its tight box is the square, moved by the nuisance warp
        # (< 2.5 px) at most.
        tx1, ty1, tx2, ty2 = params["tight_box"]
        assert abs(tx1 - x) <= 3 and abs(ty1 - y) <= 3, (params, row)
        assert abs((tx2 - tx1) - side) <= 3 and abs((ty2 - ty1) - side) <= 3, (params, row)


def test_toy_class_exports_to_coco_and_yolo(stained, tmp_path) -> None:
    out, report = stained
    export_dataset(out, "coco", tmp_path / "coco")
    (annotations,) = (tmp_path / "coco").rglob("annotations.json")
    coco = json.loads(annotations.read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    assert list(names.values()) == [*DEEPPCB_ORDER, "stain"]
    stain_id = next(k for k, v in names.items() if v == "stain")
    assert sum(a["category_id"] == stain_id for a in coco["annotations"]) == \
        report["defects"]["stain"]

    export_dataset(out, "yolo", tmp_path / "yolo")
    data = yaml.safe_load((tmp_path / "yolo" / "data.yaml").read_text())
    names = data["names"] if isinstance(data["names"], list) else [
        data["names"][k] for k in sorted(data["names"])]
    assert names == [*DEEPPCB_ORDER, "stain"]
    stain_index = names.index("stain")
    rows = [line.split() for f in (tmp_path / "yolo" / "labels").rglob("*.txt")
            for line in f.read_text().splitlines()]
    assert sum(int(r[0]) == stain_index for r in rows) == report["defects"]["stain"]


def test_toy_class_shows_in_fiftyone(fiftyone_db, stained) -> None:
    from pcbforge.datasets.fiftyone import to_fiftyone

    out, report = stained
    fo_dataset = to_fiftyone(out, "toy-stain")
    try:
        assert "stain" in fo_dataset.default_classes
        labels = fo_dataset.values("ground_truth.detections.label", unwind=True)
        assert labels.count("stain") == report["defects"]["stain"]
        assert fo_dataset.has_saved_view("class-stain")
        assert len(fo_dataset.load_saved_view("class-stain")) > 0
    finally:
        fo_dataset.delete()
