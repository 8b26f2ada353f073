"""pcbforge dataset -> FiftyOne -> pcbforge dataset (export, write-back, media): every
sample, box, mask, field and saved view arrives; edits made through FiftyOne's Python API
come back; re-runs update in place."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pcbforge.datasets.dataset import load
from pcbforge.datasets.fiftyone import (
    FROM_FIFTYONE_REPORT,
    field_name,
    from_fiftyone,
    full_mask,
    table_view_counts,
    to_fiftyone,
    view_counts,
)
from pcbforge.datasets.masks import decode_mask

BOX = ["x1", "y1", "x2", "y2"]


# --- with FiftyOne -------------------------------------------------------------------------------

def _copy(dataset: Path, target: Path) -> Path:
    shutil.copytree(dataset, target)
    return target


def _expected_members(dataset) -> dict[str, set[str]]:
    """Sample ids of each saved view, computed from the tables with pandas."""
    samples, labels = dataset.samples, dataset.labels
    ids = samples["sample_id"]
    members = {name: set(ids[samples["split"] == name]) for name in ("train", "val", "test")}
    members["synthetic"] = set(ids[samples["synthetic"]])
    members["real"] = set(ids[~samples["synthetic"]])
    copies = samples["duplicate_of"] != ""
    kept = samples["path"].isin(samples.loc[copies, "duplicate_of"])
    members["duplicates"] = set(ids[copies | kept])
    members["corrupt_or_low_quality"] = set(ids[samples["status"].isin(["corrupt",
                                                                         "low_quality"])])
    for name in dataset.info.classes:
        members[f"class-{name}"] = set(labels.loc[labels["label"] == name, "sample_id"])
    return members


def _fiftyone_boxes(fo_dataset) -> pd.DataFrame:
    """The FiftyOne boxes back in pixels, with their attributes."""
    rows = []
    for sample in fo_dataset.select_fields(["pcbforge_id", "metadata", "width", "height",
                                            "ground_truth"]):
        width, height = sample["width"], sample["height"]
        for det in sample.ground_truth.detections:
            x, y, w, h = det.bounding_box
            rows.append({"sample_id": sample.pcbforge_id, "label": det.label,
                         "x1": x * width, "y1": y * height, "x2": (x + w) * width,
                         "y2": (y + h) * height, "synthetic": det.synthetic,
                         "params": det.params,
                         "mask": full_mask(det.mask, (x * width, y * height, (x + w) * width,
                                                      (y + h) * height), width, height)
                         if det.mask is not None else ""})
    return _sorted(pd.DataFrame(rows))


def _sorted(labels: pd.DataFrame) -> pd.DataFrame:
    return labels.sort_values(["sample_id", "label", "x1", "y1"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def converted(fiftyone_db, inspection_dataset, tmp_path_factory):
    """The inspection dataset in FiftyOne (read-only for the tests that use it)."""
    root = _copy(inspection_dataset, tmp_path_factory.mktemp("converted") / "ds")
    return load(root), to_fiftyone(root, "inspection")


def test_every_sample_and_field_arrives(converted):
    dataset, fo_dataset = converted
    samples = dataset.samples.set_index("sample_id")
    assert len(fo_dataset) == len(samples) == 18
    keys = fo_dataset.values("pcbforge_id")
    assert sorted(keys) == sorted(samples.index)
    # Every column, under its field name, with its value (NaN as None).
    for column in samples.columns:
        expected = [None if pd.isna(v) else v for v in samples.loc[keys, column]]
        assert fo_dataset.values(field_name(column)) == expected, column
    by_key = {s.pcbforge_id: s for s in fo_dataset}
    # Corrupt files are samples, with their reason; the side-car note too.
    broken = samples.index[samples["status"] == "corrupt"]
    assert {by_key[k].reason for k in broken} == {"truncated", "zero_bytes"}
    assert by_key[samples.index[samples["path"] == "real/notes.txt"][0]].status == "skipped"
    # Split as a tag, templates linked, image sizes known without decoding.
    for key, sample in by_key.items():
        split = samples.at[key, "split"]
        assert sample.tags == ([split] if split else [])
        template = samples.at[key, "template_path"]
        assert sample.template_filepath == (str(dataset.image_path(template)) if template
                                            else None)
        if template:
            assert samples.at[sample.template_id, "path"] == template
        if samples.at[key, "status"] != "corrupt" and samples.at[key, "width"] > 0:
            assert (sample.metadata.width, sample.metadata.height) == (
                samples.at[key, "width"], samples.at[key, "height"])
    assert fo_dataset.app_config.media_fields == ["filepath", "template_filepath"]
    assert fo_dataset.persistent and fo_dataset.default_classes == dataset.info.classes


def test_saved_views_hold_what_the_tables_say(converted):
    dataset, fo_dataset = converted
    members = _expected_members(dataset)
    counts = view_counts(fo_dataset)
    assert list(counts)[:7] == ["train", "val", "test", "synthetic", "real", "duplicates",
                                "corrupt_or_low_quality"]
    assert set(counts) == set(members)
    for name, expected in members.items():
        view = fo_dataset.load_saved_view(name)
        assert set(view.values("pcbforge_id")) == expected, name
        assert counts[name] == len(expected)
    assert counts == table_view_counts(dataset)
    # The fixture has something in every kind of view.
    assert counts["duplicates"] == 4 and counts["corrupt_or_low_quality"] == 3
    assert min(counts.values()) > 0
    # Duplicates: each kept image first, then its copies.
    ordered = fo_dataset.load_saved_view("duplicates").values(["duplicate_cluster",
                                                                "duplicate_of", "path"])
    for cluster, duplicate_of, path in zip(*ordered, strict=True):
        assert cluster == (duplicate_of or path)
    firsts = [d for c, d in zip(ordered[0], ordered[1], strict=True)]
    assert firsts[0] == "" and firsts[1] != ""


def test_boxes_masks_and_attributes_arrive(converted):
    dataset, fo_dataset = converted
    expected = _sorted(dataset.labels)
    got = _fiftyone_boxes(fo_dataset)
    assert len(got) == len(expected) > 0
    assert got["label"].tolist() == expected["label"].tolist()
    np.testing.assert_allclose(got[BOX].to_numpy(float), expected[BOX].to_numpy(float),
                               rtol=1e-6, atol=0)
    assert got["synthetic"].tolist() == expected["synthetic"].tolist()
    assert got["params"].tolist() == expected["params"].tolist()
    assert got["mask"].tolist() == expected["mask"].tolist()
    # Drawn boxes carry their masks, hand-drawn (real) ones none; the fixture has both.
    assert (expected["mask"] != "").tolist() == expected["synthetic"].astype(bool).tolist()
    assert 0 < expected["synthetic"].sum() < len(expected)


def test_round_trip_without_edits_is_lossless(converted, tmp_path):
    dataset, _ = converted
    report = from_fiftyone("inspection", tmp_path / "back")
    back = load(tmp_path / "back", check_files=True)
    pd.testing.assert_frame_equal(_sorted(back.labels), _sorted(dataset.labels))
    columns = list(dataset.samples.columns)
    pd.testing.assert_frame_equal(back.samples[columns], dataset.samples)
    assert set(back.samples["tags"]) == {""} and set(back.samples["label_tags"]) == {""}
    assert back.info.image_root == str(dataset.image_root.resolve())
    assert back.info.provenance[-1]["step"] == "from_fiftyone"
    assert report["boxes_unchanged"] == len(dataset.labels)
    assert report["boxes_added"] == report["boxes_removed"] == 0
    assert (tmp_path / "back" / FROM_FIFTYONE_REPORT).is_file()


def _tree_digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_edits_made_in_fiftyone_come_back(fiftyone_db, inspection_dataset, tmp_path):
    fo = fiftyone_db
    from fiftyone import ViewField as F

    root = _copy(inspection_dataset, tmp_path / "ds")
    source = load(root)
    images = _tree_digest(source.image_root)
    tables = _tree_digest(root)
    fo_dataset = to_fiftyone(root, "edited")
    ids = source.samples.set_index("path")["sample_id"]

    def sample(path):
        return fo_dataset.match(F("pcbforge_id") == ids[path]).first()

    tagged = sample("real/line_0.png")  # a bad label: tag the sample and its box
    tagged.tags.append("bad_label")
    tagged.ground_truth.detections[0].tags.append("bad_label")
    tagged.save()
    moved = sample("images/syn_000000.png")  # move the first box by (5, 3) px
    first = moved.ground_truth.detections[0]
    x, y, w, h = first.bounding_box
    first.bounding_box = [x + 5 / 256, y + 3 / 256, w, h]
    moved_params = first.params
    moved.save()
    pruned = sample("images/syn_000001.png")  # delete a box
    deleted = pruned.ground_truth.detections.pop(0)
    pruned.save()
    added = sample("templates/board_000000.png")  # a box drawn where there was none
    added.ground_truth.detections.append(
        fo.Detection(label="short", bounding_box=[10 / 256, 20 / 256, 30 / 256, 15 / 256]))
    added.save()

    report = from_fiftyone("edited", tmp_path / "edited")
    edited = load(tmp_path / "edited", check_files=True)
    before, after = source.labels, edited.labels
    assert report["boxes_added"] == 2 and report["boxes_removed"] == 2
    assert report["boxes_unchanged"] == len(before) - 2 and len(after) == len(before)
    assert report["sample_tags"] == {"bad_label": 1} and report["label_tags"] == {"bad_label": 1}

    def boxes(table, path):
        return table[table["sample_id"] == ids[path]].reset_index(drop=True)

    old, new = boxes(before, "images/syn_000000.png"), boxes(after, "images/syn_000000.png")
    np.testing.assert_allclose(new.loc[0, BOX].to_numpy(float),
                               old.loc[0, BOX].to_numpy(float) + [5, 3, 5, 3], rtol=1e-6)
    assert new.loc[0, "params"] == moved_params and bool(new.loc[0, "synthetic"])
    old_mask, new_mask = decode_mask(old.loc[0, "mask"]), decode_mask(new.loc[0, "mask"])
    assert np.array_equal(np.roll(old_mask, (3, 5), axis=(0, 1)), new_mask)  # moved along
    pd.testing.assert_frame_equal(new.iloc[1:].reset_index(drop=True),
                                  old.iloc[1:].reset_index(drop=True))
    old, new = boxes(before, "images/syn_000001.png"), boxes(after, "images/syn_000001.png")
    assert len(new) == len(old) - 1 and deleted.params not in set(new["params"])
    new = boxes(after, "templates/board_000000.png")
    assert new[["label", *BOX, "mask", "synthetic", "params"]].values.tolist() == [
        ["short", 10.0, 20.0, 40.0, 35.0, "", False, ""]]
    others = ~after["sample_id"].isin(ids[["images/syn_000000.png", "images/syn_000001.png",
                                            "templates/board_000000.png"]])
    pd.testing.assert_frame_equal(
        _sorted(after[others]),
        _sorted(before[before["sample_id"].isin(set(after.loc[others, "sample_id"]))]))
    samples = edited.samples.set_index("path")
    assert samples.loc["real/line_0.png", ["tags", "label_tags"]].tolist() == [
        "bad_label", "bad_label"]
    assert (samples.drop(index="real/line_0.png")["tags"] == "").all()
    columns = list(source.samples.columns)
    pd.testing.assert_frame_equal(edited.samples[columns], source.samples)
    # Source images and the source dataset were only read.
    assert _tree_digest(source.image_root) == images
    assert _tree_digest(root) == tables

    # Written into the source itself, then viewed again: the tag stays, once.
    from_fiftyone("edited", root)
    assert load(root).samples.set_index("path").at["real/line_0.png", "tags"] == "bad_label"
    assert _tree_digest(source.image_root) == images
    again = to_fiftyone(root, "edited")
    tags = again.match(F("pcbforge_id") == ids["real/line_0.png"]).first().tags
    split = source.samples.set_index("path").at["real/line_0.png", "split"]
    assert sorted(tags) == sorted(["bad_label", split])
    assert len(again.load_saved_view("class-short")) == len(
        set(load(root).labels.query("label == 'short'")["sample_id"]))


def test_rerun_updates_in_place(fiftyone_db, inspection_dataset, tmp_path):
    fo = fiftyone_db
    root = _copy(inspection_dataset, tmp_path / "ds")
    first = to_fiftyone(root, "rerun")
    fo_ids = dict(zip(first.values("pcbforge_id"), first.values("id"), strict=True))
    dataset = load(root)
    samples = dataset.samples
    moving = samples.index[samples["split"] == "val"][0]
    gone = samples.index[samples["path"] == "real/blank.png"][0]
    moving_id, gone_id = samples.at[moving, "sample_id"], samples.at[gone, "sample_id"]
    user_tagged = first.match({"pcbforge_id": moving_id}).first()
    user_tagged.tags.append("check_me")
    user_tagged.save()
    first.add_sample(fo.Sample(filepath=str(tmp_path / "stray.png")))  # not in the dataset
    samples.loc[moving, "split"] = "test"
    dataset.samples = samples.drop(index=gone).reset_index(drop=True)
    from pcbforge.datasets.dataset import save

    save(dataset)

    again = to_fiftyone(root, "rerun")
    keys = again.values("pcbforge_id")
    assert len(keys) == len(set(keys)) == 17 and gone_id not in keys
    assert all(fo_ids[k] == i for k, i in zip(keys, again.values("id"), strict=True))
    assert sorted(again.match({"pcbforge_id": moving_id}).first().tags) == ["check_me", "test"]
    assert view_counts(again) == table_view_counts(load(root))


def test_names_of_other_datasets_are_refused(fiftyone_db, inspection_dataset, tmp_path):
    fiftyone_db.Dataset("not-ours")
    with pytest.raises(ValueError, match="'not-ours' exists and was not made by pcbforge"):
        to_fiftyone(inspection_dataset, "not-ours")
    to_fiftyone(inspection_dataset, "taken")
    other = _copy(inspection_dataset, tmp_path / "other")
    with pytest.raises(ValueError, match="'taken' shows .* not .*other; choose another name"):
        to_fiftyone(other, "taken")


def test_bad_edits_are_refused_with_the_sample_named(fiftyone_db, inspection_dataset,
                                                      tmp_path):
    fo = fiftyone_db
    fo_dataset = to_fiftyone(inspection_dataset, "bad-edits")
    with pytest.raises(ValueError, match="no FiftyOne dataset 'missing'"):
        from_fiftyone("missing", tmp_path / "x")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a pcbforge dataset; refusing"):
        from_fiftyone("bad-edits", busy)
    sample = fo_dataset.match({"path": "templates/board_000001.png"}).first()
    sample.ground_truth.detections.append(
        fo.Detection(label="scratch", bounding_box=[0.1, 0.1, 0.1, 0.1]))
    sample.save()
    with pytest.raises(ValueError, match=r"board_000001\.png.*'scratch' is not one of"):
        from_fiftyone("bad-edits", tmp_path / "out")
    sample.ground_truth.detections[-1].label = "short"
    sample.ground_truth.detections[-1].bounding_box = [0.9, 0.9, 0.5, 0.1]
    sample.save()
    with pytest.raises(ValueError, match=r"outside the 256x256 image"):
        from_fiftyone("bad-edits", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.partial-*"))


def test_relative_dataset_paths_become_absolute_file_paths(fiftyone_db, inspection_dataset,
                                                          tmp_path, monkeypatch):
    """FiftyOne's App server runs in another folder: every file path must be absolute."""
    root = _copy(inspection_dataset, tmp_path / "work" / "ds")
    info = json.loads((root / "dataset.json").read_text())
    info["image_root"] = os.path.relpath(info["image_root"], root)  # ../../.../src
    (root / "dataset.json").write_text(json.dumps(info))
    monkeypatch.chdir(tmp_path / "work")
    fo_dataset = to_fiftyone(Path("ds"), "relative")
    paths = fo_dataset.values("filepath") + [p for p in fo_dataset.values("template_filepath")
                                             if p]
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in paths)
    assert fo_dataset.info["pcbforge"]["root"] == str(root)


