"""Counting MACs and parameters.

MACs come from :class:`torch.utils.flop_counter.FlopCounterMode`, which counts
FLOPs at the ATen level (so it sees through any Python model code) and reports
``2 * MACs`` for every op it knows. What it counts (checked on torch 2.13):

* ``convolution`` (all of Conv1d/2d/3d, transposed, grouped): ``B * C_out *
  (C_in / groups) * prod(kernel) * prod(out_spatial)`` MACs (input spatial for
  transposed convs). Bias is not counted.
* ``mm`` / ``addmm`` (``Linear``, any number of leading dims): ``M * K * N``; the
  bias add of ``addmm`` is not counted. ``bmm`` / ``baddbmm`` (``matmul`` of 3-D+
  tensors, ``einsum``): ``B * M * K * N``.
* ``scaled_dot_product_attention``: ``B * H * (S_q * S_k * D_qk + S_q * S_k * D_v)``
  (the two matmuls), for the CUDA kernels. **Not** for the CPU kernel: on CPU
  SDPA dispatches to ``aten._scaled_dot_product_flash_attention_for_cpu``, which
  torch's registry lacks, so a ViT would silently lose its attention MACs. We
  register that op (and the "overrideable" fused op) with torch's own SDPA
  formula, so CPU and GPU counts agree and agree with eager attention.

Element-wise ops (norms, activations, softmax, residual adds, pooling) are not
counted: they are memory-bound and are a few percent of a CNN's or ViT's MACs.
Counts are for the batch in ``example_inputs``; divide by the batch size for a
per-image figure.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from cpd.inputs import ExampleInputs, call_model, evaluating, model_device, to_device


def _sdpa_cpu_flop(
    query_shape: torch.Size,
    key_shape: torch.Size,
    value_shape: torch.Size,
    *args: Any,
    out_shape: Any = None,
    **kwargs: Any,
) -> int:
    """FLOPs of one SDPA call from its (B, H, S, D) query / key / value shapes."""
    # Same formula torch registers for the CUDA flash / efficient kernels; the
    # causal mask is ignored there too, so counts stay consistent across devices.
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _custom_mapping() -> dict[Any, Any]:
    """Extra FLOP formulas for ops missing from torch's registry (see module doc)."""
    mapping: dict[Any, Any] = {}
    for name in (
        "_scaled_dot_product_flash_attention_for_cpu",
        "_scaled_dot_product_fused_attention_overrideable",
    ):
        op = getattr(torch.ops.aten, name, None)
        if op is not None:
            mapping[op] = _sdpa_cpu_flop
    return mapping


def _flop_counts(model: nn.Module, example_inputs: ExampleInputs) -> FlopCounterMode:
    """Run one forward pass under a ``FlopCounterMode`` and return the counter."""
    inputs = to_device(example_inputs, model_device(model, example_inputs))
    counter = FlopCounterMode(display=False, custom_mapping=_custom_mapping())
    # FlopCounterMode's module tracker asserts on a module that returns a Parameter
    # itself (Perceiver's position encodings): count with requires_grad off.
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        with evaluating(model), torch.no_grad(), counter:
            call_model(model, inputs)
    finally:
        for p, rg in flags:
            p.requires_grad_(rg)
    return counter


def count_params(model: nn.Module) -> int:
    """Number of parameter elements; a parameter shared by several modules counts once."""
    # ``parameters()`` already de-duplicates by identity (tied embeddings, reused
    # layers); we do it explicitly so that is a documented guarantee, not a default.
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def count(model: nn.Module, example_inputs: ExampleInputs) -> tuple[int, int]:
    """MACs of one forward pass on ``example_inputs``, and the parameter count.

    The model runs once in eval mode under ``torch.no_grad``; its training flags
    are restored afterwards. Inputs are moved to the model's device.

    Args:
        model: any ``nn.Module``.
        example_inputs: tensor / tuple / mapping, e.g. a ``(B, 3, H, W)`` batch.

    Returns:
        ``(macs, params)``: multiply-accumulates for the whole batch (FLOPs // 2)
        and parameter elements.
    """
    counter = _flop_counts(model, example_inputs)
    return counter.get_total_flops() // 2, count_params(model)


def count_by_module(model: nn.Module, example_inputs: ExampleInputs) -> dict[str, int]:
    """MACs per module for one forward pass, keyed like ``model.named_modules()``.

    Counts are *inclusive*: a module's MACs include its children's, and the root
    (key ``""``) holds the total, including functional ops called directly in
    its ``forward``. Modules that did no counted work are absent. A module called
    several times (a shared block) accumulates all its calls.

    Args:
        model: any ``nn.Module``.
        example_inputs: tensor / tuple / mapping.

    Returns:
        ``{module_name: macs}``, in ``named_modules()`` order.
    """
    counter = _flop_counts(model, example_inputs)
    # FlopCounterMode names modules "<RootClass>.<path>" (its ModuleTracker walks
    # named_children from the first module called: the root). Map back to the
    # names users know from named_modules().
    root = type(model).__name__
    out: dict[str, int] = {}
    for name, per_op in counter.get_flop_counts().items():
        if name == "Global":
            continue
        if name == root:
            key = ""
        elif name.startswith(root + "."):
            key = name[len(root) + 1 :]
        else:  # pragma: no cover - only if a different module ran first
            key = name
        out[key] = sum(per_op.values()) // 2
    # Ops outside any module (only possible for a root with no forward hooks,
    # e.g. a scripted module) still belong to the total.
    if "" not in out:
        total = counter.get_total_flops() // 2
        if total:
            out[""] = total
    order = {name: i for i, (name, _) in enumerate(model.named_modules(remove_duplicate=False))}
    return dict(sorted(out.items(), key=lambda kv: order.get(kv[0], len(order))))
