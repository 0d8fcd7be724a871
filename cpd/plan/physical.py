"""Physical removal at every step of an iterative schedule (``mode="physical"``).

The schedule's selection, targets and cumulative keep-set always live in the index
space of the *original* model's groups (``comb``): channel ``c`` of group ``g`` is
channel ``c`` of the unpruned model. After a physical step the model is smaller, so:

* **Applying** a step removes, from the already pruned model, the channels the new
  keep-set drops that the old one still had. :func:`relative_plan` expresses that
  increment on the original dim trees with every group's leaf resized to its current
  size (position ``j`` of group ``g`` is original channel ``old[g][j]``); slicing
  composes, and bound attributes (``num_heads``...) get the cumulative sizes, so the
  result equals the original model with the cumulative plan applied.
* **Scoring** the next step needs the criterion prepared on the smaller model:
  :func:`current_groups` derives its groups from the original comb (same ids,
  positions in the pruned tensors) and :class:`PhysicalState` maps the scores back,
  channel ``j`` of a group being original channel ``keep[g][j]``. A group whose
  removal broke the forward keeps its channels from then on (with a warning).
"""

from __future__ import annotations

import dataclasses
import warnings

import torch
from torch import nn

from cpd.apply.verify import apply_checked
from cpd.groups.comb_result import CombResult
from cpd.groups.group import Group, Member
from cpd.groups.indexing import occurrences
from cpd.groups.space import Tree
from cpd.inputs import ExampleInputs
from cpd.plan.plan import Plan
from cpd.plan.select import Keep
from cpd.scores.base import Criterion

MODES = ("mask", "physical")


def check_mode(mode: str) -> str:
    """Return ``mode`` if it is a schedule mode, else raise a one-line ValueError."""
    if mode not in MODES:
        raise ValueError(f"mode must be 'mask' (zero removed channels, remove them at the end) "
                         f"or 'physical' (remove them at every step), got {mode!r}")
    return mode


def remaining(comb: CombResult, keep: Keep) -> dict[int, list[int]]:
    """Original channel indices each group still has (all of them if not in ``keep``)."""
    return {g.id: list(keep[g.id]) if g.id in keep else list(range(g.size)) for g in comb.groups}


def resize_tree(tree: Tree, sizes: dict[int, int]) -> Tree:
    """``tree`` with each group leaf resized to ``sizes[group]`` (a pruned model's dim)."""
    if tree.kind == "leaf":
        return Tree("leaf", sizes.get(tree.group, tree.size) if tree.group >= 0 else tree.size,
                    group=tree.group)
    kids = [resize_tree(c, sizes) for c in tree.children]
    size = 1
    if tree.kind == "prod":
        for c in kids:
            size *= c.size
    else:
        size = sum(c.size for c in kids)
    return Tree(tree.kind, size, children=kids)


def relative_plan(comb: CombResult, old: Keep, new: Keep) -> Plan:
    """A plan, for the model already pruned by ``old``, that leaves it pruned by ``new``.

    Both keep-sets are in ``comb``'s (original) index space and ``new`` keeps a subset
    of ``old`` in every group. The plan's group ids are the original ones; its leaf
    sizes and kept indices are positions in the pruned model.

    Raises:
        ValueError: ``new`` keeps a channel that ``old`` already removed.
    """
    now = remaining(comb, old)
    sizes = {g: len(k) for g, k in now.items()}
    inc: Keep = {}
    for gid, kept in new.items():
        where = {c: j for j, c in enumerate(now[gid])}
        missing = [c for c in kept if c not in where]
        if missing:
            raise ValueError(f"group {gid} would bring back removed channels {missing[:5]}; "
                             "a later step may only remove more")
        if len(kept) < sizes[gid]:
            inc[gid] = sorted(where[c] for c in kept)
    dims = {n: [resize_tree(t, sizes) for t in ts] for n, ts in comb.dims.items()}
    bindings = [dataclasses.replace(b, trees=[[resize_tree(t, sizes) for t in c] for c in b.trees])
                for b in comb.bindings]
    return Plan(keep=inc, sizes=sizes, dims=dims, bindings=bindings)


