"""curate() on the generated messy corpus, checked against its ground truth."""

import hashlib
import json
import os

import pandas as pd
import pytest

from pcbforge.core.scan import printable_path
from pcbforge.curate.runner import CurateError, CurateParams, curate


def _by_path(result, manifest):
    samples = result.samples.set_index("path")
    manifest = manifest.assign(path=manifest["path"].map(printable_path)).set_index("path")
    return samples, manifest


def test_every_file_has_exactly_one_row(curated, messy_corpus):
    _, manifest = messy_corpus
    samples, truth = _by_path(curated, manifest)
    assert sorted(samples.index) == sorted(truth.index)
    assert samples.index.is_unique
    assert set(samples["status"]) <= {"ok", "corrupt", "duplicate", "low_quality", "skipped"}


def test_corrupt_files_are_corrupt_with_their_reason(curated, messy_corpus):
    samples, truth = _by_path(curated, messy_corpus[1])
    corrupt = truth[truth["expected_status"] == "corrupt"]
    assert len(corrupt) >= 9
    for path, expected in corrupt.iterrows():
        row = samples.loc[path]
        if expected["expected_reason"] == "unreadable" and os.geteuid() == 0:
            continue  # root reads mode-000 files
        assert (row["status"], row["reason"]) == ("corrupt", expected["expected_reason"]), path
        assert row["detail"]


def test_valid_but_unusual_files_are_not_corrupt(curated, messy_corpus):
    samples, truth = _by_path(curated, messy_corpus[1])
    odd = truth[truth.index.str.startswith("odd/")]
    assert len(odd) >= 10
    assert (samples.loc[odd.index, "status"] == "ok").all(), samples.loc[odd.index, "status"]
    assert samples.loc["odd/actually_png.jpg", "format_mismatch"]
    assert samples.loc["odd/exif_rotated.jpg", "exif_orientation"] == 6


def test_low_quality_frames(curated, messy_corpus):
    samples, truth = _by_path(curated, messy_corpus[1])
    lowq = truth[truth["expected_status"] == "low_quality"]
    for path, expected in lowq.iterrows():
        assert samples.loc[path, "status"] == "low_quality", path
        assert samples.loc[path, "reason"] == expected["expected_reason"], path


def test_duplicate_clusters_match_ground_truth(curated, messy_corpus):
    samples, truth = _by_path(curated, messy_corpus[1])
    clustered = truth[(truth["cluster"] != "") & (truth["expected_status"] != "low_quality")]
    for cluster, members in clustered.groupby("cluster"):
        rows = samples.loc[members.index]
        kept = rows[rows["status"] != "duplicate"]
        assert len(kept) == 1, (cluster, rows[["status", "duplicate_of"]])
        keeper = kept.index[0]
        copies = rows[rows["status"] == "duplicate"]
        assert (copies["duplicate_of"] == keeper).all(), cluster
    # No duplicate points outside its true cluster (precision).
    for path, row in samples[samples["status"] == "duplicate"].iterrows():
        assert truth.loc[path, "cluster"] == truth.loc[row["duplicate_of"], "cluster"], path


def test_transformed_copies_are_reported_as_such(curated, messy_corpus):
    samples, truth = _by_path(curated, messy_corpus[1])
    transformed = truth[truth["expected_reason"] == "transformed_duplicate"].index
    assert len(transformed) >= 5
    assert (samples.loc[transformed, "reason"] == "transformed_duplicate").all()
    assert (samples.loc[transformed, "duplicate_transform"] != "identity").all()


def test_defect_variant_is_not_a_duplicate_but_shares_the_group(curated, messy_corpus):
    samples, truth = _by_path(curated, messy_corpus[1])
    defects = truth[truth["kind"].str.startswith("defect_")]
    assert len(defects) == 6
    for path in defects.index:
        assert samples.loc[path, "status"] == "ok", path
        assert samples.loc[path, "duplicate_of"] == ""
        board = truth[(truth["scene"] == truth.loc[path, "scene"]) & (truth["kind"] == "original")]
        assert samples.loc[path, "group"] == samples.loc[board.index[0], "group"], path


def test_groups_follow_scenes(curated, messy_corpus):
    samples, truth = _by_path(curated, messy_corpus[1])
    usable = truth[truth["expected_status"].isin(["ok", "duplicate"])]
    for _, members in usable.groupby("scene"):
        assert samples.loc[members.index, "group"].nunique() == 1
    # Distinct scenes do not merge.
    scene_of_group = usable.assign(group=samples.loc[usable.index, "group"])
    assert (scene_of_group.groupby("group")["scene"].nunique() == 1).all()


