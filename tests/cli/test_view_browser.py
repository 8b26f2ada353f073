"""A real browser on ``pcbforge view``: the App, started as a user starts it, opened in
headless Chromium (Debian's ``chromium``; no browser download).

Checked in the rendered page: the dataset's name, its sample count and the label field;
a box drawn on every tile whose sample has boxes and on no other; every saved view with
the count the samples table gives. Screenshots go to the test's tmp dir and to
``test-artifacts/``. Ctrl-C (SIGINT) must stop the App and its database.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import psutil
import pytest

from pcbforge.datasets import load
from pcbforge.datasets.fiftyone import table_view_counts
from tests.cli.cdp import BrowserError, Chromium
from tests.conftest import fiftyone_database_services, start_mongod

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
NAME = "pcb-line-7"
#: Keeps FiftyOne's promotional pop-up out of the screenshots.
NO_POPUP = "localStorage.setItem('fiftyone-enterprise-tooltip-seen', 'true')"
#: Each grid tile's box on the page and whether it shows FiftyOne's "cannot load" icon.
TILES_JS = """Array.from(document.querySelectorAll('[data-cy="looker"]')).map(e => {
  const r = e.getBoundingClientRect();
  return [r.x, r.y, r.width, r.height, !!e.querySelector('[data-cy="looker-error-info"]'),
          !!e.querySelector('canvas[canvas-loaded="true"]')];
})"""


#: Names in the App's open saved-view menu.
OPTIONS_JS = """Array.from(document.querySelectorAll('[role="option"]'),
                           o => o.innerText.split('\\n')[0].trim())"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _mongods_under(folder: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if "--dbpath" in cmdline and str(folder) in cmdline[cmdline.index("--dbpath") + 1]:
            found.append(process)
    return found


