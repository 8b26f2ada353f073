"""The settings of ``pcbforge qa``: every threshold, with what it means.

Pixel sizes are for boards scanned near DeepPCB's ~48 px/mm; scale them with the
resolution of other scans.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class QAParams(BaseModel):
    """How pairs are registered and labels checked (a recipe's ``qa`` section too)."""

    model_config = ConfigDict(extra="forbid")

    #: Which side of the threshold is copper: ``dark`` (DeepPCB, pcbforge's synthetic
    #: boards) or ``light`` (bright copper or pads on a dark solder mask).
    copper: Literal["dark", "light"] = "dark"
    # --- registration -------------------------------------------------------------------
    #: A pair whose global shift is larger than this is ``misregistered`` (px).
    shift_tolerance_px: float = Field(1.5, ge=0)
    #: ... or whose rotation is larger than this (degrees).
    rotation_tolerance_deg: float = Field(0.2, ge=0)
    #: ... or whose local displacement, after the global fit, exceeds this at its 95th
    #: percentile over the tiles (px): the second scan stretched or warped so much that
    #: features move by more than a 3x3 opening forgives.
    residual_tolerance_px: float = Field(3.0, ge=0)
    #: Tile side for the local displacement map (px).
    tile_px: int = Field(128, ge=32)
    #: Shifts beyond this are not searched (px); a pair further apart is misregistered
    #: with reason ``unregistrable``.
    max_shift_px: int = Field(32, ge=1)
    # --- differences ---------------------------------------------------------------------
    #: Grey levels (0-255) a pixel must differ from every template pixel within
    #: ``edge_tolerance_px`` to count as changed; ``None``: a quarter of the grey distance
    #: between copper and substrate, in whichever image of the pair shows both (64 on a
    #: binarized scan such as DeepPCB's, less on a soft grey or colour one), at least 16.
    diff_threshold: int | None = Field(None, ge=1, le=255)
    #: Edge noise allowance: a pixel matching the template anywhere this close is unchanged.
    edge_tolerance_px: int = Field(1, ge=0, le=5)
    #: Changes this close together form one region (px).
    merge_px: int = Field(6, ge=0)
    #: Change regions smaller than this (changed px, after a 3x3 opening) are noise.
    min_region_px: int = Field(12, ge=1)
    # --- label checks --------------------------------------------------------------------
    #: A box with fewer changed px than this inside, thick or thin (a shallow bite changes
    #: a few px at the edge tolerance), is ``empty_box``.
    empty_box_px: int = Field(6, ge=0)
    #: How far from an empty box an unexplained region may be to call it ``misplaced_box``
    #: (px, between centres).
    misplaced_radius_px: int = Field(400, ge=0)
    #: An unexplained region whose changes a local shift of at most this many px explains
    #: is ``misregistration_like`` rather than ``defect_like``.
    local_shift_px: int = Field(6, ge=0)
    #: Share of a region's changed px a local shift must explain to call it
    #: misregistration.
    local_shift_share: float = Field(0.8, gt=0, le=1)
    #: ``class_suspect`` when at least this share of a box's change has the polarity its
    #: class forbids (copper added under open/mousebite/pin-hole, removed under
    #: short/spur/copper).
    polarity_share: float = Field(0.7, gt=0.5, le=1)
    #: Margin a fitted box keeps around its change (px; DeepPCB's annotation tool: ~10).
    pad_px: int = Field(10, ge=0)
    #: ``box_fit/too_large`` when the box's area exceeds this many times the padded
    #: change's.
    too_large_ratio: float = Field(4.0, gt=1)
    #: ``box_fit/cuts_change`` when this share of the change region lies outside the box.
    cut_share: float = Field(0.3, gt=0, le=1)
    #: Same-class boxes overlapping by this IoU are duplicates.
    duplicate_iou: float = Field(0.7, gt=0, le=1)
    #: ``size_outlier`` beyond this many robust deviations (MAD) of the class's log area
    #: or log aspect ratio.
    outlier_mad: float = Field(4.0, gt=0)
    #: Boxes with a side shorter than this are degenerate (px).
    min_box_side_px: float = Field(2.0, ge=0)


__all__ = ["QAParams"]
