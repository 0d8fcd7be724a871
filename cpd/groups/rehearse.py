"""Rehearse a pruning before it happens: run the would-be pruned model on fake tensors.

The aten trace sees Python ints, not where they came from: ``view(B, N, 768)`` may
have read 768 from ``self.all_head_size`` or from another tensor's ``.shape``. Which
one decides whether the pruned model still runs, and the two cannot be told apart
from one trace. So the groups are checked by running the model once more, pruned
*hypothetically*: every prunable group loses a different number of channels, the
copy's weights are fake tensors (``FakeTensorMode``: shapes, no data, no compute),
and every aten op is compared with the traced one:

* a size literal the rules bound to channel dims must equal those dims' new size
  (a *stale* literal: it did not follow the pruning, or followed the wrong dims);
* every output must have the shape the groups predict.

A wrong output is replaced by one of the predicted shape so that one run reports
every problem, not only the first. A Python exception (a shape check in the model's
own code) stops the run and is reported with the module that raised it. The trace
and the rehearsal execute the same program, so their op sequences match; if they
stop matching (control flow that depends on sizes) the rehearsal stops there.

:mod:`cpd.groups.replay` has the modes that compare; :mod:`cpd.groups.repair` turns
the findings into ties, freezes and attribute bindings.
"""

from __future__ import annotations

import copy
import logging
import os
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch
import torch.nn as nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

from cpd.groups.replay import Diverged, Findings, Replay, Reshapes
from cpd.groups.rules.registry import Binding
from cpd.inputs import ExampleInputs, call_model, map_tensors
from cpd.trace.recorder import OpRecord, TensorRef


def fake_copy(model: nn.Module, shapes: dict[str, tuple[int, ...]]) -> nn.Module:
    """A deep copy of ``model`` whose parameters and buffers are fresh fake tensors of
    ``shapes[name]`` (default: their own shape); call under a ``FakeTensorMode``.

    Fresh contiguous tensors rather than sliced ones: slicing fake tensors can leave
    ambiguous strides on size-1 dims, which then change which kernels (and so which
    ops) torch picks, and the op sequences would stop matching.
    """
    memo: dict[int, Any] = {}
    named = [*model.named_parameters(remove_duplicate=False),
             *model.named_buffers(remove_duplicate=False)]
    for name, t in named:
        if id(t) in memo:
            continue
        f = torch.empty(shapes.get(name, tuple(t.shape)), dtype=t.dtype)
        if isinstance(t, nn.Parameter):
            # What nn.Parameter(f) does for a tensor subclass, minus its detach(): a
            # dispatched op per parameter, and f is a fresh leaf already.
            f.requires_grad_(t.requires_grad)
            f._is_param = True  # type: ignore[attr-defined]
        memo[id(t)] = f
    # Outside the fake mode: other tensors the modules hold (caches) copy as real ones.
    with _no_fake_mode():
        return copy.deepcopy(model, memo)


@contextmanager
def _no_fake_mode() -> Iterator[None]:
    from torch.utils._python_dispatch import _disable_current_modes

    with _disable_current_modes():
        yield


def _raising_module(err: BaseException, names: dict[int, str]) -> str:
    """Name of the innermost module of ``model`` whose code is on ``err``'s traceback."""
    tb, found = err.__traceback__, ""
    while tb is not None:
        me = tb.tb_frame.f_locals.get("self")
        if isinstance(me, nn.Module) and id(me) in names:
            found = names[id(me)]
        tb = tb.tb_next
    return found


def _raised_by_model(err: BaseException) -> bool:
    """True when the innermost frame of ``err`` is outside torch (a check the model's
    own code makes), not a torch op rejecting its arguments."""
    tb = err.__traceback__
    last = None
    while tb is not None:
        last, tb = tb.tb_frame.f_code.co_filename, tb.tb_next
    sep = os.sep
    return last is not None and f"{sep}torch{sep}" not in last


def rehearse(model: nn.Module, example_inputs: ExampleInputs, records: list[OpRecord],
             shapes: dict[str, tuple[int, ...]], rebind: Callable[[nn.Module], None],
             expect: Callable[[int, int, TensorRef], tuple[int, ...]],
             checks: dict[int, list[tuple[Binding, int]]],
             size: Callable[[list[int]], int]) -> Findings:
    """Prune a fake copy of ``model`` hypothetically and replay the trace.

    Args:
        records: the trace of the unpruned model.
        shapes: pruned shape per parameter / buffer name.
        rebind: sets the attributes of the pruned fake copy (in place).
        expect: predicted shape of output ``k`` (a traced tensor) of op ``j``.
        checks: per op index, the (binding, element) literals to compare.
        size: predicted size of a channel dim (a list of atoms) after pruning.
    """
    found = Findings()
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    with mode:
        fake = fake_copy(model, shapes)
        rebind(fake)
        inputs = map_tensors(mode.from_tensor, example_inputs)
    names = {id(m): n for n, m in fake.named_modules()}
    fake.eval()
    replay = Replay(records, expect, checks, size, found)

    def enter(m: nn.Module, _a: Any) -> None:
        if id(m) in names:
            replay.stack.append(names[id(m)])

    def leave(m: nn.Module, _a: Any, _o: Any) -> None:
        if id(m) in names:
            replay.stack.pop()

    hooks = [register_module_forward_pre_hook(enter),
             register_module_forward_hook(leave, always_call=True)]
    # Fake tensors log every kernel that rejects the (stale) sizes; those failures
    # are the findings here, reported through the replay instead.
    log = logging.getLogger("torch._subclasses.fake_tensor")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        with torch.no_grad(), mode, replay, Reshapes(replay):
            call_model(fake, inputs)
    except Diverged as d:
        found.diverged_at = d.op
    except Exception as e:  # noqa: BLE001 - the model's own check rejected the sizes
        found.error = (_raising_module(e, names), f"{type(e).__name__}: {e}"[:300])
        found.own_check = _raised_by_model(e)
    finally:
        log.setLevel(level)
        for h in hooks:
            h.remove()
    found.reached = replay.i
    return found
