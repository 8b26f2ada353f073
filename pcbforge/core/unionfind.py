"""Disjoint sets over ``0..n-1``: duplicate clusters, same-scene groups, leakage groups."""

from __future__ import annotations

import numpy as np


class UnionFind:
    """Iterative union-find with path halving (no recursion limits)."""

    def __init__(self, size: int):
        self.parent = np.arange(size, dtype=np.int64)

    def find(self, item: int) -> int:
        parent = self.parent
        while parent[item] != item:
            parent[item] = parent[parent[item]]
            item = parent[item]
        return int(item)

    def union(self, a: int, b: int) -> None:
        """Join the sets of ``a`` and ``b``; the smaller root stays the root."""
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def labels(self) -> np.ndarray:
        return np.array([self.find(i) for i in range(len(self.parent))], dtype=np.int64)
