"""report.html in a real browser (headless Chromium, Debian's ``chromium``): every image
loads and has pixels, the numbers shown are the report's, and a screenshot is kept in
``test-artifacts/build-report.png``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.cli.cdp import Chromium

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
IMAGES_JS = """Array.from(document.images).map(i => [i.getAttribute('src'), i.complete,
                                                 i.naturalWidth, i.naturalHeight])"""



def test_report_html_renders_every_plot_and_thumbnail(small_build, chromium_path, tmp_path):
    _, out = small_build
    report = json.loads((out / "report.json").read_text())
    expected = (list(report["plots"].values())
                + [e["thumb"] for items in report["examples"].values() for e in items]
                + [e["thumb"] for e in report["rejected"]]
                + [e["crop"] for items in (report["qa"] or {}).get("gallery", {}).values()
                   for e in items if e["crop"]])
    browser = Chromium(tmp_path / "profile", width=1300, height=1000,
                       executable=chromium_path)
    try:
        browser.goto((out / "report.html").as_uri())
        browser.wait_for(lambda b: b.evaluate("document.readyState") == "complete",
                         what="the report to load")
        images = browser.wait_for(
            lambda b: (lambda found: found if found and all(i[1] for i in found) else None)(
                b.evaluate(IMAGES_JS)), what="every image to load")
        assert sorted(i[0] for i in images) == sorted(expected)
        broken = [i for i in images if i[2] == 0 or i[3] == 0]
        assert broken == []
        text = browser.text()
        assert "Clean: no leak between splits (16 images checked)" in text
        assert report["synthetic_policy"]["note"] in text
        height = browser.evaluate("document.documentElement.scrollHeight")
        browser.call("Emulation.setDeviceMetricsOverride", width=1300, height=int(height),
                     deviceScaleFactor=1, mobile=False)
        png = browser.screenshot(tmp_path / "report.png")
    finally:
        browser.close()
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copyfile(tmp_path / "report.png", ARTIFACTS / "build-report.png")
    shot = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert shot.shape[0] == height
    # The plots are drawn: the page holds the bars' colours (matplotlib's blue/orange).
    orange = (np.abs(shot.astype(int) - [14, 127, 255]).sum(axis=2) < 30).sum()
    assert orange > 5000
