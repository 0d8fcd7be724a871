"""Trace + grouping time: ``cpd.comb`` vs Torch-Pruning's dependency-graph build.

Issue 2's target: tracing plus grouping is no slower than
``tp.DependencyGraph().build_dependency`` on the same model in the same run, for a
ResNet-50 and a ViT-B/16 (transformers' default ``ResNetConfig`` / ``ViTConfig``,
random weights, one 224x224 image, one thread).

Two measurements per model, both interleaved so that machine load hits both tools:

* ``warm``: one process; the model has run once; then ``--repeats`` rounds of
  (cpd.comb, tp build) in alternating order. Median and min per tool.
* ``cold``: the first call in a fresh process (after the imports and one plain
  forward, which both tools need anyway), ``--cold`` processes per tool, alternating.

Writes ``benchmarks/results/trace_time.json``: rows ``{"model", "tool", "mode",
"median_s", "min_s", "runs"}``; cpd's rows also say whether the comb rehearsed the
pruning on fake tensors (``"rehearsed"``; it is skipped where it cannot change the
groups, :mod:`cpd.groups.fast_path`).

    OMP_NUM_THREADS=1 python benchmarks/trace_time.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "trace_time.json"
MODELS = ("resnet-50", "vit-b16")
TOOLS = ("cpd", "torch-pruning")


def build(name: str) -> tuple[Any, Any]:
    """The model (eval, random weights) and a (1, 3, 224, 224) input."""
    import torch
    from transformers import (ResNetConfig, ResNetForImageClassification, ViTConfig,
                              ViTForImageClassification)

    torch.manual_seed(0)
    model = (ResNetForImageClassification(ResNetConfig()) if name == "resnet-50"
             else ViTForImageClassification(ViTConfig())).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        model(x)
    return model, x


def timed(tool: str, model: Any, x: Any) -> float:
    """Seconds for one comb (cpd) or one dependency-graph build (Torch-Pruning)."""
    if tool == "cpd":
        import cpd

        t0 = time.perf_counter()
        cpd.comb(model, x)
    else:
        import torch_pruning as tp

        t0 = time.perf_counter()
        tp.DependencyGraph().build_dependency(model, example_inputs=x)
    return time.perf_counter() - t0


def warm(name: str, repeats: int) -> dict[str, list[float]]:
    model, x = build(name)
    out: dict[str, list[float]] = {t: [] for t in TOOLS}
    for tool in TOOLS:  # first calls (imports, lazy init) are not part of "warm"
        timed(tool, model, x)
    for i in range(repeats):
        for tool in (TOOLS if i % 2 == 0 else TOOLS[::-1]):
            out[tool].append(timed(tool, model, x))
    return out


def cold(name: str, runs: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {t: [] for t in TOOLS}
    for i in range(runs):
        for tool in (TOOLS if i % 2 == 0 else TOOLS[::-1]):
            res = subprocess.run([sys.executable, __file__, "--one", name, tool],
                                 capture_output=True, text=True, check=True)
            out[tool].append(float(res.stdout.strip().splitlines()[-1]))
    return out


def rows(name: str, mode: str, times: dict[str, list[float]],
         rehearsed: bool) -> list[dict[str, Any]]:
    return [{"model": name, "tool": t, "mode": mode, "median_s": round(statistics.median(v), 3),
             "min_s": round(min(v), 3), "runs": len(v),
             **({"rehearsed": rehearsed} if t == "cpd" else {})} for t, v in times.items()]


def rehearses(name: str) -> bool:
    """Whether cpd.comb rehearses the pruning of this model (see the module docstring)."""
    import cpd

    model, x = build(name)
    return cpd.comb(model, x).checks.get("rounds", 0) > 0


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=7, help="warm rounds per model")
    p.add_argument("--cold", type=int, default=3, help="fresh processes per tool and model")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--one", nargs=2, metavar=("MODEL", "TOOL"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    if args.one:  # child process of a cold measurement
        model, x = build(args.one[0])
        print(timed(args.one[1], model, x))
        return []
    out: list[dict[str, Any]] = []
    for name in args.models.split(","):
        rehearsed = rehearses(name)
        out += rows(name, "warm", warm(name, args.repeats), rehearsed)
        out += rows(name, "cold", cold(name, args.cold), rehearsed)
        for r in out[-4:]:
            print(f"{r['model']:10s} {r['mode']:5s} {r['tool']:14s} median {r['median_s']:.3f} s  "
                  f"min {r['min_s']:.3f} s", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=1) + "\n")
    tmp.replace(args.out)
    return out


if __name__ == "__main__":
    main()
