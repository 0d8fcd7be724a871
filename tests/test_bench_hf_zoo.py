"""Fast checks of the Hugging Face zoo benchmark (benchmarks/hf_zoo.py, benchmarks/zoo.py).

``benchmarks/`` is not a package: its modules are imported by putting that directory
on ``sys.path`` (as benchmarks/zoo.py itself does).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")
import torch  # noqa: E402

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import hf_zoo  # noqa: E402
import zoo  # noqa: E402

TINY_VIT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=64, image_size=32, patch_size=8)
TINY_SEGFORMER = dict(depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 32, 32],
                      num_attention_heads=[1, 2, 2, 4], decoder_hidden_size=16,
                      image_size=64)


def test_enumeration_comes_from_the_auto_mappings():
    from transformers.models.auto import modeling_auto as ma

    archs = hf_zoo.iter_architectures()
    assert archs and len(archs) == len(set(archs))
    cls = [a for a, t in archs if t == "image-classification"]
    seg = [a for a, t in archs if t == "semantic-segmentation"]
    assert cls == list(ma.MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES)
    assert seg == list(ma.MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES)
    assert "vit" in cls and "resnet" in cls and "segformer" in seg
    assert hf_zoo.iter_architectures("semantic-segmentation") == [
        (a, "semantic-segmentation") for a in seg]
    with pytest.raises(ValueError):
        hf_zoo.iter_architectures(("object-detection",))


def test_input_spec_reads_the_config():
    from transformers import ResNetConfig, ViTConfig

    assert hf_zoo.input_spec(ViTConfig(image_size=32, num_channels=1)) == (1, 32, 32)
    assert hf_zoo.input_spec(ViTConfig(image_size=(48, 64))) == (3, 48, 64)
    assert hf_zoo.input_spec(ResNetConfig()) == (3, 224, 224)  # no image_size: default


@pytest.mark.parametrize("arch,task,overrides,out_shape", [
    ("vit", "image-classification", TINY_VIT, (1, 2)),
    ("segformer", "semantic-segmentation", TINY_SEGFORMER, (1, 2, 16, 16)),
])
def test_build_gives_a_runnable_model(arch, task, overrides, out_shape):
    model, inputs = hf_zoo.build(arch, task, config_overrides=overrides)
    assert not model.training
    x = inputs["pixel_values"]
    assert x.shape == (1, 3, overrides["image_size"], overrides["image_size"])
    out = hf_zoo.logits_of(hf_zoo.forward(model, inputs))
    assert tuple(out.shape) == out_shape
    # seeded: the same weights and input twice
    model2, inputs2 = hf_zoo.build(arch, task, config_overrides=overrides)
    assert torch.equal(inputs2["pixel_values"], x)
    assert torch.equal(hf_zoo.logits_of(hf_zoo.forward(model2, inputs2)), out)


def test_text_input_model_is_skipped_with_reason():
    with pytest.raises(hf_zoo.SkipArch, match="pixel_values") as e:
        hf_zoo.build("imagegpt", "image-classification",
                     config_overrides=dict(n_layer=1, n_embd=16, n_head=2, n_positions=64))
    assert "input_ids" in str(e.value)


def test_count_and_torch_pruning_helpers_on_tiny_vit():
    model, inputs = hf_zoo.build("vit", "image-classification", config_overrides=TINY_VIT)
    macs, params = hf_zoo.count_flops_macs(model, inputs)
    assert macs > 0 and params == sum(p.numel() for p in model.parameters())
    assert zoo.find_output_layers(model, inputs) == ["classifier"]
    specs = zoo.find_attention(model)
    assert len(specs) == TINY_VIT["num_hidden_layers"]
    assert all(len(s["layers"]) == 3 and not s["fused"] for s in specs)

    pytest.importorskip("torch_pruning")
    out_shape = list(hf_zoo.logits_of(hf_zoo.forward(model, inputs)).shape)
    base = zoo._Baseline(model, inputs, out_shape, "flop_counter", macs, params,
                         ["classifier"])
    row = zoo._run_tp(base, "vit", "image-classification", 0.5)
    zoo.validate_row(row)
    assert row["ok"], row["error"]
    assert 0 < row["macs"] < 1 and 0 < row["params"] < 1
    assert row["trace_s"] is not None and row["prune_s"] is not None
    # the input model was not touched (TP pruned a deep copy)
    assert hf_zoo.count_flops_macs(model, inputs) == (macs, params)


def test_row_schema_writer_and_markdown(tmp_path):
    path = tmp_path / "results" / "zoo.json"
    rows = [
        zoo.make_row("vit", "image-classification", "torch-pruning", 0.3, ok=True,
                     macs=0.49, params=0.48, trace_s=4.0, prune_s=10.0),
        zoo.make_row("vit", "image-classification", "cpd", 0.3, error=zoo.CPD_MISSING),
        zoo.make_row("imagegpt", "image-classification", "torch-pruning", 0.3,
                     skipped=True, error="forward takes no pixel_values"),
    ]
    written = zoo.write_results(path, rows)
    data = json.loads(path.read_text())
    assert data == written and len(data) == 3
    for r in data:
        assert set(r) == set(zoo.ROW_KEYS)
        zoo.validate_row(r)
    assert not list(path.parent.glob("*.tmp"))

    # a subset run replaces its own rows and keeps the rest
    again = zoo.make_row("vit", "image-classification", "cpd", 0.3, error="boom")
    data = zoo.write_results(path, [again])
    assert len(data) == 3 and data[1]["error"] == "boom" and data[0]["ok"]

    with pytest.raises(ValueError):
        zoo.validate_row({**rows[0], "extra": 1})
    with pytest.raises(ValueError):
        zoo.validate_row({**rows[0], "tool": "other"})
    with pytest.raises(KeyError):
        zoo.make_row("a", "t", "cpd", 0.3, bogus=1)

    md = zoo.render_markdown(data)
    assert "| vit | cls |" in md and "OK 0.49" in md and "## Totals" in md
    assert "imagegpt" in md and "## Skipped" in md


def test_run_streaming_times_out_and_reports_events():
    got = []
    code = ("import sys, time; print('@@ROW {\"a\": 1}', flush=True); "
            "print('noise', flush=True); time.sleep(30)")
    status, tail = hf_zoo.run_streaming([sys.executable, "-c", code], 2.0,
                                        lambda k, p: got.append((k, p)))
    assert status == "timeout" and got == [("ROW", {"a": 1})] and tail == ["noise"]
    status, _ = hf_zoo.run_streaming([sys.executable, "-c", "raise SystemExit(3)"], 10.0,
                                     lambda k, p: None)
    assert status == "exit 3"
