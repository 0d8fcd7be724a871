"""The runs of the CamVid benchmark: train a baseline, then compress it with each method.

Every compression method gets the same :class:`cpd.train.Trainer` loop and the same
:class:`~cpd.train.TrainConfig` except ``alpha`` (distillation weight): ``max_steps =
prune_steps * interval + ft_steps`` optimizer steps, one warm-up + cosine learning-rate
schedule over all of them, the final pruning at step ``prune_steps * interval - 1`` and
then exactly ``ft_steps`` fine-tuning steps.

* ``cpd``: :func:`cpd.pipeline.run.run_cpd`, Hessian scores on the KD + task loss,
  ``prune_steps`` masked steps to the MACs target, physical removal at the last one,
  fine-tuning with distillation from the unpruned model (``alpha``).
* ``cpd-no-kd``: the same with ``alpha=0`` (scores and fine-tuning on the task loss).
* ``tp-magnitude`` / ``tp-taylor``: dense training on the task loss up to the same
  pruning step, Torch-Pruning one-shot to the MACs target there (``camvid_tp``), plain
  fine-tuning after it.

Each method runs once per fine-tuning seed (``ft_seeds``: data order, augmentation;
the baseline is the same); a row holds the mean metric over the seeds (each seed's in
``metric_seeds``) on the evaluation set (the final weights: no checkpoint
selection), MACs and parameters as fractions of the baseline, and 1-thread CPU
latency at batch 1 and 8 (:func:`cpd.report.latency.measure_latency`). On a shared
machine wall-clock times of the same model vary by several x from one minute to the
next (other processes take the core), and medians with them, so the latency of a row
is the fastest forward pass over ``rounds`` measurements (of up to 20 timed runs
each), taken in alternation with the baseline; the row also holds that paired
baseline time, so speed-ups compare like with like.
"""

from __future__ import annotations

import copy
import statistics
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from camvid_tp import TP_METHODS, TorchPruningAt
from cpd.inputs import batch_like
from cpd.pipeline.run import Measured, measure, run_cpd
from cpd.report.latency import measure_latency
from cpd.tasks.task import Task
from cpd.train.callbacks import Callback
from cpd.train.config import TrainConfig
from cpd.train.trainer import Trainer

__all__ = ["METHODS", "ROW_KEYS", "RUNNERS", "Progress", "make_row", "paired_latency", "run_method",
           "train_baseline"]

METHODS = ("baseline", "cpd", "cpd-no-kd", "tp-magnitude", "tp-taylor")
#: the keys every row has (the issue's schema); rows add details after them
ROW_KEYS = ("model", "task", "method", "macs", "params", "metric", "latency_ms_bs1", "latency_ms_bs8")

Log = Callable[[str], None]


class Progress(Callback):
    """Logs the step, seconds so far and the current model size every ``every`` steps."""

    def __init__(self, log: Log, label: str, every: int = 100) -> None:
        self.log, self.label, self.every = log, label, every
        self.t0 = time.perf_counter()

    def on_train_start(self, trainer: Any) -> None:
        self.t0 = time.perf_counter()

    def on_step_end(self, trainer: Any, step: int) -> None:
        if (step + 1) % self.every == 0:
            n = sum(p.numel() for p in trainer.model.parameters())
            self.log(f"    {self.label}: step {step + 1}/{trainer.total_steps}, "
                     f"{time.perf_counter() - self.t0:.0f} s, {n / 1e6:.3f} M params")


def train_config(cfg: dict[str, Any], *, steps: int, lr: float, warmup: int, alpha: float = 0.0,
                 seed: int | None = None, feature_layers: list[str] | None = None,
                 view: bool = False) -> TrainConfig:
    """The benchmark's TrainConfig: AdamW, warm-up + cosine, fp32, nothing written to disk.

    ``view``: add ``cfg["extra_view"]`` (cpd's two methods only). Both train on it like on the
    batch: cpd with KD and the label maps mixed by the same box, cpd-no-kd (``alpha=0``) with
    the mixed label maps alone, so the two still differ only in the teacher.
    """
    return TrainConfig(max_steps=steps, batch_size=cfg["batch_size"], optimizer="adamw", lr=lr,
                       weight_decay=cfg["weight_decay"], warmup_steps=warmup, schedule="cosine",
                       alpha=alpha, temperature=cfg.get("temperature"), amp="none", progress=False,
                       log_every=10**9, eval_every=0, seed=cfg["seed"] if seed is None else seed,
                       feature_layers=list(feature_layers or []),
                       extra_view=cfg.get("extra_view", "none") if view else "none")


