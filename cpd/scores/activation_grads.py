"""Per-sample mask gradients from activations: one forward, one backward (``hooks``).

The per-sample ``hessian`` score needs, per sample ``n`` and channel ``c``, only

    g_{n,c} = sum_{i in c} w_i * dL_n/dw_i

and for every member kind with a rule that sum is a reduction of activations times
activation gradients (see :mod:`cpd.scores.module_rules` and
:mod:`cpd.scores.free_rules`). :class:`ActivationGrads` runs the model once on the
batch with

* forward hooks on the modules that own member parameters, which keep the
  module's output and its gradient edge (taken before any later in-place op, so
  ``ReLU(inplace=True)`` is fine); for input-dim members a forward pre-hook hands
  the module an alias of its input, so the alias's gradient is the one flowing
  through *this* module only;
* a ``TorchFunctionMode``, active only during the forward of modules that own free
  parameters, that keeps each use of those parameters and its gradient edge;

then sums the per-sample losses (:mod:`cpd.scores.sample_losses`) and calls
``torch.autograd.grad`` once, on those edges only: no weight gradient is computed.
The first batch after :meth:`ActivationGrads.reset` is probed
(:mod:`cpd.scores.hook_probe`); parameters the rules cannot express exactly get
their per-sample contributions from the per-sample weight-gradient engine
(:class:`~cpd.scores.persample.PerSampleGrads`) restricted to those parameters, and
are summed with the rest per sample before squaring, as always.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.graph import get_gradient_edge
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_map
from torch.utils.hooks import RemovableHandle

from cpd.scores.batch import Batch, LossFn
from cpd.scores.channels import per_position
from cpd.scores.free_rules import FREE_RULES
from cpd.scores.hook_plan import FreeParam, HookPlan, ModuleCapture
from cpd.scores.hook_probe import probe_model
from cpd.scores.hook_recorder import func_name
from cpd.scores.hook_types import Call, HooksUnsupported
from cpd.scores.persample import PerSampleGrads
from cpd.scores.sample_losses import per_sample_loss_sum

__all__ = ["ActivationGrads", "HooksUnsupported", "Vectors"]

#: (canonical parameter name, dim) -> float64 ``(N, param.shape[dim])``: per sample and
#: position ``p``, ``sum_{i : i_dim = p} w_i * dL_n/dw_i``
Vectors = dict[tuple[str, int], Tensor]


class _Saved:
    """A captured activation: a copy, or the live tensor plus its version to catch in-place changes."""

    def __init__(self, t: Tensor, copy: bool) -> None:
        self.t = t.detach().clone() if copy else t.detach()
        self.version = None if copy else self.t._version

    def get(self, what: str) -> Tensor:
        if self.version is not None and self.t._version != self.version:
            raise HooksUnsupported(f"{what} was changed in place after it was captured")
        return self.t


def _check_batched(t: Tensor, n: int, what: str) -> None:
    if t.ndim == 0 or t.shape[0] != n:
        raise HooksUnsupported(f"{what} has shape {tuple(t.shape)}, not batch-first with {n} samples")


def _edge(t: Tensor, what: str) -> Any:
    if not t.requires_grad:
        raise HooksUnsupported(f"{what} does not require grad")
    return get_gradient_edge(t)


def _hook_module(cap: ModuleCapture, sink: list[tuple[ModuleCapture, dict[str, Any]]], n: int) -> list[RemovableHandle]:
    """Install the capture hooks of one module; every call appends ``(cap, entry)`` to ``sink``."""
    wants_x, wants_dx = bool(cap.needs & {"x", "dx"}), "dx" in cap.needs
    wants_dy = bool(cap.needs & {"y", "dy"})
    what = type(cap.module).__name__
    pending: list[dict[str, Any]] = []

    def pre(m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        x = args[0] if args else kwargs.get("input")
        if not isinstance(x, Tensor):
            raise HooksUnsupported(f"{what} is not called with a tensor input")
        _check_batched(x, n, f"the input of a {what}")
        entry: dict[str, Any] = {}
        if wants_dx:
            x = x.view_as(x)  # an alias: its gradient is the part flowing into this module
            entry["dx"] = _edge(x, f"the input of a {what}")
            args, kwargs = ((x, *args[1:]), kwargs) if args else (args, {**kwargs, "input": x})
        entry["x"] = _Saved(x, cap.clone_x)
        pending.append(entry)
        return args, kwargs

    def post(m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
        entry = pending.pop() if wants_x else {}
        if not isinstance(out, Tensor):
            raise HooksUnsupported(f"{what} does not return one tensor")
        _check_batched(out, n, f"the output of a {what}")
        if wants_dy:
            entry["dy"] = _edge(out, f"the output of a {what}")
        entry["y"] = _Saved(out, cap.clone_y and "y" in cap.needs)
        sink.append((cap, entry))

    handles = [cap.module.register_forward_hook(post, with_kwargs=True)]
    if wants_x:
        handles.append(cap.module.register_forward_pre_hook(pre, with_kwargs=True))
    return handles


class _FreeTracker(TorchFunctionMode):
    """Keeps every use of the tracked free parameters; active inside their owners' forward."""

    def __init__(self, free: Sequence[FreeParam], sink: list[tuple[Any, ...]], n: int) -> None:
        super().__init__()
        self.by_id = {id(f.param): f for f in free}
        self.sink, self.n, self.depth = sink, n, 0

    def install(self) -> list[RemovableHandle]:
        owners = {id(m): m for f in self.by_id.values() for m in f.owners}
        handles = []
        for m in owners.values():
            handles.append(m.register_forward_pre_hook(lambda *_: self.enter()))
            handles.append(m.register_forward_hook(lambda *_: self.leave(), always_call=True))
        return handles

    def enter(self) -> None:
        if self.depth == 0:
            self.__enter__()
        self.depth += 1

    def leave(self) -> None:
        self.depth -= 1
        if self.depth == 0:
            self.__exit__(None, None, None)

    def __torch_function__(self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        nested = [a for v in (*args, *kwargs.values()) if isinstance(v, (list, tuple)) for a in v]
        hits = {id(a): a for a in (*args, *kwargs.values(), *nested) if isinstance(a, Tensor) and id(a) in self.by_id}
        results = out if isinstance(out, (list, tuple)) else [out]
        if not hits or not any(isinstance(t, Tensor) and t.requires_grad for t in results):
            return out  # shape reads, detach(), ...: no gradient flows through this use
        for p in hits.values():
            f = self.by_id[id(p)]
            rule = FREE_RULES.get(func)
            pos = rule.position(p, args, kwargs) if rule is not None else None
            reason = f"no rule for {func_name(func)}" if rule is None or pos is None else rule.check(
                p, pos, args, kwargs, out, f.dims)
            if reason is not None:
                raise HooksUnsupported(f"{f.name}: {reason}")
            _check_batched(out, self.n, f"the result of {func_name(func)} on {f.name}")
            assert rule is not None and pos is not None
            z = _Saved(out, f.clone) if rule.needs_output(pos) else out.detach()  # z is read only then
            self.sink.append((f, rule, pos, rule.context(args, kwargs), z, _edge(out, f"a use of {f.name}")))
        return out


class ActivationGrads:
    """The hook engine (see the module docstring).

    Args:
        fallback: per-sample weight-gradient engine for parameters no rule expresses.
    """

    def __init__(self, fallback: PerSampleGrads) -> None:
        self.fallback = fallback
        self.plan: HookPlan | None = None
        self._model_id: int | None = None

    def reset(self) -> None:
        """Forget the probe result (call when the groups or the model change)."""
        self.plan = None
        self._model_id = None

    def __call__(self, model: nn.Module, params: Mapping[str, Tensor], dims: Mapping[str, Sequence[int]],
                 batch: Batch, loss_fn: LossFn) -> Vectors:
        """Per-sample, per-position ``w * dL_n/dw`` sums for every member ``(name, dim)``.

        Args:
            params: canonical name -> member parameter.
            dims: canonical name -> member dims.

        Returns:
            :data:`Vectors`, float64, on the parameters' devices.

        Raises:
            HooksUnsupported: the model or loss cannot be scored by hooks at all.
        """
        plan = self._plan(model, params, dims, batch)
        n = batch.size
        out: Vectors = {(k, d): torch.zeros(n, p.shape[d], dtype=torch.float64, device=p.device)
                        for k, p in params.items() for d in dims[k]}
        if plan.modules or plan.free:
            for key, v in _hooked_pass(model, plan, batch, loss_fn):
                out[key] += v.to(torch.float64)
        names = [k for k in params if k in plan.fallback]
        if names:
            chunks = list(self.fallback(model, {k: params[k] for k in names}, batch, loss_fn))
            for k in names:
                wg = torch.cat([c[k] for c in chunks]) * params[k].detach()
                for d in dims[k]:
                    out[(k, d)] += per_position(wg, d, batched=True).to(torch.float64)
        return out

    def _plan(self, model: nn.Module, params: Mapping[str, Tensor], dims: Mapping[str, Sequence[int]],
              batch: Batch) -> HookPlan:
        stale = self.plan is None or self._model_id != id(model) or (not self.plan.paired and batch.size >= 2)
        if stale:
            self.plan = probe_model(model, params, dims, batch)
            self._model_id = id(model)
            if self.plan.fallback:
                why = "; ".join(f"{k}: {v}" for k, v in list(self.plan.fallback.items())[:3])
                more = f" (and {len(self.plan.fallback) - 3} more)" if len(self.plan.fallback) > 3 else ""
                warnings.warn(
                    f"hessian: {len(self.plan.fallback)} parameters are scored with per-sample weight gradients "
                    f"because the hook engine cannot express them exactly ({why}{more})",
                    RuntimeWarning,
                    stacklevel=5,
                )
        assert self.plan is not None
        return self.plan


def _hooked_pass(
    model: nn.Module, plan: HookPlan, batch: Batch, loss_fn: LossFn
) -> list[tuple[tuple[str, int], Tensor]]:
    """One forward with hooks, the per-sample loss sum, one backward to the captured edges."""
    n = batch.size
    calls: list[tuple[ModuleCapture, dict[str, Any]]] = []
    uses: list[tuple[Any, ...]] = []
    handles: list[RemovableHandle] = []
    tracker = _FreeTracker(plan.free, uses, n) if plan.free else None
    try:
        for cap in plan.modules:
            handles += _hook_module(cap, calls, n)
        if tracker is not None:
            handles += tracker.install()
        args, kwargs, _ = batch.rebuild(batch.batched_leaves())
        # Floating inputs require grad so that every activation has a graph even when
        # some parameters are frozen; their own gradient is never computed.
        args, kwargs = tree_map(
            lambda t: t.detach().requires_grad_(True) if isinstance(t, Tensor) and t.is_floating_point() else t,
            (args, kwargs),
        )
        with torch.enable_grad():
            loss = per_sample_loss_sum(model(*args, **kwargs), batch, loss_fn)
    finally:
        for h in handles:
            h.remove()
        while tracker is not None and tracker.depth > 0:
            tracker.leave()
    edges = [e[k] for _, e in calls for k in ("dx", "dy") if k in e] + [u[-1] for u in uses]
    if not loss.requires_grad:
        raise HooksUnsupported("the loss does not depend on the model's parameters")
    grads = iter(torch.autograd.grad(loss, edges, allow_unused=True) if edges else [])
    result: list[tuple[tuple[str, int], Tensor]] = []
    for cap, e in calls:
        dx = next(grads) if "dx" in e else None
        dy = next(grads) if "dy" in e else None
        what = type(cap.module).__name__
        call = Call(
            x=e["x"].get(f"the input of a {what}") if "x" in e else None, dx=dx,
            y=e["y"].get(f"the output of a {what}") if "y" in cap.needs else e["y"].t, dy=dy,
        )
        red = cap.rule.reduce(cap.module, [(a, d) for a, d, _ in cap.members], call, n)
        result += [((name, d), red[(a, d)]) for a, d, name in cap.members]
    for f, rule, pos, ctx, z, _ in uses:
        zt = z.get(f"a use of {f.name}") if isinstance(z, _Saved) else z
        for d, v in rule.reduce(f.param, pos, ctx, zt, next(grads), f.dims, n).items():
            result.append(((f.name, d), v))
    return result
