"""Torch-Pruning baselines of the CamVid benchmark: magnitude and Taylor to a MACs target.

``tp_prune`` prunes a copy of a model with ``tp.pruner.MetaPruner`` and bisects its
``pruning_ratio`` until the MACs (counted with ``cpd.count``, the same counter as the cpd
rows) are at most the target, as close to it as the ratio allows. The output layer is
in ``ignored_layers``; Hugging Face attention gets Torch-Pruning's documented head
settings (``num_heads`` per q/k/v Linear, whole heads, counts written back after the
step; helpers shared with ``benchmarks/zoo.py``).

``TorchPruningAt`` runs that inside :class:`cpd.train.Trainer` at a fixed step, so a
baseline gets exactly the optimizer steps, learning-rate schedule and training loop of
the cpd runs: the same steps before the pruning point (dense, task loss), one-shot
pruning where cpd's last pruning step is, then the same fine-tuning steps. For Taylor
importance the gradients of the training loss on the last ``score_batches`` batches
before the pruning step are summed (the multi-batch form of Torch-Pruning's
``loss.backward(); pruner.step()`` recipe).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn

from cpd.inputs import evaluating
from cpd.report.counting import count
from cpd.tasks.outputs import logits_of
from cpd.train.callbacks import Callback
from zoo import find_attention, update_attention

__all__ = ["tp_prune", "TorchPruningAt", "TP_METHODS"]

#: method label -> Torch-Pruning importance factory
TP_METHODS = {
    "tp-magnitude": lambda tp: tp.importance.MagnitudeImportance(p=1),
    "tp-taylor": lambda tp: tp.importance.TaylorImportance(),
}


def _prune_once(model: nn.Module, example: Tensor, method: str, ratio: float, out_layers: list[str],
                grads: dict[str, Tensor] | None, global_pruning: bool, max_ratio: float) -> nn.Module:
    """A pruned copy of ``model`` at ``pruning_ratio=ratio`` (``model`` is untouched)."""
    import torch_pruning as tp

    m = copy.deepcopy(model).eval()
    for name, p in m.named_parameters():
        # Taylor reads .grad; magnitude ignores it. Parameters without a gradient
        # (unused in the forward) get zeros so the importance never sees None.
        p.grad = (grads[name].clone() if grads is not None and name in grads else torch.zeros_like(p))
    modules = dict(m.named_modules())
    specs = find_attention(m)
    num_heads = {lin: getattr(s["module"], s["attr"]) for s in specs for lin in s["layers"]}
    pruner = tp.pruner.MetaPruner(
        m, example, importance=TP_METHODS[method](tp), global_pruning=global_pruning, pruning_ratio=ratio,
        max_pruning_ratio=max_ratio, ignored_layers=[modules[n] for n in out_layers],
        output_transform=lambda out: logits_of(out).sum(), num_heads=num_heads,
        prune_num_heads=bool(num_heads), prune_head_dims=False, head_pruning_ratio=ratio if num_heads else 0.0,
        # fresh dicts: MetaPruner's defaults are shared mutable dicts that it updates
        in_channel_groups={}, out_channel_groups={}, channel_groups={},
    )
    pruner.step()
    update_attention(specs, pruner.num_heads)
    for p in m.parameters():
        p.grad = None
    return m


def tp_prune(model: nn.Module, example: Tensor, method: str, macs: float, out_layers: list[str], *,
             grads: dict[str, Tensor] | None = None, global_pruning: bool = True, max_ratio: float = 0.95,
             iters: int = 14) -> tuple[nn.Module, dict[str, Any]]:
    """Prune a copy of ``model`` with Torch-Pruning until MACs <= ``macs`` x the original.

    Args:
        model: the model (not modified).
        example: a ``(1, 3, H, W)`` input for tracing and counting.
        method: a key of :data:`TP_METHODS`.
        macs: target MACs fraction.
        out_layers: module names kept intact (the classifier / segmentation head).
        grads: parameter name -> gradient, for Taylor importance.
        global_pruning, max_ratio: Torch-Pruning's global ranking and per-layer cap.
        iters: bisection iterations on ``pruning_ratio``.

    Returns:
        The pruned model (eval mode) and ``{"ratio", "macs", "params", "trials"}`` with
        fractions of the original.

    Raises:
        RuntimeError: no ratio up to ``max_ratio`` reaches the target.
    """
    if method not in TP_METHODS:
        raise ValueError(f"unknown Torch-Pruning method {method!r}; choose {', '.join(TP_METHODS)}")
    with evaluating(model):
        macs0, params0 = count(model, example)
    lo, hi = 0.0, max_ratio
    best: tuple[float, nn.Module, int, int] | None = None
    trials = 0
    for _ in range(iters):
        mid = (lo + hi) / 2
        pruned = _prune_once(model, example, method, mid, out_layers, grads, global_pruning, max_ratio)
        try:
            m, p = count(pruned, example)
        except Exception as e:  # noqa: BLE001 - say whose model broke
            raise RuntimeError(f"the model pruned by Torch-Pruning (pruning_ratio={mid:.3f}) does not run: "
                               f"{type(e).__name__}: {e}") from e
        trials += 1
        if m <= macs * macs0:
            best, hi = (mid, pruned, m, p), mid
        else:
            lo = mid
    if best is None:
        pruned = _prune_once(model, example, method, max_ratio, out_layers, grads, global_pruning, max_ratio)
        m, p = count(pruned, example)
        if m > macs * macs0:
            raise RuntimeError(f"{method}: pruning_ratio={max_ratio} still leaves {m / macs0:.3f} of the MACs "
                               f"(target {macs})")
        best = (max_ratio, pruned, m, p)
    ratio, pruned, m, p = best
    return pruned.eval(), {"ratio": round(ratio, 4), "macs": m / macs0, "params": p / params0, "trials": trials}


class TorchPruningAt(Callback):
    """Prune the trainer's model with Torch-Pruning at optimizer step ``at``.

    Args:
        method: a key of :data:`TP_METHODS`.
        at: the step whose ``on_batch`` returns the pruned model (cpd's last pruning step).
        example, macs, out_layers, prune_options: passed to :func:`tp_prune`.
        score_batches: for Taylor, the gradients of this many batches up to ``at`` are summed.
    """

    def __init__(self, method: str, at: int, example: Tensor, macs: float, out_layers: list[str], *,
                 score_batches: int = 8, **prune_options: Any) -> None:
        self.method, self.at, self.example, self.macs = method, at, example, macs
        self.out_layers, self.score_batches, self.options = out_layers, score_batches, prune_options
        self.grads: dict[str, Tensor] = {}
        self.info: dict[str, Any] | None = None

    def on_batch(self, trainer: Any, step: int, inputs: Any, targets: Any, loss_fn: Any) -> nn.Module | None:
        if self.info is not None or step > self.at:
            return None
        if self.method == "tp-taylor" and step > self.at - self.score_batches:
            # p.grad holds this batch's (unclipped) gradient of the training loss here.
            for name, p in trainer.model.named_parameters():
                if p.grad is not None:
                    g = p.grad.detach()
                    self.grads[name] = self.grads[name] + g if name in self.grads else g.clone()
        if step != self.at:
            return None
        pruned, self.info = tp_prune(trainer.model, self.example, self.method, self.macs, self.out_layers,
                                     grads=self.grads or None, **self.options)
        self.grads = {}
        return pruned
