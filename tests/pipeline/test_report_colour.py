"""The report and the FiftyOne view show colour boards in colour."""

from __future__ import annotations

import cv2

from pcbforge.datasets import load
from pcbforge.datasets.fiftyone.media import display_file
from pcbforge.pipeline.report import build_report
from pcbforge.synth.compose import SynthConfig
from pcbforge.synth.pipeline import synthesize, write_boards


def test_report_examples_of_a_colour_dataset_are_in_colour(tmp_path) -> None:
    write_boards(tmp_path / "boards", count=1, seed=2, size=256, progress=False,
                 style="colour", mask="green")
    root = tmp_path / "dataset"
    synthesize(tmp_path / "boards", root, count=2, seed=1, progress=False,
               config=SynthConfig(defect_free_share=0.0))
    report = build_report(root, folder=tmp_path / "report")
    thumbs = [entry["thumb"] for entries in report["examples"].values() for entry in entries]
    assert thumbs
    for thumb in thumbs:
        tile = cv2.imread(str(tmp_path / thumb), cv2.IMREAD_COLOR)  # report/examples/...
        assert tile is not None, thumb
        # A green board: green well above blue and red, not three equal grey channels.
        b, g, r = (float(tile[..., k].mean()) for k in range(3))
        assert g > b + 15 and g > r + 15, (thumb, b, g, r)
    # The FiftyOne App is given the PNG itself (browsers decode it), not a grey copy.
    dataset = load(root)
    path = str(dataset.samples["path"].iloc[-1])
    assert display_file(dataset, path) == str(dataset.image_path(path))
    assert cv2.imread(display_file(dataset, path), cv2.IMREAD_UNCHANGED).ndim == 3
