"""Latency benchmark: ``cpd.prune(latency=...)`` and the speed-up of ``macs=`` pruning.

Models are built from their default Hugging Face configs with random weights
(``ResNetConfig()`` is ResNet-50, ``ViTConfig()`` is ViT-B/16), 224 x 224 inputs.

Rows:

* ``target_kind="latency"``: ``cpd.prune(model, x, latency=0.5,
  latency_batch_size=B)`` for each model and batch size;
* ``target_kind="macs"``: ResNet-50 at ``macs=0.5`` with ``round_to`` = none, 8 and
  16 (oneDNN's convolutions prefer channel counts that are multiples of 8 / 16).

Every pruned model is **re-timed independently** of cpd's own timer, by this
file's loop: original and pruned run alternately (``--retime-runs`` pairs at most,
after one warm-up pair, fewer for slow models within ``--retime-seconds``); per
model the median of

* the calling thread's CPU time (``time.thread_time``): with one torch thread all
  the work runs in that thread, so this is the forward's latency minus the time
  other processes held the core; it is what ``latency_fraction`` reports and what
  cpd's latency target uses on a CPU with one thread;
* wall time (``time.perf_counter``), reported alongside as ``*_wall``: on a
  shared machine this includes preemption by other processes and is noisy.

``latency_fraction`` = pruned / original (CPU-time medians); ``speedup`` is its
inverse. ``macs_fraction`` comes from ``cpd.count`` (batch independent).
``search_latency`` is what cpd recorded in ``plan.meta["latency"]``, with the
number of candidates it timed (``search_timings``) and cost-model evaluations.

Usage::

    nohup python benchmarks/latency.py > benchmarks/results/latency.log 2>&1 &
    python benchmarks/latency.py --models resnet50 --batch-sizes 1 --skip-macs

Writes ``benchmarks/results/latency.json`` (rows merged by key, written after each
row) and ``benchmarks/results/latency.md``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
KEY = ("model", "batch_size", "target_kind", "target", "round_to")


def build(name: str) -> torch.nn.Module:
    from transformers import (
        ResNetConfig,
        ResNetForImageClassification,
        ViTConfig,
        ViTForImageClassification,
    )

    torch.manual_seed(0)
    if name == "resnet50":
        return ResNetForImageClassification(ResNetConfig()).eval()
    if name == "vit_b16":
        return ViTForImageClassification(ViTConfig()).eval()
    raise ValueError(f"unknown model {name!r}")


def retime(base: torch.nn.Module, pruned: torch.nn.Module, x: dict, *, runs: int,
           max_seconds: float) -> dict[str, float]:
    """Interleaved timing of ``base`` and ``pruned`` on ``x``: CPU-time and wall medians."""
    def once(m: torch.nn.Module) -> tuple[float, float]:
        w0, c0 = time.perf_counter(), time.thread_time()
        m(**x)
        return (time.thread_time() - c0) * 1e3, (time.perf_counter() - w0) * 1e3

    b: list[tuple[float, float]] = []
    p: list[tuple[float, float]] = []
    with torch.inference_mode():
        once(base), once(pruned)
        gc.collect()
        start = time.perf_counter()
        for i in range(runs):
            if i % 2:
                p.append(once(pruned))
                b.append(once(base))
            else:
                b.append(once(base))
                p.append(once(pruned))
            if i >= 2 and time.perf_counter() - start > max_seconds:
                break
    med = lambda xs, j: statistics.median(v[j] for v in xs)  # noqa: E731
    return {"cpu_before": med(b, 0), "cpu_after": med(p, 0), "wall_before": med(b, 1),
            "wall_after": med(p, 1), "runs": len(b)}


def run_one(name: str, model: torch.nn.Module, batch_size: int, kind: str, target: float,
            round_to: int | None, args: argparse.Namespace) -> dict[str, Any]:
    import cpd

    x1 = {"pixel_values": torch.randn(1, 3, 224, 224)}
    t0 = time.perf_counter()
    if kind == "latency":
        res = cpd.prune(model, x1, latency=target, latency_batch_size=batch_size,
                        round_to=round_to)
    else:
        res = cpd.prune(model, x1, macs=target, round_to=round_to)
    prune_s = time.perf_counter() - t0
    xb = {"pixel_values": torch.randn(batch_size, 3, 224, 224)}
    t = retime(model, res.model, xb, runs=args.retime_runs, max_seconds=args.retime_seconds)
    meta = res.plan.meta
    search = meta.get("latency_search", {})
    row = {
        "model": name, "batch_size": batch_size, "target_kind": kind, "target": target,
        "round_to": round_to,
        "latency_fraction": t["cpu_after"] / t["cpu_before"],
        "macs_fraction": res.macs[1] / res.macs[0],
        "latency_ms_before": t["cpu_before"], "latency_ms_after": t["cpu_after"],
        "speedup": t["cpu_before"] / t["cpu_after"],
        "latency_fraction_wall": t["wall_after"] / t["wall_before"],
        "wall_ms_before": t["wall_before"], "wall_ms_after": t["wall_after"],
        "retime_runs": t["runs"], "threads": torch.get_num_threads(), "clock": "thread_cpu",
        "params_fraction": res.params[1] / res.params[0],
        "search_latency": meta.get("latency"),
        "search_met": search.get("met"),
        "search_timings": search.get("timings"),
        "search_evaluations": search.get("evaluations"),
        "search_trace": [{k: round(v, 4) if isinstance(v, float) else v
                          for k, v in tr.items() if k in ("removed", "predicted", "measured")}
                         for tr in search.get("trace", [])],
        "prune_s": prune_s,
    }
    del res
    gc.collect()
    return row


def load(path: Path) -> list[dict]:
    if path.exists():
        return json.loads(path.read_text())
    return []


def write(path: Path, rows: list[dict], new: dict) -> list[dict]:
    key = tuple(new[k] for k in KEY)
    rows = [r for r in rows if tuple(r.get(k) for k in KEY) != key] + [new]
    rows.sort(key=lambda r: (r["model"], r["target_kind"], r["batch_size"],
                             r["round_to"] or 0))
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(rows, indent=1))
    os.replace(tmp, path)
    return rows


def _f(v: Any, fmt: str = "{:.3f}") -> str:
    return "—" if v is None else fmt.format(v)


def render(rows: list[dict], env: dict) -> str:
    out = ["# Latency benchmark", "",
           f"Command: `{env['command']}`  ", f"Host: {env['host']}; torch {env['torch']}, "
           f"{env['threads']} torch thread(s); written {env['date']}.", "",
           "Latency = median per-forward time of the calling thread's CPU time (1 torch "
           "thread: all work runs in it), original and pruned timed alternately by the "
           "benchmark's own loop; `wall` = wall-clock medians of the same runs (noisy on "
           "this shared 2-core machine). `search` = the fraction cpd's own timer recorded "
           "in `plan.meta[\"latency\"]`.", "",
           "| model | batch | target | round_to | latency fraction | speed-up | MACs fraction "
           "| ms before → after | wall fraction | search (timed / evals) | prune s |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        search = (f"{_f(r['search_latency'])} ({r['search_timings']} / "
                  f"{r['search_evaluations']})" if r["search_latency"] is not None else "—")
        out.append(
            f"| {r['model']} | {r['batch_size']} | {r['target_kind']}={r['target']} | "
            f"{r['round_to'] or '—'} | {_f(r['latency_fraction'])} | "
            f"{_f(r['speedup'], '{:.2f}x')} | {_f(r['macs_fraction'])} | "
            f"{_f(r['latency_ms_before'], '{:.0f}')} → {_f(r['latency_ms_after'], '{:.0f}')} | "
            f"{_f(r['latency_fraction_wall'])} | {search} | {_f(r['prune_s'], '{:.0f}')} |")
    out += ["", "## Against the targets", ""]
    for r in rows:
        if r["target_kind"] == "latency":
            err = r["latency_fraction"] / r["target"] - 1
            ok = abs(err) <= 0.10
            out.append(f"* {r['model']} batch {r['batch_size']}"
                       f"{' round_to ' + str(r['round_to']) if r['round_to'] else ''}: "
                       f"latency {r['latency_fraction']:.3f} for target {r['target']} "
                       f"({err:+.1%}) — {'within' if ok else 'OUTSIDE'} 10 %.")
        else:
            ok = r["speedup"] >= 1.6
            out.append(f"* {r['model']} batch {r['batch_size']} macs={r['target']} "
                       f"round_to {r['round_to'] or 'none'}: speed-up {r['speedup']:.2f}x at "
                       f"MACs {r['macs_fraction']:.3f} — {'meets' if ok else 'BELOW'} 1.6x.")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="resnet50,vit_b16")
    ap.add_argument("--batch-sizes", default="1,8")
    ap.add_argument("--latency", type=float, default=0.5)
    ap.add_argument("--macs", type=float, default=0.5)
    ap.add_argument("--round-to", default="none,8,16", help="for the macs rows")
    ap.add_argument("--latency-round-to", default="none",
                    help="round_to values for the latency rows (none,8,...)")
    ap.add_argument("--skip-macs", action="store_true")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--retime-runs", type=int, default=15)
    ap.add_argument("--retime-seconds", type=float, default=40.0)
    ap.add_argument("--out", type=Path, default=RESULTS / "latency.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rts = lambda s: [None if v == "none" else int(v) for v in s.split(",")]  # noqa: E731
    models = args.models.split(",")
    batches = [int(b) for b in args.batch_sizes.split(",")]
    env = {"command": " ".join(["python benchmarks/latency.py", *(argv or sys.argv[1:])]),
           "host": f"{platform.machine()}, {os.cpu_count()} CPUs",
           "torch": torch.__version__, "threads": torch.get_num_threads(),
           "date": time.strftime("%Y-%m-%d %H:%M")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows = load(args.out)
    jobs: list[tuple[str, int, str, float, int | None]] = []
    for name in models:
        if not args.skip_latency:
            jobs += [(name, b, "latency", args.latency, rt) for b in batches
                     for rt in rts(args.latency_round_to)]
        if name == "resnet50" and not args.skip_macs:
            jobs += [(name, b, "macs", args.macs, rt) for b in batches for rt in rts(args.round_to)]
    t_all = time.perf_counter()
    for name in models:
        model = build(name)
        for job in [j for j in jobs if j[0] == name]:
            t0 = time.perf_counter()
            print(f"[{time.perf_counter() - t_all:7.0f}s] {job} ...", flush=True)
            try:
                row = run_one(name, model, job[1], job[2], job[3], job[4], args)
            except Exception as e:  # noqa: BLE001 - one failure must not lose the rest
                print(f"  FAILED: {type(e).__name__}: {e}", flush=True)
                continue
            rows = write(args.out, rows, row)
            print(f"  latency {row['latency_fraction']:.3f} (wall {row['latency_fraction_wall']:.3f})"
                  f" macs {row['macs_fraction']:.3f} ms {row['latency_ms_before']:.0f} -> "
                  f"{row['latency_ms_after']:.0f} search {row['search_latency']} "
                  f"timed {row['search_timings']} [{time.perf_counter() - t0:.0f}s]", flush=True)
            (args.out.with_suffix(".md")).write_text(render(rows, env))
        del model
        gc.collect()
    (args.out.with_suffix(".md")).write_text(render(rows, env))
    print(f"done in {time.perf_counter() - t_all:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
