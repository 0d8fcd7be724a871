"""One watched forward pass for the hook engine's probe (:mod:`cpd.scores.hook_probe`).

:func:`record_forward` runs the model on the first ``k`` samples of a batch with

* a module stack (forward pre-hooks and hooks on every module), so each use of a
  parameter is attributed to the innermost running module;
* a ``TorchFunctionMode`` (:class:`_Audit`) that classifies every differentiable use
  of a member parameter: inside its own ruled module, a registered free-parameter
  function, or something no rule expresses (recorded in ``uncovered``);
* a ``TorchDispatchMode`` that notes aten ops reading tensor values into Python;
* capture hooks on the modules of the plan, keeping copies of their activations and
  the tensors' version counters (to notice later in-place changes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

from cpd.scores.batch import Batch
from cpd.scores.free_rules import FREE_RULES
from cpd.scores.hook_plan import FreeParam, ModuleCapture
from cpd.scores.hook_types import HooksUnsupported

__all__ = ["DATA_DEPENDENT", "Seen", "Recording", "record_forward", "func_name", "grad_leaf"]

_aten = torch.ops.aten
#: aten overloads whose result is a tensor's value (or a value-dependent shape) in Python
DATA_DEPENDENT = frozenset(
    getattr(getattr(_aten, op, None), "default", None)
    for op in ("_local_scalar_dense", "nonzero", "masked_select", "_unique2", "unique_consecutive", "unique_dim")
) - {None}


def func_name(func: Any) -> str:
    """A readable name of a torch function (for messages)."""
    return str(getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or func)


@dataclass
class Seen:
    """A tensor seen during the probe."""

    copy: Tensor  # value when captured
    ref: Tensor  # the live tensor (detached), to notice later in-place changes
    version: int

    @staticmethod
    def of(t: Tensor) -> Seen:
        d = t.detach()
        return Seen(d.clone(), d, d._version)

    @property
    def changed(self) -> bool:
        return self.ref._version != self.version


@dataclass
class Recording:
    """What one probe forward saw.

    Attributes:
        calls: ``id(module)`` -> per call ``(input, output)`` of a captured module.
        free_uses: free parameter name -> the result of each covered use.
        uncovered: parameter name -> why one of its uses has no rule.
        data_dependent: aten ops that read tensor values.
        outputs: the model's flattened outputs.
    """

    calls: dict[int, list[tuple[Seen | None, Seen | None]]] = field(default_factory=dict)
    free_uses: dict[str, list[Seen]] = field(default_factory=dict)
    uncovered: dict[str, str] = field(default_factory=dict)
    data_dependent: list[str] = field(default_factory=list)
    outputs: list[Any] = field(default_factory=list)


class _Audit(TorchFunctionMode):
    """Classifies every differentiable use of a member parameter."""

    def __init__(self, rec: Recording, pid: Mapping[int, str], owners: Mapping[str, list[nn.Module]],
                 free: Mapping[str, FreeParam], stack: list[nn.Module]) -> None:
        super().__init__()
        self.rec, self.pid, self.owners, self.free, self.stack = rec, pid, owners, free, stack

    def __torch_function__(self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        hits = {id(a): a for a in tree_flatten((list(args), dict(kwargs)))[0]
                if isinstance(a, Tensor) and id(a) in self.pid}
        if hits and any(isinstance(t, Tensor) and t.requires_grad for t in tree_flatten(out)[0]):
            for p in hits.values():
                self._classify(self.pid[id(p)], p, func, args, kwargs, out)
        return out

    def _classify(self, name: str, p: Tensor, func: Any, args: Sequence[Any], kwargs: dict[str, Any],
                  out: Any) -> None:
        owners = self.owners[name]
        if name not in self.free:  # a parameter of ruled modules: only its own module may use it
            top = self.stack[-1] if self.stack else None
            if not any(top is m for m in owners):
                self.rec.uncovered.setdefault(name, f"used by {func_name(func)} outside its {type(owners[0]).__name__}")
            return
        rule = FREE_RULES.get(func)
        pos = rule.position(p, args, kwargs) if rule is not None else None
        if rule is None:
            reason: str | None = f"used by {func_name(func)}, which has no free-parameter rule"
        elif pos is None:
            reason = f"passed to {func_name(func)} inside a container or by an unexpected keyword"
        elif not any(s is m for s in self.stack for m in owners):
            reason = "used outside the forward of the module that owns it"
        else:
            reason = rule.check(p, pos, args, kwargs, out, self.free[name].dims)
        if reason is not None:
            self.rec.uncovered.setdefault(name, reason)
        else:
            self.rec.free_uses.setdefault(name, []).append(Seen.of(out))


class _DataDependent(TorchDispatchMode):
    def __init__(self, rec: Recording) -> None:
        super().__init__()
        self.rec = rec

    def __torch_dispatch__(self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: Any = None) -> Any:
        if func in DATA_DEPENDENT:
            self.rec.data_dependent.append(str(func))
        return func(*args, **(kwargs or {}))


def record_forward(model: nn.Module, batch: Batch, k: int, captures: Mapping[int, ModuleCapture],
         pid: Mapping[int, str], owners: Mapping[str, list[nn.Module]], free: Mapping[str, FreeParam]) -> Recording:
    """One recorded forward on the first ``k`` samples."""
    rec = Recording()
    stack: list[nn.Module] = []
    handles = []

    def push(m: nn.Module, *_: Any) -> None:
        stack.append(m)

    def pop(m: nn.Module, *_: Any) -> None:
        if stack and stack[-1] is m:
            stack.pop()

    def capture(m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
        cap = captures[id(m)]
        x = args[0] if args else kwargs.get("input")
        wants_x = bool(cap.needs & {"x", "dx"})
        seen_x = Seen.of(x) if wants_x and isinstance(x, Tensor) else None
        seen_y = Seen.of(out) if isinstance(out, Tensor) else None
        if (wants_x and seen_x is None) or seen_y is None:
            raise HooksUnsupported(f"{type(m).__name__} is not called on and returning one tensor")
        rec.calls.setdefault(id(m), []).append((seen_x, seen_y))

    for m in model.modules():
        handles.append(m.register_forward_pre_hook(push))
        handles.append(m.register_forward_hook(pop, always_call=True))
    for cap in captures.values():
        handles.append(cap.module.register_forward_hook(capture, with_kwargs=True))
    args, kwargs, _ = batch.rebuild(batch.batched_leaves(0, k))
    args, kwargs = tree_map(grad_leaf, (args, kwargs))
    try:
        with torch.enable_grad(), _Audit(rec, pid, owners, free, stack), _DataDependent(rec):
            out = model(*args, **kwargs)
    finally:
        for h in handles:
            h.remove()
    rec.outputs = [t.detach() if isinstance(t, Tensor) else t for t in tree_flatten(out)[0]]
    return rec


def grad_leaf(t: Any) -> Any:
    """Floating input tensors as leaves that require grad (so every activation has a graph)."""
    return t.detach().requires_grad_(True) if isinstance(t, Tensor) and t.is_floating_point() else t
