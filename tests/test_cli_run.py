"""``cpd run`` end to end in a real process: examples/digits-demo.yaml with tiny step counts.

One run (pretrain, 2 pruning steps with Hessian scores on the KD loss, fine-tuning,
ONNX export with the baseline comparison, report), then ``cpd eval`` and ``cpd report``
on what it wrote; the error paths run alongside it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_process import ROOT, ok, one_error, run_all

from cpd.cli.main import main
from cpd.config import load_config
from cpd.io import load_folder

DEMO = str(ROOT / "examples" / "digits-demo.yaml")
TINY = ["--set", "pretrain.steps=40", "--set", "prune.steps=2", "--set", "prune.interval=4",
        "--set", "prune.score_batches=2", "--set", "train.max_steps=12", "--set", "train.log_every=4",
        "--set", "report.latency_batch_sizes=[1]", "--threads", "1"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    work = tmp_path_factory.mktemp("run")
    (work / "typo.yaml").write_text(Path(DEMO).read_text().replace("  lr: 0.001", "  lrr: 0.001"))
    first = run_all({
        "run": ["run", DEMO, *TINY, "--out", "out"],
        "err_key": ["run", "typo.yaml"],
        "err_set": ["run", DEMO, "--set", "train.lr"],
        "err_missing": ["run", "nope.yaml"],
        "err_data": ["run", DEMO, "--set", "data.name=camvid", "--set", "data.root=./no/camvid",
                     "--set", "data.options={}"],
    }, work)
    ok(first["run"])
    second = run_all({"eval": ["eval", "out/model", "--data", "digits?size=16", "--json"],
                      "report": ["report", "out"]}, work)
    return {**first, **second}, work


def test_run_prunes_distils_and_reports(runs) -> None:
    results, work = runs
    out = ok(results["run"])
    assert "top1" in out and "onnxruntime bs1 (ms)" in out and "wrote out/" in out
    report = json.loads((work / "out" / "report.json").read_text())
    assert 0.4 <= report["macs_fraction"] <= 0.5  # macs=0.5 target, never above
    assert [h["step"] for h in report["history"]] == [1.0, 2.0]
    assert report["baseline"]["metric"] > 50  # pretraining really learned digits
    assert set(report["onnx"]["latency_ms"]) == set(report["onnx"]["baseline_latency_ms"]) == {"bs1"}
    logged = [json.loads(line) for line in (work / "out" / "run" / "log.jsonl").read_text().splitlines()]
    assert any("kd" in row.get("loss", {}) for row in logged)  # distillation, not plain fine-tuning
    for name in ("report.md", "metric_vs_macs.png", "widths.png", "latency.png", "baseline.onnx"):
        assert (work / "out" / name).is_file(), name


def test_saved_config_reloads_to_what_ran(runs) -> None:
    _, work = runs
    config = load_config(work / "out" / "config.yaml")
    assert config.to_dict() == json.loads((work / "out" / "report.json").read_text())["config"]
    assert (config.train.max_steps, config.prune.interval, config.pretrain.steps) == (12, 4, 40)


def test_model_folder_and_onnx_match(runs) -> None:
    pytest.importorskip("onnxruntime")
    from cpd.report.onnx_export import check_onnx

    _, work = runs
    loaded = load_folder(work / "out" / "model")
    assert loaded.inputs.shape == (1, 1, 16, 16)
    assert check_onnx(work / "out" / "model.onnx", loaded.model, loaded.example_inputs(), batch_sizes=[3]) < 1e-4


def test_eval_reproduces_the_reported_metric(runs) -> None:
    results, work = runs
    evaluated = json.loads(ok(results["eval"]))
    report = json.loads((work / "out" / "report.json").read_text())
    assert evaluated["metrics"]["top1"] == pytest.approx(report["pruned"]["metric"])
    assert evaluated["images"] == 359 and evaluated["split"] == "val"


def test_report_prints_the_run(runs) -> None:
    results, work = runs
    out = ok(results["report"])
    report = json.loads((work / "out" / "report.json").read_text())
    assert f"{report['pruned']['macs']:,}" in out and "rewrote out/" in out


@pytest.mark.parametrize("name,needle", [
    ("err_key", "typo.yaml: unknown key train.lrr; did you mean train.lr?"),
    ("err_set", "bad --set 'train.lr': expected KEY=VALUE"),
    ("err_missing", "config file nope.yaml does not exist"),
    ("err_data", "data: camvid: root folder no/camvid does not exist"),
])
def test_errors_are_one_line(runs, name: str, needle: str) -> None:
    assert needle in one_error(runs[0][name], 2)


def test_example_and_check_in_process(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["run", "--example"]) == 0
    assert capsys.readouterr().out == (ROOT / "examples" / "cpd-run.yaml").read_text()
    assert main(["run", DEMO, "--check", "--set", "prune.macs=0.3", "--out", str(tmp_path / "x")]) == 0
    resolved = capsys.readouterr().out
    assert "macs: 0.3" in resolved and f"out: {tmp_path / 'x'}" in resolved
    assert not (tmp_path / "x").exists()  # --check runs nothing
    assert main(["run"]) == 2
    assert "give a CONFIG.yaml" in capsys.readouterr().err


def test_budget_and_classes_are_checked_before_training(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    torch.manual_seed(0)
    base = ["run", DEMO, "--out", str(tmp_path / "o"), "--set", "export.onnx=false",
            "--set", "export.compare=false"]
    assert main([*base, "--set", "train.max_steps=50"]) == 2  # 4 x 25 pruning steps need 100
    assert "end before the last pruning step" in capsys.readouterr().err
    assert main([*base, "--set", "model.source=py:cpd.pipeline.demo:demo_cnn?num_classes=3"]) == 2
    assert "the model predicts 3 classes but data digits has 10" in capsys.readouterr().err
    # a mistyped feature layer fails before the (pre)training, with the closest names
    assert main([*base, "--set", "pretrain.steps=200", "--set", 'train.feature_layers=["6.body.44"]']) == 2
    assert "train.feature_layers: '6.body.44' is not a module" in capsys.readouterr().err
    assert not (tmp_path / "o" / "run").exists()
