"""Channel-space algebra: union-find over *atoms* with product and sum refinement.

Every dimension of every traced tensor is described as a row-major product of
atoms (a ``Dim`` is a list of atom ids; a size-1 dimension is the empty list).
An atom is a 1-D space of ``size`` channels. Two atoms are *unioned* when an op
ties their channels elementwise (channel ``i`` of one is channel ``i`` of the
other: residual adds, a conv's input and its weight's input dimension, ...).

An atom can be *refined*:

* as a **product** ``(a, b, ...)`` when a reshape splits its dimension (768 into
  12 heads x 64), so that channel ``i`` is the row-major coordinate tuple;
* as a **sum** ``a + b + ...`` when a cat or split cuts it into consecutive pieces.

Union of two refined atoms aligns their refinements to a common refinement and
unions the pieces. A conflict (a product against a sum, factors that do not
nest) freezes everything involved rather than guessing.

After the trace, the unrefined roots (*leaves*) are the channel groups; a
parameter dimension expands into a tree of leaves that says which of its
positions belong to which channel of which group.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import prod

Dim = list[int]
"""One tensor dimension: the atoms whose row-major product it is."""


@dataclass
class Tree:
    """A resolved dimension: a leaf (group id) or a product / sum of subtrees.

    ``kind`` is ``"leaf"``, ``"prod"`` or ``"sum"``; ``group`` is set for leaves.
    A leaf whose group is ``-1`` stands for a size-1 factor (nothing to prune).
    """

    kind: str
    size: int
    group: int = -1
    children: list["Tree"] = field(default_factory=list)

    def to_json(self) -> dict | int:
        if self.kind == "leaf":
            return [self.group, self.size]  # type: ignore[return-value]
        return {self.kind: [c.to_json() for c in self.children]}

    @staticmethod
    def from_json(j: object) -> "Tree":
        if isinstance(j, list):
            return Tree("leaf", int(j[1]), group=int(j[0]))
        assert isinstance(j, dict) and len(j) == 1, f"bad tree {j!r}"
        kind, kids = next(iter(j.items()))
        ch = [Tree.from_json(k) for k in kids]
        size = prod(c.size for c in ch) if kind == "prod" else sum(c.size for c in ch)
        return Tree(kind, size, children=ch)

    def leaves(self) -> list[int]:
        if self.kind == "leaf":
            return [self.group] if self.group >= 0 else []
        return [g for c in self.children for g in c.leaves()]


class Space:
    """Union-find over atoms, with product/sum refinement of roots."""

    def __init__(self) -> None:
        self.size: list[int] = []
        self.parent: list[int] = []
        self.kind: list[str | None] = []  # refinement of a root: None, "prod", "sum"
        self.children: list[tuple[int, ...]] = []
        self.frozen: dict[int, str] = {}  # atom -> first reason (checked via roots later)

    # ----------------------------------------------------------------- basics
    def new(self, size: int, frozen: str | None = None) -> int:
        """A fresh atom of ``size`` channels, frozen with ``reason`` if given."""
        a = len(self.size)
        self.size.append(size)
        self.parent.append(a)
        self.kind.append(None)
        self.children.append(())
        if frozen:
            self.frozen[a] = frozen
        return a

    def dim(self, size: int, frozen: str | None = None) -> Dim:
        """A fresh dimension of ``size`` (empty when size is 1)."""
        return [] if size == 1 else [self.new(size, frozen)]

    def find(self, a: int) -> int:
        root = a
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[a] != root:  # path compression
            self.parent[a], a = root, self.parent[a]
        return root

    def freeze(self, atoms: Dim, reason: str) -> None:
        for a in atoms:
            r = self.find(a)
            self.frozen.setdefault(r, reason)

    # ------------------------------------------------------------- refinement
    def _refine(self, a: int, kind: str, sizes: list[int]) -> list[int]:
        r = self.find(a)
        assert self.kind[r] is None
        kids = tuple(self.new(s) for s in sizes)
        self.kind[r], self.children[r] = kind, kids
        return list(kids)

    def flat(self, a: int, kind: str) -> list[int]:
        """Expand ``a`` into its finest pieces of the given refinement kind."""
        r = self.find(a)
        if self.kind[r] != kind:
            return [r]
        return [x for c in self.children[r] for x in self.flat(c, kind)]

    def cut(self, dim: Dim, kind: str, sizes: list[int]) -> list[Dim] | None:
        """Re-express ``dim`` as consecutive parts of the given sizes.

        For ``kind="prod"`` the parts are factors (a reshape) and ``dim`` lists factors;
        for ``"sum"`` they are consecutive slices (a split) and ``dim`` lists
        consecutive pieces (use :meth:`split` for a tensor dimension).
        Atoms are refined where a boundary falls inside them. Returns one list of
        atoms per requested size, or None when no consistent refinement exists.
        """
        pieces = [x for a in dim for x in self.flat(a, kind)]
        out: list[Dim] = []
        i = 0
        for want in sizes:
            part: Dim = []
            have = 1 if kind == "prod" else 0
            while have != want:
                if i >= len(pieces):
                    return None
                p = self.find(pieces[i])
                n = self.size[p]
                if kind == "prod":
                    if want % have:
                        return None
                    room = want // have
                else:
                    room = want - have
                if n > room:
                    # A boundary falls inside this atom: refine it, unless it is
                    # already refined the other way (a reshape across a cat).
                    if self.kind[p] is not None or (kind == "prod" and n % room):
                        return None
                    rest = n // room if kind == "prod" else n - room
                    pieces[i : i + 1] = self._refine(p, kind, [room, rest])
                    continue
                if kind == "prod" and want % (have * n):
                    return None
                part.append(p)
                have = have * n if kind == "prod" else have + n
                i += 1
            out.append([a for a in part if self.size[a] > 1])
        if i != len(pieces):
            return None
        return out

    def split(self, dim: Dim, sizes: list[int]) -> list[Dim] | None:
        """Cut a tensor dimension into consecutive slices of the given sizes."""
        return self.cut([self.merge(dim)] if dim else [], "sum", sizes) if dim else None

    def merge(self, dim: Dim) -> int:
        """A single atom equal to the product of ``dim`` (for cat/split of a 2-atom dim)."""
        if len(dim) == 1:
            return dim[0]
        sizes = [self.size[self.find(a)] for a in dim]
        m = self.new(prod(sizes))
        for k, a in zip(self._refine(m, "prod", sizes), dim):
            self.union(k, a)
        return m

    # ------------------------------------------------------------------ union
    def union(self, a: int, b: int) -> bool:
        """Tie atom ``a`` to atom ``b`` elementwise. Returns False (and freezes) on conflict."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return True
        if self.size[ra] != self.size[rb]:
            self.frozen.setdefault(ra, "size mismatch in coupling")
            self.frozen.setdefault(rb, "size mismatch in coupling")
            return False
        ka, kb = self.kind[ra], self.kind[rb]
        if ka is None or kb is None or ka == kb:
            kind = ka or kb
            # Link first: the aligned children unions below then see one root.
            ca, cb = self.children[ra], self.children[rb]
            self.parent[rb] = ra
            if rb in self.frozen:
                self.frozen.setdefault(ra, self.frozen[rb])
            if kind is None:
                return True
            if ka is None:  # ra was a leaf: adopt rb's refinement
                self.kind[ra], self.children[ra] = kind, cb
                return True
            if kb is None:
                return True
            return self._align(list(ca), list(cb), kind, ra)
        self.parent[rb] = ra
        self.frozen.setdefault(ra, "reshape conflicts with concat/split")
        return False

    def _align(self, ca: list[int], cb: list[int], kind: str, root: int) -> bool:
        if [self.size[self.find(x)] for x in ca] == [self.size[self.find(x)] for x in cb]:
            ok = True
            for x, y in zip(ca, cb):
                ok &= self.union(x, y)
            return ok
        # Different refinements of the same space: cut each side at the other's
        # boundaries, then union the finest pieces pairwise.
        sizes_b = [self.size[self.find(x)] for x in cb]
        parts = self.cut(ca, kind, sizes_b)
        if parts is None:
            self.frozen.setdefault(root, "incompatible reshapes of one channel space")
            return False
        ok = True
        for part, y in zip(parts, cb):
            if len(part) == 1:
                ok &= self.union(part[0], y)
            else:
                ok &= self.union(self.merge(part) if kind == "prod" else self._sum_merge(part), y)
        return ok

    def _sum_merge(self, part: list[int]) -> int:
        sizes = [self.size[self.find(a)] for a in part]
        m = self.new(sum(sizes))
        for k, a in zip(self._refine(m, "sum", sizes), part):
            self.union(k, a)
        return m

    def union_dims(self, x: Dim, y: Dim, reason: str = "shape mismatch") -> bool:
        """Tie two dimensions of equal size elementwise (aligning their factors)."""
        if not x and not y:
            return True
        sx = prod(self.size[self.find(a)] for a in x)
        sy = prod(self.size[self.find(a)] for a in y)
        if sx != sy:
            self.freeze(x + y, reason)
            return False
        fx = [p for a in x for p in self.flat(a, "prod")]
        fy = [p for a in y for p in self.flat(a, "prod")]
        parts = self.cut(fx, "prod", [self.size[self.find(a)] for a in fy])
        if parts is None:
            self.freeze(x + y, "incompatible reshapes of one channel space")
            return False
        ok = True
        for part, b in zip(parts, fy):
            ok &= self.union(part[0] if len(part) == 1 else self.merge(part), b)
        return ok

    # ------------------------------------------------------------- resolution
    def is_frozen(self, a: int) -> str | None:
        """Reason the leaf class of ``a`` is frozen, looking at every atom tied to it."""
        return self._frozen_roots().get(self.find(a))

    def _frozen_roots(self) -> dict[int, str]:
        # Freezing is inherited downward through refinements and gathered per root.
        out: dict[int, str] = {}
        stack = [(self.find(a), why) for a, why in self.frozen.items()]
        while stack:
            r, why = stack.pop()
            if r in out:
                continue
            out[r] = why
            stack.extend((self.find(c), why) for c in self.children[r])
        return out

    def tree(self, dim: Dim) -> Tree:
        """Resolve a dimension into a tree over leaf roots."""
        kids = [self._tree(a) for a in dim]
        if not kids:
            return Tree("leaf", 1)
        if len(kids) == 1:
            return kids[0]
        return Tree("prod", prod(k.size for k in kids), children=kids)

    def _tree(self, a: int) -> Tree:
        r = self.find(a)
        if self.kind[r] is None:
            return Tree("leaf", self.size[r], group=r)
        kids = [self._tree(c) for c in self.children[r]]
        return Tree(self.kind[r] or "leaf", self.size[r], children=kids)
