"""How close ``cpd.prune(macs=F)`` lands to its target on full-size models.

ResNet-50 and ViT-B/16 from their default transformers configs (random weights),
global magnitude ranking, targets 0.7 and 0.5. Writes benchmarks/results/macs_target.json
as rows {"model", "target", "achieved", "rel_err", "rolled_back", "seconds"}.

    python benchmarks/macs_target.py
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path

import torch

import cpd

OUT = Path(__file__).resolve().parent / "results" / "macs_target.json"


def main() -> None:
    from transformers import (
        ResNetConfig,
        ResNetForImageClassification,
        ViTConfig,
        ViTForImageClassification,
    )

    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    rows = []
    for name, cfg, cls in [("resnet-50", ResNetConfig(), ResNetForImageClassification),
                           ("vit-b/16", ViTConfig(), ViTForImageClassification)]:
        torch.manual_seed(0)
        model = cls(cfg).eval()
        x = {"pixel_values": torch.randn(1, 3, 224, 224)}
        base = cpd.count(model, x)[0]
        for target in (0.7, 0.5):
            t0 = time.perf_counter()
            res = cpd.prune(model, x, macs=target)
            achieved = cpd.count(res.model, x)[0] / base
            rows.append({"model": name, "target": target, "achieved": round(achieved, 4),
                         "rel_err": round(abs(achieved - target) / target, 4),
                         "rolled_back": len(res.rolled_back),
                         "seconds": round(time.perf_counter() - t0, 1)})
            print(rows[-1], flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tmp = OUT.with_suffix(".tmp")
    tmp.write_text(json.dumps(rows, indent=1))
    os.replace(tmp, OUT)


if __name__ == "__main__":
    main()