def test_a_file_name_that_is_not_utf8_is_still_a_sample(fiftyone_db, tmp_path):
    import cv2

    from pcbforge.curate import CurateParams, curate

    src = tmp_path / "src"
    src.mkdir()
    ok, png = cv2.imencode(".png", np.full((64, 64), 90, np.uint8))
    (src / "plain.png").write_bytes(png.tobytes())
    with open(os.fsencode(src) + b"/caf\xe9.png", "wb") as handle:  # Latin-1 name
        handle.write(png.tobytes())
    curate(src, tmp_path / "ds", CurateParams(workers=1))
    fo_dataset = to_fiftyone(tmp_path / "ds", "latin1")
    assert sorted(fo_dataset.values("path")) == ["caf\\xe9.png", "plain.png"]
    assert str(src / "caf\\xe9.png") in fo_dataset.values("filepath")
    assert from_fiftyone("latin1", tmp_path / "back")["samples"] == 2


def test_formats_a_browser_cannot_show_are_shown_through_png_copies(fiftyone_db, tmp_path):
    import cv2

    from pcbforge.curate import CurateParams, curate

    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(5)
    grey = rng.integers(0, 256, (48, 64), dtype=np.uint8)
    deep = (rng.integers(0, 4096, (40, 56)) * 16).astype(np.uint16)  # a 12-bit camera
    assert cv2.imwrite(str(src / "scan.tif"), grey)
    assert cv2.imwrite(str(src / "deep.tiff"), deep)
    assert cv2.imwrite(str(src / "plain.png"), rng.integers(0, 256, (32, 32), dtype=np.uint8))
    ok, tiff = cv2.imencode(".tif", grey[::-1].copy())
    (src / "renamed.jpg").write_bytes(tiff.tobytes())  # a TIFF under a JPEG name
    colour = rng.integers(0, 256, (36, 44, 3), dtype=np.uint8)
    assert cv2.imwrite(str(src / "colour.tif"), colour)
    before = _tree_digest(src)
    curate(src, tmp_path / "ds", CurateParams(workers=1))
    fo_dataset = to_fiftyone(tmp_path / "ds", "tiff")
    shown = dict(zip(fo_dataset.values("path"), fo_dataset.values("filepath"), strict=True))
    assert shown["plain.png"] == str(src / "plain.png")  # a browser shows it as it is
    view = (tmp_path / "ds" / "cache" / "view").resolve()
    for name in ("scan.tif", "deep.tiff", "renamed.jpg", "colour.tif"):
        assert Path(shown[name]).parent == view and shown[name].endswith(".png"), shown[name]
    np.testing.assert_array_equal(cv2.imread(shown["scan.tif"], cv2.IMREAD_UNCHANGED), grey)
    np.testing.assert_array_equal(cv2.imread(shown["renamed.jpg"], cv2.IMREAD_UNCHANGED),
                                  grey[::-1])
    np.testing.assert_array_equal(cv2.imread(shown["colour.tif"], cv2.IMREAD_UNCHANGED), colour)
    scaled = cv2.imread(shown["deep.tiff"], cv2.IMREAD_UNCHANGED)
    assert scaled.dtype == np.uint8 and scaled.shape == deep.shape
    np.testing.assert_array_equal(scaled, np.round(deep * (255.0 / deep.max())).astype(np.uint8))
    assert _tree_digest(src) == before  # the sources are untouched
    # Re-running reuses the copies; from_fiftyone still names the original files.
    assert to_fiftyone(tmp_path / "ds", "tiff").values("filepath") == fo_dataset.values("filepath")
    assert from_fiftyone("tiff", tmp_path / "back")["samples"] == 5
    back = load(tmp_path / "back").samples
    assert sorted(back["path"]) == ["colour.tif", "deep.tiff", "plain.png", "renamed.jpg",
                                    "scan.tif"]


