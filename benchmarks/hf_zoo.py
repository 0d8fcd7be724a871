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
import inspect
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

TASKS: dict[str, tuple[str, str]] = {
    # task -> (mapping constant in transformers.models.auto.modeling_auto, auto class)
    "image-classification": (
        "MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES",
        "AutoModelForImageClassification",
    ),
    "semantic-segmentation": (
        "MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES",
        "AutoModelForSemanticSegmentation",
    ),
}
DEFAULT_TASKS = ("image-classification", "semantic-segmentation")
DEFAULT_IMAGE_SIZE = 224  # used only when a config has no image_size anywhere
DEFAULT_CHANNELS = 3  # used only when a config has no num_channels anywhere
SEED = 0

PROTO = "@@"  # prefix of the protocol lines a worker prints on stdout


class SkipArch(Exception):
    """The architecture cannot be built, or cannot run unpruned on an image, here.

    ``built`` is True when the model itself was constructed (e.g. it builds but its
    forward takes text tokens instead of ``pixel_values``)."""

    def __init__(self, reason: str, built: bool = False):
        super().__init__(reason)
        self.built = built


# --------------------------------------------------------------------------------------
# enumeration


def _mapping(task: str) -> dict[str, Any]:
    from transformers.models.auto import modeling_auto

    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known: {sorted(TASKS)}")
    return getattr(modeling_auto, TASKS[task][0])


def iter_architectures(
    tasks: Iterable[str] = DEFAULT_TASKS,
) -> list[tuple[str, str]]:
    """``[(arch, task), ...]`` for every model type the installed transformers maps to
    the task's auto class, in the mapping's order. ``arch`` is the ``model_type``."""
    if isinstance(tasks, str):
        tasks = (tasks,)
    out = []
    for task in tasks:
        for arch in _mapping(task):
            out.append((arch, task))
    return out


def class_names(arch: str, task: str) -> list[str]:
    """The model class name(s) the mapping lists for ``arch`` (the first one is what
    ``AutoModelFor*.from_config`` builds when the config names no architecture)."""
    v = _mapping(task)[arch]
    return list(v) if isinstance(v, (list, tuple)) else [v]


# --------------------------------------------------------------------------------------
# building


def make_config(arch: str, **overrides: Any):
    """The default config of ``arch``, with ``overrides`` set as attributes."""
    from transformers import AutoConfig

    config = AutoConfig.for_model(arch)
    for k, v in overrides.items():
        setattr(config, k, v)
    return config


def _sub_configs(config) -> list[Any]:
    subs = [config]
    for name in ("vision_config", "backbone_config", "encoder_config"):
        sub = getattr(config, name, None)
        if sub is not None and not isinstance(sub, dict):
            subs.append(sub)
    return subs


def input_spec(config) -> tuple[int, int, int]:
    """``(C, H, W)`` of the example image, from the config's own ``num_channels`` and
    ``image_size`` (looked up in the config, then its vision/backbone sub-config).
    ``image_size`` may be an int or an ``(H, W)`` pair. Falls back to 3 x 224 x 224
    only for configs that carry no such field at all (e.g. ResNetConfig)."""
    size = chans = None
    for c in _sub_configs(config):
        if size is None:
            size = getattr(c, "image_size", None)
        if chans is None:
            chans = getattr(c, "num_channels", None)
    if size is None:
        size = DEFAULT_IMAGE_SIZE
    if isinstance(size, (list, tuple)):
        h, w = int(size[0]), int(size[-1])
    else:
        h = w = int(size)
    return int(chans or DEFAULT_CHANNELS), h, w


def example_inputs_for(config, seed: int = SEED) -> dict[str, Any]:
    import torch

    c, h, w = input_spec(config)
    g = torch.Generator().manual_seed(seed)
    return {"pixel_values": torch.randn(1, c, h, w, generator=g)}


