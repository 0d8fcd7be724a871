"""``cpd report``: re-render a run folder from report.json; print a model folder's numbers.

The run folder is written by :func:`cpd.pipeline.report.write_report` from a real
pruning result (no training: the measured numbers are given), so the test is fast;
test_cli_run.py runs ``cpd report`` on a folder a real ``cpd run`` wrote.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from cli_process import one_error, run_all
from rich.console import Console

import cpd
from cpd.cli.main import main
from cpd.io import open_model
from cpd.pipeline.report import write_report
from cpd.pipeline.run import CPDResult, Measured

PLOTS = ("metric_vs_macs.png", "widths.png", "latency.png")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    loaded = open_model("py:cli_models:tiny_cnn")
    res = cpd.prune(loaded.model, loaded.example_inputs(), ratio=0.5)
    result = CPDResult(res.model, res.plan, Measured(91.25, res.macs[0], res.params[0], {"bs1": 2.0}),
                       Measured(88.5, res.macs[1], res.params[1], {"bs1": 1.25}),
                       [{"step": 1.0, "goal": 0.5, "achieved": 0.49, "metric": 70.0}], "top1", 1.0)
    out = tmp_path_factory.mktemp("report") / "run"
    write_report(out, result, source=loaded.source, example_shape=loaded.inputs, title="tiny run",
                 console=Console(file=io.StringIO()),
                 extra={"onnx": {"file": "model.onnx", "latency_ms": {"bs1": 0.5},
                                 "baseline_latency_ms": {"bs1": 1.0}}})
    return out


def test_run_folder_is_rendered_again(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = json.loads((run_dir / "report.json").read_text())
    for name in ("report.md", *PLOTS):
        (run_dir / name).unlink()
    assert main(["report", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "tiny run" in out and f"{before['pruned']['macs']:,}" in out and "1.60x faster" in out
    assert "onnxruntime bs1 (ms)" in out and "2.00x faster" in out  # 1.0 ms -> 0.5 ms
    assert all((run_dir / name).is_file() for name in PLOTS)
    md = (run_dir / "report.md").read_text()
    assert md.startswith("# tiny run") and "| top1 | 91.25 | 88.50 |" in md and "step 1: goal 0.500" in md
    assert json.loads((run_dir / "report.json").read_text()) == before  # nothing re-measured


def test_run_folder_json(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(run_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads((run_dir / "report.json").read_text())


def test_model_folder_numbers(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    meta = json.loads((run_dir / "model" / "cpd.json").read_text())
    assert main(["report", str(run_dir / "model"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["counts"] == meta["counts"] and info["metrics"] == {"top1": 88.5}
    plan = json.loads((run_dir / "model" / "plan.json").read_text())
    removed = sum(plan["sizes"][g] - len(k) for g, k in plan["keep"].items())
    assert info["plans"][0]["channels_removed"] == removed > 0
    assert main(["report", str(run_dir / "model")]) == 0
    out = capsys.readouterr().out
    assert "pruned from py:cli_models:tiny_cnn" in out and "top1" in out and f"{removed} channels removed" in out


def test_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path)]) == 2
    assert "has neither report.json (a run) nor cpd.json (a model)" in capsys.readouterr().err
    (tmp_path / "report.json").write_text('{"metric": "top1"}')
    assert main(["report", str(tmp_path)]) == 2
    assert "is not a cpd run report: it lacks baseline, pruned, history" in capsys.readouterr().err
    (tmp_path / "report.json").write_text("{")
    assert main(["report", str(tmp_path)]) == 2
    assert "report.json is not valid JSON" in capsys.readouterr().err
    results = run_all({"missing": ["report", "no/such/run"]}, tmp_path)
    assert "no/such/run does not exist" in one_error(results["missing"])
