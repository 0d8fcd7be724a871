"""Two CPU processes with gloo: DDP training, pruning with all-reduced scores, exact resume.

The workers run under ``torch.multiprocessing`` (spawn) with the environment variables
torchrun would set, so the trainer takes its ordinary ``init_distributed()`` path.
"""

import os
import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import Subset

from cpd.data import build_dataset
from cpd.tasks import build_task
from cpd.train import (
    Callback,
    TrainConfig,
    Trainer,
    all_reduce_scores,
    init_distributed,
    list_checkpoints,
    read_checkpoint,
)

WORLD = 2


def mlp(hidden: int = 32, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def keep_hidden(model: nn.Sequential, keep: list[int]) -> nn.Sequential:
    idx = torch.tensor(keep)
    new = nn.Sequential(nn.Flatten(), nn.Linear(64, len(keep)), nn.ReLU(), nn.Linear(len(keep), 10))
    with torch.no_grad():
        new[1].weight.copy_(model[1].weight[idx])
        new[1].bias.copy_(model[1].bias[idx])
        new[3].weight.copy_(model[3].weight[:, idx])
        new[3].bias.copy_(model[3].bias)
    return new


class ShrinkByActivation(Callback):
    """Scores hidden units by mean |activation| on this rank's batch: a data-dependent score."""

    def __init__(self, at: int) -> None:
        self.at, self.keep, self.record = at, [], {}

    def on_batch(self, trainer, step, inputs, targets, loss_fn):  # type: ignore[no-untyped-def]
        if step != self.at:
            return None
        with torch.no_grad():
            local = {0: trainer.model[:3](inputs).abs().mean(0).double()}  # (32,)
        total = all_reduce_scores(local)
        self.keep = total[0].argsort(descending=True)[:16].sort().values.tolist()
        self.record = {"local": local[0], "total": total[0], "keep": self.keep}
        return keep_hidden(trainer.model, self.keep)

    def checkpoint_extra(self, trainer):  # type: ignore[no-untyped-def]
        return {"keep": self.keep} if self.keep else {}

    def on_resume(self, trainer, extra):  # type: ignore[no-untyped-def]
        self.keep = list(extra["keep"])
        return keep_hidden(mlp(), self.keep)


class Crash(Callback):
    def on_batch(self, trainer, step, inputs, targets, loss_fn):  # type: ignore[no-untyped-def]
        if step == 6:
            raise KeyboardInterrupt("simulated kill")


def worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    info = init_distributed()  # the test owns the group: the trainers reuse it and leave it up
    assert (info.rank, info.world_size) == (rank, WORLD) and dist.get_backend() == "gloo"
    train = Subset(build_dataset("digits", split="train"), range(256))
    val = Subset(build_dataset("digits", split="val"), range(50))
    task = build_task("classification")

    def run(name: str, callbacks: list[Callback], resume: bool = False) -> Trainer:
        config = TrainConfig(max_steps=8, batch_size=16, lr=5e-3, warmup_steps=2, alpha=0.5, eval_every=4,
                             log_every=2, out_dir=f"{out}/{name}", resume=resume)
        # Different initial weights per rank: DDP must broadcast rank 0's.
        trainer = Trainer(mlp(seed=rank), task, train, val, config=config, teacher=mlp(seed=7), callbacks=callbacks)
        trainer.fit()
        return trainer

    shrink = ShrinkByActivation(at=2)
    straight = run("straight", [shrink])
    try:
        run("resumed", [ShrinkByActivation(at=2), Crash()])
    except KeyboardInterrupt:
        pass
    resumed = run("resumed", [ShrinkByActivation(at=2)], resume=True)
    torch.save(
        {
            "straight": straight.model.state_dict(),
            "resumed": resumed.model.state_dict(),
            "metric": straight.best,
            **shrink.record,
        },
        f"{out}/rank{rank}.pt",
    )
    dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_ranks_agree(tmp_path: Path) -> None:
    mp.start_processes(worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, start_method="spawn")
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD))
    # all_reduce_scores: each rank scored its own shard; both hold the same sum.
    assert not torch.equal(r0["local"], r1["local"])
    assert torch.allclose(r0["total"], r0["local"] + r1["local"]) and torch.equal(r0["total"], r1["total"])
    assert r0["keep"] == r1["keep"] and len(r0["keep"]) == 16
    # Identical weights on both ranks, pruned and trained; same all-reduced metrics.
    for k in r0["straight"]:
        assert torch.equal(r0["straight"][k], r1["straight"][k]), k
    assert r0["straight"]["1.weight"].shape == (16, 64)
    assert r0["metric"] == r1["metric"] and r0["metric"]["value"] is not None
    # Exact resume under DDP (per-rank RNG states, sampler position, rebuilt architecture).
    for k in r0["straight"]:
        assert torch.equal(r0["straight"][k], r0["resumed"][k]), k
    # Only rank 0 wrote: one log, one set of checkpoints holding both ranks' RNG states.
    ckpts = list_checkpoints(tmp_path / "straight" / "checkpoints")
    assert [p.name for p in ckpts] == ["step-00000004", "step-00000008"]
    assert len(read_checkpoint(ckpts[-1]).state["rng"]) == WORLD
    assert len((tmp_path / "straight" / "log.jsonl").read_text().splitlines()) == 4