def build(
    arch: str,
    task: str,
    *,
    config_overrides: dict[str, Any] | None = None,
    seed: int = SEED,
):
    """``(model, example_inputs)`` for ``(arch, task)``: default config (plus
    ``config_overrides``), random weights seeded with ``seed``, eval mode.

    Raises :class:`SkipArch` (with the reason) when the config or the model cannot be
    built offline, or when the model's forward takes no ``pixel_values``.
    """
    import torch
    import transformers

    auto_cls = getattr(transformers, TASKS[task][1])
    try:
        config = make_config(arch, **(config_overrides or {}))
    except Exception as e:  # noqa: BLE001 - any failure here means "cannot build"
        raise SkipArch(f"config: {_short(e)}{_where(e)}") from e
    if not getattr(config, "architectures", None):
        # transformers 5.23's _get_model_class iterates config.architectures, which is
        # None on a fresh default config; for arches that map to several classes
        # (deit, levit, perceiver) from_config then dies with "'NoneType' object is not
        # iterable". Name the first mapped class, which is what it means to default to.
        config.architectures = [class_names(arch, task)[0]]
    model_cls = getattr(transformers, class_names(arch, task)[0], None)
    if model_cls is not None:
        _check_image_input(model_cls)  # before building: some text models are huge
    torch.manual_seed(seed)
    try:
        model = auto_cls.from_config(config)
    except Exception as e:  # noqa: BLE001
        raise SkipArch(f"build: {_short(e)}{_where(e)}") from e
    model.eval()
    _check_image_input(type(model), built=True)
    return model, example_inputs_for(config, seed)


# forward parameters that are not model inputs
_NOT_INPUTS = {"pixel_values", "labels", "return_dict", "output_attentions",
               "output_hidden_states", "interpolate_pos_encoding", "head_mask",
               "bool_masked_pos", "kwargs", "args", "return_loss", "use_cache"}


def other_inputs(model_cls) -> list[str]:
    """Forward parameters of ``model_cls`` besides ``pixel_values`` that look like
    inputs (used to explain why an image-only forward fails)."""
    params = inspect.signature(model_cls.forward).parameters
    return [n for n, p in params.items()
            if n != "self" and n not in _NOT_INPUTS and p.kind not in (
                inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)]


def _check_image_input(model_cls, built: bool = False) -> None:
    params = inspect.signature(model_cls.forward).parameters
    if "pixel_values" not in params:
        raise SkipArch(
            f"forward takes no pixel_values (inputs: {', '.join(other_inputs(model_cls)[:3])}"
            ", ...): not an image-input model",
            built=built,
        )


