"""Latency of pruned structures before training any of them: which pruning pays off on this CPU?

Each structure (layers kept, heads kept per layer, FFN width) is cut out of the shipped MiniLM with
edgeft.ops.pruning (which heads and neurons go does not matter for speed), exported like the export
stage with `optimize: true`, quantized to dynamic INT8 like the quantize stage, and timed on ONNX
Runtime (the `cpu` target's session options) at batch 1 on real test sentences at their own
lengths, all structures interleaved in one run. Ratios are against the dense 6-layer model.

    python benchmarks/prune_structures.py [--samples 200] [--rounds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

# name: (layers kept or None for all, heads kept per layer, FFN width)
STRUCTURES = {
    "6L": (None, 12, 1536), "6L-h50-f50": (None, 6, 768),
    "4L-f50": ([0, 2, 3, 5], 12, 768), "4L-h50-f50": ([0, 2, 3, 5], 6, 768), "4L-h50-f75": ([0, 2, 3, 5], 6, 384),
    "3L": ([1, 3, 5], 12, 1536), "3L-f50": ([1, 3, 5], 12, 768), "3L-f75": ([1, 3, 5], 12, 384),
    "3L-h50-f50": ([1, 3, 5], 6, 768), "2L": ([2, 5], 12, 1536), "2L-f50": ([2, 5], 12, 768),
}


def build(base, keep, heads: int, ffn: int):
    from edgeft.ops import pruning

    m = copy.deepcopy(base)
    if keep:
        pruning.drop_layers(m, keep)
    n = m.config.num_hidden_layers
    if heads < m.config.num_attention_heads:
        m.prune_heads({i: list(range(m.config.num_attention_heads - heads)) for i in range(n)})
    if ffn < m.config.intermediate_size:
        pruning.prune_ffn(m, [torch.rand(m.config.intermediate_size) for _ in range(n)], ffn)
    return m.eval()


def main(argv=None):
    import onnxruntime as ort

    from edgeft.models import resolve_source
    from edgeft.ops import onnx_export as ox
    from edgeft.ops.ort_quantization import quantize_dynamic_int8
    from edgeft.ops.timing import interleaved_latencies, percentiles
    from edgeft.recipe import load_recipe
    from edgeft.targets.ort_cpu import PROVIDER, session_options
    from edgeft.tasks import text_classification as task

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipe", default=str(ROOT / "recipes/minilm-rotten-tomatoes.yaml"))
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    recipe = load_recipe(args.recipe)
    splits = task.load_splits(recipe)
    src = resolve_source(recipe.model.source)
    proc = task.load_processor(src)
    torch.manual_seed(0)
    base = task.load_model(src, list(splits.label_names))
    feeds = [task.encode(proc, [t], recipe.data.max_length) for t in splits.test.items[:args.samples]]
    sessions, params = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (keep, heads, ffn) in STRUCTURES.items():
            m = build(base, keep, heads, ffn)
            d = Path(tmp) / name
            d.mkdir()
            ox.export_onnx(m, feeds[0], d / "plain.onnx", list(feeds[0]), task.OUTPUT_NAMES, 18, task.INPUT_AXES)
            pruned = bool(m.config.pruned_heads)
            ox.optimize_transformer(d / "plain.onnx", d / "fused.onnx", "bert", 0 if pruned else heads,
                                    0 if pruned else m.config.hidden_size)
            quantize_dynamic_int8(d / "fused.onnx", d / "int8.onnx")
            sessions[name] = ort.InferenceSession(str(d / "int8.onnx"), session_options(args.threads),
                                                  providers=[PROVIDER])
            params[name] = sum(p.numel() for p in m.parameters())
        rows = {n: [(lambda s=s, f=f: s.run(None, f)) for f in feeds] for n, s in sessions.items()}
        times = interleaved_latencies(rows, rounds=args.rounds, warmup=20)
    dense = percentiles(times["6L"])["p50"]
    print("| structure | params | INT8 p50 ms (real lengths, batch 1) | vs 6L |\n|---|---:|---:|---:|")
    for n in STRUCTURES:
        p50 = percentiles(times[n])["p50"]
        print(f"| {n} | {params[n] / 1e6:.2f}M | {p50:.3f} | {p50 / dense:.3f} |")


if __name__ == "__main__":
    main()
