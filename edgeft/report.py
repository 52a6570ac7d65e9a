"""The benchmark report: report.json (the rows) -> report.md (one table per target) + pareto.png.

`write_report(report_json, run_dir)` is all the runner and `edgeft report RUN_DIR` call; it only reads
the JSON, so a report can be re-rendered anywhere, in place included.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

LEGEND = [
    ("artifact", "the stage that made the model; **bold** = on the Pareto front of its target "
                 "(no other row there is both faster at p50 and at least as accurate)"),
    ("precision", "number format of the weights and matmuls (fp32, fp16, int8; bf16 / fp16: an FP32 model on a "
                  "bf16 / fp16 target)"),
    ("accuracy %", "accuracy on the whole test split; in brackets the change in points against the reference"),
    ("F1", "macro-F1 on the test split"),
    ("p50 / p90 / p99", "latency percentiles in ms at batch 1, each test text at its own length "
                        "(no padding), tokenizing not included"),
    ("fixed p50", "median latency in ms at batch 1 padded to the fixed shape (seq = data.max_length)"),
    ("throughput", "samples per second at the throughput batch size, real texts padded per batch"),
    ("size MB", "the model weight file(s) a user ships for this runtime (tokenizer and config not counted)"),
    ("params", "parameters of the torch model the artifact came from, embeddings included"),
    ("MACs", "multiply-accumulates of one forward pass at the fixed shape (INT8 models do the same MACs in INT8)"),
    ("peak RSS", "peak resident memory in MB of a fresh process that loads the model and runs batch 1 and 32 "
                 "at the fixed shape (interpreter and runtime included)"),
    ("speedup", "p50 of the reference (PyTorch eager FP32 of the benchmark's `reference`, else of the same "
                "torch model) divided by this p50"),
]
# image tasks: every input has the recipe's one shape, so "real" and "fixed" requests have the same shape
LEGEND_IMAGE = {
    "p50 / p90 / p99": "latency percentiles in ms at batch 1, one test image per request at the recipe's image size "
                       "(preprocessing not included)",
    "fixed p50": "median latency in ms at batch 1 of one image repeated: the same shape as p50 (images have one "
                 "shape), so the two differ only by input content and timing noise",
    "throughput": "images per second at the throughput batch size",
    "size MB": "the model weight file(s) a user ships for this runtime (config and preprocessing files not counted)",
    "params": "parameters of the torch model the artifact came from",
}


# ---------------------------------------------------------------------------------------------- pareto

def pareto_front(points: list[tuple[float | None, float | None]]) -> list[int]:
    """Indices of the points no other point dominates (lower latency, higher accuracy), sorted by
    latency then accuracy (best first). A point is dominated when another is at least as fast and at
    least as accurate and strictly better in one of them; equal points are all kept. Points with a
    None coordinate are left out."""
    valid = [(i, float(lat), float(a)) for i, (lat, a) in enumerate(points) if lat is not None and a is not None]
    front = []
    for i, li, ai in valid:
        dominated = any(lj <= li and aj >= ai and (lj < li or aj > ai) for j, lj, aj in valid if j != i)
        if not dominated:
            front.append((li, -ai, i))
    return [i for _, _, i in sorted(front)]


# ---------------------------------------------------------------------------------------------- entry

def write_report(src_json: str | Path, run_dir: str | Path) -> list[Path]:
    """Write run_dir/report.json (a copy of src_json unless it is that file), report.md and
    pareto.png; return their paths."""
    src, run_dir = Path(src_json), Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    report = json.loads(src.read_text())
    dst = run_dir / "report.json"
    if not dst.exists() or src.resolve() != dst.resolve():
        tmp = dst.with_suffix(".json.part")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    md = run_dir / "report.md"
    md.write_text(render_markdown(report, image="pareto.png"))
    png = run_dir / "pareto.png"
    plot_pareto(report, png)
    return [dst, md, png]


def _targets(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["target"] for r in rows))


def _pct(x):
    return None if x is None else 100 * x


# ---------------------------------------------------------------------------------------------- markdown

def _f(x, fmt: str = "{:.2f}") -> str:
    return "—" if x is None else fmt.format(x)


def _si(x) -> str:
    if x is None:
        return "—"
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.2f}{unit}"
    return str(x)


def _acc_cell(r: dict) -> str:
    cell = _f(_pct(r.get("accuracy")))
    d = r.get("accuracy_delta_vs_reference")
    if d is not None and r.get("reference") != f"{r.get('artifact')}@{r.get('target')}":
        cell += f" ({d:+.2f})".replace("-", "−")
    return cell


def data_name(rdata: dict) -> str:
    """The data a recipe reads, as the header names it: its source, or its files."""
    if rdata.get("source"):
        return f"`{rdata['source']}`"
    files = [f"{k} `{rdata[k]}`" for k in ("train", "validation", "test") if rdata.get(k)]
    if files and not rdata.get("validation"):
        frac = (rdata.get("split") or {}).get("validation")
        files.insert(1, f"validation {'' if frac is None else f'{frac:g} '}of train")
    return ", ".join(files) or "`None`"


def data_lines(data: dict) -> list[str]:
    """How the splits were made, rows dropped by `data.drop_invalid`, texts cut at max_length."""
    out = []
    if data.get("split"):
        out.append(f"- **Split:** {data['split']}")
    dropped = data.get("dropped") or {}
    if dropped:
        parts = [f"{part} {sum(kinds.values())} ({', '.join(f'{k} {v}' for k, v in kinds.items())})"
                 for part, kinds in dropped.items()]
        out.append(f"- **Dropped** (`data.drop_invalid`): {'; '.join(parts)}")
    cut = data.get("truncated")
    if cut:
        def share(name):
            n, of = cut.get(name) or 0, data.get(name)
            return f"{name} {n}" + (f" ({100 * n / of:.1f}%)" if n and of else "")
        out.append(f"- **Truncated** at max_length {cut.get('max_length')}: "
                   + ", ".join(share(n) for n in ("train", "validation", "test")))
    return out


def render_markdown(report: dict, image: str | None = "pareto.png") -> str:
    rows = report.get("rows", [])
    recipe = report.get("recipe", {})
    env = report.get("environment", {})
    st = report.get("settings", {})
    data = report.get("data", {})
    shape = st.get("fixed_shape") or (rows[0].get("macs_shape") if rows else None)
    shape_txt = "×".join(str(s) for s in shape) if shape else "fixed shape"
    runtimes = ", ".join(f"{k} {v}" for k, v in (env.get("runtimes") or {}).items())
    rdata = recipe.get("data") or {}
    is_image = recipe.get("task") == "image-classification"

    out = [f"# edgeft report: {recipe.get('name', 'benchmark')}", ""]
    out.append(f"- **Created:** {report.get('created', '—')}")
    if recipe:
        out.append(f"- **Recipe:** `{recipe.get('name')}` — task {recipe.get('task')}, model "
                   f"`{(recipe.get('model') or {}).get('source')}`, data {data_name(rdata)}"
                   + (f" (image_size {rdata.get('image_size') or 224})" if is_image else
                      f" (max_length {rdata.get('max_length')})") + f", seed {recipe.get('seed')}")
    if rdata.get("max_samples"):
        caps = ", ".join(f"{k} {v}" for k, v in rdata["max_samples"].items())
        out.append(f"- **Shortened:** data capped at {caps} samples (`data.max_samples`)"
                   + ("" if "test" in rdata["max_samples"] else "; the test split is whole"))
    out.append(f"- **Machine:** {env.get('cpu', '?')}, {env.get('cores', '?')} cores, {env.get('machine', '')}; "
               f"ISA {' '.join(env.get('isa') or []) or '—'}; Python {env.get('python', '?')}")
    if runtimes:
        out.append(f"- **Runtimes:** {runtimes}")
    if env.get("busy"):
        share = env.get("others_cpu_share")
        used = f"{100 * share:.0f}% of the CPU" if share is not None else "part of the CPU"
        out.append(f"- **Warning:** other work used {used} while timing (1-min load "
                   f"{'/'.join(str(x) for x in env.get('load_avg_1min') or []) or '?'} on {env.get('cores', '?')} "
                   f"cores): absolute times are inflated and noisy; compare rows of this run only")
    if st and is_image:
        out.append(f"- **Settings:** {st.get('threads')} thread(s); latency at batch 1 over "
                   f"{st.get('latency_samples_used', st.get('latency_samples'))} test images of shape {shape_txt}, "
                   f"{st.get('rounds')} interleaved round(s) after {st.get('warmup')} warm-up runs; images have one "
                   f"shape, so the fixed-shape column repeats one image {st.get('fixed_runs')} times per round at "
                   f"that same shape (not a padded variant); throughput at batch {st.get('throughput_batch_size')}, "
                   f"{st.get('throughput_batches')} batches per round; peak RSS "
                   f"{'in a fresh process per row' if st.get('memory', True) else 'not measured'}")
    elif st:
        out.append(f"- **Settings:** {st.get('threads')} thread(s); latency at batch 1 over "
                   f"{st.get('latency_samples_used', st.get('latency_samples'))} test texts at their own length "
                   f"(mean {st.get('sample_mean_tokens', '?')} tokens), {st.get('rounds')} interleaved round(s) "
                   f"after {st.get('warmup')} warm-up runs; fixed shape {shape_txt}, {st.get('fixed_runs')} runs "
                   f"per round; throughput at batch {st.get('throughput_batch_size')}, "
                   f"{st.get('throughput_batches')} batches per round; peak RSS "
                   f"{'in a fresh process per row' if st.get('memory', True) else 'not measured'}")
    if data and is_image:
        out.append(f"- **Data:** test {data.get('test')} images, train {data.get('train')}, "
                   f"validation {data.get('validation')}")
    elif data:
        out.append(f"- **Data:** test {data.get('test')} samples (mean {data.get('test_mean_tokens', '?')} tokens), "
                   f"train {data.get('train')}, validation {data.get('validation')}")
    out += data_lines(data)
    out.append("")

    header = ["artifact", "precision", "accuracy %", "F1", "p50 ms", "p90 ms", "p99 ms", "fixed p50 ms",
              "throughput /s", "size MB", "params", f"MACs ({shape_txt})", "peak RSS MB", "speedup"]
    for t in _targets(rows):
        trows = [r for r in rows if r["target"] == t]
        order = pareto_front([((r.get("latency_ms") or {}).get("p50"), _pct(r.get("accuracy"))) for r in trows])
        front = set(order)
        if trows[0].get("device"):      # an SSH device: its own heading and fingerprint line
            out += [f"## Device `{t}` — over SSH ({(trows[0].get('fingerprint') or {}).get('ssh', '?')})", ""]
            out += device_lines(trows[0], (report.get("devices") or {}).get(t) or {})
        else:
            out += [f"## Target `{t}`{_describe(t)}", ""]
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|")
        for i, r in enumerate(trows):
            lat, fixed = r.get("latency_ms") or {}, r.get("latency_fixed_ms") or {}
            name = f"**{r['artifact']}**" if i in front else r["artifact"]
            sp = r.get("speedup_vs_reference")
            cells = [name, r.get("precision", "—"), _acc_cell(r), _f(r.get("f1"), "{:.3f}"),
                     _f(lat.get("p50")), _f(lat.get("p90")), _f(lat.get("p99")), _f(fixed.get("p50")),
                     _f(r.get("throughput_sps"), "{:.1f}"), _f(r.get("size_mb"), "{:.1f}"), _si(r.get("params")),
                     _si(r.get("macs")), _f(r.get("peak_rss_mb"), "{:.0f}"), _f(sp, "{:.2f}x")]
            out.append("| " + " | ".join(cells) + " |")
        names = [trows[i]["artifact"] for i in order]
        out += ["", f"Pareto front (fastest to most accurate): {', '.join(names) or '—'}", ""]
        agree = [f"{r['artifact']} {100 * r['agreement_with_host']:.1f}% (vs {r['host_row']})" for r in trows
                 if r.get("agreement_with_host") is not None]
        if agree:
            out += ["Same prediction as this machine's row of the artifact on the same runtime: "
                    + ", ".join(agree), ""]

    real = [r for r in rows if not r.get("emulated")]      # emulated latencies are never compared
    if len(_targets(real)) > 1:
        idx = pareto_front([((r.get("latency_ms") or {}).get("p50"), _pct(r.get("accuracy"))) for r in real])
        out += ["## Across targets", "",
                "Pareto front over every row" + (" (emulated devices left out)" if len(real) < len(rows) else "")
                + ": " + ", ".join(f"{real[i]['artifact']} on `{real[i]['target']}`" for i in idx), ""]
    refs = sorted({r["reference"] for r in rows if r.get("reference")})
    if report.get("not_run"):
        out += ["Not run (known at load time): " + "; ".join(
            f"{n['artifact']} on `{n['target']}`: {n['reason']}" for n in report["not_run"]), ""]
    nopay = [r for r in rows if r.get("int8_pays") is False]
    if nopay:
        out += ["## INT8 that buys nothing here", "",
                "These INT8 rows are less than 1.15x faster at p50 than the FP32 row of the same model on the same "
                "target, so they trade accuracy for no speed on this machine (typical of x86 CPUs without VNNI, "
                "where ONNX Runtime's INT8 kernels are no faster than FP32): ship the FP32 row, or a smaller "
                "model.", ""]
        out += [f"- {r['artifact']} on `{r['target']}`: {r['int8_speedup_vs_fp32']:.2f}x {r['int8_fp32_row']}"
                for r in nopay]
        out.append("")
    out += footprint_section(rows)
    out += gpu_section(rows)
    out += training_section(report.get("training") or [])
    out += failed_section(report.get("failed_stages") or [])
    out += failed_targets_section(report.get("failed_targets") or [])
    if image:
        out += [f"![accuracy vs p50 latency, one panel per target]({image})", ""]
    out += ["## What each column means", ""]
    out += [f"- **{k}**: {(LEGEND_IMAGE.get(k) if is_image else None) or v}" for k, v in LEGEND]
    if refs:
        out.append(f"- reference row(s): {', '.join(refs)}")
    out.append("")
    return "\n".join(out)


def footprint_section(rows: list[dict]) -> list[str]:
    """What the mobile runtimes need beside the artifact: ExecuTorch's delegated share and the operators
    left to portable kernels; the operators a reduced ONNX Runtime build must contain."""
    lines = []
    for r in rows:
        fp = r.get("runtime_footprint") or {}
        if fp.get("delegated_share") is not None:
            rest = ", ".join(f"{k} x{v}" for k, v in (fp.get("non_delegated_ops") or {}).items()) or "none"
            lines.append(f"- {r['artifact']} on `{r['target']}`: {100 * fp['delegated_share']:.0f}% of "
                         f"{(fp.get('delegated_nodes') or 0) + (fp.get('non_delegated_nodes') or 0)} operator nodes "
                         f"run in the XNNPACK delegate; portable kernels: {rest}")
        elif fp.get("required_operators") is not None:
            ops = "; ".join(f"{k}: {', '.join(v)}" for k, v in (fp.get("operators") or {}).items())
            lines.append(f"- {r['artifact']} on `{r['target']}`: a reduced ONNX Runtime build needs "
                         f"{fp['required_operators']} operators ({fp.get('config')}): {ops}")
    return ["## Runtime footprint", "", *lines, ""] if lines else []


def gpu_section(rows: list[dict]) -> list[str]:
    """GPU rows: the GPU, the device-side time of the same timed calls (CUDA events: the model's work
    without the copies of inputs and logits), peak GPU memory, and a TensorRT engine's profile."""
    lines = []
    for r in rows:
        g = r.get("gpu_latency_ms")
        fp = r.get("runtime_footprint") or {}
        if g is None and not fp.get("engine_device"):
            continue
        dev = ((r.get("fingerprint") or {}).get("gpu") or {})
        parts = [f"{dev.get('gpu', '?')} (compute capability {dev.get('compute_capability', '?')}, CUDA "
                 f"{dev.get('cuda', '?')})"]
        if g is not None:
            fixed = (r.get("gpu_latency_fixed_ms") or {}).get("p50")
            parts.append(f"GPU time p50 {_f(g.get('p50'))} ms of {_f((r.get('latency_ms') or {}).get('p50'))} ms "
                         f"end to end; fixed shape {_f(fixed)} ms")
        if r.get("peak_gpu_mb") is not None:
            parts.append(f"peak GPU memory (torch allocations) {r['peak_gpu_mb']:.0f} MB")
        if fp.get("profile"):
            parts.append("engine profile " + "; ".join(f"{k} {v[0]}..{v[2]} (opt {v[1]})"
                                                       for k, v in fp["profile"].items()))
        lines.append(f"- {r['artifact']} on `{r['target']}`: " + "; ".join(parts))
    return ["## GPU", "", *lines, ""] if lines else []


