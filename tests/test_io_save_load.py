"""save_pruned / load: bit-identical round trips, clear errors, atomic replacement."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import cpd
import cpd.io.save as save_module
from cpd.io import (
    FolderError,
    ModelSourceError,
    WeightsMismatchError,
    load,
    load_folder,
    open_model,
    save_pruned,
)
from cpd.io.sources import LoadedModel

CNN = "py:cli_models:tiny_cnn"
TINY_VIT = ("hf:vit?hidden_size=32&num_hidden_layers=2&num_attention_heads=2"
            "&intermediate_size=64&image_size=32&patch_size=8")


def _logits(model: torch.nn.Module, x: Any) -> torch.Tensor:
    with torch.no_grad():
        out = model(**x) if isinstance(x, dict) else model(x)
    return out.logits if hasattr(out, "logits") else out


def _randomize_bn(model: torch.nn.Module) -> None:
    """Non-trivial running statistics, so that loading them is actually tested."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


def _pruned(source: str, ratio: float = 0.5) -> tuple[LoadedModel, cpd.PruneResult]:
    loaded = open_model(source)
    _randomize_bn(loaded.model)
    return loaded, cpd.prune(loaded.model, loaded.example_inputs(), ratio=ratio)


def _save(folder: Path, loaded: LoadedModel, result: cpd.PruneResult, **kw: Any) -> Path:
    return save_pruned(folder, result.model, result.plan, loaded.source, loaded.inputs.shape,
                       macs=result.macs, params=result.params, **kw)


@pytest.fixture(scope="module")
def cnn_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    loaded, result = _pruned(CNN)
    folder = _save(tmp_path_factory.mktemp("cnn") / "cnn-pruned", loaded, result, metrics={"top1": 0.5})
    return folder, result.model


def test_cnn_round_trip_is_bit_identical(cnn_folder: tuple[Path, torch.nn.Module]) -> None:
    folder, pruned = cnn_folder
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "cpd.json", "model.safetensors", "plan.json"]
    assert [p.name for p in folder.parent.iterdir()] == ["cnn-pruned"]  # no temp folders left
    model = load(folder)
    assert not model.training
    x = torch.randn(4, 3, 16, 16)
    assert torch.equal(_logits(model, x), _logits(pruned.eval(), x))
    for (k, a), (k2, b) in zip(model.state_dict().items(), pruned.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b)
    meta = json.loads((folder / "cpd.json").read_text())
    assert meta["source"] == CNN and meta["format_version"] == 1 and meta["cpd_version"]
    assert meta["input"] == {"shape": [1, 3, 16, 16], "form": "tensor"}
    assert meta["metrics"] == {"top1": 0.5}
    card = (folder / "README.md").read_text()
    assert "| MACs |" in card and "-" in card.split("| MACs |")[1] and "top1" in card


