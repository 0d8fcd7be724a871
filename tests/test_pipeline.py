"""The full pipeline on real data (digits), with a budget small enough for CI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

import cpd
from cpd.data import build_dataset
from cpd.io import load
from cpd.pipeline.demo import run_demo
from cpd.tasks import build_task
from cpd.train.evaluate import evaluate


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("demo")
    res = run_demo(out, teacher_steps=120, steps=2, interval=6, score_batches=3,
                   finetune_steps=30, progress=False)
    return out, res


def test_demo_prunes_to_target_and_reports(demo: tuple[Path, object]) -> None:
    out, res = demo
    s = json.loads((out / "report.json").read_text())
    assert 0.4 <= s["macs_fraction"] <= 0.5  # macs=0.5 target, never above
    assert s["params_fraction"] < 0.8
    assert s["baseline"]["metric"] > 60  # the teacher really learned digits
    assert len(s["history"]) == 2 and all("metric" in h for h in s["history"])
    for f in ("report.md", "metric_vs_macs.png", "widths.png", "latency.png", "model/plan.json"):
        assert (out / f).exists(), f
    assert s["pruned"]["latency_ms"]["bs1"] > 0


def test_saved_model_reproduces_reported_accuracy(demo: tuple[Path, object]) -> None:
    out, res = demo
    model = load(out / "model")
    assert cpd.count(model, torch.zeros(1, 1, 16, 16)) == cpd.count(res.model, torch.zeros(1, 1, 16, 16))
    val = build_dataset("digits", split="val", size=16)
    task = build_task("classification")
    acc = evaluate(model, DataLoader(val, batch_size=64), task, torch.device("cpu"))[task.primary_metric]
    assert acc == pytest.approx(json.loads((out / "report.json").read_text())["pruned"]["metric"])


def test_distillation_log_has_kd(demo: tuple[Path, object]) -> None:
    out, _ = demo
    rows = [json.loads(line) for line in (out / "run" / "log.jsonl").read_text().splitlines()]
    assert rows and all("kd" in r["loss"] for r in rows if "loss" in r)
