"""Every subcommand on an ``hf:`` string and on a folder holding a pruned HF ViT.

Run in-process through :func:`cpd.cli.main.main` (the same code the ``cpd`` script
runs), because a fresh process would pay ~5 s to import transformers each time;
test_cli_subprocess.py covers the process boundary itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cpd.cli.main import main
from cpd.io import load_folder

pytest.importorskip("transformers")
pytestmark = pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")

TINY_VIT = ("hf:vit?hidden_size=32&num_hidden_layers=2&num_attention_heads=2"
            "&intermediate_size=64&image_size=32&patch_size=8")
FAST = ["--repeats", "3", "--warmup", "1"]


@pytest.fixture(scope="module")
def vit_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hf") / "vit-pruned"
    assert main(["prune", TINY_VIT, "--macs", "0.6", "--round-to", "2", "--out", str(out), "--json"]) == 0
    return out


def test_prune_hf_string_saves_a_loadable_folder(vit_folder: Path) -> None:
    meta = json.loads((vit_folder / "cpd.json").read_text())
    assert meta["source"] == TINY_VIT
    assert meta["input"] == {"shape": [1, 3, 32, 32], "form": "kwarg", "name": "pixel_values"}
    macs = meta["counts"]["macs"]
    assert macs[1] <= 0.6 * macs[0]
    loaded = load_folder(vit_folder)
    with torch.no_grad():
        assert loaded.model(**loaded.example_inputs()).logits.shape == (1, 2)


def test_prune_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prune", TINY_VIT, "--ratio", "0.5", "--head-dim"]) == 0
    out = capsys.readouterr().out
    assert "MACs" in out and "params" in out and "groups pruned:" in out and "rolled back" in out


@pytest.mark.parametrize("which", ["string", "folder"])
def test_comb(which: str, vit_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = TINY_VIT if which == "string" else str(vit_folder)
    assert main(["comb", model, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"heads", "channel"} <= {g["role"] for g in result["groups"]}
    assert main(["comb", model]) == 0
    out = capsys.readouterr().out
    assert "prunable" in out and "heads" in out and "frozen" in out


@pytest.mark.parametrize("which", ["string", "folder"])
def test_bench(which: str, vit_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = TINY_VIT if which == "string" else str(vit_folder)
    extra = ["--onnx"] if which == "folder" else []
    assert main(["bench", model, "--batch-sizes", "1,2", "--json", *extra, *FAST]) == 0
    report = json.loads(capsys.readouterr().out)
    backends = [(r["backend"], r["batch_size"]) for r in report["results"]]
    expected = [("torch", 1), ("torch", 2)] + ([("onnxruntime", 1), ("onnxruntime", 2)] if extra else [])
    assert backends == expected


@pytest.mark.parametrize("which", ["string", "folder"])
def test_export(which: str, vit_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ort = pytest.importorskip("onnxruntime")
    model = TINY_VIT if which == "string" else str(vit_folder)
    assert main(["export", model, "--out", str(tmp_path / "vit.onnx")]) == 0
    assert "outputs match PyTorch on onnxruntime at batch 1 and 2" in capsys.readouterr().out
    session = ort.InferenceSession(str(tmp_path / "vit.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["pixel_values"]
    assert [p.name for p in tmp_path.iterdir()] == ["vit.onnx"]


def test_hf_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["comb", "hf:vit?hiden_size=3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "did you mean hidden_size" in err[0]
    assert main(["comb", TINY_VIT, "--input-shape", "1,3,48,48"]) in (1, 2)  # ViT fixes its size
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cpd: error: ")
