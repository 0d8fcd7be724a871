"""The ``hessian`` criterion, also keeping the mask-gradient rows it squares.

:class:`HessianRows` is :class:`~cpd.scores.hessian.HessianCriterion` (same options,
same engines, bit-identical :meth:`scores`) that additionally stores every row
``g_n`` (``(C,)``: per sample, or per batch with ``per_sample=False``) in a
:class:`~cpd.plan.row_sketch.RowSketch` before it is squared. Global selection uses
the rows to account for how removals interact (:mod:`cpd.plan.select_fisher`).

Both engines of the parent are tapped without changing them: the weight-gradient
engine calls :meth:`_update` with per-sample gradients, and the hook engine's
per-position vectors are read on their way to :meth:`_add`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from torch import Tensor, nn

from cpd.groups.group import Group
from cpd.plan.row_sketch import DEFAULT_MAX_ROWS, RowSketch
from cpd.scores.batch import Batch, LossFn
from cpd.scores.channels import channel_sum, gather_channels
from cpd.scores.hessian import HessianCriterion

__all__ = ["HessianRows"]


class _Tap:
    """Stands in for the hook engine: calls it and keeps what it returned for one batch."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.vectors: Any = None
        self.n = 0

    def __call__(self, model: nn.Module, params: Any, dims: Any, batch: Batch, loss_fn: LossFn) -> Any:
        self.vectors = self.engine(model, params, dims, batch, loss_fn)
        self.n = batch.size
        return self.vectors

    def __getattr__(self, name: str) -> Any:  # reset(), plan, ... of the real engine
        if name == "engine":  # not set yet (copying): no recursion
            raise AttributeError(name)
        return getattr(self.engine, name)


class HessianRows(HessianCriterion):
    """``hessian`` scores plus the rows of the channel-mask gradient matrix.

    Args:
        max_rows: rows kept exactly before they are folded into a sketch of this
            many (see :class:`~cpd.plan.row_sketch.RowSketch`).
        sketch_seed: seed of the sketch's projections.
        **options: the options of :class:`~cpd.scores.hessian.HessianCriterion`.
    """

    def __init__(self, *, max_rows: int = DEFAULT_MAX_ROWS, sketch_seed: int = 0, **options: Any) -> None:
        super().__init__(**options)
        self.max_rows, self.sketch_seed = max_rows, sketch_seed
        self._hooks = _Tap(self._hooks)
        self._sketch: RowSketch | None = None
        self._pending: dict[int, Tensor] = {}

    def prepare(self, model: nn.Module, groups: Iterable[Group]) -> HessianRows:
        super().prepare(model, groups)  # calls reset(), which builds the sketch
        return self

    def reset(self) -> None:
        super().reset()
        self._sketch = RowSketch({gid: p.size for gid, p in self.plans.items()},
                                 self.max_rows, self.sketch_seed)
        self._pending = {}

    def rows(self) -> dict[int, Tensor]:
        """group id -> ``(r, size)`` float32 mask-gradient rows (or their sketch)
        accumulated since the last reset; ``r`` is 0 before any batch."""
        if self._sketch is None:
            raise RuntimeError("HessianRows: call prepare(model, groups) first")
        return self._sketch.rows()

    @property
    def sketched(self) -> bool:
        """Whether more than ``max_rows`` rows came in (:meth:`rows` is a sketch)."""
        return self._sketch is not None and self._sketch.sketched

    # -- taps ------------------------------------------------------------------
    def _update(self, weights: Mapping[str, Tensor], grads: Mapping[str, Tensor], per_sample: bool) -> None:
        # Weight-gradient engine: the same reduction as the parent, rows kept first.
        wg = {k: weights[k] * grads[k] for k in weights}
        rows = {gid: channel_sum(plan, wg, batched=per_sample) for gid, plan in self.plans.items()}
        assert self._sketch is not None
        self._sketch.add(rows)
        for gid, g in rows.items():
            s = g.square()
            self._add(gid, s.sum(0) if per_sample else s)

    def _add(self, gid: int, value: Tensor) -> None:
        tap = self._hooks
        if isinstance(tap, _Tap) and tap.vectors is not None:
            # Hook engine: the parent squares gather_channels(plan, vectors); keep the rows.
            self._pending[gid] = gather_channels(self.plans[gid], tap.vectors, tap.n)
            if len(self._pending) == len(self.plans):
                assert self._sketch is not None
                self._sketch.add(self._pending)
                self._pending, tap.vectors = {}, None
        super()._add(gid, value)
