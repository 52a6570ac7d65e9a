"""Compare a finished edgeft run against what a user would pick instead (peers), on this machine.

    python benchmarks/compare_peers.py runs/minilm-rotten-tomatoes --json peers.json --md peers.md

Every peer starts from the run's fine-tuned FP32 model (its first torch artifact, or `--model STAGE`)
and gets the defaults a user following that tool's documentation gets (peers live in
benchmarks/peers/, one function each):

    pytorch-fp32        PyTorch eager FP32 (the teacher every accuracy is compared with)
    ort-fp32            Optimum ONNX export (main_export, task text-classification) + ONNX Runtime
    ort-int8-dynamic    Optimum ORTQuantizer, AutoQuantizationConfig.avx512_vnni(is_static=False,
                        per_channel=False) as in Optimum's quantization guide
    openvino-fp32       ov.convert_model of the Optimum ONNX, compiled for CPU, LATENCY hint
    openvino-nncf-int8  nncf.quantize (300 train samples, model_type=TRANSFORMER) on that OV model

With --gpu (an NVIDIA GPU with onnxruntime-gpu, TensorRT and Optimum; benchmarks/peers/gpu.py):

    ort-cuda-fp32       the Optimum export on ONNX Runtime's CUDA execution provider
    ort-cuda-fp16       Optimum's FP16 export (dtype="fp16", device="cuda") on the same provider
    trt-fp16            a TensorRT engine of that FP16 export (the trtexec equivalent, Python API)

edgeft rows: every artifact x target row of the run's report.json, loaded with edgeft's own targets
(`target_module(target).load(artifact, threads, task)`), plus the run's openvino artifacts on
`--extra-targets` (default: `openvino-bf16` on CPUs with bf16, where OpenVINO's default precision,
which the peers get, is bf16 while edgeft's `openvino` target pins f32).

Every row, peers and edgeft alike, gets the same inputs and the same thread count:
- accuracy / f1 on the whole test split (batches of 64 sorted by length);
- latency at batch 1 over `--samples` seeded test sentences at their own length (p50/p90/p99);
- latency at batch 1 padded to `--fixed-length` tokens (128);
- throughput at batch 32 over real test sentences padded to each batch's longest;
- inputs encoded as the benchmark stage encodes them (edgeft.targets.inputs), timed by its protocol
  (edgeft.ops.timing.time_rows): warm-up first, then `--rounds` interleaved rounds (every round runs
  every row, rows in rotated order), medians over all rounds.
Sessions are timed through each runtime's own Python API (InferenceSession.run, an OpenVINO
InferRequest, the torch module), not through Optimum's ORTModel wrapper, and tokenizing is not timed.

Achieved GOPS per row = 2 x MACs / time, MACs of the row's torch model at the actual shape
(edgeft.ops.macs); compared with this CPU's FP32 and INT8 peaks estimated from its ISA flags and
clock (formulas in the output). INT8 rows are compared with the INT8 peak, FP32 rows with FP32's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from peers import GPU_PEERS, PEERS, Built  # benchmarks/peers/: the script's own folder is on sys.path

from edgeft.ops.timing import BUSY_SHARE
from edgeft.targets.inputs import BenchInputs

ROOT = Path(__file__).resolve().parents[1]

log = logging.getLogger("edgeft.peers")

TOLERANCE_POINTS = 1.0      # "within 1 point of the teacher" for the headline


class CompareError(Exception):
    """The run or the arguments cannot be compared; `__main__` prints it and exits non-zero."""


# ------------------------------------------------------------------------------------------ the run

@dataclass
class RunInfo:
    run_dir: Path
    recipe: object                     # edgeft.recipe.Recipe
    task: object                       # edgeft.tasks.<module>
    model: object                      # Artifact: the fine-tuned FP32 torch model
    artifacts: dict                    # stage name -> Artifact
    rows: list[tuple[str, str]]        # (artifact stage, target) of report.json, in its order
    report: dict = field(default_factory=dict)


def load_run(run_dir: str | Path, model_stage: str | None = None, base_dir: Path = ROOT / "recipes") -> RunInfo:
    from edgeft.artifact import Artifact
    from edgeft.recipe import validate_recipe
    from edgeft.run_state import read_run_state
    from edgeft.tasks import get_task

    run_dir = Path(run_dir)
    missing = [f for f in ("run.json", "report.json") if not (run_dir / f).is_file()]
    if missing:
        raise CompareError(f"{run_dir} is not a finished run (missing {', '.join(missing)})")
    state = read_run_state(run_dir)
    stages = {n: s for n, s in state["stages"].items() if s.get("path")}     # stages that left an artifact
    artifacts = {}
    for name, s in stages.items():
        p = Path(s["path"])
        folder = p if p.is_dir() else p.parent        # the store folder holds artifact.json
        if not folder.is_dir():                       # runs/ moved: the store is runs/.store by default
            folder = run_dir.parent / ".store" / s["key"]
        artifacts[name] = Artifact.read(folder)
    torch_stages = [n for n, a in artifacts.items() if a.kind == "torch"]
    if model_stage is None:
        if not torch_stages:
            raise CompareError(f"{run_dir}: no torch artifact in run.json; give --model STAGE")
        model_stage = torch_stages[0]
    if model_stage not in artifacts or artifacts[model_stage].kind != "torch":
        raise CompareError(f"--model {model_stage}: not a torch stage of this run (torch stages: {torch_stages})")
    # base_dir: where relative paths of the recipe (data files, calibration manifests) resolve when they are
    # not found from the current directory: the recipe's own folder when run.json records it
    base = Path(state.get("recipe_dir") or base_dir)
    recipe = validate_recipe(state["recipe"], base_dir=base, check_data=False)
    report = json.loads((run_dir / "report.json").read_text())
    rows = [(r["artifact"], r["target"]) for r in report["rows"]]
    for a, _ in rows:
        if a not in artifacts:
            raise CompareError(f"report.json names artifact {a!r}, which run.json does not list as finished")
    return RunInfo(run_dir, recipe, get_task(recipe.task), artifacts[model_stage], artifacts, rows, report)


# ------------------------------------------------------------------------------------------ inputs

def _tokenizer_id(folder: Path) -> str:
    from edgeft.store import hash_file

    files = [folder / f for f in ("tokenizer.json", "vocab.txt", "tokenizer_config.json") if (folder / f).is_file()]
    return "|".join(hash_file(f) for f in files) or str(folder)


# ------------------------------------------------------------------------------------------ MACs

class MacsModel:
    """MACs of one batch-1 forward of a torch model at sequence length L, counted with edgeft.ops.macs.

    A transformer encoder costs c + a*L + b*L^2 MACs (linears per token, attention quadratic, head
    constant), so three counts fit it exactly; a fourth count checks the fit, and if it is off by
    more than 0.1% every length is counted instead."""

    def __init__(self, model, input_names: list[str], vocab: int):
        self.model, self.names, self.vocab = model, input_names, vocab
        self.cache: dict[int, int] = {}
        self.coef = None

    def count(self, seq: int) -> int:
        if seq not in self.cache:
            import torch

            from edgeft.ops.macs import count_macs
            from edgeft.targets.base import synthetic_inputs

            feed = {k: torch.from_numpy(v) for k, v in synthetic_inputs(self.names, 1, seq, self.vocab).items()}
            self.cache[seq] = count_macs(self.model, feed)
        return self.cache[seq]

    def __call__(self, seq: int) -> float:
        if self.coef is None:
            xs = np.array([8, 32, 128], dtype=np.float64)
            coef = np.polyfit(xs, [self.count(int(x)) for x in xs], 2)
            check = self.count(64)
            self.coef = coef if abs(np.polyval(coef, 64) - check) <= 1e-3 * check else False
        return float(round(np.polyval(self.coef, seq))) if self.coef is not False else float(self.count(int(seq)))


# ------------------------------------------------------------------------------------------ machine

def cpu_limits(threads: int, fma_units: int) -> dict:
    """FP32 and INT8 peaks of `threads` cores from the ISA flags and clock, with the formulas."""
    from edgeft.targets.fingerprint import cpu_info

    model, isa = cpu_info()
    flags = set(isa)
    mhz, source = _clock_mhz()
    ghz = mhz / 1e3
    if "avx512f" in flags:
        width, lanes = 512, 16
    elif "avx2" in flags or "avx" in flags:
        width, lanes = 256, 8
    else:
        width, lanes = 128, 4
    if "avx512_vnni" in flags and width == 512:
        int8_macs, int8_how = 64, "AVX-512 VNNI: one VPDPBUSD = 512/8 = 64 u8 x s8 multiply-adds"
    elif "avx_vnni" in flags or "avx512_vnni" in flags:
        int8_macs, int8_how = 32, "AVX-VNNI: one 256-bit VPDPBUSD = 32 u8 x s8 multiply-adds"
    else:
        int8_macs = 2 * lanes
        int8_how = (f"no VNNI: VPMADDUBSW + VPMADDWD, two instructions for {4 * lanes} u8 x s8 multiply-adds "
                    f"= {2 * lanes} per instruction")
    fp32 = threads * ghz * lanes * fma_units * 2
    int8 = threads * ghz * int8_macs * fma_units * 2
    return {
        "cpu": model, "isa": sorted(flags), "cores": os.cpu_count(), "threads": threads,
        "clock_mhz": mhz, "clock_source": source, "vector_bits": width, "fma_units_per_core": fma_units,
        "fp32_peak_gflops": round(fp32, 1), "int8_peak_gops": round(int8, 1),
        "fp32_formula": (f"threads {threads} x {ghz:.2f} GHz x {lanes} fp32 lanes ({width}-bit) x "
                         f"{fma_units} FMA units x 2 flops per FMA = {fp32:.1f} GFLOP/s"),
        "int8_formula": (f"threads {threads} x {ghz:.2f} GHz x {int8_macs} int8 MACs per instruction x "
                         f"{fma_units} units x 2 ops per MAC = {int8:.1f} GOPS ({int8_how})"),
        "assumptions": (f"{fma_units} vector FMA units per core (--fma-units; server Xeons and Zen 4/5 have 2, "
                        "some parts 1); the clock is the one reported, not a measured all-core turbo; "
                        "AMX is not counted"),
    }


def _clock_mhz() -> tuple[float, str]:
    import shutil
    import subprocess

    if shutil.which("lscpu"):
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.lower().startswith("cpu max mhz"):
                try:
                    return float(line.split(":")[1].replace(",", ".")), "lscpu CPU max MHz"
                except ValueError:
                    pass
    try:
        mhz = [float(ln.split(":")[1]) for ln in open("/proc/cpuinfo") if ln.lower().startswith("cpu mhz")]
        if mhz:
            return max(mhz), "/proc/cpuinfo cpu MHz (max over cores)"
    except OSError:
        pass
    return 2000.0, "unknown: 2 GHz assumed"


# ------------------------------------------------------------------------------------------ measuring

@dataclass
class Row:
    name: str                   # peer name, or "artifact@target"
    kind: str                   # peer | edgeft
    label: str                  # what it is, in words
    precision: str
    session: object
    inputs: BenchInputs
    macs: MacsModel | None
    size_mb: float | None
    extra: dict = field(default_factory=dict)
    result: dict = field(default_factory=dict)


def evaluate(rows: list[Row], test_labels, n_labels: int, task) -> None:
    for r in rows:
        t0 = time.perf_counter()
        logits = np.zeros((len(test_labels), n_labels), dtype=np.float32)
        for ix, batch in r.inputs.evals:
            logits[ix] = r.session.run(batch)
        m = task.metrics(logits, test_labels)
        r.result.update(accuracy=m["accuracy"], f1=m["f1"])
        log.info("accuracy %-34s %.2f%% (%.1f s)", r.name, 100 * m["accuracy"], time.perf_counter() - t0)


def time_all(rows: list[Row], rounds: int, warmup: int, fixed_runs: int):
    """Every row through edgeft's timing protocol (edgeft.ops.timing.time_rows), progress logged per row."""
    from edgeft.ops.timing import time_rows
    from edgeft.targets.inputs import timed_row

    timed = [timed_row(r.session, r.inputs) for r in rows]
    done = [0]

    def progress(rnd, name):
        done[0] += 1
        if name[1] == "tp":
            log.info("timing round %d/%d: %s done (%d/%d blocks)", rnd + 1, rounds, rows[name[0]].name,
                     done[0], rounds * 3 * len(rows))

    return time_rows(timed, rounds, warmup, fixed_runs, on_block=progress)


