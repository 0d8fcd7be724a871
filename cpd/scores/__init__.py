"""Channel importance criteria (the scoring half of the Prune step).

Usage::

    from cpd.scores import get_criterion

    crit = get_criterion("hessian").prepare(model, groups)
    for x, y in loader:
        crit.accumulate(model, x, y, loss_fn)
    scores = crit.scores()          # {group id: float64 tensor (size,)}

Registered criteria: ``hessian`` (default), ``obd``, ``taylor``, ``magnitude``,
``random``. See each module for the exact formula.

Per-sample engines: ``hessian`` computes its per-sample mask gradients from
activations and activation gradients in one batched forward and backward
(:mod:`cpd.scores.activation_grads`, ``method="hooks"``, the default via ``"auto"``);
per-sample weight gradients (:mod:`cpd.scores.persample`, ``"vmap"`` / ``"loop"``)
are the fallback and serve ``obd``'s per-sample Fisher diagonal.
"""

from cpd.scores.activation_grads import ActivationGrads, HooksUnsupported
from cpd.scores.base import Criterion
from cpd.scores.batch import LossFn, default_loss
from cpd.scores.channels import GroupPlan, MemberPlan, build_plans, channel_sum
from cpd.scores.hessian import HessianCriterion, HessianMethod
from cpd.scores.magnitude import MagnitudeCriterion
from cpd.scores.normalize import (
    channel_width,
    global_ranking,
    normalize_scores,
    param_cost,
)
from cpd.scores.obd import OBDCriterion
from cpd.scores.rand import RandomCriterion
from cpd.scores.registry import DEFAULT_CRITERION, available, get_criterion, register
from cpd.scores.taylor import TaylorCriterion

__all__ = [
    "Criterion",
    "LossFn",
    "default_loss",
    "GroupPlan",
    "MemberPlan",
    "build_plans",
    "channel_sum",
    "HessianCriterion",
    "HessianMethod",
    "ActivationGrads",
    "HooksUnsupported",
    "OBDCriterion",
    "TaylorCriterion",
    "MagnitudeCriterion",
    "RandomCriterion",
    "DEFAULT_CRITERION",
    "available",
    "get_criterion",
    "register",
    "channel_width",
    "param_cost",
    "normalize_scores",
    "global_ranking",
]
