"""Scoring overhead: one ``accumulate`` call per scored batch versus one training step.

Issue #3's target: the default criterion (per-sample ``hessian``) costs at most 1.5x a
training step per scored batch. Models:

* ``resnet``: the criteria benchmark's ResNet (``criteria_models.build_model("resnet")``:
  4 stages x 2 basic blocks, BN, residuals, 1x1 projection shortcuts), seeded
  weights (the cost does not depend on their values);
* ``vit``: a small Hugging Face ViT built by ``cpd.io`` from ``hf:vit?...`` (32x32
  input, patch 4, 4 layers, width 64, 4 heads), to show the engine on a transformer
  (position embedding and class token are free parameters).

Data: CamVid scene patches (``camvid_patches``, train split, 32x32, 11 classes; loaded
once, as ``criteria_data`` does), ``--batches`` batches of ``--batch-size``, cross-entropy.
Groups: ``cpd.comb(...).prunable()``, as ``cpd.prune`` uses them.

Criteria (``cpd.scores``): ``hessian`` (default options: per-sample, ``method="auto"``,
i.e. the one-backward hook engine), ``hessian`` with ``method="vmap"`` (per-sample
weight gradients), ``hessian-batch`` (``per_sample=False``), ``taylor``, ``obd``.

Timing: the training step is forward + backward + AdamW step on a copy of the model
in training mode (BN batch statistics). For every batch and every criterion one
training step and one ``accumulate`` are timed back to back, so that load on the
shared machine hits both alike; ``overhead_x`` is the median over batches of their
ratio. Times are the calling thread's CPU time (with one torch thread all work runs
on it), which other processes do not inflate; the wall-clock ratio is reported too
(``overhead_x_wall``). One untimed warm-up batch comes first; its ``accumulate``
includes the hook engine's one-off probe and is reported as ``first_accumulate_ms``.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/criteria_overhead.py            # ~6 min on 2 shared cores
    OMP_NUM_THREADS=1 python benchmarks/criteria_overhead.py --quick --out /tmp/overhead.json

Writes ``benchmarks/results/criteria_overhead.json`` (a list of rows with ``model, task,
criterion, engine, overhead_x, accumulate_ms, train_step_ms, batches`` and more).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import Tensor, nn  # noqa: E402

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from criteria_data import load_patches  # noqa: E402
from criteria_models import build_model  # noqa: E402

import cpd  # noqa: E402
from cpd.io.resolve import open_model  # noqa: E402
from cpd.report.atomic import atomic_path  # noqa: E402
from cpd.scores import get_criterion  # noqa: E402

CAMVID = Path(os.environ.get("CPD_CAMVID", "/work/shared/data/camvid"))
TASK = "camvid_patches"
VIT = ("hf:vit?hidden_size=64&num_hidden_layers=4&num_attention_heads=4&intermediate_size=128"
       "&image_size=32&patch_size=4&num_labels=11")

#: label -> (registry name, options, engine label)
CRITERIA: dict[str, tuple[str, dict[str, Any], str]] = {
    "hessian": ("hessian", {}, "hooks"),
    "hessian (vmap)": ("hessian", {"method": "vmap"}, "vmap"),
    "hessian-batch": ("hessian", {"per_sample": False}, "batch gradient"),
    "taylor": ("taylor", {}, "batch gradient"),
    "obd": ("obd", {}, "hutchinson"),
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def build(name: str) -> tuple[nn.Module, Callable[[nn.Module, Tensor], Any], Callable[[Any, Tensor], Tensor]]:
    """Model, ``forward(model, images)`` and ``loss_fn(outputs, labels)``."""
    if name == "resnet":
        return build_model("resnet", num_classes=11, seed=0).eval(), lambda m, x: m(x), F.cross_entropy
    if name == "vit":
        torch.manual_seed(0)
        return (open_model(VIT).model.eval(), lambda m, x: m(pixel_values=x),
                lambda out, y: F.cross_entropy(out.logits, y))
    raise ValueError(f"unknown model {name!r}; choose resnet or vit")


def timed(fn: Callable[[], None]) -> tuple[float, float]:
    """(thread CPU ms, wall ms) of one call."""
    c0, w0 = time.thread_time(), time.perf_counter()
    fn()
    return (time.thread_time() - c0) * 1e3, (time.perf_counter() - w0) * 1e3


def measure(name: str, batches: list[tuple[Tensor, Tensor]]) -> list[dict[str, Any]]:
    model, forward, loss_fn = build(name)
    example = batches[0][0][:1]
    inputs = (lambda x: {"pixel_values": x}) if name == "vit" else (lambda x: x)
    groups = cpd.comb(model, inputs(example)).prunable()
    crits = {label: get_criterion(n, **opts).prepare(model, groups) for label, (n, opts, _) in CRITERIA.items()}
    student = copy.deepcopy(model).train()
    opt = torch.optim.AdamW(student.parameters(), lr=1e-4)

    def train_step(x: Tensor, y: Tensor) -> None:
        loss = loss_fn(forward(student, x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    first: dict[str, float] = {}
    failed: list[dict[str, Any]] = []
    x0, y0 = batches[0]
    train_step(x0, y0)  # optimizer state and first-call costs outside the timing
    for label, crit in list(crits.items()):
        try:
            first[label] = timed(lambda c=crit: c.accumulate(model, inputs(x0), y0, loss_fn))[1]
        except Exception as err:  # e.g. obd's double backward through fused attention
            log(f"  {name} {label}: cannot score ({type(err).__name__}: {err})")
            failed.append({"model": name, "task": TASK, "criterion": label, "engine": CRITERIA[label][2],
                           "overhead_x": None, "error": f"{type(err).__name__}: {err}"})
            del crits[label]
    times: dict[str, list[tuple[float, float, float, float]]] = {label: [] for label in crits}
    for b, (x, y) in enumerate(batches[1:], 1):
        for label, crit in crits.items():
            step = timed(lambda x=x, y=y: train_step(x, y))
            acc = timed(lambda c=crit, x=x, y=y: c.accumulate(model, inputs(x), y, loss_fn))
            times[label].append((*acc, *step))
        log(f"  {name} batch {b}/{len(batches) - 1}: " + ", ".join(
            f"{k} {v[-1][0] / v[-1][2]:.2f}x" for k, v in times.items()))
    rows = []
    for label, t in times.items():
        engine = CRITERIA[label][2]
        if engine == "hooks" and getattr(crits[label], "_hooks_failed", False):
            engine = "vmap (hooks fell back)"
        rows.append({
            "model": name, "task": TASK, "criterion": label, "engine": engine,
            "overhead_x": round(statistics.median(a / s for a, _, s, _ in t), 3),
            "accumulate_ms": round(statistics.median(a for a, _, _, _ in t), 2),
            "train_step_ms": round(statistics.median(s for _, _, s, _ in t), 2),
            "batches": len(t),
            "overhead_x_wall": round(statistics.median(aw / sw for _, aw, _, sw in t), 3),
            "first_accumulate_ms": round(first[label], 1),
            "batch_size": int(x0.shape[0]),
            "clock": "thread CPU time",
        })
    return rows + failed


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="resnet,vit", help="comma-separated: resnet, vit")
    p.add_argument("--batches", type=int, default=16, help="timed batches per model (>= 16 for the results)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--frames", type=int, default=30, help="CamVid train frames to cut patches from")
    p.add_argument("--data", type=Path, default=CAMVID)
    p.add_argument("--out", type=Path, default=HERE / "results" / "criteria_overhead.json")
    p.add_argument("--quick", action="store_true", help="smoke run: 3 batches of 8, 4 frames")
    args = p.parse_args(argv)
    if args.quick:
        args.batches, args.batch_size, args.frames = 3, 8, 4
    torch.set_num_threads(1)
    images, labels = load_patches(args.data, "train", patch_size=32, max_frames=args.frames)
    g = torch.Generator().manual_seed(1234)
    n, bs = args.batches + 1, args.batch_size
    if n * bs > len(labels):
        raise SystemExit(f"error: {n} batches of {bs} need {n * bs} patches, {args.frames} frames give "
                         f"{len(labels)}; raise --frames")
    idx = torch.randperm(len(labels), generator=g)[: n * bs]
    batches = [(images[idx[i * bs:(i + 1) * bs]].contiguous(), labels[idx[i * bs:(i + 1) * bs]].contiguous())
               for i in range(n)]
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for name in args.models.split(","):
        log(f"{name}: {args.batches} timed batches of {bs}")
        rows += measure(name, batches)
    for r in (r for r in rows if r["overhead_x"] is not None):
        log(f"{r['model']:6s} {r['criterion']:15s} [{r['engine']}] {r['overhead_x']:.2f}x "
            f"({r['accumulate_ms']:.1f} ms vs {r['train_step_ms']:.1f} ms; wall {r['overhead_x_wall']:.2f}x)")
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(rows, indent=1) + "\n")
    log(f"wrote {args.out} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
