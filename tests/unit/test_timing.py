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


def test_time_rows_blocks_warmup_and_order(monkeypatch):
    """The benchmark protocol: per row a real, a fixed and a tp block; warm-up real=warmup,
    fixed=min(warmup, fixed_runs), tp=1; rounds rotate over all blocks; CPU share and load recorded."""
    import edgeft.ops.timing as timing
    from edgeft.ops.timing import TimedRow, time_rows

    calls = []
    rows = [TimedRow(lambda f, n=n: calls.append((n, f)), real=["r0", "r1", "r2"], fixed="F", tp=["t0", "t1"])
            for n in ("a", "b")]
    snaps = iter([(0.0, 0.0, 0.0), (10.0, 12.0, 4.0)])       # others used 8 of 2 cores x 10 s
    monkeypatch.setattr(timing, "cpu_snapshot", lambda: next(snaps))
    monkeypatch.setattr(timing.os, "cpu_count", lambda: 2)
    loads = iter([1.5, 2.25])
    monkeypatch.setattr(timing, "load_avg", lambda: next(loads))
    blocks = []
    t = time_rows(rows, rounds=2, warmup=4, fixed_runs=2, on_block=lambda r, name: blocks.append((r, name)))
    warm, timed = calls[:2 * (4 + 2 + 1)], calls[2 * (4 + 2 + 1):]
    assert warm[:7] == [("a", "r0"), ("a", "r1"), ("a", "r2"), ("a", "r0"), ("a", "F"), ("a", "F"), ("a", "t0")]
    assert [n for n, _ in warm[7:]] == ["b"] * 7
    names = [(i, k) for i in (0, 1) for k in ("real", "fixed", "tp")]
    assert list(t.times) == names
    assert [b for r, b in blocks if r == 0] == names and [b for r, b in blocks if r == 1] == names[1:] + names[:1]
    assert timed[:7] == [("a", "r0"), ("a", "r1"), ("a", "r2"), ("a", "F"), ("a", "F"), ("a", "t0"), ("a", "t1")]
    assert {k: len(v) for k, v in t.times.items()} == {(i, k): 2 * n for i in (0, 1)
                                                       for k, n in (("real", 3), ("fixed", 2), ("tp", 2))}
    assert t.others_cpu_share == 0.4 and t.busy and t.cores == 2 and t.load_avg_1min == [1.5, 2.25]
    # the fixed block never warms up more than it runs; the throughput block always warms up once
    monkeypatch.setattr(timing, "cpu_snapshot", lambda: (0.0, 0.0, 0.0))
    monkeypatch.setattr(timing, "load_avg", lambda: 0.0)
    for warmup, fixed_runs, warm in ((3, 1, ["r0", "r1", "r2", "F", "t0"]), (0, 5, ["t0"])):
        calls.clear()
        t = time_rows(rows[:1], rounds=1, warmup=warmup, fixed_runs=fixed_runs)
        assert [f for _, f in calls] == warm + ["r0", "r1", "r2"] + ["F"] * fixed_runs + ["t0", "t1"]
        assert not t.busy and t.others_cpu_share == 0.0


def test_row_figures():
    from edgeft.ops.timing import BUSY_SHARE, Timing, row_figures

    f = row_figures([1.0, 2.0, 3.0, 4.0], [5.123456, 5.123456], [500.0, 250.0, 500.0, 250.0], [32, 16])
    assert f["latency_ms"] == {"p50": 2.5, "p90": 3.7, "p99": 3.97, "mean": 2.5}
    assert f["latency_fixed_ms"] == {"p50": 5.1235, "p90": 5.1235, "p99": 5.1235, "mean": 5.1235}
    assert f["throughput_sps"] == round(96 / 1.5, 2) == 64.0
    assert list(f) == ["latency_ms", "latency_fixed_ms", "throughput_sps"]
    with pytest.raises(ValueError):
        row_figures([1.0], [1.0], [1.0, 2.0, 3.0], [8, 8])        # not whole rounds of the batches
    assert not Timing({}, BUSY_SHARE, [0.0, 0.0], 1).busy


def test_batch_size_and_load():
    from edgeft.ops.timing import batch_size, load_avg

    assert batch_size({"input_ids": np.zeros((7, 3)), "attention_mask": np.zeros((7, 3))}) == 7
    assert load_avg() >= 0.0


def test_cpu_snapshot_without_psutil_reads_proc_stat(monkeypatch):
    """A device runner may lack psutil: the snapshot then comes from /proc/stat and os.times."""
    import sys

    from edgeft.ops.timing import cpu_snapshot, others_cpu_share

    with_psutil = cpu_snapshot()
    monkeypatch.setitem(sys.modules, "psutil", None)
    before = cpu_snapshot()
    sum(i * i for i in range(200_000))                  # some CPU time of our own
    after = cpu_snapshot()
    assert after[0] > before[0] and after[2] >= before[2] and after[1] >= before[1] > 0
    assert abs(before[1] - with_psutil[1]) < 5.0        # the same system-wide busy seconds psutil reads
    assert 0.0 <= others_cpu_share(before, after, 2) <= 1.0
