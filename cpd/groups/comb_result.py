"""The result of the Comb step: groups plus what apply needs to prune them."""

from __future__ import annotations

from dataclasses import dataclass, field

from cpd.groups.bindings import AttrBinding
from cpd.groups.group import Group
from cpd.groups.space import Tree


@dataclass
class CombResult:
    """Channel groups of a model and the structure that maps them onto tensors.

    Attributes:
        groups: every channel group (prunable or frozen with its reasons).
        dims: per parameter/buffer name, one tree per dim saying which positions
            belong to which group's channels.
        bindings: integer module attributes that follow group sizes.
        unknown_ops: ops without a channel rule (their channels were frozen).
        output_shapes: shapes of the model's output tensors on the example input.
        checks: summary of the rehearsal that checked the groups (rounds, fixes);
            ``rehearsal`` says why it ran, or that it was not needed (rounds 0).
    """

    groups: list[Group]
    dims: dict[str, list[Tree]]
    bindings: list[AttrBinding] = field(default_factory=list)
    unknown_ops: dict[str, int] = field(default_factory=dict)
    output_shapes: list[list[int]] = field(default_factory=list)
    # what the rehearsal on fake tensors found and fixed (see cpd.groups.repair)
    checks: dict = field(default_factory=dict)

    def prunable(self, head_dim: bool = False) -> list[Group]:
        """Groups that may be pruned (per-head dims only when ``head_dim``)."""
        return [g for g in self.groups if g.prunable and (head_dim or g.role != "head_dim")]

    def group(self, gid: int) -> Group:
        for g in self.groups:
            if g.id == gid:
                return g
        raise KeyError(f"no group with id {gid}")

    def to_json(self) -> dict:
        return {
            "groups": [g.to_dict() for g in self.groups],
            "dims": {n: [t.to_json() for t in ts] for n, ts in self.dims.items()},
            "bindings": [b.to_json() for b in self.bindings],
            "unknown_ops": self.unknown_ops,
            "output_shapes": self.output_shapes,
            "checks": self.checks,
        }

    @staticmethod
    def from_json(d: dict) -> "CombResult":
        return CombResult(
            groups=[Group.from_dict(g) for g in d["groups"]],
            dims={n: [Tree.from_json(t) for t in ts] for n, ts in d["dims"].items()},
            bindings=[AttrBinding.from_json(b) for b in d["bindings"]],
            unknown_ops=dict(d.get("unknown_ops", {})),
            output_shapes=[list(s) for s in d.get("output_shapes", [])],
            checks=dict(d.get("checks", {})),
        )
