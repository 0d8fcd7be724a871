"""Model strings and sources: parsing, every scheme, and their one-line errors."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from cpd.io import (
    CpdInputError,
    FolderError,
    InputSpec,
    MissingDependencyError,
    ModelSourceError,
    build_source,
    open_model,
    parse_model_string,
    parse_shape,
    register_source,
    valid_forms,
)
from cpd.io.sources import LoadedModel
from cpd.io.sources import base as source_base

TINY_VIT = ("hf:vit?hidden_size=32&num_hidden_layers=2&num_attention_heads=2"
            "&intermediate_size=64&image_size=32&patch_size=8")


def _one_line(e: pytest.ExceptionInfo[BaseException]) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


# ------------------------------------------------------------------ parsing
def test_parse_model_string_types_and_decoding() -> None:
    spec = parse_model_string("HF:vit?a=64&b=0.5&c=true&d=null&e=[1,2]&f=abc&g=%2207%22&h=x%26y&i=None")
    assert spec.scheme == "hf" and spec.target == "vit"
    assert spec.options == {"a": 64, "b": 0.5, "c": True, "d": None, "e": [1, 2], "f": "abc",
                            "g": "07", "h": "x&y", "i": None}
    assert parse_model_string("py:pkg.mod:make").target == "pkg.mod:make"
    assert parse_model_string("hf:/some/dir").target == "/some/dir"


@pytest.mark.parametrize("text,needle", [
    ("", "empty model string"),
    ("resnet", "no scheme prefix"),
    ("C:\\models\\x", "no scheme prefix"),  # a Windows drive letter is not a scheme
    ("hf:", "names nothing"),
    ("hf:vit?novalue", "key=value"),
    ("hf:vit?a=1&a=2", "given twice"),
])
def test_parse_model_string_errors(text: str, needle: str) -> None:
    with pytest.raises(ModelSourceError) as e:
        parse_model_string(text)
    assert needle in _one_line(e)


def test_parse_shape() -> None:
    assert parse_shape("1,3,224,224") == (1, 3, 224, 224)
    assert parse_shape(" (2, 3, 8, 8) ") == (2, 3, 8, 8)
    assert parse_shape("1x3x16x16") == (1, 3, 16, 16)
    for bad in ("", "1,3,x", "1,0,4,4", "-1,3", "1,,3"):
        with pytest.raises(CpdInputError, match="bad --input-shape"):
            parse_shape(bad)


def test_input_spec_json_round_trip_and_forms() -> None:
    spec = InputSpec((2, 3, 8, 8), "pixel_values")
    assert InputSpec.from_json(spec.to_json()) == spec
    x = spec.make()
    assert set(x) == {"pixel_values"} and x["pixel_values"].shape == (2, 3, 8, 8)
    assert torch.equal(x["pixel_values"], spec.make()["pixel_values"])  # reproducible
    assert isinstance(InputSpec((1, 3, 4, 4)).make(), torch.Tensor)
    with pytest.raises(CpdInputError):
        InputSpec.from_json({"shape": [1, 3], "form": "weird"})


# ------------------------------------------------------------------ registry
def test_unknown_scheme_lists_valid_forms() -> None:
    with pytest.raises(ModelSourceError) as e:
        build_source("onnx:model.onnx")
    msg = _one_line(e)
    assert "unknown model scheme 'onnx:'" in msg
    for form in ("hf:MODEL_TYPE", "timm:NAME", "torchvision:NAME", "py:package.module:factory", "folder"):
        assert form in msg


def test_register_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(source_base, "_SOURCES", dict(source_base._SOURCES))

    def build(spec, *, from_folder=False):
        return LoadedModel(torch.nn.Linear(spec.options["n"], 2), InputSpec((1, spec.options["n"])), spec.raw)

    register_source("toy", build, "toy:NAME?n=N")
    loaded = build_source("toy:x?n=3")
    assert loaded.model(loaded.example_inputs()).shape == (1, 2)
    assert "toy:NAME?n=N" in valid_forms()


# ------------------------------------------------------------------ hf:
def test_hf_model_type_builds_a_seeded_image_classifier() -> None:
    pytest.importorskip("transformers")
    loaded = build_source(TINY_VIT + "&num_labels=5")
    assert type(loaded.model).__name__ == "ViTForImageClassification"
    assert not loaded.model.training
    assert loaded.inputs == InputSpec((1, 3, 32, 32), "pixel_values")
    assert loaded.source == TINY_VIT + "&num_labels=5"
    with torch.no_grad():
        logits = loaded.model(**loaded.example_inputs()).logits
    assert logits.shape == (1, 5)
    again = build_source(TINY_VIT + "&num_labels=5").model.state_dict().values()
    assert all(torch.equal(a, b) for a, b in zip(loaded.model.state_dict().values(), again, strict=True))


def test_hf_auto_class_fallbacks() -> None:
    transformers = pytest.importorskip("transformers")
    from cpd.io.sources.hf_source import _auto_class

    assert _auto_class(transformers, "dpt")[0] is transformers.AutoModelForSemanticSegmentation
    assert _auto_class(transformers, "vit")[0] is transformers.AutoModelForImageClassification
    # vitdet has neither head: plain AutoModel, and still an image model.
    loaded = build_source("hf:vitdet?hidden_size=32&num_hidden_layers=1&num_attention_heads=2&image_size=32"
                          "&patch_size=8&pretrain_image_size=32")
    assert type(loaded.model).__name__ == "VitDetModel" and loaded.inputs.kwarg == "pixel_values"


def test_hf_task_option_picks_the_head() -> None:
    pytest.importorskip("transformers")
    seg = "hf:segformer?hidden_sizes=[8,16,24,32]&decoder_hidden_size=16&num_labels=3"
    assert type(build_source(seg).model).__name__ == "SegformerForImageClassification"
    loaded = build_source(seg + "&task=segmentation")
    assert type(loaded.model).__name__ == "SegformerForSemanticSegmentation"
    with torch.no_grad():
        logits = loaded.model(**loaded.example_inputs()).logits
    assert logits.shape[:2] == (1, 3) and logits.dim() == 4  # (B, classes, H/4, W/4)


@pytest.mark.parametrize("text,needle", [
    ("hf:vitt", "did you mean hf:vit"),
    (TINY_VIT + "&task=segmentation", "has no segmentation model"),
    (TINY_VIT + "&task=detection", "task must be one of classification, segmentation, base"),
    ("hf:vit?hiden_size=32", "no field 'hiden_size' (did you mean hidden_size"),
    ("hf:bert?num_hidden_layers=1&hidden_size=32&num_attention_heads=2&intermediate_size=32",
     "not an image model"),
    ("hf:./no-such-dir", "no such folder"),
])
def test_hf_errors(text: str, needle: str) -> None:
    pytest.importorskip("transformers")
    with pytest.raises(ModelSourceError) as e:
        build_source(text)
    assert needle in _one_line(e)


def test_hf_saved_pretrained_folder(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    original = build_source(TINY_VIT + "&num_channels=1")
    original.model.save_pretrained(tmp_path / "vit")
    loaded = build_source(f"hf:{tmp_path / 'vit'}")
    assert loaded.inputs == InputSpec((1, 1, 32, 32), "pixel_values")
    x = loaded.example_inputs()
    with torch.no_grad():
        assert torch.equal(loaded.model(**x).logits, original.model(**x).logits)
    with pytest.raises(ModelSourceError, match="options are only accepted"):
        build_source(f"hf:{tmp_path / 'vit'}?num_labels=3")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelSourceError, match="no config.json"):
        build_source(f"hf:{tmp_path / 'empty'}")


# ------------------------------------------------------------------ timm: / torchvision:
@pytest.mark.parametrize("scheme,name", [("timm", "resnet18"), ("torchvision", "resnet18")])
def test_optional_package_missing_is_one_line(scheme: str, name: str) -> None:
    if importlib.util.find_spec(scheme) is not None:
        pytest.skip(f"{scheme} is installed")
    with pytest.raises(MissingDependencyError) as e:
        build_source(f"{scheme}:{name}")
    assert f"pip install {scheme}" in _one_line(e)


def test_timm_builds_with_its_input_size() -> None:
    pytest.importorskip("timm")
    loaded = build_source("timm:resnet10t?num_classes=3")
    assert loaded.inputs.shape == (1, 3, 224, 224) and loaded.inputs.kwarg is None
    with pytest.raises(ModelSourceError, match="timm has no model"):
        build_source("timm:not_a_model_xyz")


def test_torchvision_builds_without_weights() -> None:
    pytest.importorskip("torchvision")
    loaded = build_source("torchvision:mobilenet_v3_small?num_classes=3")
    with torch.no_grad():
        assert loaded.model(loaded.example_inputs()).shape == (1, 3)
    with pytest.raises(ModelSourceError, match="did you mean"):
        build_source("torchvision:resnet1800")


# ------------------------------------------------------------------ py:
def test_py_factory_with_kwargs_and_shape() -> None:
    loaded = build_source("py:cli_models:tiny_cnn?width=4&num_classes=3")
    assert loaded.inputs == InputSpec((1, 3, 16, 16))
    assert loaded.model.stem[0].out_channels == 4
    assert loaded.model(loaded.example_inputs()).shape == (1, 3)
    assert build_source("py:cli_models:bare_cnn").inputs.shape == (1, 3, 224, 224)


@pytest.mark.parametrize("text,needle", [
    ("py:cli_models", "expected py:package.module:factory"),
    ("py:no_such_module_xyz:f", "no module named 'no_such_module_xyz'"),
    ("py:cli_models:missing", "no public attribute 'missing'"),
    ("py:cli_models:_private", "no public attribute"),
    ("py:cli_models:not_a_model", "returned str, not a torch.nn.Module"),
    ("py:cli_models:tiny_cnn?nope=1", "unexpected keyword argument 'nope'"),
])
def test_py_errors(text: str, needle: str) -> None:
    with pytest.raises(ModelSourceError) as e:
        build_source(text)
    assert needle in _one_line(e)


def test_py_strings_read_from_a_folder_are_restricted() -> None:
    # Typed by the user: their choice. Read from a folder: no stdlib, no foreign callables.
    assert isinstance(build_source("py:cli_models:nn.Identity").model, torch.nn.Identity)
    with pytest.raises(ModelSourceError, match="standard-library"):
        build_source("py:os:getcwd", from_folder=True)
    with pytest.raises(ModelSourceError, match="defined in 'torch"):
        build_source("py:cli_models:nn.Identity", from_folder=True)
    assert build_source("py:cli_models:tiny_cnn", from_folder=True).inputs.shape == (1, 3, 16, 16)


# ------------------------------------------------------------------ open_model (CLI's MODEL)
def test_open_model_paths(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "x.txt").write_text("x")
    (tmp_path / "file.onnx").write_bytes(b"x")
    with pytest.raises(FolderError, match="not a cpd folder"):
        open_model(str(tmp_path / "plain"))
    with pytest.raises(FolderError, match="is a file"):
        open_model(str(tmp_path / "file.onnx"))
    with pytest.raises(FolderError, match="no such cpd folder"):
        open_model(str(tmp_path / "missing"))
    loaded = open_model("py:cli_models:tiny_cnn", input_shape=(2, 3, 8, 8))
    assert loaded.inputs.shape == (2, 3, 8, 8)
