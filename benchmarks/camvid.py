"""CamVid benchmark: the whole Comb-Prune-Distill pipeline against baselines, on real data.

For each model (``camvid_models``): train it from scratch on CamVid (segmentation on
frames resized to 90x120, random crops of 0.5-1.25x 72x96 resized to 72x96;
classification on 32x32 scene patches, ``camvid_patches``), then compress it to 50 % of
its MACs with

* ``cpd``: ``cpd.pipeline.run.run_cpd`` (Hessian scores on the KD + task loss inside
  training, 10 masked pruning steps that each remove the same fraction of every group,
  ``allocation="uniform"``, physical removal, fine-tuning with distillation from the
  unpruned model: logit KD for classification, per-pixel KD for segmentation);
* ``cpd-no-kd``: the same with ``alpha=0``;
* ``tp-magnitude`` / ``tp-taylor``: Torch-Pruning (``MetaPruner``, L1 magnitude or
  Taylor importance) one-shot to the same MACs, then plain fine-tuning;

all with the same ``cpd.train.Trainer`` loop, optimizer steps and learning-rate
schedule (``camvid_runs``; ``ft_steps`` is 1000 for SegFormer, 300 for the others),
each with eight (segmentation) or two (classification) fine-tuning seeds. Reported per
row: the metric on the test split (mIoU on the 233 test frames at 90x120, or top-1 on the
7842 test patches, in %; mean over the seeds), MACs and params as fractions of the
unpruned model, and 1-thread CPU latency at batch 1 and 8.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/camvid.py                  # everything (~165 min of compute incl. baselines)
    OMP_NUM_THREADS=1 python benchmarks/camvid.py --models seg-cnn --set alpha=0.7
    OMP_NUM_THREADS=1 python benchmarks/camvid.py --models seg-cnn,segformer --set macs=0.25 \
        --set cpd_max_ratio=0.8 --out-dir /tmp/cv25   # the 25 % rows (saved as camvid_macs25.*)
    OMP_NUM_THREADS=1 python benchmarks/camvid.py --quick --out-dir /tmp/cv   # smoke run (tiny, ~1 min)
    OMP_NUM_THREADS=1 python benchmarks/camvid.py --retime   # re-time cached rows alone (camvid_retime)

Each finished (model, method) row is cached in ``--cache-dir`` (with the trained
baseline weights) under a fingerprint of its configuration; a re-run skips it
(``--fresh`` redoes everything). Writes ``camvid.json`` (list of rows: ``model, task,
method, macs, params, metric, latency_ms_bs1, latency_ms_bs8`` and details),
``camvid.md`` and ``camvid.png`` to ``--out-dir`` (default ``benchmarks/results``;
``--quick`` defaults to a temporary folder), and logs to ``camvid.log`` there.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import camvid_report  # noqa: E402
from camvid_cache import BASE_KEYS, DATA_KEYS, TRAIN_KEYS, Cache, fingerprint  # noqa: E402
from camvid_data import FrameTensors, PatchTensors, load_frames, load_patches  # noqa: E402
from camvid_models import DESCRIPTIONS, MODEL_TASK, build  # noqa: E402
from camvid_notes import NOTES  # noqa: E402
from camvid_retime import retime_rows  # noqa: E402
from camvid_runs import METHODS, make_row, paired_latency, run_method, train_baseline  # noqa: E402
from cpd.pipeline.run import measure  # noqa: E402
from cpd.report.atomic import atomic_path  # noqa: E402
from cpd.report.counting import count  # noqa: E402
from cpd.tasks import build_task  # noqa: E402

RESULTS = HERE / "results"
CAMVID = Path(os.environ.get("CPD_CAMVID", "/work/shared/data/camvid"))
CACHE = HERE.parent / "runs" / "camvid"  # /runs/ is git-ignored

COMMON = dict(macs=0.5, importance="hessian", prune_steps=10, interval=10, score_batches=8, ft_steps=300,
              ft_lr=1e-3, ft_warmup=10, alpha=0.5, temperature=None, weight_decay=0.01, base_warmup=50,
              cpd_max_ratio=0.5, cpd_cost=None, cpd_ratio=None, cpd_alloc="uniform", cpd_feat=None, cpd_rev=2,
              extra_view="none", seed=0, ft_seeds=[0, 1],
              tp_global=False, tp_iters=14, latency_rounds=5, log_every=100)
TASK_CFG = {
    "segmentation": dict(size=[90, 120], crop=[72, 96], train_items=None, test_items=None, batch_size=16,
                         # scale jitter: the window is 0.5-1.25x the crop, resized to it (chosen on val:
                         # baselines 52.72 vs 49.74 (seg-cnn) and 57.17 vs 48.36 (SegFormer) without)
                         crop_scale=[0.5, 1.25],
                         base_steps=6000, base_lr=3e-3, eval_split="test", seg_kd="pixel",
                         # single seeds differ by up to 2.6 mIoU and methods by less: average eight
                         ft_seeds=list(range(8))),
    "classification": dict(patch=32, train_frames=None, test_frames=None, batch_size=64, base_steps=1000,
                           base_lr=2e-3, eval_split="test"),
}
MODEL_CFG: dict[str, dict[str, Any]] = {
    "seg-cnn": dict(out_layers=["classifier"]),
    # SegFormer trained from scratch keeps improving longer (val mIoU 45.52 at 8000 steps, 48.36 at
    # 16000); seg-cnn does not (val 51.77 at 2000 steps, 49.74 at 6000). The compression budget
    # scales with the baseline's: 100 pruning + ft_steps steps are ~7 % of its training for both
    # segmenters (400 / 6000, 1100 / 16000); SegFormer cpd on val: 52.51 with 1000, 51.51 with 300
    "segformer": dict(out_layers=["decode_head.classifier"], base_steps=16000, ft_steps=1000),
    "cls-cnn": dict(out_layers=["fc"]),
    "segformer-cls": dict(out_layers=["classifier"], base_steps=1500),
}
FULL_MODELS = ("seg-cnn", "segformer", "cls-cnn", "segformer-cls")
QUICK = dict(prune_steps=2, interval=2, score_batches=1, ft_steps=2, ft_warmup=1, base_warmup=1, tp_iters=5,
             latency_rounds=1, ft_seeds=[0],
             log_every=1, size=[48, 64], crop=[32, 48], train_items=6, test_items=3, batch_size=2, base_steps=3,
             train_frames=1, test_frames=1, patch=32)
QUICK_CLS = dict(batch_size=8)


def log(msg: str) -> None:
    line = f"[{time.strftime('%H:%M:%S')}] {msg}"
    print(line, flush=True)
    if LOG_PATH is not None:
        with open(LOG_PATH, "a") as f:
            f.write(line + "\n")


LOG_PATH: Path | None = None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny models, a few frames and steps (smoke run)")
    p.add_argument("--models", default=None, help=f"comma-separated, default {','.join(FULL_MODELS)}")
    p.add_argument("--methods", default=",".join(METHODS[1:]), help="comma-separated compression methods")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (JSON value), e.g. --set alpha=0.7 --set ft_steps=400")
    p.add_argument("--fresh", action="store_true", help="ignore cached rows and baselines")
    p.add_argument("--retime", action="store_true",
                   help="re-time the latency of the cached rows (run it with nothing else on the machine)")
    p.add_argument("--retime-rounds", type=int, default=10, help="timing rounds per model with --retime")
    p.add_argument("--data", type=Path, default=CAMVID, help="CamVid root (SegNet layout)")
    p.add_argument("--out-dir", type=Path, default=None, help="where camvid.json/.md/.png/.log go")
    p.add_argument("--cache-dir", type=Path, default=None, help="finished rows and baseline weights")
    args = p.parse_args(argv)
    suffix = "-tiny" if args.quick else ""
    names = args.models.split(",") if args.models else [m + suffix for m in FULL_MODELS]
    bad = [m for m in names if m not in MODEL_TASK] + [m for m in args.methods.split(",") if m not in METHODS[1:]]
    if bad:
        p.error(f"unknown model(s)/method(s) {bad}; models: {', '.join(MODEL_TASK)}; methods: {', '.join(METHODS[1:])}")
    args.model_names, args.method_names = names, args.methods.split(",")
    args.overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            p.error(f"--set takes KEY=VALUE, got {item!r}")
        try:
            args.overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            args.overrides[key] = value
    known = set(COMMON) | {k for c in TASK_CFG.values() for k in c}
    unknown = sorted(set(args.overrides) - known)
    if unknown:
        p.error(f"--set: unknown key(s) {unknown}; valid: {sorted(known)}")
    tmp = Path(tempfile.gettempdir())
    args.out_dir = args.out_dir or (tmp / "cpd_camvid_quick" if args.quick else RESULTS)
    args.cache_dir = args.cache_dir or (args.out_dir / "cache" if args.quick else CACHE)
    return args


def model_config(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Every setting of one model's runs (the fingerprinted configuration)."""
    task = MODEL_TASK[name]
    cfg: dict[str, Any] = {**COMMON, **TASK_CFG[task], **MODEL_CFG[name.removesuffix("-tiny")]}
    if args.quick:
        cfg.update({k: v for k, v in QUICK.items() if k in cfg})
        cfg.update(QUICK_CLS if task == "classification" else {})
    cfg.update({k: v for k, v in args.overrides.items() if k in cfg})
    return cfg