def training_section(training: list[dict]) -> list[str]:
    """How each trained model was trained (full, frozen layers, LoRA, IA3, distill, QAT) and what it cost."""
    if not training:
        return []
    out = ["## Training", "",
           "| artifact | stage | method | trainable params | share | train time | peak RSS MB | device "
           "| validation accuracy % | kept epoch |",
           "|---|---|---|---:|---:|---:|---:|---|---:|---:|"]
    for t in training:
        share = t.get("trainable_share")
        wall = t.get("train_wall_s")
        kept = "—" if t.get("kept_epoch") is None else str(t["kept_epoch"])
        if t.get("stopped_early_after_epoch") is not None:
            kept += f" (stopped after {t['stopped_early_after_epoch']})"
        out.append(f"| {t['artifact']} | {t.get('stage_type', '—')} | {t.get('method', '—')} "
                   f"| {_si(t.get('trainable_params'))} | {_f(_pct(share), '{:.2f}%')} "
                   f"| {'—' if wall is None else f'{wall / 60:.1f} min'} | {_f(t.get('train_peak_rss_mb'), '{:.0f}')} "
                   f"| {t.get('train_device') or '—'} | {_f(_pct(t.get('val_accuracy')))} | {kept} |")
    out += ["", "Peak RSS is the training process's resident memory at its highest while that stage trained "
                "(the data, the model, its gradients and optimizer state, the runtime). Adapters (lora, ia3) are "
                "merged into the weights before the model is stored: their rows above run at full-model cost.", ""]
    return out


