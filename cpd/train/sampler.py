"""Samplers: a resumable distributed shuffle for training, plain sharding for eval.

Exact resume needs the data order of an interrupted epoch to be recoverable. The
shuffle of :class:`~torch.utils.data.DistributedSampler` is a pure function of
``(seed, epoch)`` (it uses its own generator, never the global one), so the order is
recomputed on resume and the batches already consumed are skipped.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized

from torch.utils.data import DistributedSampler, Sampler

__all__ = ["ResumableSampler", "ShardSampler"]


class ResumableSampler(DistributedSampler):
    """A :class:`DistributedSampler` that can start part-way into an epoch.

    With ``num_replicas=1`` it is an ordinary seeded shuffle, so single-process and
    distributed runs share one code path.

    Args:
        dataset: anything with ``__len__``.
        num_replicas, rank: the process group layout (1 and 0 when not distributed).
        shuffle: reshuffle every epoch (``set_epoch`` must be called, as usual).
        seed: the shuffle seed; must be the same on every rank.
        drop_last: drop the tail so every rank gets the same number of samples (else
            the shortest ranks are padded with repeated samples).
    """

    def __init__(
        self,
        dataset: Sized,
        num_replicas: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = True,
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last)  # type: ignore[arg-type]
        self.skip = 0

    def set_position(self, epoch: int, skip: int) -> None:
        """Start epoch ``epoch`` at this rank's sample ``skip`` (``batches_done * batch_size``)."""
        self.set_epoch(epoch)
        self.skip = int(skip)

    def set_epoch(self, epoch: int) -> None:
        """Start a new epoch from its beginning."""
        super().set_epoch(epoch)
        self.skip = 0

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        return iter(indices[self.skip :])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.skip)


class ShardSampler(Sampler[int]):
    """Rank ``r`` of ``w`` gets indices ``r, r + w, r + 2w, ...``: no padding, no repeats.

    For evaluation, where the padding of :class:`DistributedSampler` would count some
    samples twice; the metric counts are summed over ranks afterwards, so unequal shard
    lengths are harmless.
    """

    def __init__(self, dataset: Sized, num_replicas: int = 1, rank: int = 0) -> None:
        self.length = len(dataset)
        self.num_replicas = num_replicas
        self.rank = rank

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.length, self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.num_replicas))
