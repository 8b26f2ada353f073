"""Each check of one pair, on hand-made pairs whose errors are known."""

from __future__ import annotations

import math

import cv2
import numpy as np

from pcbforge.core.boxes import iou
from pcbforge.qa.changes import difference, regions_of
from pcbforge.qa.checks import check_pair, edge_band
from pcbforge.qa.params import QAParams
from tests.qa.pairs import (
    LABELLED_SHORT,
    OPEN,
    PIN_HOLE,
    SHORT,
    SIZE,
    board,
    job,
    kinds,
    padded,
    with_defects,
)


def _one(result, kind: str) -> dict:
    found = [f for f in result.findings if f["kind"] == kind]
    assert len(found) == 1, result.findings
    return found[0]


def test_correct_labels_give_no_finding(tmp_path):
    result = check_pair(job(tmp_path, with_defects("short", "open", "pin-hole"), boxes=[
        ("short", LABELLED_SHORT), ("open", padded(OPEN)), ("pin-hole", padded(PIN_HOLE))]))
    assert result.findings == []
    assert result.registration["misregistered"] is False
    assert abs(result.registration["dx"]) < 0.3 and abs(result.registration["dy"]) < 0.3


def test_a_deleted_label_is_a_defect_like_missing_label_with_its_class(tmp_path):
    result = check_pair(job(tmp_path, with_defects("short", "open"),
                            boxes=[("open", padded(OPEN))]))
    finding = _one(result, "missing_label")
    assert finding["detail"] == "defect_like"
    assert finding["action"] == "add" and finding["proposed_label"] == "short"
    assert iou((finding["px1"], finding["py1"], finding["px2"], finding["py2"]),
               padded(SHORT)) > 0.7
    assert kinds(result) == [("missing_label", "defect_like")]


def test_each_class_is_proposed_from_the_change(tmp_path):
    result = check_pair(job(tmp_path, with_defects("open", "pin-hole")))
    proposed = sorted(f["proposed_label"] for f in result.findings)
    assert proposed == ["open", "pin-hole"]


def test_a_box_on_nothing_is_an_empty_box(tmp_path):
    result = check_pair(job(tmp_path, with_defects("short"), boxes=[
        ("short", LABELLED_SHORT), ("pin-hole", (150, 200, 175, 225))]))
    finding = _one(result, "empty_box")
    assert finding["label"] == "pin-hole" and finding["label_row"] == 1
    assert finding["action"] == "delete" and finding["score"] == 1.0
    assert kinds(result) == [("empty_box", "no_change")]


def test_a_moved_box_is_misplaced_and_the_proposal_finds_its_change(tmp_path):
    result = check_pair(job(tmp_path, with_defects("short"),
                            boxes=[("short", (196, 190, 244, 220))]))
    finding = _one(result, "misplaced_box")
    assert finding["action"] == "move"
    assert iou((finding["px1"], finding["py1"], finding["px2"], finding["py2"]),
               LABELLED_SHORT) > 0.6
    # The change it moves to is not reported again as a missing label.
    assert kinds(result) == [("misplaced_box", "moved")]


def test_a_box_of_the_other_polarity_is_class_suspect(tmp_path):
    result = check_pair(job(tmp_path, with_defects("short", "pin-hole"), boxes=[
        ("open", LABELLED_SHORT), ("copper", padded(PIN_HOLE))]))
    found = {f["label"]: f for f in result.findings if f["kind"] == "class_suspect"}
    assert found["open"]["detail"] == "polarity"
    assert found["open"]["proposed_label"] == "short" and found["open"]["action"] == "relabel"
    assert found["copper"]["proposed_label"] == "pin-hole"
    assert len(result.findings) == 2


def test_a_short_that_joins_nothing_is_class_suspect_by_topology(tmp_path):
    image = board()
    cv2.rectangle(image, (206, 170), (214, 179), 0, -1)  # a stub on the x=200 trace only
    result = check_pair(job(tmp_path, image, boxes=[("short", (196, 160, 224, 190))]))
    finding = _one(result, "class_suspect")
    assert finding["detail"] == "topology" and finding["proposed_label"] == "spur"


