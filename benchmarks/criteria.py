"""Criteria benchmark: which importance criterion prunes a trained model best, one-shot?

A ResNet-style CNN (``criteria_models.PatchResNet``: 4 stages, BN, residuals, 1x1
projection shortcuts) is trained for a few CPU minutes on CamVid scene patches
(``cpd.data.build_dataset("camvid_patches", ...)``: 32x32 patches labelled by their
majority class, 11 classes; train split). It is then pruned one-shot, without any
fine-tuning, to each MACs target (default 70 % and 50 % of the original) with every
criterion, and the test-split top-1 of the pruned model is reported: as
``cpd.prune(..., recalibrate=False)`` returns it, and with BatchNorm statistics
re-estimated on the scoring batches (what ``cpd.prune`` returns by default when given
data).

Criteria (``cpd.scores``):

* ``hessian``: the CPD criterion, per-sample empirical Fisher of the channel masks
  (the library default), selected as ``cpd.prune`` does: greedily under the whole
  empirical Fisher (``cpd/plan/select_fisher.py``);
* ``hessian-batch``: the same with the squared mini-batch gradient
  (``per_sample=False``, what the authors' code ships);
* ``obd`` (Hutchinson Hessian diagonal), ``taylor`` (first order);
* ``magnitude`` (L1) and ``random`` (mean over ``--seeds`` seeds).

Every criterion sees the same scoring batches (``--score-batches`` batches of
``--score-batch-size`` train patches, no augmentation, fixed seed) and
``F.cross_entropy``; one scoring pass per criterion serves every target
(``criteria_prune``; the run checks that it keeps the same channels as
``cpd.prune(importance="hessian")``). ``--variants`` adds the investigation:
rankings of the diagonal scores and iterative re-scoring (``criteria_variants``),
stale BatchNorm statistics (``criteria_bn``) and single-channel fidelity
(``criteria_fidelity``). Scoring overhead is measured by ``criteria_overhead.py``.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/criteria.py --variants --checkpoint /tmp/crit/base.pt   # full run
    OMP_NUM_THREADS=1 python benchmarks/criteria.py --quick --out-dir /tmp/crit   # smoke run (~30 s)

Writes ``criteria.json`` (a list of rows; pruning rows have ``model, task, criterion,
macs_target, macs, metric``) and ``criteria.md`` to ``--out-dir`` (default
``benchmarks/results``; ``--quick`` defaults to a temporary folder so a smoke run
never overwrites the real results).
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
import torch.nn.functional as F  # noqa: E402

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from criteria_data import PatchTensors, load_patches  # noqa: E402
from criteria_prune import Scorer, check_against_prune, recalibrated, same_weights, snapshot  # noqa: E402
from criteria_report import markdown, summarize, verdicts, write_atomic  # noqa: E402
from criteria_setup import CAMVID, FULL, QUICK, TASK, log, make_eval, scoring_batches, train_base  # noqa: E402

RESULTS = HERE / "results"
ROW_KEYS = ("model", "task", "criterion", "macs_target", "macs", "metric")

#: label -> (registry name, options). Order = table order.
DATA_CRITERIA: dict[str, tuple[str, dict[str, Any]]] = {
    "hessian": ("hessian", {"per_sample": True}),
    "hessian-batch": ("hessian", {"per_sample": False}),
    "obd": ("obd", {}),
    "taylor": ("taylor", {}),
}
FREE_CRITERIA = ("magnitude", "random")
INTERACTIONS = "whole empirical Fisher, greedy"
GROUP_MEAN = "score / group mean"


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
    p.add_argument("--resamples", type=int, default=None,
                   help="with --variants: further disjoint scoring sets for the hessian selections")
    p.add_argument("--targets", default=None, help="comma-separated MACs fractions, e.g. 0.7,0.5")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="load the trained base model from here if it exists, else save it there")
    p.add_argument("--no-check", action="store_true", help="skip the cpd.prune consistency check")
    p.add_argument("--variants", action="store_true",
                   help="also run the investigation (rankings, iterative steps, BN statistics, fidelity)")
    args = p.parse_args(argv)
    cfg = dict(QUICK if args.quick else FULL)
    for k in ("model", "steps", "batch_size", "lr", "score_batches", "score_batch_size", "seeds", "resamples"):
        if getattr(args, k) is not None:
            cfg[k] = getattr(args, k)
    if args.targets:
        cfg["targets"] = tuple(float(t) for t in args.targets.split(","))
    args.cfg = cfg
    if args.out_dir is None:
        args.out_dir = Path(tempfile.gettempdir()) / "cpd_criteria_quick" if args.quick else RESULTS
    return args


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
    batches = scoring_batches(tr_x, tr_y, cfg["score_batches"], cfg["score_batch_size"])

    def evaluate_with(data: list) -> Any:
        def evaluate(m: torch.nn.Module) -> tuple[float, float]:
            return run_eval(m), run_eval(recalibrated(m, data))
        return evaluate

    evaluate = evaluate_with(batches)

    common = {"model": cfg["model"], "task": TASK}

    def summ(label: str, results: list, t: float) -> dict[str, Any]:
        return summarize(label, results, t, common)

    base = evaluate(model)
    log(f"base model (trained in {train_s or 0:.0f} s): top-1 {base[0]:.2f} % ({base[1]:.2f} % with BN re-estimated)")
    rows: list[dict[str, Any]] = [{**common, "criterion": "unpruned", "macs_target": 1.0, "macs": 1.0,
                                   "metric": round(base[0], 3), "metric_name": "top1",
                                   "metric_bn_recal": round(base[1], 3), "params": 1.0}]

    scorer = Scorer(model, tr_x[:1].clone())
    snap = snapshot(model)
    scores: dict[str, dict] = {}
    hessian_rows: dict[str, dict] = {}
    for label, (name, opts) in DATA_CRITERIA.items():
        crit = scorer.criterion(name, **opts)
        t0 = time.perf_counter()
        for x, y in batches:
            crit.accumulate(model, x, y, F.cross_entropy)
        scores[label] = crit.scores()
        if name == "hessian":
            hessian_rows[label] = crit.rows()
        log(f"scored {label} on {len(batches)} batches in {time.perf_counter() - t0:.1f} s")
    assert same_weights(model, snap), "scoring changed the model"
    scores["magnitude"] = scorer.criterion("magnitude").scores()

    pruned: dict[tuple[str, float], Any] = {}
    for label in [*DATA_CRITERIA, "magnitude"]:
        for t in cfg["targets"]:
            p = scorer.prune(scores[label], t, label, rows=hessian_rows.get(label))
            pruned[(label, t)] = p
            row = {**summ(label, [(*evaluate(p.model), p)], t),
                   "selection": INTERACTIONS if label in hessian_rows else GROUP_MEAN}
            rows.append(row)
            log(f"  {label:14s} @ {t:.0%}: top-1 {row['metric']:6.2f} % (BN re-estimated {row['metric_bn_recal']:6.2f} %)"
                f"  macs {row['macs']:.3f}")
    for t in cfg["targets"]:
        seeds = [scorer.prune(scorer.criterion("random", seed=s).scores(), t, f"random{s}") for s in range(cfg["seeds"])]
        row = {**summ("random", [(*evaluate(p.model), p) for p in seeds], t), "selection": GROUP_MEAN,
               "seeds": list(range(cfg["seeds"]))}
        rows.append(row)
        log(f"  {'random':14s} @ {t:.0%}: top-1 {row['metric']:6.2f} % (BN re-estimated {row['metric_bn_recal']:6.2f} %)")
    notes = verdicts(rows, cfg["targets"])
    findings: list[str] = []
    if args.variants:
        findings = run_investigation(scorer, scores, batches, (tr_x, tr_y), cfg, pruned, evaluate_with, run_eval,
                                     summ, rows, common)
    if not args.no_check:
        checked = check_against_prune(scorer, batches, F.cross_entropy, cfg["targets"][0])
        log(f"cpd.prune(importance='hessian') keeps the same channels as the benchmark path: {checked}")
        notes.append(f"Consistency: `cpd.prune(macs={cfg['targets'][0]}, importance=\"hessian\")` on the same "
                     f"batches keeps {'the same' if checked else '**different**'} channels as the benchmark's "
                     "score-once path.")
    total_s = time.perf_counter() - t_start
    given = argv if argv is not None else sys.argv[1:]
    info = dict(model=cfg["model"], macs_m=scorer.base_macs / 1e6, params_m=scorer.base_params / 1e6,
                train_steps=cfg["steps"], batch_size=cfg["batch_size"], train_n=len(tr_y), test_n=len(te_y),
                train_s=train_s, score_batches=len(batches), score_batch_size=cfg["score_batch_size"],
                seeds=cfg["seeds"], command=" ".join(["OMP_NUM_THREADS=1 python benchmarks/criteria.py", *given]),
                total_s=total_s, notes=notes, findings=findings)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out_dir / "criteria.json", json.dumps(rows, indent=1) + "\n")
    write_atomic(args.out_dir / "criteria.md", markdown(rows, info))
    for n in notes + findings:
        log(n)
    log(f"wrote {args.out_dir / 'criteria.json'} and criteria.md in {total_s / 60:.1f} min")
    return rows


def run_investigation(scorer: Scorer, scores: dict[str, dict], batches: list, train: tuple[Any, Any],
                      cfg: dict[str, Any], pruned: dict[tuple[str, float], Any], evaluate_with: Any, run_eval: Any,
                      summ: Any, rows: list[dict[str, Any]], common: dict[str, Any]) -> list[str]:
    """Append the variant, BN and fidelity rows to ``rows``; return data-driven findings."""
    from criteria_bn import bn_fixes  # noqa: PLC0415 - only with --variants
    from criteria_fidelity import fidelity_rows  # noqa: PLC0415
    from criteria_variants import (  # noqa: PLC0415
        channel_costs,
        iterative_variants,
        ranking_variants,
        resample_variants,
    )

    targets = cfg["targets"]
    evaluate = evaluate_with(batches)
    log("variants: rankings of the diagonal hessian scores")
    var_rows = ranking_variants(scorer, scores["hessian"], targets, evaluate, summ, log)
    log(f"variants: the main and {cfg['resamples']} more scoring sets")
    sets = [batches] + [scoring_batches(*train, cfg["score_batches"], cfg["score_batch_size"], set_index=i + 1)
                        for i in range(cfg["resamples"])]
    var_rows += resample_variants(scorer, sets, targets, evaluate_with, summ, log)
    log("variants: iterative re-scoring")
    var_rows += iterative_variants(scorer, batches, targets, cfg["iter_steps"], evaluate, summ, log)
    rows += var_rows
    log("stale BatchNorm statistics")
    before = "hessian, diagonal / group mean (before)"
    diag = {t: scorer.prune(scores["hessian"], t, before) for t in targets}  # no rows: diagonal ranking
    for label, get in (("hessian", lambda t: pruned[("hessian", t)]), (before, lambda t: diag[t]),
                       ("magnitude", lambda t: pruned[("magnitude", t)])):
        for t in targets:
            p = get(t)
            fixes = bn_fixes(scorer, p.model, p.keep, batches, run_eval)
            rows.append({**common, "criterion": label, "target": t, "macs": round(p.macs, 4),
                         "bn_fix": {k: round(v, 3) for k, v in fixes.items()}})
            log(f"  {label:42s} @ {t:.0%}: " + ", ".join(f"{k} {v:.1f}" for k, v in fixes.items()))
    log("single-channel fidelity")
    rnd = scorer.criterion("random", seed=0).scores()
    rows += fidelity_rows(scorer, {**scores, "random": rnd}, batches, channel_costs(scorer), common)
    out = []
    by = {(r["criterion"], r["macs_target"]): r for r in rows if "macs_target" in r}
    k = len(sets)

    def pm(r: dict[str, Any], key: str) -> str:
        return f"{r[key]:.1f} ± {r.get(key + '_std', 0.0):.1f}"

    for t in targets:
        new, old = by[("hessian", t)], by[(before, t)]
        rn, ro = by[(f"hessian, {k} scoring sets", t)], by[(f"{before}, {k} scoring sets", t)]
        out.append(f"{t:.0%} MACs: interaction-aware hessian {new['metric']:.1f} (BN re-estimated "
                   f"{new['metric_bn_recal']:.1f}) vs diagonal hessian / group mean {old['metric']:.1f} "
                   f"({old['metric_bn_recal']:.1f}); over {k} scoring sets {pm(rn, 'metric')} "
                   f"({pm(rn, 'metric_bn_recal')}) vs {pm(ro, 'metric')} ({pm(ro, 'metric_bn_recal')}).")
    return out


if __name__ == "__main__":
    main()