def test_report_and_tables_agree(curated):
    out = curated.out
    report = json.loads((out / "report.json").read_text())
    table = pd.read_parquet(out / "samples.parquet")
    csv = pd.read_csv(out / "samples.csv", keep_default_na=False)
    assert len(table) == len(csv) == report["files"]
    for status, count in report["counts"].items():
        assert (table["status"] == status).sum() == count
    for column in ("path", "status", "reason", "duplicate_of", "group", "sha256", "pixel_hash",
                   "phash", "width", "height", "format", "channels", "bytes",
                   "brightness_score", "contrast_score", "sharpness_score"):
        assert column in table.columns
    assert (out / "cache" / "thumbs.npy").is_file()
    assert not list(out.parent.glob(".dataset.partial-*"))


def _tree_fingerprint(root):
    entries = {}
    for folder, _dirs, files in os.walk(os.fsencode(root)):
        for name in files:
            path = os.path.join(folder, name)
            stat = os.lstat(path)
            digest = ""
            if os.access(path, os.R_OK) and not os.path.islink(path):
                digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
            entries[path] = (stat.st_size, stat.st_mtime_ns, stat.st_mode, digest)
    return entries


def test_source_is_untouched_and_output_is_deterministic(messy_corpus, tmp_path):
    root, _ = messy_corpus
    before = _tree_fingerprint(root)
    first = curate(root, tmp_path / "a", CurateParams(workers=1))
    second = curate(root, tmp_path / "b", CurateParams(workers=2))
    assert _tree_fingerprint(root) == before
    csv_a, csv_b = (tmp_path / name / "samples.csv" for name in ("a", "b"))
    assert csv_a.read_bytes() == csv_b.read_bytes()
    # Running again over an existing dataset replaces it in place.
    again = curate(root, tmp_path / "a", CurateParams(workers=1))
    assert again.samples.equals(first.samples)
    assert second.report["counts"] == first.report["counts"]


def test_leftovers_of_killed_runs_are_removed(messy_corpus, tmp_path):
    """A live run holds the output's writer lock, so every stage found by the run that
    takes the lock is a killed run's leftover (a live writer is refused instead: see
    test_reliability.py)."""
    root, _ = messy_corpus
    stages = [tmp_path / ".out.partial-999999999", tmp_path / f".out.partial-{os.getppid()}"]
    for stage in stages:
        stage.mkdir()
        (stage / "half-written.parquet").write_bytes(b"x")
    curate(root, tmp_path / "out", CurateParams(workers=1))
    assert not any(stage.exists() for stage in stages)
    assert not (tmp_path / ".out.lock").exists()  # released with the run


def test_interrupted_run_leaves_no_dataset_and_rerun_works(messy_corpus, tmp_path, monkeypatch):
    import pcbforge.curate.runner as runner

    root, _ = messy_corpus

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "find_duplicates", crash)
    with pytest.raises(KeyboardInterrupt):
        curate(root, tmp_path / "out", CurateParams(workers=1))
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.partial-*"))
    monkeypatch.undo()
    assert curate(root, tmp_path / "out", CurateParams(workers=1)).report["files"] > 0


@pytest.mark.parametrize(
    "case",
    ["missing", "file", "empty", "out_inside_src", "src_inside_out", "foreign_out",
     "out_under_a_file"],
)
def test_bad_arguments_raise_clear_errors(case, tmp_path, messy_corpus):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.png").write_bytes(b"x")
    out = tmp_path / "out"
    expected = {
        "missing": "does not exist", "file": "is a file", "empty": "no files found",
        "out_inside_src": "inside the source", "src_inside_out": "inside --out",
        "foreign_out": "not a pcbforge dataset", "out_under_a_file": "is a file, not a folder",
    }[case]
    if case == "missing":
        src = tmp_path / "nope"
    elif case == "file":
        src = src / "a.png"
    elif case == "empty":
        src = tmp_path / "empty"
        src.mkdir()
    elif case == "out_inside_src":
        out = src / "dataset"
    elif case == "src_inside_out":
        out = tmp_path
    elif case == "foreign_out":
        out.mkdir()
        (out / "precious.txt").write_text("keep me")
    elif case == "out_under_a_file":
        (tmp_path / "notes.txt").write_text("x")
        out = tmp_path / "notes.txt" / "dataset"
    with pytest.raises(CurateError, match=expected):
        curate(src, out)
    if case == "foreign_out":
        assert (out / "precious.txt").read_text() == "keep me"