def current_groups(comb: CombResult, groups: list[Group], keep: Keep) -> list[Group]:
    """``groups`` as they are in the model pruned by ``keep``: same ids, current positions.

    Derived from the original dim trees with every group leaf resized to its kept
    count (:func:`resize_tree`), exactly as the comb builds members from its trees; so
    channel ``j`` of a returned group is original channel ``keep[g][j]`` by
    construction. Re-tracing the pruned model instead would cost a comb per step and
    can see coincidences the original did not (3 heads left next to a
    ``(3, heads, head_dim)`` qkv reshape would freeze the heads).
    """
    rem = remaining(comb, keep)
    sizes = {g: len(k) for g, k in rem.items()}
    wanted = {g.id for g in groups}
    rows: dict[int, dict[tuple[str, int], list[list[int]]]] = {g: {} for g in wanted}
    for name, trees in comb.dims.items():
        for k, tree in enumerate(trees):
            for leaf, index in occurrences(resize_tree(tree, sizes)):
                if leaf not in wanted:
                    continue
                old = rows[leaf].get((name, k))
                rows[leaf][(name, k)] = index if old is None else [a + b for a, b in zip(old, index)]
    out = []
    for g in groups:
        kinds = {(m.name, m.dim): m.is_param for m in g.members}
        members = [Member(n, d, idx, is_param=kinds.get((n, d), True))
                   for (n, d), idx in rows[g.id].items()]
        out.append(dataclasses.replace(g, size=sizes[g.id], members=members))
    return out


class PhysicalState:
    """What physical mode tracks on top of the schedule: the current model's groups.

    Args:
        comb: the original model's comb (the schedule's index space).
        groups: the original groups the schedule may prune.
        example_inputs, ignore: as given to the schedule (for the re-comb).

    Attributes:
        rolled_back: original groups whose removal broke the forward (kept as they are).
    """

    def __init__(self, comb: CombResult, groups: list[Group], example_inputs: ExampleInputs,
                 ignore: tuple[str, ...]) -> None:
        self.comb, self.groups = comb, groups
        self.example_inputs, self.ignore = example_inputs, ignore
        self.sizes = {g.id: g.size for g in comb.groups}
        self.rolled_back: list[int] = []

    @property
    def fixed(self) -> set[int]:
        """Original groups that no later step may prune further."""
        return set(self.rolled_back)

    def rebind(self, model: nn.Module, keep: Keep, criterion: Criterion) -> None:
        """Prepare ``criterion`` on the pruned ``model``'s groups (original ids)."""
        wanted = [g for g in self.groups if g.id not in self.rolled_back]
        criterion.prepare(model, current_groups(self.comb, wanted, keep))

    def scores(self, raw: dict[int, torch.Tensor], keep: Keep) -> dict[int, torch.Tensor]:
        """Current-group scores -> original-group scores (0 at removed channels)."""
        out: dict[int, torch.Tensor] = {}
        for gid, s in raw.items():
            if len(s) == self.sizes[gid]:
                out[gid] = s
                continue
            full = torch.zeros(self.sizes[gid], dtype=s.dtype, device=s.device)
            full[torch.tensor(keep[gid], dtype=torch.long, device=s.device)] = s
            out[gid] = full
        return out

    def apply(self, model: nn.Module, old: Keep, new: Keep) -> Keep:
        """Prune ``model`` (pruned by ``old``) in place to ``new``; return the keep applied.

        Groups whose removal breaks the forward are rolled back to ``old`` and fixed.
        """
        plan = relative_plan(self.comb, old, new)
        if not plan.keep:
            return new
        _, _, bad = apply_checked(model, self.example_inputs, plan, self.comb.output_shapes,
                                  inplace=True)
        out = dict(new)
        for gid in bad:
            warnings.warn(f"physical pruning: removing channels of group {gid} broke the "
                          "forward; it keeps its channels from now on", stacklevel=3)
            self.rolled_back.append(gid)
            if gid in old:
                out[gid] = list(old[gid])
            else:
                out.pop(gid, None)
        return out
