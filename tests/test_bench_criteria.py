"""Smoke test of the criteria benchmark (benchmarks/criteria.py --quick --variants).

``benchmarks/`` is not a package: its modules are imported by putting that directory
on ``sys.path`` (as the benchmark itself does).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import criteria  # noqa: E402
import criteria_setup  # noqa: E402
from criteria_bn import bn_fixes  # noqa: E402

TOL = 0.01  # macs may not exceed the target by more than this (fraction of the original)


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.skipif(not (criteria_setup.CAMVID / "train.txt").exists(), reason="CamVid data not available")
def test_quick_run_writes_valid_results(tmp_path, one_thread):
    rows = criteria.main(["--quick", "--variants", "--out-dir", str(tmp_path)])
    on_disk = json.loads((tmp_path / "criteria.json").read_text())
    assert on_disk == json.loads(json.dumps(rows))
    md = (tmp_path / "criteria.md").read_text()

    prune_rows = [r for r in on_disk if "macs_target" in r]
    bn_rows = [r for r in on_disk if "bn_fix" in r]
    rho_rows = [r for r in on_disk if "spearman" in r]
    assert len(prune_rows) + len(bn_rows) + len(rho_rows) == len(on_disk)
    for r in prune_rows:
        assert set(criteria.ROW_KEYS) <= set(r), r
        assert r["task"] == criteria_setup.TASK and isinstance(r["model"], str)
        assert 0.0 < r["macs"] <= r["macs_target"] + TOL, r
        assert r.get("macs_max", r["macs"]) <= r["macs_target"] + TOL, r
        assert 0.0 <= r["metric"] <= 100.0 and 0.0 <= r["metric_bn_recal"] <= 100.0
    targets = criteria_setup.QUICK["targets"]
    main = [r for r in prune_rows if "variant" not in r]
    for crit in ("hessian", "hessian-batch", "obd", "taylor", "magnitude", "random"):
        got = sorted(r["macs_target"] for r in main if r["criterion"] == crit)
        assert got == sorted(targets), crit
        assert f"| {crit} |" in md
    assert {r["selection"] for r in main if r["criterion"].startswith("hessian")} == {criteria.INTERACTIONS}
    rnd = [r for r in main if r["criterion"] == "random"]
    assert all(len(r["metric_seeds"]) == criteria_setup.QUICK["seeds"] for r in rnd)
    assert any(r["criterion"] == "unpruned" and r["macs"] == 1.0 for r in prune_rows)
    variants = {r["criterion"] for r in prune_rows if "variant" in r}
    assert "hessian, diagonal / group mean (before)" in variants
    assert {f"hessian, steps={n} (re-scored, no training)" for n in criteria_setup.QUICK["iter_steps"]} <= variants
    assert {r["target"] for r in bn_rows} == set(targets)
    assert all(set(r["bn_fix"]) == {"none", "mean", "var", "both", "recalibrate_bn", "mean_compensation"}
               for r in bn_rows)
    assert all(-1.0 <= v <= 1.0 for r in rho_rows for v in r["spearman"].values())
    assert next(r for r in rho_rows if r["criterion"] == "hessian")["calibration"] > 0
    assert "Consistency" in md and "keeps the same channels" in md


def test_scoring_batches_are_fixed():
    x, y = torch.randn(100, 3, 4, 4), torch.arange(100)
    a = criteria_setup.scoring_batches(x, y, 3, 8)
    b = criteria_setup.scoring_batches(x, y, 3, 8)
    assert len(a) == 3 and all(xb.shape == (8, 3, 4, 4) for xb, _ in a)
    assert all(torch.equal(ya, yb) for (_, ya), (_, yb) in zip(a, b))
    assert len({int(v) for _, yb in a for v in yb}) == 24  # no sample twice


def test_bn_fixes_both_equals_exact_statistics(one_thread):
    """'both' sets every BN to its input's statistics: on the data it was set with, each BN
    then outputs exactly zero-mean, unit-variance (before its affine), layer after layer."""
    from criteria_models import build_model
    from criteria_prune import Scorer

    torch.manual_seed(0)
    model = build_model("resnet-tiny").eval()
    batches = [(torch.randn(8, 3, 32, 32), torch.randint(0, 11, (8,))) for _ in range(2)]
    scorer = Scorer(model, batches[0][0][:1])
    p = scorer.prune(scorer.criterion("magnitude").scores(), 0.6, "magnitude")
    seen: list[float] = []

    def worst_mean(bn: torch.nn.BatchNorm2d, args: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        # largest |per-channel mean| of the input normalised with the running statistics
        z = (args[0] - bn.running_mean[None, :, None, None]) / (bn.running_var[None, :, None, None] + bn.eps).sqrt()
        seen.append(float(z.mean((0, 2, 3)).abs().max()))

    @torch.no_grad()
    def evaluate(m: torch.nn.Module) -> float:
        hooks = [bn.register_forward_hook(worst_mean) for bn in m.modules() if isinstance(bn, torch.nn.BatchNorm2d)]
        m(torch.cat([b[0] for b in batches]))
        for h in hooks:
            h.remove()
        return 0.0

    fixes = bn_fixes(scorer, p.model, p.keep, batches, evaluate)
    assert set(fixes) == {"none", "mean", "var", "both", "recalibrate_bn", "mean_compensation"}
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    both = seen[3 * n_bn:4 * n_bn]  # evaluate order: none, mean, var, both, ...
    assert max(both) < 1e-4 and max(seen[:n_bn]) > 1e-2  # the stale statistics are really off
