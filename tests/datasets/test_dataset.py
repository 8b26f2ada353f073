"""The dataset folder model: round trips and errors that name file and row."""

import json

import pandas as pd
import pytest

from pcbforge.datasets.dataset import (
    Dataset,
    DatasetError,
    DatasetInfo,
    load,
    sample_id_for,
    save,
)


def _dataset(tmp_path, **info) -> Dataset:
    samples = pd.DataFrame({
        "sample_id": ["s1", "s2"], "path": ["a.png", "b.png"], "status": ["ok", "ok"],
        "split": ["train", "test"], "synthetic": [False, True], "template_path": ["", "a.png"],
        "source": ["line3", "synth"], "group": ["g1", "g1"], "width": [640, 640],
        "height": [480, 480],
    })
    labels = pd.DataFrame({
        "sample_id": ["s2", "s2"], "label": ["spur", "short"], "x1": [10.0, 100.0],
        "y1": [20.0, 5.0], "x2": [30.0, 140.0], "y2": [44.0, 25.0], "mask": ["", ""],
        "synthetic": [True, True], "params": ['{"seed": 1}', "{}"],
    })
    info = DatasetInfo(classes=["spur", "short"], **info)
    return Dataset(tmp_path / "ds", samples, labels, info)


def test_round_trip_keeps_every_value(tmp_path):
    dataset = _dataset(tmp_path, px_per_mm=48.0)
    save(dataset)
    loaded = load(tmp_path / "ds")
    columns = list(dataset.samples.columns)
    pd.testing.assert_frame_equal(
        loaded.samples[columns].reset_index(drop=True), dataset.samples, check_dtype=False
    )
    pd.testing.assert_frame_equal(loaded.labels, dataset.labels, check_dtype=False)
    assert loaded.info == dataset.info
    assert (tmp_path / "ds" / "labels.csv").is_file()
    assert (tmp_path / "ds" / "samples.csv").is_file()


def test_curate_output_is_a_dataset(curated):
    dataset = load(curated.out, check_files=True)
    assert len(dataset.samples) == len(curated.samples)
    assert dataset.samples["sample_id"].is_unique
    assert len(dataset.labels) == 0
    assert dataset.image_root.is_dir()


def test_sample_ids_are_stable():
    assert sample_id_for("a/b.png", "src") == sample_id_for("a/b.png", "src")
    assert sample_id_for("a/b.png", "src") != sample_id_for("a/b.png", "other")


def _break(dataset, case):
    if case == "duplicate_id":
        dataset.samples.loc[1, "sample_id"] = "s1"
    elif case == "orphan_label":
        dataset.labels.loc[1, "sample_id"] = "s9"
    elif case == "unknown_class":
        dataset.labels.loc[1, "label"] = "scratch"
    elif case == "empty_box":
        dataset.labels.loc[1, "x2"] = 100.0
    elif case == "outside_image":
        dataset.labels.loc[1, "y2"] = 481.0
    elif case == "bad_split":
        dataset.samples.loc[1, "split"] = "holdout"


BROKEN = {
    "duplicate_id": "samples.parquet row 1: duplicate sample_id 's1'",
    "orphan_label": "labels.parquet row 1: sample_id 's9' is not a sample",
    "unknown_class": "labels.parquet row 1: unknown class 'scratch'",
    "empty_box": "labels.parquet row 1: empty box",
    "outside_image": "labels.parquet row 1: box (100.0, 5.0, 140.0, 481.0) is outside its image",
    "bad_split": "samples.parquet row 1: split 'holdout'",
}


@pytest.mark.parametrize("case", list(BROKEN), ids=list(BROKEN))
def test_broken_datasets_name_file_and_row(tmp_path, case):
    dataset = _dataset(tmp_path)
    save(dataset)
    _break(dataset, case)
    with pytest.raises(DatasetError, match="row 1"):
        save(dataset)  # refused before anything is written
    # Written by hand (as another tool might), it is refused on reading.
    dataset.samples.to_parquet(tmp_path / "ds" / "samples.parquet", index=False)
    dataset.labels.to_parquet(tmp_path / "ds" / "labels.parquet", index=False)
    with pytest.raises(DatasetError) as error:
        load(tmp_path / "ds")
    assert BROKEN[case] in str(error.value)


def test_missing_image_is_reported_when_files_are_checked(tmp_path):
    dataset = _dataset(tmp_path)
    save(dataset)
    with pytest.raises(DatasetError, match="row 0: image .*a.png does not exist"):
        load(tmp_path / "ds", check_files=True)


@pytest.mark.parametrize(
    ("text", "message"),
    [("{not json", "not valid JSON"), ('{"classes": [], "colour": 1}', "colour")],
    ids=["invalid_json", "unknown_key"],
)
def test_bad_dataset_json(tmp_path, text, message):
    save(_dataset(tmp_path))
    (tmp_path / "ds" / "dataset.json").write_text(text)
    with pytest.raises(DatasetError, match=message):
        load(tmp_path / "ds")


def test_not_a_dataset(tmp_path):
    with pytest.raises(DatasetError, match="no samples.parquet"):
        load(tmp_path)


def test_dataset_json_is_readable(tmp_path):
    save(_dataset(tmp_path, px_per_mm=48.0))
    header = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert header["classes"] == ["spur", "short"] and header["px_per_mm"] == 48.0
