"""What a defect does to the copper inside its box, checked from the pixels.

A label is only right if the pair says so: a short must join two conductors that
were separate, an open must cut one in two, and so on (each class's rule is in its
spec, :data:`pcbforge.synth.registry.DEFECTS`). :func:`check_topology` measures the
facts of the change from the binarized template (``before``) to the tested image
(``after``) inside a box and applies the class's rule: the same check for generated
defects and for hand-labelled real ones.

Acquisition nuisance (a pixel or two of misregistration, rough edges) changes
edges everywhere, so changes are counted only where they are more than 2 px
thick (or connected to such a part), and conductors are matched by overlap,
which a small shift does not break.
"""

from __future__ import annotations

import cv2
import numpy as np

from pcbforge.synth.registry import DefectClass, Facts, defect_class, defect_spec

# The class names live in the registry; named here too for callers that check boxes.
__all__ = ["FACTS", "MIN_OVERLAP", "MIN_PIECE", "DefectClass", "check_facts",
           "check_topology", "defect_class", "describe_change", "keeps_topology",
           "significant"]


#: Pixels two regions must share to count as overlapping (more than nuisance contact).
MIN_OVERLAP = 4
#: Pixels a piece of a cut conductor must keep to count as a piece: the copper crumbs a
#: ragged bite leaves behind do not make it an open.
MIN_PIECE = 25

_KERNEL3 = np.ones((3, 3), np.uint8)


def significant(change: np.ndarray) -> np.ndarray:
    """Parts of a 0/1 change mask that are more than 2 px thick, with whatever thin
    parts are connected to them (a thin short stays whole, an edge band goes)."""
    # Outside the crop counts as unchanged: a band along the crop's edge is still thin.
    core = cv2.morphologyEx(change, cv2.MORPH_OPEN, _KERNEL3, borderType=cv2.BORDER_CONSTANT,
                            borderValue=0)
    if not core.any():
        return core
    n, labels = cv2.connectedComponents(change, connectivity=8)
    keep = np.zeros(n, bool)
    keep[labels[core > 0]] = True
    keep[0] = False
    return keep.view(np.uint8)[labels]


def _overlaps(a_labels: np.ndarray, na: int, b_labels: np.ndarray, nb: int) -> np.ndarray:
    """(na, nb) pixel counts shared by component i of a and component j of b; row and
    column 0 count the background (so a row's sum is its component's size)."""
    pairs = a_labels.astype(np.int64) * nb + b_labels
    return np.bincount(pairs.ravel(), minlength=na * nb).reshape(na, nb)


def _max_partners(table: np.ndarray, least: int = MIN_OVERLAP) -> int:
    """Most components of one side that a single component of the other side meets
    with at least ``least`` pixels."""
    if table.shape[0] <= 1 or table.shape[1] <= 1:
        return 0
    return int((table[1:, 1:] >= least).sum(axis=1).max())


def _joins(after: np.ndarray, lb: np.ndarray, nb: int) -> bool:
    na, la = cv2.connectedComponents(after, connectivity=8)
    return _max_partners(_overlaps(la, na, lb, nb)) >= 2


def _cuts(after: np.ndarray, lb: np.ndarray, nb: int) -> bool:
    na, la = cv2.connectedComponents(after, connectivity=8)
    return _max_partners(_overlaps(la, na, lb, nb).T, MIN_PIECE) >= 2