def test_a_shifted_template_is_misregistered_and_still_compared(tmp_path):
    shifted = cv2.warpAffine(board(), np.float32([[1, 0, 5], [0, 1, -4]]), (SIZE, SIZE),
                             borderMode=cv2.BORDER_REPLICATE)
    result = check_pair(job(tmp_path, with_defects("short"), shifted,
                            boxes=[("short", LABELLED_SHORT)]))
    finding = _one(result, "misregistered")
    assert finding["detail"] == "shift" and finding["action"] == "none"
    row = result.registration
    assert abs(row["dx"] + 5) < 0.3 and abs(row["dy"] - 4) < 0.3, row
    assert kinds(result) == [("misregistered", "shift")]  # no flood of changes


def test_a_rotated_template_is_misregistered_by_rotation(tmp_path):
    matrix = cv2.getRotationMatrix2D(((SIZE - 1) / 2, (SIZE - 1) / 2), 1.0, 1.0)
    rotated = cv2.warpAffine(board(), matrix, (SIZE, SIZE), borderMode=cv2.BORDER_REPLICATE)
    result = check_pair(job(tmp_path, with_defects("short"), rotated,
                            boxes=[("short", LABELLED_SHORT)]))
    assert _one(result, "misregistered")["detail"] == "rotation"
    assert abs(result.registration["rotation_deg"] + 1.0) < 0.1, result.registration


def test_a_locally_displaced_pad_is_misregistration_like(tmp_path):
    image = board()
    # The ring at (280, 200) sits 4 px lower in the second scan.
    cv2.circle(image, (280, 200), 12, 255, -1)
    cv2.circle(image, (280, 204), 10, 0, 3)
    result = check_pair(job(tmp_path, image))
    details = {f["detail"] for f in result.findings if f["kind"] == "missing_label"}
    assert details == {"misregistration_like"}, result.findings
    assert all(f["action"] == "none" for f in result.findings)


def test_a_box_much_larger_than_its_change_does_not_fit(tmp_path):
    result = check_pair(job(tmp_path, with_defects("pin-hole"),
                            boxes=[("pin-hole", (200, 60, 310, 180))]))
    finding = _one(result, "box_fit")
    assert finding["detail"] == "too_large" and finding["action"] == "refit"
    assert iou((finding["px1"], finding["py1"], finding["px2"], finding["py2"]),
               padded(PIN_HOLE)) > 0.7


def test_a_box_that_cuts_its_change(tmp_path):
    image = board()
    cv2.rectangle(image, (45, 150), (75, 160), 0, -1)  # a short from x=40 to x=80
    result = check_pair(job(tmp_path, image, boxes=[("short", (35, 140, 55, 170))]))
    finding = _one(result, "box_fit")
    assert finding["detail"] == "cuts_change" and finding["action"] == "refit"
    assert finding["px1"] <= 35 and finding["px2"] >= 80


def test_a_colour_pair_with_light_copper(tmp_path):
    def colour(grey):  # copper bright on a green solder mask
        out = np.empty(grey.shape + (3,), np.uint8)
        out[grey == 0] = (90, 170, 210)
        out[grey != 0] = (40, 90, 30)
        return cv2.GaussianBlur(out, (3, 3), 0)

    image, template = colour(with_defects("short", "open")), colour(board())
    result = check_pair(job(tmp_path, image, template, boxes=[("open", padded(OPEN))],
                            copper="light"))
    finding = _one(result, "missing_label")
    assert finding["detail"] == "defect_like" and finding["proposed_label"] == "short"
    assert len(result.findings) == 1


def test_a_missing_template_is_a_pair_error_not_a_crash(tmp_path):
    pair = job(tmp_path, with_defects("short"))
    (tmp_path / "p_temp.png").unlink()
    result = check_pair(pair)
    assert result.registration is None
    assert kinds(result) == [("pair_error", "missing_template")]


