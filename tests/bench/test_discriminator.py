"""The discriminator benchmark: crop geometry, the AUC, class balance, and tiny end-to-end
runs on procedural boards (one set it must separate, one it must not)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from pcbforge.bench.discriminator import (
    BACKGROUND_GAP,
    Crops,
    DiscriminatorConfig,
    auc,
    background_crops,
    balanced,
    class_montage,
    crops_of,
    cut_crop,
    markdown_table,
    pair_crops,
)
from pcbforge.datasets.dataset import load
from pcbforge.datasets.deeppcb import DEEPPCB_CLASSES, deeppcb_pairs, save_deeppcb
from pcbforge.engine import LocalEngine
from pcbforge.synth.pipeline import synthesize, write_boards

# ---- crops ----


def _board(height: int = 100, width: int = 120) -> np.ndarray:
    board = np.full((height, width), 255, np.uint8)
    board[:, 40:60] = 0  # a vertical track of copper
    return board


def test_crop_is_centred_on_the_box_never_resized_and_holds_three_binary_channels() -> None:
    template = _board()
    tested = template.copy()
    tested[45:55, 45:55] = 255  # a 10 px hole in the track
    crop = cut_crop(tested, template, (35, 35, 65, 65), 32)  # centre (50, 50)
    assert crop.shape == (3, 32, 32) and crop.dtype == np.uint8
    assert set(np.unique(crop)) <= {0, 1}
    # The window is tested[34:66, 34:66]: copper = 1.
    np.testing.assert_array_equal(crop[0], (tested[34:66, 34:66] < 128).astype(np.uint8))
    np.testing.assert_array_equal(crop[1], (template[34:66, 34:66] < 128).astype(np.uint8))
    np.testing.assert_array_equal(crop[2], crop[0] ^ crop[1])
    ys, xs = np.nonzero(crop[2])
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (11, 20, 11, 20)  # 10 px, at the centre
    # A larger box does not shrink the defect: the crop is cut, not resized.
    wide = cut_crop(tested, template, (10, 10, 90, 90), 32)
    assert int(wide[2].sum()) == 100


def test_crop_at_the_border_replicates_the_edge() -> None:
    template = _board()
    tested = template.copy()
    tested[0:4, 40:44] = 255
    crop = cut_crop(tested, template, (30, -10, 60, 10), 40)  # centre (45, 0): top half outside
    assert crop.shape == (3, 40, 40)
    # Rows above the image repeat row 0 of the window.
    np.testing.assert_array_equal(crop[0][:20], np.repeat(crop[0][20:21], 20, axis=0))
    np.testing.assert_array_equal(crop[0][20], (tested[0, 25:65] < 128).astype(np.uint8))
    far = cut_crop(tested, template, (500, 500, 520, 520), 16)  # wholly outside: still a crop
    assert far.shape == (3, 16, 16)
    with pytest.raises(ValueError, match="one size"):
        cut_crop(tested, template[:50], (0, 0, 10, 10), 16)


def test_pair_crops_keep_deeppcb_classes_in_order(tmp_path: Path) -> None:
    template = _board()
    tested = template.copy()
    tested[45:55, 45:55] = 255
    cv2.imwrite(str(tmp_path / "t.png"), template)
    cv2.imwrite(str(tmp_path / "s.png"), tested)
    boxes = [(35, 35, 65, 65, "pin-hole"), (0, 0, 20, 20, "scratch"), (5, 5, 30, 30, "open")]
    images, classes, kept = pair_crops((str(tmp_path / "t.png"), str(tmp_path / "s.png"),
                                        boxes, 24))
    assert images.shape == (2, 3, 24, 24)
    assert [DEEPPCB_CLASSES[c] for c in classes] == ["pin-hole", "open"]
    assert kept.tolist() == [[35, 35, 65, 65], [5, 5, 30, 30]]


def test_background_crops_keep_away_from_every_box(tmp_path: Path) -> None:
    """Windows inside the image, BACKGROUND_GAP px clear of every box, the same for one
    seed; none where the boxes leave no room."""
    template = np.full((200, 240), 255, np.uint8)
    template[:, 100:130] = 0
    cv2.imwrite(str(tmp_path / "t.png"), template)
    cv2.imwrite(str(tmp_path / "s.png"), template)
    boxes = [(90, 80, 140, 120, "open")]
    task = (str(tmp_path / "t.png"), str(tmp_path / "s.png"), boxes, 32, 6, [1, 2])
    images, classes, centres = background_crops(task)
    assert images.shape == (6, 3, 32, 32) and classes.tolist() == [0] * 6
    for x1, y1, _, _ in centres.tolist():
        cx, cy = x1 + 1, y1 + 1
        left, top = cx - 16, cy - 16
        assert 0 <= left and left + 32 <= 240 and 0 <= top and top + 32 <= 200
        bx1, by1, bx2, by2 = 90 - BACKGROUND_GAP, 80 - BACKGROUND_GAP, 140 + BACKGROUND_GAP, \
            120 + BACKGROUND_GAP
        assert left + 32 <= bx1 or bx2 <= left or top + 32 <= by1 or by2 <= top
    assert np.array_equal(background_crops(task)[2], centres)  # seeded
    covering = [(0, 0, 240, 200, "open")]
    assert len(background_crops((*task[:2], covering, 32, 6, [1, 2]))[0]) == 0


# ---- AUC ----


@pytest.mark.parametrize(("scores", "positive", "expected"), [
    ([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1], 1.0),
    ([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1], 0.0),
    ([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1], 0.5),
    ([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], 0.75),
    ([0.3, 0.5, 0.5, 0.9], [0, 0, 1, 1], 0.875),  # one tied pair counts one half
], ids=["perfect", "inverted", "all-tied", "one-swap", "tie"])
def test_auc_hand_cases(scores, positive, expected) -> None:
    assert auc(np.array(scores), np.array(positive, bool)) == pytest.approx(expected)


def test_auc_equals_counting_pairs_and_is_nan_without_both_sides() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 6, 200).astype(float)  # many ties
    positive = rng.random(200) < 0.4
    pos, neg = scores[positive], scores[~positive]
    pairs = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert auc(scores, positive) == pytest.approx(pairs / (len(pos) * len(neg)))
    assert np.isnan(auc(np.array([0.1, 0.2]), np.array([True, True])))
    with pytest.raises(ValueError, match="labels"):
        auc(np.zeros(3), np.zeros(2, bool))


# ---- balance ----


def _crops(classes: list[int], synthetic: list[bool]) -> Crops:
    n = len(classes)
    return Crops(np.zeros((n, 3, 4, 4), np.uint8), np.array(classes, np.int64),
                 np.array(synthetic, bool), np.full(n, "g", dtype=object),
                 np.zeros((n, 4), np.int32))


def test_balance_gives_each_class_as_many_real_as_synthetic_crops() -> None:
    classes = [0] * 10 + [0] * 3 + [1] * 2 + [1] * 7 + [2] * 4
    synthetic = [False] * 10 + [True] * 3 + [False] * 2 + [True] * 7 + [True] * 4
    crops = _crops(classes, synthetic)
    picked = balanced(crops, np.random.default_rng(1))
    chosen = crops.take(picked)
    for c, n in ((0, 3), (1, 2)):
        rows = chosen.classes == c
        assert (rows & chosen.synthetic).sum() == n and (rows & ~chosen.synthetic).sum() == n
    assert not (chosen.classes == 2).any()  # no real crop of class 2: left out
    assert np.all(np.diff(picked) > 0)
    np.testing.assert_array_equal(picked, balanced(crops, np.random.default_rng(1)))
    others = {tuple(balanced(crops, np.random.default_rng(s))) for s in range(10)}
    assert len(others) > 1  # the subset of the larger side is drawn, not fixed


def test_config_refuses_a_board_on_both_sides(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="hold out whole boards"):
        DiscriminatorConfig(data_dir=tmp_path, out=tmp_path / "o", train_boards=("g1", "g2"),
                            test_boards=("g2",))
    with pytest.raises(ValidationError):
        DiscriminatorConfig(data_dir=tmp_path, out=tmp_path / "o", train_boards=("g1",),
                            test_boards=("g2",), bogus=1)


def test_montage_shows_three_rows_of_the_class() -> None:
    rng = np.random.default_rng(2)
    crops = _crops([0] * 6 + [1] * 2, [True, False] * 4)
    crops.images = (rng.random((8, 3, 24, 24)) < 0.5).astype(np.uint8)
    picture = class_montage(crops, rng.random(8), 0, 4, 16)
    assert picture.ndim == 3 and picture.shape[2] == 3
    assert picture.shape[1] >= 4 * 32  # four 16 px crops at scale 2 a row


def test_table_states_the_target_per_class_and_flags_auc_below_chance() -> None:
    def seed(s: int, values: list[float]) -> dict:
        return {"seed": s, "auc": 0.6, "train_auc": 0.8,
                "auc_per_class": dict(zip(DEEPPCB_CLASSES, values, strict=True)),
                "crops": {c: {"real": 10, "synthetic": 10} for c in DEEPPCB_CLASSES},
                "train_crops_per_class": {c: {"real": 50, "synthetic": 50}
                                          for c in DEEPPCB_CLASSES}}

    seeds = [seed(0, [0.7, 0.6, 0.5, 0.5, 0.3, 0.6]), seed(1, [0.6, 0.6, 0.5, 0.5, 0.3, 0.6])]
    payload = {"seeds": seeds, "mean": {"auc": 0.6, "train_auc": 0.8, "auc_per_class": {
        c: float(np.mean([s["auc_per_class"][c] for s in seeds])) for c in DEEPPCB_CLASSES}},
        "target_auc": 0.65, "test_boards": ["g2"], "train_boards": ["g1"], "window": 64,
        "epochs": 6, "seconds": 10.0}
    table = markdown_table(payload)
    assert "| **mean** | **0.650** |" in table  # open: 0.65 is within the target
    assert "target: AUC <= 0.65 for every class: met" in table
    assert "reversed on the test boards): copper" in table
    payload["mean"]["auc_per_class"]["short"] = 0.66
    assert "NOT met (short)" in markdown_table(payload)


# ---- end to end on procedural boards ----

TRAIN, TEST = "group10000", "group20000"


def _checker_defects(board: np.ndarray, rng: np.random.Generator, count: int
                     ) -> tuple[np.ndarray, list[tuple[int, int, int, int, int]]]:
    """Toy 'real' defects, obviously unlike pcbforge's: 12 px checkerboard patches."""
    tested = board.copy()
    size = board.shape[0]
    cells = (np.indices((12, 12)).sum(axis=0) // 2 % 2 * 255).astype(np.uint8)
    boxes = []
    for k in range(count):
        x, y = (int(v) for v in rng.integers(20, size - 32, 2))
        tested[y:y + 12, x:x + 12] = cells
        boxes.append((x - 8, y - 8, x + 20, y + 20, k % len(DEEPPCB_CLASSES) + 1))
    return tested, boxes


@pytest.fixture(scope="module")
def boards(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("disc") / "boards"
    write_boards(folder, count=24, seed=7, size=192, progress=False)
    return folder


@pytest.fixture(scope="module")
def checker_folder(boards: Path, tmp_path_factory) -> Path:
    """A DeepPCB layout whose defects are checkerboard patches: 16 pairs on TRAIN, 8 on TEST."""
    root = tmp_path_factory.mktemp("checker")
    rng = np.random.default_rng(3)
    for i, path in enumerate(sorted(boards.glob("*.png"))):
        group = TRAIN if i < 16 else TEST
        number = group.removeprefix("group")
        (root / group / number).mkdir(parents=True, exist_ok=True)
        (root / group / f"{number}_not").mkdir(exist_ok=True)
        board = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        tested, boxes = _checker_defects(board, rng, 6)
        pair = f"{number}{i:03d}"
        cv2.imwrite(str(root / group / number / f"{pair}_temp.jpg"), board)
        cv2.imwrite(str(root / group / number / f"{pair}_test.jpg"), tested)
        (root / group / f"{number}_not" / f"{pair}.txt").write_text(
            "".join(" ".join(map(str, b)) + "\n" for b in boxes))
    return root


@pytest.fixture(scope="module")
def product_folder(boards: Path, tmp_path_factory) -> Path:
    """pcbforge's own synthetic pairs in DeepPCB layout, two per board: the pairs of 12
    boards on TRAIN, of the other 12 on TEST."""
    tmp = tmp_path_factory.mktemp("product")
    synthesize(boards, tmp / "made", count=48, seed=4, progress=False, image_format="jpg")
    dataset = load(tmp / "made")
    samples = dataset.samples.copy()
    tested = samples["role"] == "tested"
    index = samples.loc[tested, "template_path"].str.extract(r"(\d+)\.png$")[0].astype(int)
    samples.loc[tested, "board"] = np.where(index < 12, TRAIN, TEST)
    save_deeppcb(samples, dataset.labels, tmp / "made", tmp / "deeppcb")
    return tmp / "deeppcb"


def _config(folder: Path, out: Path, **extra) -> DiscriminatorConfig:
    return DiscriminatorConfig(data_dir=folder, out=out, train_boards=(TRAIN,),
                               test_boards=(TEST,), window=32, jitter=4, epochs=6, batch=32,
                               workers=1, montage=4, **extra)


def test_an_obviously_different_real_set_is_separated(checker_folder: Path,
                                                      tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="the benchmark extra: pip install -e .[bench]")
    from pcbforge.bench.discriminator import run_discriminator

    lines: list[str] = []
    payload = run_discriminator(_config(checker_folder, tmp_path / "out"), log=lines.append)
    run = payload["seeds"][0]
    assert payload["real_pairs"] == 24 and payload["real_boxes"] == 144
    assert run["auc"] >= 0.9, run
    counts = run["crops"]
    assert all(c["real"] == c["synthetic"] for c in counts.values())
    assert sum(c["real"] for c in counts.values()) > 20
    assert not payload["target_met"]
    written = json.loads((tmp_path / "out" / "discriminator.json").read_text())
    assert written["seeds"][0]["auc"] == run["auc"]
    table = (tmp_path / "out" / "discriminator.md").read_text()
    assert "NOT met" in table and "| 0 |" in table
    montages = list((tmp_path / "out" / "montages" / "seed0").glob("*.png"))
    assert montages and cv2.imread(str(montages[0])) is not None
    assert not (tmp_path / "out" / "work" / "seed0").exists()  # removed unless keep_work


def test_two_halves_of_one_set_are_not_separated(checker_folder: Path) -> None:
    """Crops of one set (40 random windows of every pair) split at random into 'real' and
    'synthetic' halves: nothing to learn, so the held-out AUC stays near 0.5 (its spread
    at ~160 crops a side is ~0.03; the bounds are 6 spreads away)."""
    pytest.importorskip("torch", reason="the benchmark extra: pip install -e .[bench]")
    from pcbforge.bench.discriminator import score, train_discriminator

    config = _config(checker_folder, checker_folder / "unused")
    rng = np.random.default_rng(5)
    pairs = []
    for template, tested, _ in deeppcb_pairs(checker_folder):
        corners = rng.integers(0, 160, (40, 2))
        pairs.append((template, tested, [(int(x), int(y), int(x) + 24, int(y) + 24, "copper")
                                         for x, y in corners]))
    boards = [p[1].parent.parent.name for p in pairs]
    with LocalEngine(1) as engine:
        crops = crops_of(pairs, boards, synthetic=False, side=40, engine=engine)
    crops.synthetic = rng.random(len(crops)) < 0.5
    trained = train_discriminator(crops.take(crops.boards == TRAIN), config, seed=0,
                                  log=lambda _: None)
    test = crops.take(crops.boards == TEST)
    assert len(test) == 320
    value = auc(score(trained.model, test, config), test.synthetic)
    assert 0.3 <= value <= 0.7, value


def test_pcbforge_against_itself_is_not_separated(product_folder: Path, tmp_path: Path) -> None:
    """'Real' pairs that are pcbforge's own output, written in DeepPCB layout: the whole
    pipeline (files, boxes, crops) leaks nothing that tells the two apart."""
    pytest.importorskip("torch", reason="the benchmark extra: pip install -e .[bench]")
    from pcbforge.bench.discriminator import run_discriminator

    payload = run_discriminator(_config(product_folder, tmp_path / "out", image_format="jpg"),
                                log=lambda _: None)
    run = payload["seeds"][0]
    # ~130 crops a side: the AUC's spread is ~0.035 around 0.5, the bounds 6 spreads away.
    assert sum(c["real"] for c in run["crops"].values()) >= 100
    assert 0.3 <= run["auc"] <= 0.7, run


def test_pcbforge_against_itself_is_not_separated_away_from_the_boxes(
        product_folder: Path, tmp_path: Path) -> None:
    """The background mode on pcbforge's own pairs: windows away from every box, no class;
    reported under 'background', and near chance."""
    pytest.importorskip("torch", reason="the benchmark extra: pip install -e .[bench]")
    from pcbforge.bench.discriminator import run_discriminator

    payload = run_discriminator(_config(product_folder, tmp_path / "out", image_format="jpg",
                                        crops="background", background_per_pair=8),
                                log=lambda _: None)
    run = payload["seeds"][0]
    assert list(run["auc_per_class"]) == ["background"] and not payload["class_conditional"]
    assert run["crops"]["background"]["real"] >= 100
    assert 0.3 <= run["auc"] <= 0.7, run
    assert (tmp_path / "out" / "montages" / "seed0" / "background.png").exists()
    assert "crops away from every labelled box" in (tmp_path / "out" /
                                                     "discriminator.md").read_text()
