"""The ``cpd run`` configuration: one plain dataclass per section of the YAML file.

Sections: ``model``, ``data``, ``task``, ``pretrain``, ``prune``, ``train``,
``export``, ``report``. ``train`` *is* :class:`cpd.train.TrainConfig`, field for
field. Every other field carries its help text (``metadata["help"]``), from which
:mod:`cpd.config.example` renders the commented example config, so the
documentation cannot drift from the schema. Loading, type checks and ``--set``
overrides live in :mod:`cpd.config.load`; the checks here are the ones a field's
type cannot express (ranges, one pruning target, known names).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from cpd.train.config import TrainConfig

__all__ = ["SECTIONS", "TARGETS", "DataSection", "ExportSection", "ModelSection", "PretrainSection",
           "PruneSection", "ReportSection", "RunConfig", "TaskSection", "option"]

#: The pruning target keys of the ``prune`` section; exactly one is set.
TARGETS = ("macs", "params", "ratio", "latency")


def option(default: Any, help: str, *, example: Any = dataclasses.MISSING,
           required: bool = False) -> Any:
    """A dataclass field with its help text (and an example value for the example config).

    Mutable defaults (lists, dicts) are copied per instance.
    """
    meta: dict[str, Any] = {"help": help, "required": required}
    if example is not dataclasses.MISSING:
        meta["example"] = example
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


def _fail(message: str) -> None:
    raise ValueError(message)


@dataclass
class ModelSection:
    """What to compress."""

    source: str | None = option(
        None, "a model string (hf:MODEL_TYPE?key=value&..., hf:/path/to/save_pretrained_dir, "
        "timm:NAME, torchvision:NAME, py:package.module:factory?key=value&...) or a folder saved "
        "by cpd. hf:MODEL_TYPE and py: factories build random weights: point at trained weights, "
        "or set pretrain.steps to train the model first. hf:MODEL_TYPE builds the "
        "image-classification class when the type has one; a save_pretrained folder builds the "
        "class its config names (e.g. a ...ForSemanticSegmentation)",
        example="hf:./segformer-camvid", required=True)

    def check(self) -> None:
        if not str(self.source).strip():
            _fail("model.source must not be empty")


@dataclass
class DataSection:
    """The dataset (cpd.data.build_dataset): training split and evaluation split."""

    name: str | None = option(
        None, "dataset name: digits, camvid, camvid_patches, imagefolder, cifar10, cifar100, ade20k",
        example="camvid", required=True)
    root: str | None = option(
        None, "dataset folder in its standard layout, relative to the current directory "
        "(digits needs none)", example="/data/camvid")
    options: dict[str, Any] = option(
        {}, "options of the dataset class for both splits, e.g. {size: 16} for digits")
    train_options: dict[str, Any] = option(
        {}, "options for the training split only (override options), e.g. {crop_size: [176, 240]}")
    val_options: dict[str, Any] = option({}, "options for the evaluation split only (override options)")
    train_split: str = option("train", "split to train (and score channels) on")
    val_split: str = option("val", "split every metric in the report is measured on")

    def check(self) -> None:
        from cpd.data.factory import DATASETS

        key = str(self.name).strip().lower().replace("-", "_")
        if key not in DATASETS:
            from difflib import get_close_matches

            close = get_close_matches(key, list(DATASETS), n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            _fail(f"data.name: unknown dataset {self.name!r}; {hint}choose one of {', '.join(DATASETS)}")


@dataclass
class TaskSection:
    """What is predicted; the loss, the metric and the distillation loss follow from it."""

    name: str | None = option(None, "classification or segmentation; null: the dataset's task")
    options: dict[str, Any] = option(
        {}, "options of the task: classification takes topk, temperature, label_smoothing; "
        "segmentation num_classes, ignore_index, temperature, label_smoothing, kd_mode (pixel or "
        "channel; num_classes and ignore_index default to the dataset's)")

    def check(self) -> None:
        from cpd.tasks.task import TASK_NAMES

        if self.name is not None and self.name.strip().lower() not in TASK_NAMES:
            _fail(f"task.name must be one of {', '.join(TASK_NAMES)} or null, got {self.name!r}")


@dataclass
class PretrainSection:
    """Optional training of the model before pruning (for a model with random weights).

    Uses the train section's batch size, optimizer, schedule, weight decay, seed and
    AMP settings, with the plain task loss (no teacher yet).
    """

    steps: int = option(0, "optimizer steps of training before pruning; 0 skips it")
    lr: float = option(3e-3, "peak learning rate of that training")
    warmup_steps: int = option(20, "linear warm-up steps of that training")

    def check(self) -> None:
        if self.steps < 0:
            _fail(f"pretrain.steps must be >= 0, got {self.steps}")
        if self.lr <= 0:
            _fail(f"pretrain.lr must be positive, got {self.lr}")
        if self.warmup_steps < 0:
            _fail(f"pretrain.warmup_steps must be >= 0, got {self.warmup_steps}")


@dataclass
class PruneSection:
    """Pruning inside training, with the unpruned model as the teacher (cpd.pipeline.run_cpd)."""

    macs: float | None = option(
        0.5, "target: keep at most this fraction of the MACs, in (0, 1]. Give exactly one of "
        "macs, params, ratio, latency; setting another one replaces this default")
    params: float | None = option(None, "target: keep at most this fraction of the parameters")
    ratio: float | None = option(None, "target: remove this fraction of the channels of every "
                                 "prunable group, in [0, 1)")
    latency: float | None = option(None, "target: measured latency at most this fraction of the "
                                   "original, on this machine with the current thread count")
    latency_batch_size: int = option(1, "images per forward when timing for a latency target")
    latency_tol: float = option(0.05, "relative tolerance of the latency search")
    importance: str = option("hessian", "criterion: hessian (the paper's), obd, taylor, "
                             "magnitude, random")
    criterion_options: dict[str, Any] = option(
        {}, "options of the criterion, e.g. {per_sample: false} for hessian's batch form")
    steps: int = option(4, "pruning steps; each removes the next share of channels")
    interval: int = option(25, "optimizer steps between pruning steps")
    start: int = option(0, "optimizer step at which scoring starts")
    score_batches: int | None = option(
        None, "batches scored before each pruning step (the last ones of each interval); "
        "null: the whole interval")
    ignore: list[str] = option([], "module names whose channels must stay")
    round_to: int | None = option(None, "kept channel counts are multiples of this")
    head_dim: bool = option(False, "also prune the per-head dimension of attention "
                            "(default: whole heads only)")
    max_ratio: float = option(0.95, "never remove more than this fraction of one group")
    cost: str | None = option(None, "with a macs or params target: rank channels by importance "
                              "per unit of this cost saved (macs or params), as the authors "
                              "divide by the layer's activation count; null: importance "
                              "relative to the channel's group")
    allocation: str = option("global", "with a macs or params target: global ranks the channels "
                             "of all groups together (scores decide how much each layer loses); "
                             "uniform removes the same fraction from every group, the smallest "
                             "that meets the target")
    mode: str = option("mask", "mask: removed channels are held at zero and removed physically "
                       "after the last pruning step (as the paper does); physical: removed at "
                       "every pruning step, so later steps train a smaller model")

    def target(self) -> tuple[str, float]:
        """The one ``(kind, value)`` that is set."""
        given = [(k, getattr(self, k)) for k in TARGETS if getattr(self, k) is not None]
        if len(given) != 1:
            names = " and ".join(f"prune.{k}={v}" for k, v in given) or "none"
            _fail(f"prune: give exactly one of {', '.join(TARGETS)} (got {names}); set the "
                  "others to null, e.g. --set prune.macs=null")
        return given[0]

    def check(self) -> None:
        from cpd.plan.latency_search import check_latency_args
        from cpd.plan.select_uniform import check_allocation
        from cpd.scores import available

        kind, value = self.target()
        if kind == "ratio" and not 0.0 <= value < 1.0:
            _fail(f"prune.ratio must be in [0, 1), got {value}")
        if kind in ("macs", "params", "latency") and not 0.0 < value <= 1.0:
            _fail(f"prune.{kind} is a fraction of the original and must be in (0, 1], got {value}")
        try:
            check_latency_args(None, self.latency_batch_size, self.latency_tol)
        except ValueError as e:
            _fail(f"prune.{e}")
        if self.importance not in available():
            _fail(f"prune.importance must be one of {', '.join(available())}, got {self.importance!r}")
        for name in ("steps", "interval"):
            if getattr(self, name) < 1:
                _fail(f"prune.{name} must be >= 1, got {getattr(self, name)}")
        if self.start < 0:
            _fail(f"prune.start must be >= 0, got {self.start}")
        for name in ("score_batches", "round_to"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                _fail(f"prune.{name} must be >= 1 or null, got {getattr(self, name)}")
        if not 0.0 < self.max_ratio <= 1.0:
            _fail(f"prune.max_ratio must be in (0, 1], got {self.max_ratio}")
        if self.mode not in ("mask", "physical"):
            _fail(f"prune.mode must be mask or physical, got {self.mode!r}")
        if self.cost not in (None, "macs", "params"):
            _fail(f"prune.cost must be macs, params or null, got {self.cost!r}")
        if self.cost is not None and kind not in ("macs", "params"):
            _fail(f"prune.cost ranks against a macs or params target; set prune.cost=null for {kind}")
        try:
            check_allocation(self.allocation, kind, self.cost)
        except ValueError as e:
            _fail(f"prune.{e}")

    def pruner_options(self) -> dict[str, Any]:
        """Keyword arguments of :class:`~cpd.plan.schedule.IterativePruner` (via run_cpd)."""
        kind, value = self.target()
        return {kind: value, "importance": self.importance,
                "criterion_options": dict(self.criterion_options) or None,
                "ignore": tuple(self.ignore), "round_to": self.round_to, "head_dim": self.head_dim,
                "max_ratio": self.max_ratio, "latency_batch_size": self.latency_batch_size,
                "latency_tol": self.latency_tol, "mode": self.mode, "cost": self.cost,
                "allocation": self.allocation}


@dataclass
class ExportSection:
    """ONNX export of the pruned model (needs onnx and onnxruntime: pip install "cpd[onnx]")."""

    onnx: bool = option(True, "write OUT/model.onnx, checked against PyTorch with onnxruntime "
                        "before it is written")
    compare: bool = option(False, "also export the unpruned model to OUT/baseline.onnx and time "
                           "both with onnxruntime at report.latency_batch_sizes (in the report)")
    opset: int = option(17, "ONNX opset")
    dynamic_batch: bool = option(True, "dynamic batch axis (checked at two batch sizes)")
    rtol: float = option(1e-3, "relative tolerance of the onnxruntime check")
    atol: float = option(1e-4, "absolute tolerance of the onnxruntime check")

    def check(self) -> None:
        if self.opset < 7:
            _fail(f"export.opset must be >= 7, got {self.opset}")
        if self.rtol < 0 or self.atol < 0:
            _fail("export.rtol and export.atol must be >= 0")
        if self.compare and not self.onnx:
            _fail("export.compare times ONNX files: it needs export.onnx: true")


@dataclass
class ReportSection:
    """Where everything goes, and what is measured."""

    out: str = option("cpd-run", "output folder: model/ (a cpd folder), report.json, report.md, "
                      "PNG plots, config.yaml (this config, resolved), model.onnx, run/ (training "
                      "log and checkpoints, unless train.out_dir is set)")
    title: str | None = option(None, "heading of report.md; null: 'cpd run: MODEL.SOURCE'")
    latency_batch_sizes: list[int] = option([1, 8], "batch sizes the CPU latency is measured at "
                                            "(one thread), before and after")

    def check(self) -> None:
        if not str(self.out).strip():
            _fail("report.out must not be empty")
        if not self.latency_batch_sizes or min(self.latency_batch_sizes) < 1:
            _fail(f"report.latency_batch_sizes must be positive integers, got {self.latency_batch_sizes}")


@dataclass
class RunConfig:
    """The whole ``cpd run`` configuration."""

    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    task: TaskSection = field(default_factory=TaskSection)
    pretrain: PretrainSection = field(default_factory=PretrainSection)
    prune: PruneSection = field(default_factory=PruneSection)
    train: TrainConfig = field(default_factory=TrainConfig)
    export: ExportSection = field(default_factory=ExportSection)
    report: ReportSection = field(default_factory=ReportSection)

    def to_dict(self) -> dict[str, Any]:
        """``{section: {key: value}}``, plain JSON/YAML values."""
        return dataclasses.asdict(self)


#: Section name -> dataclass, in file order.
SECTIONS: dict[str, type] = {f.name: f.default_factory for f in dataclasses.fields(RunConfig)}  # type: ignore[misc]
