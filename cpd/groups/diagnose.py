"""What a rehearsal found, turned into the constraints the program as written needs.

* A stale literal that kept its old value came from something the plan did not
  change: a module attribute that holds that value now follows the literal's dims
  (a *forced* binding); if there is none the value is a constant and the dims freeze.
* A stale literal that changed to the new size of another channel dim the same
  module handles was read from that dim's shape: the two dims are tied (PvT's
  ``reshape(B, num_channels, -1)`` of a conv output, PvT-v2's attention output).
* An attribute that moved the literal the way its own binding moved (a guess that
  matched by value) is made to follow the literal's dims instead.
* A size derived from attributes (``ratio * key_dim``) cannot follow: the
  attributes that moved it keep their values (*pinned*) and its dims freeze.
* An output of the wrong shape with no literal to blame freezes the dims that moved.
* A check in the model's own code that raised (``if C != self.num_channels``): the
  module's attribute holding the old size of the one input dim that moved follows
  it, in every module of that type; if none does, the moved input dims freeze.

A source that cannot be told apart (two dims with the new value) freezes rather
than guesses. Diagnosis reads the state the rehearsal ran with; the actions are
applied together at the end.
"""

from __future__ import annotations

from typing import Any

import torch.nn as nn
from torch.utils._pytree import tree_flatten

from cpd.apply.modules import has_fixer, traced_attrs
from cpd.groups.bindings import AttrBinding, ForcedKey
from cpd.groups.model_scan import int_attrs, modules
from cpd.groups.hypothesis import Hypothesis, distinct, old_size, same_dim
from cpd.groups.replay import Findings
from cpd.groups.rules.registry import Binding, Ctx
from cpd.groups.space import Dim
from cpd.trace.recorder import TensorRef, Trace


def repair(ctx: Ctx, trace: Trace, model: nn.Module, found: Findings, hyp: Hypothesis,
            bindings: list[AttrBinding], snapshots: list) -> list[str]:
    """Diagnose every finding on the state the rehearsal ran with, then act:
    constructive fixes (bindings, ties) first; freezes only in a round that found
    nothing else, since a stale size may just be downstream of a missing binding."""
    mods = modules(model)
    fx = _Fixer(ctx, trace, hyp)
    for s in found.stale:
        _repair_stale(fx, s.binding, s.elem, s.actual, mods, bindings)
    blamed = {s.binding.op for s in found.stale}
    for j, k, got, want in found.mismatched:
        rec = trace.records[j]
        refs = [r for r in tree_flatten(rec.out)[0] if isinstance(r, TensorRef)]
        if j in blamed or refs[k].tid not in fx.read:  # outputs nobody reads do not matter
            continue
        for d, g, w in zip(snapshots[j][k] or [], got, want):
            if g != w:
                fx.freeze(d, f"{rec.func} in {rec.module or 'the model'} does not follow pruning",
                          f"{rec.module or 'model'}: {rec.func} output frozen")
    if found.error is not None:
        _repair_error(fx, found.error[0], mods, found.own_check)
    return fx.apply()


