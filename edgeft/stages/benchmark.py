"""benchmark: every listed artifact on every target that can run it.

Per row: accuracy and macro-F1 on the test split; latency p50/p90/p99 at batch 1 over real test
inputs at their own lengths; p50 at a fixed shape (batch 1, seq = max_length); throughput at
batch 32; size, params, MACs (fixed shape), peak RSS. Warm-up first, thread count fixed and
recorded, repetitions interleaved across rows so drift hits all alike.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, PositiveInt, NonNegativeInt

from .base import REF_RE, StageConfig


class BenchmarkConfig(StageConfig):
    type: Literal["benchmark"]
    artifacts: list[str] = Field(min_length=1, description="@refs of the artifacts to measure")
    targets: list[str] = Field(min_length=1, description="target names (see `edgeft targets`)")
    threads: PositiveInt = Field(2, description="intra-op threads for every runtime")
    latency_samples: PositiveInt = Field(300, description="test inputs timed at batch 1 per round")
    rounds: PositiveInt = Field(3, description="interleaved rounds over all rows")
    warmup: NonNegativeInt = 20
    fixed_runs: PositiveInt = Field(100, description="timed runs at the fixed shape per round")
    throughput_batch_size: PositiveInt = 32
    throughput_batches: PositiveInt = 8
    memory: bool = Field(True, description="measure peak RSS in a fresh process per row")

    accepts = ()
    machine_dependent: ClassVar[bool] = True   # the host fingerprint is part of the cache key

    def produces(self) -> str:
        return "report"

    def refs(self):
        from ..targets import TARGETS

        kinds = tuple(sorted({k for t in TARGETS.values() for k in t.accepts}))
        return [(f"artifacts[{i}]", r, kinds) for i, r in enumerate(self.artifacts)]

    def check(self, recipe, stages) -> list[tuple[str, str]]:
        import re

        from ..targets import TARGETS

        problems = []
        for i, r in enumerate(self.artifacts):
            if not re.match(REF_RE, r):
                problems.append((f"artifacts[{i}]", f"{r!r} is not a @stage reference"))
        if len(set(self.artifacts)) != len(self.artifacts):
            problems.append(("artifacts", "lists the same artifact twice"))
        for i, t in enumerate(self.targets):
            if t not in TARGETS:
                problems.append((f"targets[{i}]", f"unknown target {t!r}; known: {', '.join(TARGETS)}"))
        known = [TARGETS[t] for t in self.targets if t in TARGETS]
        by_name = {s.name: s for s in stages if s is not None}
        for i, r in enumerate(self.artifacts):
            src = by_name.get(r[1:])
            if src is None or not known:
                continue
            kind = src.produces()
            if not any(kind in t.accepts for t in known):
                problems.append((f"artifacts[{i}]", f"{r} is a {kind!r} artifact and none of the targets "
                                 f"({', '.join(self.targets)}) runs that kind"))
        return problems


def run(cfg: BenchmarkConfig, inputs: dict, ctx):
    raise NotImplementedError("benchmark.run")