def test_lsh_and_exhaustive_candidate_search_agree(messy_corpus, curated, tmp_path, monkeypatch):
    import pcbforge.curate.dedupe as dedupe

    root, _ = messy_corpus
    assert curated.report["duplicate_search"]["candidate_search"] == "exhaustive"
    monkeypatch.setattr(dedupe, "EXHAUSTIVE_SEARCH_MAX", 0)
    lsh = curate(root, tmp_path / "lsh", CurateParams(workers=1))
    assert lsh.report["duplicate_search"]["candidate_search"] == "lsh"
    columns = ["path", "status", "reason", "duplicate_of", "group"]
    assert lsh.samples[columns].equals(curated.samples[columns])


def test_a_file_that_cannot_be_opened_is_unreadable(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "fine.png").write_bytes(cv2_png())
    os.symlink(tmp_path / "gone.jpg", src / "dangling.jpg")  # a link to nothing
    result = curate(src, tmp_path / "out", CurateParams(workers=1))
    rows = result.samples.set_index("path")
    assert (rows.loc["dangling.jpg", "status"], rows.loc["dangling.jpg", "reason"]) == (
        "corrupt", "unreadable")
    assert "FileNotFoundError" in rows.loc["dangling.jpg", "detail"]
    assert rows.loc["fine.png", "status"] == "ok"


def cv2_png() -> bytes:
    import cv2
    import numpy as np

    image = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    return cv2.imencode(".png", image)[1].tobytes()


def test_chunks_keep_the_file_order_and_split_by_bytes(tmp_path):
    from pcbforge.core.scan import FoundFile
    from pcbforge.curate.runner import plan_chunks

    sizes = [100] * 200 + [50_000] * 12 + [100] * 40
    items = []
    for n, size in enumerate(sizes):
        (tmp_path / f"{n:03d}.jpg").write_bytes(bytes(size))
        items.append((n, FoundFile(f"{n:03d}.jpg", str(tmp_path / f"{n:03d}.jpg"))))
    items.append((-1, FoundFile("gone.jpg", str(tmp_path / "gone.jpg"))))  # stat fails
    chunks = plan_chunks(items, workers=2)
    assert [item for chunk in chunks for item in chunk] == items
    share = sum(sizes) / 32
    for chunk in chunks:
        chunk_bytes = sum(sizes[n] for n, _ in chunk if n >= 0)
        assert len(chunk) == 1 or (len(chunk) <= 64 and chunk_bytes <= share)
    # The large files spread over several chunks instead of riding in one.
    assert sum(any(sizes[n] > 100 for n, _ in chunk if n >= 0) for chunk in chunks) >= 6


def test_verification_reads_the_stored_coarse_views_or_computes_them(messy_corpus, tmp_path):
    """Same verdicts and the same edges, in the same order, with the coarse-view store
    written at inspection and without it (views computed from the thumbnails)."""
    from pathlib import Path

    from pcbforge.core.scan import scan_folder
    from pcbforge.curate.dedupe import find_duplicates
    from pcbforge.curate.runner import CACHE_DIR, COARSE_FILE, inspect_files
    from pcbforge.engine import LocalEngine

    root, _ = messy_corpus
    params = CurateParams(workers=1)
    with LocalEngine(1) as engine:
        table, thumbs, hashes = inspect_files(scan_folder(Path(root)).files, params,
                                              tmp_path, engine, False)
    coarse = tmp_path / CACHE_DIR / COARSE_FILE
    stored, stored_stats = find_duplicates(table, thumbs, hashes, params.dedupe,
                                           coarse_path=coarse)
    computed, computed_stats = find_duplicates(table, thumbs, hashes, params.dedupe)
    assert stored.equals(computed)
    assert stored_stats.edges == computed_stats.edges and stored_stats.edges


def test_the_samples_table_built_in_frames_is_the_table_built_at_once(messy_corpus, tmp_path,
                                                                      monkeypatch):
    """Rows become a frame every ROWS_PER_FRAME (memory); frames of a few rows, with
    corrupt, skipped and photo rows falling in different ones, give the same table."""
    from pathlib import Path

    from pcbforge.core.scan import scan_folder
    from pcbforge.curate import runner
    from pcbforge.engine import LocalEngine

    root, _ = messy_corpus
    files = scan_folder(Path(root)).files
    tables = []
    for rows_per_frame in (3, len(files) + 1):
        monkeypatch.setattr(runner, "ROWS_PER_FRAME", rows_per_frame)
        stage = tmp_path / str(rows_per_frame)
        stage.mkdir()
        with LocalEngine(2) as engine:
            tables.append(runner.inspect_files(files, CurateParams(workers=2), stage, engine,
                                               False)[0])
    assert len(tables[0]) == len(files) > 3 * 8
    pd.testing.assert_frame_equal(tables[0], tables[1], check_exact=True)
