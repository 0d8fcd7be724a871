"""A hypothetical pruning for a rehearsal: a new size for every prunable group.

Each prunable leaf gets a prime size, different from every other leaf of the same
original size: a new size then names its dim (a literal that took it was read
from that dim), and a size derived from attributes (``ratio * key_dim``) cannot be
mistaken for another attribute's multiple. Sizes are never 1: size-1 dims change
broadcasting and which kernels torch picks, and the rehearsal would stop matching
the trace; groups of 2 *grow* instead (the fake copy takes any shape, and only
consistency is checked). Helpers to compare channel dims live here too.
"""

from __future__ import annotations

from functools import lru_cache
from math import prod

from cpd.groups.rules.registry import Ctx
from cpd.groups.space import Dim, Space, Tree
from cpd.trace.recorder import Trace


class Hypothesis:
    """New sizes for the prunable leaves (none with ``prune=False``) and what follows."""

    def __init__(self, ctx: Ctx, trace: Trace, prune: bool = True) -> None:
        sp = self.sp = ctx.space
        frozen = sp._frozen_roots()
        self.dims = {n: [sp.tree(d) for d in ctx.dims(r)]
                     for n, r in [*trace.params.items(), *trace.buffers.items()]}
        leaves = sorted({leaf for n in trace.params for t in self.dims[n] for leaf in t.leaves()})
        self.n: dict[int, int] = {}
        rank: dict[int, int] = {}
        for leaf in leaves if prune else []:
            old = sp.size[leaf]
            if old >= 2 and leaf not in frozen:
                i = rank[old] = rank.get(old, -1) + 1
                primes = _primes_below(old)
                self.n[leaf] = primes[-1 - i % len(primes)] if old > 2 else (3, 5, 7)[i % 3]
        self._memo: dict[int, int] = {}

    def atom(self, a: int) -> int:
        """New size of atom ``a`` (memoised: valid until the space changes)."""
        r = self.sp.find(a)
        v = self._memo.get(r)
        if v is None:
            kind, kids = self.sp.kind[r], self.sp.children[r]
            if kind is None:
                v = self.n.get(r, self.sp.size[r])
            elif kind == "prod":
                v = prod(self.atom(c) for c in kids)
            else:
                v = sum(self.atom(c) for c in kids)
            self._memo[r] = v
        return v

    def size(self, dim: Dim) -> int:
        return prod(self.atom(a) for a in dim)

    def tree_size(self, t: Tree) -> int:
        if t.kind == "leaf":
            return self.n.get(t.group, t.size)
        sizes = [self.tree_size(c) for c in t.children]
        return prod(sizes) if t.kind == "prod" else sum(sizes)

    def keep(self) -> dict[int, list[int]]:
        """The plan's ``keep``: only lengths matter (a group of 2 may "keep" 3)."""
        return {g: list(range(k)) for g, k in self.n.items()}


@lru_cache(maxsize=None)
def _primes_below(n: int) -> tuple[int, ...]:
    """Primes p with 2 <= p < n, ascending."""
    sieve = [True] * max(n, 2)
    out = []
    for p in range(2, n):
        if sieve[p]:
            out.append(p)
            sieve[p * p::p] = [False] * len(sieve[p * p::p])
    return tuple(out)


def old_size(sp: Space, d: Dim) -> int:
    return prod(sp.size[sp.find(a)] for a in d)


def dim_key(sp: Space, d: Dim) -> str:
    return repr(sp.tree(d).to_json())


def same_dim(sp: Space, a: Dim, b: Dim) -> bool:
    return dim_key(sp, a) == dim_key(sp, b)


def distinct(sp: Space, dims: list[Dim]) -> list[Dim]:
    """``dims`` with one representative per channel space."""
    seen: dict[str, Dim] = {}
    for d in dims:
        seen.setdefault(dim_key(sp, d), d)
    return list(seen.values())
