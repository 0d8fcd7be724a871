"""Learning-rate schedule: linear warmup, then cosine / poly decay or a constant.

The schedule is a pure function of the step (:func:`lr_at`), and
:class:`WarmupSchedule` only remembers the step. That is what lets the trainer throw
the optimizer away when a pruning callback replaces the model and attach a fresh
schedule to the new optimizer at the *same position*: nothing but an integer has to
be carried over (a ``torch.optim.lr_scheduler`` object, by contrast, is bound to its
optimizer and recomputes lrs from state stored inside it).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from torch.optim import Optimizer

__all__ = ["lr_at", "WarmupSchedule"]


def lr_at(
    step: int,
    *,
    base_lr: float,
    total_steps: int,
    warmup_steps: int = 0,
    schedule: str = "cosine",
    min_lr: float = 0.0,
    power: float = 0.9,
) -> float:
    """The learning rate for optimizer step ``step`` (0-based).

    * warmup (``step < warmup_steps``): ``base_lr * (step + 1) / warmup_steps``, so the
      first step is not wasted at lr 0 and the last warmup step is at ``base_lr``;
    * then, with ``p = (step - warmup_steps) / (total_steps - warmup_steps)`` in [0, 1]:
      cosine ``min_lr + (base_lr - min_lr) * (1 + cos(pi p)) / 2``, poly
      ``min_lr + (base_lr - min_lr) * (1 - p) ** power``, constant ``base_lr``.

    Steps past ``total_steps`` stay at the final value (``min_lr`` for cosine/poly).
    """
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return base_lr
    decay_steps = max(1, total_steps - warmup_steps)
    p = min(1.0, (step - warmup_steps) / decay_steps)
    if schedule == "cosine":
        factor = 0.5 * (1.0 + math.cos(math.pi * p))
    elif schedule == "poly":
        factor = (1.0 - p) ** power
    else:
        raise ValueError(f"unknown schedule {schedule!r}; choose cosine, poly or constant")
    return min_lr + (base_lr - min_lr) * factor


class WarmupSchedule:
    """Sets every param group's ``lr`` from :func:`lr_at` at the current step.

    Each param group may carry an ``lr_scale`` (default 1): its lr is
    ``lr_at(step) * lr_scale``, so per-group multipliers survive a rebuild.

    Usage, once per optimizer step::

        schedule.apply()      # lr for step `schedule.step`
        optimizer.step()
        schedule.step += 1

    Args:
        optimizer: the optimizer whose groups are updated.
        base_lr, total_steps, warmup_steps, schedule, min_lr, power: see :func:`lr_at`.
        step: position to start at (non-zero when rebuilt mid-run or resumed).
    """

    def __init__(
        self,
        optimizer: Optimizer,
        *,
        base_lr: float,
        total_steps: int,
        warmup_steps: int = 0,
        schedule: str = "cosine",
        min_lr: float = 0.0,
        power: float = 0.9,
        step: int = 0,
    ) -> None:
        self.optimizer = optimizer
        self.kwargs: dict[str, Any] = dict(
            base_lr=base_lr,
            total_steps=total_steps,
            warmup_steps=warmup_steps,
            schedule=schedule,
            min_lr=min_lr,
            power=power,
        )
        lr_at(0, **self.kwargs)  # validate the schedule name now, not at the first step
        self.step = int(step)
        self.apply()

    def lr(self, step: int | None = None) -> float:
        """The base learning rate at ``step`` (default: the current step)."""
        return lr_at(self.step if step is None else step, **self.kwargs)

    def apply(self) -> float:
        """Write the current step's lr into the optimizer; return it."""
        lr = self.lr()
        for group in self.optimizer.param_groups:
            group["lr"] = lr * float(group.get("lr_scale", 1.0))
        return lr

    def rebind(self, optimizer: Optimizer) -> WarmupSchedule:
        """A schedule at the same step driving ``optimizer`` (after a model replacement)."""
        return WarmupSchedule(optimizer, step=self.step, **self.kwargs)

    def state_dict(self) -> dict[str, Any]:
        """Only the position: the rest comes from the config (a length change warns on load)."""
        return {"step": self.step, "total_steps": int(self.kwargs["total_steps"])}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["total_steps"]) != int(self.kwargs["total_steps"]):
            # Allowed (extending a finished run is common) but no longer a continuation.
            warnings.warn(
                f"the checkpoint's schedule runs {state['total_steps']} steps but this config gives "
                f"{self.kwargs['total_steps']}: the lr curve is recomputed for the new length",
                stacklevel=2,
            )
        self.step = int(state["step"])
        self.apply()
