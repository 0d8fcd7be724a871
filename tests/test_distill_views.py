"""Extra distillation views: the CutMix geometry, and the objective that distils on it."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from cpd.distill import cutmix_box, cutmix_view, make_view
from cpd.tasks import build_task
from cpd.train import TrainConfig
from cpd.train.objective import Objective


def labelled_batch(b: int, h: int, w: int) -> torch.Tensor:
    """``(B, 2, H, W)``: every pixel of sample ``i`` holds ``i`` (so a pixel's value names its source)."""
    return torch.arange(b, dtype=torch.float32).view(b, 1, 1, 1).expand(b, 2, h, w).clone()


@settings(max_examples=60, deadline=None)
@given(b=st.integers(2, 6), h=st.integers(1, 12), w=st.integers(1, 12), seed=st.integers(0, 2**16))
def test_cutmix_pastes_one_box_from_another_image(b: int, h: int, w: int, seed: int) -> None:
    images = labelled_batch(b, h, w)
    before = images.clone()
    mixed = cutmix_view(images, torch.Generator().manual_seed(seed))
    assert torch.equal(images, before)  # the batch itself is not touched
    assert mixed.shape == images.shape
    boxes = []
    for i in range(b):
        src = mixed[i, 0]
        assert torch.equal(mixed[i, 0], mixed[i, 1])  # all channels move together
        pasted = src != i
        values = set(src[pasted].tolist())
        assert len(values) == 1 and values != {float(i)}  # one partner, never itself
        rows, cols = pasted.any(1).nonzero().flatten(), pasted.any(0).nonzero().flatten()
        top, left = int(rows.min()), int(cols.min())
        bh, bw = int(rows.max()) - top + 1, int(cols.max()) - left + 1
        assert int(pasted.sum()) == bh * bw  # the pasted pixels fill a rectangle
        boxes.append((top, left, bh, bw))
    assert len(set(boxes)) == 1  # the same box for every sample
    shifts = {(int(mixed[i, 0][mixed[i, 0] != i][0]) - i) % b for i in range(b)}
    assert len(shifts) == 1  # every sample takes from the sample ``shift`` places on


def test_cutmix_follows_the_global_rng() -> None:
    x = torch.randn(4, 3, 9, 11)
    torch.manual_seed(5)
    a = cutmix_view(x)
    torch.manual_seed(5)
    assert torch.equal(a, cutmix_view(x))
    assert not torch.equal(a, x)


def test_bad_views_fail_clearly() -> None:
    with pytest.raises(ValueError, match="batch size >= 2"):
        cutmix_view(torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="needs \\(B, ..., H, W\\)"):
        cutmix_view(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="one image tensor"):
        make_view("cutmix", {"pixel_values": torch.zeros(2, 3, 4, 4)})
    with pytest.raises(ValueError, match="unknown extra_view"):
        make_view("mosaic", torch.zeros(2, 3, 4, 4))
    assert make_view("none", torch.zeros(2, 3, 4, 4)) is None
    with pytest.raises(ValueError, match="extra_view must be one of"):
        TrainConfig(extra_view="mosaic")
    # Without a teacher the view needs dense labels to be mixed; class labels cannot be.
    obj = Objective(build_task("classification"), TrainConfig(alpha=0.0, extra_view="cutmix"), None)
    with pytest.raises(ValueError, match="set alpha > 0 to label it with the teacher"):
        obj.step(nn.Sequential(nn.Flatten(), nn.Linear(48, 3)), torch.randn(4, 3, 4, 4), torch.tensor([0, 1, 2, 0]))


def test_one_box_mixes_images_and_label_maps_alike() -> None:
    images = labelled_batch(5, 6, 7)
    labels = images[:, 0].long()  # (B, H, W): each map holds its sample's index
    box = cutmix_box(5, 6, 7, torch.Generator().manual_seed(3))
    assert torch.equal(box.paste(images)[:, 0].long(), box.paste(labels))
    assert torch.equal(box.paste(images), cutmix_view(images, torch.Generator().manual_seed(3)))


def seg_net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 4, 1))