def load_data(task: str, cfg: dict[str, Any], root: Path) -> tuple[Any, Any, torch.Tensor]:
    """``(train, test, example)``: datasets and a ``(1, 3, H, W)`` tracing input from the evaluation split."""
    if task == "segmentation":
        size = tuple(cfg["size"])
        tr = load_frames(root, "train", size, cfg["train_items"])
        te = load_frames(root, cfg["eval_split"], size, cfg["test_items"])
        scale = tuple(cfg["crop_scale"]) if cfg.get("crop_scale") else None
        train, test = FrameTensors(*tr, crop=tuple(cfg["crop"]), scale=scale), FrameTensors(*te)
    else:
        tr = load_patches(root, "train", cfg["patch"], cfg["train_frames"])
        te = load_patches(root, cfg["eval_split"], cfg["patch"], cfg["test_frames"])
        train, test = PatchTensors(*tr, augment=True), PatchTensors(*te)
    return train, test, test[0][0][None].clone()


def baseline(name: str, cfg: dict[str, Any], data: tuple[Any, Any, torch.Tensor], cache: Cache) -> tuple[Any, float]:
    """The trained baseline (from the cache when its weights are there) and its training seconds."""
    from safetensors.torch import load_model, save_model

    model = build(name, seed=cfg["seed"])
    path = cache.weights(name, fingerprint(name, cfg, TRAIN_KEYS))
    sidecar = path.with_suffix(".json")  # how long the training took, for the reported compute time
    if path.exists() and not cache.fresh:
        load_model(model, str(path))
        log(f"  {name}: baseline weights from {path}")
        seconds = json.loads(sidecar.read_text())["train_seconds"] if sidecar.exists() else 0.0
        return model.eval(), float(seconds)
    task = build_task(MODEL_TASK[name], **_task_options(MODEL_TASK[name], cfg))
    t0 = time.perf_counter()
    log(f"  {name}: training the baseline, {cfg['base_steps']} steps of batch {cfg['batch_size']}")
    model = train_baseline(model, task, data[0], cfg, log)
    seconds = time.perf_counter() - t0
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_model(model, str(tmp))
    with atomic_path(sidecar) as tmp:
        tmp.write_text(json.dumps({"train_seconds": round(seconds, 1)}))
    return model, seconds


