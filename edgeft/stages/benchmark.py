"""benchmark: every listed artifact on every target that can run it (one row per pair).

Per row:
- accuracy, f1: accuracy and macro-F1 on the whole test split (batches of 64 sorted by length).
- latency_ms {p50, p90, p99, mean}: batch 1, a seeded sample of `latency_samples` test texts, each
  at its own length (no padding), every request timed alone. Tokenizing is not timed.
- latency_fixed_ms: batch 1 at a fixed shape, seq = data.max_length (padded), `fixed_runs` per round.
- throughput_sps: samples/s at batch `throughput_batch_size` over real test texts padded to the
  longest of each batch.
- size_mb: the model weights a user ships for this runtime: the safetensors/bin files of a torch
  folder, the .onnx file plus its external data. Tokenizer and config are left out (the same for
  every row); files_mb has every file of the artifact.
- params, macs: counted on the torch model the artifact came from (its `torch_source`), MACs of one
  batch-1 forward at seq = max_length with FlopCounterMode (ops/macs.py); an INT8 model does the
  same MACs in INT8.
- peak_rss_mb, model_rss_mb: from a fresh process per row (targets/memprobe.py) that loads the
  artifact and runs batch 1 and batch 32 at max_length; model_rss_mb leaves out the interpreter and
  the runtime's own imports.
- speedup_vs_reference / accuracy_delta_vs_reference (points): against the pytorch row of
  `reference` when set (e.g. the dense teacher, so pruned rows show what pruning bought), else of the
  same torch ancestor (else the first pytorch row); null without one.

Warm-up first, thread count fixed and recorded, and every round runs every row in a rotated order,
so drift on a shared machine hits all rows alike (ops/timing.py `time_rows`; the inputs come from
targets/inputs.py, shared with benchmarks/compare_peers.py). Raw per-request times go to timings.json.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar, Literal

from pydantic import Field, NonNegativeInt, PositiveInt

from ..schema import REF_RE
from ..targets.remote import RemoteTarget
from .base import StageConfig

log = logging.getLogger("edgeft")


class BenchmarkConfig(StageConfig):
    type: Literal["benchmark"]
    artifacts: list[str] = Field(min_length=1, description="@refs of the artifacts to measure")
    targets: list[str | RemoteTarget] = Field(min_length=1, description="local target names (see `edgeft targets`) "
                                              "and SSH devices {name, ssh, runtime, ...} (targets/remote.py)")
    threads: PositiveInt = Field(2, description="intra-op threads for every runtime")
    # 3: the openvino targets answer batch-1 text requests on static sequence-length buckets
    # 4: rows measured and cached per device (this machine, each SSH device); rows carry `device`
    version: ClassVar[int] = 4
    latency_samples: PositiveInt = Field(300, description="test inputs timed at batch 1 per round")
    rounds: PositiveInt = Field(3, description="interleaved rounds over all rows")
    warmup: NonNegativeInt = Field(20, description="untimed batch-1 runs per row before timing")
    fixed_runs: PositiveInt = Field(100, description="timed runs at the fixed shape per round")
    throughput_batch_size: PositiveInt = 32
    throughput_batches: PositiveInt = Field(8, description="timed batches per row per round")
    eval_batch_size: PositiveInt = Field(64, description="batch size of the accuracy pass")
    memory: bool = Field(True, description="measure peak RSS in a fresh process per row")
    reference: str | None = Field(None, pattern=REF_RE, description="@artifact (of `artifacts`) whose pytorch "
                                  "row every row is compared with; default: each row's own torch model")

    accepts = ()
    machine_dependent: ClassVar[bool] = True   # the host fingerprint is part of the cache key

    def produces(self) -> str:
        return "report"

    def refs(self):
        from ..targets import TARGETS
        from ..targets.remote import RUNTIME_KINDS

        kinds = tuple(sorted({k for t in TARGETS.values() for k in t.accepts} |
                             {k for ks in RUNTIME_KINDS.values() for k in ks}))
        return [(f"artifacts[{i}]", r, kinds) for i, r in enumerate(self.artifacts)]

    def check(self, recipe, stages) -> list[tuple[str, str]]:
        import re

        from ..targets import TARGETS, kind_unavailable_reason, unavailable_reason

        problems = []
        for i, r in enumerate(self.artifacts):
            if not re.match(REF_RE, r):
                problems.append((f"artifacts[{i}]", f"{r!r} is not a @stage reference"))
        if self.reference and self.reference not in self.artifacts:
            problems.append(("reference", f"{self.reference} is not one of `artifacts`"))
        elif self.reference and "pytorch" not in self.targets:
            problems.append(("reference", "needs the pytorch target (the reference is a PyTorch eager row)"))
        if len(set(self.artifacts)) != len(self.artifacts):
            problems.append(("artifacts", "lists the same artifact twice"))
        seen: dict[str, int] = {}
        for i, t in enumerate(self.targets):
            name = target_name(t)
            if name in seen:
                problems.append((f"targets[{i}]", f"target {name!r} is listed twice (also targets[{seen[name]}])"))
            seen.setdefault(name, i)
            if isinstance(t, RemoteTarget):
                if t.name in TARGETS:
                    problems.append((f"targets[{i}].name", f"{t.name!r} is a local target's name; name the device "
                                     "something else"))
                if t.ssh_config and not recipe.resolve_path(t.ssh_config).is_file():
                    problems.append((f"targets[{i}].ssh_config", f"no such file: {recipe.resolve_path(t.ssh_config)}"))
            elif t not in TARGETS:
                problems.append((f"targets[{i}]", f"unknown target {t!r}; known: {', '.join(TARGETS)}; "
                                 "an SSH device is a mapping {name, ssh, runtime}"))
            elif reason := unavailable_reason(t):
                problems.append((f"targets[{i}]", f"{t}: {reason}"))
        known = [t for t in self.targets if isinstance(t, RemoteTarget) or t in TARGETS]
        usable = [t for t in known if isinstance(t, str) and not unavailable_reason(t)]
        by_name = {s.name: s for s in stages if s is not None}
        for i, r in enumerate(self.artifacts):
            src = by_name.get(r[1:])
            if src is None or not known:
                continue
            kind = src.produces()
            limits = src.target_limits()
            if not any(kind in target_accepts(t) for t in known):
                problems.append((f"artifacts[{i}]", f"{r} is a {kind!r} artifact and none of the targets "
                                 f"({', '.join(map(target_name, self.targets))}) runs that kind"))
            elif limits and not any(limit_name(t) in limits[0] and kind in target_accepts(t) for t in known):
                problems.append((f"artifacts[{i}]", f"{r} runs only on {', '.join(limits[0])} ({limits[1]}); "
                                 f"add that target"))
            for t in usable:            # e.g. ONNX on cuda needs ONNX Runtime's CUDA provider, torch does not
                if kind in TARGETS[t].accepts and (reason := kind_unavailable_reason(t, kind)):
                    problems.append((f"artifacts[{i}]", f"{r} ({kind}) on {t}: {reason}"))
        return problems


def run(cfg: BenchmarkConfig, inputs: dict, ctx):
    from ..errors import StageError
    from ..rows import compare_to_reference, int8_gains, summary, training_rows
    from ..store import Store
    from ..targets.inputs import sample_indices
    from ..targets.remote import DeviceError
    from .benchmark_groups import agreement_with_host, measure_device, measure_local

    task, recipe, splits = ctx.task, ctx.recipe, ctx.splits()
    pairs, not_run = plan_pairs(cfg, recipe, inputs["artifacts"])
    if not pairs:
        raise StageError(f"no target of {[target_name(t) for t in cfg.targets]} runs any of the artifacts given")
    lat_idx, tp_idx = sample_indices(len(splits.test), recipe.seed, cfg.latency_samples,
                                     cfg.throughput_batch_size, cfg.throughput_batches)
    prepared = prepare(cfg, task, recipe, splits.test, pairs, lat_idx, tp_idx)
    store = Store(ctx.out_dir.parent)
    rows, raw, environment, failed_targets, predictions = [], {}, {}, [], {}
    for where, group in plan_groups(pairs):
        try:
            got = (measure_local(cfg, ctx, store, group, prepared) if where is None
                   else measure_device(cfg, ctx, store, where, group, prepared))
        except DeviceError as e:       # this device's rows are left out; the other targets' rows stay
            log.error("%s", e)
            failed_targets.append({"target": e.device, "step": e.step, "error": str(e),
                                   "artifacts": [a.stage for _, a in group]})
            continue
        rows += got["rows"]
        raw.update(got["raw"])
        predictions.update(got.get("predictions") or {})
        environment.update(got["environment"])
    if not rows:
        raise StageError("no target measured anything: " + "; ".join(f["error"] for f in failed_targets))
    compare_to_reference(rows, cfg.reference[1:] if cfg.reference else None)
    int8_gains(rows)
    agreement_with_host(rows, predictions)
    for r in rows:
        log.info(summary(r))
    trained = {b.key: b for a in inputs["artifacts"] for b in (a, torch_ancestor(a))
               if b is not None and "trainable_params" in b.meta}
    write_report(ctx, cfg, rows, not_run, failed_targets, environment, raw, prepared[pairs[0][1].key].inputs,
                 training=training_rows(list(trained.values())))
    meta = {"rows": len(rows)}
    if failed_targets:      # the runner keeps the report, fails the stage, and re-measures these next run
        meta["incomplete"] = [f["error"] for f in failed_targets]
    return ctx.artifact("report", file="report.json", meta=meta)


# ----------------------------------------------------------------------------------------------- helpers


def target_name(t) -> str:
    return t if isinstance(t, str) else t.name


def target_accepts(t) -> tuple[str, ...]:
    from ..targets import TARGETS

    return TARGETS[t].accepts if isinstance(t, str) else t.accepts


def limit_name(t) -> str:
    """The name a stage's target limits know this target by (an SSH device: its runtime's local target)."""
    return t if isinstance(t, str) else t.runs_as


@dataclass
class Prepared:
    """What one artifact needs once: its encoded inputs and the params / MACs of its torch ancestor."""
    inputs: object                  # targets.inputs.BenchInputs (shared by artifacts of one preprocessing)
    ancestor: str | None            # the torch ancestor's key
    counts: dict                    # {"params", "macs"} of the ancestor ({} without one)
    inputs_hash: str = ""           # content hash of the encoded inputs (device/protocol.inputs_hash)


def plan_pairs(cfg: BenchmarkConfig, recipe, artifacts) -> tuple[list, list[dict]]:
    """(target, artifact) pairs to measure, targets in recipe order then artifacts; and the pairs a
    stage's target limits leave out, with the reason. A target is a local target's name or a
    targets.remote.RemoteTarget."""
    pairs, not_run = [], []
    for t in cfg.targets:
        for a in artifacts:
            if a.kind not in target_accepts(t):
                continue
            limits = recipe.stage(a.stage).target_limits()   # a.stage: this recipe's name (runner)
            if limits and limit_name(t) not in limits[0]:
                not_run.append({"artifact": a.stage, "target": target_name(t), "reason": limits[1]})
                log.info("%s on %s: not run (%s)", a.stage, target_name(t), limits[1])
            else:
                pairs.append((t, a))
    return pairs, not_run


def plan_groups(pairs: list) -> list[tuple]:
    """The pairs by where they run: (None, this machine's pairs) first, then (RemoteTarget, its pairs)
    per SSH device. Each group is timed (interleaved) and cached on its own."""
    local = [(t, a) for t, a in pairs if isinstance(t, str)]
    out = [(None, local)] if local else []
    remote = {id(t): t for t, _ in pairs if not isinstance(t, str)}      # config objects: by identity
    for t in remote.values():
        out.append((t, [(u, a) for u, a in pairs if u is t]))
    return out


def prepare(cfg: BenchmarkConfig, task, recipe, test, pairs, lat_idx, tp_idx) -> dict[str, Prepared]:
    """Per artifact key: encoded inputs (once per distinct preprocessing: images share one for every
    artifact of the run) and the counts of its torch ancestor (once per ancestor)."""
    from ..device.protocol import inputs_hash, pack_inputs
    from ..targets.inputs import encode_bench_inputs

    max_len = recipe.data.max_length
    prepared, counted, encoded = {}, {}, {}
    for a in {a.key: a for _, a in pairs}.values():
        proc = task.load_processor(a.path, recipe.data)
        enc_key = task.processor_key(proc, a.path)
        if enc_key not in encoded:
            x = encode_bench_inputs(task, proc, test.items, max_len, lat_idx, tp_idx, cfg.throughput_batches,
                                    fixed_length=max_len, eval_batch_size=cfg.eval_batch_size)
            encoded[enc_key] = (x, inputs_hash(pack_inputs(x.evals, x.real, x.fixed, x.tp)))
        src = torch_ancestor(a)
        if src is None:
            log.warning("%s: no torch ancestor found (meta.torch_source); params and MACs left empty", a.stage)
        elif src.key not in counted:
            counted[src.key] = count_model(task, src, max_len)
        x, h = encoded[enc_key]
        prepared[a.key] = Prepared(x, src.key if src else None, counted.get(src.key, {}) if src else {}, h)
    return prepared


def write_report(ctx, cfg: BenchmarkConfig, rows: list[dict], not_run: list[dict], failed_targets: list[dict],
                 environment: dict, raw: dict, x, training: list | None = None) -> None:
    """report.json (rows, environment of this machine and of each device, settings, data; token figures
    of the first row's inputs `x`) and timings.json (every raw time, 4 decimals)."""
    import datetime as dt
    import json

    from ..data import report_fields
    from ..targets.fingerprint import host_fingerprint, runtime_versions

    recipe, task, splits = ctx.recipe, ctx.task, ctx.splits()
    local = {k: environment[k] for k in ("others_cpu_share", "load_avg_1min", "busy") if k in environment}
    devices = {k: v for k, v in environment.items() if k not in local}
    report = {
        "recipe": recipe.dump(),
        "environment": {**host_fingerprint(), "runtimes": runtime_versions(), **local},
        "devices": devices,
        "settings": {**cfg.model_dump(mode="json", exclude={"name", "type", "input", "artifacts"}),
                     "latency_samples_used": len(x.real), "fixed_shape": task.fixed_shape(recipe.data),
                     "sample_mean_tokens": round(float(x.real_lengths.mean()), 1),
                     "seed": recipe.seed},
        "data": {**splits.sizes(), "labels": list(splits.label_names),
                 "test_mean_tokens": round(float(x.lengths.mean()), 1), **report_fields(splits)},
        "rows": rows,
        # how each trained model among the artifacts (and their torch ancestors) was trained, and its cost
        "training": training or [],
        "not_run": not_run,
        # stages of this run that failed (and those that needed them): their artifacts are not measured
        "failed_stages": ctx.failures,
        # SSH devices that failed (unreachable, lost, no runtime, ...): their rows are missing
        "failed_targets": failed_targets,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    (ctx.out_dir / "report.json").write_text(json.dumps(report, indent=2))
    (ctx.out_dir / "timings.json").write_text(json.dumps(raw))


def torch_ancestor(artifact):
    """The torch artifact this one was made from (itself for torch), or None."""
    from ..store import Store

    if artifact.kind == "torch":
        return artifact
    key = artifact.meta.get("torch_source")
    return Store(artifact.path.parent).get(key) if key else None


def count_model(task, artifact, max_len: int) -> dict:
    import torch

    from ..ops.macs import count_macs, count_params
    from ..targets.pytorch import TorchSession

    model = task.load_model(artifact.path)
    names = TorchSession(model, 1).input_names
    feed = {k: torch.from_numpy(v) for k, v in task.dummy_inputs(names, 1, max_len, artifact.path).items()}
    return {"params": count_params(model), "macs": count_macs(model, feed)}
