"""``cpd eval``: metrics of a model on a dataset split (in-process; one real process for errors).

The success path through a real process is in test_cli_run.py (``cpd eval`` on the
folder ``cpd run`` wrote, against the metric in its report).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_process import one_error, run_all
from torch.utils.data import DataLoader, Subset

import cpd
from cpd.cli.main import main
from cpd.data import build_dataset
from cpd.io import load, open_model, save_pruned
from cpd.tasks import build_task
from cpd.train.evaluate import evaluate

CAMVID = Path("/work/shared/data/camvid")


def _json(capsys: pytest.CaptureFixture[str], args: list[str]) -> dict:
    assert main(args) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pruned tiny CNN (fixed weights: a saved folder) for 3-channel 16x16 digits."""
    torch.manual_seed(0)
    loaded = open_model("py:cli_models:tiny_cnn")
    result = cpd.prune(loaded.model, loaded.example_inputs(), ratio=0.25)
    return save_pruned(tmp_path_factory.mktemp("eval") / "cnn", result.model, result.plan,
                       loaded.source, loaded.inputs)


def test_eval_matches_a_direct_evaluation(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = "digits?size=16&channels=3"
    out = _json(capsys, ["eval", str(folder), "--data", data, "--limit", "100", "--batch-size", "32", "--json"])
    val = Subset(build_dataset("digits", split="val", size=16, channels=3), range(100))
    task = build_task("classification")
    expected = evaluate(load(folder), DataLoader(val, batch_size=50), task, torch.device("cpu"))
    assert out["metrics"] == pytest.approx(expected)
    assert (out["images"], out["task"], out["primary_metric"]) == (100, "classification", "top1")
    assert main(["eval", str(folder), "--data", data, "--split", "train", "--limit", "8"]) == 0
    table = capsys.readouterr().out
    assert "top1 (primary)" in table and "split train (8 images)" in table


@pytest.mark.skipif(not (CAMVID / "test.txt").is_file(), reason="CamVid not available")
def test_segmentation_on_camvid(capsys: pytest.CaptureFixture[str]) -> None:
    model = "py:cli_seg_models:tiny_segnet"
    out = _json(capsys, ["eval", model, "--data", f"camvid:{CAMVID}?max_items=3", "--split", "test", "--json"])
    assert out["task"] == "segmentation" and out["primary_metric"] == "miou"
    assert len(out["metrics"]["per_class_iou"]) == 11 and 0.0 <= out["metrics"]["pixel_acc"] <= 100.0
    data = build_dataset("camvid", CAMVID, "test", max_items=3)
    task = build_task("segmentation", num_classes=11, ignore_index=11)
    expected = evaluate(open_model(model).model, DataLoader(data, batch_size=3), task, torch.device("cpu"))
    assert out["metrics"]["miou"] == pytest.approx(expected["miou"])
    assert main(["eval", "py:cli_models:tiny_cnn?num_classes=11", "--data",
                 f"camvid:{CAMVID}?max_items=1", "--split", "test"]) == 2
    assert "segmentation needs per-pixel logits (B, C, h, w)" in capsys.readouterr().err


@pytest.mark.parametrize("args,needle", [
    (["--data", "digits?size=16&channels=3", "--split", "holdout"], "holdout"),
    (["--data", "digitz"], "unknown dataset 'digitz'"),
    (["--data", "digits?colour=1"], "does not take option(s) colour"),
    (["--data", "digits?size=16&channels=3", "--task", "detection"], "invalid choice: 'detection'"),
])
def test_errors(folder: Path, args: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", str(folder), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cpd: error: ") and needle in err[0]


def test_errors_in_a_process(tmp_path: Path) -> None:
    results = run_all({
        "bad_root": ["eval", "py:cli_models:tiny_cnn", "--data", "imagefolder:./no/such/folder"],
        "classes": ["eval", "py:cli_models:tiny_cnn?num_classes=3", "--data", "digits?size=16&channels=3"],
    }, tmp_path)
    assert "--data imagefolder:./no/such/folder: imagefolder: root folder no/such/folder does not exist" \
        in one_error(results["bad_root"])
    assert "the model predicts 3 classes but --data digits?size=16&channels=3 has 10" \
        in one_error(results["classes"])