def _task_options(task: str, cfg: dict[str, Any]) -> dict[str, Any]:
    if task != "segmentation":
        return {}
    return {"num_classes": 11, "ignore_index": 11, "kd_mode": cfg.get("seg_kd", "pixel")}


def run_model(name: str, args: argparse.Namespace, cache: Cache, data_cache: dict) -> None:
    task_name = MODEL_TASK[name]
    cfg = model_config(name, args)
    fp_base = fingerprint(name, cfg, BASE_KEYS)
    fps = {m: fingerprint(name, cfg, method=m) for m in args.method_names}
    todo = [m for m in args.method_names if cache.get(name, m, fps[m]) is None]
    if cache.get(name, "baseline", fp_base) is not None and not todo:
        log(f"{name}: all rows cached")
        return
    task, (train, test, example), model, train_s = _prepare(name, cfg, args, cache, data_cache)
    base = measure(model, task, test, example, batch_sizes=())
    brow = cache.get(name, "baseline", fp_base)
    if brow is None:
        base.latency_ms, _ = paired_latency(model, None, example, cfg["latency_rounds"])
        brow = make_row(name, task_name, "baseline", base, base, task.primary_metric, base_latency=base.latency_ms,
                        fingerprint=fp_base,
                        seconds=round(train_s, 1), eval_split=cfg["eval_split"],
                        config={k: cfg[k] for k in BASE_KEYS if k in cfg})
        cache.put(brow)
    log(f"  {name} baseline: {task.primary_metric} {base.metric:.2f}, {base.macs / 1e6:.1f} M MACs, "
        f"{base.params / 1e6:.3f} M params, {brow['latency_ms_bs1']:.2f} / {brow['latency_ms_bs8']:.2f} ms")
    for method in todo:
        log(f"  {name}: {method} ...")
        row = run_method(method, name, task_name, model, base, task, train, test, example, cfg, log)
        row.update(fingerprint=fps[method], config=cfg)
        cache.put(row)
        shown = "failed: " + row["error"] if row["error"] else \
            f"{row['metric']:.2f} at {row['macs']:.3f} MACs, {row['params']:.3f} params"
        log(f"  {name} {method}: {shown} ({row['seconds']:.0f} s)")
        write_outputs(args, cache)


