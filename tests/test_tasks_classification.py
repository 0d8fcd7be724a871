"""Top-k accuracy: hand case, streaming, distributed reduction; the task loss."""

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from cpd.tasks import TopKAccuracy, classification_loss

# Target ranks: 1st, 3rd, 6th (last).
LOGITS = torch.tensor(
    [
        [0.1, 0.9, 0.2, 0.0, 0.1, 0.0],
        [0.3, 0.9, 0.8, 0.0, 0.1, 0.2],
        [0.6, 0.9, 0.8, 0.7, 0.5, 0.1],
    ]
)
TARGETS = torch.tensor([1, 0, 5])


def test_top1_top5_hand_case() -> None:
    metric = TopKAccuracy()
    metric.update(LOGITS, TARGETS)
    out = metric.compute()
    assert out["top1"] == pytest.approx(100 / 3)
    assert out["top5"] == pytest.approx(200 / 3)


def test_streaming_equals_one_shot() -> None:
    torch.manual_seed(0)
    logits, targets = torch.randn(37, 10), torch.randint(0, 10, (37,))
    whole, stream = TopKAccuracy((1, 3, 5)), TopKAccuracy((1, 3, 5))
    whole.update(logits, targets)
    for chunk in range(0, 37, 8):
        stream.update(logits[chunk : chunk + 8], targets[chunk : chunk + 8])
    assert stream.compute() == whole.compute()
    expected_top1 = 100 * (logits.argmax(1) == targets).float().mean().item()
    assert whole.compute()["top1"] == pytest.approx(expected_top1)


def test_fewer_classes_than_k_and_reset() -> None:
    metric = TopKAccuracy()
    metric.update(torch.tensor([[0.2, 0.8], [0.9, 0.1]]), torch.tensor([0, 0]))
    assert metric.compute() == {"top1": 50.0, "top5": 100.0}
    metric.reset()
    assert all(v != v for v in metric.compute().values())  # nan before any update


def test_all_reduce_sums_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    metric = TopKAccuracy()
    metric.update(LOGITS, TARGETS)
    metric.all_reduce()  # not initialised: a no-op
    assert metric.compute()["top1"] == pytest.approx(100 / 3)

    # Simulate two ranks, the other having seen 3 samples and got all of them right.
    def fake_all_reduce(t: torch.Tensor, op: object = None) -> None:
        other = torch.tensor([3, 3]) if t.ndim == 1 else torch.tensor(3)
        t.add_(other)

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_backend", lambda: "gloo")
    monkeypatch.setattr(dist, "all_reduce", fake_all_reduce)
    metric.all_reduce()
    assert int(metric.total) == 6
    assert metric.compute() == {"top1": pytest.approx(400 / 6), "top5": pytest.approx(500 / 6)}


def test_all_reduce_with_real_process_group(tmp_path) -> None:
    if not dist.is_available():
        pytest.skip("torch.distributed not built")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        metric = TopKAccuracy()
        metric.update(LOGITS, TARGETS)
        metric.all_reduce()
        assert metric.compute()["top5"] == pytest.approx(200 / 3)
    finally:
        dist.destroy_process_group()


def test_loss_is_cross_entropy_and_shape_errors() -> None:
    assert classification_loss(LOGITS, TARGETS).item() == pytest.approx(F.cross_entropy(LOGITS, TARGETS).item())
    with pytest.raises(ValueError, match=r"\(B, C\)"):
        TopKAccuracy().update(torch.zeros(2, 3, 4), torch.zeros(2))
