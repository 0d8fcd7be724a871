"""Positions along a tensor dim that belong to each channel of a group.

A dim's :class:`~cpd.groups.space.Tree` says how its positions decompose: a
product is row-major (position = sum of coordinate * stride), a sum is a
concatenation (position = offset + inner position).
"""

from __future__ import annotations

from itertools import product as cartesian
from math import prod

from cpd.groups.space import Tree


def occurrences(tree: Tree, identity: dict[int, list[list[int]]] | None = None,
                ) -> list[tuple[int, list[list[int]]]]:
    """Every leaf of ``tree`` with, per channel of the leaf, its positions in ``tree``.

    Returns ``[(leaf_group, index)]`` where ``index[c]`` lists positions. A leaf that
    occurs twice (a tensor cat'ed with itself) is returned twice.

    ``identity`` caches the ``[[0], [1], ...]`` index of a bare leaf per size; the
    caller passes one dict for a whole build so that the hundreds of plain channel
    dims of a large CNN share those lists instead of rebuilding them (most of the
    grouping time on a ResNet-50). The shared lists are never mutated.
    """
    if tree.kind == "leaf":
        if tree.group < 0:
            return []
        if identity is None:
            return [(tree.group, [[c] for c in range(tree.size)])]
        idx = identity.get(tree.size)
        if idx is None:
            idx = identity[tree.size] = [[c] for c in range(tree.size)]
        return [(tree.group, idx)]
    out: list[tuple[int, list[list[int]]]] = []
    if tree.kind == "sum":
        off = 0
        for child in tree.children:
            out += [(g, [[p + off for p in ps] for ps in idx]) for g, idx in occurrences(child, identity)]
            off += child.size
        return out
    sizes = [c.size for c in tree.children]
    strides = [prod(sizes[j + 1 :]) for j in range(len(sizes))]
    for j, child in enumerate(tree.children):
        others = [range(s) for i, s in enumerate(sizes) if i != j]
        other_strides = [st for i, st in enumerate(strides) if i != j]
        rest = sorted(sum(c * st for c, st in zip(combo, other_strides)) for combo in cartesian(*others))
        for g, idx in occurrences(child, identity):
            out.append((g, [sorted(p * strides[j] + r for p in ps for r in rest) for ps in idx]))
    return out


def kept_positions(tree: Tree, keep: dict[int, list[int]]) -> list[int]:
    """Positions of ``tree`` that survive when each group keeps ``keep[group]``.

    Groups missing from ``keep`` keep everything. The result is sorted, so the
    pruned tensor keeps its channels in their original order.
    """
    if tree.kind == "leaf":
        if tree.group >= 0 and tree.group in keep:
            return sorted(keep[tree.group])
        return list(range(tree.size))
    if tree.kind == "sum":
        out: list[int] = []
        off = 0
        for child in tree.children:
            out += [p + off for p in kept_positions(child, keep)]
            off += child.size
        return out
    sizes = [c.size for c in tree.children]
    strides = [prod(sizes[j + 1 :]) for j in range(len(sizes))]
    per = [kept_positions(c, keep) for c in tree.children]
    return sorted(sum(p * s for p, s in zip(combo, strides)) for combo in cartesian(*per))


def new_size(tree: Tree, keep: dict[int, list[int]]) -> int:
    """Size of ``tree``'s dim after pruning."""
    if tree.kind == "leaf":
        return len(keep[tree.group]) if tree.group in keep else tree.size
    sizes = [new_size(c, keep) for c in tree.children]
    return prod(sizes) if tree.kind == "prod" else sum(sizes)