def failed_section(failures: list[dict]) -> list[str]:
    """Markdown lines for the stages that failed (reason and figures) and those that needed them."""
    if not failures:
        return []
    out = ["## Failed stages (not measured)", "",
           "These stages failed their checks or raised; their artifacts are not in the tables above. "
           "The other branches ran. `edgeft run` exits 1 and a re-run retries only these.", ""]
    for f in failures:
        if f.get("blocked_by"):
            out.append(f"- **{f['stage']}**: not run, it needs {', '.join('@' + n for n in f['blocked_by'])}")
            continue
        figs = f.get("figures") or {}
        fig_txt = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in figs.items())
        reason = " ".join(str(f.get("error", "")).split())
        out.append(f"- **{f['stage']}** ({f.get('type', '?')}, {f.get('error_type', 'error')} after "
                   f"{f.get('wall_s', '?')} s): {reason}" + (f" — figures: {fig_txt}" if fig_txt else ""))
    out.append("")
    return out


def summary_table(report: dict) -> list[list[str]]:
    """The rows a person reads first, one per artifact x target: header + rows of strings."""
    rows = report.get("rows", [])
    front = set()
    for t in _targets(rows):
        idx = [i for i, r in enumerate(rows) if r["target"] == t]
        pts = [((rows[i].get("latency_ms") or {}).get("p50"), _pct(rows[i].get("accuracy"))) for i in idx]
        front |= {idx[j] for j in pareto_front(pts)}
    out = [["artifact", "target", "precision", "accuracy %", "p50 ms", "fixed p50 ms", "size MB", "speedup", "front"]]
    for i, r in enumerate(rows):
        out.append([r["artifact"], r["target"], r.get("precision", "—"), _acc_cell(r),
                    _f((r.get("latency_ms") or {}).get("p50")), _f((r.get("latency_fixed_ms") or {}).get("p50")),
                    _f(r.get("size_mb"), "{:.1f}"), _f(r.get("speedup_vs_reference"), "{:.2f}x"),
                    "*" if i in front else ""])
    return out