def summarize(rows: list[Row], times: dict, rounds: int, limits: dict) -> None:
    from edgeft.ops.timing import batch_size, row_figures

    for i, r in enumerate(rows):
        real, fixed, tp = times[(i, "real")], times[(i, "fixed")], times[(i, "tp")]
        per_round = [batch_size(b) for b in r.inputs.tp]
        res = r.result
        res.update(row_figures(real, fixed, tp, per_round))
        sizes = per_round * rounds
        peak = limits["int8_peak_gops"] if r.precision == "int8" else limits["fp32_peak_gflops"]
        if r.macs is not None:
            real_macs = np.array([r.macs(int(n)) for n in r.inputs.real_lengths] * rounds)
            fixed_macs = r.macs(int(r.inputs.fixed["input_ids"].shape[1]))
            tp_macs = np.array([bs * r.macs(int(n)) for bs, n in zip(sizes, r.inputs.tp_lengths * rounds)])
            # ops done over every timed call / time they took (= 2 x mean MACs / mean latency)
            res["macs_real_mean"] = int(real_macs.mean())
            res["macs_fixed"] = int(fixed_macs)
            res["gops_real"] = round(2 * real_macs.sum() / (np.sum(real) / 1e3) / 1e9, 1)
            res["gops_fixed"] = round(2 * fixed_macs / (res["latency_fixed_ms"]["p50"] / 1e3) / 1e9, 1)
            res["gops_throughput"] = round(2 * tp_macs.sum() / (np.sum(tp) / 1e3) / 1e9, 1)
            res["peak_gops"] = peak
            for k in ("real", "fixed", "throughput"):
                res[f"peak_share_{k}"] = round(res[f"gops_{k}"] / peak, 3)
        else:
            res.update(macs_real_mean=None, macs_fixed=None, gops_real=None, gops_fixed=None,
                       gops_throughput=None, peak_gops=peak,
                       peak_share_real=None, peak_share_fixed=None, peak_share_throughput=None)


