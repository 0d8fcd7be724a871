"""Walk a trace through the op rules and resolve the channel groups."""

from __future__ import annotations

import warnings
from collections import defaultdict

import torch.nn as nn

import cpd.groups.rules  # noqa: F401 - fills the registry
from cpd.groups.bindings import AttrBinding, resolve_bindings
from cpd.groups.comb_result import CombResult
from cpd.groups.fast_path import rehearsal_needed
from cpd.groups.group import Group, Member
from cpd.groups.indexing import occurrences
from cpd.groups.model_scan import modules, scanned
from cpd.groups.module_rules import apply_module_rules
from cpd.groups.repair import check, settle
from cpd.groups.rules.registry import RULES, Args, Ctx
from cpd.groups.space import Dim, Space, Tree
from cpd.inputs import ExampleInputs
from cpd.trace.recorder import Trace

# Frozen for a structural reason that says nothing about channels: not listed.
_SILENT = {"kernel size"}


def build_groups(trace: Trace, model: nn.Module, ignore: tuple[str, ...] = (),
                 example_inputs: ExampleInputs | None = None,
                 rehearse: str = "auto") -> CombResult:
    """Run every recorded op through its rule and return the channel groups.

    Args:
        trace: one recorded forward pass of ``model``.
        model: the traced model (read for module names and integer attributes).
        ignore: module names whose parameters must not be pruned.
        example_inputs: the inputs of the trace; given, the groups are checked by a
            rehearsal on fake tensors (:mod:`cpd.groups.repair`) and repaired.
        rehearse: ``"auto"`` skips the rehearsal where it cannot change the groups
            (:mod:`cpd.groups.fast_path`); ``"always"`` runs it whenever
            ``example_inputs`` are given.
    """
    if rehearse not in ("auto", "always"):
        raise ValueError(f"rehearse must be 'auto' or 'always', got {rehearse!r}")
    with scanned(model):
        ctx, produced, snapshots = _walk(trace, model, ignore)
        # Roles describe the traced structure: a head_dim the rehearsal freezes (a size
        # derived from it, or tied to a frozen one) still makes its neighbour a head count.
        sp = ctx.space
        structural = _roles({n: [sp.tree(d) for d in ctx.dims(r)]
                             for n, r in trace.params.items()}, set(sp._frozen_roots()))
        checks: dict = {}
        if example_inputs is not None:
            checks = _check(ctx, trace, model, example_inputs, produced, snapshots, rehearse)
        result = _resolve(ctx, trace, model, produced, structural)
    result.checks = checks
    return result


def _walk(trace: Trace, model: nn.Module, ignore: tuple[str, ...],
          ) -> tuple[Ctx, dict[str, list[list[int]]], list[list[list[Dim] | None]]]:
    """Every op through its rule; the context, the dims each module produced, and per
    op the dims its outputs had when it ran."""
    ctx = Ctx(Space())
    for ref in [*trace.params.values(), *trace.buffers.values()]:
        ctx.set(ref, ctx.fresh(ref.shape, None))
    for ref in trace.inputs:
        ctx.set(ref, ctx.fresh(ref.shape, "model input"))
    produced: dict[str, list[list[int]]] = defaultdict(list)
    snapshots: list[list[list[Dim] | None]] = []  # per op: its outputs' dims then
    maker: dict[int, str] = {}  # tid -> module whose op made it
    weights = {r.tid for r in [*trace.params.values(), *trace.buffers.values()]}
    for i, rec in enumerate(trace.records):
        ctx.module, ctx.op = rec.module, i
        args = Args(rec)
        _note_inputs(ctx, args, rec.module, maker, weights)
        rule = RULES.get(rec.func)
        if rule is not None:
            try:
                rule(ctx, args)
            except Exception as e:  # noqa: BLE001 - a rule bug must not break the model
                _unknown(ctx, args, f"{rec.func} (rule failed: {type(e).__name__}: {e})")
        else:
            _unknown(ctx, args, str(rec.func))
        outs = [ctx.labels.get(o.tid) for o in args.outs()]
        maker.update((o.tid, rec.module) for o in args.outs())
        snapshots.append(outs)
        for dims in outs:
            produced[rec.module].extend(d for d in dims or [] if d)
    for ref in trace.outputs:
        ctx.freeze(ctx.dims(ref), "model output")
    _freeze_ignored(ctx, trace, model, ignore)
    apply_module_rules(ctx, trace, model)
    if ctx.unknown:
        names = ", ".join(sorted(ctx.unknown))
        warnings.warn(
            f"cpd: ops without a channel rule froze the channels they touch: {names}",
            stacklevel=4,
        )
    return ctx, produced, snapshots


def _check(ctx: Ctx, trace: Trace, model: nn.Module, example_inputs: ExampleInputs,
           produced: dict, snapshots: list, rehearse: str) -> dict:
    """Rehearse and repair (:func:`cpd.groups.repair.check`) unless ``rehearse`` is
    ``"auto"`` and no rehearsal can change the groups; the summary either way."""
    try:
        why = (rehearsal_needed(ctx, trace, model, modules(model)) if rehearse == "auto"
               else "asked for")
        if why is None:
            return {"rounds": 0, "clean": True, "fixes": [], "ops": len(trace.records),
                    "rehearsal": "not needed: no prunable size is held by an attribute "
                                 "or passed to an op by model code"}
        checks = check(ctx, trace, model, example_inputs, produced, snapshots)
        checks["rehearsal"] = why
        return checks
    except Exception as e:  # noqa: BLE001 - the check must never break comb
        return {"skipped": f"{type(e).__name__}: {e}"[:300]}


