"""Does ``cpd bench`` show the pruned ONNX model faster than the unpruned one?

For each model, through the command line exactly as a user would run it:

1. ``cpd prune MODEL --macs 0.5 --out DIR`` (magnitude, global ranking), once with
   free channel counts and once with ``--round-to 16`` (onnxruntime's and oneDNN's
   convolution kernels work on blocks of 8 / 16 channels, so odd counts are padded);
2. ``cpd bench MODEL DIR DIR16 --onnx --threads 1 --batch-sizes 1,8 --json``: exports
   every model to ONNX (checked against PyTorch with onnxruntime), then times PyTorch
   and onnxruntime in rounds that alternate between the models (cpd bench's default
   for several models), and reports the speed-up over the first.

Models: ``hf:resnet`` (ResNetConfig() is ResNet-50) and ``hf:vit`` (ViT-B/16), random
weights, 224 x 224 inputs. ``cpd bench`` times wall clock; the machine's load
average is recorded at the start and the end.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/onnx_bench.py                 # ~15 min on 2 busy cores
    OMP_NUM_THREADS=1 python benchmarks/onnx_bench.py --models resnet50 --batch-sizes 1

Writes ``benchmarks/results/onnx_bench.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
MODELS = {"resnet50": "hf:resnet", "vit_b16": "hf:vit"}


def cpd(*args: str) -> dict[str, Any]:
    """Run ``cpd ARGS --json`` in a fresh process (one thread) and parse its output."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "cpd.cli.main", *args, "--json"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr.strip()}")
    return json.loads(done.stdout)


def bench_model(name: str, source: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Prune ``source`` to ``--macs`` (free counts and ``--round-to 16``), then ``cpd bench`` all three."""
    variants: dict[str, list[str]] = {f"{name}-half": [], f"{name}-half-rt16": ["--round-to", "16"]}
    pruned = {}
    for folder, extra in variants.items():
        t0 = time.perf_counter()
        summary = cpd("prune", source, "--macs", str(args.macs), *extra, "--out", str(work / folder))
        pruned[folder] = {"command": " ".join(["cpd prune", source, "--macs", str(args.macs), *extra,
                                                "--out", folder]),
                          "macs": summary["macs"], "params": summary["params"],
                          "macs_fraction": summary["macs"][1] / summary["macs"][0],
                          "seconds": round(time.perf_counter() - t0, 1)}
    bench_args = ["bench", source, *(str(work / f) for f in variants), "--onnx", "--threads", "1",
                  "--batch-sizes", args.batch_sizes, "--repeats", str(args.repeats)]
    t0 = time.perf_counter()
    report = cpd(*bench_args)
    rows = []
    base = report["models"][0]
    for folder, entry in zip(variants, report["models"][1:]):
        for b, r, s in zip(base["results"], entry["results"], entry["speedup"]):
            rows.append({"pruned": folder, "backend": r["backend"], "batch_size": r["batch_size"],
                         "baseline_ms": round(b["median_ms"], 2), "pruned_ms": round(r["median_ms"], 2),
                         "speedup": round(s, 3)})
            print(f"{folder} {r['backend']} b{r['batch_size']}: {b['median_ms']:.1f} -> "
                  f"{r['median_ms']:.1f} ms, {s:.2f}x", flush=True)
    command = "cpd " + " ".join(bench_args)
    for folder in variants:
        command = command.replace(str(work / folder), folder)
    return {"model": name, "source": source, "pruned": pruned, "bench_command": command,
            "bench_seconds": round(time.perf_counter() - t0, 1), "rounds": report["rounds"],
            "rows": rows, "bench": report}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated: " + ", ".join(MODELS))
    p.add_argument("--macs", type=float, default=0.5)
    p.add_argument("--batch-sizes", default="1,8")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--out", type=Path, default=RESULTS / "onnx_bench.json")
    args = p.parse_args()
    import onnxruntime
    import torch

    meta = {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "python": platform.python_version(), "cpus": os.cpu_count(), "threads": 1,
            "load_average_start": os.getloadavg()}
    rows = []
    with tempfile.TemporaryDirectory(prefix="cpd-onnx-bench-") as tmp:
        for name in args.models.split(","):
            rows.append(bench_model(name, MODELS[name], Path(tmp), args))
    meta["load_average_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps({"meta": meta, "models": rows}, indent=1) + "\n")
    tmp_out.replace(args.out)  # atomic: a reader never sees half a file
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
