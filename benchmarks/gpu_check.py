"""The GPU check (run by benchmarks/gpu_check.sh on a machine with an NVIDIA GPU): one edgeft recipe that
fine-tunes MiniLM on Rotten Tomatoes on CUDA with bf16 autocast (1 epoch, a few hundred steps), exports
it to ONNX, and benchmarks it on the CPU targets and the GPU ones this machine has:

- always: pytorch (CPU) and cuda / cuda-fp16 / cuda-bf16 on the fine-tuned torch model; cpu (ONNX Runtime)
  on its ONNX export;
- where ONNX Runtime has the CUDA provider (onnxruntime-gpu): the ONNX export on cuda and cuda-fp16;
- where TensorRT is installed: FP16 and INT8 (symmetric static QDQ) engines on the tensorrt target.
What is left out, and why, is printed. Then the report tables, and checks: fine-tuning ran on CUDA in
bf16, every planned row exists, FP32 on the GPU gives the CPU's accuracy within 0.5 points and
fp16/bf16 (and an INT8 engine against its QDQ model on ONNX Runtime CPU) within 2, each GPU row's
device time is at most its end-to-end time. Exit 1 if any check
fails, 2 if there is no GPU (unless --allow-cpu: a dry run of this script's own plumbing on a CPU
machine, which says that nothing GPU ran).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FP32_POINTS, LOW_POINTS = 0.5, 2.0
ENGINE_SOURCE = {"trt-fp16": "onnx", "trt-int8": "int8-sym"}


def widen(src: Path, dst: Path) -> Path:
    """The packed fp16 weights (benchmarks/gpu_pack.py) back to an FP32 model folder."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    if (dst / "model.safetensors").is_file():
        return dst
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    w = load_file(str(src / "model.safetensors"))
    save_file({k: v.to(torch.float32) if v.is_floating_point() else v for k, v in w.items()},
              str(tmp / "model.safetensors"))
    tmp.rename(dst)
    return dst


def plan(model: str, work: Path, quick: bool) -> tuple[dict, list[str]]:
    """The recipe (as a dict) for what this machine has, and the parts left out with the reason."""
    from edgeft.ops.gpu import cuda_unavailable_reason, ort_cuda_unavailable_reason, tensorrt_unavailable_reason

    skipped, gpu = [], cuda_unavailable_reason() is None
    bench = {"latency_samples": 40 if quick else 200, "rounds": 1 if quick else 2, "fixed_runs": 10 if quick else 50,
             "throughput_batches": 2 if quick else 4, "warmup": 5 if quick else 20}
    torch_targets = ["pytorch"] + (["cuda", "cuda-fp16", "cuda-bf16"] if gpu else [])
    onnx_targets, engines = ["cpu"], []
    if not gpu:
        skipped.append(f"cuda targets: {cuda_unavailable_reason()}")
    elif why := ort_cuda_unavailable_reason():
        skipped.append(f"ONNX on cuda / cuda-fp16: {why}")
    else:
        onnx_targets += ["cuda", "cuda-fp16"]
    if why := tensorrt_unavailable_reason():
        skipped.append(f"TensorRT engines (FP16, INT8 from symmetric QDQ): {why}")
    else:
        engines = ["@trt-fp16", "@trt-int8"]
        onnx_targets.append("tensorrt")
    stages = [{"name": "finetune", "type": "finetune", "epochs": 1, "lr": 8.0e-5, "batch_size": 32,
               "precision": "bf16" if gpu else "fp32"},
              {"name": "onnx", "type": "export", "input": "@finetune"}]
    if engines:
        stages += [{"name": "int8-sym", "type": "quantize", "input": "@onnx", "method": "static",
                    "activations": "symmetric", "calibration": str(work / "calibration.yaml")},
                   {"name": "trt-fp16", "type": "export", "format": "tensorrt", "precision": "fp16", "input": "@onnx"},
                   {"name": "trt-int8", "type": "export", "format": "tensorrt", "precision": "int8",
                    "input": "@int8-sym"}]
    stages += [{"name": "bench-torch", "type": "benchmark", "artifacts": ["@finetune"], "targets": torch_targets,
                **bench},
               {"name": "bench-onnx", "type": "benchmark", "artifacts": ["@onnx", *(["@int8-sym"] if engines else []),
                                                                         *engines],
                "targets": onnx_targets, **bench}]
    recipe = {"name": "gpu-check", "seed": 0, "task": "text-classification", "model": {"source": model},
              "data": {"source": "builtin:rotten_tomatoes", "split": {"validation": 0.05, "test": 0.2},
                       "max_length": 64, "max_samples": {"train": 800, "validation": 200, "test": 400} if quick
                       else {"validation": 400}},
              "stages": stages}
    return recipe, skipped


