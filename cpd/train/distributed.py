"""torch.distributed plumbing: process-group setup from torchrun's env, DDP, reductions.

Under ``torchrun --nproc_per_node N`` every process sees ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_distributed` reads
them, so the same script runs on one process (nothing to initialise) or N.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

__all__ = ["DistInfo", "init_distributed", "is_distributed", "all_reduce_scores", "wrap_ddp", "unwrap", "barrier"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size`` on ``device``.

    Attributes:
        initialized_here: True when :func:`init_distributed` created the process group
            (so the trainer, and only then, destroys it at the end).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs, shows progress and writes checkpoints."""
        return self.rank == 0


def is_distributed() -> bool:
    """True when a process group is initialised (and has more than one rank)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def init_distributed(device: str | torch.device | None = None) -> DistInfo:
    """Join the process group described by torchrun's environment, if any.

    Backend: NCCL when CUDA is available, gloo otherwise. With CUDA, each process uses
    ``cuda:LOCAL_RANK``. Without ``WORLD_SIZE > 1`` in the environment (a plain
    ``python train.py``) no group is created. An already initialised group is reused.

    Args:
        device: force a device (e.g. ``"cpu"`` on a GPU machine); default: ``cuda:LOCAL_RANK``
            when CUDA is available, else the CPU.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda":
        # Must precede NCCL init: otherwise every rank's communicator lands on GPU 0.
        torch.cuda.set_device(device)
    created = False
    if dist.is_available() and dist.is_initialized():
        world = dist.get_world_size()
    elif world > 1:
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, init_method="env://")
        created = True
    rank = dist.get_rank() if world > 1 else 0
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=device, initialized_here=created)


def barrier() -> None:
    """Wait for every rank (no-op when not distributed)."""
    if is_distributed():
        dist.barrier()


def all_reduce_scores(scores: dict[int, Tensor]) -> dict[int, Tensor]:
    """Sum per-channel importance scores over all ranks.

    Each rank scores channels on its own shard of the data; pruning must remove the
    *same* channels everywhere, or the ranks' models stop matching and DDP breaks.
    Summing (rather than averaging) keeps the scores proportional to what one process
    would get on the whole global batch, and the ranking is what selection uses.

    Args:
        scores: group id -> ``(size,)`` scores (any float dtype), the same keys and sizes
            on every rank.

    Returns:
        A new dict with the summed scores, on the same devices and dtypes as the inputs;
        a copy when not distributed.
    """
    if not is_distributed():
        return {g: s.clone() for g, s in scores.items()}
    keys = sorted(scores)
    # One flat all_reduce instead of one per group: a network has hundreds of groups.
    flat = torch.cat([scores[g].detach().double().reshape(-1) for g in keys])
    if dist.get_backend() == "nccl":
        flat = flat.cuda()
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    out: dict[int, Tensor] = {}
    offset = 0
    for g in keys:
        n = scores[g].numel()
        out[g] = flat[offset : offset + n].reshape(scores[g].shape).to(scores[g].device, scores[g].dtype)
        offset += n
    return out


def wrap_ddp(model: nn.Module, info: DistInfo) -> nn.Module:
    """Wrap ``model`` (already on ``info.device``) in DDP when distributed, else return it.

    DDP's constructor broadcasts rank 0's parameters and buffers, so every rank starts
    from identical weights, also after a pruning callback rebuilt the model.
    """
    if info.world_size <= 1:
        return model
    if info.device.type == "cuda":
        device_ids = [info.device.index if info.device.index is not None else torch.cuda.current_device()]
    else:
        device_ids = None
    return DistributedDataParallel(model, device_ids=device_ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (or the model itself)."""
    return model.module if isinstance(model, DistributedDataParallel) else model