class _Facts:
    """Topology facts of one change, each computed when first asked for (a check of one
    class needs only some of them).

    A change that only adds copper cannot cut a conductor or open a hole (every substrate
    part of ``after`` lies in one of ``before``), and one that only removes copper cannot
    join conductors or make an island (every copper part of ``after`` lies in one of
    ``before``): those facts are then false without labelling anything."""

    def __init__(self, before: np.ndarray, after: np.ndarray) -> None:
        before = (np.asarray(before) > 0).view(np.uint8)
        after = (np.asarray(after) > 0).view(np.uint8)
        if before.shape != after.shape or before.ndim != 2:
            raise ValueError(f"before and after must be 2-D crops of one shape, got "
                             f"{before.shape} and {after.shape}")
        self.before, self.after = before, after
        self._cache: dict[str, object] = {}
        self._adds = bool((after > before).any())
        self._removes = bool((after < before).any())

    def __getitem__(self, key: str) -> object:
        if key not in self._cache:
            self._cache[key] = getattr(self, f"_{key}")()
        return self._cache[key]

    def _added_mask(self) -> np.ndarray:
        return significant(self.after & (1 - self.before))

    def _removed_mask(self) -> np.ndarray:
        return significant(self.before & (1 - self.after))

    def _added(self) -> int:
        return int(self["added_mask"].sum())

    def _removed(self) -> int:
        return int(self["removed_mask"].sum())

    def _copper_before(self) -> tuple[int, np.ndarray]:
        return cv2.connectedComponents(self.before, connectivity=8)

    def _copper_after(self) -> tuple[int, np.ndarray]:
        return cv2.connectedComponents(self.after, connectivity=8)

    def _table(self) -> np.ndarray:
        (nb, lb), (na, la) = self["copper_before"], self["copper_after"]
        return _overlaps(la, na, lb, nb)  # after x before

    # A join or a cut counts when the significant change makes it: nuisance alone can
    # sever a sliver at the crop's edge, and that must not turn a bite into an open.
    def _merges(self) -> bool:
        if not self._adds:
            return False
        nb, lb = self["copper_before"]
        return bool(_max_partners(self["table"]) >= 2
                    and not _joins(self.after & (1 - self["added_mask"]), lb, nb))

    def _splits(self) -> bool:
        if not self._removes:
            return False
        nb, lb = self["copper_before"]
        return bool(_max_partners(self["table"].T, MIN_PIECE) >= 2
                    and not _cuts(self.after | self["removed_mask"], lb, nb))

    def _island(self) -> bool:
        # A copper component of the tested crop that meets no conductor of the template
        # and is not nuisance-sized.
        if not self._adds:
            return False
        na, _ = self["copper_after"]
        table = self["table"]
        sizes = table.sum(axis=1)
        return bool(na > 1 and ((table[1:, 1:] < MIN_OVERLAP).all(axis=1)
                                & (sizes[1:] >= 2 * MIN_OVERLAP)).any())

    def _hole(self) -> bool:
        # A substrate component of the tested crop that meets no substrate of the template
        # (4-connected, the dual of 8-connected copper).
        if not self._removes:
            return False
        ns_b, sb = cv2.connectedComponents(1 - self.before, connectivity=4)
        ns_a, sa = cv2.connectedComponents(1 - self.after, connectivity=4)
        stable = _overlaps(sa, ns_a, sb, ns_b)
        hole_sizes = stable.sum(axis=1)
        return bool(ns_a > 1 and ((stable[1:, 1:] < MIN_OVERLAP).all(axis=1)
                                  & (hole_sizes[1:] >= 2 * MIN_OVERLAP)).any())


FACTS = ("added", "removed", "merges", "splits", "island", "hole")


def describe_change(before: np.ndarray, after: np.ndarray) -> dict[str, object]:
    """Topology facts of the change from ``before`` to ``after`` (0/1 copper crops)."""
    facts = _Facts(before, after)
    return {key: facts[key] for key in FACTS}


def keeps_topology(before: np.ndarray, after: np.ndarray) -> bool:
    """Whether the change from ``before`` to ``after`` (0/1 copper crops) makes no join,
    cut, island or hole (see :func:`describe_change`); stops at the first it finds."""
    facts = _Facts(before, after)
    return not any(facts[key] for key in ("merges", "splits", "island", "hole"))


def check_facts(name: str, facts: Facts) -> tuple[bool, str]:
    """Whether ``facts`` (from :func:`describe_change`) show a defect of class ``name``:
    copper added (or removed) as the class does, and then its class's topology rule."""
    spec = defect_spec(name)
    if spec.adds_copper and not facts["added"]:
        return False, "no copper added"
    if not spec.adds_copper and not facts["removed"]:
        return False, "no copper removed"
    return spec.topology(facts)


def check_topology(name: str, before: np.ndarray, after: np.ndarray) -> tuple[bool, str]:
    """Check one box: ``before`` and ``after`` are the template's and the tested image's
    copper (non-zero = copper) inside it. Returns ``(ok, reason)``."""
    return check_facts(name, _Facts(before, after))