def logits_of(out: Any):
    """The main output tensor of a forward (``.logits`` for HF outputs)."""
    import torch

    if isinstance(out, torch.Tensor):
        return out
    logits = getattr(out, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(out, dict):
        for v in out.values():
            if isinstance(v, torch.Tensor):
                return v
    if isinstance(out, (list, tuple)):
        for v in out:
            if isinstance(v, torch.Tensor):
                return v
    if hasattr(out, "to_tuple"):
        return logits_of(out.to_tuple())
    raise TypeError(f"no tensor output in {type(out).__name__}")


def forward_hint(model) -> str:
    others = other_inputs(type(model))
    return f" (forward also takes: {', '.join(others)})" if others else ""


def forward(model, example_inputs):
    import torch

    with torch.no_grad():
        if isinstance(example_inputs, dict):
            return model(**example_inputs)
        if isinstance(example_inputs, (list, tuple)):
            return model(*example_inputs)
        return model(example_inputs)


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
# subprocess runner (one hang or crash must not kill the whole run)


def _where(e: BaseException) -> str:
    """`` [at file.py:line in func]``: the innermost frame of ``e``'s traceback that is
    not inside torch itself (so a shape error points at the model or the pruner)."""
    frames = []
    tb = e.__traceback__
    while tb is not None:
        frames.append(tb)
        tb = tb.tb_next
    if not frames:
        return ""
    sep = os.sep
    pick = next((f for f in reversed(frames)
                 if f"{sep}torch{sep}" not in f.tb_frame.f_code.co_filename), frames[-1])
    code = pick.tb_frame.f_code
    return f" [at {Path(code.co_filename).name}:{pick.tb_lineno} in {code.co_name}]"


def _short(e: BaseException, n: int = 300) -> str:
    s = f"{type(e).__name__}: {e}".strip().replace("\n", " ")
    return s if len(s) <= n else s[: n - 3] + "..."


def emit(kind: str, payload: Any = None) -> None:
    """Worker side: print one protocol line (``@@KIND {json}``) and flush."""
    sys.stdout.write(f"{PROTO}{kind} {json.dumps(payload)}\n")
    sys.stdout.flush()


def run_streaming(
    cmd: list[str],
    timeout: float,
    on_event: Callable[[str, Any], None],
    *,
    env: dict[str, str] | None = None,
    log: Callable[[str], None] | None = None,
    quiet_kinds: Iterable[str] = (),
) -> tuple[str, list[str]]:
    """Run ``cmd``; call ``on_event(kind, payload)`` for each ``@@KIND json`` line it
    prints. ``timeout`` is an *inactivity* limit: it restarts at every protocol line,
    so each step the worker announces gets ``timeout`` seconds; lines whose kind is in
    ``quiet_kinds`` are reported but do not restart it.

    Returns ``(status, tail)`` with status ``"ok"``, ``"timeout"`` or ``"exit <rc>"``
    and ``tail`` the last non-protocol output lines (for error messages)."""
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        bufsize=1,
        env=env,
        start_new_session=True,
    )
    q: queue.Queue = queue.Queue()

    def reader():
        assert proc.stdout is not None
        for line in proc.stdout:
            q.put(line)
        q.put(None)

    threading.Thread(target=reader, daemon=True).start()
    tail: list[str] = []
    deadline = time.monotonic() + timeout
    status = None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            status = "timeout"
            break
        try:
            line = q.get(timeout=left)
        except queue.Empty:
            status = "timeout"
            break
        if line is None:
            break
        line = line.rstrip("\n")
        if line.startswith(PROTO):
            kind, _, rest = line[len(PROTO):].partition(" ")
            try:
                payload = json.loads(rest) if rest else None
            except json.JSONDecodeError:
                payload = rest
            on_event(kind, payload)
            if kind not in quiet_kinds:
                deadline = time.monotonic() + timeout
        else:
            if log is not None:
                log(line)
            if line.strip():
                tail.append(line)
                del tail[:-20]
    if status == "timeout":
        try:
            os.killpg(proc.pid, 9)  # the worker's own session: only what we started
        except ProcessLookupError:
            pass
        proc.wait()
        return status, tail
    rc = proc.wait()
    return ("ok" if rc == 0 else f"exit {rc}"), tail


def crash_reason(status: str, tail: list[str]) -> str:
    last = next((t for t in reversed(tail) if "Error" in t or "error" in t), None)
    last = last or (tail[-1] if tail else "")
    return f"worker {status}" + (f": {last.strip()[:300]}" if last else "")


def write_json_atomic(path: Path, obj: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def merge_rows(old: list[dict], new: list[dict], key: Callable[[dict], Any]) -> list[dict]:
    """``old`` rows with those that ``new`` re-measured replaced (same key), new keys
    appended; order: old order first."""
    fresh = {key(r): r for r in new}
    out, seen = [], set()
    for r in old:
        k = key(r)
        out.append(fresh.get(k, r))
        seen.add(k)
    out.extend(r for r in new if key(r) not in seen)
    return out


def read_rows(path: Path) -> list[dict]:
    try:
        with open(path) as f:
            data = json.load(f)
        return data if isinstance(data, list) else []
    except (FileNotFoundError, json.JSONDecodeError):
        return []


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
