"""Train: the fine-tuning loop (distillation, pruning hooks, exact resume, DDP).

Usage::

    from cpd.tasks import build_task
    from cpd.train import TrainConfig, Trainer

    config = TrainConfig(epochs=10, lr=1e-3, eval_every=200, out_dir="runs/pruned", resume=True)
    trainer = Trainer(student, build_task("classification"), train_set, val_set,
                      config=config, teacher=teacher)
    summary = trainer.fit()       # same script under `torchrun --nproc_per_node N`
"""

from cpd.train.callbacks import Callback
from cpd.train.checkpoint import (
    Checkpoint,
    CheckpointError,
    CheckpointManager,
    list_checkpoints,
    load_weights,
    read_checkpoint,
    save_checkpoint,
)
from cpd.train.config import TrainConfig
from cpd.train.distributed import (
    DistInfo,
    all_reduce_scores,
    init_distributed,
    is_distributed,
    unwrap,
)
from cpd.train.evaluate import evaluate
from cpd.train.optim import build_optimizer, clip_gradients, transfer_state
from cpd.train.rng import get_rng_state, seed_everything, set_rng_state
from cpd.train.sampler import ResumableSampler, ShardSampler
from cpd.train.schedule import WarmupSchedule, lr_at
from cpd.train.trainer import BatchLoss, Trainer

__all__ = [
    "BatchLoss",
    "Callback",
    "Checkpoint",
    "CheckpointError",
    "CheckpointManager",
    "DistInfo",
    "ResumableSampler",
    "ShardSampler",
    "TrainConfig",
    "Trainer",
    "WarmupSchedule",
    "all_reduce_scores",
    "build_optimizer",
    "clip_gradients",
    "evaluate",
    "get_rng_state",
    "init_distributed",
    "is_distributed",
    "list_checkpoints",
    "load_weights",
    "lr_at",
    "read_checkpoint",
    "save_checkpoint",
    "seed_everything",
    "set_rng_state",
    "transfer_state",
    "unwrap",
]
