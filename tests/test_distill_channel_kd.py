"""Channel-wise KD for segmentation: hand values, ignore pixels, resizing, the task option."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cpd.distill import ChannelKD, PixelKD, channel_kd_loss
from cpd.tasks import build_task

# teacher's spatial distribution (0.75, 0.25) against the student's uniform one
HAND_KL = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)


def _pair() -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes on a 1x2 map. Class 0: teacher (log 3, 0), i.e. spatial (0.75, 0.25);
    class 1: teacher flat. The student is flat everywhere."""
    student = torch.zeros(1, 2, 1, 2)
    teacher = torch.zeros(1, 2, 1, 2)
    teacher[0, 0, 0, 0] = math.log(3.0)
    return student, teacher


def test_hand_case_mean_over_classes() -> None:
    student, teacher = _pair()
    # class 0 contributes HAND_KL, class 1 zero; the mean is over the 2 classes
    assert channel_kd_loss(student, teacher, temperature=1.0).item() == pytest.approx(HAND_KL / 2, rel=1e-5)


def test_temperature_scales_logits_and_multiplies_by_t_squared() -> None:
    student, teacher = _pair()
    t = 3.0
    got = channel_kd_loss(student, teacher * t, temperature=t).item()
    assert got == pytest.approx(HAND_KL / 2 * t**2, rel=1e-5)


def test_per_class_offsets_do_not_matter() -> None:
    # a spatial softmax ignores a constant added to a whole class map (pixel KD would not)
    torch.manual_seed(0)
    teacher = torch.randn(2, 3, 4, 5)
    student = teacher + torch.randn(2, 3, 1, 1) * 5
    assert channel_kd_loss(student, teacher).item() == pytest.approx(0.0, abs=1e-5)
    assert PixelKD()(student, teacher).item() > 0.01


def test_ignored_pixels_leave_the_softmax() -> None:
    student, teacher = _pair()
    # a third pixel, ignored, with wild logits: the loss is that of the 1x2 map
    student3 = torch.cat([student, torch.full((1, 2, 1, 1), 40.0)], dim=-1)
    teacher3 = torch.cat([teacher, torch.full((1, 2, 1, 1), -25.0)], dim=-1)
    labels = torch.tensor([[[0, 1, 255]]])
    got = channel_kd_loss(student3, teacher3, labels, temperature=1.0).item()
    assert got == pytest.approx(HAND_KL / 2, rel=1e-5)


def test_fully_ignored_image_does_not_count_and_has_zero_gradient() -> None:
    torch.manual_seed(1)
    student = torch.randn(2, 4, 3, 3, requires_grad=True)
    teacher = torch.randn(2, 4, 3, 3)
    labels = torch.randint(0, 4, (2, 3, 3))
    labels[0] = 255
    loss = channel_kd_loss(student, teacher, labels)
    alone = channel_kd_loss(student[1:].detach(), teacher[1:], labels[1:])
    assert loss.item() == pytest.approx(alone.item(), rel=1e-5)
    loss.backward()
    assert student.grad is not None and torch.isfinite(student.grad).all()
    assert student.grad[0].abs().sum().item() == 0.0
    assert student.grad[1].abs().sum().item() > 0.0


def test_everything_ignored_gives_zero_connected_to_graph() -> None:
    student = torch.randn(1, 2, 2, 2, requires_grad=True)
    loss = channel_kd_loss(student, torch.randn(1, 2, 2, 2), torch.full((1, 2, 2), 255))
    assert loss.item() == 0.0
    loss.backward()
    assert student.grad is not None


def test_low_resolution_logits_are_resized_to_the_labels() -> None:
    # bilinear resizing keeps a constant map constant: a 2x2 student equals its 8x8 copy
    torch.manual_seed(2)
    small = torch.randn(1, 3, 1, 1).expand(1, 3, 2, 2).contiguous()
    big = small[:, :, :1, :1].expand(1, 3, 8, 8).contiguous()
    teacher = torch.randn(1, 3, 8, 8)
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    assert channel_kd_loss(small, teacher, labels).item() == pytest.approx(
        channel_kd_loss(big, teacher, labels).item(), rel=1e-5)


@settings(max_examples=25, deadline=None)
@given(b=st.integers(1, 3), c=st.integers(1, 4), h=st.integers(1, 5), w=st.integers(1, 5),
       seed=st.integers(0, 10_000))
def test_non_negative_and_zero_only_at_the_teacher(b: int, c: int, h: int, w: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    teacher = torch.randn(b, c, h, w, generator=g)
    labels = torch.randint(0, 3, (b, h, w), generator=g)
    labels[torch.rand(b, h, w, generator=g) < 0.3] = 255
    student = torch.randn(b, c, h, w, generator=g)
    assert channel_kd_loss(student, teacher, labels).item() >= -1e-6
    assert channel_kd_loss(teacher.clone(), teacher, labels).item() == pytest.approx(0.0, abs=1e-5)


def test_bad_shapes_and_temperature_are_refused() -> None:
    with pytest.raises(ValueError, match="B, C, h, w"):
        channel_kd_loss(torch.zeros(2, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="same batch and class"):
        channel_kd_loss(torch.zeros(1, 3, 2, 2), torch.zeros(1, 4, 2, 2))
    with pytest.raises(ValueError, match="temperature"):
        channel_kd_loss(torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, 2), temperature=0.0)
    with pytest.raises(ValueError, match="targets"):
        channel_kd_loss(torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, 2), torch.zeros(2, 2, 2, dtype=torch.long))


def test_segmentation_task_kd_mode() -> None:
    pixel = build_task("segmentation", num_classes=4)
    assert isinstance(pixel.kd(), PixelKD) and pixel.temperature == 1.0
    channel = build_task("segmentation", num_classes=4, ignore_index=7, kd_mode="channel")
    kd = channel.kd()
    assert isinstance(kd, ChannelKD) and kd.temperature == 4.0 and kd.ignore_index == 7
    assert channel.kd(2.0).temperature == 2.0
    assert build_task("segmentation", num_classes=4, kd_mode="channel", temperature=1.5).temperature == 1.5
    with pytest.raises(ValueError, match="kd_mode must be one of pixel, channel"):
        build_task("segmentation", num_classes=4, kd_mode="spatial")


@pytest.mark.parametrize("kd", [ChannelKD(), PixelKD()])
def test_per_sample_losses_trace_under_vmap(kd: torch.nn.Module) -> None:
    # per-sample pruning criteria differentiate the KD loss one sample at a time under vmap:
    # the loss must not branch on tensor values
    torch.manual_seed(3)
    student, teacher = torch.randn(3, 4, 5, 6), torch.randn(3, 4, 5, 6)
    labels = torch.randint(0, 4, (3, 5, 6))
    labels[1] = 255
    per_sample = torch.func.vmap(lambda s, t, y: kd(s[None], t[None], y[None]))(student, teacher, labels)
    looped = torch.stack([kd(student[i:i + 1], teacher[i:i + 1], labels[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(per_sample, looped)
    assert per_sample[1].item() == 0.0
