"""``run_config``: the whole pipeline from one :class:`~cpd.config.schema.RunConfig`.

Stages, reusing the library's pieces:

1. model: :func:`cpd.io.open_model` (model string or cpd folder);
2. data and task: :func:`cpd.data.build_dataset`, :func:`cpd.tasks.build_task`;
3. pretrain (optional): :class:`cpd.train.Trainer` on the task loss;
4. comb, prune with distillation, fine-tune: :func:`cpd.pipeline.run_cpd`;
5. export: :func:`cpd.report.export_onnx` (and onnxruntime timings with ``compare``);
6. report: :func:`cpd.pipeline.report.write_report` (model folder, JSON, Markdown,
   plots), plus ``config.yaml``, the resolved config.

Everything that can be checked before training is (output folder, ONNX packages,
classes, step budget), so a bad setting fails in seconds, not after an hour.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from cpd.config.datasets import (
    check_classes,
    example_input,
    in_model_form,
    open_split,
    task_for,
)
from cpd.config.load import ConfigError, dump_config
from cpd.config.schema import RunConfig
from cpd.io.errors import require
from cpd.io.inputs import InputSpec

__all__ = ["run_config"]


def _train_config(config: RunConfig, out: Path) -> Any:
    """The ``train`` section, with the run folder defaulting to ``report.out/run``."""
    out_dir = config.train.out_dir or str(out / "run")
    return dataclasses.replace(config.train, out_dir=out_dir)


def _pretrain_config(config: RunConfig) -> Any:
    """Training before pruning: the train section's optimizer settings, task loss only."""
    p = config.pretrain
    return dataclasses.replace(config.train, max_steps=p.steps, lr=p.lr, warmup_steps=p.warmup_steps,
                               alpha=0.0, temperature=None, feature_layers=[], extra_view="none", out_dir=None,
                               resume=False, eval_every=0, save_every=0)


def _check_budget(config: RunConfig, train_len: int) -> None:
    """The training budget must reach past the last pruning step."""
    t, p = config.train, config.prune
    total = t.max_steps if t.max_steps is not None else t.epochs * (train_len // t.batch_size)
    last = p.start + p.steps * p.interval
    if total < last:
        raise ConfigError(f"train: {total} optimizer steps end before the last pruning step "
                          f"(prune.start + prune.steps * prune.interval = {last}); raise "
                          "train.max_steps (or train.epochs) or lower prune.steps / prune.interval")


def _export(config: RunConfig, out: Path, pruned: Any, teacher: Any, example: Any,
            console: Console) -> dict[str, Any] | None:
    """``model.onnx`` (and with ``compare``, ``baseline.onnx`` and onnxruntime timings)."""
    from cpd.report.onnx_export import export_onnx, time_onnx

    e = config.export
    if not e.onnx:
        return None
    opts: dict[str, Any] = {"opset": e.opset, "dynamic_batch": e.dynamic_batch, "rtol": e.rtol, "atol": e.atol}
    path = export_onnx(pruned, example, out / "model.onnx", **opts)
    info: dict[str, Any] = {"file": path.name, "opset": e.opset}
    console.print(escape(f"export: wrote {path}, outputs match PyTorch on onnxruntime"))
    if e.compare:
        base = export_onnx(teacher, example, out / "baseline.onnx", **opts)
        sizes = config.report.latency_batch_sizes
        info["baseline_file"] = base.name
        for key, file in (("baseline_latency_ms", base), ("latency_ms", path)):
            info[key] = {f"bs{b}": time_onnx(file, example, batch_size=b, threads=1).median_ms
                         for b in sizes}
    return info


def run_config(config: RunConfig, *, console: Console | None = None) -> dict[str, Any]:
    """Run the pipeline the config describes; write everything under ``config.report.out``.

    Returns:
        The summary written to ``report.json`` (metric, MACs, params and latency
        before and after, pruning history, ONNX info, the resolved config).

    Raises:
        ConfigError / CpdInputError: a setting that cannot work (checked before training).
        MissingDependencyError: ``export.onnx`` without onnx / onnxruntime installed.
    """
    from cpd.io.resolve import open_model
    from cpd.io.save import check_destination
    from cpd.pipeline.report import write_report
    from cpd.pipeline.run import run_cpd
    from cpd.report.atomic import atomic_path
    from cpd.train.rng import seed_everything
    from cpd.distill.feature_taps import check_feature_layers
    from cpd.train.trainer import Trainer

    console = console or Console()
    out = Path(config.report.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"report.out: {out} is a file; give a folder")
    check_destination(out / "model")  # before hours of training, not after
    if config.export.onnx:
        for package in ("onnx", "onnxruntime"):
            require(package, "export.onnx (set it to false to skip the export)", '"cpd[onnx]"')
    seed_everything(config.train.seed)
    loaded = open_model(str(config.model.source))
    d = config.data
    train_raw = open_split(d.name, d.root, d.train_split, {**d.options, **d.train_options}, what="data")
    val_raw = open_split(d.name, d.root, d.val_split, {**d.options, **d.val_options}, what="data")
    task = task_for(val_raw, config.task.name, config.task.options)
    train_set, val_set = in_model_form(train_raw, loaded.inputs), in_model_form(val_raw, loaded.inputs)
    example = example_input(val_raw, loaded.inputs)
    check_classes(loaded.model, example, task, val_raw, f"data {d.name}")
    _check_budget(config, len(train_set))  # type: ignore[arg-type]
    console.print(escape(f"model: {loaded.source}; data: {d.name} ({len(train_set)} train, "  # type: ignore[arg-type]
                         f"{len(val_set)} {d.val_split}); task: {task.name}"))  # type: ignore[arg-type]

    model = loaded.model
    try:  # a mistyped layer name fails now, not after pretraining
        check_feature_layers(model, config.train.feature_layers)
    except ValueError as e:
        raise ConfigError(f"train.{e}") from None
    if config.pretrain.steps > 0:
        console.print(f"pretrain: {config.pretrain.steps} steps on the task loss")
        fit = Trainer(model, task, train_set, val_set, config=_pretrain_config(config)).fit()
        value = fit.get("metrics", {}).get(task.primary_metric)
        if value is not None:
            console.print(f"pretrain: {task.primary_metric} {float(value):.2f}")
    model.eval()
    kind, value = config.prune.target()
    console.print(f"comb, prune ({kind}={value:g}, {config.prune.importance}, "
                  f"{config.prune.steps} steps) and distil")
    result = run_cpd(model, task, train_set, val_set, example, config=_train_config(config, out),
                     steps=config.prune.steps, interval=config.prune.interval,
                     start=config.prune.start, score_batches=config.prune.score_batches,
                     latency_batch_sizes=tuple(config.report.latency_batch_sizes),
                     **config.prune.pruner_options())
    onnx = _export(config, out, result.model, model, example, console)
    title = config.report.title or f"cpd run: {config.model.source}"
    shape = tuple(next(iter(example.values())).shape if isinstance(example, dict) else example.shape)
    summary = write_report(out, result, source=loaded.source, example_shape=InputSpec(shape, loaded.inputs.kwarg),
                           title=title, console=console, base_plans=loaded.plans,
                           extra={"source": config.model.source, "onnx": onnx, "config": config.to_dict()})
    with atomic_path(out / "config.yaml") as tmp:
        tmp.write_text(dump_config(config), encoding="utf-8")
    return summary
