"""Table metrics: DeepPCB's matching with an account of every box, the confusion matrix,
and COCO's mAP, on hand-made corners and against the reference implementations."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from pcbforge.bench.metrics import Detection, Truth, evaluate, match
from pcbforge.core.boxes import iou
from pcbforge.evaluate.metrics import (
    PREDICTION_COLUMNS,
    TRUTH_COLUMNS,
    average_precision,
    coco_map,
    confusion_matrix,
    deeppcb_metrics,
    evaluate_tables,
    match_predictions,
)

CLASSES = ["open", "short", "spur"]
GT = (0.0, 0.0, 100.0, 100.0)
PRED_COLUMNS = ["sample_id", "label", "score", "x1", "y1", "x2", "y2"]
GT_COLUMNS = ["sample_id", "label", "x1", "y1", "x2", "y2"]


def preds(*rows) -> pd.DataFrame:
    return pd.DataFrame([(s, lab, sc, *box) for s, lab, sc, box in rows], columns=PRED_COLUMNS)


def gts(*rows) -> pd.DataFrame:
    return pd.DataFrame([(s, lab, *box) for s, lab, box in rows], columns=GT_COLUMNS)


def shifted(box, dx):
    return (box[0] + dx, box[1], box[2] + dx, box[3])


# --------------------------------------------------------------------------- matching corners

def test_a_perfect_prediction_set_scores_one_everywhere() -> None:
    truth = gts(("a", "open", GT), ("a", "short", shifted(GT, 200)), ("b", "spur", GT))
    pred = preds(("a", "open", 0.9, GT), ("a", "short", 0.8, shifted(GT, 200)),
                 ("b", "spur", 0.7, GT))
    per_pred, per_truth = match_predictions(pred, truth)
    assert list(per_pred.columns) == PREDICTION_COLUMNS
    assert list(per_truth.columns) == TRUTH_COLUMNS
    assert per_pred["outcome"].tolist() == ["tp"] * 3
    assert per_pred["truth_id"].tolist() == ["t0", "t1", "t2"]
    assert per_pred["fp_kind"].tolist() == [""] * 3
    assert per_truth["prediction_id"].tolist() == ["p0", "p1", "p2"]
    assert per_truth["score"].tolist() == [0.9, 0.8, 0.7]
    result = deeppcb_metrics(per_pred, per_truth, CLASSES)
    assert result["ap"] == {"open": 1.0, "short": 1.0, "spur": 1.0}
    assert result["mAP"] == 1.0
    assert (result["f_score"], result["precision"], result["recall"]) == (1.0, 1.0, 1.0)
    assert result["threshold"] == 0.7
    assert all(v["f_score"] == 1.0 for v in result["per_class"].values())
    confusion = confusion_matrix(pred, truth, CLASSES)
    assert confusion.to_numpy().tolist() == np.diag([1, 1, 1, 0]).tolist()
    coco = coco_map(pred, truth, CLASSES, ["a", "b"], {"a": (400, 200), "b": (200, 200)})
    assert coco["mAP"] == pytest.approx(1.0)
    assert coco["ap"] == pytest.approx({"open": 1.0, "short": 1.0, "spur": 1.0})


def test_two_predictions_on_one_truth_are_one_tp_and_one_duplicate() -> None:
    truth = gts(("a", "open", GT))
    # The better-scored prediction is listed second: it still matches first.
    pred = preds(("a", "open", 0.6, (0, 0, 100, 90)), ("a", "open", 0.9, (0, 0, 100, 80)))
    per_pred, per_truth = match_predictions(pred, truth)
    assert per_pred["outcome"].tolist() == ["fp", "tp"]
    assert per_pred["fp_kind"].tolist() == ["duplicate", ""]
    assert per_pred["iou"].tolist() == pytest.approx([0.9, 0.8])  # best own-class IoU
    assert per_truth["prediction_id"].tolist() == ["p1"]
    assert per_truth["iou"].tolist() == pytest.approx([0.8])
    result = deeppcb_metrics(per_pred, per_truth, CLASSES)
    assert result["counts"]["open"]["tp"] == 1 and result["counts"]["open"]["fp"] == 1
    assert result["counts"]["open"]["fp_kinds"]["duplicate"] == 1
    assert result["ap"]["open"] == 1.0  # the fp ranks below the tp
    assert result["threshold"] == 0.9 and result["f_score"] == 1.0


def test_a_prediction_takes_the_truth_of_highest_iou_not_the_first() -> None:
    truth = gts(("a", "open", (0, 0, 100, 50)), ("a", "open", GT))
    per_pred, per_truth = match_predictions(preds(("a", "open", 0.9, GT)), truth)
    assert per_pred["truth_id"].tolist() == ["t1"]
    assert per_truth["outcome"].tolist() == ["fn", "tp"]


def test_a_class_mismatch_is_a_class_fp_a_missed_truth_and_off_the_diagonal() -> None:
    truth = gts(("a", "open", GT))
    pred = preds(("a", "short", 0.9, GT))
    per_pred, per_truth = match_predictions(pred, truth)
    assert per_pred["outcome"].tolist() == ["fp"]
    assert per_pred["fp_kind"].tolist() == ["class"]
    assert per_pred["iou"].tolist() == [0.0]  # no truth of its own class
    assert per_truth["outcome"].tolist() == ["fn"]
    assert per_truth["prediction_id"].tolist() == [""]
    assert np.isnan(per_truth["score"].iloc[0])
    confusion = confusion_matrix(pred, truth, CLASSES)
    assert confusion.loc["open", "short"] == 1
    assert confusion.loc["open", "open"] == 0
    assert confusion.loc["open", "background"] == 0
    assert confusion.loc["background", "short"] == 0
    assert int(confusion.to_numpy().sum()) == 1
    result = deeppcb_metrics(per_pred, per_truth, CLASSES)
    assert result["ap"] == {"open": 0.0, "short": None, "spur": None}
    assert result["counts"]["open"]["fn"] == 1 and result["counts"]["short"]["fp"] == 1


def test_a_wrong_class_on_a_truth_already_found_is_not_a_class_confusion() -> None:
    truth = gts(("a", "open", GT))
    pred = preds(("a", "open", 0.9, GT), ("a", "short", 0.8, GT))
    per_pred, _ = match_predictions(pred, truth)
    assert per_pred["fp_kind"].tolist() == ["", "background"]


def test_localization_and_background_false_positives() -> None:
    truth = gts(("a", "open", GT))
    pred = preds(("a", "open", 0.9, (0, 0, 30, 100)),  # IoU 0.30
                 ("a", "open", 0.8, (0, 0, 5, 100)),  # IoU 0.05
                 ("a", "open", 0.7, (300, 300, 400, 400)))  # no overlap
    per_pred, per_truth = match_predictions(pred, truth)
    assert per_pred["outcome"].tolist() == ["fp"] * 3
    assert per_pred["fp_kind"].tolist() == ["localization", "background", "background"]
    assert per_pred["iou"].tolist() == pytest.approx([0.30, 0.05, 0.0])
    assert per_truth["outcome"].tolist() == ["fn"]


def test_an_empty_image_and_an_unpredicted_image() -> None:
    truth = gts(("a", "open", GT), ("b", "short", GT))
    pred = preds(("a", "open", 0.9, GT), ("empty", "open", 0.95, GT))
    per_pred, per_truth = match_predictions(pred, truth)
    assert per_pred["outcome"].tolist() == ["tp", "fp"]
    assert per_pred["fp_kind"].tolist() == ["", "background"]
    assert per_truth["outcome"].tolist() == ["tp", "fn"]
    result = deeppcb_metrics(per_pred, per_truth, CLASSES)
    # Ranked: fp (0.95), tp (0.9): open's AP is 1/2 at recall 1.
    assert result["ap"]["open"] == pytest.approx(0.5)
    assert result["ap"]["short"] == 0.0
    assert result["ap"]["spur"] is None
    assert result["mAP"] == pytest.approx(0.25)
    # All classes together: keep both -> precision 1/2, recall 1/2.
    assert result["f_score"] == pytest.approx(0.5)
    assert result["per_class"]["short"] == {"precision": None, "recall": 0.0,
                                            "f_score": 0.0, "tp": 0, "fp": 0, "fn": 1}
    confusion = confusion_matrix(pred, truth, CLASSES)
    assert confusion.loc["background", "open"] == 1
    assert confusion.loc["short", "background"] == 1
    assert confusion.loc["open", "open"] == 1
    coco = coco_map(pred, truth, CLASSES, ["a", "b", "empty", "nothing"])
    assert coco["ap"]["short"] == 0.0 and coco["ap"]["spur"] is None
    assert 0.0 < coco["ap"]["open"] < 1.0


def test_no_predictions_at_all() -> None:
    truth = gts(("a", "open", GT), ("b", "short", GT))
    for empty in (pd.DataFrame([]), pd.DataFrame(columns=PRED_COLUMNS)):
        per_pred, per_truth = match_predictions(empty, truth)
        assert per_pred.empty and list(per_pred.columns) == PREDICTION_COLUMNS
        assert per_truth["outcome"].tolist() == ["fn", "fn"]
        result = deeppcb_metrics(per_pred, per_truth, CLASSES)
        assert result["ap"] == {"open": 0.0, "short": 0.0, "spur": None}
        assert result["mAP"] == 0.0
        assert (result["f_score"], result["precision"], result["recall"]) == (0.0, 0.0, 0.0)
        confusion = confusion_matrix(empty, truth, CLASSES)
        assert confusion["background"].tolist() == [1, 1, 0, 0]
        assert int(confusion.to_numpy().sum()) == 2
        coco = coco_map(empty, truth, CLASSES, ["a", "b"])
        assert coco == {"mAP": 0.0, "AP50": 0.0, "AP75": 0.0,
                        "ap": {"open": 0.0, "short": 0.0, "spur": None}}
    nothing = evaluate_tables(pd.DataFrame([]), pd.DataFrame([]), CLASSES, ["a"])
    assert nothing["coco"]["mAP"] is None
    assert nothing["deeppcb"]["ap"] == {"open": None, "short": None, "spur": None}
    assert nothing["images"] == 1
    assert all(n == 0 for row in nothing["confusion"].values() for n in row.values())


def test_iou_exactly_at_033_matches_only_when_not_strict() -> None:
    truth = gts(("a", "open", GT))
    at = preds(("a", "open", 0.9, (0, 0, 33, 100)))  # 3300 / 10000
    assert iou((0, 0, 33, 100), GT) == 0.33
    strict, _ = match_predictions(at, truth)
    assert strict["outcome"].tolist() == ["fp"]
    assert strict["fp_kind"].tolist() == ["localization"]
    assert strict["iou"].tolist() == [0.33]
    loose, loose_truth = match_predictions(at, truth, strict=False)
    assert loose["outcome"].tolist() == ["tp"]
    assert loose_truth["outcome"].tolist() == ["tp"]
    above, _ = match_predictions(preds(("a", "open", 0.9, (0, 0, 34, 100))), truth)
    assert above["outcome"].tolist() == ["tp"]
    assert confusion_matrix(at, truth, ["open"]).loc["open", "open"] == 0
    assert confusion_matrix(at, truth, ["open"], strict=False).loc["open", "open"] == 1
    # A second prediction at exactly 0.33 of a taken truth: a duplicate only when loose.
    twice = preds(("a", "open", 0.9, GT), ("a", "open", 0.8, (0, 0, 33, 100)))
    assert match_predictions(twice, truth)[0]["fp_kind"].tolist() == ["", "localization"]
    assert match_predictions(twice, truth, strict=False)[0]["fp_kind"].tolist() == [
        "", "duplicate"]


def test_score_ties_go_to_the_earlier_row_every_time() -> None:
    truth = gts(("a", "open", GT))
    rows = [("a", "open", 0.5, (0, 0, 50, 100)), ("a", "open", 0.5, GT)]
    first = match_predictions(preds(*rows), truth)[0]
    assert first["outcome"].tolist() == ["tp", "fp"]  # the earlier row, despite lower IoU
    again = match_predictions(preds(*rows), truth)[0]
    pd.testing.assert_frame_equal(first, again)
    flipped = match_predictions(preds(*rows[::-1]), truth)[0]
    assert flipped["outcome"].tolist() == ["tp", "fp"]
    assert flipped["iou"].tolist() == pytest.approx([1.0, 0.5])
    # Given ids are kept, and equal IoUs go to the first truth.
    two = gts(("a", "open", (0, 0, 100, 50)), ("a", "open", (0, 50, 100, 100)))
    two["truth_id"] = ["top", "bottom"]
    pred = preds(("a", "open", 0.5, (0, 25, 100, 75)))
    pred["prediction_id"] = ["mine"]
    per_pred, per_truth = match_predictions(pred, two)
    assert per_pred["truth_id"].tolist() == ["top"]
    assert per_truth["prediction_id"].tolist() == ["mine", ""]


def test_confusion_matrix_matches_any_class_greedily_and_drops_low_scores() -> None:
    truth = gts(("a", "open", GT), ("a", "short", shifted(GT, 200)))
    pred = preds(("a", "short", 0.9, (0, 0, 100, 90)),  # on the open truth
                 ("a", "open", 0.8, GT),  # also on it, but later
                 ("a", "short", 0.1, shifted(GT, 200)))  # below the score threshold
    confusion = confusion_matrix(pred, truth, ["open", "short"], score_threshold=0.5)
    assert list(confusion.index) == ["open", "short", "background"]
    assert list(confusion.columns) == ["open", "short", "background"]
    assert confusion.to_numpy().tolist() == [[0, 1, 0], [0, 0, 1], [1, 0, 0]]
    everything = confusion_matrix(pred, truth, ["open", "short"])
    assert everything.loc["short", "short"] == 1
    assert everything.loc["short", "background"] == 0


def test_average_precision_by_hand() -> None:
    # tp, fp, tp of 3 truths: envelope 1 to recall 1/3, 2/3 to recall 2/3.
    assert average_precision(np.array([True, False, True]), 3) == pytest.approx(1 / 3 + 2 / 9)
    assert average_precision(np.array([], bool), 2) == 0.0
    with pytest.raises(ValueError, match="at least one"):
        average_precision(np.array([True]), 0)


def test_bad_input_is_refused() -> None:
    truth = gts(("a", "open", GT))
    with pytest.raises(ValueError, match="missing \\['score'\\]"):
        match_predictions(pd.DataFrame({"sample_id": ["a"], "label": ["open"], "x1": [0],
                                        "y1": [0], "x2": [1], "y2": [1]}), truth)
    with pytest.raises(ValueError, match="unknown classes \\['via'\\]"):
        confusion_matrix(preds(("a", "via", 0.5, GT)), truth, CLASSES)
    with pytest.raises(ValueError, match="not among sample_ids"):
        evaluate_tables(preds(("z", "open", 0.5, GT)), truth, CLASSES, ["a"])
    repeated = preds(("a", "open", 0.5, GT), ("a", "open", 0.4, GT))
    repeated["prediction_id"] = ["x", "x"]
    with pytest.raises(ValueError, match="unique"):
        match_predictions(repeated, truth)
    with pytest.raises(ValueError, match="sizes"):
        coco_map(preds(("a", "open", 0.5, GT)), truth, CLASSES, ["a"], {})


# --------------------------------------------------------------------------- reference checks

SIX = ["open", "short", "mousebite", "spur", "copper", "pin-hole"]


def random_set(seed: int = 2024) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """~200 truths over 18 images (and 2 with none), jittered, relabelled, duplicated and
    stray predictions with scores rounded to 2 places (so ties occur)."""
    rng = np.random.default_rng(seed)
    truths, predictions = [], []
    images = [f"img{i:02d}" for i in range(21)]
    for i, sample in enumerate(images[:20]):
        for _ in range(11 if i < 18 else 0):
            x1, y1 = rng.uniform(0, 560, 2)
            w, h = rng.uniform(8, 60, 2)
            label = SIX[rng.integers(len(SIX))]
            truths.append((sample, label, x1, y1, x1 + w, y1 + h))
            for _ in range(rng.integers(0, 3)):
                j = rng.normal(0, 0.2, 4) * [w, h, w, h]
                xs, ys = sorted([x1 + j[0], x1 + w + j[2]]), sorted([y1 + j[1], y1 + h + j[3]])
                guess = label if rng.random() < 0.8 else SIX[rng.integers(len(SIX))]
                predictions.append((sample, guess, round(rng.random(), 2),
                                    xs[0], ys[0], xs[1] + 1, ys[1] + 1))
        for _ in range(3):
            x1, y1 = rng.uniform(0, 560, 2)
            predictions.append((sample, SIX[rng.integers(len(SIX))], round(rng.random(), 2),
                                x1, y1, x1 + rng.uniform(8, 60), y1 + rng.uniform(8, 60)))
    return (pd.DataFrame(predictions, columns=PRED_COLUMNS),
            pd.DataFrame(truths, columns=GT_COLUMNS), images)


def test_the_random_set_exercises_every_corner() -> None:
    pred, truth, _ = random_set()
    assert 180 <= len(truth) <= 220 and len(pred) > len(truth)
    assert pred["score"].duplicated().any()
    per_pred, per_truth = match_predictions(pred, truth)
    kinds = per_pred["fp_kind"].value_counts()
    for kind in ("duplicate", "class", "localization", "background"):
        assert kinds.get(kind, 0) > 0, kind
    assert 0 < (per_truth["outcome"] == "fn").sum() < len(truth)


def test_equal_to_the_bench_implementation_of_deeppcb() -> None:
    pred, truth, _ = random_set()
    per_pred, per_truth = match_predictions(pred, truth)
    ours = deeppcb_metrics(per_pred, per_truth, SIX)
    detections = [Detection(r.sample_id, r.label, r.score, (r.x1, r.y1, r.x2, r.y2))
                  for r in pred.itertuples()]
    references = [Truth(r.sample_id, r.label, (r.x1, r.y1, r.x2, r.y2))
                  for r in truth.itertuples()]
    reference = evaluate(detections, references, SIX)
    assert (per_pred["outcome"] == "tp").tolist() == match(detections, references).tolist()
    assert 0.1 < reference.mean_ap < 0.95
    for name in SIX:
        assert ours["ap"][name] == pytest.approx(reference.ap[name], abs=1e-12)
    assert ours["mAP"] == pytest.approx(reference.mean_ap, abs=1e-12)
    assert ours["f_score"] == pytest.approx(reference.f_score, abs=1e-12)
    assert ours["threshold"] == reference.threshold
    assert ours["precision"] == pytest.approx(reference.precision, abs=1e-12)
    assert ours["recall"] == pytest.approx(reference.recall, abs=1e-12)
    for name in SIX:
        assert ours["counts"][name]["truths"] == reference.counts[name]["truths"]
        assert ours["counts"][name]["predictions"] == reference.counts[name]["detections"]
    # The per-class numbers at the threshold add up to the overall ones.
    tp = sum(v["tp"] for v in ours["per_class"].values())
    fn = sum(v["fn"] for v in ours["per_class"].values())
    assert tp / (tp + fn) == pytest.approx(reference.recall, abs=1e-12)


def test_coco_map_equals_pycocotools_run_the_classic_way(tmp_path) -> None:
    pred, truth, images = random_set()
    image_id = {s: k + 1 for k, s in enumerate(images)}
    gt = {"images": [{"id": image_id[s], "file_name": s, "width": 640, "height": 640}
                     for s in images],
          "categories": [{"id": k + 1, "name": name} for k, name in enumerate(SIX)],
          "annotations": [{"id": k + 1, "image_id": image_id[r.sample_id],
                           "category_id": SIX.index(r.label) + 1,
                           "bbox": [r.x1, r.y1, r.x2 - r.x1, r.y2 - r.y1],
                           "area": (r.x2 - r.x1) * (r.y2 - r.y1), "iscrowd": 0}
                          for k, r in enumerate(truth.itertuples())]}
    results = [{"image_id": image_id[r.sample_id], "category_id": SIX.index(r.label) + 1,
                "bbox": [r.x1, r.y1, r.x2 - r.x1, r.y2 - r.y1], "score": r.score}
               for r in pred.itertuples()]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(results))
    ground = COCO(str(tmp_path / "gt.json"))
    run = COCOeval(ground, ground.loadRes(str(tmp_path / "res.json")), "bbox")
    run.evaluate()
    run.accumulate()
    run.summarize()

    ours = coco_map(pred, truth, SIX, images, {s: (640, 640) for s in images})
    assert 0.05 < run.stats[0] < 0.95
    assert ours["mAP"] == pytest.approx(run.stats[0], abs=1e-9)
    assert ours["AP50"] == pytest.approx(run.stats[1], abs=1e-9)
    assert ours["AP75"] == pytest.approx(run.stats[2], abs=1e-9)
    # Every class has truths, so COCO's mean is the mean of the per-class APs.
    assert all(ours["ap"][name] is not None for name in SIX)
    assert np.mean([ours["ap"][name] for name in SIX]) == pytest.approx(run.stats[0], abs=1e-9)
    assert len({round(v, 6) for v in ours["ap"].values()}) > 1


def test_coco_ap_is_none_for_a_class_without_truths() -> None:
    truth = gts(("a", "open", GT), ("a", "short", shifted(GT, 200)))
    pred = preds(("a", "open", 0.9, GT), ("a", "short", 0.8, (200, 0, 300, 60)),
                 ("a", "spur", 0.7, shifted(GT, 400)))
    coco = coco_map(pred, truth, CLASSES, ["a"])
    assert coco["ap"]["spur"] is None
    assert coco["ap"]["open"] == pytest.approx(1.0)
    assert 0.0 < coco["ap"]["short"] < 1.0
    assert coco["mAP"] == pytest.approx((coco["ap"]["open"] + coco["ap"]["short"]) / 2)
    # Predictions but no truths at all: nothing COCO can define.
    alone = coco_map(pred, pd.DataFrame([]), CLASSES, ["a"])
    assert alone == {"mAP": None, "AP50": None, "AP75": None,
                     "ap": {"open": None, "short": None, "spur": None}}


def test_evaluate_tables_bundles_everything() -> None:
    pred, truth, images = random_set(seed=5)
    out = evaluate_tables(pred, truth, SIX, images, {s: (640, 640) for s in images})
    assert set(out) == {"images", "deeppcb", "coco", "confusion", "predictions", "truths"}
    assert out["images"] == 21
    per_pred, per_truth = match_predictions(pred, truth)
    pd.testing.assert_frame_equal(out["predictions"], per_pred)
    pd.testing.assert_frame_equal(out["truths"], per_truth)
    assert out["deeppcb"] == deeppcb_metrics(per_pred, per_truth, SIX)
    assert out["coco"] == coco_map(pred, truth, SIX, images)
    confusion = confusion_matrix(pred, truth, SIX)
    assert out["confusion"]["open"]["short"] == confusion.loc["open", "short"]
    assert sum(out["confusion"]["background"].values()) == confusion.loc["background"].sum()
    # Every truth is in one row cell and every prediction in one column cell.
    assert sum(sum(row.values()) for true, row in out["confusion"].items()
               if true != "background") == len(truth)
    assert sum(row[col] for row in out["confusion"].values()
               for col in row if col != "background") == len(pred)
