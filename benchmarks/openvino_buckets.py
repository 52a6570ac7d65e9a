"""OpenVINO CPU: fully dynamic input shapes vs static length buckets, on a finished run's models.

Bucketed: one compiled model per sequence length in BUCKETS, each request padded (attention mask 0)
up to the next bucket. Dynamic: one model, every request at its own length. Same test sentences,
batch 1, the openvino target's compile settings, all rows interleaved in one process.

    python benchmarks/openvino_buckets.py runs/minilm-rotten-tomatoes [--stages onnx-plain,ov-int8,student-ov-int8]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

BUCKETS = (16, 32, 64)


def main(argv=None):
    import openvino as ov

    from edgeft.artifact import Artifact
    from edgeft.ops.timing import interleaved_latencies, percentiles
    from edgeft.recipe import validate_recipe
    from edgeft.run_state import read_run_state
    from edgeft.targets.openvino_cpu import compile_model
    from edgeft.tasks import text_classification as task

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--stages", default="onnx-plain,ov-int8,student-ov-int8")
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    run = Path(args.run_dir)
    state = read_run_state(run)
    recipe = validate_recipe(state["recipe"], check_data=False,
                             base_dir=Path(state.get("recipe_dir") or Path(__file__).resolve().parents[1] / "recipes"))
    test = task.load_splits(recipe).test
    stages = state["stages"]
    rows = {}
    for name in args.stages.split(","):
        p = Path(stages[name]["path"])
        art = Artifact.read(p if p.is_dir() else p.parent)
        proc = task.load_processor(art.path)
        feeds = [task.encode(proc, [t], recipe.data.max_length) for t in test.items[:args.samples]]
        dyn = compile_model(art.main_path, args.threads).create_infer_request()
        names = [i.get_any_name() for i in ov.Core().read_model(str(art.main_path)).inputs]
        fixed = {}
        for b in BUCKETS:
            m = ov.Core().read_model(str(art.main_path))
            m.reshape({n: [1, b] for n in names})
            fixed[b] = compile_model(m, args.threads).create_infer_request()

        def bucketed(f, fixed=fixed, names=names):   # called at once (map below); bound anyway
            length = f["input_ids"].shape[1]
            b = next(x for x in BUCKETS if x >= length)
            return fixed[b], {n: np.pad(f[n], ((0, 0), (0, b - length))) for n in names}

        # every value the calls use is bound now: a closure over the loop's variables would run the
        # last model in every row (the bug behind this script's first published figures)
        rows[f"{name} dynamic"] = [(lambda rq=dyn, g={n: f[n] for n in names}: rq.infer(g)) for f in feeds]
        rows[f"{name} buckets"] = [(lambda rq=rq, g=g: rq.infer(g)) for rq, g in map(bucketed, feeds)]
        req, g = bucketed(feeds[0])
        diff = np.abs(np.array(dyn.infer({n: feeds[0][n] for n in names})[0]) - np.array(req.infer(g)[0])).max()
        print(f"{name}: max |logit(dynamic) - logit(bucket)| = {diff:.2e}")
    times = interleaved_latencies(rows, rounds=3, warmup=20)
    print("| model, shapes | p50 ms | p90 ms |\n|---|---:|---:|")
    for k, v in times.items():
        p = percentiles(v)
        print(f"| {k} | {p['p50']:.3f} | {p['p90']:.3f} |")


if __name__ == "__main__":
    main()
