import numpy as np

from pcbforge.core.unionfind import UnionFind


def test_sets_join_and_the_smallest_member_is_the_root():
    sets = UnionFind(6)
    sets.union(4, 2)
    sets.union(2, 5)
    sets.union(1, 3)
    assert sets.labels().tolist() == [0, 1, 2, 1, 2, 2]


def test_a_long_chain_needs_no_recursion():
    n = 200_000
    sets = UnionFind(n)
    for i in range(n - 1, 0, -1):
        sets.union(i, i - 1)
    assert sets.find(n - 1) == 0
    assert np.all(sets.labels() == 0)
