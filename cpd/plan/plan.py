"""A pruning plan: which channels of which group to keep, in plain JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from cpd.groups.bindings import AttrBinding
from cpd.groups.comb_result import CombResult
from cpd.groups.space import Tree

PLAN_VERSION = 1


@dataclass
class Plan:
    """Kept channel indices per group, plus the structure needed to apply them.

    A plan is self-contained: applying it to a freshly built copy of the original
    architecture gives the pruned architecture, with no re-trace. That is how a
    saved pruned model loads without pickle.

    Attributes:
        keep: group id -> sorted kept channel indices (groups not listed keep all).
        sizes: group id -> original size.
        dims: parameter/buffer name -> per-dim trees (see :mod:`cpd.groups.space`).
        bindings: integer module attributes that follow group sizes.
        meta: free-form provenance (targets, criterion, achieved MACs...).
    """

    keep: dict[int, list[int]]
    sizes: dict[int, int]
    dims: dict[str, list[Tree]]
    bindings: list[AttrBinding] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def from_comb(comb: CombResult, keep: dict[int, list[int]], **meta: Any) -> "Plan":
        sizes = {g.id: g.size for g in comb.groups}
        clean = {g: sorted(int(i) for i in idx) for g, idx in keep.items()
                 if len(idx) < sizes[g]}
        return Plan(keep=clean, sizes=sizes, dims=comb.dims, bindings=comb.bindings,
                    meta=dict(meta))

    def removed(self) -> int:
        """Number of channels removed over all groups."""
        return sum(self.sizes[g] - len(k) for g, k in self.keep.items())

    def to_json(self) -> dict[str, Any]:
        return {
            "version": PLAN_VERSION,
            "keep": {str(g): k for g, k in sorted(self.keep.items())},
            "sizes": {str(g): s for g, s in sorted(self.sizes.items())},
            "dims": {n: [t.to_json() for t in ts] for n, ts in self.dims.items()},
            "bindings": [b.to_json() for b in self.bindings],
            "meta": self.meta,
        }

    @staticmethod
    def from_json(d: dict[str, Any]) -> "Plan":
        if d.get("version") != PLAN_VERSION:
            raise ValueError(f"unsupported plan version {d.get('version')!r} "
                             f"(this cpd reads version {PLAN_VERSION})")
        return Plan(
            keep={int(g): list(k) for g, k in d["keep"].items()},
            sizes={int(g): int(s) for g, s in d["sizes"].items()},
            dims={n: [Tree.from_json(t) for t in ts] for n, ts in d["dims"].items()},
            bindings=[AttrBinding.from_json(b) for b in d.get("bindings", [])],
            meta=dict(d.get("meta", {})),
        )

    def dumps(self) -> str:
        return json.dumps(self.to_json())

    @staticmethod
    def loads(s: str) -> "Plan":
        return Plan.from_json(json.loads(s))
