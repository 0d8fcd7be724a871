"""Interleaved timing of several models (``cpd bench A B``), with fake timers."""

from __future__ import annotations

import pytest

from cpd.cli.bench_rounds import combine, time_rounds
from cpd.report.latency import Latency


def _latency(ms: float, runs: int = 2, batch: int = 1) -> Latency:
    return Latency(batch_size=batch, median_ms=ms, p90_ms=ms * 1.5, mean_ms=ms, min_ms=ms / 2,
                   throughput=batch / (ms / 1e3), runs=runs, warmup=1, threads=1, device="cpu")


def test_rounds_alternate_and_speedups_pair_rounds() -> None:
    calls: list[tuple[str, int, int, int]] = []
    load = iter([1.0, 1.0, 3.0, 3.0, 1.0, 1.0, 3.0, 3.0])  # the machine's load per call

    def timer(name: str, ms: float):
        def run(batch: int, *, warmup: int, repeats: int, max_seconds: float | None) -> Latency:
            calls.append((name, batch, warmup, repeats))
            return _latency(ms * next(load), batch=batch)
        return run

    results, speedups = time_rounds([{"torch": timer("a", 10.0)}, {"torch": timer("b", 5.0)}], ["torch"], [4],
                                    rounds=4, warmup=3, repeats=10, max_seconds=8.0)
    assert [c[0] for c in calls] == ["a", "b", "b", "a", "a", "b", "b", "a"]  # A B, B A, ...
    assert [c[2] for c in calls] == [3, 3, 1, 1, 1, 1, 1, 1] and {c[3] for c in calls} == {3}
    # Load rises to 3x in rounds 2 and 4, for both models in the same round: still 2x.
    assert speedups == [[1.0], [pytest.approx(2.0)]]
    assert results[0][0].runs == 8 and results[1][0].batch_size == 4


def test_combine_takes_medians() -> None:
    merged = combine([_latency(10.0), _latency(30.0), _latency(12.0)])
    assert merged.median_ms == 12.0 and merged.p90_ms == 18.0 and merged.min_ms == 5.0
    assert merged.runs == 6 and merged.throughput == pytest.approx(1 / 0.012)
    single = _latency(7.0)
    assert combine([single]) is single
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        time_rounds([], ["torch"], [1], rounds=0, warmup=0, repeats=1, max_seconds=None)
