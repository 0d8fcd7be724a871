"""Base class for streaming metrics whose state is a few count tensors.

Keeping the state as plain summable counts (never running averages) is what makes the
metrics exact under streaming and under distributed reduction: the sum of per-batch (or
per-rank) counts is the count over the whole dataset.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["StreamingMetric", "all_reduce_sum"]


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """Sum ``tensor`` over all ranks when ``torch.distributed`` is initialised.

    Returns a new tensor on the same device and with the same dtype as ``tensor``; when
    torch.distributed is not available or not initialised it returns a copy unchanged.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return tensor.clone()
    # NCCL only reduces CUDA tensors; the counts usually live on the CPU.
    device = tensor.device
    if dist.get_backend() == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())
    reduced = tensor.detach().to(device).clone()
    dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
    return reduced.to(tensor.device)


class StreamingMetric(ABC):
    """A metric accumulated batch by batch: ``update`` many times, then ``compute``.

    Subclasses keep their state in the tensors returned by :meth:`_counts` (all of them
    summable) and must create them in :meth:`reset`.
    """

    @abstractmethod
    def reset(self) -> None:
        """Zero the accumulated counts."""

    @abstractmethod
    def update(self, logits: Tensor, targets: Tensor) -> None:
        """Add one batch (logits from the model, ground-truth targets)."""

    @abstractmethod
    def compute(self) -> dict[str, float | list[float]]:
        """Return the metric values for everything seen since the last :meth:`reset`."""

    @abstractmethod
    def _counts(self) -> list[Tensor]:
        """The state tensors, summed element-wise by :meth:`all_reduce`."""

    def all_reduce(self) -> None:
        """Sum the counts over all ranks in place (no-op without torch.distributed).

        Call it once, after the last :meth:`update` and before :meth:`compute`, on every rank.
        """
        for count in self._counts():
            count.copy_(all_reduce_sum(count))
