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
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any, Iterable

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import hf_zoo  # noqa: E402  (benchmarks/ is on sys.path; see hf_zoo's docstring)

RESULTS = HERE / "results"
ROW_KEYS = (
    "arch", "task", "tool", "ratio", "ok", "skipped",
    "macs", "params", "trace_s", "prune_s", "error",
)
TOOLS = ("cpd", "torch-pruning")
DEFAULT_RATIOS = (0.3, 0.5)
CPD_MISSING = "cpd.prune not available"
# architectures whose trace time the summary calls out (ResNet-50 and ViT-B/16 are the
# default ResNetConfig / ViTConfig)
TRACE_SPOTLIGHT = (("resnet", "image-classification"), ("vit", "image-classification"))


# --------------------------------------------------------------------------------------
# rows


def make_row(arch: str, task: str, tool: str, ratio: float, **fields: Any) -> dict:
    """One result row with every key of ``ROW_KEYS`` (unknown keys are rejected)."""
    unknown = set(fields) - set(ROW_KEYS)
    if unknown:
        raise KeyError(f"unknown row fields {sorted(unknown)}")
    row = {
        "arch": arch, "task": task, "tool": tool, "ratio": float(ratio),
        "ok": False, "skipped": False, "macs": None, "params": None,
        "trace_s": None, "prune_s": None, "error": None,
    }
    row.update(fields)
    return row


def validate_row(row: dict) -> None:
    """Raise ``ValueError`` if ``row`` does not follow the zoo.json schema."""
    if set(row) != set(ROW_KEYS):
        raise ValueError(f"row keys {sorted(row)} != {sorted(ROW_KEYS)}")
    if not isinstance(row["arch"], str) or not isinstance(row["task"], str):
        raise ValueError("arch/task must be strings")
    if row["tool"] not in TOOLS:
        raise ValueError(f"tool {row['tool']!r} not in {TOOLS}")
    if not isinstance(row["ratio"], (int, float)):
        raise ValueError("ratio must be a number")
    for k in ("ok", "skipped"):
        if not isinstance(row[k], bool):
            raise ValueError(f"{k} must be a bool")
    for k in ("macs", "params", "trace_s", "prune_s"):
        if row[k] is not None and not isinstance(row[k], (int, float)):
            raise ValueError(f"{k} must be a number or null")
    if row["error"] is not None and not isinstance(row["error"], str):
        raise ValueError("error must be a string or null")
    if row["ok"] and (row["skipped"] or row["error"]):
        raise ValueError("an ok row has neither skipped nor error")


def row_key(row: dict) -> tuple:
    return (row["arch"], row["task"], row["tool"], round(float(row["ratio"]), 6))


def write_results(path: Path, rows: list[dict], *, merge: bool = True) -> list[dict]:
    """Validate ``rows``, merge them into the rows already at ``path`` (same
    (arch, task, tool, ratio) replaced) and write the JSON atomically. Returns the
    rows written."""
    for r in rows:
        validate_row(r)
    old = hf_zoo.read_rows(path) if merge else []
    merged = hf_zoo.merge_rows(old, rows, key=row_key)
    hf_zoo.write_json_atomic(path, merged)
    return merged


# --------------------------------------------------------------------------------------
# Markdown summary


def _cell(r: dict | None) -> str:
    if r is None:
        return ""
    if r["skipped"]:
        return "skip"
    if r["ok"]:
        return f"OK {r['macs']:.2f}" if r["macs"] is not None else "OK"
    err = r["error"] or ""
    if err == CPD_MISSING:
        return "n/a"
    if err.startswith("timeout"):
        return "timeout"
    return "fail"


def _fmt_s(x: float | None) -> str:
    return "" if x is None else f"{x:.2f}"


def _min_trace(rows: Iterable[dict]) -> float | None:
    ts = [r["trace_s"] for r in rows if r["trace_s"] is not None]
    return min(ts) if ts else None