def _note_inputs(ctx: Ctx, args: Args, module: str, maker: dict[int, str],
                 weights: set[int]) -> None:
    """Record the dims of each tensor ``module`` (and each enclosing module) receives
    from outside itself: what its integer attributes may describe."""
    for t in args.tensors():
        if t.tid in weights:
            continue
        src = maker.get(t.tid)
        name = module
        while True:
            if src is not None and (not name or src == name or src.startswith(name + ".")):
                break  # made inside this module, so inside every enclosing one too
            ctx.consumed.setdefault(name, []).extend(d for d in ctx.dims(t) if d)
            if not name:
                break
            name = name.rpartition(".")[0]


def _unknown(ctx: Ctx, args: Args, name: str) -> None:
    """Conservative fallback: freeze every channel the op touches."""
    for t in args.tensors():
        ctx.freeze(ctx.dims(t), f"unsupported op {name}")
    for o in args.outs():
        ctx.set(o, ctx.fresh(o.shape, f"unsupported op {name}"))
    ctx.unknown[name] = ctx.unknown.get(name, 0) + 1


def _freeze_ignored(ctx: Ctx, trace: Trace, model: nn.Module, ignore: tuple[str, ...]) -> None:
    names = modules(model)
    for mod in ignore:
        if mod not in names:
            raise ValueError(f"ignore entry {mod!r} is not a module of the model; "
                             f"use a name from model.named_modules()")
        prefix = f"{mod}." if mod else ""
        for pname, ref in [*trace.params.items(), *trace.buffers.items()]:
            if pname.startswith(prefix):
                ctx.freeze(ctx.dims(ref), f"ignored module {mod}")


def _resolve(ctx: Ctx, trace: Trace, model: nn.Module, produced: dict,
             structural: dict[int, str]) -> CombResult:
    sp = ctx.space
    settle(ctx, model, produced)
    frozen = sp._frozen_roots()
    dims: dict[str, list[Tree]] = {}
    params = set(trace.params)
    for name, ref in [*trace.params.items(), *trace.buffers.items()]:
        dims[name] = [sp.tree(d) for d in ctx.dims(ref)]
    # Leaf roots become groups, numbered in parameter order for stable ids.
    gid: dict[int, int] = {}
    members: dict[int, dict[tuple[str, int], list[list[int]]]] = defaultdict(dict)
    identity: dict[int, list[list[int]]] = {}  # shared [[0], [1], ...] lists (read-only)
    for name, trees in dims.items():
        for k, tree in enumerate(trees):
            for leaf, index in occurrences(tree, identity):
                if sp.size[leaf] < 2:
                    continue
                gid.setdefault(leaf, len(gid))
                old = members[leaf].get((name, k))
                members[leaf][(name, k)] = (
                    index if old is None else [a + b for a, b in zip(old, index)]
                )
    roles = {**_roles(dims, set(frozen)), **{sp.find(r): role for r, role in structural.items()}}
    groups: list[Group] = []
    for leaf, i in gid.items():
        why = frozen.get(leaf)
        if why in _SILENT:
            continue
        mem = [
            Member(name, k, idx, is_param=name in params)
            for (name, k), idx in members[leaf].items()
        ]
        if why is None and not any(m.is_param for m in mem):
            why = "no parameters (buffers only)"  # pruning it would save nothing
        mods = sorted({m.name.rsplit(".", 1)[0] if "." in m.name else "" for m in mem})
        groups.append(Group(
            id=i, size=sp.size[leaf], members=mem, prunable=why is None,
            reasons=[why] if why else [], role=roles.get(leaf, "channel"), modules=mods,
        ))
    # Trees refer to groups by id; leaves that are not groups become -1 (untouched).
    listed = {g.id for g in groups}
    relabel = {leaf: (i if i in listed else -1) for leaf, i in gid.items()}
    dims = {n: [_relabel(t, relabel) for t in ts] for n, ts in dims.items()}
    bindings: list[AttrBinding] = resolve_bindings(
        model, ctx.bindings, produced, sp, frozen, relabel, ctx.forced, ctx.consumed
    )[0]
    return CombResult(
        groups=groups, dims=dims, bindings=bindings, unknown_ops=dict(ctx.unknown),
        output_shapes=[list(s) for s in trace.output_shapes],
    )


def _relabel(t: Tree, relabel: dict[int, int]) -> Tree:
    if t.kind == "leaf":
        return Tree("leaf", t.size, group=relabel.get(t.group, -1))
    return Tree(t.kind, t.size, children=[_relabel(c, relabel) for c in t.children])


def _roles(dims: dict[str, list[Tree]], frozen: set[int]) -> dict[int, str]:
    """A leaf followed by another prunable factor is a head count; one preceded by a
    prunable factor is a per-head dim (q = heads x head_dim, conv = groups x width)."""
    roles: dict[int, str] = {}

    def walk(t: Tree) -> None:
        if t.kind == "prod":
            live = [c for c in t.children if c.kind == "leaf" and c.group >= 0
                    and c.group not in frozen]
            for j, c in enumerate(live):
                if j + 1 < len(live):
                    roles.setdefault(c.group, "heads")
                if j > 0:
                    roles[c.group] = "head_dim"
        for c in t.children:
            walk(c)

    for trees in dims.values():
        for t in trees:
            walk(t)
    return roles
