"""The Hugging Face vision zoo: every image-classification / semantic-segmentation
architecture that the installed ``transformers`` registers, built offline.

Reusable pieces (imported by ``benchmarks/zoo.py``, the tests and other benchmarks):

* :func:`iter_architectures` -- ``[(arch, task), ...]`` read from transformers' auto
  mappings (``MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES`` and
  ``MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES`` in
  ``transformers.models.auto.modeling_auto``); there is no hand-written list.
* :func:`build` -- ``(model, example_inputs)`` for one ``(arch, task)``: the default
  config (``AutoConfig.for_model``), random seeded weights, eval mode, and
  ``{"pixel_values": x}`` with ``x`` of shape ``(1, C, H, W)`` taken from the config's
  own ``image_size`` / ``num_channels``.
* :func:`logits_of`, :func:`count_flops_macs`, :func:`run_streaming` -- helpers.

Importing: ``benchmarks/`` is deliberately *not* a package (no ``__init__.py``), so
that ``python benchmarks/zoo.py`` and ``python benchmarks/hf_zoo.py`` work as plain
scripts from any directory. Other code imports this module by putting the
``benchmarks`` directory on ``sys.path``::

    sys.path.insert(0, str(REPO / "benchmarks"))
    import hf_zoo

Run as a script it writes ``benchmarks/results/hf_buildable.json``: for every
enumerated architecture, whether it builds and runs an unpruned forward here, each
architecture in its own subprocess with a time limit::

    python benchmarks/hf_zoo.py [--arch vit,resnet] [--tasks image-classification] \
        [--timeout 300] [--out benchmarks/results/hf_buildable.json]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

# The zoo is split in modules; this one re-exports them, so ``hf_zoo.build`` etc. work.
from hf_zoo_build import (  # noqa: E402,F401
    DEFAULT_CHANNELS, DEFAULT_IMAGE_SIZE, DEFAULT_TASKS, RESULTS, SEED, TASKS, SkipArch,
    _check_image_input, _mapping, _NOT_INPUTS, _sub_configs, build, class_names,
    example_inputs_for, forward, forward_hint, input_spec, iter_architectures, logits_of,
    make_config, other_inputs,
)
from hf_zoo_run import (  # noqa: E402,F401
    PROTO, _short, _where, crash_reason, emit, merge_rows, read_rows, run_streaming,
    write_json_atomic,
)


# --------------------------------------------------------------------------------------
# counting (fallback counter when cpd.count is not there)


def _sdpa_cpu_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


def count_flops_macs(model, example_inputs) -> tuple[int, int]:
    """``(macs, params)`` with ``torch.utils.flop_counter.FlopCounterMode`` (MACs =
    FLOPs / 2). The CPU fused attention kernel
    (``aten._scaled_dot_product_flash_attention_for_cpu``) is not in torch's registry;
    it is added here so SDPA attention is counted like the math path would be."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    custom = {}
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is not None:
        custom[op] = _sdpa_cpu_flop
    with FlopCounterMode(display=False, custom_mapping=custom) as fc:
        forward(model, example_inputs)
    seen, params = set(), 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            params += p.numel()
    return fc.get_total_flops() // 2, params


# --------------------------------------------------------------------------------------
# buildability check (hf_buildable.json)


def check(arch: str, task: str) -> dict[str, Any]:
    """Build ``(arch, task)`` and run one unpruned forward; one hf_buildable row."""
    row: dict[str, Any] = {
        "arch": arch,
        "task": task,
        "model_class": class_names(arch, task)[0],
        "buildable": False,
        "forward_ok": False,
        "reason": "",
        "build_s": None,
        "forward_s": None,
        "input_shape": None,
        "output_shape": None,
        "params": None,
    }
    t0 = time.perf_counter()
    try:
        model, inputs = build(arch, task)
    except SkipArch as e:
        row["build_s"] = round(time.perf_counter() - t0, 3)
        row["buildable"] = e.built
        row["reason"] = str(e)
        return row
    row["build_s"] = round(time.perf_counter() - t0, 3)
    row["buildable"] = True
    row["model_class"] = type(model).__name__
    row["params"] = sum(p.numel() for p in model.parameters())
    row["input_shape"] = list(inputs["pixel_values"].shape)
    t0 = time.perf_counter()
    try:
        out = forward(model, inputs)
        row["output_shape"] = list(logits_of(out).shape)
        row["forward_ok"] = True
    except Exception as e:  # noqa: BLE001
        row["reason"] = f"forward: {_short(e)}{forward_hint(model)}"
    row["forward_s"] = round(time.perf_counter() - t0, 3)
    return row


def _worker_check(arch: str, task: str) -> None:
    emit("ROW", check(arch, task))


def _parse_list(s: str | None) -> list[str] | None:
    return [x.strip() for x in s.split(",") if x.strip()] if s else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", help="comma-separated model types (default: all)")
    ap.add_argument("--tasks", default=",".join(DEFAULT_TASKS))
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per arch")
    ap.add_argument("--out", type=Path, default=RESULTS / "hf_buildable.json")
    ap.add_argument("--worker", nargs=2, metavar=("ARCH", "TASK"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        _worker_check(*args.worker)
        return 0

    archs = iter_architectures(_parse_list(args.tasks))
    only = _parse_list(args.arch)
    if only:
        unknown = set(only) - {a for a, _ in archs}
        if unknown:
            print(f"unknown arch(s) for these tasks: {sorted(unknown)}", file=sys.stderr)
        archs = [(a, t) for a, t in archs if a in only]
    print(f"{len(archs)} (arch, task) pairs", flush=True)
    rows = []
    for i, (arch, task) in enumerate(archs, 1):
        got: list[dict] = []
        t0 = time.perf_counter()
        status, tail = run_streaming(
            [sys.executable, str(Path(__file__).resolve()), "--worker", arch, task],
            args.timeout,
            lambda kind, p: got.append(p) if kind == "ROW" else None,
        )
        if got:
            row = got[0]
        else:
            row = {
                "arch": arch, "task": task, "model_class": class_names(arch, task)[0],
                "buildable": False, "forward_ok": False,
                "reason": (f"timeout after {args.timeout:.0f}s (build or forward)"
                           if status == "timeout" else crash_reason(status, tail)),
                "build_s": None, "forward_s": None, "input_shape": None,
                "output_shape": None, "params": None,
            }
        rows.append(row)
        state = "OK " if row["forward_ok"] else ("NOFWD" if row["buildable"] else "SKIP")
        print(
            f"[{i}/{len(archs)}] {arch:24s} {task:22s} {state:5s} "
            f"{time.perf_counter() - t0:6.1f}s {row['input_shape']} -> {row['output_shape']} "
            f"{row['reason'][:120]}",
            flush=True,
        )
    merged = merge_rows(read_rows(args.out), rows, key=lambda r: (r["arch"], r["task"]))
    write_json_atomic(args.out, merged)
    n_b = sum(r["buildable"] for r in merged)
    n_f = sum(r["forward_ok"] for r in merged)
    print(f"wrote {args.out}: {len(merged)} pairs, {n_b} buildable, {n_f} forward OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