def render_markdown(rows: list[dict], meta: dict | None = None) -> str:
    """Per-architecture OK/fail table for every (tool, ratio), trace_s of both tools
    side by side, totals, and the skipped / failing rows with their reasons."""
    tools = [t for t in TOOLS if any(r["tool"] == t for r in rows)]
    ratios = sorted({float(r["ratio"]) for r in rows})
    by = {row_key(r): r for r in rows}
    pairs: list[tuple[str, str]] = []
    for r in rows:
        if (r["arch"], r["task"]) not in pairs:
            pairs.append((r["arch"], r["task"]))

    out = ["# Zoo benchmark: cpd vs Torch-Pruning on Hugging Face vision models", ""]
    out.append(
        "Every image-classification / semantic-segmentation architecture registered by "
        "the installed transformers, default config, random weights. Cell: `OK m` "
        "(m = MACs fraction of the original), `fail` (error, wrong output shape, or "
        "MACs did not drop), `timeout`, `skip` (cannot build / run unpruned here), `n/a` "
        "(tool not available). trace_s: time to build the dependency structure "
        "(cpd.comb / Torch-Pruning pruner + DependencyGraph), the smallest over ratios."
    )
    if meta:
        out.append("")
        out.append(", ".join(f"{k}: {v}" for k, v in meta.items()))
    out.append("")

    head = ["arch", "task"]
    for t in tools:
        for q in ratios:
            head.append(f"{t} {q:g}")
    for t in tools:
        head.append(f"{t} trace_s")
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "---|" * len(head))
    for arch, task in pairs:
        cells = [arch, "cls" if task == "image-classification" else "seg" if task ==
                 "semantic-segmentation" else task]
        for t in tools:
            for q in ratios:
                cells.append(_cell(by.get((arch, task, t, round(q, 6)))))
        for t in tools:
            cells.append(_fmt_s(_min_trace(
                r for r in rows if (r["arch"], r["task"], r["tool"]) == (arch, task, t))))
        out.append("| " + " | ".join(cells) + " |")

    out += ["", "## Totals", ""]
    out.append("| tool | ratio | OK | fail | skipped | total | mean MACs (OK) | "
               "mean params (OK) |")
    out.append("|---|---|---|---|---|---|---|---|")
    for t in tools:
        for q in ratios:
            rs = [r for r in rows if r["tool"] == t and round(float(r["ratio"]), 6) ==
                  round(q, 6)]
            ok = [r for r in rs if r["ok"]]
            sk = [r for r in rs if r["skipped"]]
            fail = len(rs) - len(ok) - len(sk)
            mm = [r["macs"] for r in ok if r["macs"] is not None]
            pp = [r["params"] for r in ok if r["params"] is not None]
            out.append(
                f"| {t} | {q:g} | {len(ok)} | {fail} | {len(sk)} | {len(rs)} | "
                f"{sum(mm) / len(mm):.3f} | {sum(pp) / len(pp):.3f} |" if mm else
                f"| {t} | {q:g} | {len(ok)} | {fail} | {len(sk)} | {len(rs)} |  |  |"
            )

    out += ["", "## Trace time (ResNet-50 = default ResNetConfig, ViT-B/16 = default "
            "ViTConfig)", ""]
    out.append("| model | " + " | ".join(f"{t} trace_s" for t in tools) + " | " +
               " | ".join(f"{t} prune_s" for t in tools) + " |")
    out.append("|---|" + "---|" * (2 * len(tools)))
    for arch, task in TRACE_SPOTLIGHT:
        rs = [r for r in rows if (r["arch"], r["task"]) == (arch, task)]
        if not rs:
            continue
        name = {"resnet": "ResNet-50", "vit": "ViT-B/16"}.get(arch, arch)
        cells = [name]
        cells += [_fmt_s(_min_trace(r for r in rs if r["tool"] == t)) for t in tools]
        for t in tools:
            ps = [r["prune_s"] for r in rs if r["tool"] == t and r["prune_s"] is not None]
            cells.append(_fmt_s(min(ps)) if ps else "")
        out.append("| " + " | ".join(cells) + " |")

    skipped: dict[tuple[str, str], str] = {}
    for r in rows:
        if r["skipped"]:
            skipped.setdefault((r["arch"], r["task"]), r["error"] or "")
    if skipped:
        out += ["", "## Skipped", ""]
        for (arch, task), why in skipped.items():
            out.append(f"- `{arch}` ({task}): {why}")

    fails = [r for r in rows if not r["ok"] and not r["skipped"] and r["error"] != CPD_MISSING]
    if fails:
        out += ["", "## Failures", ""]
        for r in fails:
            err = (r["error"] or "").replace("|", "\\|").replace("\n", " ")
            out.append(f"- `{r['arch']}` ({r['task']}) {r['tool']} {r['ratio']:g}: {err[:300]}")
    n_missing = sum(1 for r in rows if r["error"] == CPD_MISSING)
    if n_missing:
        out += ["", f"{n_missing} rows: `{CPD_MISSING}`."]
    return "\n".join(out) + "\n"


