"""The shape-only trace records what a fully computed trace records, and computes
for real wherever values matter."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from micro_zoo import ALL, example
from micro_zoo_hidden import REHEARSED

from cpd.apply.modules import drop_caches
from cpd.trace.recorder import Trace, trace
from cpd.trace.shape_only import SHAPE_ONLY, run_for_shape

aten = torch.ops.aten


def _same(a: Trace, b: Trace) -> None:
    assert [(r.func, r.args, r.kwargs, r.out, r.module) for r in a.records] == [
        (r.func, r.args, r.kwargs, r.out, r.module) for r in b.records]
    assert (a.inputs, a.outputs, a.params, a.buffers, a.output_shapes) == (
        b.inputs, b.outputs, b.params, b.buffers, b.output_shapes)


@pytest.mark.parametrize("cls", ALL + REHEARSED, ids=lambda c: c.__name__)
def test_shape_only_trace_equals_full_trace(cls: type) -> None:
    torch.manual_seed(0)
    m, x = cls().eval(), example()
    drop_caches(m)  # as comb does: CachedScale would skip an op on the second trace
    got = trace(m, x)
    drop_caches(m)
    _same(got, trace(m, x, shape_only=False))


class _Counted(nn.Module):
    """Counts its forwards; ``mode`` says how it uses the conv's values."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode, self.calls = mode, 0
        self.conv, self.fc = nn.Conv2d(3, 8, 3, padding=1), nn.Linear(8, 4)
        self.register_buffer("table", torch.randn(5, 8))
        self.kept: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        y = F.relu(self.conv(x))
        if self.mode == "branch" and bool((y > 0).any()):  # Python reads a value
            y = y * 2
        if self.mode == "mask":  # a boolean mask: the shape depends on values
            y = y[:, :, y[0, 0] > 0].mean(-1, keepdim=True)[..., None]
        if self.mode == "swallow":
            try:
                y = y + float(y.sum())
            except Exception:  # noqa: BLE001 - the model hides any error
                pass
        if self.mode == "keep":
            self.kept = y  # an activation kept after the forward
        if self.mode == "weights":
            self.kept = self.fc(self.table)  # computed from weights only: never zeroed
        return self.fc(y.mean((2, 3)))


@pytest.mark.parametrize("mode", ["branch", "mask", "swallow", "keep"])
def test_values_that_matter_are_computed(mode: str) -> None:
    """Value reads (even caught by the model) and kept activations: the trace is done
    again with values, records what the full trace records and keeps real values."""
    torch.manual_seed(0)
    m, x = _Counted(mode).eval(), example()
    got = trace(m, x)
    assert m.calls == 2  # the shape-only attempt, then the computed one
    _same(got, trace(m, x, shape_only=False))
    if mode == "keep":
        with torch.no_grad():
            torch.testing.assert_close(m.kept, F.relu(m.conv(x)))


def test_weights_only_values_are_computed_once() -> None:
    torch.manual_seed(0)
    m, x = _Counted("weights").eval(), example()
    trace(m, x)
    assert m.calls == 1
    with torch.no_grad():
        torch.testing.assert_close(m.kept, m.fc(m.table))


def _cases() -> list[tuple[torch._ops.OpOverload, tuple, dict]]:
    g = torch.Generator().manual_seed(0)

    def r(*s: int) -> torch.Tensor:
        return torch.randn(*s, generator=g)

    out = []
    for n, hw, k, s, p, d, groups in itertools.product((1, 2), (1, 6), (1, 3), (1, 2), (0, 1),
                                                       (1, 2), (1, 2)):
        x, w = r(n, 4, hw, hw), r(6, 4 // groups, k, k)
        for xx, ww in ((x, w), (x.contiguous(memory_format=torch.channels_last), w)):
            out.append((aten.convolution.default,
                        (xx, ww, r(6), [s, s], [p, p], [d, d], False, [0, 0], groups), {}))
        out.append((aten.convolution.default, (x, r(4, 6 // groups, k, k), None, [s, s], [p, p],
                                               [d, d], True, [s - 1, s - 1], groups), {}))
        out.append((aten.convolution.default, (r(n, 4, hw), r(6, 4 // groups, k), None, [s], [p],
                                               [d], False, [0], groups), {}))
    a, b = r(5, 4), r(8, 4).t()
    out += [(aten.mm.default, (a, b), {}), (aten.addmm.default, (r(8), a, b), {"beta": 0.5}),
            (aten.bmm.default, (r(2, 5, 4), r(2, 8, 4).transpose(1, 2)), {}),
            (aten.baddbmm.default, (r(1, 5, 3), r(2, 5, 4), r(2, 4, 3)), {})]
    for q in (r(2, 3, 5, 4), r(2, 5, 3, 4).transpose(1, 2), r(1, 5, 1, 4).transpose(1, 2)):
        kv = (r(q.shape[0], q.shape[1], 7, 4), r(q.shape[0], q.shape[1], 7, 4))
        out.append((aten._scaled_dot_product_flash_attention_for_cpu.default, (q, *kv), {}))
    return out


def test_shape_functions_match_the_kernels() -> None:
    """Every output a shape function builds has the shape, strides and dtype of the
    real kernel's (which later ops' choices depend on), and is zeros."""
    handled = 0
    for func, args, kwargs in _cases():
        assert func in SHAPE_ONLY
        try:
            want = func(*args, **kwargs)
        except RuntimeError:  # arguments the kernel rejects: the formula must decline
            assert run_for_shape(func, args, kwargs) is None
            continue
        got = run_for_shape(func, args, kwargs)
        if got is None:
            continue
        handled += 1
        for w, o in zip(want if isinstance(want, tuple) else (want,),
                        got if isinstance(got, tuple) else (got,)):
            assert (o.shape, o.stride(), o.dtype) == (w.shape, w.stride(), w.dtype), func
            assert not o.any()
    assert handled > 50
