"""Measuring a candidate keep-set (MACs or parameters as a fraction of the original).

Global selection measures many candidates. Each one is applied to a copy of the
model on the ``meta`` device, where tensors have shapes but no storage, so a
candidate costs a slice of metadata and one shape-only forward under the flop
counter. Models that cannot run on ``meta`` (data-dependent Python) are measured
on a real copy instead.
"""

from __future__ import annotations

import copy

import torch.nn as nn

from cpd.apply.apply import apply_plan
from cpd.groups.comb_result import CombResult
from cpd.groups.group import Group
from cpd.inputs import ExampleInputs, to_device
from cpd.plan.plan import Plan
from cpd.report.counting import count, count_params


class Measurer:
    """Callable ``keep -> cost fraction`` for :func:`cpd.plan.select.select_global`."""

    def __init__(self, model: nn.Module, example_inputs: ExampleInputs, comb: CombResult,
                 kind: str) -> None:
        if kind not in ("macs", "params"):
            raise ValueError(f"kind must be 'macs' or 'params', got {kind!r}")
        self.kind, self.comb = kind, comb
        self.model, self.inputs = model, example_inputs
        try:
            meta = copy.deepcopy(model).to("meta")
            inputs = to_device(example_inputs, "meta")
            base = self._value(meta, inputs)
            self.model, self.inputs = meta, inputs
        except Exception:  # noqa: BLE001 - fall back to real tensors
            base = self._value(model, example_inputs)
        self.base = max(base, 1)

    def _value(self, model: nn.Module, inputs: ExampleInputs) -> int:
        return count(model, inputs)[0] if self.kind == "macs" else count_params(model)

    def __call__(self, keep: dict[int, list[int]]) -> float:
        pm = apply_plan(self.model, Plan.from_comb(self.comb, keep))
        return self._value(pm, self.inputs) / self.base


def channel_costs(measure: Measurer, groups: list[Group]) -> dict[int, float]:
    """Group id -> fraction of the original cost that removing one of its channels saves.

    One measurement per group (the group minus its last channel), so the cost of a
    channel includes every member it takes along (the next layer's input slice too).
    """
    out: dict[int, float] = {}
    for g in groups:
        if g.size < 2:
            continue
        out[g.id] = max(0.0, 1.0 - measure({g.id: list(range(g.size - 1))}))
    return out
