"""``pcbforge build`` end to end on small counts: the dataset, its split and audit, the
report's numbers, re-runs that skip, and exports that FiftyOne loads."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from typer.testing import CliRunner

from pcbforge.cli.main import app
from pcbforge.datasets import load
from pcbforge.pipeline import BuildError, build
from pcbforge.pipeline.recipe import load_recipe
from pcbforge.pipeline.stages import keep_pairs
from tests.pipeline.conftest import SMALL_RECIPE, output_hashes

CLASSES = ["open", "short", "mousebite", "spur", "copper", "pin-hole"]


def test_small_default_build_gives_every_class_a_clean_split_and_exports(small_build):
    result, out = small_build
    assert result.ran == ["source-boards", "synth", "merge", "split", "audit", "qa",
                          "export", "report"]
    dataset = load(out, check_files=True)
    samples, labels = dataset.samples, dataset.labels
    assert dataset.info.classes == CLASSES
    assert set(labels["label"]) == set(CLASSES)
    assert len(samples) == 4 + 12  # the boards (templates) and the synthetic images
    assert set(samples["status"]) == {"ok"}
    assert samples["synthetic"].all()
    assert set(samples["split"]) == {"train", "val", "test"}
    # Every image drawn on a board is on that board's side.
    tested = samples[samples["template_path"] != ""]
    split_of = samples.set_index("path")["split"]
    assert (tested["split"].to_numpy() == split_of[tested["template_path"]].to_numpy()).all()
    audit = json.loads((out / "audit.json").read_text())
    assert audit["clean"] and audit["images_checked"] == 16
    for fmt in ("coco", "yolo"):
        exported = json.loads((out / "export" / fmt / "export_report.json").read_text())
        assert sum(p["images"] for p in exported["splits"].values()) == 16
        assert sum(p["boxes"] for p in exported["splits"].values()) == len(labels)
    assert (out / "report.html").is_file() and (out / "recipe.yaml").is_file()
    assert load_recipe(out / "recipe.yaml").name == "small"


def test_report_json_counts_follow_the_dataset(small_build):
    _, out = small_build
    report = json.loads((out / "report.json").read_text())
    dataset = load(out)
    samples, labels = dataset.samples, dataset.labels
    assert report["files"] == len(samples)
    assert report["status"] == {"corrupt": 0, "low_quality": 0, "duplicate": 0,
                                "skipped": 0, "ok": 16}
    assert report["classes"] == CLASSES
    split_of = samples.set_index("sample_id")["split"]
    for name in ("train", "val", "test"):
        part = report["splits"][name]
        assert part["images"] == {"real": 0, "synthetic": int((samples["split"] == name).sum())}
        boxes = labels[labels["sample_id"].map(split_of) == name]
        for cls in CLASSES:
            assert part["boxes"][cls] == {"real": 0,
                                          "synthetic": int((boxes["label"] == cls).sum())}
    for cls in CLASSES:
        entry = report["per_class"][cls]
        assert entry["boxes"]["synthetic"] == int((labels["label"] == cls).sum())
        histogram = entry["size_px"]["histogram"]
        assert sum(histogram["synthetic"]) == entry["boxes"]["synthetic"]
        assert len(histogram["edges"]) == 21 and sum(histogram["real"]) == 0
        assert 1 <= len(report["examples"][cls]) <= 2
        for example in report["examples"][cls]:
            assert (out / example["thumb"]).is_file()
    policy = report["synthetic_policy"]
    assert policy["applied"] == "all" and not policy["real_defects"]
    assert "no real defect labels" in policy["note"] and "board" in policy["note"]
    assert report["audit"]["clean"] is True
    assert set(report["exports"]) == {"coco", "yolo"}
    for plot in report["plots"].values():
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report["rejected"] == []
    html = (out / "report.html").read_text()
    assert "Clean: no leak between splits" in html
    for plot in report["plots"].values():
        assert f'src="{plot}"' in html


def test_the_qa_stage_runs_by_default_and_its_files_are_published_and_reported(small_build):
    result, out = small_build
    assert "qa" in result.ran
    qa = json.loads((out / "qa.json").read_text())
    assert qa["command"] == "qa"
    assert qa["pairs"] == 12  # every synthetic image has its board as template
    for name in ("qa.json", "qa.parquet", "qa.csv", "qa_registration.parquet"):
        assert (out / name).read_bytes() == (out / "stages" / "qa" / name).read_bytes()
    for crop in qa["crops"].values():
        assert (out / crop).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((out / "report.json").read_text())["qa"]
    assert report["findings"] == qa["findings"] and report["by_kind"] == qa["by_kind"]
    assert report["registration"]["pairs"] == qa["registration"]["pairs"] == 12
    shown = [e["crop"] for entries in report["gallery"].values() for e in entries]
    assert sorted(shown) == sorted(qa["crops"].values())
    html = (out / "report.html").read_text()
    assert '<h2 id="qa">Label QA</h2>' in html
    for crop in shown:
        assert f'src="{crop}"' in html


def test_qa_disabled_leaves_the_stage_and_its_files_out(small_build, tmp_path):
    from pcbforge.pipeline.stages import plan

    _, out = small_build
    copy = tmp_path / out.name
    shutil.copytree(out, copy, symlinks=True)
    recipe = load_recipe(text=SMALL_RECIPE + "qa: {enabled: false}\n")
    assert "qa" not in [stage.name for stage in plan(recipe)]
    result = build(copy, recipe, workers=1)
    assert result.ran == ["export", "report"]  # they read the audit stage instead
    for name in ("qa.json", "qa.parquet", "qa.csv", "qa_registration.parquet", "qa",
                 "stages/qa", ".build/state/qa.json"):
        assert not (copy / name).exists(), name
    assert (copy / "samples.parquet").read_bytes() == (out / "samples.parquet").read_bytes()
    assert json.loads((copy / "report.json").read_text())["qa"] is None
    assert 'id="qa"' not in (copy / "report.html").read_text()


def _hand_made_qa(folder, samples: pd.DataFrame) -> dict:
    """A ``qa.json``, ``qa.parquet`` and one crop PNG written into ``folder`` as
    ``pcbforge qa`` writes them: three findings on two images, two of them with crops
    listed (one crop file is missing), one finding whose reason needs escaping."""
    import cv2
    import numpy as np

    from pcbforge.datasets.qa_tables import finding_id, findings_table

    first, second = sorted(samples["sample_id"])[:2]
    rows = [
        {"sample_id": first, "kind": "missing_label", "detail": "defect_like", "score": 0.9,
         "reason": "a change of 40 px that no box covers", "label_row": -1, "label": "",
         "box": (10.0, 12.0, 30.0, 40.0), "action": "add", "proposed_label": "short"},
        {"sample_id": second, "kind": "missing_label", "detail": "misregistration_like",
         "score": 0.4, "reason": "edges moved by 2 px", "label_row": -1, "label": "",
         "box": (50.0, 50.0, 60.0, 70.0), "action": "none", "proposed_label": ""},
        {"sample_id": second, "kind": "box_sanity", "detail": "degenerate", "score": 1.0,
         "reason": "box side < 2 px", "label_row": 3, "label": "spur",
         "box": (5.0, 5.0, 6.0, 40.0), "action": "delete", "proposed_label": ""},
    ]
    for row in rows:
        box = row.pop("box")
        row.update(finding_id=finding_id(row["sample_id"], row["kind"], row["label_row"], box),
                   x1=box[0], y1=box[1], x2=box[2], y2=box[3])
    table = findings_table(rows)
    table.to_parquet(folder / "qa.parquet", index=False)
    crops = {rows[0]["finding_id"]: f"qa/crops/{rows[0]['finding_id']}.png",
             rows[2]["finding_id"]: f"qa/crops/{rows[2]['finding_id']}.png"}
    (folder / "qa" / "crops").mkdir(parents=True)
    tiny = np.zeros((8, 24, 3), np.uint8)
    tiny[:, 8:16] = 255
    (folder / crops[rows[0]["finding_id"]]).write_bytes(cv2.imencode(".png", tiny)[1].tobytes())
    summary = {"command": "qa", "dataset": str(folder), "samples": 12, "pairs": 12,
               "without_template": 0, "findings": 3,
               "by_kind": {"missing_label": 2, "box_sanity": 1},
               "by_detail": {"missing_label/defect_like": 1,
                             "missing_label/misregistration_like": 1,
                             "box_sanity/degenerate": 1},
               "registration": {"pairs": 12, "misregistered": 1, "shift_px_p95": 0.51234,
                                "rotation_deg_p95": 0.02, "residual_px_p95": None},
               "crops": crops, "params": {}, "pcbforge_version": "0"}
    (folder / "qa.json").write_text(json.dumps(summary))
    return {"rows": rows, "crops": crops}


def test_report_shows_a_hand_made_qa_and_leaves_it_out_without_qa_json(small_build, tmp_path):
    _, out = small_build
    copy = tmp_path / out.name
    shutil.copytree(out, copy, symlinks=True)
    for name in ("qa.json", "qa.parquet", "qa.csv", "qa_registration.parquet"):
        (copy / name).unlink(missing_ok=True)
    shutil.rmtree(copy / "qa", ignore_errors=True)
    made = _hand_made_qa(copy, load(copy).samples)
    first, second, sanity = made["rows"]

    result = CliRunner().invoke(app, ["report", str(copy), "--quiet"])
    assert result.exit_code == 0, result.output
    qa = json.loads((copy / "report.json").read_text())["qa"]
    assert qa["findings"] == 3 and qa["pairs"] == 12 and qa["without_template"] == 0
    # The registry's order of kinds; details by name.
    assert qa["table"] == [
        {"kind": "missing_label", "findings": 2,
         "details": [{"detail": "defect_like", "findings": 1},
                     {"detail": "misregistration_like", "findings": 1}]},
        {"kind": "box_sanity", "findings": 1,
         "details": [{"detail": "degenerate", "findings": 1}]}]
    assert qa["registration"] == {"pairs": 12, "misregistered": 1, "shift_px_p95": 0.5123,
                                  "rotation_deg_p95": 0.02, "residual_px_p95": None}
    # Only the crops qa.json lists; a missing file is listed without an image.
    assert list(qa["gallery"]) == ["missing_label", "box_sanity"]
    [shown] = qa["gallery"]["missing_label"]
    assert shown["crop"] == made["crops"][first["finding_id"]]
    assert shown["reason"] == first["reason"] and shown["detail"] == "defect_like"
    assert shown["path"] == load(copy).samples.set_index("sample_id").loc[
        first["sample_id"], "path"]
    [missing] = qa["gallery"]["box_sanity"]
    assert missing["crop"] is None and missing["reason"] == "box side < 2 px"
    html = (copy / "report.html").read_text()
    assert f'<img src="{shown["crop"]}"' in html
    assert "a change of 40 px that no box covers" in html
    assert "box side &lt; 2 px" in html and "no crop" in html
    assert "edges moved by 2 px" not in html  # no crop listed for it
    assert "misregistration_like 1" in html
    first_bytes = {name: (copy / name).read_bytes() for name in ("report.json", "report.html")}

    again = CliRunner().invoke(app, ["report", str(copy), "--quiet"])
    assert again.exit_code == 0, again.output
    assert {name: (copy / name).read_bytes() for name in first_bytes} == first_bytes
    assert (copy / shown["crop"]).is_file()  # the report keeps the crops where they are

    (copy / "qa.json").unlink()
    gone = CliRunner().invoke(app, ["report", str(copy), "--quiet"])
    assert gone.exit_code == 0, gone.output
    assert json.loads((copy / "report.json").read_text())["qa"] is None
    assert 'id="qa"' not in (copy / "report.html").read_text()


def test_rerun_skips_every_stage_and_changes_no_byte(small_build, small_recipe):
    result, out = small_build
    before = output_hashes(out)
    again = build(out, small_recipe, workers=1)
    assert again.ran == []
    assert [s.summary for s in again.stages] == [s.summary for s in result.stages]
    assert output_hashes(out) == before


def test_report_command_regenerates_the_same_report(small_build, tmp_path):
    _, out = small_build
    copy = tmp_path / out.name  # the report names its folder
    shutil.copytree(out, copy, symlinks=True)
    (copy / "report.html").unlink()
    shutil.rmtree(copy / "report")
    result = CliRunner().invoke(app, ["report", str(copy), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "audit clean" in result.output
    for name in ("report.json", "report.html"):
        assert (copy / name).read_bytes() == (out / name).read_bytes()
    assert output_hashes(copy / "report") == output_hashes(out / "report")


def test_a_moved_build_is_still_complete_and_only_changed_stages_run(small_build, tmp_path):
    """The build folder holds no absolute path of its own: moved elsewhere, every stage
    is still done; a new export format runs the export and report stages only."""
    _, out = small_build
    moved = tmp_path / "moved"
    shutil.copytree(out, moved, symlinks=True)
    load(moved, check_files=True)
    recipe = load_recipe(text=SMALL_RECIPE + "export: {formats: [coco, yolo, voc]}\n")
    result = build(moved, recipe, workers=1)
    assert result.ran == ["export", "report"]
    assert (moved / "export" / "voc").is_dir()
    assert set(json.loads((moved / "report.json").read_text())["exports"]) == {
        "coco", "yolo", "voc"}
    assert (moved / "samples.parquet").read_bytes() == (out / "samples.parquet").read_bytes()


def test_a_failed_stage_is_not_marked_done_and_the_rerun_starts_there(
        small_recipe, tmp_path, monkeypatch):
    import pcbforge.pipeline.stages as stages

    out = tmp_path / "ds"
    real_split = stages.run_split

    def broken(ctx, folder):
        (folder / "half-written").write_text("x")
        raise RuntimeError("injected failure")

    monkeypatch.setattr(stages, "run_split", broken)
    with pytest.raises(BuildError, match="stage split failed: injected failure"):
        build(out, small_recipe, workers=1)
    state = out / ".build" / "state"
    assert sorted(p.stem for p in state.glob("*.json")) == ["merge", "source-boards", "synth"]
    assert not (out / "stages" / "split").exists()
    assert not list((out / "stages").glob(".split.partial-*"))
    monkeypatch.setattr(stages, "run_split", real_split)
    result = build(out, small_recipe, workers=1)
    assert result.ran == ["split", "audit", "qa", "export", "report"]


def test_build_refuses_a_folder_that_is_not_a_build(tmp_path, small_recipe):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(BuildError, match="is not a pcbforge build"):
        build(tmp_path, small_recipe)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_fiftyone_loads_the_coco_and_yolo_exports(small_build, fiftyone_db):
    fo = fiftyone_db
    _, out = small_build
    dataset = load(out)
    created = []
    try:
        for split in ("train", "val", "test"):
            rows = dataset.samples[dataset.samples["split"] == split]
            boxes = int(dataset.labels["sample_id"].isin(rows["sample_id"]).sum())
            coco = fo.Dataset.from_dir(
                dataset_type=fo.types.COCODetectionDataset,
                data_path=str(out / "export" / "coco" / split / "images"),
                labels_path=str(out / "export" / "coco" / split / "annotations.json"))
            created.append(coco)
            yolo = fo.Dataset.from_dir(dataset_dir=str(out / "export" / "yolo"),
                                       dataset_type=fo.types.YOLOv5Dataset, split=split)
            created.append(yolo)
            for loaded in (coco, yolo):
                assert len(loaded) == len(rows)
                field = next(name for name, kind in loaded.get_field_schema().items()
                             if "Detections" in str(kind))
                assert loaded.count(f"{field}.detections") == boxes
                assert set(loaded.distinct(f"{field}.detections.label")) <= set(CLASSES)
    finally:
        for item in created:
            item.delete()


def test_cli_build_prints_stages_summary_and_where_to_look(small_build, tmp_path):
    _, out = small_build
    recipe = tmp_path / "small.yaml"
    recipe.write_text(SMALL_RECIPE)
    moved = tmp_path / "ds"
    shutil.copytree(out, moved, symlinks=True)
    result = CliRunner().invoke(app, ["build", str(recipe), "--out", str(moved), "--quiet"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "[2/8] synthetic defects: skipped (inputs unchanged)" in text
    assert "audit: clean (16 images checked)" in text
    assert f"report: {moved / 'report.html'}" in text
    assert f"pcbforge view {moved}" in text
    frame = pd.read_parquet(moved / "samples.parquet")
    assert len(frame) == 16


def test_labelled_sources_without_synthesis_share_groups_across_sources(small_build, tmp_path):
    """The small build's COCO and YOLO exports as two sources: every image is in both,
    so the merged curation makes one copy of each a duplicate in the other's group (a
    board's group: it and the images drawn on it), and the split keeps a group on one
    side."""
    _, small = small_build
    recipe_file = tmp_path / "labelled.yaml"
    recipe_file.write_text(f"""
