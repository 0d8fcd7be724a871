"""When the rehearsal cannot change the groups, so that comb may skip it.

The rehearsal (:mod:`cpd.groups.repair`) exists for sizes the trace records as
plain ints without saying where Python read them: a module attribute, another
tensor's shape, a constant. It can only find something where the hypothetical
pruning changes a size that Python code could hold. So it is needed when any of
these hold (each checked against the sizes of the dims the hypothesis changes):

* an op run by model code received an int equal to such a size, unless it is a
  size of the op's own input passed through (``x.flatten(1)``) and no other
  channel space, and no attribute of the module's config, has that size (then,
  wherever it was read, it follows the pruning);
* a module's int attribute (or an element of an int tuple/list) equals one (code
  may compare a tensor's width with it, or pass it to an op);
* a module-type rule bound or forced an attribute (``nn.MultiheadAttention``).

Library modules whose ``forward`` is torch's own and whose size attributes are
re-derived after pruning (:mod:`cpd.apply.modules`: convs, linears, norms) read
only their own attributes: their ints are not counted.

Not seen: Python code comparing a width with a constant written in its source, with
a value of its config (configs hold every stage's width, so they are not counted), or
two tensors' widths with each other (no int is stored or passed to an op). The
rehearsal would freeze the dims such a check rejects; without it, the check fails
when the pruned model is verified and those groups are rolled back
(:mod:`cpd.apply.verify`).
"""

from __future__ import annotations

import torch.nn as nn

from cpd.apply.modules import FIXERS
from cpd.groups.bindings import config_ints
from cpd.groups.hypothesis import Hypothesis, dim_key, old_size
from cpd.groups.module_rules import MODULE_RULES
from cpd.groups.rules.registry import Args, Ctx
from cpd.groups.space import Dim
from cpd.trace.recorder import OpRecord, Trace


def rehearsal_needed(ctx: Ctx, trace: Trace, model: nn.Module,
                     mods: dict[str, nn.Module]) -> str | None:
    """Why the groups must be rehearsed, or None when no rehearsal can change them.

    ``mods`` is ``dict(model.named_modules())``.
    """
    if ctx.forced:
        return "attributes already forced"
    hyp = Hypothesis(ctx, trace)
    sp = ctx.space
    moving: set[int] = set()  # old sizes of the dims the hypothetical pruning changes
    by_size: dict[int, list[Dim]] = {}
    for dims in ctx.labels.values():
        for d in dims:
            if d:
                n = old_size(sp, d)
                by_size.setdefault(n, []).append(d)
                if n not in moving and hyp.size(d) != n:
                    moving.add(n)
    if not moving:
        return None
    for b in ctx.bindings:
        if b.op < 0:
            return f"a module rule bound a size in {b.module or 'the model'}"
    library = {name for name, m in mods.items() if _library(m)}
    for name, m in mods.items():
        if any(t in MODULE_RULES for t in type(m).__mro__):
            return f"{name or 'the model'} has a module rule ({type(m).__name__})"
        if name in library:
            continue
        for attr, v in _ints(m):
            if v in moving:
                return f"{name or 'the model'}.{attr} = {v} is a prunable size"
    passthrough = {(b.op, key) for b in ctx.bindings
                   for key, thru in zip(b.keys, b.passthrough) if thru and key is not None}
    one_space: dict[int, bool] = {}
    for j, rec in enumerate(trace.records):
        if rec.module in library:
            continue
        for key, v in _int_args(rec):
            if v not in moving:
                continue
            if (j, key) in passthrough:
                if v not in one_space:
                    one_space[v] = len({dim_key(sp, d) for d in by_size.get(v, [])}) == 1
                m = mods.get(rec.module)
                if one_space[v] and (m is None or v not in config_ints(m).values()):
                    continue
            return f"size {v} passed to {rec.func} in {rec.module or 'the model'}"
    return None


def _library(m: nn.Module) -> bool:
    """torch's own module whose sizes are re-derived after pruning (its ``forward``
    not overridden by a subclass, no module-type rule)."""
    mro = type(m).__mro__
    fixed = next((t for t in mro if t in FIXERS), None)
    code = next((c for c in mro if "forward" in c.__dict__), None)
    # The forward must come from the fixed type or a torch base of it (_BatchNorm
    # for BatchNorm2d), not from a subclass that overrides it.
    return (fixed is not None and code is not None and code in fixed.__mro__
            and code.__module__.startswith("torch.nn."))


def _ints(m: object) -> list[tuple[str, int]]:
    """Int attributes >= 2 of ``m`` (private ones too), with int tuple/list elements."""
    out: list[tuple[str, int]] = []
    for k, v in vars(m).items():
        if isinstance(v, bool):
            continue
        if isinstance(v, int):
            if v > 1:
                out.append((k, v))
        elif isinstance(v, (tuple, list)) and len(v) <= 64:
            out += [(f"{k}[{i}]", x) for i, x in enumerate(v)
                    if isinstance(x, int) and not isinstance(x, bool) and x > 1]
    return out


def _int_args(rec: OpRecord) -> list[tuple[tuple[str, int], int]]:
    """Every int the op received, keyed like :attr:`Binding.keys` (name, index or -1)."""
    out: list[tuple[tuple[str, int], int]] = []
    for name, v in Args(rec).values.items():
        if isinstance(v, bool):
            continue
        if isinstance(v, int):
            out.append(((name, -1), v))
        elif isinstance(v, (list, tuple)):
            out += [((name, i), x) for i, x in enumerate(v)
                    if isinstance(x, int) and not isinstance(x, bool)]
    return out
