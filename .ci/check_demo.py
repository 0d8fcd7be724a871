"""CI: the demo's saved model loads with cpd.io.load and reproduces its reported accuracy."""

import json
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from cpd.data import build_dataset
from cpd.io import load
from cpd.tasks import build_task
from cpd.train.evaluate import evaluate

out = Path(sys.argv[1])
report = json.loads((out / "report.json").read_text())
model = load(out / "model")
task = build_task("classification")
val = build_dataset("digits", split="val", size=16)
got = evaluate(model, DataLoader(val, batch_size=64), task, torch.device("cpu"))[task.primary_metric]
want = report["pruned"]["metric"]
assert abs(got - want) < 1e-6, f"loaded model scores {got}, report says {want}"
assert report["macs_fraction"] <= 0.5, report["macs_fraction"]
print(f"demo check: loaded model top1 {got:.2f} == reported {want:.2f}; "
      f"MACs {report['macs_fraction']:.2f}x, params {report['params_fraction']:.2f}x")
