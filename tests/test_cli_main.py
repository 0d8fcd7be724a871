"""The CLI in-process: help on every subcommand, data-driven pruning, exit codes.

The ``py:cli_models:...`` source imports ``tests/cli_models.py``, which pytest's
rootdir import mode has put on ``sys.path``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cpd.cli.main import main

CNN = "py:cli_models:tiny_cnn"


def _one_error(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cpd: error: "), captured.err
    return lines[0]


@pytest.mark.parametrize("command,flags", [
    ("comb", ["--input-shape", "--json", "--all", "--ignore"]),
    ("prune", ["--ratio", "--macs", "--params", "--latency", "--latency-batch-size", "--latency-tol",
               "--threads", "--importance", "--ignore", "--round-to", "--allocation", "--head-dim",
               "--data", "--batches", "--batch-size", "--out", "--json"]),
    ("run", ["--set", "--out", "--example", "--check", "--threads"]),
    ("eval", ["--data", "--split", "--task", "--batch-size", "--limit", "--threads", "--json"]),
    ("report", ["--json"]),
    ("bench", ["--batch-sizes", "--onnx", "--threads", "--warmup", "--repeats", "--max-seconds", "--rounds",
               "--json"]),
    ("export", ["--out", "--opset", "--static-batch", "--rtol", "--atol"]),
])
def test_help_has_flags_and_examples(command: str, flags: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"cpd {command} " in out and "--debug" in out
    for flag in flags:
        assert flag in out


def test_top_level_help_and_no_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for word in ("demo", "run", "comb", "prune", "bench", "export", "eval", "report", "hf:MODEL_TYPE", "timm:NAME", "torchvision:NAME",
                 "py:package.module:factory"):
        assert word in out
    assert main([]) == 2
    assert "required: COMMAND" in _one_error(capsys)
    assert main(["distill", CNN]) == 2
    assert "invalid choice: 'distill'" in _one_error(capsys)


def test_prune_with_data(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    args = ["prune", CNN, "--ratio", "0.5", "--importance", "taylor", "--data", "digits?size=16&channels=3",
            "--batches", "2", "--batch-size", "8", "--json", "--out", str(tmp_path / "m")]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["groups_pruned"] == 2 and summary["channels_removed"] > 0
    plan = json.loads((tmp_path / "m" / "plan.json").read_text())
    assert plan["meta"]["importance"] == "taylor"


def test_prune_uniform_allocation(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["prune", CNN, "--macs", "0.6", "--allocation", "uniform", "--json", "--out", str(tmp_path / "m")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["macs"][1] <= 0.6 * summary["macs"][0]
    plan = json.loads((tmp_path / "m" / "plan.json").read_text())
    # tiny_cnn: groups of 8 and 16 channels; uniform removes the same fraction of both
    removed = {g: 1 - len(k) / plan["sizes"][g] for g, k in plan["keep"].items()}
    assert len(removed) == 2 and max(removed.values()) - min(removed.values()) <= 1 / 8


def test_comb_json_and_ignore(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["comb", CNN, "--json", "--ignore", "block.0"]) == 0
    groups = json.loads(capsys.readouterr().out)["groups"]
    assert [g["prunable"] for g in groups if "block.1" in g["modules"]] == [False]


@pytest.mark.parametrize("args,code,needle", [
    (["prune", CNN, "--ratio", "0.3", "--importance", "hessian"], 2, "--importance hessian scores channels "
     "from gradients on data: pass --data"),
    (["prune", CNN, "--ratio", "0.3", "--data", "digits"], 2, "--data is only used by the data-driven"),
    (["prune", CNN, "--ratio", "0.3", "--importance", "obd", "--data", "mnist"], 2, "unknown dataset 'mnist'"),
    (["prune", CNN, "--ratio", "0.3", "--importance", "obd", "--data", "digits?sise=16"], 2,
     "does not take option(s) sise"),
    (["prune", CNN, "--ratio", "1.5"], 2, "ratio must be in [0, 1)"),
    (["prune", CNN, "--ratio", "x"], 2, "argument --ratio: expected a number"),
    (["prune", CNN], 2, "one of the arguments --ratio --macs --params --latency is required"),
    (["prune", CNN, "--ratio", "0.3", "--macs", "0.5"], 2, "not allowed with argument"),
    (["prune", CNN, "--ratio", "0.3", "--ignore", "nope"], 2, "'nope' is not a module"),
    (["prune", CNN, "--ratio", "0.3", "--round-to", "0"], 2, "expected a positive integer"),
    (["prune", CNN, "--ratio", "0.3", "--allocation", "uniform"], 2, "searches a macs or params target"),
    (["prune", CNN, "--macs", "0.5", "--allocation", "even"], 2, "invalid choice: 'even'"),
    (["bench", CNN, "--batch-sizes", "1,0"], 2, "expected a positive integer, got '0'"),
    (["bench", CNN, "--threads", "two"], 2, "argument --threads"),
    (["export", CNN], 2, "required: --out"),
    (["comb", CNN, "--input-shape", "1,3"], 1, "RuntimeError"),
    (["comb", "py:cli_models:not_a_model"], 2, "returned str, not a torch.nn.Module"),
    (["comb", "hf:"], 2, "names nothing after 'hf:'"),
])
def test_errors(args: list[str], code: int, needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == code
    assert needle in _one_error(capsys)


def test_out_is_checked_before_pruning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    assert main(["prune", CNN, "--ratio", "0.3", "--out", str(tmp_path)]) == 2
    assert "refusing to replace" in _one_error(capsys)
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_missing_optional_package_is_a_failure(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("cpd")  # always there; the skip below is the real condition
    import importlib.util

    if importlib.util.find_spec("timm") is not None:
        pytest.skip("timm is installed")
    assert main(["comb", "timm:resnet18"]) == 1
    assert "pip install timm" in _one_error(capsys)


def test_debug_shows_the_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["comb", CNN, "--input-shape", "1,1,16,16", "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("cpd: error: ")
    assert main(["--debug", "comb", "nope:x"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_bench_compares_models(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prune", CNN, "--ratio", "0.5", "--out", str(tmp_path / "half"), "--json"]) == 0
    capsys.readouterr()
    fast = ["--batch-sizes", "1,2", "--repeats", "3", "--warmup", "1", "--threads", "1", "--json"]
    assert main(["bench", CNN, str(tmp_path / "half"), "--rounds", "1", *fast]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["baseline"] == CNN and [m["model"] for m in report["models"]] == [CNN, str(tmp_path / "half")]
    assert report["rounds"] == 1
    base, pruned = report["models"]
    assert base["speedup"] == [pytest.approx(1.0)] * 2
    for r, s in zip(pruned["results"], pruned["speedup"]):
        ref = next(b for b in base["results"] if b["batch_size"] == r["batch_size"])
        assert s == pytest.approx(ref["median_ms"] / r["median_ms"])
    assert pruned["macs"] < base["macs"]


def test_prune_latency_target(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prune", CNN, "--latency", "0.7", "--latency-batch-size", "4", "--threads", "1", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    lat = summary["latency"]
    assert (lat["target"], lat["batch_size"], lat["threads"]) == (0.7, 4, 1)
    assert 0 < lat["fraction"] < 1 and lat["ms"][1] < lat["ms"][0]
    assert summary["macs"][1] < summary["macs"][0]
    assert main(["prune", CNN, "--ratio", "0.3", "--latency-batch-size", "4"]) == 2
    assert "--latency-batch-size only applies with --latency F" in _one_error(capsys)
    assert main(["prune", CNN, "--latency", "0"]) == 2
    assert "latency is a fraction of the original and must be in (0, 1]" in _one_error(capsys)
