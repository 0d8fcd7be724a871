"""How well does each CamVid teacher fit its own training frames? (A diagnostic of the KD gain.)

Logit distillation helps when the teacher's soft outputs carry more than the labels.
A teacher that has memorised its training set gives near one-hot outputs there, which
add little to the task loss; one that fits the training frames no better than unseen
ones (underfit, as small models trained from scratch on 367 frames are) is *wrong*
wherever the labels are right, and pulls the student toward its errors. This script
evaluates the benchmark's trained baselines (the teachers) on the whole training
frames (no crop), val and test: mIoU, pixel accuracy and mean top-class probability
over labelled pixels.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/camvid_teacher_fit.py   # needs the baselines of camvid.py in its cache

Writes ``camvid_teacher_fit.json`` (one row per model and split) to ``--out-dir``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from camvid import CACHE, CAMVID, RESULTS, _task_options, model_config, parse_args  # noqa: E402
from camvid_cache import TRAIN_KEYS, Cache, fingerprint  # noqa: E402
from camvid_data import load_frames  # noqa: E402
from camvid_models import MODEL_TASK, build  # noqa: E402
from cpd.report.atomic import atomic_path  # noqa: E402
from cpd.tasks import build_task, logits_of  # noqa: E402
from cpd.tasks.segmentation import resize_logits  # noqa: E402


def fit_row(model: torch.nn.Module, task: Any, images: torch.Tensor, labels: torch.Tensor,
            ignore: int, batch: int = 32) -> dict[str, float]:
    """mIoU, pixel accuracy and mean max-probability of ``model`` on ``(N, 3, H, W)`` frames."""
    metric, conf = task.metric(), []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            y = labels[i:i + batch]
            logits = resize_logits(logits_of(model(images[i:i + batch])), tuple(y.shape[-2:]))  # (B, C, H, W)
            metric.update(logits, y)
            conf.append(logits.softmax(1).amax(1)[y != ignore])
    got = metric.compute()
    return {"miou": round(float(got["miou"]), 2), "pixel_acc": round(float(got["pixel_acc"]), 2),
            "mean_max_prob": round(float(torch.cat(conf).mean()), 4)}


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=None, help="comma-separated segmenters, default seg-cnn,segformer")
    p.add_argument("--quick", action="store_true", help="the baselines of camvid.py --quick (tiny models)")
    p.add_argument("--data", type=Path, default=CAMVID)
    p.add_argument("--cache-dir", type=Path, default=None, help="camvid.py's cache (default: its default)")
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    names = args.models.split(",") if args.models else ["seg-cnn-tiny"] if args.quick else ["seg-cnn", "segformer"]
    quick = ["--quick"] if args.quick else []
    cache = Cache(args.cache_dir or (Path(parse_args(quick).cache_dir) if quick else CACHE), fresh=False)
    rows = []
    for name in names:
        if MODEL_TASK.get(name) != "segmentation":
            raise SystemExit(f"{name!r} is not a CamVid segmenter; choose from "
                             f"{[m for m, t in MODEL_TASK.items() if t == 'segmentation']}")
        cfg = model_config(name, parse_args([*quick, "--models", name]))
        path = cache.weights(name, fingerprint(name, cfg, TRAIN_KEYS))
        if not path.exists():
            raise SystemExit(f"no trained {name} baseline at {path}; run benchmarks/camvid.py --models {name} first")
        model = build(name, seed=cfg["seed"])
        load_model(model, str(path))
        model.eval()
        opts = _task_options("segmentation", cfg)
        task = build_task("segmentation", **opts)
        for split in ("train", "val", "test"):
            most = cfg["train_items"] if split == "train" else cfg["test_items"]
            images, labels = load_frames(args.data, split, tuple(cfg["size"]), most)
            row = {"model": name, "split": split, "frames": len(images),
                   **fit_row(model, task, images, labels, opts["ignore_index"])}
            print(json.dumps(row), flush=True)
            rows.append(row)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out_dir / "camvid_teacher_fit.json") as tmp:
        tmp.write_text(json.dumps(rows, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
