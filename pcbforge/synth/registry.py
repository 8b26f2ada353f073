"""The defect classes: one :class:`DefectSpec` per class in :data:`DEFECTS`.

Everything that differs between classes lives in its spec: whether it adds or removes
copper, its sampler (where and how, drawn from an injected ``numpy.random.Generator``), its
drawing, which conductors it may come near (its clearance rule, checked on the whole
board) and what it must do to the copper inside its box (its topology rule, checked on the
before/after pair). Synthesis (:mod:`pcbforge.synth.compose`), the topology check
(:mod:`pcbforge.synth.topology`) and the class list a synthetic dataset records read this
registry, never a list of names of their own: a new class is one more spec here.

:func:`registered` adds a spec for the length of a ``with`` block (a trial class, a
test). The registry is per process: a class registered at run time exists in worker
processes (``--workers`` > 1, Dask) only if they register it too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

import cv2
import numpy as np

from pcbforge.synth.analysis import BoardAnalysis
from pcbforge.synth.defects import (
    Params,
    draw_strokes,
    sample_copper,
    sample_mousebite,
    sample_open,
    sample_pin_hole,
    sample_short,
    sample_spur,
    stroke_bounds,
)


class DefectClass(str, Enum):
    """The six defect classes of bare-board inspection (DeepPCB's names, in DeepPCB's
    order: the order of :data:`DEFECTS` and of every class list written)."""

    open = "open"
    short = "short"
    mousebite = "mousebite"
    spur = "spur"
    copper = "copper"
    pin_hole = "pin-hole"


class Facts(Protocol):
    """Topology facts of one change (:func:`pcbforge.synth.topology.describe_change`):
    ``added``, ``removed`` (significant px), ``merges``, ``splits``, ``island``, ``hole``."""

    def __getitem__(self, key: str) -> object: ...


#: Where and how: the parameters of one defect on a board, ``None`` when no spot fits.
Sampler = Callable[[BoardAnalysis, np.random.Generator], Params | None]
#: Whether a drawn defect (``region`` 0/1 in a window at ``origin`` x, y) keeps the
#: clearance its class needs to the board's conductors.
ClearanceRule = Callable[[BoardAnalysis, Params, np.ndarray, tuple[int, int]], bool]
#: ``(ok, reason)`` for facts that already show copper added (or removed) as the class does.
TopologyRule = Callable[[Facts], tuple[bool, str]]
#: The brush mask (uint8 0/1) of parameters in a window: ``(params, origin x y, size h w)``.
Drawer = Callable[[Params, tuple[int, int], tuple[int, int]], np.ndarray]
#: Integer ``x0, y0, x1, y1`` (exclusive) around everything the drawer paints.
Bounds = Callable[[Params], tuple[int, int, int, int]]


def anywhere(a: BoardAnalysis, params: Params, region: np.ndarray,
             origin: tuple[int, int]) -> bool:
    """No clearance rule: the topology rule alone decides."""
    return True


@dataclass(frozen=True)
class DefectSpec:
    """One defect class: everything synthesis and checking need to know about it."""

    name: str  # the label written, as in DeepPCB where DeepPCB has the class
    adds_copper: bool  # adds copper over substrate; else removes it from copper
    sample: Sampler
    topology: TopologyRule
    clearance: ClearanceRule = anywhere
    draw: Drawer = draw_strokes
    bounds: Bounds = stroke_bounds

    def region(self, a: BoardAnalysis, params: Params
               ) -> tuple[np.ndarray, tuple[int, int]] | None:
        """Pixels the defect changes, as (mask, (x0, y0)) clipped to the board; ``None`` if
        it changes nothing. Copper is added over substrate or removed from copper only."""
        h, w = a.shape
        x0, y0, x1, y1 = self.bounds(params)
        cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if cx1 <= cx0 or cy1 <= cy0:
            return None
        brush = self.draw(params, (cx0, cy0), (cy1 - cy0, cx1 - cx0))
        copper = a.copper[cy0:cy1, cx0:cx1]
        region = brush & ((1 - copper) if self.adds_copper else copper)
        if not region.any():
            return None
        return region, (cx0, cy0)


# --------------------------------------------------------------------------- clearance


def nets_near(a: BoardAnalysis, region: np.ndarray, origin: tuple[int, int],
              reach: float) -> set[int]:
    """Conductors within ``reach`` px of ``region`` (0/1, in a window at ``origin``)."""
    r = max(1, int(round(reach)))
    x, y = origin
    h, w = region.shape
    y0, x0 = max(y - r, 0), max(x - r, 0)
    y1, x1 = min(y + h + r, a.shape[0]), min(x + w + r, a.shape[1])
    padded = np.zeros((y1 - y0, x1 - x0), np.uint8)
    padded[y - y0:y - y0 + h, x - x0:x - x0 + w] = region
    near = cv2.dilate(padded, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1,) * 2))
    ids = np.unique(a.nets[y0:y1, x0:x1][near > 0])
    return {int(i) for i in ids if i}


def _clear_of_every_net(a: BoardAnalysis, params: Params, region: np.ndarray,
                        origin: tuple[int, int]) -> bool:
    return not nets_near(a, region, origin, 6.0 * a.scale)


def _near_one_net(a: BoardAnalysis, params: Params, region: np.ndarray,
                  origin: tuple[int, int]) -> bool:
    return len(nets_near(a, region, origin, 4.0 * a.scale)) == 1


def _near_its_two_nets(a: BoardAnalysis, params: Params, region: np.ndarray,
                       origin: tuple[int, int]) -> bool:
    return nets_near(a, region, origin, 3.0 * a.scale) == set(params["nets"])  # type: ignore


def _deep_in_copper(a: BoardAnalysis, params: Params, region: np.ndarray,
                    origin: tuple[int, int]) -> bool:
    x, y = origin
    h, w = region.shape
    return bool((a.dist_copper[y:y + h, x:x + w][region > 0] >= 2.5 * a.scale).all())


# --------------------------------------------------------------------------- topology


def _joins_two(facts: Facts) -> tuple[bool, str]:
    return (True, "") if facts["merges"] else (False, "joins no two conductors")


def _cuts_one(facts: Facts) -> tuple[bool, str]:
    return (True, "") if facts["splits"] else (False, "cuts no conductor in two")


def _isolated_island(facts: Facts) -> tuple[bool, str]:
    if facts["merges"]:
        return False, "joins two conductors"
    return (True, "") if facts["island"] else (False, "no isolated copper island")


def _attached_growth(facts: Facts) -> tuple[bool, str]:
    if facts["merges"]:
        return False, "joins two conductors"
    return (False, "isolated island, not attached") if facts["island"] else (True, "")


def _enclosed_hole(facts: Facts) -> tuple[bool, str]:
    # A ring-shaped hole leaves copper inside it: that is still a pin-hole, and a hole
    # enclosed by copper cannot cut a conductor through.
    return (True, "") if facts["hole"] else (False, "no hole enclosed by copper")


def _edge_bite(facts: Facts) -> tuple[bool, str]:
    if facts["splits"]:
        return False, "cuts a conductor"
    return (False, "hole enclosed by copper, not a bite") if facts["hole"] else (True, "")


# --------------------------------------------------------------------------- the registry


#: Every defect class by name, in the order class lists are written (DeepPCB's first).
DEFECTS: dict[str, DefectSpec] = {spec.name: spec for spec in (
    DefectSpec(DefectClass.open.value, adds_copper=False, sample=sample_open,
               topology=_cuts_one),
    DefectSpec(DefectClass.short.value, adds_copper=True, sample=sample_short,
               topology=_joins_two, clearance=_near_its_two_nets),
    DefectSpec(DefectClass.mousebite.value, adds_copper=False, sample=sample_mousebite,
               topology=_edge_bite),
    DefectSpec(DefectClass.spur.value, adds_copper=True, sample=sample_spur,
               topology=_attached_growth, clearance=_near_one_net),
    DefectSpec(DefectClass.copper.value, adds_copper=True, sample=sample_copper,
               topology=_isolated_island, clearance=_clear_of_every_net),
    DefectSpec(DefectClass.pin_hole.value, adds_copper=False, sample=sample_pin_hole,
               topology=_enclosed_hole, clearance=_deep_in_copper),
)}


def class_names() -> list[str]:
    """The names of every registered class, in registry order (a dataset's class list)."""
    return list(DEFECTS)


def defect_spec(name: str) -> DefectSpec:
    """The spec of class ``name``; an unknown name raises and lists the valid ones."""
    spec = DEFECTS.get(name)
    if spec is None:
        raise ValueError(f"unknown defect class {name!r}; valid classes: "
                         f"{', '.join(DEFECTS)}")
    return spec


def defect_class(name: str) -> str:
    """The registered class called ``name``: a :class:`DefectClass` for DeepPCB's six, the
    name itself for a class registered besides them; an unknown name raises."""
    spec = defect_spec(name)
    try:
        return DefectClass(spec.name)
    except ValueError:
        return spec.name


@contextmanager
def registered(spec: DefectSpec) -> Iterator[DefectSpec]:
    """Register ``spec`` for the ``with`` block (after every class already registered) and
    unregister it after; a name already taken raises."""
    if spec.name in DEFECTS:
        raise ValueError(f"defect class {spec.name!r} is already registered")
    DEFECTS[spec.name] = spec
    try:
        yield spec
    finally:
        DEFECTS.pop(spec.name, None)
