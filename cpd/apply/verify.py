"""After pruning: the model must run on the example input with the same output shapes."""

from __future__ import annotations

import copy
from typing import Callable

import torch
import torch.nn as nn

from cpd.apply.apply import apply_plan
from cpd.inputs import ExampleInputs, call_model
from cpd.plan.plan import Plan
from cpd.trace.recorder import output_shapes


class VerificationError(RuntimeError):
    """The pruned model fails on the example input or changed an output shape."""


def verify(model: nn.Module, example_inputs: ExampleInputs, expected: list[list[int]]) -> None:
    """Run ``model`` once (eval, no_grad; mode restored) and compare output shapes.

    Raises:
        VerificationError: the forward raised, or the output shapes differ.
    """
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = call_model(model, example_inputs)
    except Exception as e:  # noqa: BLE001 - reported with the cause
        raise VerificationError(f"pruned model fails: {type(e).__name__}: {e}") from e
    finally:
        model.train(was)
    got = [list(s) for s in output_shapes(out)]
    if got != [list(s) for s in expected]:
        raise VerificationError(f"output shapes changed from {expected} to {got}")


def find_breaking(
    gids: list[int], works: Callable[[list[int]], bool]
) -> tuple[list[int], list[int]]:
    """Split ``gids`` into (kept, rolled back) so that ``works(kept)`` holds.

    Divide and conquer: a chunk of groups that works together is kept whole, a
    failing chunk is halved, so a few bad groups among many cost O(bad * log n)
    forward passes instead of one per group. ``works([])`` is assumed true.
    """
    kept: list[int] = []
    bad: list[int] = []

    def visit(chunk: list[int]) -> None:
        if not chunk:
            return
        if works(kept + chunk):
            kept.extend(chunk)
        elif len(chunk) == 1:
            bad.append(chunk[0])
        else:
            mid = len(chunk) // 2
            visit(chunk[:mid])
            visit(chunk[mid:])

    mid = len(gids) // 2  # the whole list is known to fail: start from its halves
    visit(gids[:mid])
    visit(gids[mid:])
    return kept, bad


def repair_pairs(
    good: list[int], bad: list[int], plan: Plan, works: Callable[[list[int]], bool]
) -> tuple[list[int], list[int]]:
    """Retry rolled-back groups two at a time.

    Two groups can be coupled through Python ints the trace cannot see (one tensor's
    ``shape[1]`` used to reshape another): each breaks the model alone, both pruned
    to the same count work. Pairs need equal sizes and equal kept counts.
    """
    left = list(bad)
    for i, a in enumerate(bad):
        if a not in left:
            continue
        for b in bad[i + 1 :]:
            if b not in left or plan.sizes[a] != plan.sizes[b]:
                continue
            if len(plan.keep[a]) == len(plan.keep[b]) and works(good + [a, b]):
                good += [a, b]
                left = [g for g in left if g not in (a, b)]
                break
    return good, left


def apply_checked(
    model: nn.Module, example_inputs: ExampleInputs, plan: Plan,
    expected: list[list[int]], inplace: bool = False,
) -> tuple[nn.Module, Plan, list[int]]:
    """Apply ``plan`` and verify; groups that break the model are rolled back.

    Returns the pruned model, the plan that was actually applied (a copy without
    the rolled-back groups) and the ids of the rolled-back groups.
    """

    def attempt(gids: list[int]) -> tuple[nn.Module, Plan]:
        sub = copy.copy(plan)
        sub.keep = {g: plan.keep[g] for g in gids}
        pm = apply_plan(model, sub)
        verify(pm, example_inputs, expected)
        return pm, sub

    def works(gids: list[int]) -> bool:
        try:
            attempt(gids)
            return True
        except (VerificationError, ValueError):
            return False

    try:
        pm, final = attempt(list(plan.keep))
        bad: list[int] = []
    except (VerificationError, ValueError):
        good, bad = find_breaking(list(plan.keep), works)
        good, bad = repair_pairs(good, bad, plan, works)
        pm, final = attempt(good)
    if inplace:
        pm = apply_plan(model, final, inplace=True)
    return pm, final, bad