def device_lines(row: dict, env: dict) -> list[str]:
    """The fingerprint line (and load / emulation notes) of an SSH device, from its first row."""
    fp = row.get("fingerprint") or {}
    mem = f", {fp['memory_mb'] / 1024:.1f} GB" if fp.get("memory_mb") else ""
    out = [f"- **Device:** {fp.get('cpu', '?')}, {fp.get('arch', '?')}, {fp.get('cores', '?')} cores{mem}; "
           f"ISA {' '.join(fp.get('isa') or []) or '—'}; {fp.get('os', '?')}; Python {fp.get('python', '?')}, "
           f"numpy {fp.get('numpy', '?')}; {fp.get('runtime', '?')}, {fp.get('threads', '?')} thread(s)"
           + (f"; {env['temperature_c']:.0f} °C after timing" if env.get("temperature_c") is not None else "")]
    if env.get("busy"):
        share = env.get("others_cpu_share")
        out.append(f"- **Warning:** other work used {100 * share:.0f}% of the device's CPU while timing"
                   if share is not None else "- **Warning:** the device was busy while timing")
    if row.get("emulated"):
        out.append("- **Emulated:** this device is an emulator; its latencies show that the artifacts run and "
                   "give these answers there, not how fast real hardware is (never compared with other rows)")
    out.append("- Peak RSS is not measured per row on a device (one process runs every row); speedups are "
               "against rows of this device only")
    return out + [""]