def test_a_template_of_another_size_is_a_pair_error(tmp_path):
    result = check_pair(job(tmp_path, with_defects("short"), board()[:300, :310]))
    finding = _one(result, "pair_error")
    assert finding["detail"] == "size_mismatch" and "differ in size" in finding["reason"]


def test_an_unreadable_tested_image_is_a_pair_error(tmp_path):
    pair = job(tmp_path, with_defects("short"))
    (tmp_path / "p_test.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    assert kinds(check_pair(pair)) == [("pair_error", "unreadable_image")]


def test_findings_are_the_same_every_run(tmp_path):
    pair = job(tmp_path, with_defects("short", "open"), boxes=[("pin-hole", (150, 200, 175, 225))])
    first, second = check_pair(pair), check_pair(pair)
    assert first.findings == second.findings
    assert all(not (isinstance(v, float) and math.isnan(v) and k == "score")
               for f in first.findings for k, v in f.items())


def test_a_shallow_bite_too_thin_for_a_region_is_still_judged_by_its_polarity(tmp_path):
    image = board()
    image[100:110, 155:158] = 255  # a bite 3 px deep into the x=160 trace's left edge
    bite = (155, 100, 158, 110)
    result = check_pair(job(tmp_path, image, boxes=[("spur", padded(bite, 6))]))
    finding = _one(result, "class_suspect")
    assert finding["detail"] == "polarity" and finding["action"] == "relabel"
    assert finding["proposed_label"] == "mousebite"
    right = check_pair(job(tmp_path, image, boxes=[("mousebite", padded(bite, 6))]))
    assert right.findings == []


def test_a_hole_only_the_template_has_is_a_template_defect(tmp_path):
    template = board()
    template[112:122, 270:280] = 255  # a hole in the pad of the template only
    result = check_pair(job(tmp_path, board(), template))
    finding = _one(result, "missing_label")
    assert finding["detail"] == "template_defect" and finding["action"] == "none"
    # The same change the other way round is the tested image's pin-hole.
    swapped = check_pair(job(tmp_path, template, board()))
    assert _one(swapped, "missing_label")["detail"] == "defect_like"
    # Copper across part of a slot the template encloses is the tested image's defect.
    slotted = board()
    slotted[115:121, 270:292] = 255  # a slot in the pad, on both images
    bridged = slotted.copy()
    bridged[115:121, 278:284] = 0  # copper across a quarter of it on the tested one
    result = check_pair(job(tmp_path, bridged, slotted))
    assert kinds(result) == [("missing_label", "defect_like")]


def test_a_box_moved_off_a_change_in_fragments_is_misplaced_onto_all_of_them(tmp_path):
    image = board()
    image[145:150, 155:166] = 255  # a crack across the x=160 trace, seen as two cuts
    image[159:164, 155:166] = 255
    moved_to = (50, 180, 81, 210)  # a box of the crack's size, on unchanged copper
    result = check_pair(job(tmp_path, image, boxes=[("open", moved_to)]))
    finding = _one(result, "misplaced_box")
    assert "2 fragments" in finding["reason"]
    proposed = (finding["px1"], finding["py1"], finding["px2"], finding["py2"])
    assert proposed[0] <= 155 and proposed[1] <= 145 and proposed[2] >= 166 \
        and proposed[3] >= 164
    assert kinds(result) == [("misplaced_box", "moved")]


def test_a_long_thin_band_along_an_edge_is_a_displaced_edge_but_a_bite_is_not():
    template = np.full((200, 200), 255, np.uint8)
    template[40:160, 40:100] = 0  # a copper block with a 120 px right edge
    params = QAParams()

    def regions(tested):
        diff = difference(tested, template, params)
        return diff, [r for r in regions_of(diff) if r.area >= params.min_region_px]

    wider = template.copy()
    wider[45:155, 100:104] = 0  # the edge 4 px further right over 110 px
    diff, found = regions(wider)
    assert len(found) == 1 and edge_band(diff, found[0])
    bitten = template.copy()
    bitten[90:104, 95:100] = 255  # a bite 5 px deep, 14 px long
    diff, found = regions(bitten)
    assert len(found) == 1 and not edge_band(diff, found[0])
    island = template.copy()
    island[60:140, 101:104] = 0  # a sliver of copper 1 px off the edge, not joined to it
    diff, found = regions(island)
    assert len(found) == 1 and not edge_band(diff, found[0])


def test_a_bite_on_an_edge_the_scan_displaced_keeps_its_class(tmp_path):
    image = board()
    image[100:141, 262:301] = 255
    image[100:141, 266:305] = 0  # the large pad 4 px further right in this scan
    image[114:122, 299:305] = 255  # and a bite 6 px deep into its (new) right edge
    bite = (299, 114, 305, 122)
    result = check_pair(job(tmp_path, image, boxes=[("mousebite", padded(bite, 6))]))
    # Unaligned, the box holds the copper the move added, not the bite: the suspicion
    # this raises is checked, and cleared, with the template aligned locally.
    assert not [f for f in result.findings if f["kind"] == "class_suspect"], result.findings


def test_a_box_around_a_thin_crack_fits_it(tmp_path):
    image = board()
    cv2.line(image, (265, 104), (296, 136), 255, 1)  # a thin crack across the large pad
    image[130:137, 290:297] = 255  # widening into a hole at its lower end
    crack = (264, 103, 298, 138)
    result = check_pair(job(tmp_path, image, boxes=[("open", padded(crack, 10))]))
    assert not [f for f in result.findings if f["kind"] == "box_fit"], result.findings


def test_an_empty_box_is_not_moved_onto_a_defect_of_the_template(tmp_path):
    template = board()
    template[112:122, 270:280] = 255  # a hole only the template has (the change adds copper)
    result = check_pair(job(tmp_path, board(), template, boxes=[("copper", (130, 200, 155, 225))]))
    assert sorted(kinds(result)) == [("empty_box", "no_change"),
                                     ("missing_label", "template_defect")]


def test_a_grey_pair_with_noise_and_another_exposure(tmp_path):
    rng = np.random.default_rng(0)

    def grey(binary, offset):  # a grey scan: soft edges, noise, its own exposure
        image = np.where(binary == 0, 60.0, 190.0) + offset
        image = cv2.GaussianBlur(image, (0, 0), 1.0) + rng.normal(0, 5, binary.shape)
        return np.clip(image, 0, 255).astype(np.uint8)

    image, template = grey(with_defects("short", "open"), 15), grey(board(), 0)
    result = check_pair(job(tmp_path, image, template, boxes=[("open", padded(OPEN))]))
    finding = _one(result, "missing_label")
    assert finding["detail"] == "defect_like" and finding["proposed_label"] == "short"
    assert len(result.findings) == 1, result.findings
    labelled = check_pair(job(tmp_path, image, template, boxes=[
        ("open", padded(OPEN)), ("short", LABELLED_SHORT)]))
    assert labelled.findings == []


def test_the_automatic_change_threshold_follows_the_contrast():
    from pcbforge.qa.changes import AUTO_MIN, auto_threshold

    binary = board()
    assert auto_threshold(binary) == 64  # 0 and 255: a binarized scan, as DeepPCB's
    soft = np.where(binary == 0, 60, 190).astype(np.uint8)
    assert auto_threshold(soft) == 32  # a quarter of 130
    blank = np.full((64, 64), 200, np.uint8)
    assert auto_threshold(blank) == AUTO_MIN  # nothing on it
    speck = blank.copy()
    speck[30:34, 30:34] = 20
    assert auto_threshold(blank, speck) == 45  # a blank template: the tested image shows it


def test_a_box_on_an_edge_the_scan_displaced_is_still_empty(tmp_path):
    image = board()
    image[30:286, 235:246] = 255
    image[30:286, 237:248] = 0  # the x=240 trace 2 px to the right in this scan: thin bands
    result = check_pair(job(tmp_path, image, boxes=[("short", (225, 150, 255, 180))]))
    assert _one(result, "empty_box")["action"] == "delete"