def _prepare(name: str, cfg: dict[str, Any], args: argparse.Namespace, cache: Cache,
             data_cache: dict) -> tuple[Any, tuple[Any, Any, torch.Tensor], Any, float]:
    """``(task, (train, test, example), trained baseline, its training seconds)`` of one model."""
    task_name = MODEL_TASK[name]
    key = (task_name, json.dumps({k: cfg.get(k) for k in DATA_KEYS}))
    if key not in data_cache:
        data_cache[key] = load_data(task_name, cfg, args.data)
    train, test, example = data_cache[key]
    log(f"{name} ({task_name}): {len(train)} train / {len(test)} test samples, input {tuple(example.shape)}")
    task = build_task(task_name, **_task_options(task_name, cfg))
    model, train_s = baseline(name, cfg, data_cache[key], cache)
    return task, data_cache[key], model, train_s


def retime_model(name: str, args: argparse.Namespace, cache: Cache, data_cache: dict) -> None:
    """Re-time the latency of ``name``'s current rows alone (``camvid_retime``); other fields stay."""
    rows = [r for r in current_rows(args, cache) if r["model"] == name]
    if all(r.get("latency_alone") or r.get("error") for r in rows):
        log(f"{name}: no row to re-time")
        return
    cfg = model_config(name, args)
    task, (train, test, example), model, _ = _prepare(name, cfg, args, cache, data_cache)
    base_macs = count(model.eval(), example)[0]  # the counter behind every row's MACs; no evaluation needed
    for row in retime_rows(rows, model, base_macs, task, train, test, example, cfg, log, args.retime_rounds):
        cache.put(row)


