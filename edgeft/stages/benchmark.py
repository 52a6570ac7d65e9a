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
so drift on a shared machine hits all rows alike. Raw per-request times go to timings.json.
"""

from __future__ import annotations

import logging
import os
from typing import ClassVar, Literal

from pydantic import Field, PositiveInt, NonNegativeInt

from ..schema import REF_RE
from .base import StageConfig

log = logging.getLogger("edgeft")


class BenchmarkConfig(StageConfig):
    type: Literal["benchmark"]
    artifacts: list[str] = Field(min_length=1, description="@refs of the artifacts to measure")
    targets: list[str] = Field(min_length=1, description="target names (see `edgeft targets`)")
    threads: PositiveInt = Field(2, description="intra-op threads for every runtime")
    # 3: the openvino targets answer batch-1 text requests on static sequence-length buckets
    version: ClassVar[int] = 3
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

        kinds = tuple(sorted({k for t in TARGETS.values() for k in t.accepts}))
        return [(f"artifacts[{i}]", r, kinds) for i, r in enumerate(self.artifacts)]

    def check(self, recipe, stages) -> list[tuple[str, str]]:
        import re

        from ..targets import TARGETS, unavailable_reason

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
        for i, t in enumerate(self.targets):
            if t not in TARGETS:
                problems.append((f"targets[{i}]", f"unknown target {t!r}; known: {', '.join(TARGETS)}"))
            elif reason := unavailable_reason(t):
                problems.append((f"targets[{i}]", f"{t}: {reason}"))
        known = [TARGETS[t] for t in self.targets if t in TARGETS]
        by_name = {s.name: s for s in stages if s is not None}
        for i, r in enumerate(self.artifacts):
            src = by_name.get(r[1:])
            if src is None or not known:
                continue
            kind = src.produces()
            limits = src.target_limits()
            if not any(kind in t.accepts for t in known):
                problems.append((f"artifacts[{i}]", f"{r} is a {kind!r} artifact and none of the targets "
                                 f"({', '.join(self.targets)}) runs that kind"))
            elif limits and not any(t.name in limits[0] and kind in t.accepts for t in known):
                problems.append((f"artifacts[{i}]", f"{r} runs only on {', '.join(limits[0])} ({limits[1]}); "
                                 f"add that target"))
        return problems


def run(cfg: BenchmarkConfig, inputs: dict, ctx):
    import datetime as dt
    import json
    from functools import partial

    import numpy as np
    from tqdm.auto import tqdm

    from ..errors import StageError
    from ..ops.timing import cpu_snapshot, interleaved_latencies, others_cpu_share, percentiles, throughput
    from ..targets import TARGETS, row_precision, target_module
    from ..targets.base import weights_mb
    from ..targets.fingerprint import host_fingerprint, runtime_versions
    from ..targets.memprobe import measure_in_subprocess

    task, recipe = ctx.task, ctx.recipe
    max_len = recipe.data.max_length
    splits = ctx.splits()
    test = splits.test
    artifacts = inputs["artifacts"]
    pairs, not_run = [], []
    for t in cfg.targets:
        for a in artifacts:
            if a.kind not in TARGETS[t].accepts:
                continue
            limits = recipe.stage(a.stage).target_limits()   # a.stage: this recipe's name (runner)
            if limits and t not in limits[0]:
                not_run.append({"artifact": a.stage, "target": t, "reason": limits[1]})
                log.info("%s on %s: not run (%s)", a.stage, t, limits[1])
            else:
                pairs.append((t, a))
    if not pairs:
        raise StageError(f"no target of {cfg.targets} runs any of the artifacts given")

    rng = np.random.default_rng(recipe.seed)
    lat_idx = rng.choice(len(test), size=min(cfg.latency_samples, len(test)), replace=False)
    tp_idx = np.resize(rng.permutation(len(test)), cfg.throughput_batch_size * cfg.throughput_batches)

    # what each artifact needs once: encoded inputs, size, params and MACs of its torch ancestor
    prepared, counted, encoded = {}, {}, {}
    for a in {a.key: a for _, a in pairs}.values():
        proc = task.load_processor(a.path, recipe.data)
        # inputs are encoded once per distinct preprocessing (images: one for every artifact of the run)
        enc_key = task.processor_key(proc, a.path)
        if enc_key not in encoded:
            lengths = task.example_lengths(proc, test.items, max_len)
            order = np.argsort(lengths, kind="stable")
            evals = [(ix, task.encode(proc, [test.items[i] for i in ix], max_len))
                     for ix in np.array_split(order, max(1, -(-len(order) // cfg.eval_batch_size)))]
            tp = [task.encode(proc, [test.items[i] for i in ix], max_len)
                  for ix in np.array_split(tp_idx, cfg.throughput_batches)]
            real = [task.encode(proc, [test.items[i]], max_len) for i in lat_idx]
            fixed = task.encode(proc, [test.items[lat_idx[0]]], max_len, pad_to_max=True)
            encoded[enc_key] = (lengths, evals, tp, real, fixed)
        lengths, evals, tp, real, fixed = encoded[enc_key]
        src = torch_ancestor(a)
        if src is None:
            log.warning("%s: no torch ancestor found (meta.torch_source); params and MACs left empty", a.stage)
        elif src.key not in counted:
            counted[src.key] = count_model(task, src, max_len)
        prepared[a.key] = {
            "real": real, "fixed": fixed,
            "evals": evals, "tp": tp, "ancestor": src.key if src else None,
            "counts": counted.get(src.key, {}) if src else {},
            "mean_tokens": float(lengths.mean()), "sample_tokens": float(lengths[lat_idx].mean()),
        }

    rows, sessions = [], []
    for t, a in pairs:
        sess = target_module(t).load(a, cfg.threads, task)
        p = prepared[a.key]
        logits = np.zeros((len(test), len(splits.label_names)), dtype=np.float32)
        for ix, batch in p["evals"]:
            logits[ix] = sess.run(batch)
        m = task.metrics(logits, test.labels)
        sessions.append(sess)
        rows.append({"artifact": a.stage, "stage": a.stage_type, "key": a.key, "target": t,
                     "precision": row_precision(a.meta.get("precision", "fp32"), t), "threads": cfg.threads,
                     "accuracy": m["accuracy"], "f1": m["f1"], "torch_source": p["ancestor"]})

    calls, warm = {}, {}
    for i, (sess, (_, a)) in enumerate(zip(sessions, pairs)):
        p = prepared[a.key]
        calls[(i, "real")] = [partial(sess.run_feed, sess.feed(b)) for b in p["real"]]
        calls[(i, "fixed")] = [partial(sess.run_feed, sess.feed(p["fixed"]))] * cfg.fixed_runs
        calls[(i, "tp")] = [partial(sess.run_feed, sess.feed(b)) for b in p["tp"]]
        warm.update({(i, "real"): cfg.warmup, (i, "fixed"): min(cfg.warmup, cfg.fixed_runs), (i, "tp"): 1})
    log.info("timing %d row(s): %d round(s) of %d real-length + %d fixed-shape requests and %d batches each",
             len(rows), cfg.rounds, len(lat_idx), cfg.fixed_runs, cfg.throughput_batches)
    snap, load_before = cpu_snapshot(), _load()
    with tqdm(total=cfg.rounds * len(calls), desc="benchmark", unit="block", leave=False) as bar:
        times = interleaved_latencies(calls, cfg.rounds, warm, on_block=lambda r, n: bar.update(1))
    cores = os.cpu_count() or 1
    others = round(others_cpu_share(snap, cpu_snapshot(), cores), 3)
    busy = others > BUSY_SHARE
    if busy:
        log.warning("other work used %.0f%% of the %d cores while timing: latencies are inflated and noisy; "
                    "compare rows of this run only, or re-run on an idle machine", 100 * others, cores)

    for i, (row, (t, a)) in enumerate(zip(rows, pairs)):
        p = prepared[a.key]
        sizes = [len(next(iter(b.values()))) for b in p["tp"]] * cfg.rounds
        row["latency_ms"] = _rounded(percentiles(times[(i, "real")]))
        row["latency_fixed_ms"] = _rounded(percentiles(times[(i, "fixed")]))
        row["throughput_sps"] = round(throughput(sizes, times[(i, "tp")]), 2)
        row["size_mb"] = round(weights_mb(a), 3)
        row["files_mb"] = round(a.size_mb(), 3)
        row["params"] = p["counts"].get("params")
        row["macs"] = p["counts"].get("macs")
        row["macs_shape"] = task.fixed_shape(recipe.data)
        row["fixed_gops"] = (round(2 * row["macs"] / (row["latency_fixed_ms"]["p50"] / 1e3) / 1e9, 1)
                             if row["macs"] else None)
        row.update(measure_in_subprocess(t, a, cfg.threads, max_len, recipe.task) if cfg.memory else
                   {"peak_rss_mb": None, "model_rss_mb": None, "baseline_rss_mb": None})
        row["fingerprint"] = {**host_fingerprint(), "runtimes": runtime_versions(),
                              **target_module(t).fingerprint(cfg.threads)}
    for row, s in zip(rows, sessions):
        if hasattr(s, "shape_notes"):       # e.g. which OpenVINO length buckets passed their check
            row["shapes"] = s.shape_notes()
    for s in sessions:
        s.close()
    _compare(rows, cfg.reference[1:] if cfg.reference else None)
    int8_gains(rows)
    for r in rows:
        log.info(summary(r))

    report = {
        "recipe": recipe.dump(),
        "environment": {**host_fingerprint(), "runtimes": runtime_versions(),
                        "others_cpu_share": others, "load_avg_1min": [load_before, _load()], "busy": busy},
        "settings": {**cfg.model_dump(mode="json", exclude={"name", "type", "input", "artifacts"}),
                     "latency_samples_used": int(len(lat_idx)), "fixed_shape": task.fixed_shape(recipe.data),
                     "sample_mean_tokens": round(prepared[pairs[0][1].key]["sample_tokens"], 1),
                     "seed": recipe.seed},
        "data": {**splits.sizes(), "labels": list(splits.label_names),
                 "test_mean_tokens": round(prepared[pairs[0][1].key]["mean_tokens"], 1)},
        "rows": rows,
        "not_run": not_run,
        # stages of this run that failed (and those that needed them): their artifacts are not measured
        "failed_stages": ctx.failures,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    (ctx.out_dir / "report.json").write_text(json.dumps(report, indent=2))
    raw = {f"{rows[i]['artifact']}@{rows[i]['target']}:{kind}": [round(x, 4) for x in v]
           for (i, kind), v in times.items()}
    (ctx.out_dir / "timings.json").write_text(json.dumps(raw))
    return ctx.artifact("report", file="report.json", meta={"rows": len(rows)})


# ----------------------------------------------------------------------------------------------- helpers


BUSY_SHARE = 0.10    # other processes (or hypervisor steal) used more than this share of the CPU while timing


def _load() -> float:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return 0.0


def _rounded(d: dict) -> dict:
    return {k: round(v, 4) for k, v in d.items()}


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


def _compare(rows: list[dict], reference: str | None = None) -> None:
    """speedup_vs_reference and accuracy_delta_vs_reference (points) against a pytorch row: the
    `reference` artifact's, else the row's own torch model's, else the first."""
    torch_rows = [r for r in rows if r["target"] == "pytorch"]
    fixed = next((t for t in torch_rows if t["artifact"] == reference), None) if reference else None
    for r in rows:
        ref = fixed or next((t for t in torch_rows if t["key"] == r["torch_source"]),
                            torch_rows[0] if torch_rows else None)
        if ref is None:
            r.update(reference=None, speedup_vs_reference=None, accuracy_delta_vs_reference=None)
            continue
        r["reference"] = f"{ref['artifact']}@{ref['target']}"
        r["speedup_vs_reference"] = round(ref["latency_ms"]["p50"] / r["latency_ms"]["p50"], 3)
        r["accuracy_delta_vs_reference"] = round(100 * (r["accuracy"] - ref["accuracy"]), 2)


