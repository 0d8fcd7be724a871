"""Smoke test of the CamVid benchmark (benchmarks/camvid.py --quick) on a tiny subset.

``benchmarks/`` is not a package: its modules are imported by putting that directory
on ``sys.path`` (as the benchmark itself does).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import camvid  # noqa: E402
import camvid_runs  # noqa: E402

TOL = 0.01  # MACs may not exceed the 50 % target by more than this (fraction of the baseline)
# Torch-Pruning is an optional benchmark dependency (pip install -e ".[bench]"); without
# it the second method is cpd without distillation, which needs nothing extra.
OTHER = "tp-taylor" if importlib.util.find_spec("torch_pruning") else "cpd-no-kd"


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.skipif(not (camvid.CAMVID / "train.txt").exists(), reason="CamVid data not available")
def test_quick_run_writes_rows_with_the_schema_and_resumes(tmp_path, one_thread):
    argv = ["--quick", "--out-dir", str(tmp_path), "--models", "seg-cnn-tiny", "--methods", f"cpd,{OTHER}"]
    rows = camvid.main(argv)
    on_disk = json.loads((tmp_path / "camvid.json").read_text())
    assert on_disk == json.loads(json.dumps(rows))
    assert [r["method"] for r in on_disk] == ["baseline", "cpd", OTHER]
    for r in on_disk:
        assert list(r)[: len(camvid_runs.ROW_KEYS)] == list(camvid_runs.ROW_KEYS), r
        assert (r["model"], r["task"], r["error"]) == ("seg-cnn-tiny", "segmentation", None), r
        assert 0.0 <= r["metric"] <= 100.0 and r["metric_name"] == "miou"
        assert r["latency_ms_bs1"] > 0 and r["latency_ms_bs8"] > 0
    base, cpd, tp = on_disk
    assert base["macs"] == base["params"] == 1.0
    for r in (cpd, tp):
        assert 0.0 < r["macs"] <= 0.5 + TOL and 0.0 < r["params"] < 1.0, r
        assert r["macs_abs"] < base["macs_abs"] and r["params_abs"] < base["params_abs"]
    assert len(cpd["history"]) == camvid.QUICK["prune_steps"]  # one record per pruning step
    assert cpd["alpha"] > 0
    md = (tmp_path / "camvid.md").read_text()
    assert "| seg-cnn-tiny | **cpd** |" in md and f"| seg-cnn-tiny | {OTHER} |" in md
    assert (tmp_path / "camvid.png").read_bytes()[:4] == b"\x89PNG"

    # The teacher-fit diagnostic evaluates the cached baseline on every split; on the test
    # split it must reproduce the baseline row's mIoU.
    import camvid_teacher_fit

    fit = camvid_teacher_fit.main(["--quick", "--cache-dir", str(tmp_path / "cache"), "--out-dir", str(tmp_path)])
    assert [(r["model"], r["split"]) for r in fit] == [("seg-cnn-tiny", s) for s in ("train", "val", "test")]
    assert json.loads((tmp_path / "camvid_teacher_fit.json").read_text()) == fit
    assert fit[2]["miou"] == pytest.approx(base["metric"], abs=0.01)
    assert all(0.0 < r["mean_max_prob"] <= 1.0 and 0.0 <= r["pixel_acc"] <= 100.0 for r in fit)

    # A re-run finds every row in the cache and recomputes nothing.
    cached = json.loads((tmp_path / "cache" / "rows.json").read_text())
    again = camvid.main(argv)
    assert again == on_disk
    assert json.loads((tmp_path / "cache" / "rows.json").read_text()) == cached
    # Another configuration is another fingerprint: its rows are not taken from the cache.
    assert camvid.fingerprint("seg-cnn-tiny", {**cpd["config"], "alpha": 0.9}) != cpd["fingerprint"]

    # --retime rebuilds each row's first-seed model (same MACs, checked) and replaces only the
    # latency fields; a second --retime has nothing left to do.
    retimed = camvid.main([*argv, "--retime", "--retime-rounds", "2"])
    latency = {"latency_ms_bs1", "latency_ms_bs8", "base_latency_ms_bs1", "base_latency_ms_bs8"}
    for old, new in zip(on_disk, retimed, strict=True):
        assert new["latency_alone"] is True and new["latency_rounds_alone"] == 2
        assert {k: v for k, v in new.items() if k not in latency | {"latency_alone", "latency_rounds_alone"}} == \
            {k: v for k, v in old.items() if k not in latency}
        assert all(new[k] > 0 for k in latency)
    assert camvid.main([*argv, "--retime"]) == json.loads(json.dumps(retimed))
    # A row whose pipeline no longer rebuilds its architecture is refused, not re-timed.
    rows = json.loads((tmp_path / "cache" / "rows.json").read_text())
    for r in rows:
        if r["method"] == "cpd":
            r["macs_seeds"][0] += 0.01
            del r["latency_alone"]
    (tmp_path / "cache" / "rows.json").write_text(json.dumps(rows))
    with pytest.raises(RuntimeError, match="re-run the row instead"):
        camvid.main([*argv, "--retime"])


def test_failure_becomes_a_row_with_the_reason():
    class Boom(torch.nn.Module):
        def named_modules(self, *a, **k):  # any call fails
            raise RuntimeError("cannot prune this\nsecond line")

    measured = camvid_runs.Measured(50.0, 100, 10, {"bs1": 1.0, "bs8": 4.0})
    cfg = {**camvid.COMMON, "batch_size": 2, "out_layers": []}
    task = camvid.build_task("classification")
    row = camvid_runs.run_method("cpd", "m", "classification", Boom(), measured, task, [], [],  # type: ignore[arg-type]
                                 torch.zeros(1), cfg, lambda s: None)
    assert row["metric_name"] == "top1"
    assert row["error"] == "RuntimeError: cannot prune this"
    assert all(row[k] is None for k in ("macs", "params", "metric", "latency_ms_bs1", "latency_ms_bs8"))
    assert list(row)[: len(camvid_runs.ROW_KEYS)] == list(camvid_runs.ROW_KEYS)


def test_rows_and_verdicts():
    import camvid_report

    def row(method: str, metric: float | None, macs: float = 0.5) -> dict:
        return {"model": "m", "task": "segmentation", "method": method, "macs": macs, "params": macs,
                "metric": metric, "latency_ms_bs1": 2.0, "latency_ms_bs8": 8.0, "metric_name": "miou",
                "error": None if metric is not None else "TP: boom"}

    rows = [row("baseline", 60.0, 1.0), row("cpd", 59.0), row("cpd-no-kd", 58.0), row("tp-magnitude", None)]
    (v,) = camvid_report.verdicts(rows)
    assert "beats every baseline that ran: yes" in v and "within 2: yes" in v and "tp-magnitude" in v
    (v,) = camvid_report.verdicts([*rows[:2], row("tp-taylor", 59.5)])
    assert "beats every baseline that ran: **no**" in v
    (v,) = camvid_report.verdicts([row("baseline", 60.0, 1.0), row("cpd", 57.0)])
    assert "within 2: **no**" in v
    md = camvid_report.markdown(rows, {"setup": [], "command": "x", "minutes": 1.0})
    assert "failed: TP: boom" in md and "| m | **cpd** | 59.00 | -1.00 |" in md


def test_distillation_only_keys_change_only_the_distilling_rows() -> None:
    args = camvid.parse_args(["--models", "seg-cnn"])
    pixel = camvid.model_config("seg-cnn", args)
    channel = {**pixel, "seg_kd": "channel"}
    # the default value leaves old fingerprints (rows cached before the key existed) alone
    without = {k: v for k, v in pixel.items() if k != "seg_kd"}
    assert camvid.fingerprint("seg-cnn", pixel, method="cpd") == camvid.fingerprint("seg-cnn", without, method="cpd")
    assert camvid.fingerprint("seg-cnn", channel, method="cpd") != camvid.fingerprint("seg-cnn", pixel, method="cpd")
    for method in ("cpd-no-kd", "tp-magnitude", "tp-taylor"):  # no teacher: the KD loss is not used
        assert camvid.fingerprint("seg-cnn", channel, method=method) == camvid.fingerprint("seg-cnn", pixel,
                                                                                           method=method)


def test_the_extra_view_changes_both_cpd_rows_and_no_other() -> None:
    args = camvid.parse_args(["--models", "segformer"])
    plain = camvid.model_config("segformer", args)
    cutmix = {**plain, "extra_view": "cutmix"}
    without = {k: v for k, v in plain.items() if k != "extra_view"}  # rows cached before the key existed
    for method in camvid.METHODS[1:]:
        fp = camvid.fingerprint("segformer", plain, method=method)
        assert fp == camvid.fingerprint("segformer", without, method=method)
        assert (camvid.fingerprint("segformer", cutmix, method=method) != fp) == method.startswith("cpd"), method
    # cpd distils on the view; cpd-no-kd, the control, trains on it with the mixed label maps
    for alpha in (0.5, 0.0):
        config = camvid_runs.train_config({**cutmix, "ft_seed": 0}, steps=5, lr=1e-3, warmup=1, alpha=alpha, view=True)
        assert config.extra_view == "cutmix" and config.alpha == alpha
    assert camvid_runs.train_config(cutmix, steps=5, lr=1e-3, warmup=1).extra_view == "none"  # baselines, tp


def test_training_key_crop_scale_changes_every_row_and_the_baseline() -> None:
    args = camvid.parse_args(["--models", "seg-cnn"])
    jitter = camvid.model_config("seg-cnn", args)
    assert jitter["crop_scale"] == [0.5, 1.25]  # the benchmark's setting
    plain = {**jitter, "crop_scale": None}  # rows cached before the key existed
    without = {k: v for k, v in plain.items() if k != "crop_scale"}
    assert camvid.fingerprint("seg-cnn", plain, camvid.TRAIN_KEYS) == \
        camvid.fingerprint("seg-cnn", without, camvid.TRAIN_KEYS)
    assert camvid.fingerprint("seg-cnn", jitter, camvid.TRAIN_KEYS) != \
        camvid.fingerprint("seg-cnn", plain, camvid.TRAIN_KEYS)
    for method in camvid.METHODS[1:]:  # the data every method fine-tunes on changes
        assert camvid.fingerprint("seg-cnn", jitter, method=method) != camvid.fingerprint("seg-cnn", plain,
                                                                                          method=method)


def test_scale_jitter_keeps_the_crop_size_and_only_real_labels() -> None:
    from camvid_data import FrameTensors

    g = torch.Generator().manual_seed(0)
    images = torch.randn(3, 3, 30, 40, generator=g)
    labels = torch.randint(0, 5, (3, 30, 40), generator=g)
    labels[:, :, :20] = 11  # an ignore band: resizing must not blend it into a class
    ds = FrameTensors(images, labels, crop=(12, 16), scale=(0.5, 2.0))
    torch.manual_seed(1)
    for i in range(40):
        x, y = ds[i % 3]
        assert x.shape == (3, 12, 16) and y.shape == (12, 16) and y.dtype == torch.int64
        assert set(y.unique().tolist()) <= set(range(5)) | {11}
    # factor 1 is a plain crop: the same pixels as some window of the frame, maybe mirrored
    x1, y1 = FrameTensors(images, labels, crop=(12, 16), scale=(1.0, 1.0))[0]
    windows = [(images[0, :, t:t + 12, s:s + 16], labels[0, t:t + 12, s:s + 16]) for t in range(19) for s in range(25)]
    assert any(torch.equal(x1, w) and torch.equal(y1, v) or torch.equal(x1, w.flip(-1)) and torch.equal(y1, v.flip(-1))
               for w, v in windows)
    with pytest.raises(ValueError, match="0 < lo <= hi"):
        FrameTensors(images, labels, crop=(12, 16), scale=(1.5, 1.0))


def test_paired_margins_by_seed() -> None:
    import camvid_report

    def row(method: str, seeds: list[float], ft: list[int] | None = None) -> dict:
        return {"model": "m", "task": "segmentation", "method": method, "metric": sum(seeds) / len(seeds),
                "metric_seeds": seeds, "ft_seeds": ft or list(range(len(seeds)))}

    rows = [row("baseline", [50.0]), row("cpd", [40.0, 42.0, 41.0]), row("cpd-no-kd", [39.0, 42.0, 39.0]),
            row("tp-taylor", [40.0, 41.0, 40.0], ft=[3, 4, 5]),  # other seeds: not paired
            {"model": "m", "task": "segmentation", "method": "tp-magnitude", "metric": None}]  # failed
    # differences 1, 0, 2: mean 1, sample std 1, standard error 1 / sqrt(3)
    assert camvid_report.paired(rows) == [f"m, cpd minus (3 seeds): cpd-no-kd +1.00 ± {1 / 3 ** 0.5:.2f}"]
    assert camvid_report.paired([row("cpd", [40.0]), row("cpd-no-kd", [39.0])]) == []  # one seed: no spread