def current_rows(args: argparse.Namespace, cache: Cache) -> list[dict[str, Any]]:
    """Cached rows whose fingerprint matches today's configuration, in table order."""
    names = list(dict.fromkeys([*args.model_names, *(m for m in MODEL_TASK if (m.endswith("-tiny")) == args.quick)]))
    rows = []
    for name in names:
        cfg = model_config(name, args)
        for method in METHODS:
            fp = fingerprint(name, cfg, BASE_KEYS) if method == "baseline" else fingerprint(name, cfg, method=method)
            r = cache.get(name, method, fp)
            if r is not None:
                rows.append(r)
    compressed = {r["model"] for r in rows if r["method"] != "baseline"}
    return [r for r in rows if r["model"] in compressed]  # a model with only its baseline row is not a result


def write_outputs(args: argparse.Namespace, cache: Cache) -> list[dict[str, Any]]:
    rows = current_rows(args, cache)
    if not rows:
        return rows
    out = args.out_dir
    with atomic_path(out / "camvid.json") as tmp:
        tmp.write_text(json.dumps(rows, indent=1) + "\n")
    seconds = sum(r.get("seconds") or 0.0 for r in rows)
    setup = _setup_lines(rows, args)
    command = "OMP_NUM_THREADS=1 python benchmarks/camvid.py" + (" --quick" if args.quick else "")
    command += f" --models {args.models}" if args.models else ""
    command += "".join(f" --set {k}={json.dumps(v, separators=(',', ':'))}" for k, v in args.overrides.items())
    target = model_config(rows[0]["model"], args)["macs"]
    info = {"setup": setup, "command": command, "minutes": seconds / 60, "notes": NOTES, "target": target}
    with atomic_path(out / "camvid.md") as tmp:
        tmp.write_text(camvid_report.markdown(rows, info))
    camvid_report.plot(rows, out / "camvid.png")
    return rows


def _setup_lines(rows: list[dict[str, Any]], args: argparse.Namespace) -> list[str]:
    lines = []
    for name in dict.fromkeys(r["model"] for r in rows):
        cfg = model_config(name, args)
        base = next((r for r in rows if r["model"] == name and r["method"] == "baseline"), None)
        size = (f"{base['macs_abs'] / 1e6:.1f} M MACs, {base['params_abs'] / 1e6:.3f} M params" if base else "")
        kd = f", {cfg['seg_kd']}-wise KD" if MODEL_TASK[name] == "segmentation" else ""
        data = (f"frames {cfg['size'][0]}x{cfg['size'][1]}, train crops {cfg['crop'][0]}x{cfg['crop'][1]}"
                if MODEL_TASK[name] == "segmentation" else f"{cfg['patch']}x{cfg['patch']} patches")
        if cfg.get("crop_scale"):
            data += f" (window {cfg['crop_scale'][0]}-{cfg['crop_scale'][1]}x the crop, resized: scale jitter)"
        lines.append(f"- `{name}`: {DESCRIPTIONS.get(name.removesuffix('-tiny'), '')}; {size}; {data}; baseline "
                     f"{cfg['base_steps']} steps of batch {cfg['batch_size']} (lr {cfg['base_lr']}); compression "
                     f"{cfg['prune_steps']} x {cfg['interval']} pruning steps ({cfg['score_batches']} scored batches "
                     f"each) + {cfg['ft_steps']} fine-tuning steps (lr {cfg['ft_lr']}), KD alpha {cfg['alpha']}, "
                     f"temperature {cfg['temperature'] or 'task default'}{kd}, target {cfg['macs']:.0%} MACs.")
    return lines


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    global LOG_PATH
    args = parse_args(argv)
    torch.set_num_threads(1)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    LOG_PATH = args.out_dir / "camvid.log"
    log(f"models {args.model_names}, methods {args.method_names}, overrides {args.overrides}, cache {args.cache_dir}")
    cache = Cache(args.cache_dir, args.fresh)
    data_cache: dict = {}
    for name in args.model_names:
        (retime_model if args.retime else run_model)(name, args, cache, data_cache)
    rows = write_outputs(args, cache)
    for v in camvid_report.verdicts(rows):
        log(v)
    log(f"wrote {args.out_dir / 'camvid.json'}, camvid.md and camvid.png ({len(rows)} rows)")
    return rows


if __name__ == "__main__":
    main()