def test_vit_round_trip_is_bit_identical(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    loaded, result = _pruned(TINY_VIT)
    assert result.plan.keep  # something was pruned
    folder = _save(tmp_path / "vit", loaded, result)
    meta = json.loads((folder / "cpd.json").read_text())
    assert meta["input"] == {"shape": [1, 3, 32, 32], "form": "kwarg", "name": "pixel_values"}
    back = load_folder(folder)
    x = {"pixel_values": torch.randn(2, 3, 32, 32)}
    assert torch.equal(_logits(back.model, x), _logits(result.model.eval(), x))
    assert back.source == TINY_VIT and back.inputs.kwarg == "pixel_values"


def test_pruning_a_loaded_folder_again_chains_the_plans(cnn_folder: tuple[Path, torch.nn.Module],
                                                        tmp_path: Path) -> None:
    folder, _ = cnn_folder
    loaded = load_folder(folder)
    result = cpd.prune(loaded.model, loaded.example_inputs(), ratio=0.25)
    again = save_pruned(tmp_path / "again", result.model, result.plan, loaded.source, loaded.inputs,
                        base_plans=loaded.plans)
    assert json.loads((again / "cpd.json").read_text())["plans"] == ["base_plan_0.json", "plan.json"]
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(_logits(load(again), x), _logits(result.model.eval(), x))


def test_weights_that_do_not_match_the_plan(cnn_folder: tuple[Path, torch.nn.Module], tmp_path: Path) -> None:
    folder, _ = cnn_folder
    loaded, other = _pruned(CNN, ratio=0.25)
    wrong = _save(tmp_path / "wrong", loaded, other)
    # The plan of a 50% prune with the weights of a 25% one: shapes differ.
    (wrong / "plan.json").write_text((folder / "plan.json").read_text())
    with pytest.raises(WeightsMismatchError) as e:
        load(wrong)
    assert "\n" not in str(e.value) and "do not match the model the plan builds: shape of" in str(e.value)


def test_missing_and_unexpected_weights(cnn_folder: tuple[Path, torch.nn.Module], tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    folder, _ = cnn_folder
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("cpd.json", "plan.json"):
        (bad / name).write_text((folder / name).read_text())
    meta = json.loads((bad / "cpd.json").read_text())
    del meta["weights_sha256"]  # a hand-edited folder without a checksum
    (bad / "cpd.json").write_text(json.dumps(meta))
    tensors = load_file(folder / "model.safetensors")
    tensors.pop("head.weight")
    tensors["extra.weight"] = torch.zeros(2)
    save_file(tensors, bad / "model.safetensors")
    with pytest.raises(WeightsMismatchError, match="missing head.weight; unexpected extra.weight"):
        load(bad)


def test_plan_for_another_architecture(cnn_folder: tuple[Path, torch.nn.Module], tmp_path: Path) -> None:
    folder, _ = cnn_folder
    other = tmp_path / "other"
    other.mkdir()
    for p in folder.iterdir():
        (other / p.name).write_bytes(p.read_bytes())
    meta = json.loads((other / "cpd.json").read_text())
    meta["source"] = CNN + "?width=16"
    (other / "cpd.json").write_text(json.dumps(meta))
    with pytest.raises(WeightsMismatchError, match="does not fit the model py:cli_models:tiny_cnn"):
        load(other)


def _copy(folder: Path, dest: Path) -> Path:
    dest.mkdir()
    for p in folder.iterdir():
        (dest / p.name).write_bytes(p.read_bytes())
    return dest


def test_corrupt_files(cnn_folder: tuple[Path, torch.nn.Module], tmp_path: Path) -> None:
    folder, _ = cnn_folder
    weights = (folder / "model.safetensors").read_bytes()

    flipped = _copy(folder, tmp_path / "flipped")
    (flipped / "model.safetensors").write_bytes(weights[:-8] + bytes(8))
    with pytest.raises(FolderError, match="corrupt or was modified"):
        load(flipped)

    truncated = _copy(folder, tmp_path / "truncated")
    (truncated / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    meta = json.loads((truncated / "cpd.json").read_text())
    del meta["weights_sha256"]
    (truncated / "cpd.json").write_text(json.dumps(meta))
    with pytest.raises(FolderError, match="is corrupt or not a safetensors file") as e:
        load(truncated)
    assert "\n" not in str(e.value)

    bad_plan = _copy(folder, tmp_path / "bad_plan")
    (bad_plan / "plan.json").write_text('{"version": 1, "keep": ')
    with pytest.raises(FolderError, match="plan.json is not valid JSON"):
        load(bad_plan)

    newer = _copy(folder, tmp_path / "newer")
    meta = json.loads((newer / "cpd.json").read_text())
    meta["format_version"] = 99
    (newer / "cpd.json").write_text(json.dumps(meta))
    with pytest.raises(FolderError, match="format version 99"):
        load(newer)

    escape = _copy(folder, tmp_path / "escape")
    meta = json.loads((escape / "cpd.json").read_text())
    meta["weights"] = "../../etc/passwd"
    (escape / "cpd.json").write_text(json.dumps(meta))
    with pytest.raises(FolderError, match="bad file"):
        load(escape)

    (tmp_path / "missing_plan").mkdir()
    (tmp_path / "missing_plan" / "cpd.json").write_text((folder / "cpd.json").read_text())
    with pytest.raises(FolderError, match="plan.json is missing"):
        load(tmp_path / "missing_plan")


def test_interrupted_save_keeps_the_old_folder(cnn_folder: tuple[Path, torch.nn.Module], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    src, pruned = cnn_folder
    folder = _copy(src, tmp_path / "model")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    loaded, result = _pruned(CNN, ratio=0.25)

    def half_written(model: torch.nn.Module, path: Path) -> None:
        Path(path).write_bytes(b"\x00" * 100)  # part of a file, then the disk "fills up"
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(save_module, "save_weights", half_written)
    with pytest.raises(OSError, match="No space left"):
        _save(folder, loaded, result)
    monkeypatch.undo()

    def card_fails(**kw: Any) -> str:
        raise RuntimeError("crash after the weights and plan were written")

    monkeypatch.setattr(save_module, "model_card", card_fails)
    with pytest.raises(RuntimeError, match="crash after"):
        _save(folder, loaded, result)
    monkeypatch.undo()

    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temporary siblings left
    x = torch.randn(1, 3, 16, 16)
    assert torch.equal(_logits(load(folder), x), _logits(pruned.eval(), x))

    _save(folder, loaded, result)  # a successful save does replace it
    assert torch.equal(_logits(load(folder), x), _logits(result.model.eval(), x))
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_save_refuses_to_clobber_or_misdescribe(tmp_path: Path) -> None:
    loaded, result = _pruned(CNN)
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_bytes(b"meow")
    with pytest.raises(FolderError, match="refusing to replace"):
        _save(foreign, loaded, result)
    assert (foreign / "cat.jpg").read_bytes() == b"meow"
    (tmp_path / "file").write_text("x")
    with pytest.raises(FolderError, match="it is a file"):
        _save(tmp_path / "file", loaded, result)
    with pytest.raises(ModelSourceError, match="must be a model string"):
        save_pruned(tmp_path / "x", result.model, result.plan, str(tmp_path / "some-folder"), (1, 3, 16, 16))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (_save(empty, loaded, result) / "cpd.json").is_file()  # an empty folder is fine


def test_save_counts_when_not_given(tmp_path: Path) -> None:
    loaded, result = _pruned(CNN)
    folder = save_pruned(tmp_path / "m", result.model, result.plan, CNN, (1, 3, 16, 16))
    counts = json.loads((folder / "cpd.json").read_text())["counts"]
    assert counts == {"macs": [None, result.macs[1]], "params": [None, result.params[1]]}


def test_shared_tensors_are_stored_once_and_tied_again(tmp_path: Path) -> None:
    from safetensors import safe_open

    loaded, result = _pruned("py:cli_models:tied_cnn")
    folder = _save(tmp_path / "tied", loaded, result)
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        names = set(f.keys())
    assert ("head.weight" in names) != ("classifier.weight" in names)  # one copy
    model = load(folder)
    assert model.head.weight is model.classifier.weight
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(_logits(model, x), _logits(result.model.eval(), x))
