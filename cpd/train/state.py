"""What a checkpoint holds of a :class:`~cpd.train.Trainer`, and how it is put back.

``trainer.pt`` holds (all plain tensors, numbers, strings and containers)::

    step, epoch, batch_in_epoch     the schedule and data position
    world_size, batch_size          must match on resume (they define the data position)
    optimizer, schedule, scaler     the state dicts
    rng                             one get_rng_state() per rank
    best                            {"metric", "value", "step"}

Resume order matters: callbacks' ``on_resume`` first (they may rebuild a pruned
architecture and so a new optimizer), then the weights, then the optimizer state (its
parameter order is that of the rebuilt model), then the positions and the RNG.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch.distributed as dist

from cpd.train.checkpoint import load_weights, read_checkpoint
from cpd.train.distributed import barrier, is_distributed
from cpd.train.rng import get_rng_state, set_rng_state

if TYPE_CHECKING:
    from cpd.train.trainer import Trainer

__all__ = ["save_training_state", "resume_training_state"]


def save_training_state(trainer: Trainer) -> Path | None:
    """Checkpoint ``trainer`` at its current step; every rank calls it, rank 0 writes.

    Returns:
        The checkpoint folder on rank 0; None elsewhere or without ``out_dir``.
    """
    if trainer.checkpoints is None:
        return None
    assert trainer.optimizer is not None and trainer.schedule is not None
    rng: list[Any] = [get_rng_state()]
    if is_distributed():
        # Each rank draws its own dropout / augmentation numbers: keep every rank's state.
        rng = [None] * trainer.info.world_size
        dist.all_gather_object(rng, get_rng_state())
    path = None
    if trainer.is_main:
        state = {
            "step": trainer.step,
            "epoch": trainer.epoch,
            "batch_in_epoch": trainer.batch_in_epoch,
            "world_size": trainer.info.world_size,
            "batch_size": trainer.config.batch_size,
            "optimizer": trainer.optimizer.state_dict(),
            "schedule": trainer.schedule.state_dict(),
            "scaler": trainer.scaler.state_dict(),
            "rng": rng,
            "best": dict(trainer.best),
        }
        extra = {cb.key: e for cb in trainer.callbacks if (e := cb.checkpoint_extra(trainer))}
        path = trainer.checkpoints.save(trainer.step, trainer.model, state, extra)
        if trainer.best["step"] == trainer.step:
            trainer.checkpoints.mark_best(trainer.step, trainer.best["metric"], trainer.best["value"])
    barrier()  # no rank runs ahead (or, after a crash, resumes) before the checkpoint exists
    return path


def resume_training_state(trainer: Trainer) -> int | None:
    """Load the newest checkpoint of ``trainer.checkpoints`` into ``trainer``.

    Returns:
        The step resumed at, or None when there is no checkpoint (a fresh start).

    Raises:
        CheckpointError: the newest checkpoint is damaged (the message names the file and
            the previous checkpoint), or its weights do not fit the model.
        ValueError: the checkpoint was written with another world size or batch size.
    """
    assert trainer.checkpoints is not None
    path = trainer.checkpoints.latest()
    if path is None:
        return None
    ckpt = read_checkpoint(path)
    s = ckpt.state
    if (s["world_size"], s["batch_size"]) != (trainer.info.world_size, trainer.config.batch_size):
        raise ValueError(
            f"checkpoint {path} was written with world_size={s['world_size']}, batch_size={s['batch_size']}; "
            f"this run has {trainer.info.world_size} and {trainer.config.batch_size}: the data position would not match"
        )
    for cb in trainer.callbacks:
        if cb.key in ckpt.extra:
            new = cb.on_resume(trainer, ckpt.extra[cb.key])
            if new is not None:
                trainer.optimizer = None  # nothing to carry over: the state comes from the checkpoint
                trainer._install(new)
    load_weights(path, trainer.model)
    assert trainer.optimizer is not None and trainer.schedule is not None
    trainer.optimizer.load_state_dict(s["optimizer"])
    trainer.schedule.load_state_dict(s["schedule"])
    if s["scaler"] and trainer.scaler.is_enabled():
        trainer.scaler.load_state_dict(s["scaler"])
    trainer.step, trainer.epoch, trainer.batch_in_epoch = int(s["step"]), int(s["epoch"]), int(s["batch_in_epoch"])
    trainer.best = dict(s["best"])
    if len(s["rng"]) == trainer.info.world_size:
        set_rng_state(s["rng"][trainer.info.rank])
    else:
        warnings.warn(f"checkpoint {path} has no RNG state for rank {trainer.info.rank}; resume is not bit-exact", stacklevel=2)
    return trainer.step
