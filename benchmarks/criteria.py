"""Criteria benchmark: which importance criterion prunes a trained model best, one-shot?

A ResNet-style CNN (``criteria_models.PatchResNet``: 4 stages, BN, residuals, 1x1
projection shortcuts) is trained for a few CPU minutes on CamVid scene patches
(``cpd.data.build_dataset("camvid_patches", ...)``: 32x32 patches labelled by their
majority class, 11 classes; train split). It is then pruned one-shot, without any
fine-tuning, to each MACs target (default 70 % and 50 % of the original) with every
criterion, and the test-split top-1 accuracy of the pruned model is reported.

Criteria (``cpd.scores``):

* ``hessian``: the CPD criterion, per-sample empirical Fisher of the channel mask
  (``per_sample=True``, the library default);
* ``hessian-batch``: the same with the squared mini-batch gradient
  (``per_sample=False``, what the authors' code ships);
* ``obd`` (Hutchinson Hessian diagonal), ``taylor`` (first order);
* ``magnitude`` (L1) and ``random`` (mean over ``--seeds`` seeds).

Every data-driven criterion sees the same scoring batches (``--score-batches`` batches
of ``--score-batch-size`` train patches, no augmentation, fixed seed) and
``F.cross_entropy``. Selection is ``cpd.prune``'s: global ranking, bisection on the
measured MACs (see ``criteria_prune``; one comb and one scoring pass per criterion,
shared by all targets; the run checks that it keeps the same channels as
``cpd.prune(importance="hessian")``).

Scoring overhead: for each scored batch the run times one ``accumulate`` call of each
data-driven criterion and one training step (forward + backward + AdamW step, BN in
training mode) on the same batch, interleaved so that load on the machine hits both
alike; ``overhead_x`` is the median over batches of accumulate / training step.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/criteria.py --variants       # full run (~14 min, 2 shared cores)
    OMP_NUM_THREADS=1 python benchmarks/criteria.py --quick --out-dir /tmp/crit   # smoke run (~20 s)
    nohup env OMP_NUM_THREADS=1 python benchmarks/criteria.py --variants > benchmarks/results/criteria.log 2>&1 &

Writes ``criteria.json`` (a list of rows; pruning rows have ``model, task, criterion,
macs_target, macs, metric``; overhead rows have ``criterion, overhead_x``) and
``criteria.md`` to ``--out-dir`` (default ``benchmarks/results``; ``--quick`` defaults
to a temporary folder so a smoke run never overwrites the real results).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from criteria_data import PatchTensors, load_patches  # noqa: E402
from criteria_hookfisher import HookFisher  # noqa: E402
from criteria_models import DESCRIPTIONS, build_model  # noqa: E402
from criteria_prune import Scorer, check_against_prune, same_weights, snapshot  # noqa: E402

from cpd.tasks import build_task  # noqa: E402
from cpd.train import TrainConfig, Trainer  # noqa: E402
from cpd.train.evaluate import evaluate  # noqa: E402

RESULTS = HERE / "results"
CAMVID = Path(os.environ.get("CPD_CAMVID", "/work/shared/data/camvid"))
TASK = "camvid_patches"
ROW_KEYS = ("model", "task", "criterion", "macs_target", "macs", "metric")
OVERHEAD_KEYS = ("model", "task", "criterion", "overhead_x")

#: label -> (registry name, options). Order = table order.
DATA_CRITERIA: dict[str, tuple[str, dict[str, Any]]] = {
    "hessian": ("hessian", {"per_sample": True}),
    "hessian-batch": ("hessian", {"per_sample": False}),
    "obd": ("obd", {}),
    "taylor": ("taylor", {}),
}
FREE_CRITERIA = ("magnitude", "random")
#: overhead row of the one-backward prototype of per-sample hessian (criteria_hookfisher)
HOOK_LABEL = "hessian (1-backward prototype)"

FULL = dict(model="resnet", train_frames=None, test_frames=None, steps=1200, batch_size=64, lr=2e-3,
            warmup=60, score_batches=16, score_batch_size=32, seeds=5, targets=(0.7, 0.5))
QUICK = dict(model="resnet-tiny", train_frames=12, test_frames=6, steps=20, batch_size=32, lr=2e-3,
             warmup=2, score_batches=2, score_batch_size=8, seeds=2, targets=(0.7, 0.5))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny smoke run (tiny model, few frames/steps)")
    p.add_argument("--out-dir", type=Path, default=None, help="where criteria.json / criteria.md go")
    p.add_argument("--data", type=Path, default=CAMVID, help="CamVid root")
    p.add_argument("--model", default=None, help="resnet | resnet-tiny")
    p.add_argument("--steps", type=int, default=None, help="training steps of the base model")
    p.add_argument("--batch-size", type=int, default=None, help="training batch size")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--score-batches", type=int, default=None, help="scoring batches per criterion")
    p.add_argument("--score-batch-size", type=int, default=None)
    p.add_argument("--seeds", type=int, default=None, help="random-criterion seeds (mean reported)")
    p.add_argument("--targets", default=None, help="comma-separated MACs fractions, e.g. 0.7,0.5")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="load the trained base model from here if it exists, else save it there")
    p.add_argument("--no-check", action="store_true", help="skip the cpd.prune consistency check")
    p.add_argument("--variants", action="store_true",
                   help="also run the investigation variants (other rankings; see criteria_variants)")
    args = p.parse_args(argv)
    cfg = dict(QUICK if args.quick else FULL)
    for k in ("model", "steps", "batch_size", "lr", "score_batches", "score_batch_size", "seeds"):
        if getattr(args, k) is not None:
            cfg[k] = getattr(args, k)
    if args.targets:
        cfg["targets"] = tuple(float(t) for t in args.targets.split(","))
    args.cfg = cfg
    if args.out_dir is None:
        args.out_dir = Path(tempfile.gettempdir()) / "cpd_criteria_quick" if args.quick else RESULTS
    return args


# ------------------------------------------------------------------------------ stages
def train_base(cfg: dict[str, Any], train: PatchTensors, checkpoint: Path | None) -> tuple[torch.nn.Module, float]:
    model = build_model(cfg["model"], num_classes=11, seed=0)
    if checkpoint is not None and checkpoint.exists():
        model.load_state_dict(torch.load(checkpoint, map_location="cpu"))
        log(f"loaded base model from {checkpoint}")
        return model.eval(), 0.0
    config = TrainConfig(max_steps=cfg["steps"], batch_size=cfg["batch_size"], optimizer="adamw", lr=cfg["lr"],
                         weight_decay=0.05, warmup_steps=cfg["warmup"], schedule="cosine", progress=False,
                         alpha=0.0, seed=0, log_every=10**9, amp="none")
    trainer = Trainer(model, build_task("classification"), train, None, config=config, device="cpu")
    t0 = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - t0
    model = trainer.model.eval()
    if checkpoint is not None:
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), checkpoint)
    return model, seconds


def make_eval(test: PatchTensors):
    task = build_task("classification")
    loader = DataLoader(test, batch_size=256, shuffle=False)

    def run(model: torch.nn.Module) -> float:
        return float(evaluate(model, loader, task, torch.device("cpu"))["top1"])

    return run


@torch.no_grad()
def recalibrated(model: torch.nn.Module, batches: list) -> torch.nn.Module:
    """A copy whose BN running statistics are re-estimated on ``batches`` (no weight changes)."""
    model = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches
    model.train()
    for x, _ in batches:
        model(x)
    return model.eval()


def scoring_batches(images: torch.Tensor, labels: torch.Tensor, n: int, bs: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1234)
    idx = torch.randperm(len(labels), generator=g)[: n * bs]
    return [(images[idx[i * bs:(i + 1) * bs]].contiguous(), labels[idx[i * bs:(i + 1) * bs]].contiguous())
            for i in range(n)]


def score_all(scorer: Scorer, batches: list, model: torch.nn.Module,
              hooks: bool = True) -> tuple[dict[str, dict], dict[str, list[float]]]:
    """Scores of every data-driven criterion, and per-batch times (ms) incl. the training step.

    With ``hooks`` the one-backward prototype of the per-sample ``hessian``
    (``criteria_hookfisher``) is scored and timed too, under :data:`HOOK_LABEL`.
    """
    crits: dict[str, Any] = {label: scorer.criterion(name, **opts) for label, (name, opts) in DATA_CRITERIA.items()}
    if hooks:
        proto = HookFisher(model, scorer.groups)
        crits[HOOK_LABEL] = proto
    times: dict[str, list[float]] = {label: [] for label in ["train_step", *crits]}
    student = copy.deepcopy(model).train()
    opt = torch.optim.AdamW(student.parameters(), lr=1e-4, weight_decay=0.05)

    def train_step(x: torch.Tensor, y: torch.Tensor) -> None:
        loss = F.cross_entropy(student(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    train_step(*batches[0])  # allocate the optimizer state outside the timing
    for b, (x, y) in enumerate(batches):
        t0 = time.perf_counter()
        train_step(x, y)
        times["train_step"].append((time.perf_counter() - t0) * 1e3)
        for label, crit in crits.items():
            t0 = time.perf_counter()
            if label == HOOK_LABEL:
                crit.accumulate(model, x, y)
            else:
                crit.accumulate(model, x, y, F.cross_entropy)
            times[label].append((time.perf_counter() - t0) * 1e3)
        log(f"  scored batch {b + 1}/{len(batches)}: " +
            ", ".join(f"{k} {v[-1]:.0f} ms" for k, v in times.items()))
    return {label: crit.scores() for label, crit in crits.items()}, times


def overhead_rows(times: dict[str, list[float]], base: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    step = times["train_step"]
    for label in [k for k in times if k != "train_step"]:
        ratios = [a / s for a, s in zip(times[label], step)]
        rows.append({**base, "criterion": label, "overhead_x": round(statistics.median(ratios), 3),
                     "accumulate_ms": round(statistics.median(times[label]), 2),
                     "train_step_ms": round(statistics.median(step), 2),
                     "overhead_x_mean": round(sum(times[label]) / sum(step), 3),
                     "batches": len(step)})
    return rows


# ------------------------------------------------------------------------------ output
def _cell(r: dict[str, Any] | None, key: str) -> str:
    if r is None or key not in r:
        return "—"
    std = f" ± {r[key + '_std']:.1f}" if key + "_std" in r else ""
    return f"{r[key]:.1f}{std}"


def markdown(rows: list[dict[str, Any]], info: dict[str, Any]) -> str:
    prune_rows = [r for r in rows if "macs_target" in r]
    over_rows = [r for r in rows if "overhead_x" in r]
    rho_rows = [r for r in rows if "spearman" in r]
    base = next(r for r in prune_rows if r["criterion"] == "unpruned")
    targets = sorted({r["macs_target"] for r in prune_rows if r["criterion"] != "unpruned"}, reverse=True)
    labels = list(dict.fromkeys(r["criterion"] for r in prune_rows if r["criterion"] != "unpruned"))
    by = {(r["criterion"], r["macs_target"]): r for r in prune_rows}
    lines = [
        "# Criteria benchmark: one-shot pruning without fine-tuning",
        "",
        f"Model `{info['model']}` (`benchmarks/criteria_models.py`: {DESCRIPTIONS.get(info['model'], '')}; "
        f"{info['macs_m']:.1f} M MACs, {info['params_m']:.2f} M params per 32x32 patch), trained "
        f"{info['train_steps']} steps (batch {info['batch_size']}, AdamW, {info['train_s']:.0f} s) on CamVid "
        f"scene patches (`camvid_patches`, {info['train_n']} train patches). Metric: top-1 accuracy (%) on "
        f"{info['test_n']} test patches; unpruned **{base['metric']:.2f}**. Each criterion prunes the trained "
        "model once to each MACs target (`cpd.prune` selection: global ranking, bisection on measured MACs); "
        f"scoring data: {info['score_batches']} batches of {info['score_batch_size']} train patches, the same "
        f"for every data-driven criterion. `random`: mean ± std over {info['seeds']} seeds.",
        "",
        "*after pruning*: the pruned model as `cpd.prune` returns it (no fine-tuning). *+BN recal*: the same "
        "model after re-estimating the BN running statistics on the scoring batches (forward passes only, "
        "no weight update): not part of the issue's metric, shown because it explains the first column.",
        "",
        "| criterion | " + " | ".join(f"{t:.0%} MACs: after pruning | +BN recal | achieved MACs" for t in targets) + " |",
        "|---|" + "---:|---:|---:|" * len(targets),
    ]
    for label in labels:
        cells = []
        for t in targets:
            r = by.get((label, t))
            cells += [_cell(r, "metric"), _cell(r, "metric_bn_recal"), f"{r['macs']:.1%}" if r else "—"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", f"Scoring overhead: one `accumulate` call per scored batch of {info['score_batch_size']} versus "
              "one training step (forward + backward + AdamW step, BN in training mode) on the same batch, "
              "interleaved; median over the scored batches. Issue target: at most 1.5x.", "",
              "| criterion | accumulate (ms) | training step (ms) | overhead (x) | <= 1.5x |", "|---|---:|---:|---:|---|"]
    for r in over_rows:
        ok = "yes" if r["overhead_x"] <= 1.5 else "**no**"
        lines.append(f"| {r['criterion']} | {r['accumulate_ms']:.1f} | {r['train_step_ms']:.1f} | "
                     f"{r['overhead_x']:.2f} | {ok} |")
    if rho_rows:
        lines += ["", "Single-channel check: Spearman correlation between a criterion's ranking key and the "
                  "measured loss increase when that one channel is removed (on the scoring data; "
                  f"{rho_rows[0]['channels']} channels, {rho_rows[0]['per_group']} per group). "
                  "*raw*: the score; *group mean*: score / its group's mean (what `cpd.prune` ranks by); "
                  "*per MAC*: score / MACs of one channel, against loss increase / MACs.", "",
                  "| criterion | raw vs dL | group mean vs dL | per MAC vs dL/MAC | group mean vs dL/MAC |",
                  "|---|---:|---:|---:|---:|"]
        for r in rho_rows:
            s = r["spearman"]
            lines.append(f"| {r['criterion']} | {s['raw']:.2f} | {s['group_mean']:.2f} | {s['per_mac']:.2f} | "
                         f"{s['group_mean_vs_per_mac']:.2f} |")
    if info.get("notes"):
        lines += ["", "Notes:", "", *[f"- {n}" for n in info["notes"]]]
    lines += ["", f"Reproduce: `{info['command']}` ({info['total_s'] / 60:.1f} min on a shared 2-core CPU "
              "machine, one thread).", ""]
    return "\n".join(lines)


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def summarize(label: str, results: list[tuple[float, float, Any]], t: float, common: dict[str, Any]) -> dict[str, Any]:
    """One row from ``[(metric, metric_bn_recal, Pruned), ...]`` (several for random seeds)."""
    accs = [a for a, _, _ in results]
    recal = [b for _, b, _ in results]
    row = {**common, "criterion": label, "macs_target": t,
           "macs": round(sum(p.macs for _, _, p in results) / len(results), 4),
           "metric": round(sum(accs) / len(accs), 3), "metric_name": "top1",
           "metric_bn_recal": round(sum(recal) / len(recal), 3),
           "params": round(sum(p.params for _, _, p in results) / len(results), 4),
           "rolled_back": sorted({g for _, _, p in results for g in p.rolled_back})}
    if len(results) > 1:
        row.update(metric_std=round(statistics.stdev(accs), 3), metric_seeds=[round(a, 3) for a in accs],
                   metric_bn_recal_std=round(statistics.stdev(recal), 3),
                   metric_bn_recal_seeds=[round(a, 3) for a in recal],
                   macs_max=round(max(p.macs for _, _, p in results), 4))
    return row


def verdicts(rows: list[dict[str, Any]], targets: tuple[float, ...]) -> list[str]:
    out = []
    for t in targets:
        by = {r["criterion"]: r for r in rows if r.get("macs_target") == t}
        for key, what in (("metric", "after pruning"), ("metric_bn_recal", "after BN recalibration")):
            h, m, r = by["hessian"][key], by["magnitude"][key], by["random"][key]
            ok = h > m and h > r
            out.append(f"{t:.0%} MACs, {what}: hessian {h:.2f} vs magnitude {m:.2f}, random {r:.2f} "
                       f"(± {by['random'].get(key + '_std', 0.0):.2f}) -> hessian beats both: "
                       f"{'yes' if ok else '**no**'}.")
    return out


# ------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    cfg = args.cfg
    torch.set_num_threads(1)
    t_start = time.perf_counter()
    log(f"config: {cfg}")

    tr_x, tr_y = load_patches(args.data, "train", max_frames=cfg["train_frames"])
    te_x, te_y = load_patches(args.data, "test", max_frames=cfg["test_frames"])
    log(f"data: {len(tr_y)} train / {len(te_y)} test patches")
    model, train_s = train_base(cfg, PatchTensors(tr_x, tr_y, augment=True), args.checkpoint)
    model.eval()
    run_eval = make_eval(PatchTensors(te_x, te_y))
    base_acc = run_eval(model)
    log(f"base model trained in {train_s:.0f} s: top-1 {base_acc:.2f} %")

    example = tr_x[:1].clone()
    scorer = Scorer(model, example)
    batches = scoring_batches(tr_x, tr_y, cfg["score_batches"], cfg["score_batch_size"])
    snap = snapshot(model)
    common = {"model": cfg["model"], "task": TASK}
    rows: list[dict[str, Any]] = [{**common, "criterion": "unpruned", "macs_target": 1.0, "macs": 1.0,
                                   "metric": round(base_acc, 3), "metric_name": "top1",
                                   "metric_bn_recal": round(run_eval(recalibrated(model, batches)), 3),
                                   "params": 1.0}]

    log(f"scoring {len(DATA_CRITERIA)} data-driven criteria (+ the one-backward prototype) on {len(batches)} batches")
    scores, times = score_all(scorer, batches, model)
    assert same_weights(model, snap), "scoring changed the model"
    proto = scores.pop(HOOK_LABEL)
    proto_err = max(float((proto[g] - scores["hessian"][g]).abs().max() / scores["hessian"][g].abs().max().clamp_min(1e-30))
                    for g in proto)

    def prune_eval(sc: dict, label: str, **kw: Any) -> dict[float, tuple[float, float, Any]]:
        out = {}
        for t in cfg["targets"]:
            p = scorer.prune(sc, t, label, **kw)
            out[t] = (run_eval(p.model), run_eval(recalibrated(p.model, batches)), p)
        return out

    def add(label: str, per_target: dict[float, list[tuple[float, float, Any]]], **extra: Any) -> None:
        for t, results in per_target.items():
            row = {**summarize(label, results, t, common), **extra}
            rows.append(row)
            log(f"  {label:16s} @ {t:.0%}: top-1 {row['metric']:6.2f} %  (+BN recal {row['metric_bn_recal']:6.2f} %)"
                f"  macs {row['macs']:.3f}")

    for label in DATA_CRITERIA:
        add(label, {t: [v] for t, v in prune_eval(scores[label], label).items()})
    mag = scorer.criterion("magnitude").scores()
    add("magnitude", {t: [v] for t, v in prune_eval(mag, "magnitude").items()})
    per_seed: dict[float, list[Any]] = {t: [] for t in cfg["targets"]}
    for seed in range(cfg["seeds"]):
        for t, v in prune_eval(scorer.criterion("random", seed=seed).scores(), f"random{seed}").items():
            per_seed[t].append(v)
    add("random", per_seed, seeds=list(range(cfg["seeds"])))

    notes = verdicts(rows, cfg["targets"])
    over = overhead_rows(times, common)
    for r in over:
        if r["criterion"] == HOOK_LABEL:
            r["max_rel_diff_vs_hessian"] = proto_err
    notes.append(f"`{HOOK_LABEL}` (`benchmarks/criteria_hookfisher.py`) computes the per-sample hessian scores "
                 "from activations x activation-gradients of one batched backward; its scores differ from "
                 f"`cpd`'s per-sample hessian by at most {proto_err:.1e} (relative), so the per-sample form "
                 "can meet the overhead target; cpd's vmap engine materialises per-sample weight gradients.")
    if args.variants:
        from criteria_variants import run_variants  # noqa: PLC0415
        var_rows, var_notes = run_variants(scorer, {**scores, "magnitude": mag}, batches, cfg, prune_eval,
                                           summarize, common, log)
        rows += var_rows
        notes += var_notes
    rows += over
    if not args.no_check:
        checked = check_against_prune(scorer, batches, F.cross_entropy, cfg["targets"][0])
        log(f"cpd.prune(importance='hessian') keeps the same channels as the benchmark path: {checked}")
        notes.append(f"Consistency: `cpd.prune(macs={cfg['targets'][0]}, importance=\"hessian\")` on the same "
                     f"batches keeps {'the same' if checked else '**different**'} channels as the benchmark's "
                     "score-once path.")
    total_s = time.perf_counter() - t_start
    macs0, params0 = scorer.base_macs, scorer.base_params
    given = argv if argv is not None else sys.argv[1:]
    cmd = " ".join(["OMP_NUM_THREADS=1 python benchmarks/criteria.py", *given])
    info = dict(model=cfg["model"], macs_m=macs0 / 1e6, params_m=params0 / 1e6, train_steps=cfg["steps"],
                batch_size=cfg["batch_size"], train_n=len(tr_y), test_n=len(te_y), train_s=train_s,
                score_batches=len(batches), score_batch_size=cfg["score_batch_size"], seeds=cfg["seeds"],
                command=cmd, total_s=total_s, notes=notes)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out_dir / "criteria.json", json.dumps(rows, indent=1) + "\n")
    write_atomic(args.out_dir / "criteria.md", markdown(rows, info))
    for n in notes:
        log(n)
    log(f"wrote {args.out_dir / 'criteria.json'} and criteria.md in {total_s / 60:.1f} min")
    return rows


if __name__ == "__main__":
    main()