# ------------------------------------------------------------------------------------------ comparing

def compare(peers: list[dict], ours: list[dict], tolerance: float = TOLERANCE_POINTS) -> tuple[dict, dict]:
    """Fill each edgeft row's speedups over every peer; return (best at real lengths, best at fixed shape)."""
    teacher = next(p for p in peers if p["name"] == "pytorch-fp32")
    for r in peers + ours:
        r["accuracy_delta_vs_teacher"] = round(100 * (r["accuracy"] - teacher["accuracy"]), 2)
    for r in ours:
        r["speedup_vs_peers"] = {p["name"]: {
            "real_p50": round(p["latency_ms"]["p50"] / r["latency_ms"]["p50"], 3),
            "fixed_p50": round(p["latency_fixed_ms"]["p50"] / r["latency_fixed_ms"]["p50"], 3),
            "throughput": round(r["throughput_sps"] / p["throughput_sps"], 3)} for p in peers}

    def best(key: str) -> dict:
        ok = lambda r: 100 * (teacher["accuracy"] - r["accuracy"]) <= tolerance + 1e-9  # noqa: E731
        cand = sorted((r for r in ours if ok(r)), key=lambda r: r[key]["p50"])
        peer = sorted((p for p in peers if ok(p)), key=lambda p: p[key]["p50"])[0]   # the teacher is always in
        out = {"tolerance_points": tolerance, "teacher_accuracy": teacher["accuracy"],
               "best_peer": peer["name"], "best_peer_accuracy": peer["accuracy"],
               "best_peer_p50_ms": peer[key]["p50"]}
        if not cand:
            return {**out, "artifact": None, "target": None, "accuracy": None, "p50_ms": None,
                    "speedup_vs_best_peer": None,
                    "note": f"no edgeft row within {tolerance} point(s) of the teacher"}
        b = cand[0]
        return {"artifact": b["artifact"], "target": b["target"], "accuracy": b["accuracy"],
                "p50_ms": b[key]["p50"], "speedup_vs_best_peer": round(peer[key]["p50"] / b[key]["p50"], 3), **out}

    return best("latency_ms"), best("latency_fixed_ms")


