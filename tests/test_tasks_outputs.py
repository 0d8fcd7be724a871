"""logits_of on every output kind a vision model returns."""

from collections import OrderedDict
from dataclasses import dataclass

import pytest
import torch

from cpd.tasks import logits_of

LOGITS = torch.randn(2, 3)


def test_plain_tensor() -> None:
    assert logits_of(LOGITS) is LOGITS


def test_dicts() -> None:
    assert logits_of({"loss": torch.tensor(1.0), "logits": LOGITS}) is LOGITS
    assert logits_of(OrderedDict(out=LOGITS, aux=torch.zeros(1))) is LOGITS  # DeepLab style
    assert logits_of({"name": "x", "scores": LOGITS}) is LOGITS  # first tensor value


def test_tuples_and_lists() -> None:
    assert logits_of((LOGITS, torch.zeros(5))) is LOGITS
    assert logits_of([LOGITS]) is LOGITS
    assert logits_of(((LOGITS, torch.zeros(1)), torch.zeros(2))) is LOGITS


@dataclass
class _Output:
    loss: torch.Tensor
    logits: torch.Tensor


def test_object_with_logits_attribute() -> None:
    assert logits_of(_Output(torch.tensor(0.5), LOGITS)) is LOGITS


def test_hugging_face_model_output() -> None:
    outputs = pytest.importorskip("transformers.modeling_outputs")
    out = outputs.SemanticSegmenterOutput(loss=torch.tensor(0.3), logits=LOGITS)
    assert logits_of(out) is LOGITS  # not the loss, although it comes first


def test_clear_error_when_no_tensor() -> None:
    with pytest.raises(TypeError, match="cannot find logits.*str"):
        logits_of("nope")
    with pytest.raises(TypeError, match="dict"):
        logits_of({"a": 1})
    with pytest.raises(TypeError, match="tuple"):
        logits_of(())