def failed_targets_section(failures: list[dict]) -> list[str]:
    """Markdown lines for the SSH devices that failed: their rows are missing, the others are above."""
    if not failures:
        return []
    out = ["## Failed devices (not measured)", "",
           "These devices failed; their rows are not in the tables above, the other targets' rows are. "
           "`edgeft run` exits 1 and a re-run measures only these again.", ""]
    out += [f"- **{f['target']}** (step {f['step']}; artifacts {', '.join(f.get('artifacts') or [])}): "
            + " ".join(str(f["error"]).split()) for f in failures]
    return out + [""]


def _describe(target: str) -> str:
    try:
        from .targets import TARGETS
    except ImportError:
        return ""
    info = TARGETS.get(target)
    return f" — {info.description}" if info else ""


# ---------------------------------------------------------------------------------------------- plot

def plot_pareto(report: dict, path: str | Path) -> Path:
    """Accuracy (%) against p50 latency at real lengths, one panel per target, the Pareto front
    drawn as a step line (the best accuracy reachable within a latency budget)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    rows = report.get("rows", [])
    targets = _targets(rows) or ["(no rows)"]
    fig, axes = plt.subplots(1, len(targets), figsize=(5.2 * len(targets), 4.2), squeeze=False, sharey=True)
    for ax, t in zip(axes[0], targets):
        trows = [r for r in rows if r.get("target") == t]
        pts = [((r.get("latency_ms") or {}).get("p50"), _pct(r.get("accuracy"))) for r in trows]
        ok = [i for i, (x, y) in enumerate(pts) if x is not None and y is not None]
        front = pareto_front(pts)
        ax.scatter([pts[i][0] for i in ok], [pts[i][1] for i in ok], s=36, color="tab:blue", zorder=3)
        for i in ok:
            ax.annotate(trows[i]["artifact"], pts[i], textcoords="offset points", xytext=(5, 5), fontsize=8)
        if front:
            fx, fy = [pts[i][0] for i in front], [pts[i][1] for i in front]
            ax.step(fx, fy, where="post", color="tab:red", lw=1.5, label="Pareto front", zorder=2)
            ax.scatter(fx, fy, s=110, facecolors="none", edgecolors="tab:red", lw=1.5, zorder=4)
            ax.legend(loc="lower right", fontsize=8)
        if ok:
            xs = [pts[i][0] for i in ok]
            ax.set_xlim(0, max(xs) * 1.25)
        ax.margins(y=0.15)
        dev = trows[0].get("device") if trows else None
        ax.set_title(f"device: {t}" + (" (emulated)" if trows[0].get("emulated") else "") if dev else f"target: {t}")
        ax.set_xlabel("p50 latency, batch 1, real lengths (ms)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (%)")
    name = (report.get("recipe") or {}).get("name", "")
    fig.suptitle(f"accuracy vs latency{': ' + name if name else ''}", fontsize=11)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(path.stem + ".part.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)
    return path
