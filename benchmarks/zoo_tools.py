"""Worker side of the zoo benchmark: runs inside the per-architecture subprocess.

Builds the baseline (output shape, MACs, output layers), runs each tool at each
ratio and reports rows through :func:`hf_zoo.emit`. Part of :mod:`zoo` (which
re-exports everything here); see its docstring for what each tool does.
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import hf_zoo  # noqa: E402  (benchmarks/ is on sys.path; see hf_zoo's docstring)

from zoo_rows import CPD_MISSING, make_row  # noqa: E402


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
