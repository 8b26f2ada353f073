"""``split``: whole leakage groups, balanced classes, stable re-runs, clear errors."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pcbforge.cli.main import app
from pcbforge.curate import CurateParams
from pcbforge.datasets import load, save
from pcbforge.pipeline import import_deeppcb
from pcbforge.split import (
    SplitParams,
    _Scorer,
    assign,
    deviations,
    leakage_groups,
    split_dataset,
)
from tests.conftest import write_deeppcb_layout


def test_leakage_groups_join_group_template_and_columns():
    samples = pd.DataFrame({
        "path": ["a", "b", "c", "d", "e", "f"],
        "group": ["g1", "g1", "g2", "g3", "g4", "g5"],
        "template_path": ["", "", "d", "", "", ""],
        "board": ["", "", "", "", "B", "B"],
    })
    assert leakage_groups(samples).tolist() == [0, 0, 1, 1, 2, 3]
    assert leakage_groups(samples, ("board",)).tolist() == [0, 0, 1, 1, 2, 2]


def test_exhaustive_search_finds_the_brute_force_optimum():
    rng = np.random.default_rng(3)
    counts = rng.integers(0, 9, size=(7, 4)).astype(float)
    counts[:, -1] += 1  # every group has images
    ratios = np.array([0.7, 0.15, 0.15])
    result = assign(counts, ratios, n_classes=2, exhaustive_max_groups=7)
    assert result.method.startswith("exhaustive")
    scorer = _Scorer(counts, ratios, 2)
    best = min(scorer(np.stack([counts[np.array(c) == s].sum(axis=0) for s in range(3)]))
               for c in itertools.product(range(3), repeat=7))
    assert result.score == pytest.approx(float(best))


def test_heuristic_balances_many_small_groups():
    rng = np.random.default_rng(5)
    counts = np.zeros((400, 8))
    counts[:, :6] = rng.poisson(1.2, size=(400, 6))  # boxes of 6 classes
    counts[:, 7] = rng.integers(1, 4, 400)  # images
    counts[:, 6] = (counts[:, :6].sum(axis=1) == 0) * counts[:, 7]  # defect-free images
    result = assign(counts, [0.7, 0.15, 0.15], n_classes=6, seed=1, candidates=3)
    assert result.method.startswith("iterative stratification")
    dev = deviations(counts, result.split_of_group, [0.7, 0.15, 0.15])
    assert dev[:, :6].max() <= 0.01 and dev[:, 7].max() <= 0.01
    again = assign(counts, [0.7, 0.15, 0.15], n_classes=6, seed=1, candidates=3)
    assert (again.split_of_group == result.split_of_group).all()  # same seed, same split


@pytest.fixture(scope="module")
def deeppcb_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("splitds")
    write_deeppcb_layout(root / "src", {"group00001": 6, "group00002": 5, "group00003": 5,
                                        "group00004": 4}, np.random.default_rng(21))
    import_deeppcb(root / "src", root / "ds", CurateParams(workers=1))
    return root


def _fresh(root, tmp_path):
    import shutil

    shutil.copytree(root / "ds", tmp_path / "ds")
    return tmp_path / "ds"


def test_split_keeps_pairs_and_boards_together(deeppcb_dataset, tmp_path):
    path = _fresh(deeppcb_dataset, tmp_path)
    report = split_dataset(path, SplitParams(seed=2))
    samples = load(path).samples
    ok = samples[samples["status"] == "ok"]
    assert set(ok["split"]) == {"train", "val", "test"}
    tested = ok[ok["template_path"] != ""]
    split_of = samples.set_index("path")["split"]
    assert (tested["split"].to_numpy() == split_of[tested["template_path"]].to_numpy()).all()
    assert report["method"].startswith("exhaustive") or report["groups"] > 12

    by_board = split_dataset(path, SplitParams(seed=2, group_by=("board",), reshuffle=True))
    samples = load(path).samples
    ok = samples[samples["status"] == "ok"]
    assert (ok.groupby("board")["split"].nunique() == 1).all()
    assert by_board["method"] == "exhaustive search over 3^4 assignments of 4 groups"
    assert by_board["classes_missing"] == {"train": [], "val": [], "test": []}


def test_same_seed_same_split_and_new_images_never_move_old_ones(deeppcb_dataset, tmp_path):
    path = _fresh(deeppcb_dataset, tmp_path)
    split_dataset(path, SplitParams(seed=4))
    first = load(path).samples.set_index("sample_id")["split"]
    split_dataset(path, SplitParams(seed=4, reshuffle=True))
    assert load(path).samples.set_index("sample_id")["split"].equals(first)

    # 20% more tiles arrive: re-import into the same folder, then split again.
    src = deeppcb_dataset / "src2"
    import shutil

    shutil.copytree(deeppcb_dataset / "src", src)
    write_deeppcb_layout(src, {"group00005": 4}, np.random.default_rng(22), list_name="more")
    import_deeppcb(src, path, CurateParams(workers=1))
    carried = load(path).samples.set_index("sample_id")["split"]
    assert carried[first.index].equals(first)  # the re-import kept every assignment
    assert (carried.drop(first.index) == "").all()
    report = split_dataset(path, SplitParams(seed=9))
    after = load(path).samples.set_index("sample_id")
    assert after["split"][first.index].equals(first)
    new = after.drop(first.index)
    assert (new.loc[new["status"] == "ok", "split"] != "").all()
    assert report["groups_placed_now"] > 0 and report["groups_kept_from_earlier_split"] > 0


@pytest.mark.parametrize(("args", "message"), [
    (["--ratios", "0.7,0.2,0.2"], "ratios must sum to 1"),
    (["--ratios", "1.2,-0.1,-0.1"], "ratios must be >= 0"),
    (["--ratios", "0.5,0.5"], "--ratios must be three numbers"),
    (["--group-by", "lot"], "unknown group column 'lot'"),
])
def test_split_errors(deeppcb_dataset, tmp_path, args, message):
    path = _fresh(deeppcb_dataset, tmp_path)
    run = CliRunner().invoke(app, ["split", str(path), *args])
    assert run.exit_code == 2 and message in run.output, run.output


def test_fewer_groups_than_splits(tmp_path):
    write_deeppcb_layout(tmp_path / "src", {"group00001": 1}, np.random.default_rng(2))
    import_deeppcb(tmp_path / "src", tmp_path / "ds", CurateParams(workers=1))
    run = CliRunner().invoke(app, ["split", str(tmp_path / "ds")])
    assert run.exit_code == 2 and "only 1 group(s) of ok images for 3 splits" in run.output


def test_split_command_prints_the_table(deeppcb_dataset, tmp_path):
    path = _fresh(deeppcb_dataset, tmp_path)
    run = CliRunner().invoke(app, ["split", str(path), "--group-by", "board"])
    assert run.exit_code == 0, run.output
    assert "spur boxes" in run.output and "largest deviation" in run.output
    assert (path / "split_report.json").is_file()
    dataset = load(path)
    assert dataset.info.split["group_by"] == ["board"]
    save(dataset)  # still a valid dataset
