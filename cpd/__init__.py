"""cpd: Comb, Prune, Distill — structured pruning with distillation for vision models.

Stages, each usable on its own: :mod:`cpd.trace` (record one forward),
:mod:`cpd.groups` (coupled channel groups), :mod:`cpd.scores` (importance),
:mod:`cpd.plan` (which channels to keep), :mod:`cpd.apply` (physical removal and
verification), :mod:`cpd.distill` (teacher-student losses), :mod:`cpd.report`
(MACs, latency, ONNX).
"""

from cpd.api import PruneResult, comb, count, prune
from cpd.groups.comb_result import CombResult
from cpd.groups.group import Group, Member
from cpd.plan.plan import Plan
from cpd.plan.schedule import IterativePruner

__version__ = "0.1.0"
__all__ = [
    "CombResult", "Group", "IterativePruner", "Member", "Plan", "PruneResult", "comb", "count",
    "prune",
]
