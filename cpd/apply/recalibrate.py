"""Re-estimate BatchNorm statistics after pruning (forward passes only, no training).

Removing channels changes what flows into every later BatchNorm, so its running
mean and variance no longer match the data. How much that costs depends on which
channels go: channels chosen by diagonal importance scores shift the statistics
together, layer after layer (CamVid criteria benchmark, 70 % MACs: 48 % top-1 as
pruned, 79 % with the statistics re-estimated), while the interaction-aware
``hessian`` selection (:mod:`cpd.plan.select_fisher`) mostly avoids the shift (78 %
as pruned). Re-estimating the statistics on a few batches fixes what is left without
touching any weight. A one-shot correction of the means alone, even with the exact
means of the unpruned model, does not: the shift compounds through the layers
(``benchmarks/criteria_bn.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from cpd.inputs import call_model, model_device, to_device


@torch.no_grad()
def recalibrate_bn(model: nn.Module, data: Iterable[Any], batches: int | None = None) -> int:
    """Reset and re-estimate every BatchNorm's running statistics on ``data``.

    Args:
        model: the model, in place; its training flags are restored afterwards.
        data: batches of ``(inputs, targets)`` (targets are ignored).
        batches: how many batches to use (``None``: all).

    Returns:
        The number of batches used (0 when the model has no BatchNorm).
    """
    bns = [m for m in model.modules()
           if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not bns:
        return 0
    flags = {m: m.training for m in model.modules()}
    momenta = {m: m.momentum for m in bns}
    device = model_device(model)
    try:
        model.eval()
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches, not an EMA
            m.train()
        used = 0
        for i, (inputs, _) in enumerate(data):
            if batches is not None and i >= batches:
                break
            call_model(model, to_device(inputs, device))
            used += 1
    finally:
        for m, was in flags.items():
            m.train(was)
        for m, mom in momenta.items():
            m.momentum = mom
    return used
