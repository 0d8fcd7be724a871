"""Check the groups by rehearsing the pruning, and repair them until it runs clean.

The trace records sizes as Python ints, not where the model read them from; a
module attribute and another tensor's ``.shape`` look the same. Three steps settle
it, each exact (it observes the model's own code running), none per architecture:

1. *Probe*: attributes of one module bound to the same dims because their values
   are equal (``hidden_size`` and ``all_head_size``; LeViT's ``num_attention_heads``
   and ``attention_ratio``, both 4) are changed one name at a time in a rehearsal
   with nothing pruned; the literals that move are the ones each attribute feeds.
2. *Rehearse*: every prunable group is pruned hypothetically
   (:mod:`cpd.groups.hypothesis`) on fake tensors (:mod:`cpd.groups.rehearse`), and
   every size literal and output shape is compared with the prediction.
3. *Repair* what did not follow (:mod:`cpd.groups.diagnose`): ties, freezes and
   attribute bindings, then rehearse again, up to :data:`MAX_ROUNDS` times.

What is still wrong after that is left to the verification after pruning, which
rolls back the groups that break the forward.
"""

from __future__ import annotations

from typing import Any, Callable

import torch.nn as nn

from cpd.groups.bindings import AttrBinding, resolve_bindings
from cpd.groups.model_scan import modules
from cpd.groups.diagnose import repair
from cpd.groups.hypothesis import Hypothesis
from cpd.groups.indexing import new_size
from cpd.groups.rehearse import rehearse
from cpd.groups.replay import Findings
from cpd.groups.rules.registry import Binding, Ctx
from cpd.groups.space import Dim, Space, Tree
from cpd.inputs import ExampleInputs
from cpd.trace.recorder import TensorRef, Trace

MAX_ROUNDS = 8


def settle(ctx: Ctx, model: nn.Module, produced: dict, relabel: dict[int, int] | None = None,
           ) -> list[AttrBinding]:
    """Resolve attribute bindings; freeze literals no attribute carries; tie the dims
    one attribute sizes. Returns the bindings (trees over roots unless ``relabel``)."""
    sp = ctx.space
    first, unmet = resolve_bindings(model, ctx.bindings, produced, sp, sp._frozen_roots(), None,
                                    ctx.forced, ctx.consumed)
    # Size literals the forward reuses but no attribute can carry pin their dims.
    for b, i in unmet:
        sp.freeze(b.dims[i], f"size {b.value[i]} is a literal in {b.module or 'the model'}")
    # One attribute sizing several dims (a head_dim shared by q, k and v) means
    # those dims must keep equal sizes: tie them.
    for ab in (b for b in first if b.literal):
        for cands in ab.trees:
            for other in cands[1:]:
                _tie_trees(sp, cands[0], other)
    return resolve_bindings(model, ctx.bindings, produced, sp, sp._frozen_roots(), relabel,
                            ctx.forced, ctx.consumed)[0]


def _tie_trees(sp: Space, a: Tree, b: Tree) -> None:
    """Union two resolved trees leaf by leaf when they have the same structure.

    Different structures mean the attribute's meaning is ambiguous (``embed_dim``
    that equals both the residual width and heads x head_dim): no tie; the
    rehearsal judges what it means.
    """
    la, lb = a.leaves(), b.leaves()
    if a.kind == b.kind and [sp.size[x] for x in la] == [sp.size[x] for x in lb]:
        for x, y in zip(la, lb):
            sp.union(x, y)


class _Rehearsals:
    """Runs rehearsals of one traced model under a hypothesis."""

    def __init__(self, ctx: Ctx, trace: Trace, model: nn.Module, example_inputs: ExampleInputs,
                 snapshots: list[list[list[Dim] | None]]) -> None:
        self.ctx, self.trace, self.model, self.inputs = ctx, trace, model, example_inputs
        self.snapshots = snapshots
        self.checks: dict[int, list[tuple[Binding, int]]] = {}
        for b in ctx.bindings:
            for e, key in enumerate(b.keys):
                if key is not None and b.op >= 0:
                    self.checks.setdefault(b.op, []).append((b, e))

    def run(self, hyp: Hypothesis, bindings: list[AttrBinding],
            tweak: Callable[[nn.Module], None] | None = None) -> Findings:
        """Prune per ``hyp`` with ``bindings`` applied, then ``tweak`` the fake copy."""
        from cpd.apply.apply import rebind  # apply imports the plan, which imports groups
        from cpd.plan.plan import Plan

        keep = hyp.keep()
        plan = Plan(keep=keep, sizes={}, dims=hyp.dims, bindings=bindings)
        shapes = {n: tuple(new_size(t, keep) for t in ts) for n, ts in hyp.dims.items()}
        owners = {n.rpartition(".")[0] for n, ts in hyp.dims.items()
                  if any(set(t.leaves()) & set(keep) for t in ts)}
        snapshots = self.snapshots

        def expect(j: int, k: int, ref: TensorRef) -> tuple[int, ...]:
            dims = snapshots[j][k] if k < len(snapshots[j]) else None
            if dims is None or len(dims) != len(ref.shape):
                return ref.shape
            return tuple(hyp.size(d) for d in dims)

        def redo(fake: nn.Module) -> None:
            rebind(fake, plan, owners)
            if tweak is not None:
                tweak(fake)

        return rehearse(self.model, self.inputs, self.trace.records, shapes, redo, expect,
                        self.checks, hyp.size)