def train_baseline(model: nn.Module, task: Task, train: Dataset, cfg: dict[str, Any], log: Log) -> nn.Module:
    """Train ``model`` from scratch on the task loss for ``cfg["base_steps"]`` steps."""
    config = train_config(cfg, steps=cfg["base_steps"], lr=cfg["base_lr"], warmup=cfg["base_warmup"])
    trainer = Trainer(model, task, train, None, config=config, device="cpu",
                      callbacks=[Progress(log, "baseline", cfg["log_every"])])
    trainer.fit()
    return trainer.model.eval()


def paired_latency(model: nn.Module, base: nn.Module | None, example: torch.Tensor, rounds: int = 3,
                   batch_sizes: tuple[int, ...] = (1, 8)) -> tuple[dict[str, float], dict[str, float]]:
    """1-thread forward latency (ms) of ``model`` and ``base``, timed in alternation.

    Returns ``({"bs1": ms, ...}, {"bs1": base_ms, ...})``: per batch size the fastest
    single run over ``rounds`` calls of :func:`measure_latency` (load from other
    processes only ever adds time, so the minimum is the stable statistic on a shared
    machine); ``base`` None times ``model`` alone and returns its times twice.
    """
    got: dict[str, float] = {}
    ref: dict[str, float] = {}
    for bs in batch_sizes:
        x = batch_like(example, bs)
        key = f"bs{bs}"
        for _ in range(rounds):
            t = measure_latency(model, x, threads=1).min_ms
            got[key] = min(got.get(key, t), t)
            if base is not None:
                t = measure_latency(base, x, threads=1).min_ms
                ref[key] = min(ref.get(key, t), t)
    return got, (ref if base is not None else dict(got))


def make_row(model: str, task: str, method: str, base: Measured | None, got: Measured | None,
             metric_name: str, base_latency: dict[str, float] | None = None, **extra: Any) -> dict[str, Any]:
    """A result row; ``macs``/``params`` as fractions of ``base``; Nones when ``got`` is None.

    ``got.latency_ms`` and ``base_latency`` (the baseline timed in alternation with it)
    are ``{"bs1": ms, "bs8": ms}``.
    """
    row: dict[str, Any] = {"model": model, "task": task, "method": method, "macs": None, "params": None,
                           "metric": None, "latency_ms_bs1": None, "latency_ms_bs8": None}
    if got is not None and base is not None:
        row.update(macs=round(got.macs / base.macs, 4), params=round(got.params / base.params, 4),
                   metric=round(got.metric, 2), latency_ms_bs1=round(got.latency_ms["bs1"], 3),
                   latency_ms_bs8=round(got.latency_ms["bs8"], 3))
    row.update(metric_name=metric_name, macs_abs=got.macs if got else None,
               params_abs=got.params if got else None, error=None)
    if base_latency:
        row.update(base_latency_ms_bs1=round(base_latency["bs1"], 3), base_latency_ms_bs8=round(base_latency["bs8"], 3))
    row.update(extra)
    return row


Runner = Callable[..., tuple[nn.Module, Measured, dict[str, Any]]]


def _cpd_target(cfg: dict[str, Any]) -> dict[str, float]:
    """``macs=`` (the benchmark's target), or ``ratio=`` when ``cpd_ratio`` is set: a uniform
    per-group ratio, for the diagnostic that separates scoring from allocation."""
    return {"ratio": cfg["cpd_ratio"]} if cfg.get("cpd_ratio") is not None else {"macs": cfg["macs"]}


def _run_cpd(method: str, baseline: nn.Module, task: Task, train: Dataset, test: Dataset, example: torch.Tensor,
             cfg: dict[str, Any], log: Log) -> tuple[nn.Module, Measured, dict[str, Any]]:
    alpha = cfg["alpha"] if method == "cpd" else 0.0
    p = cfg["prune_steps"] * cfg["interval"]
    config = train_config(cfg, steps=p + cfg["ft_steps"], lr=cfg["ft_lr"], warmup=cfg["ft_warmup"], alpha=alpha,
                          seed=cfg["ft_seed"], feature_layers=cfg.get("cpd_feat") if method == "cpd" else None,
                          view=True)
    res = run_cpd(copy.deepcopy(baseline), task, train, test, example, config=config, steps=cfg["prune_steps"],
                  interval=cfg["interval"], score_batches=cfg["score_batches"], latency_batch_sizes=(),
                  importance=cfg["importance"], max_ratio=cfg["cpd_max_ratio"], cost=cfg.get("cpd_cost"),
                  allocation=cfg.get("cpd_alloc", "global"),
                  **_cpd_target(cfg))
    history = [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in h.items()} for h in res.history]
    for h in history:
        log(f"    {method} pruning step: " + ", ".join(f"{k} {v}" for k, v in h.items()))
    return res.model, res.pruned, {"alpha": alpha, "history": history, "pruned_groups": len(res.plan.keep),
                                   "rolled_back": res.plan.meta.get("rolled_back")}