@pytest.mark.parametrize("alpha", [0.5, 1.0])
def test_segmentation_view_is_trained_like_the_batch(alpha: float) -> None:
    """loss = mix(x, y) + mix(cutmix(x), the same cutmix of y), mix = alpha KD + (1 - alpha) CE."""
    task = build_task("segmentation", num_classes=4, ignore_index=255)
    student, teacher = seg_net(0), seg_net(1)
    x = torch.randn(3, 3, 8, 10)
    y = torch.randint(0, 4, (3, 8, 10))
    y[0, :2] = 255
    with_view = Objective(task, TrainConfig(alpha=alpha, extra_view="cutmix"), teacher)
    torch.manual_seed(7)
    loss, parts, teacher_logits = with_view.step(student, x, y)

    plain = Objective(task, TrainConfig(alpha=alpha), teacher)
    torch.manual_seed(7)
    box = cutmix_box(3, 8, 10)
    view = box.paste(x)
    with torch.no_grad():
        t_x, t_v = teacher(x), teacher(view)
    expected, _ = plain.loss_and_parts(student(x), (y, t_x))
    extra, _ = plain.loss_and_parts(student(view), (box.paste(y), t_v))
    torch.testing.assert_close(loss, expected + extra)
    assert teacher_logits is not None and torch.allclose(teacher_logits, t_x)  # criteria see the labelled batch
    assert parts["view"] == pytest.approx(float(extra.detach()))
    assert parts["total"] == pytest.approx(float((expected + extra).detach()))
    loss.backward()
    assert all(p.grad is not None for p in student.parameters())
    assert all(p.grad is None for p in teacher.parameters())  # the teacher stays frozen


def test_classification_view_gets_alpha_kd_only() -> None:
    task = build_task("classification")
    torch.manual_seed(0)
    student, teacher = nn.Sequential(nn.Flatten(), nn.Linear(48, 3)), nn.Sequential(nn.Flatten(), nn.Linear(48, 3))
    x, y = torch.randn(4, 3, 4, 4), torch.tensor([0, 1, 2, 0])
    obj = Objective(task, TrainConfig(alpha=0.3, extra_view="cutmix"), teacher)
    torch.manual_seed(2)
    loss, parts, _ = obj.step(student, x, y)
    torch.manual_seed(2)
    view = cutmix_view(x)
    expected, _ = obj.loss_and_parts(student(x), (y, teacher(x).detach()))
    extra = 0.3 * obj.distill.kd(student(view), teacher(view).detach(), None)  # type: ignore[union-attr]
    torch.testing.assert_close(loss, expected + extra)
    assert parts["view"] == pytest.approx(float(extra.detach()))


def test_objective_without_view_matches_loss_and_parts() -> None:
    task = build_task("classification")
    student, teacher = nn.Linear(5, 3), nn.Linear(5, 3)
    x, y = torch.randn(4, 5), torch.tensor([0, 1, 2, 0])
    obj = Objective(task, TrainConfig(alpha=0.5), teacher)
    loss, parts, t = obj.step(student, x, y)
    assert t is not None and torch.allclose(t, teacher(x))
    expected, _ = obj.loss_and_parts(student(x), (y, teacher(x).detach()))
    torch.testing.assert_close(loss, expected)
    assert "view" not in parts


def test_without_a_teacher_the_view_is_trained_on_mixed_label_maps() -> None:
    """alpha = 0: loss = CE(x, y) + CE(cutmix(x), the same cutmix of y), ignored pixels kept ignored."""
    task = build_task("segmentation", num_classes=4, ignore_index=255)
    student = seg_net(0)
    x, y = torch.randn(4, 3, 8, 10), torch.randint(0, 4, (4, 8, 10))
    y[1, :, :3] = 255
    obj = Objective(task, TrainConfig(alpha=0.0, extra_view="cutmix"), None)
    torch.manual_seed(11)
    loss, parts, teacher_logits = obj.step(student, x, y)
    torch.manual_seed(11)
    box = cutmix_box(4, 8, 10)
    expected = task.loss(student(x), y) + task.loss(student(box.paste(x)), box.paste(y))
    torch.testing.assert_close(loss, expected)
    assert teacher_logits is None and set(parts) == {"task", "view", "total"}