def table(rows: list[dict]) -> list[str]:
    out = ["| artifact | target | precision | test acc % | p50 ms | GPU p50 ms | fixed p50 ms | samples/s b32 | "
           "peak GPU MB |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        g = (r.get("gpu_latency_ms") or {}).get("p50")
        out.append(f"| {r['artifact']} | {r['target']} | {r['precision']} | {100 * r['accuracy']:.2f} | "
                   f"{r['latency_ms']['p50']:.3f} | {'—' if g is None else f'{g:.3f}'} | "
                   f"{r['latency_fixed_ms']['p50']:.3f} | {r['throughput_sps']:.0f} | "
                   f"{r.get('peak_gpu_mb') if r.get('peak_gpu_mb') is not None else '—'} |")
    return out


def checks(result, recipe: dict, gpu: bool) -> tuple[list[str], list[dict]]:
    """(failures, every row) of a finished run."""
    from edgeft.targets import TARGETS

    fails, rows = [], []
    ft = result.artifacts.get("finetune")
    if ft is None:
        return ["finetune did not finish"], rows
    if gpu and (ft.meta.get("train_precision") != "bf16" or not str(ft.meta.get("device", "")).startswith("cuda")):
        fails.append(f"finetune ran on {ft.meta.get('device')} in {ft.meta.get('train_precision')}, not CUDA bf16")
    for s in recipe["stages"]:
        if s["type"] != "benchmark":
            continue
        art = result.artifacts.get(s["name"])
        if art is None:
            fails.append(f"{s['name']} did not finish")
            continue
        got = json.loads(art.main_path.read_text())["rows"]
        rows += got
        have = {(r["artifact"], r["target"]) for r in got}
        kinds = {a: result.artifacts[a[1:]].kind for a in s["artifacts"] if a[1:] in result.artifacts}
        want = {(a[1:], t) for a, k in kinds.items() for t in s["targets"] if k in TARGETS[t].accepts}
        if want - have:
            fails.append(f"{s['name']}: rows missing: {sorted(want - have)}")
    by = {(r["artifact"], r["target"]): r for r in rows}
    for (a, t), r in by.items():
        src = ENGINE_SOURCE.get(a, a)       # an engine is compared with its ONNX source on the CPU
        ref = by.get((src, "pytorch")) or by.get((src, "cpu"))
        if ref is None or r is ref:
            continue
        limit = FP32_POINTS if r["precision"] == "fp32" else LOW_POINTS
        if abs(r["accuracy"] - ref["accuracy"]) * 100 > limit:
            fails.append(f"{a} on {t} ({r['precision']}): accuracy {100 * r['accuracy']:.2f}% vs "
                         f"{100 * ref['accuracy']:.2f}% on {ref['target']}, more than {limit} points apart")
        g = (r.get("gpu_latency_ms") or {}).get("p50")
        if g is not None and g > r["latency_ms"]["p50"]:
            fails.append(f"{a} on {t}: GPU time p50 {g:.3f} ms above its end-to-end p50 {r['latency_ms']['p50']:.3f}")
    return fails, rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=str(ROOT / ".gpucheck" / "minilm-fp16"), help="packed model (gpu_pack.py)")
    ap.add_argument("--work", default="/tmp/edgeft-gpu-check")
    ap.add_argument("--out", default=os.environ.get("OUT"), help="copy report.json/report.md here")
    ap.add_argument("--quick", action="store_true", help="small data and timing (a smoke run)")
    ap.add_argument("--allow-cpu", action="store_true", help="dry run without a GPU (tests this script only)")
    a = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    import torch
    import transformers

    from edgeft.calibration import write_manifest
    from edgeft.ops.gpu import cuda_unavailable_reason, gpu_info
    from edgeft.recipe import validate_recipe
    from edgeft.runner import run_recipe
    from edgeft.targets.fingerprint import host_fingerprint, runtime_versions

    gpu = cuda_unavailable_reason() is None
    if not gpu and not a.allow_cpu:
        print(f"gpu_check: no GPU: {cuda_unavailable_reason()}", file=sys.stderr)
        return 2
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    model = Path(a.model)
    if (model / "model.safetensors").is_file() and model.name.endswith("-fp16"):
        model = widen(model, work / "minilm-fp32")
    print(f"gpu_check: {'GPU ' + json.dumps(gpu_info()) if gpu else 'DRY RUN ON CPU: nothing GPU runs'}")
    print(f"gpu_check: torch {torch.__version__}, transformers {transformers.__version__}, "
          f"{json.dumps(runtime_versions())}; host {json.dumps(host_fingerprint())}")
    recipe_dict, skipped = plan(str(model), work, a.quick)
    for s in skipped:
        print(f"gpu_check: SKIPPED {s}")
    if any(s.get("calibration") for s in recipe_dict["stages"]):
        write_manifest(validate_recipe({**recipe_dict, "stages": recipe_dict["stages"][:1]}),
                       work / "calibration.yaml", split="train", num_samples=128, seed=0)
    recipe = validate_recipe(recipe_dict)
    t0 = time.perf_counter()
    result = run_recipe(recipe, runs_dir=work / "runs")
    wall = time.perf_counter() - t0
    fails, rows = checks(result, recipe_dict, gpu)
    ft = result.artifacts.get("finetune")
    if ft is not None:
        m = ft.meta
        print(f"\nfinetune: {m.get('device')} {m.get('train_precision')}, {m.get('steps')} steps, "
              f"{m.get('train_wall_s')} s, val accuracy {m.get('val_accuracy')}, peak CUDA "
              f"{m.get('train_peak_cuda_mb')} MB")
    print("\n" + "\n".join(table(rows)))
    for name, f in result.failed.items():
        fails.append(f"stage {name} failed: {f.get('error')}")
    for name, needs in result.blocked.items():
        fails.append(f"stage {name} did not run: it needs {', '.join(needs)}")
    if a.out:
        from edgeft.report import render_markdown

        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        for s in recipe_dict["stages"]:
            art = result.artifacts.get(s["name"]) if s["type"] == "benchmark" else None
            if art is not None:
                report = json.loads(art.main_path.read_text())
                (out / f"{s['name']}-report.json").write_text(json.dumps(report, indent=1))
                (out / f"{s['name']}-report.md").write_text(render_markdown(report, image=None))
        (out / "rows.json").write_text(json.dumps({"rows": rows, "skipped": skipped, "failures": fails,
                                                   "gpu": gpu_info(), "wall_s": round(wall, 1)}, indent=1))
    print(f"\ngpu_check: {len(rows)} rows in {wall:.0f} s; " + ("ALL CHECKS PASSED" if not fails else
                                                                 f"{len(fails)} CHECK(S) FAILED:"))
    for f in fails:
        print(f"  - {f}")
    if not gpu:
        print("gpu_check: this was a dry run on a CPU: no GPU path was exercised")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
