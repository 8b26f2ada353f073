"""Tests for the messy corpus generator and its ground-truth manifest."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pcbforge.synth.messy import (
    MANIFEST_COLUMNS,
    REASONS,
    make_messy_corpus,
    read_manifest,
    write_manifest,
)

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _files(root: Path) -> set[str]:
    """Regular files under root, '/'-separated, without following symlinks."""
    found = set()
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            full = os.path.join(dirpath, name)
            if os.path.isfile(full) and not os.path.islink(full):
                found.add(os.path.relpath(full, root).replace(os.sep, "/"))
    return found


def _hashes(root: Path) -> dict[str, str]:
    out = {}
    for rel in _files(root):
        path = root / rel
        if not os.access(path, os.R_OK):
            continue  # mode 000 as an unprivileged user
        out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("messy") / "corpus"
    return root, make_messy_corpus(root, seed=0, hostile=True)


def test_manifest_columns_and_values(corpus: tuple[Path, pd.DataFrame]) -> None:
    _, df = corpus
    assert tuple(df.columns) == MANIFEST_COLUMNS
    assert df["path"].is_unique
    for status, reason in zip(df["expected_status"], df["expected_reason"], strict=True):
        assert reason in REASONS[status]
    corrupt = df[df["expected_status"] == "corrupt"]
    assert (corrupt["cluster"] == "").all()
    assert corrupt["scene"].is_unique
    assert not set(corrupt["scene"]) & set(df.loc[df["expected_status"] != "corrupt", "scene"])
    assert (df.loc[df["expected_status"] != "corrupt", "cluster"] != "").all()


def test_manifest_matches_tree(corpus: tuple[Path, pd.DataFrame]) -> None:
    root, df = corpus
    listed = set(df["path"])
    assert listed == _files(root)
    for rel in listed:
        assert os.path.lexists(root / rel)
    assert os.path.islink(root / "loop")
    assert not any(p.startswith("loop") for p in listed)


def test_reason_coverage(corpus: tuple[Path, pd.DataFrame]) -> None:
    _, df = corpus
    for status, reasons in REASONS.items():
        got = set(df.loc[df["expected_status"] == status, "expected_reason"])
        assert got == set(reasons), status


def test_clusters_and_scenes(corpus: tuple[Path, pd.DataFrame]) -> None:
    _, df = corpus
    originals = df[df["kind"] == "original"]
    assert len(originals) == 6 + 3
    assert originals["cluster"].is_unique
    dups = df[df["expected_status"] == "duplicate"]
    # Every duplicate points at the cluster of an original that is kept.
    assert set(dups["cluster"]) <= set(originals["cluster"])
    assert {"exact_duplicate", "near_duplicate", "transformed_duplicate"} <= set(
        dups["expected_reason"]
    )
    defects = df[df["kind"].str.startswith("defect_")]
    assert len(defects) == 6
    assert (defects["expected_status"] == "ok").all()
    assert not set(defects["cluster"]) & set(originals["cluster"])
    assert set(defects["scene"]) == set(originals.loc[originals["path"].str.startswith("boards/"),
                                                       "scene"])
    odd = df[df["path"].str.startswith("odd/")]
    assert len(odd) >= 12 and odd["scene"].is_unique and (odd["expected_status"] == "ok").all()


def test_unreadable_and_bad_name(corpus: tuple[Path, pd.DataFrame]) -> None:
    root, df = corpus
    row = df[df["expected_reason"] == "unreadable"].iloc[0]
    assert (os.stat(root / row["path"]).st_mode & 0o777) == 0
    if not IS_ROOT:
        assert not os.access(root / row["path"], os.R_OK)
    bad = os.fsdecode(b"bad_\xff.png")
    assert bad in set(df["path"])
    assert os.path.isfile(os.path.join(os.fsencode(root), b"bad_\xff.png"))


def test_deterministic_bytes(corpus: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    root, df = corpus
    again = make_messy_corpus(tmp_path / "again", seed=0, hostile=True)
    assert df.equals(again)
    first, second = _hashes(root), _hashes(tmp_path / "again")
    assert first == second
    assert len(first) >= len(df) - 1


def test_other_seed_differs(corpus: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    root, _ = corpus
    other = tmp_path / "other"
    make_messy_corpus(other, seed=1, n_boards=2, n_photos=1)
    a = _hashes(root)
    b = _hashes(other)
    assert a["boards/board_00.png"] != b["boards/board_00.png"]
    assert a["photos/photo_00.jpg"] != b["photos/photo_00.jpg"]


def _by_kind(df: pd.DataFrame, kind: str) -> str:
    return str(df.loc[df["kind"] == kind, "path"].iloc[0])


def test_corrupt_files_are_broken_as_labelled(corpus: tuple[Path, pd.DataFrame]) -> None:
    root, df = corpus
    assert (root / _by_kind(df, "zero_bytes")).stat().st_size == 0
    for kind in ("bomb_png", "bomb_jpeg"):
        with pytest.raises(Image.DecompressionBombError):
            Image.open(root / _by_kind(df, kind))
    for kind in ("truncated_png", "truncated_jpeg", "damaged_png", "random_bytes", "html_page"):
        with pytest.raises(OSError):  # UnidentifiedImageError is an OSError too
            with Image.open(root / _by_kind(df, kind)) as im:
                im.load()
    damaged = (root / _by_kind(df, "damaged_jpeg")).read_bytes()
    assert damaged.startswith(b"\xff\xd8") and damaged.endswith(b"\xff\xd9")


def test_odd_files_decode_as_labelled(corpus: tuple[Path, pd.DataFrame]) -> None:
    root, df = corpus
    expect = {
        "gray16_png": ("PNG", "I;16"),
        "gray8_png": ("PNG", "L"),
        "rgba_png": ("PNG", "RGBA"),
        "palette_png": ("PNG", "P"),
        "gif": ("GIF", "P"),
        "bmp": ("BMP", "RGB"),
        "tiff_lzw": ("TIFF", "RGB"),
        "webp_lossless": ("WEBP", "RGB"),
        "cmyk_jpeg": ("JPEG", "CMYK"),
        "progressive_jpeg": ("JPEG", "RGB"),
        "exif_rotated_jpeg": ("JPEG", "RGB"),
        "png_named_jpg": ("PNG", "RGB"),
    }
    for kind, (fmt, mode) in expect.items():
        with Image.open(root / _by_kind(df, kind)) as im:
            im.load()
            assert (im.format, im.mode) == (fmt, mode), kind
            if kind == "exif_rotated_jpeg":
                assert im.getexif().get(0x0112) == 6
            if kind == "tiff_lzw":
                assert im.info["compression"] == "tiff_lzw"
            if kind == "progressive_jpeg":
                assert im.info.get("progressive")


def test_low_quality_values(corpus: tuple[Path, pd.DataFrame]) -> None:
    root, df = corpus

    def pixels(kind: str) -> np.ndarray:
        with Image.open(root / _by_kind(df, kind)) as im:
            return np.asarray(im)

    dark, bright = pixels("dark"), pixels("bright")
    assert dark.max() < 20 and dark.std() > 1
    assert bright.min() > 235 and bright.std() > 1
    assert np.unique(pixels("blank_white")).tolist() == [255]
    assert np.unique(pixels("blank_black")).tolist() == [0]
    assert pixels("tiny").shape[:2] == (20, 20)


def test_refuses_non_empty_out(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(ValueError, match="non-empty"):
        make_messy_corpus(tmp_path)


def test_manifest_round_trip(corpus: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    _, df = corpus
    path = tmp_path / "manifest.csv"
    write_manifest(df, path)
    assert read_manifest(path).equals(df)
