"""Record one forward pass at the aten level.

A :class:`~torch.utils._python_dispatch.TorchDispatchMode` sees every executed
aten op after autograd and Python control flow have run, with its real arguments
(including the integer lists of ``view``/``split``/``cat``) and real tensors. That
is the same vantage point ``torch.utils.flop_counter`` uses. Forward hooks on
every submodule tell which module was running when each op executed.

Tensors in the record are replaced by :class:`TensorRef` (a stable id and a
shape), so that a :class:`Trace` is plain data that later stages can walk
without holding the activations.

Only shapes and integer arguments are recorded, so by default the arithmetic of
convolutions, matmuls and attention on activations is skipped
(:mod:`cpd.trace.shape_only`): the record is the one a fully computed forward
gives, at a small fraction of its cost.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
from torch.utils._pytree import tree_flatten

from cpd.inputs import ExampleInputs, call_model, check_example_inputs
from cpd.trace.shape_only import SHAPE_ONLY, NeedsValues, reads_values, run_for_shape


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
    def __init__(self, known: dict[int, torch.Tensor], shape_only: bool = False) -> None:
        super().__init__()
        self.records: list[OpRecord] = []
        self.module_stack: list[str] = [""]
        self._tids: dict[int, TensorRef] = {}  # id(tensor) -> its ref, while it is alive
        self._watch: dict[int, weakref.ref] = {}
        self._next = 0
        # (ref, tensor) of every tensor _conv met since it was last cleared
        self._read: list[tuple[TensorRef, torch.Tensor]] = []
        self.needed_values = False  # a NeedsValues was raised (the model may catch it)
        # Shape-only tracing (cpd.trace.shape_only): tids computed from the model's
        # inputs, and tids whose values are zeros because an op was run for its shape.
        self.shape_only = shape_only
        self.derived: set[int] = set()
        self.zeroed: set[int] = set()
        for t in known.values():  # params, buffers, inputs: the caller keeps them alive
            self.ref(t)

    def ref(self, t: torch.Tensor) -> TensorRef:
        key = id(t)
        known = self._tids.get(key)
        shape = t.shape
        if known is not None and known.shape == shape:
            return known
        if known is None:
            tid = self._next
            self._next += 1
            # Forget the id when the tensor is freed, so a later tensor at the same
            # address gets a fresh tid. Keeping every intermediate alive instead
            # (the simple way to keep ids unique) made the traced forward allocate
            # fresh memory for every activation, which cost more than the hooks.
            self._watch[key] = weakref.ref(t, partial(self._forget, key))
        else:  # resized in place (resize_, unsqueeze_, t_, ...): same tid, new shape
            tid = known.tid
        ref = self._tids[key] = TensorRef(tid, tuple(int(s) for s in shape))
        return ref

    def _forget(self, key: int, _ref: weakref.ref) -> None:
        self._tids.pop(key, None)
        self._watch.pop(key, None)

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # torch wraps a mode's __torch_dispatch__ in torch._dynamo.disable by default;
        # the first call then imports torch._dynamo (about a second) and every op pays
        # the wrapper. The tracer only ever runs eagerly, so it opts out.
        return False

    def _conv(self, x: Any) -> Any:
        """``x`` with every tensor replaced by its ref.

        Aten arguments and results nest only lists and tuples (kwargs are a flat
        dict), so this plain recursion replaces ``tree_map``, whose generic
        flatten/unflatten was a third of the tracer's own time.
        """
        if isinstance(x, torch.Tensor):
            r = self.ref(x)
            self._read.append((r, x))
            return r
        if isinstance(x, list):
            return [self._conv(v) for v in x]
        if isinstance(x, tuple):  # also torch.return_types (max.dim, sort, ...)
            return tuple(self._conv(v) for v in x)
        return x

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        # Refs for inputs are taken before the call so that an in-place op keeps
        # its tid and a fresh output gets a new one.
        self._read = []
        rargs = self._conv(tuple(args))
        rkwargs = {k: self._conv(v) for k, v in kwargs.items()}
        read = self._read
        derived = any(r.tid in self.derived for r, _ in read)
        zeroed = any(r.tid in self.zeroed for r, _ in read)
        out = None
        if zeroed and reads_values(func, [t for r, t in read if r.tid in self.zeroed]):
            self.needed_values = True
            raise NeedsValues(func)
        if derived and self.shape_only and func in SHAPE_ONLY:
            out = run_for_shape(func, args, kwargs)
            zeroed = zeroed or out is not None
        if out is None:
            out = func(*args, **kwargs)
        self._read = []
        rout = self._conv(out)
        if derived:
            self.derived.update(r.tid for r, _ in self._read)
        if zeroed:
            self.zeroed.update(r.tid for r, _ in self._read)
        self._read = []
        self.records.append(OpRecord(func, rargs, rkwargs, rout, self.module_stack[-1]))
        return out

    def alive_zeroed(self) -> bool:
        """Whether a tensor whose values were skipped is still alive (kept by the model)."""
        return any(r.tid in self.zeroed for r in self._tids.values())


def _hook_modules(model: nn.Module, rec: _Recorder) -> list[Any]:
    """Keep ``rec.module_stack`` at the innermost running module of ``model``.

    Two global module hooks instead of a pair per module: registering and removing
    hundreds of per-module handles cost more than the hooks themselves. Modules
    outside ``model`` (none run during a trace, but be safe) are ignored.
    """
    names = {id(mod): name for name, mod in model.named_modules()}

    def pre(mod: nn.Module, _a: Any) -> None:
        name = names.get(id(mod))
        if name is not None:
            rec.module_stack.append(name)

    def post(mod: nn.Module, _a: Any, _o: Any) -> None:
        if id(mod) in names:
            rec.module_stack.pop()

    return [register_module_forward_pre_hook(pre),
            register_module_forward_hook(post, always_call=True)]


def trace(model: nn.Module, example_inputs: ExampleInputs, *,
          shape_only: bool = True) -> Trace:
    """Run ``model`` once on ``example_inputs`` and record every aten op.

    The model runs in eval mode under ``no_grad`` (each module's mode is restored),
    so the trace does not touch BatchNorm statistics or dropout masks. With
    ``shape_only`` (the default) convolutions, matmuls and attention on tensors
    computed from the inputs run for their shapes only
    (:mod:`cpd.trace.shape_only`); where the model needs their values the trace
    is redone with every op computed, so the record is the same either way.

    Raises:
        RuntimeError: the model cannot run on the example inputs (the message
            carries the model's own error).
    """
    check_example_inputs(example_inputs)
    if shape_only:
        got = _trace(model, example_inputs, shape_only=True)
        if got is not None:
            return got
    got = _trace(model, example_inputs, shape_only=False)
    assert got is not None  # only a shape-only trace is ever redone
    return got


def _trace(model: nn.Module, example_inputs: ExampleInputs, shape_only: bool) -> Trace | None:
    """One traced forward; None when a shape-only trace must be redone with values."""
    params = dict(model.named_parameters(remove_duplicate=False))
    buffers = dict(model.named_buffers(remove_duplicate=False))
    known = {id(t): t for t in [*params.values(), *buffers.values()]}
    in_leaves = [x for x in tree_flatten(example_inputs)[0] if isinstance(x, torch.Tensor)]
    rec = _Recorder(known, shape_only)
    in_refs = [rec.ref(x) for x in in_leaves]
    rec.derived.update(r.tid for r in in_refs)
    modes = [(m, m.training) for m in model.modules()]
    handles = _hook_modules(model, rec)
    model.eval()
    try:
        with torch.no_grad(), rec:
            out = call_model(model, example_inputs)
    except Exception as e:  # noqa: BLE001 - re-raised with context
        if rec.needed_values or rec.zeroed:  # zeros may be what failed: retry with values
            return None
        raise RuntimeError(
            f"the model failed on the example inputs ({type(e).__name__}: {e}); "
            "check the input shape, dtype and whether it takes pixel_values= as a keyword"
        ) from e
    finally:
        for h in handles:
            h.remove()
        for m, was in modes:
            m.training = was
        rec._read = []
    if rec.needed_values:  # the model caught NeedsValues and went on: not a faithful run
        return None
    out_leaves = [x for x in _output_leaves(out) if isinstance(x, torch.Tensor)]
    got = Trace(
        records=rec.records,
        inputs=in_refs,
        outputs=[rec.ref(x) for x in out_leaves],
        params={n: rec.ref(p) for n, p in params.items()},
        buffers={n: rec.ref(b) for n, b in buffers.items()},
        output_shapes=[tuple(x.shape) for x in out_leaves],
    )
    del out, out_leaves
    # The model kept a tensor holding zeros (a cache, an attribute it reads later):
    # run again with values, so that what it keeps is real.
    return None if rec.zeroed and rec.alive_zeroed() else got


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
