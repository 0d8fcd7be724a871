"""Every subcommand through a real process: ``cpd ...`` and ``python -m cpd.cli.main ...``.

A process costs seconds (importing torch; transformers adds ~5 s more), so these
use the tiny ``py:`` CNN, all processes start at once (a few at a time) from one
module fixture, and each test checks one result. The ``hf:`` strings and ViT
folders go through the same ``main()`` in-process in test_cli_hf.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

import cpd
from cpd.io import load, load_folder, open_model, save_pruned

TESTS = Path(__file__).resolve().parent
CNN = "py:cli_models:tiny_cnn"
SCRIPT = Path(sys.executable).with_name("cpd")
FAST = ["--repeats", "3", "--warmup", "1"]


def _command(args: list[str], script: bool) -> list[str]:
    if script and SCRIPT.is_file():
        return [str(SCRIPT), *args]
    return [sys.executable, "-m", "cpd.cli.main", *args]


def _save(source: str, folder: Path, ratio: float) -> Path:
    loaded = open_model(source)
    result = cpd.prune(loaded.model, loaded.example_inputs(), ratio=ratio)
    return save_pruned(folder, result.model, result.plan, loaded.source, loaded.inputs,
                       macs=result.macs, params=result.params)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, subprocess.CompletedProcess[str]], Path]:
    work = tmp_path_factory.mktemp("cli")
    cnn = _save(CNN, work / "cnn", 0.5)
    cases: dict[str, tuple[list[str], bool]] = {
        "comb_folder": (["comb", str(cnn), "--all"], True),
        "prune_py": (["prune", CNN, "--ratio", "0.5", "--out", "cnn-out"], False),
        "bench_py_onnx": (["bench", CNN, str(cnn), "--batch-sizes", "1,2", "--onnx", "--threads", "1", *FAST],
                          True),
        "export_folder": (["export", str(cnn), "--out", "cnn.onnx"], False),
        "err_model_string": (["comb", "resnet50"], True),
        "err_path": (["bench", "./no/such/folder"], False),
        "err_shape": (["export", CNN, "--input-shape", "1,3,sixteen", "--out", "x.onnx"], True),
        "err_option": (["prune", CNN, "--ratio", "0.5", "--importance", "biggest"], False),
    }
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}

    def run(args: list[str], script: bool) -> subprocess.CompletedProcess[str]:
        return subprocess.run(_command(args, script), cwd=work, env=env, capture_output=True, text=True,
                              timeout=300)

    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(run, *case) for name, case in cases.items()}
        return {name: f.result() for name, f in futures.items()}, work


def _ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    return r.stdout


def _error(r: subprocess.CompletedProcess[str], code: int) -> str:
    assert r.returncode == code, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cpd: error: "), r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    return lines[0]


def test_comb_folder_table(runs) -> None:
    out = _ok(runs[0]["comb_folder"])
    assert "frozen: model input" in out and "prunable" in out and "stem.0" in out


def test_bench_with_onnx_compares_models(runs) -> None:
    out = _ok(runs[0]["bench_py_onnx"])
    assert out.count("onnxruntime") == 4 and "median ms" in out and "images/s" in out
    rows = [line for line in out.splitlines() if "onnxruntime" in line]
    assert sum("baseline" in r for r in rows) == 2 and all(r.count("x") >= 1 for r in rows)
    assert "speed-up" in out


def test_prune_py_saves_a_folder(runs) -> None:
    results, work = runs
    out = _ok(results["prune_py"])
    assert "MACs" in out and "params" in out and "saved to cnn-out" in out
    meta = json.loads((work / "cnn-out" / "cpd.json").read_text())
    assert meta["source"] == CNN and meta["counts"]["macs"][1] < meta["counts"]["macs"][0]
    with torch.no_grad():
        assert load(work / "cnn-out")(torch.randn(2, 3, 16, 16)).shape == (2, 10)


def test_export_folder(runs) -> None:
    pytest.importorskip("onnxruntime")
    from cpd.report.onnx_export import check_onnx

    results, work = runs
    assert "outputs match PyTorch" in _ok(results["export_folder"])
    loaded = load_folder(work / "cnn")
    assert check_onnx(work / "cnn.onnx", loaded.model, loaded.example_inputs(), batch_sizes=[3]) < 1e-4


@pytest.mark.parametrize("name,code,needle", [
    ("err_model_string", 2, "cannot read model string 'resnet50'"),
    ("err_path", 2, "no such cpd folder: ./no/such/folder"),
    ("err_shape", 2, "bad --input-shape '1,3,sixteen'"),
    ("err_option", 2, "argument --importance: invalid choice: 'biggest'"),
])
def test_errors_are_one_line(runs, name: str, code: int, needle: str) -> None:
    assert needle in _error(runs[0][name], code)