def _run_tp(method: str, baseline: nn.Module, task: Task, train: Dataset, test: Dataset, example: torch.Tensor,
            cfg: dict[str, Any], log: Log) -> tuple[nn.Module, Measured, dict[str, Any]]:
    p = cfg["prune_steps"] * cfg["interval"]
    config = train_config(cfg, steps=p + cfg["ft_steps"], lr=cfg["ft_lr"], warmup=cfg["ft_warmup"],
                          seed=cfg["ft_seed"])
    cb = TorchPruningAt(method, p - 1, example, cfg["macs"], cfg["out_layers"], score_batches=cfg["score_batches"],
                        global_pruning=cfg["tp_global"], iters=cfg["tp_iters"])
    trainer = Trainer(copy.deepcopy(baseline), task, train, None, config=config, device="cpu",
                      callbacks=[cb, Progress(log, method, cfg["log_every"])])
    trainer.fit()
    if cb.info is None:
        raise RuntimeError("training ended before the Torch-Pruning step")
    log(f"    {method}: pruning_ratio {cb.info['ratio']}, MACs {cb.info['macs']:.4f} "
        f"({cb.info['trials']} bisection trials)")
    model = trainer.model.eval()
    return model, measure(model, task, test, example, batch_sizes=()), {"tp_pruning_ratio": cb.info["ratio"],
                                                                          "tp_global": cfg["tp_global"]}


#: method -> the function that runs one seed of it: ``(model, measured, details)``
RUNNERS: dict[str, Runner] = {"cpd": _run_cpd, "cpd-no-kd": _run_cpd,
                              **dict.fromkeys(TP_METHODS, _run_tp)}


def run_method(method: str, model_name: str, task_name: str, baseline: nn.Module, base: Measured, task: Task,
               train: Dataset, test: Dataset, example: torch.Tensor, cfg: dict[str, Any], log: Log) -> dict[str, Any]:
    """Compress ``baseline`` with ``method`` and return its row; a failure becomes a row with ``error``."""
    t0 = time.perf_counter()
    if method not in RUNNERS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS[1:])}")
    runner = RUNNERS[method]
    runs = []
    try:
        for seed in cfg["ft_seeds"]:
            runs.append(runner(method, baseline, task, train, test, example, {**cfg, "ft_seed": seed}, log))
            log(f"    {method} fine-tuning seed {seed}: {task.primary_metric} {runs[-1][1].metric:.2f}, "
                f"MACs {runs[-1][1].macs / base.macs:.4f}")
    except Exception as e:  # noqa: BLE001 - a tool that cannot prune a model is a result, not a crash
        log(f"    {method} FAILED: {type(e).__name__}: {e}\n{traceback.format_exc(limit=4)}")
        msg = str(e).splitlines()[0] if str(e) else ""
        return make_row(model_name, task_name, method, base, None, task.primary_metric,
                        error=f"{type(e).__name__}: {msg}"[:300], seconds=round(time.perf_counter() - t0, 1))
    # The row: means over the fine-tuning seeds; latency and details of the first seed's model.
    model, _, extra = runs[0]
    n = len(runs)
    got = Measured(sum(r[1].metric for r in runs) / n, round(sum(r[1].macs for r in runs) / n),
                   round(sum(r[1].params for r in runs) / n))
    metrics = [round(r[1].metric, 2) for r in runs]
    extra.update(ft_seeds=list(cfg["ft_seeds"]), metric_seeds=metrics,
                 metric_std=round(statistics.pstdev(metrics), 2) if n > 1 else 0.0,
                 macs_seeds=[round(r[1].macs / base.macs, 4) for r in runs])
    got.latency_ms, base_ms = paired_latency(model, baseline.eval(), example, cfg["latency_rounds"])
    return make_row(model_name, task_name, method, base, got, task.primary_metric, base_latency=base_ms,
                    seconds=round(time.perf_counter() - t0, 1), **extra)
