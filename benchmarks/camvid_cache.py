"""Configuration fingerprints and the row cache of the CamVid benchmark.

A finished (model, method) row is stored in ``rows.json`` under a fingerprint: a hash of
every setting that could change it. A re-run with the same settings takes the row from
the cache; any change of a setting the row depends on makes a new fingerprint, so a
stale row is never reported. Baseline weights are cached the same way, under the
fingerprint of the settings their training depends on (``TRAIN_KEYS``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from cpd.report.atomic import atomic_path

__all__ = ["BASE_KEYS", "DATA_KEYS", "TRAIN_KEYS", "Cache", "fingerprint"]

#: settings the trained baseline depends on (its weights are cached under their fingerprint)
TRAIN_KEYS = ("size", "crop", "crop_scale", "train_items", "patch", "train_frames", "batch_size", "base_steps",
              "base_lr", "base_warmup", "weight_decay", "seed")
#: settings the baseline row depends on (the evaluation set and the latency protocol too)
BASE_KEYS = (*TRAIN_KEYS, "eval_split", "test_items", "test_frames", "latency_rounds")
DATA_KEYS = ("size", "crop", "crop_scale", "train_items", "test_items", "patch", "train_frames", "test_frames",
             "eval_split")


#: keys added after rows were cached, with the value the older rows ran with: omitted from
#: the fingerprint at that value (so those rows stay valid), and for the methods they do
#: not affect (below); ``crop_scale`` (scale jitter of the training crops) affects every
#: row. ``cpd_rev`` counts library changes that change cpd's results (2: the schedule no
#: longer overshoots step goals).
LATE_KEYS: dict[str, Any] = {"cpd_cost": None, "cpd_ratio": None, "cpd_alloc": "global", "cpd_feat": None,
                             "cpd_rev": 1, "seg_kd": "pixel", "crop_scale": None, "extra_view": "none"}
#: late keys that only change cpd's runs (omitted for Torch-Pruning rows)
CPD_ONLY_KEYS = ("cpd_cost", "cpd_ratio", "cpd_alloc", "cpd_feat", "cpd_rev", "seg_kd", "extra_view")
#: late keys that only change runs that distil (omitted for every other method)
KD_ONLY_KEYS = ("seg_kd",)


def fingerprint(name: str, cfg: dict[str, Any], keys: tuple[str, ...] | None = None,
                method: str | None = None) -> str:
    chosen = {k: cfg[k] for k in (keys or sorted(cfg)) if k in cfg}
    for k, old in LATE_KEYS.items():
        unused = method is not None and ((k in CPD_ONLY_KEYS and not method.startswith("cpd"))
                                         or (k in KD_ONLY_KEYS and method != "cpd"))
        if k in chosen and (chosen[k] == old or unused):
            del chosen[k]
    blob = json.dumps({"model": name, **chosen}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


class Cache:
    """Finished rows (``rows.json``) and baseline weights, keyed by configuration fingerprints."""

    def __init__(self, folder: Path, fresh: bool) -> None:
        self.folder = folder
        self.path = folder / "rows.json"
        self.rows: list[dict[str, Any]] = [] if fresh or not self.path.exists() else json.loads(self.path.read_text())
        self.fresh = fresh

    def get(self, model: str, method: str, fp: str) -> dict[str, Any] | None:
        return next((r for r in self.rows if (r["model"], r["method"], r["fingerprint"]) == (model, method, fp)), None)

    def put(self, row: dict[str, Any]) -> None:
        key = (row["model"], row["method"], row["fingerprint"])
        self.rows = [r for r in self.rows if (r["model"], r["method"], r["fingerprint"]) != key] + [row]
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(self.rows, indent=1) + "\n")

    def weights(self, model: str, fp: str) -> Path:
        return self.folder / f"baseline-{model}-{fp}.safetensors"
