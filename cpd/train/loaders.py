"""DataLoaders whose order is reproducible and resumable, on one process or many."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from cpd.train.config import TrainConfig
from cpd.train.distributed import DistInfo
from cpd.train.sampler import ResumableSampler, ShardSampler

__all__ = ["train_loader", "eval_loader", "seed_worker"]


def seed_worker(worker_id: int) -> None:
    """Seed numpy and python in a worker from torch's per-worker seed.

    torch seeds its own generator (and python's) in each worker from the loader's base
    seed; numpy is left alone, so numpy-based augmentation would repeat across workers.
    """
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def _generator(seed: int) -> torch.Generator:
    # The loader draws its workers' base seed from this generator when an iterator is
    # created; without one it draws from the global generator, which would make the
    # global RNG stream depend on when iterators are created (e.g. on resume).
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def train_loader(
    dataset: Dataset[Any], config: TrainConfig, info: DistInfo, collate_fn: Callable[[list[Any]], Any] | None = None
) -> tuple[DataLoader[Any], ResumableSampler]:
    """The training loader (shuffled, ``drop_last``) and its sampler.

    Call ``sampler.set_position(epoch, skip)`` and ``loader.generator.manual_seed(...)``
    before iterating an epoch (the trainer does).
    """
    sampler = ResumableSampler(dataset, info.world_size, info.rank, shuffle=True, seed=config.seed, drop_last=True)  # type: ignore[arg-type]
    loader = DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=sampler,
        drop_last=True,  # equal-size batches: BN statistics and the step count stay regular
        num_workers=config.num_workers,
        collate_fn=collate_fn,
        pin_memory=info.device.type == "cuda",
        worker_init_fn=seed_worker,
        generator=_generator(config.seed),
    )
    return loader, sampler


def eval_loader(
    dataset: Dataset[Any], config: TrainConfig, info: DistInfo, collate_fn: Callable[[list[Any]], Any] | None = None
) -> DataLoader[Any]:
    """The evaluation loader: this rank's shard, in order, every sample exactly once."""
    return DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=ShardSampler(dataset, info.world_size, info.rank),  # type: ignore[arg-type]
        num_workers=config.num_workers,
        collate_fn=collate_fn,
        pin_memory=info.device.type == "cuda",
        worker_init_fn=seed_worker,
        generator=_generator(config.seed),
    )