sources:
  - {{name: c, kind: coco, path: {small / 'export' / 'coco'}}}
  - {{name: y, kind: yolo, path: {small / 'export' / 'yolo'}}}
synth: {{enabled: false}}
export: {{formats: [voc]}}
""")
    result = build(tmp_path / "out", load_recipe(recipe_file), workers=1)
    assert result.ran == ["source-c", "source-y", "merge", "split", "audit", "qa",
                          "export", "report"]
    dataset = load(tmp_path / "out")
    images = dataset.samples[dataset.samples["status"].isin(["ok", "duplicate"])]
    assert (images["status"] == "duplicate").sum() == 16 and len(images) == 32
    assert images.groupby("group")["split"].nunique().max() == 1
    per_source = images.groupby(["group", "source"]).size().unstack()
    assert (per_source["c"] == per_source["y"]).all()  # a board's images, once from each
    assert images["synthetic"].all()  # the exports say so, and the import keeps it
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["audit"]["clean"] and report["status"]["duplicate"] == 16
    assert "synth" not in report["sources"]


def test_a_build_on_a_dask_cluster_gives_the_same_dataset(small_build, small_recipe,
                                                            dask_engine, tmp_path):
    """``--engine dask --scheduler ADDRESS``: every stage's per-file work on the cluster,
    the same tables, images, labels and exports as the local build."""
    from pcbforge.pipeline import build

    _, local = small_build
    address = dask_engine.describe()["scheduler"]
    out = tmp_path / "dataset"
    build(out, small_recipe, workers=2, engine="dask", scheduler=address)
    # The thumbnail cache is one file locally, one per partition on Dask (a cache only).
    mine, theirs = ({k: v for k, v in output_hashes(root).items() if "/cache/" not in k}
                    for root in (out, local))
    assert set(mine) == set(theirs), sorted(set(mine) ^ set(theirs))[:10]
    # Only files that name the build folder itself may differ (it moved).
    differ = {key for key in mine if mine[key] != theirs[key]}
    named = {key for key in differ
             if str(out).encode() in (out / key).read_bytes()}
    assert differ == named, sorted(differ - named)
    assert any(key.endswith("samples.parquet") for key in mine)


class _RecordingEngine:
    """An inline engine that records what it runs and how often it is entered/left."""

    kind = "local"
    workers = 1

    def __init__(self, preload=()):
        self.preload, self.mapped, self.entered, self.left = preload, [], 0, 0

    def __enter__(self):
        self.entered += 1
        return self

    def __exit__(self, *exc):
        self.left += 1

    def describe(self):
        return {"engine": "local", "workers": 1, "scheduler": None}

    def map(self, function, items, chunksize=0, on_crash=None, **_):
        name = getattr(function, "func", function).__name__
        self.mapped.append(name)
        return map(function, items)


@pytest.fixture
def recorded_build(small_recipe, tmp_path, monkeypatch):
    """A build of the small recipe whose engines are recorded: ``(engines, folder)``."""
    import pcbforge.pipeline.runner as runner

    engines = []

    def open_recording(kind, workers, scheduler, *, preload=()):
        engines.append(_RecordingEngine(preload))
        return engines[-1]

    monkeypatch.setattr(runner, "open_engine", open_recording)
    build(tmp_path / "dataset", small_recipe, workers=1)
    return engines, tmp_path / "dataset"


def test_a_build_opens_one_engine_and_every_stage_uses_it(recorded_build, small_build):
    """Each stage opened an engine of its own, and the audit none of the run's: under
    ``--engine dask`` its leak search ran locally."""
    engines, out = recorded_build
    assert len(engines) == 1
    (engine,) = engines
    assert engine.entered == 1 and engine.left == 1  # closed once, at the end of the run
    # Curation inspects on it in the boards' source stage, the merge and the audit.
    assert engine.mapped.count("inspect_into_store") == 3, engine.mapped
    assert "synth_one" in engine.mapped
    # One preload for the run: every stage's worker modules.
    from pcbforge.curate.runner import WORKER_MODULES as CURATE_MODULES
    from pcbforge.synth.pipeline import WORKER_MODULES as SYNTH_MODULES

    assert set(CURATE_MODULES) | set(SYNTH_MODULES) <= set(engine.preload)
    # Where the work ran changes no byte.
    _, local = small_build
    mine, theirs = output_hashes(out), output_hashes(local)
    assert set(mine) == set(theirs)
    differ = {k for k in mine if mine[k] != theirs[k]}
    assert differ == {k for k in differ if str(out) in mine[k] or (  # it names its folder
        not (out / k).is_symlink() and str(out).encode() in (out / k).read_bytes())}, differ


def test_the_procedural_boards_are_drawn_on_the_run_engine(recorded_build):
    engines, _ = recorded_build
    assert len(engines) == 1 and "_board_one" in engines[0].mapped


def test_a_skipped_run_starts_no_engine(small_recipe, tmp_path, monkeypatch):
    import pcbforge.pipeline.runner as runner

    out = tmp_path / "dataset"
    build(out, small_recipe, workers=1)
    opened = []
    monkeypatch.setattr(runner, "open_engine", lambda *a, **k: opened.append(a))
    again = build(out, small_recipe, workers=1)
    assert again.ran == [] and opened == []


def test_a_failing_stage_closes_the_run_engine(small_recipe, tmp_path, monkeypatch):
    import pcbforge.pipeline.runner as runner
    import pcbforge.pipeline.stages as stages

    engines = []

    def open_recording(kind, workers, scheduler, *, preload=()):
        engines.append(_RecordingEngine(preload))
        return engines[-1]

    def broken_split(ctx, folder):
        raise RuntimeError("split broke")

    monkeypatch.setattr(runner, "open_engine", open_recording)
    monkeypatch.setattr(stages, "run_split", broken_split)
    with pytest.raises(BuildError, match="split broke"):
        build(tmp_path / "dataset", small_recipe, workers=1)
    assert len(engines) == 1 and engines[0].left == 1


def test_defect_free_pairs_stay_ok_beside_their_templates(tmp_path):
    """Every synthetic image defect-free, without background regions: each is as near its
    template as a copy, and the build keeps it as the pair it is (ok, exported)."""
    recipe = load_recipe(text=SMALL_RECIPE.replace(
        "  defects_per_image: [2, 4]\n",
        "  defects_per_image: [2, 4]\n  defect_free_share: 1.0\n  background: false\n"))
    build(tmp_path / "dataset", recipe, workers=1)
    samples = load(tmp_path / "dataset").samples
    tested = samples[samples["role"] == "tested"]
    assert len(tested) == 12
    # The pixels say "near its template" (the curation verdict is kept in duplicate_of) ...
    assert (tested["duplicate_of"] == tested["template_path"]).any()
    # ... and the pair is not a duplicate, on either side.
    assert (tested["status"] == "ok").all()
    assert (samples[samples["role"] == "template"]["status"] == "ok").all()


def test_a_pair_stays_ok_whichever_side_curation_kept():
    """Curation may keep the tested image as the original and call its template the
    copy (a real template beside a defect-free synthetic image drawn on it): both halves
    of a pair stay ok; copies that are not a pair stay duplicates."""
    samples = pd.DataFrame({
        "path": ["real/a_temp.jpg", "synth/1.png", "real/b_temp.jpg", "synth/2.png",
                 "real/c.jpg", "real/c_copy.jpg", "synth/3.png"],
        "template_path": ["", "real/a_temp.jpg", "", "real/b_temp.jpg", "", "",
                          "real/b_temp.jpg"],
        # a's template points at its tested image, 2 points at its template, the copy
        # of c at c, and 3 at 2 (two tested images of one template: copies, not a pair)
        "duplicate_of": ["synth/1.png", "", "", "real/b_temp.jpg", "", "real/c.jpg",
                         "synth/2.png"],
        "status": ["duplicate", "ok", "ok", "duplicate", "ok", "duplicate", "duplicate"],
        "reason": ["near copy", "", "", "near copy", "", "exact copy", "near copy"],
    })
    keep_pairs(samples)
    assert samples["status"].tolist() == ["ok", "ok", "ok", "ok", "ok", "duplicate",
                                          "duplicate"]
    assert samples["reason"].tolist()[:5] == [""] * 5
    assert samples["duplicate_of"].tolist()[0] == "synth/1.png"  # the verdict is kept
