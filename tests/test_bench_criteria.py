"""Smoke test of the criteria benchmark (benchmarks/criteria.py --quick).

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

TOL = 0.01  # macs may not exceed the target by more than this (fraction of the original)


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.skipif(not (criteria.CAMVID / "train.txt").exists(), reason="CamVid data not available")
def test_quick_run_writes_valid_results(tmp_path, one_thread):
    rows = criteria.main(["--quick", "--variants", "--out-dir", str(tmp_path)])
    on_disk = json.loads((tmp_path / "criteria.json").read_text())
    assert on_disk == json.loads(json.dumps(rows))
    md = (tmp_path / "criteria.md").read_text()

    prune_rows = [r for r in on_disk if "macs_target" in r]
    over_rows = [r for r in on_disk if "overhead_x" in r]
    rho_rows = [r for r in on_disk if "spearman" in r]
    assert len(prune_rows) + len(over_rows) + len(rho_rows) == len(on_disk)
    for r in prune_rows:
        assert set(criteria.ROW_KEYS) <= set(r), r
        assert r["task"] == criteria.TASK and isinstance(r["model"], str)
        assert 0.0 < r["macs"] <= r["macs_target"] + TOL, r
        assert r.get("macs_max", r["macs"]) <= r["macs_target"] + TOL, r
        assert 0.0 <= r["metric"] <= 100.0 and 0.0 <= r["metric_bn_recal"] <= 100.0
    targets = criteria.QUICK["targets"]
    for crit in ("hessian", "hessian-batch", "obd", "taylor", "magnitude", "random"):
        got = sorted(r["macs_target"] for r in prune_rows if r["criterion"] == crit)
        assert got == sorted(targets), crit
        assert f"| {crit} |" in md
    rnd = [r for r in prune_rows if r["criterion"] == "random"]
    assert all(len(r["metric_seeds"]) == criteria.QUICK["seeds"] for r in rnd)
    assert any(r["criterion"] == "unpruned" and r["macs"] == 1.0 for r in prune_rows)

    assert {r["criterion"] for r in over_rows} == {*criteria.DATA_CRITERIA, criteria.HOOK_LABEL}
    proto = next(r for r in over_rows if r["criterion"] == criteria.HOOK_LABEL)
    assert proto["max_rel_diff_vs_hessian"] < 1e-3  # same scores up to float32 round-off
    assert any(r["criterion"] == "hessian (rank per MAC)" for r in prune_rows)
    assert all(-1.0 <= v <= 1.0 for r in rho_rows for v in r["spearman"].values())
    for r in over_rows:
        assert set(criteria.OVERHEAD_KEYS) <= set(r), r
        assert r["overhead_x"] > 0 and r["accumulate_ms"] > 0 and r["train_step_ms"] > 0


def test_scoring_batches_are_fixed():
    x, y = torch.randn(100, 3, 4, 4), torch.arange(100)
    a = criteria.scoring_batches(x, y, 3, 8)
    b = criteria.scoring_batches(x, y, 3, 8)
    assert len(a) == 3 and all(xb.shape == (8, 3, 4, 4) for xb, _ in a)
    assert all(torch.equal(ya, yb) for (_, ya), (_, yb) in zip(a, b))
    assert len({int(v) for _, yb in a for v in yb}) == 24  # no sample twice