def _repair_stale(fx: "_Fixer", b: Binding, e: int, actual: int, mods: dict[str, nn.Module],
                  bindings: list[AttrBinding]) -> None:
    ctx, sp, hyp = fx.ctx, fx.ctx.space, fx.hyp
    p, old, where = b.dims[e], b.value[e], b.module or "the model"
    m = mods.get(b.module)
    if actual == old:  # kept its value: a constant, or an attribute left alone
        # not pinned (forced to nothing), and not already following this dim
        keys = [k for k in carriers(m, b.module, old) if ctx.forced.get(k) is None or (
            ctx.forced[k] and not any(same_dim(sp, p, q) for q in ctx.forced[k]))]
        for k in keys:
            fx.force(k, p, f"{where}.{k[2]} follows a dim of {old}")
        pinned = [k[2] for k in carriers(m, b.module, old) if ctx.forced.get(k) == []]
        if keys:
            return
        if pinned:  # held by an attribute that also feeds a derived size
            fx.freeze(p, f"size {old} in {where} is {pinned[0]}, which feeds a derived size",
                      f"{where}: {pinned[0]} ({old}) feeds a derived size: its dim freezes")
        else:
            fx.freeze(p, f"size {old} is a constant in {where}",
                      f"{where}: constant {old} freezes its dim")
        return
    # An attribute that moved from ``old`` to ``actual`` sized it: it follows this
    # dim (when it was a guess), or this dim is tied to what it follows.
    moved = [ab for ab in bindings if m is not None and ab.module == b.module and ab.index < 0
             and getattr(m if not ab.owner else getattr(m, ab.owner, None), ab.attr, None) == old
             and hyp.tree_size(ab.trees[0][0]) == actual]
    for ab in moved:
        fx.force((ab.module, ab.owner, ab.attr, ab.index), p,
                 f"{where}.{ab.attr} follows a dim of {old}")
    if moved:
        return
    # The value moved, so its source is a dim that moved (sizes that did not move,
    # like a token count that happens to equal it, cannot be it).
    sources = distinct(sp, [q for q in fx.dims(b.module) if hyp.size(q) == actual
                             and old_size(sp, q) == old and not same_dim(sp, q, p)])
    if len(sources) == 1:
        fx.tie(p, sources[0], f"size read from another tensor in {where}",
               f"{where}: size {old} is read from another dim: tied")
        return
    why = "ambiguous" if sources else "derived"
    # A size computed from attributes (ratio * key_dim) cannot follow a dim: the
    # attributes that moved it keep their values (pinned), and its dim keeps its size.
    for ab in _culprits(bindings, b.module, m, hyp, old, actual) if not sources else []:
        fx.pin((ab.module, ab.owner, ab.attr, ab.index),
               f"{where}.{ab.attr} feeds derived size {old}: pinned")
    fx.freeze(p, f"size {old} in {where} is {why}", f"{where}: {why} size {old} freezes its dim")


def _repair_error(fx: "_Fixer", module: str, mods: dict[str, nn.Module], own: bool) -> None:
    """The rehearsal raised in ``module``. If its own code raised (``own``: a check
    like ``if C != self.num_channels``), bind its attributes that held the old size
    of an input dim that moved, in every module of its type (the same code checks
    the same way). Else, when nothing else was repaired this round, freeze the dims
    that moved (its inputs for a check, any of its dims for a torch error)."""
    m = mods.get(module)
    if m is None:
        return
    bound = _bind_checked(fx, module, m) if own else set()
    if bound:
        for name, other in mods.items():
            if type(other) is type(m) and name != module:
                _bind_checked(fx, name, other, bound)
    elif not fx.notes:  # a stale size found this round may be what raised
        sp = fx.ctx.space
        for d in fx.dims(module, inputs=own):  # a check sees the inputs; torch, any dim
            if fx.hyp.size(d) != old_size(sp, d):
                fx.freeze(d, f"rejected by {module or 'the model'} when pruned",
                          f"{module or 'model'}: raised when pruned, its dims freeze")


def _bind_checked(fx: "_Fixer", module: str, m: nn.Module,
                  only: set[str] | None = None) -> set[str]:
    """Force the int attributes of ``m`` that equal the old size of exactly one moved
    dim of the tensors it was given; returns their names."""
    sp = fx.ctx.space
    # The check ran on what the module was given: the dims of its inputs.
    moved = distinct(sp, [d for d in fx.dims(module, inputs=True)
                           if fx.hyp.size(d) != old_size(sp, d)])
    bound: set[str] = set()
    for attr, value in int_attrs(m).items():
        if not isinstance(value, int) or (only is not None and attr not in only):
            continue
        hits = [d for d in moved if old_size(sp, d) == value]
        key: ForcedKey = (module, "", attr, -1)
        if len(hits) == 1 and key not in fx.ctx.forced:
            fx.force(key, hits[0], f"{module}.{attr} follows a dim of {value} (model's check)")
            bound.add(attr)
    return bound


