"""``TrainConfig``: every knob of the fine-tuning loop, flat and JSON-serialisable.

Flat on purpose: a config is written next to every run (``config.json``), and a
flat dict of numbers and strings is easy to diff between runs and to map onto
command-line flags one to one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from cpd.distill.views import EXTRA_VIEWS

__all__ = ["TrainConfig"]

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "poly", "constant")
AMP_MODES = ("none", "bf16", "fp16")


@dataclass
class TrainConfig:
    """Hyper-parameters and plumbing of :class:`~cpd.train.Trainer`.

    Length of training: ``max_steps`` when set, else ``epochs`` full passes over the
    training loader (``drop_last=True``, so an epoch is ``len(dataset) // (batch_size *
    world_size)`` optimizer steps).

    Loss: ``alpha * KD + (1 - alpha) * task`` plus, when ``feature_layers`` is set,
    ``feature_weight * `` the mean feature MSE over those layers (see
    :class:`cpd.train.objective.Objective`). A teacher is needed when ``alpha > 0`` or
    ``feature_layers`` is set.
    """

    epochs: int = 1  # full passes over the training set; ignored when max_steps is set
    max_steps: int | None = None  # total optimizer steps; overrides epochs when not None
    batch_size: int = 32  # per process: the global batch is batch_size * world_size
    optimizer: str = "adamw"  # "adamw" or "sgd"
    lr: float = 1e-3  # peak learning rate, reached at the end of warmup
    weight_decay: float = 0.01  # applied to weights with ndim >= 2 only (not biases / norms)
    momentum: float = 0.9  # SGD momentum (nesterov=False); ignored by AdamW
    warmup_steps: int = 0  # linear warmup from lr / warmup_steps to lr over this many steps
    schedule: str = "cosine"  # decay after warmup: "cosine", "poly" or "constant"
    poly_power: float = 0.9  # exponent of the "poly" schedule (0.9: the DeepLab choice)
    min_lr: float = 0.0  # floor the cosine/poly decay ends at
    grad_clip: float | None = None  # max global L2 norm of the gradients; None disables
    amp: str = "bf16"  # "none", "bf16" or "fp16" autocast; used on CUDA only (fp16 adds a GradScaler)
    eval_every: int = 0  # evaluate (and checkpoint) every this many steps; 0: only at the end
    save_every: int = 0  # extra checkpoint cadence in steps; 0: checkpoint only at evals and the end
    keep_last: int = 2  # newest checkpoints kept on disk (the best one is kept in addition)
    log_every: int = 10  # write one JSON line (and refresh the progress bar) every this many steps
    progress: bool = True  # show a progress bar (only on rank 0 and only when stderr is a TTY)
    seed: int = 0  # seeds python/numpy/torch (plus rank) and the sampler's shuffling
    num_workers: int = 0  # DataLoader worker processes (exact resume needs 0 or per-sample-deterministic data)
    out_dir: str | None = None  # run folder: log.jsonl, config.json, checkpoints/; None writes nothing
    alpha: float = 0.5  # weight of the KD term; 0 = plain task loss (no teacher needed, unless feature_layers)
    temperature: float | None = None  # KD temperature; None: the task's default
    feature_layers: list[str] = field(default_factory=list)  # feature KD: teacher module names (convs, linears, norms) matched by MSE at the kept channels; needs a teacher; []: off
    extra_view: str = "none"  # "cutmix": also train on a CutMix of each batch, like the batch (label maps mixed by the same box; class labels: KD only); "none": off
    feature_weight: float = 1.0  # weight of the feature KD term (mean MSE over feature_layers), added to the alpha mix
    resume: bool = False  # continue from the newest checkpoint in out_dir/checkpoints if one exists

    def __post_init__(self) -> None:
        self.optimizer = self.optimizer.lower()
        self.schedule = self.schedule.lower()
        self.amp = (self.amp or "none").lower()
        self.extra_view = (self.extra_view or "none").lower()
        if isinstance(self.feature_layers, str):  # a lone name would iterate as characters
            raise ValueError(f"TrainConfig: feature_layers must be a list of module names, got the string "
                             f"{self.feature_layers!r}; write [{self.feature_layers!r}]")
        self.feature_layers = list(self.feature_layers)
        checks = [
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}"),
            (self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}, got {self.schedule!r}"),
            (self.amp in AMP_MODES, f"amp must be one of {AMP_MODES}, got {self.amp!r}"),
            (self.epochs >= 1 or self.max_steps is not None, f"epochs must be >= 1, got {self.epochs}"),
            (self.max_steps is None or self.max_steps >= 1, f"max_steps must be >= 1, got {self.max_steps}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.lr > 0, f"lr must be positive, got {self.lr}"),
            (self.warmup_steps >= 0, f"warmup_steps must be >= 0, got {self.warmup_steps}"),
            (self.grad_clip is None or self.grad_clip > 0, f"grad_clip must be positive or None, got {self.grad_clip}"),
            (0.0 <= self.alpha <= 1.0, f"alpha must be in [0, 1], got {self.alpha}"),
            (self.extra_view in EXTRA_VIEWS, f"extra_view must be one of {EXTRA_VIEWS}, got {self.extra_view!r}"),
            (self.feature_weight >= 0, f"feature_weight must be >= 0, got {self.feature_weight}"),
            (all(isinstance(n, str) and n for n in self.feature_layers),
             f"feature_layers must be non-empty module names, got {self.feature_layers}"),
            (len(set(self.feature_layers)) == len(self.feature_layers),
             f"feature_layers lists a module twice: {self.feature_layers}"),
            (min(self.eval_every, self.save_every) >= 0, "eval_every and save_every must be >= 0"),
            (self.log_every >= 1, f"log_every must be >= 1, got {self.log_every}"),
            (self.keep_last >= 1, f"keep_last must be >= 1, got {self.keep_last}"),
            (not self.resume or self.out_dir is not None, "resume=True needs out_dir (where the checkpoints are)"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"TrainConfig: {message}")

    def to_dict(self) -> dict[str, Any]:
        """A plain ``{field: value}`` dict (JSON-serialisable)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a dict, rejecting unknown keys with the list of valid ones."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"TrainConfig: unknown option(s) {unknown}; valid: {sorted(names)}")
        return cls(**values)