# ------------------------------------------------------------------------------------------ markdown

def _f(x, fmt="{:.2f}"):
    return "—" if x is None else fmt.format(x)


def render_markdown(out: dict) -> str:
    peers, ours, m, s = out["peers"], out["edgeft"], out["machine"], out["settings"]
    fl = s["fixed_length"]
    lines = [f"# edgeft vs peers: `{s['run']}`", "",
             f"{s['date']} · {m['cpu']} · {s['threads']} threads · model `{s['model_stage']}` "
             f"({s['model_key']}) · test {s['test_size']} sentences, {s['samples_used']} timed at batch 1 "
             f"(mean {s['sample_mean_tokens']} tokens) · {s['rounds']} interleaved round(s)", "",
             f"`{s['command']}`", ""]
    if m.get("others_cpu_share", 0) > BUSY_SHARE:
        lines += [f"> Other work used {100 * m['others_cpu_share']:.0f}% of the CPU while timing: absolute "
                  "times are inflated; compare ratios within this table only.", ""]
    lines += ["| row | what | precision | test acc | Δ pts | real p50 ms | real p90 ms | "
              f"seq{fl} p50 ms | bs{s['throughput_batch_size']} samples/s | GOPS real | GOPS seq{fl} | "
              f"% peak seq{fl} | size MB |",
              "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in peers + ours:
        lines.append(
            f"| {r['name']} | {r['label']} | {r['precision']} | {100 * r['accuracy']:.2f}% | "
            f"{r['accuracy_delta_vs_teacher']:+.2f} | {r['latency_ms']['p50']:.2f} | {r['latency_ms']['p90']:.2f} | "
            f"{r['latency_fixed_ms']['p50']:.2f} | {r['throughput_sps']:.0f} | {_f(r['gops_real'], '{:.0f}')} | "
            f"{_f(r['gops_fixed'], '{:.0f}')} | "
            f"{_f(None if r['peak_share_fixed'] is None else 100 * r['peak_share_fixed'], '{:.0f}%')} | "
            f"{_f(r['size_mb'], '{:.1f}')} |")
    lines += ["", "Δ pts: accuracy change in points against the teacher (pytorch-fp32). GOPS: 2 x MACs / time "
              "(real: all ops of every timed real-length request / their total time; "
              f"seq{fl}: at the p50). % peak: of the INT8 peak for int8 rows, of the FP32 peak otherwise.", ""]
    names = [p["name"] for p in peers]
    lines += [f"## Speedup of each edgeft row over each peer (real-length p50; seq{fl} p50 in brackets)", "",
              "| edgeft row | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for r in ours:
        cells = [f"{r['speedup_vs_peers'][n]['real_p50']:.2f}x ({r['speedup_vs_peers'][n]['fixed_p50']:.2f}x)"
                 for n in names]
        lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    lines += ["", "## Headline", ""]
    heads = out.get("headlines") or [{"real": out["best"], "fixed": out["best_fixed"]}]
    for title, b in ((t, h[k]) for h in heads for k, t in (("real", "real lengths"),
                                                           ("fixed", f"fixed {fl}-token shape"))):
        if b["artifact"] is None:
            lines.append(f"- {title}: {b['note']}; best peer {b['best_peer']} {b['best_peer_p50_ms']:.2f} ms.")
        else:
            lines.append(f"- {title}: fastest edgeft row within {b['tolerance_points']:.1f} point(s) of the teacher "
                         f"({100 * b['teacher_accuracy']:.2f}%) is **{b['artifact']}@{b['target']}**, "
                         f"{100 * b['accuracy']:.2f}%, p50 {b['p50_ms']:.2f} ms: **{b['speedup_vs_best_peer']:.2f}x** "
                         f"over the fastest peer within the same band ({b['best_peer']}, "
                         f"{100 * b['best_peer_accuracy']:.2f}%, {b['best_peer_p50_ms']:.2f} ms).")
    lines += ["", "## Compute limits of this machine", "",
              f"- FP32 peak: {m['fp32_formula']}", f"- INT8 peak: {m['int8_formula']}",
              f"- clock from {m['clock_source']}; {m['assumptions']}.",
              f"- ISA: {', '.join(m['isa'])}; {m['cores']} logical CPUs; load avg {m['load_avg_1min']}, "
              f"others' CPU share while timing {100 * m['others_cpu_share']:.0f}%.",
              "- MACs: edgeft.ops.macs (FlopCounterMode + SDPA) on each row's torch model at each actual "
              "length, batch 1; a batch of 32 costs 32x.", "",
              "## Peers: how they were made", ""]
    lines += [f"- **{p['name']}**: {p['how']}" for p in peers]
    lines += ["", "## Settings", "", "```json", json.dumps(s, indent=1), "```", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ main

def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", help="a finished run: runs/<name>/ with run.json and report.json")
    ap.add_argument("--json", help="write the results as JSON here")
    ap.add_argument("--md", help="write the markdown tables here")
    ap.add_argument("--model", help="torch stage the peers start from (default: the first torch artifact)")
    ap.add_argument("--base-dir", default=str(ROOT / "recipes"),
                    help="folder of the run's recipe: relative paths in it resolve there (default recipes/)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--samples", type=int, default=300, help="test sentences timed at batch 1 per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--fixed-length", type=int, default=128)
    ap.add_argument("--fixed-runs", type=int, default=100, help="timed fixed-shape runs per row per round")
    ap.add_argument("--throughput-batch-size", type=int, default=32)
    ap.add_argument("--throughput-batches", type=int, default=8)
    ap.add_argument("--calibration-samples", type=int, default=300, help="NNCF calibration samples from train")
    ap.add_argument("--max-test", type=int, help="cap the test split (seeded subset; smoke runs only)")
    ap.add_argument("--peers", default=",".join(PEERS), help=f"comma-separated subset of {','.join(PEERS)}")
    ap.add_argument("--tolerance", type=lambda v: [float(x) for x in v.split(",")], default=[TOLERANCE_POINTS, 1.5],
                    help="accuracy bands (points below the teacher) for the headlines, comma-separated "
                         "(default 1.0,1.5; the first is `best` in the JSON)")
    ap.add_argument("--fma-units", type=int, default=2, help="vector FMA units per core for the peak estimate")
    ap.add_argument("--work", help="where peer models are built and kept (default RUN_DIR/peers/<model key>)")
    ap.add_argument("--rebuild", action="store_true", help="rebuild peer models even if built before")
    ap.add_argument("--gpu", action="store_true", help=f"add the NVIDIA GPU peers ({', '.join(GPU_PEERS)}): "
                    "ONNX Runtime's CUDA provider FP32/FP16 and a TensorRT FP16 engine (peers/gpu.py)")
    ap.add_argument("--extra-targets", default="auto",
                    help="also run every artifact of the run's openvino rows on these targets (comma-separated; "
                         "auto: openvino-bf16 where the CPU has bf16, the precision the OpenVINO peers get by "
                         "default there; none: no extra rows)")
    return ap.parse_args(argv)


class Workbench:
    """The run, its data and the inputs every row shares; tokenizer encodings and MAC models cached."""

    def __init__(self, run: RunInfo, args):
        from edgeft.targets.inputs import sample_indices

        self.run, self.args, self.task = run, args, run.task
        recipe = run.recipe
        self.max_len = recipe.data.max_length
        self.splits = self.task.load_splits(recipe)
        test = self.splits.test
        if args.max_test and args.max_test < len(test):      # a seeded subset, as data.max_samples does
            pick = np.random.default_rng(recipe.seed).choice(len(test), args.max_test, replace=False)
            test = test.subset(np.sort(pick))
        self.test = test
        self.lat_idx, self.tp_idx = sample_indices(len(test), recipe.seed, args.samples,   # as the benchmark stage
                                                   args.throughput_batch_size, args.throughput_batches)
        train = self.splits.train
        self.cal_idx = np.random.default_rng(recipe.seed + 1).choice(
            len(train), size=min(args.calibration_samples, len(train)), replace=False)
        self._encoded: dict[str, BenchInputs] = {}
        self._macs: dict[str, MacsModel] = {}

    def inputs(self, folder: Path) -> BenchInputs:
        from edgeft.targets.inputs import encode_bench_inputs

        tid = _tokenizer_id(folder)
        if tid not in self._encoded:
            self._encoded[tid] = encode_bench_inputs(
                self.task, self.task.load_processor(folder), self.test.items, self.max_len, self.lat_idx,
                self.tp_idx, self.args.throughput_batches, fixed_length=self.args.fixed_length)
        return self._encoded[tid]

    def macs(self, src) -> MacsModel | None:
        """MACs of a torch artifact's model (None without one)."""
        if src is None:
            return None
        if src.key not in self._macs:
            from edgeft.targets.pytorch import TorchSession

            m = self.task.load_model(src.path)
            self._macs[src.key] = MacsModel(m, TorchSession(m, 1).input_names, m.config.vocab_size)
        return self._macs[src.key]

    def calibration(self) -> list[dict]:
        proc = self.task.load_processor(self.run.model.path)
        return [self.task.encode(proc, [self.splits.train.items[i]], self.max_len) for i in self.cal_idx]


def peer_rows(wb: Workbench, names: list[str]) -> list[Row]:
    from edgeft.artifact import Artifact
    from edgeft.targets.base import weights_mb

    args, model = wb.args, wb.run.model
    work = Path(args.work) if args.work else wb.run.run_dir / "peers" / model.key
    work.mkdir(parents=True, exist_ok=True)
    calib = wb.calibration()
    built: dict[str, Built] = {}
    rows = []
    for i, name in enumerate(names):
        log.info("peer %d/%d: %s ...", i + 1, len(names), name)
        t0 = time.perf_counter()
        b = {**PEERS, **GPU_PEERS}[name](model_dir=model.path, work=work, threads=args.threads, task=wb.task,
                                         built=built, calib=calib, rebuild=args.rebuild, max_length=wb.max_len,
                                         fixed_length=args.fixed_length)
        built[name] = b
        log.info("peer %d/%d: %s ready in %.1f s%s", i + 1, len(names), name, time.perf_counter() - t0,
                 " (built before, reused)" if b.reused else "")
        folder, file = (b.path.parent, b.path.name) if b.path.is_file() else (b.path, "")
        size = weights_mb(Artifact(key="", kind=b.kind, stage=name, stage_type="peer", path=folder, file=file))
        rows.append(Row(name, "peer", b.label, b.precision, b.session, wb.inputs(model.path), wb.macs(model),
                        size, {"how": b.how, "build_s": round(b.build_s, 1), "details": b.details}))
    return rows


def edgeft_rows(wb: Workbench) -> list[Row]:
    from edgeft.stages.benchmark import torch_ancestor
    from edgeft.targets import row_precision, target_module
    from edgeft.targets.base import weights_mb

    rows = []
    for a_name, target in wb.run.rows + extra_rows(wb.run.rows, wb.args.extra_targets):
        art = wb.run.artifacts[a_name]
        log.info("edgeft: loading %s on %s", a_name, target)
        sess = target_module(target).load(art, wb.args.threads, wb.task)
        src = torch_ancestor(art)
        has_tokenizer = _tokenizer_id(art.path) != str(art.path)
        tok_dir = art.path if has_tokenizer else (src.path if src else wb.run.model.path)
        rows.append(Row(f"{a_name}@{target}", "edgeft", f"edgeft {art.stage_type} on {target}",
                        row_precision(art.meta.get("precision", "fp32"), target), sess, wb.inputs(tok_dir),
                        wb.macs(src), weights_mb(art),
                        {"artifact": a_name, "target": target, "key": art.key, "stage": art.stage_type}))
    return rows


def extra_rows(rows: list[tuple[str, str]], extra: str) -> list[tuple[str, str]]:
    """(artifact, target) pairs to add: the run's openvino artifacts on the extra targets."""
    from edgeft.targets import TARGETS, unavailable_reason

    if extra == "none":
        return []
    targets = [t for t in (["openvino-bf16"] if extra == "auto" else extra.split(","))
               if extra != "auto" or unavailable_reason(t) is None]
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        raise CompareError(f"--extra-targets: unknown target(s) {', '.join(unknown)}; known: {', '.join(TARGETS)}")
    for t in targets:
        if reason := unavailable_reason(t):
            raise CompareError(f"--extra-targets: {t}: {reason}")
    have = set(rows)
    return [(a, t) for t in targets for a, src in rows if src == "openvino" and (a, t) not in have]


def _as_dict(r: Row) -> dict:
    return {"name": r.name, "kind": r.kind, "label": r.label, "precision": r.precision,
            "size_mb": None if r.size_mb is None else round(r.size_mb, 3), **r.extra, **r.result}


def settings_of(wb: Workbench, argv) -> dict:
    a, run = wb.args, wb.run
    return {
        "run": str(run.run_dir), "recipe": run.recipe.name, "model_stage": run.model.stage,
        "model_key": run.model.key, "threads": a.threads, "samples": a.samples, "samples_used": int(len(wb.lat_idx)),
        "rounds": a.rounds, "warmup": a.warmup, "fixed_length": a.fixed_length, "fixed_runs": a.fixed_runs,
        "throughput_batch_size": a.throughput_batch_size, "throughput_batches": a.throughput_batches,
        "calibration_samples": int(len(wb.cal_idx)), "max_length": wb.max_len, "test_size": len(wb.test),
        "max_test": a.max_test, "seed": run.recipe.seed, "tolerance_points": a.tolerance,
        "sample_mean_tokens": round(float(wb.inputs(run.model.path).real_lengths.mean()), 1),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/compare_peers.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }


def _check_peers(spec: str, gpu: bool = False) -> list[str]:
    import importlib.util

    names = [n.strip() for n in spec.split(",") if n.strip()]
    if gpu:
        from peers.gpu import unavailable_reason

        if reason := unavailable_reason():
            raise CompareError(f"--gpu: the GPU peers ({', '.join(GPU_PEERS)}) cannot run here: {reason}")
        names += [n for n in GPU_PEERS if n not in names]
    unknown = [n for n in names if n not in PEERS and not (gpu and n in GPU_PEERS)]
    if unknown or "pytorch-fp32" not in names:
        raise CompareError(f"--peers: unknown {unknown}; known {list(PEERS)} (pytorch-fp32, the teacher, is required)")
    lacking = [m for m in ("openvino", "nncf") if importlib.util.find_spec(m) is None]
    if lacking and any(n.startswith("openvino") for n in names):
        raise CompareError(f"the OpenVINO peers need {' and '.join(lacking)}: pip install -e '.[openvino]' "
                         f"(or leave them out: --peers pytorch-fp32,ort-fp32,ort-int8-dynamic)")
    return names


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    # our progress at INFO; the tools' own INFO chatter (ORT's quantizer logs every tensor) stays quiet
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("edgeft").setLevel(logging.INFO)
    for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ.setdefault(k, "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    names = _check_peers(args.peers, args.gpu)

    import torch

    from edgeft.targets.fingerprint import host_fingerprint, runtime_versions

    torch.set_num_threads(args.threads)
    run = load_run(args.run_dir, args.model, Path(args.base_dir))
    log.info("run %s: model %s (%s), %d edgeft row(s)", run.run_dir, run.model.stage, run.model.key, len(run.rows))
    wb = Workbench(run, args)
    rows = peer_rows(wb, names) + edgeft_rows(wb)

    log.info("accuracy on %d test sentences, %d row(s)", len(wb.test), len(rows))
    evaluate(rows, wb.test.labels, len(wb.splits.label_names), wb.task)
    log.info("timing %d row(s): %d round(s) of %d real-length, %d seq%d and %d bs%d requests each",
             len(rows), args.rounds, len(wb.lat_idx), args.fixed_runs, args.fixed_length, args.throughput_batches,
             args.throughput_batch_size)
    timing = time_all(rows, args.rounds, args.warmup, args.fixed_runs)
    limits = cpu_limits(args.threads, args.fma_units)
    summarize(rows, timing.times, args.rounds, limits)
    for r in rows:
        close = getattr(r.session, "close", None)
        if close:
            close()

    peers = [_as_dict(r) for r in rows if r.kind == "peer"]
    ours = [_as_dict(r) for r in rows if r.kind == "edgeft"]
    best, best_fixed = compare(peers, ours, args.tolerance[0])
    # one headline per accuracy band (a pruned student lives further from the teacher than INT8 does)
    headlines = [dict(zip(("real", "fixed"), compare(peers, ours, t))) for t in args.tolerance]
    machine = {**limits, **{k: v for k, v in host_fingerprint().items() if k not in limits},
               "runtimes": runtime_versions(), "others_cpu_share": timing.others_cpu_share,
               "load_avg_1min": timing.load_avg_1min}
    out = {"peers": peers, "edgeft": ours, "best": best, "best_fixed": best_fixed, "headlines": headlines,
           "machine": machine,
           "settings": settings_of(wb, argv)}
    md = render_markdown(out)
    print(md)
    for path, text in ((args.json, json.dumps(out, indent=2, default=str)), (args.md, md)):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text)
            log.info("wrote %s", path)
    return out


if __name__ == "__main__":
    try:
        main()
    except CompareError as e:
        sys.exit(f"compare_peers: {e}")