class ViewProcess:
    """``pcbforge view DATASET`` in its own process, on a free port and a database of its
    own: FiftyOne's bundled MongoDB in a new directory, or (when another FiftyOne database
    service runs for this user, which FiftyOne would join) a private mongod by URI."""

    def __init__(self, dataset: Path, tmp: Path) -> None:
        self.port = _free_port()
        self.dbdir = tmp / "fiftyone-db"
        self.log_path = tmp / "view.log"
        env = {**os.environ, "FIFTYONE_DO_NOT_TRACK": "true",
               "FIFTYONE_DATABASE_DIR": str(self.dbdir)}
        for key in ("FIFTYONE_DATABASE_URI", "FIFTYONE_PRIVATE_DATABASE_PORT"):
            env.pop(key, None)
        self.own_mongod = None
        if fiftyone_database_services():
            self.own_mongod, env["FIFTYONE_DATABASE_URI"] = start_mongod(self.dbdir)
        script = Path(sys.executable).with_name("pcbforge")
        command = ([str(script)] if script.is_file() else
                   [sys.executable, "-c", "from pcbforge.cli.main import main; main()"])
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [*command, "view", str(dataset), "--name", NAME, "--port", str(self.port),
             "--remote"], env=env, stdin=subprocess.DEVNULL, stdout=self.log,
            stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_until_serving(self, timeout: float = 240.0) -> str:
        """The App URL once the command printed it and the server answers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"pcbforge view exited with {self.process.returncode}:\n"
                            f"{self.output()}")
            found = re.search(r"App: (http://\S+)", self.output())
            if found:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/fiftyone",
                                                timeout=5) as reply:
                        if "version" in json.load(reply):
                            return found.group(1)
                except OSError:
                    pass
            time.sleep(0.5)
        pytest.fail(f"pcbforge view did not serve within {timeout} s:\n{self.output()}")

    def interrupt(self, timeout: float = 120.0) -> int:
        """Ctrl-C, then wait for the command to end."""
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(30)
        for stray in _mongods_under(self.dbdir):
            stray.terminate()
        if self.own_mongod is not None:
            self.own_mongod.terminate()
            self.own_mongod.wait(60)
        self.log.close()



def _chroma(image: np.ndarray) -> np.ndarray:
    """Pixels with a colour (channels more than 8 apart): grey pixels have none."""
    image = image.astype(np.int16)
    return (image.max(axis=2) - image.min(axis=2)) > 8


def _colored_pixels(png: bytes, tiles: list) -> list[int]:
    """Per tile, the pixels with a colour: the boards are grey (no chroma at all), the
    boxes are not, even where a thin box line is blended over black copper."""
    colored = _chroma(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR))
    counts = []
    for x, y, width, height, *_ in tiles:
        x0, y0 = int(x) + 2, int(y) + 2  # inside the tile's border
        counts.append(int(colored[y0:int(y + height) - 2, x0:int(x + width) - 2].sum()))
    return counts


def _may_show_colour(image: Path) -> bool:
    """Whether the image itself may put colour on its tile: it has chroma, or OpenCV cannot
    decode it (a damaged JPEG that the browser still paints in part, e.g. colour noise)."""
    pixels = cv2.imread(str(image), cv2.IMREAD_COLOR)
    return pixels is None or bool(_chroma(pixels).any())


def _save(shot: Path, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copyfile(shot, ARTIFACTS / name)


@pytest.fixture
def view_dataset(request) -> Path:
    """The generated inspection dataset, or any pcbforge dataset named by
    ``PCBFORGE_VIEW_DATASET`` (the same checks on held-out data; keep it under ~100
    samples so that every tile fits on the page)."""
    given = os.environ.get("PCBFORGE_VIEW_DATASET")
    if given:
        return Path(given)
    return request.getfixturevalue("inspection_dataset")


def test_the_app_shows_samples_boxes_and_saved_views(chromium_path, view_dataset, tmp_path):
    root = shutil.copytree(view_dataset, tmp_path / "ds")  # view_report.json goes there
    dataset = load(root)
    samples = dataset.samples
    expected_views = table_view_counts(dataset)
    app = ViewProcess(root, tmp_path)
    browser = None
    try:
        url = app.wait_until_serving()
        assert url == f"http://127.0.0.1:{app.port}/datasets/{NAME}"
        if app.own_mongod is None:  # FiftyOne started the bundled MongoDB in our directory
            assert _mongods_under(app.dbdir), "no mongod runs on the test's database dir"
        report = json.loads((root / "view_report.json").read_text())
        assert report["url"] == url and report["counts_match"]

        # Tall enough for every tile: the grid only renders the tiles in view.
        browser = Chromium(tmp_path / "chromium", executable=chromium_path,
                           height=max(900, 40 * len(samples)))
        browser.before_each_page(NO_POPUP)
        browser.goto(url)
        # The dataset's name, its sample count, the label field and pcbforge's fields.
        browser.wait_for(lambda b: re.search(rf"\b{len(samples)} samples\b", b.text())
                         and all(word in b.text() for word in (
                             NAME, "ground_truth", "status", "split", "duplicate_of")),
                         120, f"{NAME}, '{len(samples)} samples' and ground_truth")

        # Tiles follow the samples table (the order the samples were added). A box is
        # painted after its image (masks are decoded in a worker): poll until each tile of a
        # sample with boxes shows colour.
        boxed = samples["sample_id"].isin(set(dataset.labels["sample_id"])).to_numpy()
        shot = tmp_path / "pcbforge-view.png"

        last: list[int] = []

        def painted(b):
            tiles = b.evaluate(TILES_JS)
            if len(tiles) != len(samples) or not all(t[4] or t[5] for t in tiles):
                return None
            last[:] = _colored_pixels(b.screenshot(shot), tiles)
            ready = all(c > 10 for c, t, box in zip(last, tiles, boxed, strict=True)
                        if box and not t[4])
            return (tiles, list(last)) if ready else None

        try:
            tiles, colored = browser.wait_for(painted, 90, "a box on every tile with boxes")
        except BrowserError as err:
            pytest.fail(f"{err}\ncoloured pixels per tile: {last}; tiles with boxes: "
                        f"{np.flatnonzero(boxed).tolist()}; screenshot: {shot}")
        _save(shot, shot.name)
        status = samples["status"].tolist()
        for row, (tile, count, box) in enumerate(zip(tiles, colored, boxed, strict=True)):
            where = f"tile {row} ({samples['path'][row]}, {count} coloured px)"
            if tile[4]:  # FiftyOne could not decode it: only broken or non-image files
                assert status[row] in ("corrupt", "skipped") and not box, where
            elif not box and not _may_show_colour(dataset.image_path(samples["path"][row])):
                # a grey image without boxes: any colour on its tile was drawn by the App
                assert count <= 3, f"{where}: something drawn on a sample without boxes"
        assert any(t[4] for t in tiles)  # the zero-byte file is there, as a broken tile

        # Every saved view is in the App's saved-view menu...
        def menu(b):
            listed = b.evaluate(OPTIONS_JS)
            if not listed:  # (again, if the page was still re-rendering at the last click)
                b.click('[data-cy="saved-views-selection"] [role="combobox"]')
            return listed

        listed = browser.wait_for(menu, 30, "the saved-view menu")
        assert [name for name in listed if name in expected_views] == list(expected_views)
        assert list(report["view_urls"]) == list(expected_views)
        # ... and opened by its URL, shows as many samples as the samples table says (each
        # view is a page load of ~3 s here: the base views and one class; all of them are
        # compared sample by sample in tests/datasets/fiftyone/test_round_trip.py).
        first_class = next(v for v in expected_views if v.startswith("class-"))
        for view in [*expected_views][:7] + [first_class]:
            count = expected_views[view]
            browser.goto(report["view_urls"][view])
            browser.wait_for(
                lambda b, view=view, count=count: view in b.text() and re.search(
                    rf"\b{count} samples?\b", b.text()), 60, f"view {view}: {count} samples")
        duplicates = tmp_path / "pcbforge-view-duplicates.png"
        browser.goto(report["view_urls"]["duplicates"])
        browser.wait_for(lambda b: len(b.evaluate(TILES_JS)) == expected_views["duplicates"],
                         60, "the duplicate tiles")
        time.sleep(1.0)
        browser.screenshot(duplicates)
        _save(duplicates, duplicates.name)
    finally:
        if browser is not None:
            browser.close()
        try:
            returncode = app.interrupt() if app.process.poll() is None \
                else app.process.returncode
        except subprocess.TimeoutExpired:
            returncode = None
        output = app.output()
        app.close()
    assert returncode == 0, output
    assert "App and database stopped" in output or app.own_mongod is not None, output
    assert not _mongods_under(app.dbdir), "mongod left running after Ctrl-C"
