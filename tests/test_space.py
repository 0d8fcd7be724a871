"""The channel-space algebra: refinement, alignment, conflicts."""

from __future__ import annotations

from cpd.groups.indexing import kept_positions, new_size, occurrences
from cpd.groups.space import Space, Tree


def test_heads_split_and_tie() -> None:
    s = Space()
    q, k = s.new(768), s.new(768)
    (hq,), (dq,) = s.cut([q], "prod", [12, 64])
    (hk,), (dk,) = s.cut([k], "prod", [12, 64])
    s.union(hq, hk)
    s.union(dq, dk)
    assert s.tree([q]).to_json() == s.tree([k]).to_json()


def test_different_factorisations_align() -> None:
    s = Space()
    a, b = s.new(768), s.new(768)
    s.cut([a], "prod", [12, 64])
    s.cut([b], "prod", [24, 32])
    assert s.union(a, b)
    t = s.tree([a])
    assert [s.size[g] for g in t.leaves()] == [12, 2, 32]


def test_misaligned_concats_align() -> None:
    s = Space()
    c, d = s.new(96), s.new(96)
    s.cut([c], "sum", [64, 32])
    s.cut([d], "sum", [32, 64])
    s.union(c, d)
    assert [s.size[g] for g in s.tree([c]).leaves()] == [32, 32, 32]


def test_reshape_across_concat_freezes() -> None:
    s = Space()
    a, b = s.new(8), s.new(8)
    s.cut([a], "sum", [3, 5])
    s.cut([b], "prod", [2, 4])
    assert not s.union(a, b)
    assert s.is_frozen(a)


def test_indexing_of_products_and_sums() -> None:
    t = Tree("prod", 6, children=[Tree("leaf", 2, group=0), Tree("leaf", 3, group=1)])
    occ = dict(occurrences(t))
    assert occ[0] == [[0, 1, 2], [3, 4, 5]]  # heads own contiguous blocks
    assert occ[1] == [[0, 3], [1, 4], [2, 5]]
    assert kept_positions(t, {0: [1], 1: [0, 2]}) == [3, 5]
    assert new_size(t, {0: [1], 1: [0, 2]}) == 2
    u = Tree("sum", 5, children=[Tree("leaf", 2, group=0), Tree("leaf", 3, group=1)])
    assert kept_positions(u, {1: [2]}) == [0, 1, 4]
    assert Tree.from_json(t.to_json()) == t
