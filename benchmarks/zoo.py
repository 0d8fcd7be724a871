"""Zoo benchmark: cpd vs Torch-Pruning on every Hugging Face vision architecture.

Every image-classification and semantic-segmentation architecture that the installed
``transformers`` registers (see ``hf_zoo.iter_architectures``; no hand-written list) is
built from its default config with random weights and pruned at each ratio by each
tool. A (tool, ratio) row is OK when the pruned forward runs, the output (logits)
shape is unchanged and MACs dropped. Architectures that cannot be built here, or
cannot run unpruned on an image (missing optional package, text-only input), are
rows with ``skipped: true`` and the reason in ``error``.

Each architecture runs in its own subprocess; ``--timeout`` is a per-step limit (the
build + unpruned baseline is one step, each (tool, ratio) is one step). A step that
times out or crashes becomes an error row and the remaining steps go on in a fresh
subprocess.

Tools:

* ``cpd``: ``cpd.comb(model, inputs)`` (timed as ``trace_s``) and
  ``cpd.prune(model, inputs, ratio=r).model`` (timed as ``prune_s``). While
  ``cpd.prune`` does not exist the rows say ``cpd.prune not available``.
* ``torch-pruning``: ``tp.pruner.BasePruner`` with ``GroupMagnitudeImportance(p=2)``,
  uniform (local) ratio, the documented head settings (``num_heads`` = {each q/k/v or
  fused qkv Linear: head count}, ``prune_num_heads=True``, ``prune_head_dims=False``,
  ``head_pruning_ratio=r``), the model's output layer(s) in ``ignored_layers`` and
  ``output_transform=lambda out: out.logits.sum()``. Building the pruner (which builds
  the DependencyGraph) is ``trace_s``; ``pruner.step()`` plus the documented
  post-pruning update of the attention modules' head counts is ``prune_s``.

Output layers for Torch-Pruning are found automatically: the Linear/Conv modules
whose outputs reach the logits without passing through another Linear/Conv
(walking the autograd graph back from the logits).

MACs/params are counted by the same counter for both tools within a run:
``cpd.count`` when it exists (and works on the model), else
``torch.utils.flop_counter.FlopCounterMode`` (FLOPs / 2). ``macs`` and ``params`` in a
row are fractions of the unpruned model.

Usage::

    python benchmarks/zoo.py                                 # everything
    python benchmarks/zoo.py --arch vit,resnet --tools torch-pruning --ratios 0.3
    nohup python benchmarks/zoo.py --timeout 300 > benchmarks/results/zoo.log 2>&1 &

Writes ``benchmarks/results/zoo.json`` (list of rows, see ``ROW_KEYS``; merged with the
existing file when only a subset runs; written atomically) and
``benchmarks/results/zoo.md`` (per-architecture table and totals).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import hf_zoo  # noqa: E402  (benchmarks/ is on sys.path; see hf_zoo's docstring)

# The benchmark is split in modules; this one re-exports them (``zoo.make_row``...).
from zoo_rows import (  # noqa: E402,F401
    CPD_MISSING, DEFAULT_RATIOS, RESULTS, ROW_KEYS, TOOLS, TRACE_SPOTLIGHT, make_row,
    render_markdown, row_key, validate_row, write_markdown, write_results,
)
from zoo_tools import (  # noqa: E402,F401
    FUSED_QKV, HEAD_COUNT_ATTRS, RUNNERS, SPLIT_QKV, _Baseline, _count, _evaluate, _run_cpd,
    _run_tp, _setup, find_attention, find_output_layers, update_attention, worker,
)


# --------------------------------------------------------------------------------------
# parent side


def run_arch(arch: str, task: str, steps: list[tuple[str, float]], timeout: float,
             threads: int | None = None, log=print) -> tuple[list[dict], dict]:
    """Run all ``steps`` ((tool, ratio) pairs) for one architecture in subprocess(es).
    Returns the rows and what the worker said about the unpruned model."""
    rows: list[dict] = []
    info: dict = {}
    todo = list(steps)
    while todo:
        state: dict = {"phase": "setup", "current": None, "detail": None}

        def on_event(kind, payload):
            if kind in ("SETUP", "BUILT"):
                state["phase"] = kind.lower()
            elif kind == "SKIP":
                state["phase"] = "skip"
                for tool, ratio in todo:
                    rows.append(make_row(arch, task, tool, ratio, skipped=True,
                                         error=payload))
                todo.clear()
                log(f"    SKIP {payload}")
            elif kind == "READY":
                state["phase"] = "ready"
                info.update(payload)
            elif kind == "START":
                state["current"] = (payload[0], payload[1])
                state["detail"] = "tracing"
            elif kind == "PHASE":
                state["detail"] = payload
            elif kind == "NOTE":
                log(f"    note: {payload}")
            elif kind == "ROW":
                rows.append(payload)
                key = (payload["tool"], payload["ratio"])
                if key in todo:
                    todo.remove(key)
                state["current"] = None
                mark = "OK  " if payload["ok"] else ("SKIP" if payload["skipped"] else "FAIL")
                log(f"    {payload['tool']:13s} {payload['ratio']:<4g} {mark} "
                    f"macs={payload['macs']} params={payload['params']} "
                    f"trace={payload['trace_s']} prune={payload['prune_s']} "
                    f"{(payload['error'] or '')[:160]}")

        job = {"arch": arch, "task": task, "steps": todo, "threads": threads}
        status, tail = hf_zoo.run_streaming(
            [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(job)],
            timeout, on_event, quiet_kinds=("PHASE",))
        if not todo:
            break
        if status == "timeout":
            why = f"timeout after {timeout:.0f}s"
        else:
            why = hf_zoo.crash_reason(status, tail)
        if state["current"] is not None:
            tool, ratio = state["current"]
            if state["detail"]:
                why += f" ({state['detail']})"
            rows.append(make_row(arch, task, tool, ratio, error=why))
            todo.remove((tool, ratio))
            log(f"    {tool:13s} {ratio:<4g} FAIL {why}")
            continue  # remaining steps in a fresh worker
        # died before the first step (build / unpruned forward / baseline count)
        phase = {"setup": "building", "built": "unpruned forward/count"}.get(
            state["phase"], state["phase"])
        for tool, ratio in todo:
            rows.append(make_row(arch, task, tool, ratio, error=f"{why} while {phase}"))
        log(f"    all steps FAIL: {why} while {phase}")
        todo.clear()
    return rows, info


def _parse_list(s: str | None) -> list[str] | None:
    return [x.strip() for x in s.split(",") if x.strip()] if s else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="cpd vs Torch-Pruning on the HF vision zoo")
    ap.add_argument("--arch", help="comma-separated model types (default: all)")
    ap.add_argument("--tasks", default=",".join(hf_zoo.DEFAULT_TASKS))
    ap.add_argument("--ratios", default=",".join(str(r) for r in DEFAULT_RATIOS))
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--timeout", type=float, default=300.0,
                    help="seconds per step (build+baseline, and each tool x ratio)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads per worker")
    ap.add_argument("--out", type=Path, default=RESULTS / "zoo.json")
    ap.add_argument("--md", type=Path, default=None, help="default: <out>.md")
    ap.add_argument("--no-merge", action="store_true", help="overwrite instead of merging")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        worker(json.loads(args.worker))
        return 0

    tools = _parse_list(args.tools) or list(TOOLS)
    bad = set(tools) - set(TOOLS)
    if bad:
        ap.error(f"unknown tools {sorted(bad)}; known: {TOOLS}")
    ratios = [float(r) for r in _parse_list(args.ratios) or DEFAULT_RATIOS]
    archs = hf_zoo.iter_architectures(_parse_list(args.tasks))
    only = _parse_list(args.arch)
    if only:
        unknown = set(only) - {a for a, _ in archs}
        if unknown:
            ap.error(f"unknown arch(s) for these tasks: {sorted(unknown)}")
        archs = [(a, t) for a, t in archs if a in only]
    steps = [(t, r) for t in tools for r in ratios]
    md = args.md or args.out.with_suffix(".md")
    print(f"zoo: {len(archs)} (arch, task) pairs x tools {tools} x ratios {ratios}, "
          f"timeout {args.timeout:.0f}s per step", flush=True)

    counters: set[str] = set()
    merged: list[dict] = []
    start = time.perf_counter()
    run_rows: list[dict] = []
    for i, (arch, task) in enumerate(archs, 1):
        t0 = time.perf_counter()
        print(f"[{i}/{len(archs)}] {arch} ({task})", flush=True)
        rows, info = run_arch(arch, task, steps, args.timeout, args.threads,
                              log=lambda s: print(s, flush=True))
        if info.get("counter"):
            counters.add(info["counter"])
        if info:
            print(f"    base: out {info.get('out_shape')} MACs {info.get('macs')} "
                  f"params {info.get('params')} counter {info.get('counter')} "
                  f"output layers {info.get('output_layers')}", flush=True)
        print(f"    done in {time.perf_counter() - t0:.1f}s", flush=True)
        run_rows += rows
        # write after every architecture so a long run leaves usable partial results
        merged = write_results(args.out, rows, merge=not (args.no_merge and i == 1))
        write_markdown(md, merged, {"counter": ", ".join(sorted(counters)) or "?"})
    ok = {(t, r): sum(1 for x in run_rows if x["tool"] == t and x["ratio"] == r and x["ok"])
          for t in tools for r in ratios}
    print(f"finished in {time.perf_counter() - start:.0f}s; wrote {args.out} and {md}")
    for (t, r), n in ok.items():
        print(f"  {t} @ {r:g}: {n}/{len(archs)} OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
