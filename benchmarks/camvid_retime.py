"""Re-time the latency columns of cached CamVid rows, on a machine with nothing else running.

The benchmark is often run as several processes sharing the cores (one per model), and
a row's latency is then timed while another process trains. Speed-ups stay fair, because
each row's model is timed in alternation with its baseline, but the absolute
milliseconds are inflated by the load. ``python benchmarks/camvid.py --retime`` runs this
module alone afterwards: for every current row it rebuilds the row's first-seed model,
checks that the rebuilt model has the MACs the row recorded for that seed (the
architecture is the same one), and times it again against the baseline with more
rounds. The row's metric is not touched; its latency fields are replaced and it is
marked ``latency_alone``, so a second ``--retime`` skips it.

Rebuilding means running that seed's whole pipeline again (pruning happens inside
training, so the architecture depends on the training before each pruning step):
about a minute per row on the benchmark's models.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from camvid_runs import RUNNERS, paired_latency
from cpd.tasks.task import Task

__all__ = ["retime_rows"]

#: rebuilt MACs may differ from the recorded ones by rounding only (fractions kept to 4 digits)
MACS_TOL = 2e-4


def retime_rows(rows: list[dict[str, Any]], baseline: nn.Module, base_macs: int, task: Task, train: Dataset,
                test: Dataset, example: torch.Tensor, cfg: dict[str, Any], log: Callable[[str], None],
                rounds: int) -> Iterator[dict[str, Any]]:
    """Yield each row of one model with its latency re-timed; rows already re-timed or failed are skipped.

    Args:
        rows: cached rows of one model, all under today's configuration ``cfg``.
        baseline: the trained unpruned model (eval mode).
        base_macs: its MACs at ``example`` (``cpd.count``), to express the rebuilt model's as a fraction.
        example: ``(1, 3, H, W)`` input; batches of 1 and 8 are made from it.
        rounds: timing rounds, each model alternating with the baseline.

    Raises:
        RuntimeError: a rebuilt model's MACs differ from the row's first seed (the pipeline is
            no longer the one that made the row, so timing it would describe another model).
    """
    for row in rows:
        if row.get("error") or row.get("latency_alone"):
            continue
        if row["method"] == "baseline":
            ms, base_ms = paired_latency(baseline, None, example, rounds)
        else:
            seed = row["ft_seeds"][0]
            model, got, _ = RUNNERS[row["method"]](row["method"], baseline, task, train, test, example,
                                                   {**cfg, "ft_seed": seed}, log)
            macs = got.macs / base_macs
            if abs(macs - row["macs_seeds"][0]) > MACS_TOL:
                raise RuntimeError(f"{row['model']} {row['method']}: the rebuilt seed-{seed} model has {macs:.4f} "
                                   f"MACs, the row recorded {row['macs_seeds'][0]:.4f}; re-run the row instead")
            ms, base_ms = paired_latency(model.eval(), baseline.eval(), example, rounds)
        row.update(latency_ms_bs1=round(ms["bs1"], 3), latency_ms_bs8=round(ms["bs8"], 3),
                   base_latency_ms_bs1=round(base_ms["bs1"], 3), base_latency_ms_bs8=round(base_ms["bs8"], 3),
                   latency_alone=True, latency_rounds_alone=rounds)
        log(f"  {row['model']} {row['method']}: {ms['bs1']:.2f} / {ms['bs8']:.2f} ms "
            f"(baseline {base_ms['bs1']:.2f} / {base_ms['bs8']:.2f} ms)")
        yield row
