"""Record one forward pass at the aten level.

A :class:`~torch.utils._python_dispatch.TorchDispatchMode` sees every executed
aten op after autograd and Python control flow have run, with its real arguments
(including the integer lists of ``view``/``split``/``cat``) and real tensors. That
is the same vantage point ``torch.utils.flop_counter`` uses. Forward hooks on
every submodule tell which module was running when each op executed.

Tensors in the record are replaced by :class:`TensorRef` (a stable id and a
shape), so that a :class:`Trace` is plain data that later stages can walk
without holding the activations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

from cpd.inputs import ExampleInputs, call_model, check_example_inputs


@dataclass(frozen=True)
class TensorRef:
    """A traced tensor: ``tid`` is unique within a trace (in-place ops keep it)."""

    tid: int
    shape: tuple[int, ...]


@dataclass
class OpRecord:
    """One executed aten op. Tensors in ``args``/``kwargs``/``out`` are TensorRefs."""

    func: torch._ops.OpOverload
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    out: Any
    module: str  # dotted name of the innermost running module ("" = the root)


@dataclass
class Trace:
    """Everything the grouping stage needs from one forward pass."""

    records: list[OpRecord]
    inputs: list[TensorRef]
    outputs: list[TensorRef]
    params: dict[str, TensorRef]
    buffers: dict[str, TensorRef]
    output_shapes: list[tuple[int, ...]] = field(default_factory=list)


class _Recorder(TorchDispatchMode):
    def __init__(self, known: dict[int, torch.Tensor]) -> None:
        super().__init__()
        self.records: list[OpRecord] = []
        self.module_stack: list[str] = [""]
        self._tids: dict[int, int] = {}
        self._alive: list[torch.Tensor] = []  # keeps ids from being reused mid-trace
        for t in known.values():
            self.ref(t)

    def ref(self, t: torch.Tensor) -> TensorRef:
        key = id(t)
        tid = self._tids.get(key)
        if tid is None:
            tid = self._tids[key] = len(self._tids)
            self._alive.append(t)
        return TensorRef(tid, tuple(int(s) for s in t.shape))

    def _conv(self, x: Any) -> Any:
        return self.ref(x) if isinstance(x, torch.Tensor) else x

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        # Refs for inputs are taken before the call so that an in-place op keeps
        # its tid and a fresh output gets a new one.
        rargs = tree_map(self._conv, args)
        rkwargs = tree_map(self._conv, kwargs)
        out = func(*args, **kwargs)
        self.records.append(
            OpRecord(func, rargs, rkwargs, tree_map(self._conv, out), self.module_stack[-1])
        )
        return out


def _hook_modules(model: nn.Module, rec: _Recorder) -> list[Any]:
    handles = []
    for name, mod in model.named_modules():

        def pre(_m: nn.Module, _a: Any, name: str = name) -> None:
            rec.module_stack.append(name)

        def post(_m: nn.Module, _a: Any, _o: Any) -> None:
            rec.module_stack.pop()

        handles.append(mod.register_forward_pre_hook(pre))
        handles.append(mod.register_forward_hook(post, always_call=True))
    return handles


def trace(model: nn.Module, example_inputs: ExampleInputs) -> Trace:
    """Run ``model`` once on ``example_inputs`` and record every aten op.

    The model runs in eval mode under ``no_grad`` (its mode is restored), so the
    trace does not touch BatchNorm statistics or dropout masks.

    Raises:
        RuntimeError: the model cannot run on the example inputs (the message
            carries the model's own error).
    """
    check_example_inputs(example_inputs)
    params = dict(model.named_parameters(remove_duplicate=False))
    buffers = dict(model.named_buffers(remove_duplicate=False))
    known = {id(t): t for t in [*params.values(), *buffers.values()]}
    in_leaves = [x for x in tree_flatten(example_inputs)[0] if isinstance(x, torch.Tensor)]
    rec = _Recorder(known)
    in_refs = [rec.ref(x) for x in in_leaves]
    was_training = model.training
    handles = _hook_modules(model, rec)
    model.eval()
    try:
        with torch.no_grad(), rec:
            out = call_model(model, example_inputs)
    except Exception as e:  # noqa: BLE001 - re-raised with context
        raise RuntimeError(
            f"the model failed on the example inputs ({type(e).__name__}: {e}); "
            "check the input shape, dtype and whether it takes pixel_values= as a keyword"
        ) from e
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    out_leaves = [x for x in _output_leaves(out) if isinstance(x, torch.Tensor)]
    return Trace(
        records=rec.records,
        inputs=in_refs,
        outputs=[rec.ref(x) for x in out_leaves],
        params={n: rec.ref(p) for n, p in params.items()},
        buffers={n: rec.ref(b) for n, b in buffers.items()},
        output_shapes=[tuple(x.shape) for x in out_leaves],
    )


def _output_leaves(out: Any) -> list[Any]:
    """Tensors in a model output: tensors, tuples, dicts, Hugging Face ModelOutputs."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):  # ModelOutput is an OrderedDict of its non-None fields
        return [x for v in out.values() for x in _output_leaves(v)]
    if isinstance(out, (list, tuple)):
        return [x for v in out for x in _output_leaves(v)]
    return []


def output_shapes(out: Any) -> list[tuple[int, ...]]:
    """Shapes of every tensor in a model output, in a stable order."""
    return [tuple(x.shape) for x in _output_leaves(out)]
