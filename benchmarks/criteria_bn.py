"""How much of the accuracy lost right after pruning is stale BatchNorm statistics?

For a pruned model (``criteria.py --variants``), the top-1 after each correction of
the BatchNorm running statistics, none of which changes a weight:

* ``none``: as pruned;
* ``mean`` / ``var`` / ``both``: each BN's running mean, variance, or both are set to
  the statistics of its actual input on the scoring samples, layer by layer in one
  eval-mode forward (so each layer sees the corrected layers before it);
* ``recalibrate_bn``: :func:`cpd.apply.recalibrate.recalibrate_bn`, what
  ``cpd.prune`` does when given data;
* ``mean_compensation``: the one-shot, data-free kind of fix: each removed channel's
  expected contribution to its consumers (``W[:, c] * E[a_c]``, with ``E[a_c]`` the
  channel's mean in the *unpruned* model, measured here on the scoring samples, an
  upper bound on what a data-free estimate from BN's beta/gamma could know) is folded
  into the consumer's following BN running mean (or the classifier's bias). This
  prototype knows the benchmark's architecture (which BN follows which conv).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cpd.apply.recalibrate import recalibrate_bn

__all__ = ["bn_fixes"]


@torch.no_grad()
def _set_stats(model: nn.Module, x: Tensor, which: str) -> nn.Module:
    model = copy.deepcopy(model).eval()

    def pre(bn: nn.BatchNorm2d, args: tuple[Tensor, ...]) -> None:
        a = args[0]
        if which in ("mean", "both"):
            bn.running_mean.copy_(a.mean((0, 2, 3)))
        if which in ("var", "both"):
            bn.running_var.copy_(a.var((0, 2, 3), unbiased=False))

    handles = [m.register_forward_pre_hook(pre) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return model


def _follower(name: str) -> str | None:
    """The BN after a consumer conv of ``criteria_models.PatchResNet`` (None: the classifier)."""
    if name == "fc":
        return None
    if name.endswith("shortcut.0"):
        return name[:-1] + "1"
    if name == "stem.0":
        return "stem.1"
    return name.replace("conv", "bn")


@torch.no_grad()
def _input_means(model: nn.Module, names: list[str], x: Tensor) -> dict[str, tuple[Tensor, tuple[int, ...]]]:
    mods = dict(model.named_modules())
    out: dict[str, tuple[Tensor, tuple[int, ...]]] = {}
    handles = []
    for n in names:
        def pre(m: nn.Module, args: tuple[Tensor, ...], n: str = n) -> None:
            a = args[0]
            out[n] = (a.mean((0, 2, 3)) if a.ndim == 4 else a.mean(0), tuple(a.shape[2:]))
        handles.append(mods[n].register_forward_pre_hook(pre))
    try:
        model.eval()(x)
    finally:
        for h in handles:
            h.remove()
    return out


@torch.no_grad()
def _mean_compensation(scorer: Any, pruned: nn.Module, keep: dict[int, list[int]], x: Tensor) -> nn.Module:
    consumers: dict[str, list[Any]] = {}  # module -> [(group, member)] of its input channels
    for g in scorer.groups:
        for m in g.members:
            if m.is_param and m.dim == 1 and m.name.endswith(".weight"):
                consumers.setdefault(m.name[: -len(".weight")], []).append((g, m))
    means = _input_means(scorer.model, list(consumers), x)
    orig, out = dict(scorer.model.named_modules()), copy.deepcopy(pruned)
    mods = dict(out.named_modules())
    for name, members in consumers.items():
        w = orig[name].weight
        gone = torch.zeros(w.shape[1], dtype=torch.bool)
        for g, m in members:
            kept = set(keep.get(g.id, range(g.size)))
            for c in range(g.size):
                if c not in kept:
                    gone[m.index[c]] = True
        if not gone.any():
            continue
        mean, hw = means[name]
        if w.ndim == 4:  # the constant map of the removed channels' means, through the conv
            const = (mean * gone).view(1, -1, 1, 1).expand(1, -1, *hw).contiguous()
            conv = orig[name]
            delta = F.conv2d(const, w, None, conv.stride, conv.padding).mean((0, 2, 3))
        else:
            delta = (w[:, gone] * mean[gone]).sum(1)
        follower = _follower(name)
        if follower is None:
            mods[name].bias += delta  # the classifier's outputs are never pruned
            continue
        out_group = next((g for g in scorer.groups for m in g.members
                          if m.name == name + ".weight" and m.dim == 0), None)
        if out_group is not None and out_group.id in keep:
            delta = delta[keep[out_group.id]]
        mods[follower].running_mean -= delta  # its input lost delta on average
    return out


def bn_fixes(scorer: Any, pruned: nn.Module, keep: dict[int, list[int]], batches: list,
             evaluate: Any) -> dict[str, float]:
    """Top-1 of ``pruned`` after each correction (see the module docstring)."""
    x = torch.cat([b[0] for b in batches])
    recal = copy.deepcopy(pruned)
    recalibrate_bn(recal, batches)
    return {"none": evaluate(pruned), "mean": evaluate(_set_stats(pruned, x, "mean")),
            "var": evaluate(_set_stats(pruned, x, "var")), "both": evaluate(_set_stats(pruned, x, "both")),
            "recalibrate_bn": evaluate(recal),
            "mean_compensation": evaluate(_mean_compensation(scorer, pruned, keep, x))}