def test_nuisance_regions_show_as_a_detections_field_and_come_back(fiftyone_db, tmp_path):
    from pcbforge.synth.compose import SynthConfig
    from pcbforge.synth.pipeline import synthesize, write_boards

    write_boards(tmp_path / "boards", count=2, seed=1, size=320, progress=False)
    root = tmp_path / "synth"
    synthesize(tmp_path / "boards", root, count=6, seed=2, progress=False,
               config=SynthConfig(background={"zero_share": 0.0}))
    dataset = load(root)
    expected = dict(zip(dataset.samples["sample_id"], dataset.samples["nuisance_regions"],
                        strict=True))
    assert sum(len(json.loads(v)) for v in expected.values() if v) > 0
    fo_dataset = to_fiftyone(root, "synth-nuisance")
    width = dict(zip(dataset.samples["sample_id"], dataset.samples["width"], strict=True))
    height = dict(zip(dataset.samples["sample_id"], dataset.samples["height"], strict=True))
    for key, found in zip(fo_dataset.values("pcbforge_id"), fo_dataset.values("nuisance"),
                          strict=True):
        if not expected[key]:
            assert found is None  # templates record none
            continue
        got = [{"kind": d.label, "area": d.area,
                "box": [round(d.bounding_box[0] * width[key]),
                        round(d.bounding_box[1] * height[key]),
                        round((d.bounding_box[0] + d.bounding_box[2]) * width[key]),
                        round((d.bounding_box[1] + d.bounding_box[3]) * height[key])]}
               for d in found.detections]
        def order(region: dict) -> str:
            return json.dumps(region, sort_keys=True)

        assert sorted(got, key=order) == sorted(json.loads(expected[key]), key=order)
    from_fiftyone("synth-nuisance", tmp_path / "back")
    back = load(tmp_path / "back")
    assert dict(zip(back.samples["sample_id"], back.samples["nuisance_regions"],
                    strict=True)) == expected
