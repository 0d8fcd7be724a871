"""Decide once per model what the hook engine can score, by watching small forwards.

:func:`probe_model` runs the model (eval mode, gradients on) on the first two samples
of a batch and on the first sample alone, and watches

* every torch function call that takes a member parameter (``TorchFunctionMode``)
  and the innermost running module. A parameter is scored by hooks only if each of
  its differentiable uses is one a rule expresses: inside its own module, when that
  module's exact type has a rule (:mod:`cpd.scores.module_rules`), or, for a
  parameter no ruled module owns, a registered function
  (:mod:`cpd.scores.free_rules`) during the forward of a module that owns it.
  Anything else (a weight read by a parent module, an unregistered op on a position
  embedding) sends that parameter to the per-sample-gradient fallback;
* aten ops that read tensor values into Python (``.item()``, ``bool(t)``,
  ``nonzero``): control flow may then follow the whole batch, so one batched forward
  need not equal per-sample forwards, and the engine refuses the model;
* the captured activations: in the two-sample run each must be ``(2, ...)`` with its
  first row equal to the one-sample run's ``(1, ...)``. A shape mismatch means dim 0
  is not the batch (sequence-first layouts, batch folded into windows, tensors made
  from parameters only): that module's parameters fall back. A value mismatch means
  samples interact in the forward (batch statistics, cross-sample ops): the engine
  refuses the model;
* which captured tensors are later changed in place (``ReLU(inplace=True)``): the
  engine copies those when it captures them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from cpd.scores.batch import Batch
from cpd.scores.hook_plan import FreeParam, HookPlan, ModuleCapture
from cpd.scores.hook_recorder import Recording, record_forward
from cpd.scores.hook_types import HooksUnsupported
from cpd.scores.module_rules import MODULE_RULES

__all__ = ["probe_model"]


def _pair(two: Tensor, one: Tensor) -> str:
    """``"shape"`` if ``two`` is not ``one`` batched twice along dim 0, ``"value"`` if its
    first row differs from ``one``, else ``""``."""
    if one.ndim == 0 or one.shape[0] != 1 or tuple(two.shape) != (2, *one.shape[1:]):
        return "shape"
    a, b = two[:1], one
    if not a.is_floating_point():
        return "" if torch.equal(a, b) else "value"
    # Batched and single kernels may round differently; interacting samples differ at O(1).
    tol = 1e-3 * float(b.double().norm()) + 1e-6 * b.numel() ** 0.5
    return "" if float((a.double() - b.double()).norm()) <= tol else "value"


def probe_model(model: nn.Module, params: Mapping[str, Tensor], dims: Mapping[str, Sequence[int]],
                batch: Batch) -> HookPlan:
    """Probe ``model`` on ``batch``'s first samples and return the :class:`HookPlan`.

    Args:
        params: canonical name -> member parameter.
        dims: canonical name -> the member dims the groups need.

    Raises:
        HooksUnsupported: the model as a whole cannot be scored by hooks.
    """
    pid = {id(p): name for name, p in params.items()}
    owned: dict[str, list[tuple[nn.Module, str]]] = {name: [] for name in params}
    for m in model.modules():
        for attr, p in m._parameters.items():
            if p is not None and id(p) in pid:
                owned[pid[id(p)]].append((m, attr))
    fallback: dict[str, str] = {}
    captures: dict[int, ModuleCapture] = {}
    free: dict[str, FreeParam] = {}
    for name, own in owned.items():
        ruled = [(m, a) for m, a in own if type(m) in MODULE_RULES]
        if own and not ruled:
            free[name] = FreeParam(params[name], name, tuple(sorted(dims[name])), [m for m, _ in own])
            continue
        reason = None if own and len(ruled) == len(own) else "shared by modules with and without a rule"
        for m, attr in ruled:
            for d in dims[name]:
                reason = reason or MODULE_RULES[type(m)].check(m, attr, d)
        if reason:
            fallback[name] = reason
            continue
        for m, attr in own:
            cap = captures.setdefault(id(m), ModuleCapture(m, MODULE_RULES[type(m)], []))
            for d in sorted(dims[name]):
                cap.members.append((attr, d, name))
                cap.needs |= cap.rule.needs(attr, d)
    owners = {name: [m for m, _ in own] for name, own in owned.items()}

    k = min(batch.size, 2)
    modes = [(m, m.training) for m in model.modules()]
    frozen = [p for p in params.values() if not p.requires_grad]
    try:
        model.eval()
        for p in frozen:  # so that a use of a frozen parameter still shows up as differentiable
            p.requires_grad_(True)
        runs = [record_forward(model, batch, n, captures, pid, owners, free) for n in ((2, 1) if k == 2 else (1,))]
    except HooksUnsupported:
        raise
    except Exception as err:
        raise HooksUnsupported(f"the probe forward failed ({type(err).__name__}: {err})") from err
    finally:
        for m, mode in modes:
            m.training = mode
        for p in frozen:
            p.requires_grad_(False)
    rec = runs[0]
    if rec.data_dependent:
        raise HooksUnsupported(f"the forward reads tensor values into Python ({rec.data_dependent[0]}), "
                               "so one batched forward may differ from per-sample forwards")
    for r in runs:
        for name, why in r.uncovered.items():
            fallback.setdefault(name, why)
    for cid, calls in rec.calls.items():
        captures[cid].clone_x = any(x is not None and x.changed for x, _ in calls)
        captures[cid].clone_y = any(y is not None and y.changed for _, y in calls)
    for name, uses in rec.free_uses.items():
        free[name].clone = any(u.changed for u in uses)
    if k == 2:
        _compare(runs[0], runs[1], captures, fallback)
    modules = []
    for cap in captures.values():
        cap.members = [m for m in cap.members if m[2] not in fallback]
        cap.needs = set().union(*(cap.rule.needs(a, d) for a, d, _ in cap.members)) if cap.members else set()
        if cap.members:
            modules.append(cap)
    return HookPlan(modules, [f for f in free.values() if f.name not in fallback], fallback, paired=k == 2)


def _compare(two: Recording, one: Recording, captures: Mapping[int, ModuleCapture],
             fallback: dict[str, str]) -> None:
    """Layout and independence check of the two-sample run against the one-sample run."""
    coupled = "samples interact in the forward pass (sample 0 alone differs from sample 0 in a batch of two)"
    for cid, cap in captures.items():
        c2, c1 = two.calls.get(cid, []), one.calls.get(cid, [])
        what = type(cap.module).__name__
        if len(c2) != len(c1):
            raise HooksUnsupported(f"{what} runs {len(c2)} times on two samples but {len(c1)} times on one")
        for pair2, pair1 in zip(c2, c1):
            for s2, s1 in zip(pair2, pair1):
                if s2 is None or s1 is None:
                    continue
                verdict = _pair(s2.copy, s1.copy)
                if verdict == "value":
                    raise HooksUnsupported(f"{coupled} at a {what}")
                if verdict == "shape":
                    for _, _, name in cap.members:
                        fallback.setdefault(name, f"activations of a {what} do not have the batch as dim 0")
    for name in set(two.free_uses) | set(one.free_uses):
        u2, u1 = two.free_uses.get(name, []), one.free_uses.get(name, [])
        verdicts = {_pair(a.copy, b.copy) for a, b in zip(u2, u1)} | ({"shape"} if len(u2) != len(u1) else set())
        if "value" in verdicts:
            raise HooksUnsupported(f"{coupled} at a use of {name}")
        if "shape" in verdicts:
            fallback.setdefault(name, "its uses do not keep the batch as dim 0")
    for o2, o1 in zip(two.outputs, one.outputs):
        if isinstance(o2, Tensor) and isinstance(o1, Tensor) and _pair(o2, o1) == "value":
            raise HooksUnsupported(f"{coupled} in the model output")
