"""Shape statistics on drawn shapes, and the real/synthetic comparison."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from pcbforge.bench.shapes import (
    KS_MAX,
    STATS,
    box_shape_stats,
    compare,
    copper_of_gray,
    ks_distance,
    pair_shape_stats,
    shape_stats,
    verdicts,
)


def _disc(size: int = 60, radius: int = 12) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    cv2.circle(mask, (size // 2, size // 2), radius, 1, -1)
    return mask


def _comb(size: int = 60) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    mask[10:16, 10:50] = 1  # the spine
    for x in range(10, 50, 8):
        mask[16:40, x:x + 4] = 1  # teeth 4 px wide, 4 px apart
    return mask


def test_disc_is_round_and_solid() -> None:
    stats = shape_stats(_disc())
    assert stats["circularity"] > 0.9
    assert stats["solidity"] > 0.95
    assert stats["roughness"] < 1.1  # a pixel outline zigzags a little
    assert stats["fragments"] == 1
    assert stats["longest"] == 25
    assert stats["area"] == pytest.approx(np.pi * 12 ** 2, rel=0.05)


def test_comb_is_rough_and_not_solid() -> None:
    comb, disc = shape_stats(_comb()), shape_stats(_disc())
    assert comb["roughness"] > 1.5
    assert comb["solidity"] < 0.7
    assert comb["circularity"] < 0.3 < disc["circularity"]


def test_two_blobs_are_two_fragments_measured_on_the_largest() -> None:
    mask = np.zeros((60, 80), np.uint8)
    cv2.circle(mask, (15, 30), 8, 1, -1)
    mask[20:40, 40:75] = 1  # larger, a rectangle
    stats = shape_stats(mask)
    assert stats["fragments"] == 2
    assert stats["longest"] == 75 - 7
    assert stats["solidity"] == pytest.approx(1.0, abs=0.01)  # the rectangle's


def test_empty_mask_has_no_outline() -> None:
    stats = shape_stats(np.zeros((10, 10), np.uint8))
    assert stats["area"] == 0 and stats["fragments"] == 0
    assert np.isnan(stats["circularity"])


def test_box_statistics_ignore_thin_edge_bands() -> None:
    template = np.zeros((100, 100), np.uint8)
    template[20:80, 20:50] = 1
    tested = template.copy()
    tested[20:80, 50:52] = 1  # a 2 px misregistration band: not a defect
    assert box_shape_stats(template, tested, (0, 0, 100, 100))["area"] == 0
    cv2.circle(tested, (35, 50), 6, 0, -1)  # a real hole
    stats = box_shape_stats(template, tested, (0, 0, 100, 100))
    assert stats["fragments"] == 1
    assert stats["area"] == pytest.approx(np.pi * 36, rel=0.15)
    # Outside the box the hole does not count.
    assert box_shape_stats(template, tested, (60, 0, 100, 100))["area"] == 0


def test_pair_rows_carry_labels_and_every_statistic() -> None:
    template = np.zeros((50, 50), np.uint8)
    tested = _disc(50, 6)
    rows = pair_shape_stats(template, tested, [(10, 10, 40, 40, "copper")])
    assert rows[0]["label"] == "copper" and set(STATS) <= set(rows[0])


def test_copper_of_gray_dark_copper() -> None:
    gray = np.array([[0, 127, 128, 255]], np.uint8)
    assert copper_of_gray(gray).tolist() == [[1, 1, 0, 0]]
    assert copper_of_gray(gray, dark=False).tolist() == [[0, 0, 1, 1]]


def test_ks_distance_identical_and_disjoint() -> None:
    a = np.arange(20.0)
    assert ks_distance(a, a) == 0.0
    assert ks_distance(a, a + 100) == 1.0
    assert ks_distance(a, a + 10) == pytest.approx(0.5)
    assert np.isnan(ks_distance([], a))


def _table(label: str, values: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"label": label, **{stat: values for stat in STATS}})


def test_compare_passes_alike_and_fails_shifted_samples() -> None:
    rng = np.random.default_rng(0)
    real = _table("open", rng.lognormal(3.0, 0.4, 400))
    alike = _table("open", rng.lognormal(3.0, 0.4, 400))
    shifted = _table("open", rng.lognormal(3.5, 0.4, 400))
    good = compare(real, alike)
    assert good["passed"].all() and (good["ks"] <= KS_MAX).all()
    bad = compare(real, shifted)
    assert not bad["passed"].any()
    assert bad["ratio"].iloc[0] == pytest.approx(np.exp(0.5), rel=0.15)
    assert verdicts(good) == {"open": "pass"}
    assert verdicts(bad)["open"].startswith("fail: area")


def test_compare_does_not_judge_tiny_samples() -> None:
    real = _table("short", np.arange(3.0))
    table = compare(real, _table("short", np.arange(50.0)))
    assert table["passed"].isna().all()
    assert verdicts(table) == {"short": "too few samples to judge"}