def check(ctx: Ctx, trace: Trace, model: nn.Module, example_inputs: ExampleInputs,
          produced: dict, snapshots: list[list[list[Dim] | None]]) -> dict[str, Any]:
    """Probe, rehearse and repair until clean (or :data:`MAX_ROUNDS`); a summary.

    ``snapshots[j]`` holds the dims of op ``j``'s outputs as they were when it ran.
    """
    runs = _Rehearsals(ctx, trace, model, example_inputs, snapshots)
    fixes = _probe_shared(ctx, runs, model, settle(ctx, model, produced))
    found, rounds = Findings(), 0
    for rounds in range(1, MAX_ROUNDS + 1):
        bindings = settle(ctx, model, produced)
        hyp = Hypothesis(ctx, trace)
        found = runs.run(hyp, bindings)
        done = repair(ctx, trace, model, found, hyp, bindings, snapshots)
        fixes += done
        if not done:
            break
    return {"rounds": rounds, "clean": found.clean, "fixes": fixes,
            "checked_ops": found.reached, "ops": len(trace.records),
            "stopped": found.diverged_at, "error": found.error[1] if found.error else None}


def _probe_shared(ctx: Ctx, runs: _Rehearsals, model: nn.Module,
                  bindings: list[AttrBinding]) -> list[str]:
    """Attributes of one module bound to the same dims: change each (one name at a
    time, in every module where it is shared) with nothing pruned, and bind it to
    exactly the literals that move. An attribute that moves none keeps its value;
    one that feeds a size derived from it (``ratio * key_dim``) keeps its value and
    the dims of everything it feeds freeze."""
    shared: dict[str, list[str]] = {}
    seen: dict[tuple[str, str], list[str]] = {}
    for ab in bindings:
        if not ab.owner and ab.index < 0 and ab.container == "int":
            key = (ab.module, repr([[t.to_json() for t in c] for c in ab.trees]))
            seen.setdefault(key, []).append(ab.attr)
    for (module, _), attrs in seen.items():
        for attr in attrs if len(attrs) > 1 else []:
            shared.setdefault(attr, []).append(module)
    mods = modules(model)
    notes: list[str] = []
    for attr, where in shared.items():

        def tweak(fake: nn.Module, attr: str = attr, where: list[str] = where) -> None:
            fmods = dict(fake.named_modules())
            for w in where:
                setattr(fmods[w], attr, getattr(fmods[w], attr) + 1)

        found = runs.run(Hypothesis(ctx, runs.trace, prune=False), bindings, tweak)
        if found.error is not None or found.diverged_at is not None:
            continue  # could not watch every literal: leave it to the rehearsal
        fed: dict[str, list[tuple[Binding, int]]] = {w: [] for w in where}
        for st in found.stale:
            if st.binding.module in fed:
                fed[st.binding.module].append((st.binding, st.elem))
        for w, lits in fed.items():
            value, key = getattr(mods[w], attr), (w, "", attr, -1)
            if lits and all(b.value[e] == value for b, e in lits):
                ctx.forced[key] = []
                for b, e in lits:
                    _follow(ctx, key, b.dims[e])
                notes.append(f"{w}.{attr} follows the sizes it feeds (probed)")
                continue
            ctx.forced[key] = []  # pinned: feeds nothing, or a derived size
            for b, e in lits:
                ctx.space.freeze(b.dims[e], f"size {b.value[e]} in {w} is derived from {attr}")
            notes.append(f"{w}.{attr} keeps its value (probed)")
    return notes


def _follow(ctx: Ctx, key: tuple[str, str, str, int], dim: Dim) -> None:
    dims = ctx.forced[key]
    if dims:
        ctx.space.union_dims(dims[0], dim, f"attribute {key[2]} sizes both")
    dims.append(dim)
