"""Tests for cpd.report.plots: each function writes a valid PNG."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from cpd.report.plots import plot_latency, plot_metric_vs_macs, plot_widths

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == _PNG_MAGIC
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert img.format == "PNG" and img.width > 100 and img.height > 100
    # Nothing but the PNG itself: the temporary file was moved, not copied.
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_metric_vs_macs(tmp_path: Path) -> None:
    out = plot_metric_vs_macs(
        [4.1e9, 3.0e9, 2.1e9, 1.2e9],
        [76.1, 75.8, 74.9, 72.0],
        tmp_path / "nested" / "metric.png",
        metric_name="top-1 (%)",
        labels=["dense", "1", "2", "3"],
    )
    assert out == tmp_path / "nested" / "metric.png"
    _assert_png(out)
    with pytest.raises(ValueError):
        plot_metric_vs_macs([1.0, 2.0], [1.0], tmp_path / "bad.png")


def test_widths(tmp_path: Path) -> None:
    before = {f"layer{i}.conv": 64 * (1 + i % 4) for i in range(40)}
    after = {name: w // 2 for name, w in before.items() if name != "layer3.conv"}  # one removed
    out = plot_widths(before, after, tmp_path / "widths.png")
    _assert_png(out)
    with Image.open(out) as img:
        assert img.width > img.height  # grows with the number of layers


def test_latency_numbers_and_settings(tmp_path: Path) -> None:
    _assert_png(plot_latency(120.0, 70.0, tmp_path / "a" / "lat.png"))
    _assert_png(plot_latency({"torch b1": 25.0, "onnx b8": 120.0}, {"torch b1": 14.0, "onnx b8": 60.0}, tmp_path / "b" / "lat.png"))
    with pytest.raises(ValueError):
        plot_latency({"b1": 1.0}, {"b8": 1.0}, tmp_path / "c.png")


def test_overwrite_replaces_existing_png(tmp_path: Path) -> None:
    path = tmp_path / "lat.png"
    path.write_bytes(b"old")
    plot_latency(2.0, 1.0, path)
    _assert_png(path)