INT8_PAYS = 1.15    # an INT8 row at most 1/1.15 of its FP32 row's p50 on the same target pays for its accuracy risk


def int8_gains(rows: list[dict]) -> None:
    """int8_speedup_vs_fp32: the p50 of the FP32 row of the same torch model on the same target divided
    by this INT8 row's p50; int8_pays false when it is below INT8_PAYS (on x86 CPUs without VNNI
    ONNX Runtime INT8 measured no faster than FP32). None where there is no such FP32 row."""
    for r in rows:
        if r["precision"] != "int8":
            continue
        fp32 = [f for f in rows if f["target"] == r["target"] and f["precision"] in ("fp32", "bf16")
                and f["torch_source"] == r["torch_source"] and f.get("latency_ms")]
        if not fp32:
            r.update(int8_speedup_vs_fp32=None, int8_pays=None)
            continue
        best = min(fp32, key=lambda f: f["latency_ms"]["p50"])
        ratio = best["latency_ms"]["p50"] / r["latency_ms"]["p50"]
        r.update(int8_speedup_vs_fp32=round(ratio, 3), int8_fp32_row=best["artifact"], int8_pays=ratio >= INT8_PAYS)
        if ratio < INT8_PAYS:
            log.warning("%s on %s: INT8 is %.2fx the FP32 row %s (p50 %.2f vs %.2f ms): it buys no speed on this "
                        "target", r["artifact"], r["target"], ratio, best["artifact"], r["latency_ms"]["p50"],
                        best["latency_ms"]["p50"])


def summary(r: dict) -> str:
    sp = f" ({r['speedup_vs_reference']:.2f}x)" if r.get("speedup_vs_reference") else ""
    rss = f", peak RSS {r['peak_rss_mb']:.0f} MB" if r.get("peak_rss_mb") else ""
    return (f"{r['artifact']} on {r['target']} ({r['precision']}): acc {100 * r['accuracy']:.2f}%, "
            f"p50 {r['latency_ms']['p50']:.2f} ms{sp}, fixed p50 {r['latency_fixed_ms']['p50']:.2f} ms, "
            f"{r['throughput_sps']:.0f} samples/s, {r['size_mb']:.1f} MB{rss}")
