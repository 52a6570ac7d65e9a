"""Timing: interleaved repetitions and percentiles. Plain functions, no models needed to test them.

`interleaved_latencies` runs several "rows" (e.g. one per artifact x target session), each a list of
zero-argument calls (one per request). Every round runs every row's whole list, rows in a rotated
order each round, so slow drift of a shared machine (thermal, a neighbour's job) hits all rows alike
instead of whichever happened to run last. Each call is timed alone with `time.perf_counter_ns`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence

import numpy as np


def rotated(items: Sequence, shift: int) -> list:
    """`items` rotated left by `shift` (mod len)."""
    items = list(items)
    if not items:
        return items
    s = shift % len(items)
    return items[s:] + items[:s]


def interleaved_latencies(rows: dict[Hashable, Sequence[Callable[[], object]]], rounds: int,
                          warmup: int | dict[Hashable, int] = 0,
                          on_block: Callable[[int, Hashable], None] | None = None) -> dict[Hashable, list[float]]:
    """Per-call wall times in milliseconds, `rounds` x len(calls) per row.

    Warm-up: `warmup` untimed calls per row (an int, or a count per row name) before the first
    round, cycling through the row's calls. Round r runs the rows in `rotated(order, r)`; within a
    row the calls run in their given order. `on_block(r, name)` is called after each row of each
    round (progress bars).
    """
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    names = list(rows)
    for name in names:
        calls = rows[name]
        n = warmup.get(name, 0) if isinstance(warmup, dict) else warmup
        for i in range(n if calls else 0):
            calls[i % len(calls)]()
    times: dict[Hashable, list[float]] = {name: [] for name in names}
    clock = time.perf_counter_ns
    for r in range(rounds):
        for name in rotated(names, r):
            out = times[name]
            for fn in rows[name]:
                t0 = clock()
                fn()
                out.append((clock() - t0) / 1e6)
            if on_block is not None:
                on_block(r, name)
    return times


def percentiles(ms: Sequence[float], qs: Sequence[int] = (50, 90, 99)) -> dict[str, float]:
    """{'p50': ..., 'p90': ..., 'p99': ..., 'mean': ...} (linear interpolation, as numpy does)."""
    a = np.asarray(list(ms), dtype=np.float64)
    if a.size == 0:
        raise ValueError("no timings")
    out = {f"p{q}": float(np.percentile(a, q)) for q in qs}
    out["mean"] = float(a.mean())
    return out


def throughput(samples_per_call: Sequence[int], ms: Sequence[float]) -> float:
    """Samples per second over calls that processed `samples_per_call[i]` samples in `ms[i]` ms."""
    total_ms = float(np.sum(ms))
    if total_ms <= 0:
        raise ValueError("no time measured")
    return float(np.sum(samples_per_call)) / (total_ms / 1e3)


def cpu_snapshot() -> tuple[float, float, float]:
    """(wall seconds, CPU seconds busy system-wide incl. hypervisor steal, CPU seconds of this process)."""
    import psutil

    t = psutil.cpu_times()
    busy = sum(getattr(t, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq", "steal"))
    p = psutil.Process().cpu_times()
    return time.monotonic(), busy, p.user + p.system


def others_cpu_share(before: tuple[float, float, float], after: tuple[float, float, float], cores: int) -> float:
    """Share (0..1) of the machine's CPU used by anything but this process between two snapshots:
    other processes, and time the hypervisor gave to other guests (steal)."""
    wall = after[0] - before[0]
    if wall <= 0 or cores <= 0:
        return 0.0
    others = (after[1] - before[1]) - (after[2] - before[2])
    return min(1.0, max(0.0, others / (wall * cores)))