def write_markdown(path: Path, rows: list[dict], meta: dict | None = None) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(render_markdown(rows, meta))
    tmp.replace(path)


# --------------------------------------------------------------------------------------
# worker side (runs inside the per-architecture subprocess)



def _prunable_types():
    import torch.nn as nn

    return (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d,
            nn.ConvTranspose2d, nn.ConvTranspose3d)


def find_output_layers(model, inputs) -> list[str]:
    """Names of the Linear/Conv modules whose outputs reach the logits without going
    through another Linear/Conv (autograd walk back from the logits)."""
    import torch

    node_to_name: dict[Any, str] = {}
    hooks = []

    def hook(name):
        def fn(mod, args, out):
            if isinstance(out, torch.Tensor) and out.grad_fn is not None:
                node_to_name[out.grad_fn] = name
        return fn

    for name, m in model.named_modules():
        if isinstance(m, _prunable_types()):
            hooks.append(m.register_forward_hook(hook(name)))
    try:
        with torch.enable_grad():
            logits = hf_zoo.logits_of(model(**inputs))
    finally:
        for h in hooks:
            h.remove()
    found, seen = [], set()
    stack = [logits.grad_fn] if logits.grad_fn is not None else []
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if fn in node_to_name:
            if node_to_name[fn] not in found:
                found.append(node_to_name[fn])
            continue
        stack.extend(nxt for nxt, _ in fn.next_functions if nxt is not None)
    return found


HEAD_COUNT_ATTRS = ("num_attention_heads", "num_heads", "n_heads", "heads", "num_head")
SPLIT_QKV = (("query", "key", "value"), ("q", "k", "v"), ("q_proj", "k_proj", "v_proj"),
             ("to_q", "to_k", "to_v"))
FUSED_QKV = ("qkv", "to_qkv", "qkv_proj", "in_proj")


def find_attention(model) -> list[dict]:
    """Attention modules Torch-Pruning should prune head-wise: a module with an int head
    count attribute and q/k/v Linear children (or one fused qkv Linear)."""
    import torch.nn as nn

    specs = []
    for name, m in model.named_modules():
        attr = next((a for a in HEAD_COUNT_ATTRS
                     if isinstance(getattr(m, a, None), int) and
                     not isinstance(getattr(m, a), bool) and getattr(m, a) > 0), None)
        if attr is None:
            continue
        heads = getattr(m, attr)
        kids = dict(m.named_children())
        layers, fused = None, False
        for trio in SPLIT_QKV:
            if all(isinstance(kids.get(k), nn.Linear) for k in trio):
                layers = [kids[k] for k in trio]
                break
        if layers is None:
            for k in FUSED_QKV:
                if isinstance(kids.get(k), nn.Linear):
                    layers, fused = [kids[k]], True
                    break
        if layers is None:
            continue
        if any(lin.out_features % (heads * (3 if fused else 1)) for lin in layers):
            continue
        specs.append({"name": name, "module": m, "attr": attr, "layers": layers,
                      "fused": fused})
    return specs


