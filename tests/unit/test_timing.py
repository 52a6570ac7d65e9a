"""ops/timing: percentiles on known data, and interleaving that really interleaves."""

from __future__ import annotations

import time

import numpy as np
import pytest

from edgeft.ops.timing import interleaved_latencies, percentiles, rotated, throughput


def test_percentiles_known_values():
    p = percentiles(range(1, 101))
    assert p["p50"] == pytest.approx(50.5)
    assert p["p90"] == pytest.approx(90.1)
    assert p["p99"] == pytest.approx(99.01)
    assert p["mean"] == pytest.approx(50.5)
    assert percentiles([3.0]) == {"p50": 3.0, "p90": 3.0, "p99": 3.0, "mean": 3.0}
    # order does not matter, and it agrees with numpy
    data = np.random.default_rng(0).exponential(size=257)
    q = percentiles(list(data[::-1]))
    assert q["p99"] == pytest.approx(np.percentile(data, 99))
    assert q["p50"] <= q["p90"] <= q["p99"]
    with pytest.raises(ValueError):
        percentiles([])


def test_rotated():
    assert rotated("abc", 0) == ["a", "b", "c"]
    assert rotated("abc", 1) == ["b", "c", "a"]
    assert rotated("abc", 4) == ["b", "c", "a"]
    assert rotated([], 3) == []


def test_interleaving_order_warmup_and_counts():
    calls = []

    def make(name, i):
        return lambda: calls.append((name, i))

    rows = {n: [make(n, i) for i in range(3)] for n in ("a", "b", "c")}
    blocks = []
    times = interleaved_latencies(rows, rounds=3, warmup={"a": 4, "b": 1}, on_block=lambda r, n: blocks.append((r, n)))
    warm, timed = calls[:5], calls[5:]
    # warm-up: cycles through each row's calls, before anything is timed
    assert warm == [("a", 0), ("a", 1), ("a", 2), ("a", 0), ("b", 0)]
    # every round runs every row's whole list; row order rotates each round
    assert [n for n, _ in timed[::3]] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert timed[:3] == [("a", 0), ("a", 1), ("a", 2)]
    assert blocks == [(0, "a"), (0, "b"), (0, "c"), (1, "b"), (1, "c"), (1, "a"), (2, "c"), (2, "a"), (2, "b")]
    assert {n: len(v) for n, v in times.items()} == {"a": 9, "b": 9, "c": 9}
    assert all(t >= 0 for v in times.values() for t in v)


def test_times_are_milliseconds():
    times = interleaved_latencies({"sleep": [lambda: time.sleep(0.01)] * 3}, rounds=1)
    assert all(9.0 <= t < 200 for t in times["sleep"])
    with pytest.raises(ValueError):
        interleaved_latencies({"x": []}, rounds=0)


def test_throughput():
    assert throughput([32, 32], [500.0, 500.0]) == pytest.approx(64.0)
    with pytest.raises(ValueError):
        throughput([1], [0.0])


def test_others_cpu_share():
    from edgeft.ops.timing import cpu_snapshot, others_cpu_share

    # 10 s wall on 2 cores, 12 CPU-s busy system-wide of which 4 are ours: others used 8 of 20
    assert others_cpu_share((0.0, 100.0, 50.0), (10.0, 112.0, 54.0), 2) == pytest.approx(0.4)
    assert others_cpu_share((0.0, 0.0, 0.0), (0.0, 5.0, 0.0), 2) == 0.0        # no wall time
    assert others_cpu_share((0.0, 0.0, 0.0), (1.0, 0.0, 3.0), 2) == 0.0        # clamped at 0
    a = cpu_snapshot()
    sum(range(200_000))
    b = cpu_snapshot()
    assert 0.0 <= others_cpu_share(a, b, 2) <= 1.0 and b[2] >= a[2]
