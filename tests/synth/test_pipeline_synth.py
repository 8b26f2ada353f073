"""Tests for ``pcbforge.synth.pipeline``: good boards in, a pcbforge dataset of labelled
defective boards out, the same bytes for the same seed whatever the worker count."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from pcbforge.datasets import load
from pcbforge.datasets.masks import decode_mask
from pcbforge.synth.analysis import etch_board
from pcbforge.synth.compose import SynthConfig, pad_box
from pcbforge.synth.pipeline import (
    REPORT_JSON,
    SynthError,
    list_boards,
    synth_one,
    synthesize,
    write_boards,
)
from pcbforge.synth.topology import check_topology

BOARD_SIZE = 400
COUNT = 6
SEED = 3


@pytest.fixture(scope="module")
def boards_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("boards")
    names = write_boards(folder, count=3, seed=0, size=BOARD_SIZE, progress=False)
    assert names == [f"board_{i:06d}.png" for i in range(3)]
    return folder


@pytest.fixture(scope="module")
def first_run(boards_dir, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth") / "dataset"
    report = synthesize(boards_dir, out, count=COUNT, seed=SEED, progress=False)
    return out, report


def _image_bytes(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / "images").iterdir())}


def _copper(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    assert image is not None, path
    return (image < 128).astype(np.uint8)


def _tested(dataset) -> pd.DataFrame:
    return dataset.samples[dataset.samples["role"] == "tested"]


def test_write_boards_is_seeded(boards_dir, tmp_path) -> None:
    again = write_boards(tmp_path / "again", count=2, seed=0, size=BOARD_SIZE, progress=False)
    for name in again:
        assert (tmp_path / "again" / name).read_bytes() == (boards_dir / name).read_bytes()
    board = cv2.imread(str(boards_dir / again[0]), cv2.IMREAD_UNCHANGED)
    assert board.shape == (BOARD_SIZE, BOARD_SIZE) and set(np.unique(board)) == {0, 255}
    other = write_boards(tmp_path / "other", count=1, seed=1, size=BOARD_SIZE, progress=False)
    assert (tmp_path / "other" / other[0]).read_bytes() != (boards_dir / again[0]).read_bytes()


def test_write_boards_rejects_bad_sizes(tmp_path) -> None:
    with pytest.raises(SynthError, match="count"):
        write_boards(tmp_path / "b", count=0, progress=False)
    with pytest.raises(SynthError, match="size"):
        write_boards(tmp_path / "b", count=1, size=32, progress=False)


def test_dataset_loads_with_its_files(first_run) -> None:
    out, report = first_run
    dataset = load(out, check_files=True)
    samples = dataset.samples
    tested = _tested(dataset)
    templates = samples[samples["role"] == "template"]
    assert len(tested) == COUNT == report["images"]
    assert len(templates) == 3 == report["boards_used"]
    assert tested["synthetic"].all() and not templates["synthetic"].any()
    assert (samples["source"] == "synth").all() and (samples["status"] == "ok").all()
    assert sorted(tested["path"]) == [f"images/syn_{i:06d}.png" for i in range(COUNT)]
    assert sorted(templates["path"]) == [f"templates/board_{i:06d}.png" for i in range(3)]
    assert dataset.info.px_per_mm == 48.0
    assert dataset.info.provenance[0]["step"] == "synth"
    assert dataset.info.provenance[0]["seed"] == SEED


def test_tested_rows_name_their_template_and_share_its_group(first_run, boards_dir) -> None:
    out, _ = first_run
    dataset = load(out)
    by_path = dataset.samples.set_index("path")
    for row in _tested(dataset).itertuples():
        index = int(row.path[len("images/syn_"):-len(".png")])
        assert row.template_path == f"templates/board_{index % 3:06d}.png"
        template = by_path.loc[row.template_path]
        assert template["role"] == "template" and template["group"] == row.group
        # Templates are the boards, byte for byte.
        assert (out / row.template_path).read_bytes() == (
            boards_dir / Path(row.template_path).name).read_bytes()
        image = cv2.imread(str(out / row.path), cv2.IMREAD_UNCHANGED)
        assert (row.height, row.width) == image.shape[:2]
        synth = json.loads(row.synth)
        assert synth["seed"] == SEED and synth["index"] == index
    groups = _tested(dataset).groupby("template_path")["group"].nunique()
    assert (groups == 1).all()
    assert dataset.samples.loc[dataset.samples["role"] == "template", "group"].nunique() == 3


def test_labels_have_masks_inside_boxes_and_pass_topology(first_run) -> None:
    out, report = first_run
    dataset = load(out)
    labels, samples = dataset.labels, dataset.samples.set_index("sample_id")
    assert len(labels) == report["defects_total"] > 0
    assert labels["synthetic"].all()
    for label in labels.itertuples():
        sample = samples.loc[label.sample_id]
        assert sample["role"] == "tested"
        mask = decode_mask(label.mask)
        assert mask.shape == (sample["height"], sample["width"])
        x1, y1, x2, y2 = (int(v) for v in (label.x1, label.y1, label.x2, label.y2))
        assert (x1, y1, x2, y2) == (label.x1, label.y1, label.x2, label.y2)
        assert mask.any() and mask[y1:y2, x1:x2].sum() == mask.sum()
        params = json.loads(label.params)
        assert params["class"] == label.label
        assert params["changed_px"] == int(mask.sum())
        assert tuple(pad_box(tuple(params["tight_box"]), 10, mask.shape)) == (x1, y1, x2, y2)
        assert params["strokes"]
        before = _copper(out / sample["template_path"])[y1:y2, x1:x2]
        after = _copper(out / sample["path"])[y1:y2, x1:x2]
        ok, why = check_topology(label.label, before, after)
        assert ok, (label.sample_id, label.label, why)


def test_report_is_written_and_consistent(first_run) -> None:
    out, report = first_run
    written = json.loads((out / REPORT_JSON).read_text())
    assert written == json.loads(json.dumps(report))
    assert report["failed_images"] == [] and report["requested_images"] == COUNT
    assert report["boards_found"] == 3 and report["binary_boards"] == COUNT
    assert sum(report["defects"].values()) == report["defects_total"]
    assert report["defects_total"] + sum(report["dropped"].values()) == report[
        "defects_requested"]
    assert report["seed"] == SEED


def test_a_density_per_megapixel_is_recorded_in_the_report_and_labels(first_run, boards_dir,
                                                                     tmp_path) -> None:
    config = SynthConfig(defects_per_mp=(30.0, 30.0), defect_free_share=0.0)
    report = synthesize(boards_dir, tmp_path / "dense", count=3, seed=SEED, config=config,
                        progress=False)
    # 30 per MP on a 400 x 400 board (0.16 MP): 4.8, so 5 asked of each image.
    assert report["defects_requested"] == 3 * 5
    assert report["config"]["defects_per_mp"] == [30.0, 30.0]
    assert report["config"]["defects_per_image"] is None
    params = [json.loads(p) for p in load(tmp_path / "dense").labels["params"]]
    assert params and all(p["defects_per_mp"] == [30.0, 30.0] for p in params)
    # A count per image records no density: earlier labels keep their bytes.
    default = [json.loads(p) for p in load(first_run[0]).labels["params"]]
    assert not any("defects_per_mp" in p for p in default)
    assert json.loads((first_run[0] / REPORT_JSON).read_text())["config"][
        "defects_per_image"] == [3, 12]


def test_same_seed_same_bytes_and_labels(first_run, boards_dir, tmp_path) -> None:
    out, _ = first_run
    again = tmp_path / "again"
    synthesize(boards_dir, again, count=COUNT, seed=SEED, progress=False)
    assert _image_bytes(again) == _image_bytes(out)
    pd.testing.assert_frame_equal(pd.read_parquet(again / "labels.parquet"),
                                  pd.read_parquet(out / "labels.parquet"))
    pd.testing.assert_frame_equal(pd.read_parquet(again / "samples.parquet"),
                                  pd.read_parquet(out / "samples.parquet"))
    other = tmp_path / "other"
    synthesize(boards_dir, other, count=2, seed=SEED + 1, progress=False)
    assert _image_bytes(other)["syn_000000.png"] != _image_bytes(out)["syn_000000.png"]


def test_rerun_into_its_own_output_rewrites_the_same_bytes(first_run, boards_dir,
                                                           tmp_path) -> None:
    out, _ = first_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    synthesize(boards_dir, copy, count=COUNT, seed=SEED, progress=False)
    assert _image_bytes(copy) == _image_bytes(out)
    pd.testing.assert_frame_equal(pd.read_parquet(copy / "labels.parquet"),
                                  pd.read_parquet(out / "labels.parquet"))


def test_two_workers_give_the_same_bytes(first_run, boards_dir, tmp_path) -> None:
    out, _ = first_run
    parallel = tmp_path / "parallel"
    synthesize(boards_dir, parallel, count=COUNT, seed=SEED, workers=2, progress=False)
    assert _image_bytes(parallel) == _image_bytes(out)
    pd.testing.assert_frame_equal(pd.read_parquet(parallel / "labels.parquet"),
                                  pd.read_parquet(out / "labels.parquet"))


def test_larger_count_keeps_the_earlier_images(first_run, boards_dir, tmp_path) -> None:
    out, _ = first_run
    more = tmp_path / "more"
    synthesize(boards_dir, more, count=COUNT + 2, seed=SEED, progress=False)
    earlier, now = _image_bytes(out), _image_bytes(more)
    assert len(now) == COUNT + 2
    assert {name: now[name] for name in earlier} == earlier
    old, new = pd.read_parquet(out / "labels.parquet"), pd.read_parquet(more / "labels.parquet")
    kept = new[new["sample_id"].isin(old["sample_id"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, old)


def test_synth_one_is_a_pure_function_of_its_task(boards_dir, tmp_path) -> None:
    config_json = SynthConfig().model_dump_json()
    board = str(boards_dir / "board_000001.png")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = synth_one((4, board, str(tmp_path / "a"), SEED, config_json, "png"))
    again = synth_one((4, board, str(tmp_path / "b"), SEED, config_json, "png"))
    assert first == again
    assert (tmp_path / "a" / first["path"]).read_bytes() == (
        tmp_path / "b" / again["path"]).read_bytes()


def test_synth_one_never_makes_its_output_folder(boards_dir, tmp_path) -> None:
    """A task left running after its run failed must not re-create the removed stage."""
    config_json = SynthConfig().model_dump_json()
    board = str(boards_dir / "board_000000.png")
    gone = tmp_path / ".out.partial-1"
    with pytest.raises(FileNotFoundError):
        synth_one((0, board, str(gone), SEED, config_json, "png"))
    assert list(tmp_path.iterdir()) == []


def test_unreadable_board_is_reported_not_fatal(boards_dir, tmp_path) -> None:
    src = tmp_path / "boards"
    shutil.copytree(boards_dir, src)
    (src / "garbage.png").write_bytes(b"\x89PNG not really an image")
    boards, _ = list_boards(src)
    assert [Path(b.file).name for b in boards][-1] == "garbage.png"
    out = tmp_path / "out"
    report = synthesize(src, out, count=8, seed=SEED, progress=False)
    failed = report["failed_images"]
    # Boards are used in turn: images 3 and 7 come from the garbage file.
    assert [f["index"] for f in failed] == [3, 7]
    assert all(Path(f["board"]).name == "garbage.png" and f["reason"] for f in failed)
    assert report["images"] == 6 and report["boards_used"] == 3
    dataset = load(out, check_files=True)
    assert len(_tested(dataset)) == 6
    assert not dataset.samples["board"].astype(str).str.endswith("garbage.png").any()
    assert json.loads((out / REPORT_JSON).read_text())["failed_images"] == failed


def test_a_pcbforge_dataset_gives_its_templates_as_boards(first_run, tmp_path) -> None:
    out, _ = first_run
    boards, px_per_mm = list_boards(out)
    assert px_per_mm == 48.0
    assert [Path(b.file).name for b in boards] == [f"board_{i:06d}.png" for i in range(3)]
    source = load(out).samples.set_index("path")
    assert [b.group for b in boards] == [source.loc[f"templates/board_{i:06d}.png", "group"]
                                         for i in range(3)]
    second = tmp_path / "second"
    report = synthesize(out, second, count=3, seed=SEED, progress=False)
    assert report["images"] == 3 and report["failed_images"] == []
    dataset = load(second, check_files=True)
    tested = _tested(dataset)
    assert set(tested["group"]) == set(source.loc[source["role"] == "template", "group"])
    for row in tested.itertuples():
        template = cv2.imread(str(second / row.template_path), cv2.IMREAD_UNCHANGED)
        assert template is not None and template.shape == (BOARD_SIZE, BOARD_SIZE)


def test_refuses_a_folder_that_is_not_a_synth_output(boards_dir, tmp_path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(SynthError, match="not an earlier"):
        synthesize(boards_dir, out, count=1, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert (out / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"count": 0}, "count"),
        ({"count": 1, "image_format": "bmp"}, "image format"),
    ],
    ids=["zero_count", "bad_format"],
)
def test_bad_arguments_raise_synth_error(boards_dir, tmp_path, kwargs, message) -> None:
    with pytest.raises(SynthError, match=message):
        synthesize(boards_dir, tmp_path / "out", progress=False, **kwargs)
    assert not (tmp_path / "out").exists()


def test_out_inside_boards_and_empty_boards_are_refused(boards_dir, tmp_path) -> None:
    src = tmp_path / "boards"
    shutil.copytree(boards_dir, src)
    with pytest.raises(SynthError, match="inside"):
        synthesize(src, src / "out", count=1, progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SynthError, match="no good boards"):
        synthesize(empty, tmp_path / "out", count=1, progress=False)
    with pytest.raises(SynthError, match="not a folder"):
        list_boards(tmp_path / "missing")


def test_jpg_output(boards_dir, tmp_path) -> None:
    out = tmp_path / "jpg"
    report = synthesize(boards_dir, out, count=2, seed=SEED, image_format="jpg",
                        progress=False)
    assert report["images"] == 2
    dataset = load(out, check_files=True)
    assert all(p.endswith(".jpg") for p in _tested(dataset)["path"])


def test_geometric_augment_moves_template_and_labels_together(boards_dir, tmp_path) -> None:
    out = tmp_path / "augmented"
    config = SynthConfig(augment={"preset": "geometric"})
    report = synthesize(boards_dir, out, count=4, seed=SEED, config=config, progress=False)
    assert report["images"] == 4 and report["failed_images"] == []
    dataset = load(out, check_files=True)
    tested = _tested(dataset)
    assert list(tested["template_path"]) == [f"templates/augmented/syn_{i:06d}.png"
                                             for i in range(4)]
    templates = dataset.samples.set_index("path")
    for row in tested.itertuples():
        assert (out / row.template_path).is_file()
        assert templates.loc[row.template_path, "role"] == "template"
        assert templates.loc[row.template_path, "group"] == row.group
    samples = dataset.samples.set_index("sample_id")
    assert len(dataset.labels) > 0
    for label in dataset.labels.itertuples():
        sample = samples.loc[label.sample_id]
        mask = decode_mask(label.mask)
        x1, y1, x2, y2 = (int(v) for v in (label.x1, label.y1, label.x2, label.y2))
        assert mask.shape == (sample["height"], sample["width"])
        assert mask[y1:y2, x1:x2].sum() == mask.sum() > 0
        before = _copper(out / sample["template_path"])[y1:y2, x1:x2]
        after = _copper(out / sample["path"])[y1:y2, x1:x2]
        ok, why = check_topology(label.label, before, after)
        assert ok, (label.sample_id, label.label, why)
    # Same seed, same augmented bytes.
    again = tmp_path / "again"
    synthesize(boards_dir, again, count=4, seed=SEED, config=config, progress=False)
    assert _image_bytes(again) == _image_bytes(out)


def test_etched_boards_are_their_images_own_templates(boards_dir, tmp_path) -> None:
    out = tmp_path / "etched"
    config = SynthConfig(etch_px=(0, 1))
    report = synthesize(boards_dir, out, count=6, seed=SEED, config=config, progress=False)
    assert report["images"] == 6 and report["failed_images"] == []
    dataset = load(out, check_files=True)
    tested = _tested(dataset)
    etch = [json.loads(s)["etch_px"] for s in tested["synth"]]
    assert set(etch) == {0, 1}
    templates = dataset.samples.set_index("path")
    for row, px in zip(tested.itertuples(), etch, strict=True):
        board = cv2.imread(row.board, cv2.IMREAD_UNCHANGED)
        template = cv2.imread(str(out / row.template_path), cv2.IMREAD_UNCHANGED)
        if px:
            assert row.template_path.startswith("templates/augmented/")
            assert templates.loc[row.template_path, "group"] == row.group
            np.testing.assert_array_equal(template, etch_board(board, px))
        else:
            assert not row.template_path.startswith("templates/augmented/")
            np.testing.assert_array_equal(template, board)
    samples = dataset.samples.set_index("sample_id")
    assert len(dataset.labels) > 0
    for label in dataset.labels.itertuples():
        sample = samples.loc[label.sample_id]
        x1, y1, x2, y2 = (int(v) for v in (label.x1, label.y1, label.x2, label.y2))
        before = _copper(out / sample["template_path"])[y1:y2, x1:x2]
        after = _copper(out / sample["path"])[y1:y2, x1:x2]
        ok, why = check_topology(label.label, before, after)
        assert ok, (label.sample_id, label.label, why)
    # All etched: every board is still counted as used, and none is copied as a template.
    every = synthesize(boards_dir, tmp_path / "every", count=3, seed=SEED,
                       config=SynthConfig(etch_px=(1, 1)), progress=False)
    assert every["boards_used"] == 3 and every["images"] == 3
    assert set(_tested(load(tmp_path / "every"))["template_path"]) == {
        f"templates/augmented/syn_{i:06d}.png" for i in range(3)}
    # Without etch, none is recorded.
    plain = synthesize(boards_dir, tmp_path / "plain", count=2, seed=SEED, progress=False)
    assert plain["images"] == 2
    assert all("etch_px" not in json.loads(s)
               for s in _tested(load(tmp_path / "plain"))["synth"])


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_image_records_the_sha256_of_its_bytes(first_run, boards_dir, tmp_path) -> None:
    """Tested images, copied boards and etched templates alike: an `audit` can re-hash."""
    out, _ = first_run
    samples = load(out).samples
    assert set(samples["role"]) == {"tested", "template"}
    for row in samples.itertuples():
        assert row.sha256 == _sha256(out / row.path), row.path
    copied = samples[samples["role"] == "template"]
    for row in copied.itertuples():  # a byte-for-byte copy hashes as its board
        assert row.sha256 == _sha256(Path(row.board))
    etched = tmp_path / "etched"
    synthesize(boards_dir, etched, count=3, seed=SEED, config=SynthConfig(etch_px=(1, 1)),
               progress=False)
    samples = load(etched).samples
    assert samples["path"].str.startswith("templates/augmented/").sum() == 3
    for row in samples.itertuples():
        assert row.sha256 == _sha256(etched / row.path), row.path


def test_a_failed_run_leaves_the_previous_output_and_no_stage(first_run, boards_dir,
                                                              tmp_path, monkeypatch) -> None:
    """The output is built in a stage: an error half-way changes nothing in place."""
    import pcbforge.synth.pipeline as pipeline

    out = tmp_path / "dataset"
    shutil.copytree(first_run[0], out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def fail_on_save(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pipeline, "save", fail_on_save)
    with pytest.raises(OSError, match="No space left"):
        synthesize(boards_dir, out, count=COUNT, seed=SEED + 1, progress=False)
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset"]


def test_a_smaller_rerun_leaves_only_its_own_images(first_run, boards_dir, tmp_path) -> None:
    out = tmp_path / "dataset"
    shutil.copytree(first_run[0], out)
    synthesize(boards_dir, out, count=2, seed=SEED, progress=False)
    assert sorted(_image_bytes(out)) == ["syn_000000.png", "syn_000001.png"]
    assert len(_tested(load(out, check_files=True))) == 2


def test_write_boards_replaces_its_own_folder_and_refuses_anything_else(tmp_path) -> None:
    out = tmp_path / "boards"
    write_boards(out, count=3, seed=0, size=64, progress=False)
    assert write_boards(out, count=1, seed=0, size=64, progress=False) == ["board_000000.png"]
    assert sorted(p.name for p in out.iterdir()) == ["board_000000.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["boards"]  # no stage, no lock
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(SynthError, match="not procedural boards.*'notes.txt'"):
        write_boards(out, count=1, seed=0, size=64, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["board_000000.png", "notes.txt"]
    (tmp_path / "file").write_text("")
    with pytest.raises(SynthError, match="not a folder"):
        write_boards(tmp_path / "file", count=1, size=64, progress=False)


# --- background nuisance record and defect-free images --------------------------------------

@pytest.fixture(scope="module")
def mixed_run(boards_dir, tmp_path_factory) -> Path:
    """A run where about half the images are defect-free."""
    out = tmp_path_factory.mktemp("mixed") / "dataset"
    synthesize(boards_dir, out, count=10, seed=5, progress=False,
               config=SynthConfig(defect_free_share=0.5))
    return out


def test_every_tested_image_records_its_nuisance_regions(first_run) -> None:
    out, report = first_run
    dataset = load(out)
    samples = dataset.samples
    templates = samples[samples["role"] == "template"]
    assert (templates["nuisance_regions"] == "").all()
    total = 0
    for row in _tested(dataset).itertuples():
        regions = json.loads(row.nuisance_regions)
        assert isinstance(regions, list)
        for region in regions:
            assert set(region) == {"kind", "box", "area"}
            x1, y1, x2, y2 = region["box"]
            assert 0 <= x1 < x2 <= row.width and 0 <= y1 < y2 <= row.height
            assert region["area"] > 0
        # The sampled parameters go with the acquisition nuisance's.
        background = json.loads(row.synth)["background"]
        assert len(background["regions"]) == len(regions)
        total += len(regions)
    assert report["nuisance_regions"] == total


def test_thick_differences_outside_boxes_are_recorded_regions(first_run) -> None:
    out, _ = first_run
    dataset = load(out)
    kernel = np.ones((3, 3), np.uint8)
    for row in _tested(dataset).itertuples():
        diff = _copper(out / row.path) ^ _copper(out / row.template_path)
        thick = cv2.morphologyEx(diff, cv2.MORPH_OPEN, kernel)
        boxes = dataset.labels.loc[dataset.labels["sample_id"] == row.sample_id,
                                   ["x1", "y1", "x2", "y2"]].astype(int).values.tolist()
        boxes += [r["box"] for r in json.loads(row.nuisance_regions)]
        for x1, y1, x2, y2 in boxes:
            thick[y1:y2, x1:x2] = 0
        assert not thick.any(), row.path


def test_defect_free_images_are_tested_samples_without_labels(mixed_run) -> None:
    dataset = load(mixed_run, check_files=True)
    tested = _tested(dataset)
    labelled = set(dataset.labels["sample_id"])
    free = tested[~tested["sample_id"].isin(labelled)]
    report = json.loads((mixed_run / REPORT_JSON).read_text())
    assert 0 < len(free) < len(tested) and report["defect_free_images"] == len(free)
    assert free["synthetic"].all() and (free["template_path"] != "").all()
    for row in free.itertuples():
        assert json.loads(row.synth)["defect_free"] is True
        template = dataset.samples.set_index("path").loc[row.template_path]
        assert template["group"] == row.group


def test_defect_free_draw_is_the_same_whatever_the_workers(mixed_run, boards_dir,
                                                           tmp_path) -> None:
    again = tmp_path / "again"
    synthesize(boards_dir, again, count=10, seed=5, progress=False, workers=2,
               config=SynthConfig(defect_free_share=0.5))
    assert _image_bytes(again) == _image_bytes(mixed_run)
    assert load(again).samples["nuisance_regions"].tolist() == load(
        mixed_run).samples["nuisance_regions"].tolist()


@pytest.mark.parametrize("fmt", ["coco", "voc"])
def test_nuisance_record_survives_split_and_export(mixed_run, tmp_path, fmt) -> None:
    from pcbforge.datasets.coco import load_coco
    from pcbforge.datasets.voc import load_voc
    from pcbforge.pipeline.export import export_dataset
    from pcbforge.split import SplitParams, split_dataset

    work = tmp_path / "dataset"
    shutil.copytree(mixed_run, work)
    split_dataset(work, SplitParams(ratios=(0.5, 0.25, 0.25)))
    dataset = load(work)
    assert (dataset.samples["split"] != "").all()
    expected = dict(zip(dataset.samples["path"], dataset.samples["nuisance_regions"],
                        strict=True))
    assert any(json.loads(v) for v in expected.values() if v)
    export_dataset(work, fmt, tmp_path / "export")
    got = {}
    for part in sorted(p for p in (tmp_path / "export").iterdir() if p.is_dir()):
        if fmt == "coco":
            samples, _, _ = load_coco(part / "annotations.json", part / "images")
        else:
            samples, _, _ = load_voc(part)
        got.update(zip(samples["path"], samples["nuisance_regions"], strict=True))
    assert got == expected


@pytest.mark.parametrize("fmt", ["coco", "voc"])
def test_nuisance_record_survives_an_export_and_import(mixed_run, tmp_path, fmt) -> None:
    """pcbforge's own COCO/VOC export imported again keeps every image's regions."""
    from pcbforge.pipeline.export import export_dataset
    from pcbforge.pipeline.ingest import import_labelled

    export_dataset(mixed_run, fmt, tmp_path / "export")
    part = tmp_path / "export" / "all"  # no split yet: one part
    source = part / "annotations.json" if fmt == "coco" else part
    images = part / "images" if fmt == "coco" else None
    imported = import_labelled(fmt, source, tmp_path / "imported", images=images).dataset
    original = load(mixed_run).samples
    def key(path: str) -> str:  # VOC flattens images/syn_000001.png to images__syn_...
        return Path(path).name.split("__")[-1]

    expected = {key(p): v for p, v in zip(original["path"], original["nuisance_regions"],
                                          strict=True) if v}
    got = {key(p): v for p, v in zip(imported.samples["path"],
                                     imported.samples["nuisance_regions"], strict=True)}
    assert expected and any(json.loads(v) for v in expected.values())
    assert {k: got.get(k) for k in expected} == expected


# --- colour boards ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def colour_run(tmp_path_factory) -> tuple[Path, Path, dict]:
    root = tmp_path_factory.mktemp("colour")
    write_boards(root / "boards", count=2, seed=0, size=BOARD_SIZE, progress=False,
                 style="colour", mask="any")
    report = synthesize(root / "boards", root / "dataset", count=4, seed=SEED,
                        config=SynthConfig(defect_free_share=0.0), progress=False)
    return root / "boards", root / "dataset", report


def test_colour_boards_keep_the_binary_layout_and_carry_it(colour_run, boards_dir) -> None:
    from pcbforge.synth.pipeline import read_board_and_layout

    boards, _, _ = colour_run
    for name in ("board_000000.png", "board_000001.png"):
        image, layout = read_board_and_layout(str(boards / name))
        assert image.shape == (BOARD_SIZE, BOARD_SIZE, 3) and layout is not None
        binary = cv2.imread(str(boards_dir / name), cv2.IMREAD_GRAYSCALE)
        np.testing.assert_array_equal(layout.copper, (binary == 0).view(np.uint8))
        assert layout.params["style"] == "colour"
        assert layout.params["mask"] in ("green", "blue", "red", "black", "white")


def test_write_boards_refuses_unknown_styles_and_colours(tmp_path) -> None:
    for kwargs, message in (({"style": "sepia"}, "board style 'sepia'"),
                            ({"style": "colour", "mask": "purple"}, "mask colour 'purple'"),
                            ({"style": "colour", "finish": "silver"}, "finish 'silver'")):
        with pytest.raises(SynthError, match=message):
            write_boards(tmp_path / "b", count=1, progress=False, **kwargs)
    assert not (tmp_path / "b").exists()


def test_synth_on_colour_boards_uses_their_layout(colour_run) -> None:
    from pcbforge.synth.pipeline import read_board_and_layout

    boards, out, report = colour_run
    assert report["failed_images"] == [] and report["layout_images"] == 4
    assert report["binary_boards"] == 0 and report["defects_total"] > 0
    dataset = load(out, check_files=True)
    samples = dataset.samples
    for row in _tested(dataset).itertuples():
        synth = json.loads(row.synth)
        assert synth["board"]["style"] == "colour"
        assert set(synth["board"]["palette"]) >= {"mask", "covered", "finish", "silk"}
        # The template is the board byte for byte: it still carries its layout.
        template, layout = read_board_and_layout(str(out / row.template_path))
        assert layout is not None
        tested = cv2.imread(str(out / row.path), cv2.IMREAD_COLOR)
        before, after = layout.copper, layout.copper_of(tested)
        for label in dataset.labels[dataset.labels["sample_id"] == row.sample_id].itertuples():
            x1, y1, x2, y2 = int(label.x1), int(label.y1), int(label.x2), int(label.y2)
            ok, why = check_topology(label.label, before[y1:y2, x1:x2], after[y1:y2, x1:x2])
            assert ok, (row.path, label.label, why)
            mask = decode_mask(label.mask)
            assert mask[y1:y2, x1:x2].sum() == mask.sum() > 0
    assert (samples["role"] == "template").sum() == 2


def test_colour_synth_is_the_same_bytes_again(colour_run, tmp_path) -> None:
    boards, out, _ = colour_run
    again = synthesize(boards, tmp_path / "again", count=4, seed=SEED,
                       config=SynthConfig(defect_free_share=0.0), workers=2, progress=False)
    assert again["defects_total"] > 0
    assert _image_bytes(tmp_path / "again") == _image_bytes(out)


def test_etched_colour_boards_get_their_own_templates(colour_run, tmp_path) -> None:
    from pcbforge.synth.pipeline import read_board_and_layout

    boards, _, _ = colour_run
    report = synthesize(boards, tmp_path / "etched", count=2, seed=SEED,
                        config=SynthConfig(etch_px=(2, 2), defect_free_share=0.0),
                        progress=False)
    assert report["failed_images"] == [] and report["layout_images"] == 2
    dataset = load(tmp_path / "etched")
    for row in _tested(dataset).itertuples():
        assert row.template_path.startswith("templates/augmented/")
        template, layout = read_board_and_layout(str(tmp_path / "etched" / row.template_path))
        assert template.ndim == 3 and json.loads(row.synth)["etch_px"] == 2
        # It carries its etched layout: more copper than the board's, read back by it.
        board_layout = read_board_and_layout(row.board)[1]
        assert layout.copper.sum() > board_layout.copper.sum()
        assert (layout.copper_of(template) != layout.copper).mean() < 0.01


def test_augmented_colour_pairs_keep_their_labels(colour_run, tmp_path) -> None:
    """A geometric augmentation moves the pair off the board's frame: it is read by the
    palette alone, and every label kept still holds its topology."""
    from pcbforge.synth.pipeline import read_board_and_layout

    boards, _, _ = colour_run
    out = tmp_path / "augmented"
    report = synthesize(boards, out, count=4, seed=SEED, progress=False,
                        config=SynthConfig(defect_free_share=0.0,
                                           augment={"preset": "geometric"}))
    assert report["failed_images"] == [] and report["defects_total"] > 0
    dataset = load(out)
    moved = 0
    for row in _tested(dataset).itertuples():
        layout = read_board_and_layout(row.board)[1]  # the board it was drawn on
        template = cv2.imread(str(out / row.template_path), cv2.IMREAD_COLOR)
        tested = cv2.imread(str(out / row.path), cv2.IMREAD_COLOR)
        # A pair the augmentation left alone (it was drawn again and then left out) is
        # still on the board's frame.
        in_place = not row.template_path.startswith("templates/augmented/")
        moved += not in_place
        before = layout.copper_of(template, in_place=in_place)
        after = layout.copper_of(tested, in_place=in_place)
        for label in dataset.labels[dataset.labels["sample_id"] == row.sample_id].itertuples():
            x1, y1, x2, y2 = int(label.x1), int(label.y1), int(label.x2), int(label.y2)
            assert check_topology(label.label, before[y1:y2, x1:x2], after[y1:y2, x1:x2])[0]
    assert moved