def update_attention(specs: list[dict], num_heads: dict) -> None:
    """Documented Torch-Pruning post-step: write the pruned head counts / sizes back
    into the attention modules (only attributes they already have)."""
    for s in specs:
        m, q = s["module"], s["layers"][0]
        heads = num_heads.get(q)
        if not heads:
            continue
        width = q.out_features // 3 if s["fused"] else q.out_features
        setattr(m, s["attr"], int(heads))
        for a in ("attention_head_size", "head_dim", "head_size", "dim_head"):
            if isinstance(getattr(m, a, None), int):
                setattr(m, a, width // int(heads))
        for a in ("all_head_size", "inner_dim"):
            if isinstance(getattr(m, a, None), int):
                setattr(m, a, width)


class _Baseline:
    def __init__(self, model, inputs, out_shape, counter, macs, params, out_layers):
        self.model, self.inputs, self.out_shape = model, inputs, out_shape
        self.counter, self.macs, self.params = counter, macs, params
        self.out_layers = out_layers


def _count(counter: str, model, inputs) -> tuple[int, int]:
    if counter == "cpd.count":
        import cpd

        macs, params = cpd.count(model, inputs)
        return int(macs), int(params)
    return hf_zoo.count_flops_macs(model, inputs)


def _evaluate(base: _Baseline, pruned, row: dict) -> dict:
    """Fill ok / macs / params / error of ``row`` from the pruned model."""
    try:
        out = hf_zoo.forward(pruned, base.inputs)
        shape = list(hf_zoo.logits_of(out).shape)
    except Exception as e:  # noqa: BLE001
        row["error"] = f"pruned forward: {hf_zoo._short(e)}{hf_zoo._where(e)}"
        return row
    try:
        macs, params = _count(base.counter, pruned, base.inputs)
        row["macs"] = round(macs / base.macs, 4) if base.macs else None
        row["params"] = round(params / base.params, 4) if base.params else None
    except Exception as e:  # noqa: BLE001
        row["error"] = f"count ({base.counter}): {hf_zoo._short(e)}"
        return row
    if shape != base.out_shape:
        row["error"] = f"output shape {shape} != {base.out_shape}"
    elif row["macs"] is None or row["macs"] >= 1.0:
        row["error"] = f"MACs did not drop ({row['macs']})"
    else:
        row["ok"] = True
    return row


def _run_cpd(base: _Baseline, arch, task, ratio) -> dict:
    row = make_row(arch, task, "cpd", ratio)
    try:
        import cpd
    except Exception as e:  # noqa: BLE001
        row["error"] = f"import cpd: {hf_zoo._short(e)}"
        return row
    if not callable(getattr(cpd, "prune", None)):
        row["error"] = CPD_MISSING
        return row
    model = copy.deepcopy(base.model)
    try:
        if callable(getattr(cpd, "comb", None)):
            t0 = time.perf_counter()
            cpd.comb(model, base.inputs)
            row["trace_s"] = round(time.perf_counter() - t0, 3)
            hf_zoo.emit("PHASE", f"comb done in {row['trace_s']}s, pruning")
        t0 = time.perf_counter()
        res = cpd.prune(model, base.inputs, ratio=ratio)
        row["prune_s"] = round(time.perf_counter() - t0, 3)
        pruned = res.model
    except Exception as e:  # noqa: BLE001
        row["error"] = f"cpd: {hf_zoo._short(e)}{hf_zoo._where(e)}"
        return row
    hf_zoo.emit("PHASE", "pruned, checking")
    pruned.eval()
    return _evaluate(base, pruned, row)


def _run_tp(base: _Baseline, arch, task, ratio) -> dict:
    import torch_pruning as tp

    row = make_row(arch, task, "torch-pruning", ratio)
    model = copy.deepcopy(base.model)
    modules = dict(model.named_modules())
    ignored = [modules[n] for n in base.out_layers if n in modules]
    specs = find_attention(model)
    num_heads = {}
    for s in specs:
        for lin in s["layers"]:
            num_heads[lin] = getattr(s["module"], s["attr"])
    try:
        t0 = time.perf_counter()
        pruner = tp.pruner.BasePruner(
            model,
            base.inputs,
            importance=tp.importance.GroupMagnitudeImportance(p=2),
            pruning_ratio=ratio,
            global_pruning=False,
            iterative_steps=1,
            ignored_layers=ignored,
            output_transform=lambda out: hf_zoo.logits_of(out).sum(),
            num_heads=num_heads,
            prune_num_heads=True,
            prune_head_dims=False,
            head_pruning_ratio=ratio,
            # fresh dicts: BasePruner's defaults are shared mutable dicts that it updates
            in_channel_groups={},
            out_channel_groups={},
        )
        row["trace_s"] = round(time.perf_counter() - t0, 3)
        hf_zoo.emit("PHASE", f"pruner built in {row['trace_s']}s, pruning")
        t0 = time.perf_counter()
        pruner.step()
        update_attention(specs, pruner.num_heads)
        row["prune_s"] = round(time.perf_counter() - t0, 3)
    except Exception as e:  # noqa: BLE001
        row["error"] = f"torch-pruning: {hf_zoo._short(e)}{hf_zoo._where(e)}"
        return row
    hf_zoo.emit("PHASE", "pruned, checking")
    model.eval()
    return _evaluate(base, model, row)


RUNNERS = {"cpd": _run_cpd, "torch-pruning": _run_tp}


def _setup(arch: str, task: str) -> _Baseline:
    model, inputs = hf_zoo.build(arch, task)  # raises hf_zoo.SkipArch
    hf_zoo.emit("BUILT")
    try:
        out_shape = list(hf_zoo.logits_of(hf_zoo.forward(model, inputs)).shape)
    except Exception as e:  # noqa: BLE001
        raise hf_zoo.SkipArch(f"unpruned forward: {hf_zoo._short(e)}{hf_zoo.forward_hint(model)}",
                              built=True) from e
    counter = "flop_counter"
    try:
        import cpd

        if callable(getattr(cpd, "count", None)):
            macs, params = _count("cpd.count", model, inputs)
            counter = "cpd.count"
    except Exception as e:  # noqa: BLE001 - cpd missing or its counter fails on this model
        counter = "flop_counter"
        hf_zoo.emit("NOTE", f"cpd.count unusable, both tools use flop_counter: {hf_zoo._short(e)}")
    if counter == "flop_counter":
        macs, params = hf_zoo.count_flops_macs(model, inputs)
    out_layers = find_output_layers(model, inputs)
    return _Baseline(model, inputs, out_shape, counter, macs, params, out_layers)


def worker(job: dict) -> None:
    import torch

    if job.get("threads"):
        torch.set_num_threads(int(job["threads"]))
    arch, task = job["arch"], job["task"]
    hf_zoo.emit("SETUP")
    try:
        base = _setup(arch, task)
    except hf_zoo.SkipArch as e:
        hf_zoo.emit("SKIP", str(e))
        return
    hf_zoo.emit("READY", {"counter": base.counter, "out_shape": base.out_shape,
                          "macs": base.macs, "params": base.params,
                          "output_layers": base.out_layers})
    for tool, ratio in job["steps"]:
        hf_zoo.emit("START", [tool, ratio])
        try:
            row = RUNNERS[tool](base, arch, task, ratio)
        except Exception as e:  # noqa: BLE001
            row = make_row(arch, task, tool, ratio, error=f"{tool}: {hf_zoo._short(e)}")
        hf_zoo.emit("ROW", row)


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
