"""Physically remove channels: slice every member tensor, then fix attributes."""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from cpd.apply.modules import drop_caches, fix_module
from cpd.groups.indexing import kept_positions, new_size
from cpd.plan.plan import Plan


def apply_plan(model: nn.Module, plan: Plan, inplace: bool = False) -> nn.Module:
    """Return ``model`` with the plan's channels removed (a copy unless ``inplace``).

    Every parameter and buffer listed in ``plan.dims`` is sliced with
    ``index_select`` along each dim whose tree lost positions; tied tensors stay
    tied. Then integer attributes bound to group sizes are rewritten, and each
    module's own size attributes are re-derived from its new weights.

    Raises:
        KeyError: a tensor named in the plan does not exist in ``model`` (the plan
            belongs to another architecture).
    """
    if not inplace:
        model = copy.deepcopy(model)
    keep = plan.keep
    # remove_duplicate=False: a module registered under two names (head = classifier)
    mods = dict(model.named_modules(remove_duplicate=False))
    new: dict[int, torch.Tensor] = {}  # id(old tensor) -> replacement (keeps ties)
    touched: set[str] = set()
    for name, trees in plan.dims.items():
        owner, _, leaf = name.rpartition(".")
        mod = mods.get(owner)
        if mod is None or not hasattr(mod, leaf):
            raise KeyError(f"plan names tensor {name!r}, which this model does not have; "
                           "was the plan made for another architecture?")
        old = getattr(mod, leaf)
        if not isinstance(old, torch.Tensor):
            continue
        if id(old) not in new:
            t = old.detach()
            for d, tree in enumerate(trees):
                if tree.size != t.shape[d]:
                    raise KeyError(f"plan expects {name} dim {d} of size {tree.size}, "
                                   f"found {t.shape[d]}; the plan is for another model")
                idx = kept_positions(tree, keep)
                if len(idx) < t.shape[d]:
                    t = t.index_select(d, torch.tensor(idx, dtype=torch.long, device=t.device))
            if isinstance(old, nn.Parameter):
                t = nn.Parameter(t.clone(), requires_grad=old.requires_grad)
            else:
                t = t.clone()
            new[id(old)] = t
        if leaf in mod._parameters:
            mod._parameters[leaf] = new[id(old)]
        elif leaf in mod._buffers:
            mod._buffers[leaf] = new[id(old)]
        touched.add(owner)
    rebind(model, plan, touched)
    return model


def rebind(model: nn.Module, plan: Plan, owners: set[str]) -> None:
    """After the tensors of ``owners`` (module names) were sliced: rewrite the bound
    integer attributes, re-derive each owner's own size attributes from its weights
    and let modules drop caches derived from the old weights."""
    mods = dict(model.named_modules(remove_duplicate=False))
    _apply_bindings(mods, plan)
    for owner in owners:
        fix_module(mods[owner])
    drop_caches(model)  # caches derived from the old weights have the old shapes


def _apply_bindings(mods: dict[str, nn.Module], plan: Plan) -> None:
    """Rewrite bound integer attributes; a target several bindings share (a config
    attribute read by every layer) is set only when they all agree."""
    wanted: dict[tuple[int, str, int], tuple[object, list[int | None]]] = {}
    containers: dict[tuple[int, str, int], str] = {}
    for b in plan.bindings:
        m = mods.get(b.module)
        if m is None:
            continue
        obj = m if not b.owner else getattr(m, b.owner, None)
        if obj is None:
            continue
        vals: list[int | None] = []
        for cands in b.trees:
            sizes = {new_size(t, plan.keep) for t in cands}
            # Candidates that disagree mean the attribute's meaning is ambiguous:
            # leave it, and let verification judge whether the forward still works.
            vals.append(sizes.pop() if len(sizes) == 1 else None)
        key = (id(obj), b.attr, b.index)
        containers[key] = b.container
        if key in wanted and wanted[key][1] != vals:
            wanted[key] = (obj, [None])  # bindings disagree: leave the attribute alone
        else:
            wanted.setdefault(key, (obj, vals))
    for (_, attr, index), (obj, vals) in wanted.items():
        if None in vals:
            continue
        if index >= 0:
            seq = list(getattr(obj, attr))
            seq[index] = vals[0]
            old = getattr(obj, attr)
            setattr(obj, attr, type(old)(seq) if isinstance(old, tuple) else seq)
            continue
        kind = containers[(id(obj), attr, index)]
        value = vals[0] if kind == "int" else (tuple(vals) if kind == "tuple" else list(vals))
        setattr(obj, attr, value)
