"""Bounded-memory store of the rows of the channel-mask gradient matrix.

The ``hessian`` criterion computes, per sample ``n`` (per batch in its batch form),
the gradient ``g_n`` of the loss with respect to a multiplicative mask on every
channel, and keeps only ``sum_n g_{n,c}^2``: the diagonal of the empirical Fisher
``F = sum_n g_n g_n^T``. Selecting channels with the whole of ``F`` needs the rows
``g_n`` themselves (see :mod:`cpd.plan.select_fisher`). :class:`RowSketch` stores them:

* exactly, while there are at most ``max_rows`` of them;
* beyond that as a Gaussian sketch ``S = R G`` with ``max_rows`` rows, accumulated
  batch by batch (``S += R_b G_b``, ``R_b`` with i.i.d. ``N(0, 1/max_rows)``
  entries), so that ``E[S^T S] = G^T G = F`` and memory stays ``max_rows x C``.
  Inner products between columns (what selection uses) are preserved up to a
  relative error of about ``1 / sqrt(max_rows)`` (Johnson-Lindenstrauss).

The sketch is seeded, so the same rows in the same order give the same result.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

__all__ = ["DEFAULT_MAX_ROWS", "RowSketch"]

#: rows kept exactly before sketching; 512 costs 2 KiB per channel (float32)
DEFAULT_MAX_ROWS = 512


class RowSketch:
    """Rows ``g_n`` of a per-channel matrix, split by group, in bounded memory.

    Args:
        sizes: group id -> number of channels, in column order.
        max_rows: rows kept exactly; more rows are folded into a sketch of this many.
        seed: seed of the sketch's random projections.
    """

    def __init__(self, sizes: Mapping[int, int], max_rows: int = DEFAULT_MAX_ROWS, seed: int = 0) -> None:
        if max_rows < 1:
            raise ValueError(f"max_rows must be >= 1, got {max_rows}")
        self.sizes = {int(g): int(s) for g, s in sizes.items()}
        self.max_rows, self.seed = max_rows, seed
        self.offsets: dict[int, int] = {}
        total = 0
        for gid, size in self.sizes.items():
            self.offsets[gid] = total
            total += size
        self.columns = total
        self.reset()

    def reset(self) -> None:
        """Forget every row."""
        self._exact: list[Tensor] = []  # (n_b, C) float32 blocks while not sketched
        self._sketch: Tensor | None = None  # (max_rows, C) float32 once sketched
        self._gen = torch.Generator().manual_seed(self.seed)
        self.seen = 0  # rows added since the last reset

    @property
    def sketched(self) -> bool:
        """Whether the rows are held as a sketch (more than ``max_rows`` were added)."""
        return self._sketch is not None

    def add(self, rows: Mapping[int, Tensor]) -> None:
        """Add one block of rows.

        Args:
            rows: group id -> ``(n, size)`` (the same ``n`` for every group of
                ``sizes``; ``(size,)`` counts as one row).
        """
        block = self._block(rows)
        self.seen += block.shape[0]
        if self._sketch is None and self.seen <= self.max_rows:
            self._exact.append(block)
            return
        if self._sketch is None:  # first overflow: project the exact rows so far
            held = torch.cat(self._exact) if self._exact else block[:0]
            self._exact = []
            self._sketch = self._project(held)
        self._sketch += self._project(block)

    def matrix(self) -> Tensor:
        """All rows as one ``(r, C)`` float32 tensor (columns in ``sizes`` order)."""
        if self._sketch is not None:
            return self._sketch.clone()
        if not self._exact:
            return torch.zeros(0, self.columns)
        return torch.cat(self._exact)

    def rows(self) -> dict[int, Tensor]:
        """group id -> ``(r, size)`` float32: the exact rows, or the sketch's."""
        m = self.matrix()
        return {gid: m[:, o:o + self.sizes[gid]] for gid, o in self.offsets.items()}

    def _block(self, rows: Mapping[int, Tensor]) -> Tensor:
        missing = [g for g in self.sizes if g not in rows]
        if missing:
            raise ValueError(f"rows for groups {missing} are missing")
        parts = []
        n: int | None = None
        for gid, size in self.sizes.items():
            r = rows[gid].detach().to("cpu", torch.float32)
            r = r.unsqueeze(0) if r.ndim == 1 else r
            if r.ndim != 2 or r.shape[1] != size or (n is not None and r.shape[0] != n):
                raise ValueError(f"rows of group {gid} have shape {tuple(r.shape)}, expected (n, {size}) "
                                 "with the same n for every group")
            n = r.shape[0]
            parts.append(r)
        return torch.cat(parts, dim=1) if parts else torch.zeros(0, 0)

    def _project(self, block: Tensor) -> Tensor:
        """``R @ block`` with ``R`` of shape ``(max_rows, n)``, entries ``N(0, 1/max_rows)``."""
        r = torch.randn(self.max_rows, block.shape[0], generator=self._gen) / self.max_rows ** 0.5
        return r @ block
