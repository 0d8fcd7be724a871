"""Channel groups: the output of the Comb step.

A *group* is a set of channels that must be removed together. Channel ``c`` of a
group corresponds, in every member tensor, to the positions ``member.index[c]``
along ``member.dim``. Removing channel ``c`` of the group removes those positions
from every member at once, and the model stays consistent.

Most members map a channel to exactly one position (``index[c] == [p]``). Head
structure shows up as a many-to-one mapping: in a group of attention heads, head
``h`` of a ``q`` projection owns ``head_dim`` consecutive rows of its weight.

Everything here is a plain dataclass that round-trips through JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Member:
    """One tensor dimension that a group's channels live in.

    Attributes:
        name: parameter or buffer name, as in ``model.state_dict()``.
        dim: the dimension of that tensor the channels index.
        index: ``index[c]`` lists the positions along ``dim`` that belong to channel
            ``c``. Every entry has the same length (1 for a plain channel, ``head_dim``
            for a head, the number of repeats for a tensor that is cat'ed to itself).
        is_param: True for an ``nn.Parameter``, False for a buffer (running stats).
    """

    name: str
    dim: int
    index: list[list[int]]
    is_param: bool = True

    @property
    def width(self) -> int:
        """Positions per channel (1 for plain channels, head_dim for heads)."""
        return len(self.index[0]) if self.index else 0


@dataclass
class Group:
    """A set of coupled channels.

    Attributes:
        id: stable integer id within one comb result.
        size: number of channels (heads, for a head group).
        members: the tensor dimensions the channels live in.
        prunable: False when some op or rule froze the group.
        reasons: why the group is frozen (empty when prunable).
        role: ``"channel"`` for plain channels, ``"heads"`` for a group whose channels
            are whole attention heads (or conv groups), ``"head_dim"`` for the
            per-head dimension that all heads share.
        round_to: the kept count must be a multiple of this.
        modules: names of the modules whose parameters are members (for display and
            for ``ignore=``).
    """

    id: int
    size: int
    members: list[Member]
    prunable: bool = True
    reasons: list[str] = field(default_factory=list)
    role: str = "channel"
    round_to: int = 1
    modules: list[str] = field(default_factory=list)

    def params(self) -> list[Member]:
        """Members that are parameters (what importance scores read)."""
        return [m for m in self.members if m.is_param]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "Group":
        members = [Member(**m) for m in d["members"]]
        rest = {k: v for k, v in d.items() if k != "members"}
        return Group(members=members, **rest)