class _Fixer:
    """The repairs of one round. Diagnosis reads the state the rehearsal ran with
    (sizes of dims before any tie), so actions are collected, then applied."""

    def __init__(self, ctx: Ctx, trace: Trace, hyp: Hypothesis) -> None:
        self.trace, self.ctx, self.hyp = trace, ctx, hyp
        self.frozen = set(ctx.space._frozen_roots())
        self._cache: dict[str, list[Dim]] = {}
        self._actions: list[tuple[str, Any, Any, str, str]] = []
        self.weights = {r.tid for r in [*trace.params.values(), *trace.buffers.values()]}
        self.read = {t.tid for rec in trace.records for t in tree_flatten([rec.args, rec.kwargs])[0]
                     if isinstance(t, TensorRef)} | {t.tid for t in trace.outputs}

    def freeze(self, d: Dim, reason: str, note: str) -> None:
        sp = self.ctx.space
        leaves = [sp.find(x) for x in sp.tree(d).leaves()]
        if all(x in self.frozen for x in leaves):
            return
        self.frozen.update(leaves)
        self._actions.append(("freeze", d, None, reason, note))

    def tie(self, a: Dim, b: Dim, reason: str, note: str) -> None:
        self._actions.append(("tie", a, b, reason, note))

    def force(self, key: ForcedKey, d: Dim, note: str) -> None:
        self._actions.append(("force", key, d, "", note))

    def pin(self, key: ForcedKey, note: str) -> None:
        self._actions.append(("pin", key, None, "", note))

    @property
    def notes(self) -> list[str]:
        return [a[-1] for a in self._actions]

    def apply(self) -> list[str]:
        """Apply the round's actions (only the constructive ones, if any); their notes."""
        sp = self.ctx.space
        actions = [a for a in self._actions if a[0] in ("tie", "force")] or self._actions
        for kind, a, b, reason, _ in actions:
            if kind == "freeze":
                sp.freeze(a, reason)
            elif kind == "tie":
                sp.union_dims(a, b, reason)
            elif kind == "pin":
                self.ctx.forced[a] = []  # follows nothing: keeps its value
            else:
                _force(self.ctx, a, b)
        return [a[-1] for a in actions]
    def dims(self, module: str, inputs: bool = False) -> list[Dim]:
        """Dims of the tensors ``module``'s ops (and its submodules') read and wrote;
        with ``inputs``, only of those it read but did not make."""
        got = self._cache.get(f"{inputs}:{module}")
        if got is None:
            pre = module + "."
            got, made = [], set()
            for rec in self.trace.records:
                if module and rec.module != module and not rec.module.startswith(pre):
                    continue
                read = [t for t in tree_flatten([rec.args, rec.kwargs])[0]
                        if isinstance(t, TensorRef)]
                outs = [t for t in tree_flatten(rec.out)[0] if isinstance(t, TensorRef)]
                for t in read if inputs else read + outs:
                    if not inputs or (t.tid not in made and t.tid not in self.weights):
                        got += [d for d in self.ctx.labels.get(t.tid, []) if d]
                made.update(t.tid for t in outs)
            got = self._cache[f"{inputs}:{module}"] = distinct(self.ctx.space, got)
        return got


def carriers(m: nn.Module | None, name: str, value: int) -> list[ForcedKey]:
    """Attributes of ``m`` (and of its config) that hold ``value``."""
    if m is None:
        return []
    allowed = traced_attrs(m)
    out: list[ForcedKey] = []
    for attr, v in int_attrs(m).items():
        if allowed is not None and attr not in allowed:
            continue
        if v == value:
            out.append((name, "", attr, -1))
        elif isinstance(v, (list, tuple)) and list(v).count(value) == 1:
            out.append((name, "", attr, list(v).index(value)))
    cfg = getattr(m, "config", None)
    if not has_fixer(m) and cfg is not None and not isinstance(cfg, nn.Module) and hasattr(
            cfg, "__dict__"):
        for attr, v in int_attrs(cfg).items():
            if v == value:
                out.append((name, "config", attr, -1))
    return out


def _force(ctx: Ctx, key: ForcedKey, dim: Dim) -> None:
    """``key``'s attribute follows ``dim`` (and every dim it already follows: tied);
    a pinned attribute (forced to follow nothing) stays pinned."""
    if key in ctx.forced and not ctx.forced[key]:
        return
    dims = ctx.forced.setdefault(key, [])
    if dims:
        ctx.space.union_dims(dims[0], dim, f"attribute {key[2]} sizes both")
    dims.append(dim)


def _culprits(bindings: list[AttrBinding], module: str, m: nn.Module | None, hyp: Hypothesis,
              old: int, actual: int) -> list[AttrBinding]:
    """The module's moved attributes whose change explains ``old`` -> ``actual`` as a
    product (one attribute, or two: ``ratio * key_dim``), exactly."""
    moved = []
    for ab in bindings:
        value = getattr(m, ab.attr, None) if ab.module == module and not ab.owner else None
        if isinstance(value, int) and ab.index < 0 and value > 1:
            new = hyp.tree_size(ab.trees[0][0])
            if new != value:
                moved.append((ab, value, new))
    for one in moved:
        if actual * one[1] == old * one[2]:
            return [one[0]]
    for i, one in enumerate(moved):
        for two in moved[i + 1:]:
            if actual * one[1] * two[1] == old * one[2] * two[2]:
                return [one[0], two[0]]
    return []
