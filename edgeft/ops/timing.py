"""The benchmark timing core: interleaved repetitions, warm-up, percentiles, throughput, busy check.

`interleaved_latencies` runs several "rows" (e.g. one per artifact x target session), each a list of
zero-argument calls (one per request). Every round runs every row's whole list, rows in a rotated
order each round, so slow drift of a shared machine (thermal, a neighbour's job) hits all rows alike
instead of whichever happened to run last. Each call is timed alone with `time.perf_counter_ns`.

`time_rows` / `row_figures` are the benchmark's whole timing protocol on top of it (warm-up counts,
the real / fixed / throughput blocks per row, the busy-machine check, percentiles and throughput),
shared by the benchmark stage, benchmarks/compare_peers.py and runners on a device. This module needs
numpy only (psutil inside `cpu_snapshot`): no torch, transformers or edgeft config objects.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

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
    """(wall seconds, CPU seconds busy system-wide incl. hypervisor steal, CPU seconds of this process).
    psutil where installed; else /proc/stat (a device runner may have only numpy and its runtime); where
    neither can be read, the machine's busy time is this process's own (others' share then reads 0)."""
    try:
        import psutil
    except ImportError:
        own = os.times()
        mine = own.user + own.system
        return time.monotonic(), _proc_stat_busy(default=mine), mine
    t = psutil.cpu_times()
    busy = sum(getattr(t, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq", "steal"))
    p = psutil.Process().cpu_times()
    return time.monotonic(), busy, p.user + p.system


def _proc_stat_busy(default: float) -> float:
    """CPU seconds busy system-wide from /proc/stat's `cpu` line (user nice system idle iowait irq softirq
    steal, in clock ticks): all but idle and iowait."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(x) for x in fh.readline().split()[1:9]]
        ticks = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return default
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / ticks


def others_cpu_share(before: tuple[float, float, float], after: tuple[float, float, float], cores: int) -> float:
    """Share (0..1) of the machine's CPU used by anything but this process between two snapshots:
    other processes, and time the hypervisor gave to other guests (steal)."""
    wall = after[0] - before[0]
    if wall <= 0 or cores <= 0:
        return 0.0
    others = (after[1] - before[1]) - (after[2] - before[2])
    return min(1.0, max(0.0, others / (wall * cores)))


# ------------------------------------------------------------------ the benchmark protocol (stage, peers, devices)

BUSY_SHARE = 0.10    # other processes (or hypervisor steal) used more than this share of the CPU while timing
KINDS = ("real", "fixed", "tp")

log = logging.getLogger("edgeft")


@dataclass
class TimedRow:
    """What one row (one session) is timed on. `run(feed)` is the timed call (e.g. Session.run_feed);
    the feeds are whatever it takes, already encoded and filtered (nothing is converted while timing)."""
    run: Callable[[Any], object]
    real: Sequence[Any]         # batch-1 requests, each at its own length
    fixed: Any                  # one batch-1 request at the fixed shape, run `fixed_runs` times per round
    tp: Sequence[Any]           # throughput batches
    gpu_ms: Callable[[], float] | None = None   # GPU sessions: the device time of the call just made (CUDA events)

    @classmethod
    def of(cls, session, real: Sequence[dict], fixed: dict, tp: Sequence[dict]) -> TimedRow:
        """A targets.base.Session's row (anything with feed and run_feed): the feeds filtered once, up
        front, so only run_feed is timed. A session with `last_gpu_ms` (GPU targets) also has its device
        time read after each call."""
        return cls(session.run_feed, [session.feed(b) for b in real], session.feed(fixed),
                   [session.feed(b) for b in tp], getattr(session, "last_gpu_ms", None))


@dataclass
class Timing:
    """Raw times of `time_rows`: times[(row index, kind)] in ms, kind in KINDS, every round's calls in
    the order they ran; with what else the machine did meanwhile."""
    times: dict[tuple[int, str], list[float]]
    others_cpu_share: float          # share of all cores used by other work while timing (0..1)
    load_avg_1min: list[float]       # [before, after]
    cores: int
    gpu_times: dict[tuple[int, str], list[float]] | None = None   # GPU rows: device ms per timed call, same order

    @property
    def busy(self) -> bool:
        return self.others_cpu_share > BUSY_SHARE


def time_rows(rows: Sequence[TimedRow], rounds: int, warmup: int, fixed_runs: int,
              on_block: Callable[[int, tuple[int, str]], None] | None = None) -> Timing:
    """The benchmark's timing protocol: per row three blocks of calls, (i, "real") one call per real-length
    request, (i, "fixed") `fixed_runs` calls of the fixed-shape request, (i, "tp") one call per throughput
    batch. Warm-up (untimed): `warmup` real-length calls, min(warmup, fixed_runs) fixed-shape calls and one
    throughput batch per row; then `rounds` interleaved rounds over all blocks in rotated order
    (`interleaved_latencies`). Other processes' CPU share is measured over the rounds; above BUSY_SHARE
    a warning is logged."""
    calls: dict[tuple[int, str], list[Callable[[], object]]] = {}
    warm: dict[tuple[int, str], int] = {}
    gpu: dict[tuple[int, str], list[float]] = {}
    for i, r in enumerate(rows):
        run = r.run
        feeds = {"real": list(r.real), "fixed": [r.fixed] * fixed_runs, "tp": list(r.tp)}
        for kind, fs in feeds.items():
            if r.gpu_ms is not None:      # the device time is read right after each call (its events are reused)
                out = gpu[(i, kind)] = []
                calls[(i, kind)] = [partial(_with_gpu_time, run, r.gpu_ms, out, f) for f in fs]
            else:
                calls[(i, kind)] = [partial(run, f) for f in fs]
        warm.update({(i, "real"): warmup, (i, "fixed"): min(warmup, fixed_runs), (i, "tp"): 1})
    snap, load_before = cpu_snapshot(), load_avg()
    times = interleaved_latencies(calls, rounds, warm, on_block=on_block)
    cores = os.cpu_count() or 1
    others = round(others_cpu_share(snap, cpu_snapshot(), cores), 3)
    gpu_times = {k: v[len(v) - len(times[k]):] for k, v in gpu.items()} or None   # warm-up calls dropped
    timing = Timing(times, others, [load_before, load_avg()], cores, gpu_times)
    if timing.busy:
        log.warning("other work used %.0f%% of the %d cores while timing: latencies are inflated and noisy; "
                    "compare rows of this run only, or re-run on an idle machine", 100 * others, cores)
    return timing


def _with_gpu_time(run: Callable, gpu_ms: Callable[[], float], out: list, feed) -> None:
    run(feed)
    out.append(gpu_ms())


def gpu_figures(timing: Timing, i: int) -> dict:
    """Row i's device-side figures where its session reported them (GPU targets): gpu_latency_ms and
    gpu_latency_fixed_ms, {p50, p90, p99, mean} of the CUDA-event times of the same timed calls."""
    g = timing.gpu_times or {}
    if (i, "real") not in g:
        return {}
    return {"gpu_latency_ms": rounded(percentiles(g[(i, "real")])),
            "gpu_latency_fixed_ms": rounded(percentiles(g[(i, "fixed")]))}


def row_figures(real_ms: Sequence[float], fixed_ms: Sequence[float], tp_ms: Sequence[float],
                tp_sizes: Sequence[int]) -> dict:
    """One row's figures from its times: latency_ms and latency_fixed_ms ({p50, p90, p99, mean}, 4 decimals)
    and throughput_sps (2 decimals). `tp_sizes`: samples per throughput batch of one round (the batches
    ran in that order every round)."""
    if not tp_sizes or len(tp_ms) % len(tp_sizes):
        raise ValueError(f"{len(tp_ms)} throughput times for {len(tp_sizes)} batches per round")
    sizes = list(tp_sizes) * (len(tp_ms) // len(tp_sizes))
    return {"latency_ms": rounded(percentiles(real_ms)), "latency_fixed_ms": rounded(percentiles(fixed_ms)),
            "throughput_sps": round(throughput(sizes, tp_ms), 2)}


def batch_size(feed: dict) -> int:
    """Samples in an encoded batch (the first input's first axis)."""
    return len(next(iter(feed.values())))


def rounded(d: dict, digits: int = 4) -> dict:
    return {k: round(v, digits) for k, v in d.items()}


def load_avg() -> float:
    """The 1-minute load average (0.0 where the OS has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return 0.0
