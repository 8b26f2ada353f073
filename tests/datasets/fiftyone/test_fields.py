"""The mapping between pcbforge's tables and FiftyOne's fields, boxes and masks (pure: no
database)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pcbforge.datasets.fiftyone import box_mask, duplicate_clusters, field_name, full_mask
from pcbforge.datasets.masks import decode_mask, encode_mask


@pytest.mark.parametrize(("box", "shape"), [((10.0, 5.0, 30.0, 20.0), (15, 20)),
                                             ((9.5, 4.25, 30.75, 20.5), (17, 22))],
                         ids=["integer", "fractional"])
def test_box_masks_round_trip(box, shape):
    mask = np.zeros((48, 64), bool)
    mask[7:18, 12:28] = True
    mask[9, 29] = True  # inside the box's pixel span, outside the tight extent
    crop, outside = box_mask(encode_mask(mask), box)
    assert outside == 0 and crop.shape == shape
    assert full_mask(crop, box, 64, 48) == encode_mask(mask)


def test_box_mask_counts_pixels_outside_and_scales_to_a_resized_box():
    mask = np.zeros((40, 40), bool)
    mask[10:20, 10:20] = True
    crop, outside = box_mask(encode_mask(mask), (10.0, 10.0, 15.0, 20.0))
    assert outside == 50 and crop.all()
    # The box doubled in width in FiftyOne: the box-relative mask stretches with it.
    scaled = decode_mask(full_mask(np.ones((10, 5), bool), (10.0, 10.0, 20.0, 20.0), 40, 40))
    assert scaled.sum() == 100 and scaled[10:20, 10:20].all()


def test_duplicate_clusters_hold_the_kept_image_and_its_copies():
    samples = pd.DataFrame({"path": ["a.png", "b.png", "c.png", "d.png"],
                            "duplicate_of": ["", "a.png", "", "a.png"]})
    assert duplicate_clusters(samples).tolist() == ["a.png", "a.png", "", "a.png"]
    assert duplicate_clusters(samples[["path"]]).tolist() == ["", "", "", ""]


@pytest.mark.parametrize(("column", "field"), [
    ("sample_id", "pcbforge_id"), ("frames", "pcbforge_frames"), ("tags", "pcbforge_tags"),
    ("template_filepath", "pcbforge_template_filepath"), ("a.b", "a_b"), ("status", "status"),
], ids=["key", "reserved", "tags", "ours", "dotted", "plain"])
def test_field_names(column, field):
    assert field_name(column) == field
