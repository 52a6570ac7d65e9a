"""INT8 on a CPU without VNNI, checked on this machine by emulating one (qemu-user, `-cpu Haswell`:
AVX2, FMA, no AVX-512, no VNNI), so the numbers of an AVX2-only CPU can be checked on any x86 box.

    python benchmarks/int8_isa_check.py --micro [--json]      # the saturation itself, one MatMulInteger
    python benchmarks/int8_isa_check.py RUN_DIR [--samples 64] [--stages a,b]

--micro: u8 activations (250) x s8 weights near the int8 limit, the case ONNX Runtime's docs warn
about: relative error of int8 full-range, 7-bit (reduce_range) and uint8 (zero point 128) weights.
Run it natively (all exact on VNNI/AMX) and under `qemu-x86_64 -cpu Haswell` (full range saturates).

RUN_DIR: every INT8 ONNX artifact of a finished run, plus a uint8-weight copy of each int8 one
(ops.qdq.weights_to_uint8), runs natively and under emulated Haswell on real validation
samples; prints agreement and max |Δlogit| of emulated AVX2 vs native, and vs the FP32 source.
Emulation is for numbers only, never for timing (it is ~50x slower). OpenVINO does not run under
qemu-user (it crashed with SIGSEGV here), so its AVX2 path is not checked by this script.
Needs `apt-get install qemu-user`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]     # the checkout: recipe paths resolve from here


def micro() -> dict:
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    k, n = 64, 16
    w = np.random.default_rng(0).integers(-128, 128, size=(k, n)).astype(np.int8)
    cases = {"int8 full range": (w, 0), "int8 7-bit (reduce_range)": ((w // 2).astype(np.int8), 0),
             "uint8 (zero point 128)": ((w.astype(np.int16) + 128).astype(np.uint8), 128)}
    a = np.full((1, k), 250, np.uint8)
    out = {}
    for name, (wq, zp) in cases.items():
        g = helper.make_graph(
            [helper.make_node("MatMulInteger", ["A", "W", "za", "zw"], ["Y"])], "g",
            [helper.make_tensor_value_info("A", TensorProto.UINT8, [1, k])],
            [helper.make_tensor_value_info("Y", TensorProto.INT32, [1, n])],
            [numpy_helper.from_array(wq, "W"), numpy_helper.from_array(np.array(0, np.uint8), "za"),
             numpy_helper.from_array(np.array(zp, wq.dtype), "zw")])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
        m.ir_version = 8
        y = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"A": a})[0]
        exact = a.astype(np.int64) @ (wq.astype(np.int64) - zp)
        out[name] = float(np.abs(y - exact).max() / np.abs(exact).max())
    return out


def run_models(models: list[str], feeds_npz: str, out_npz: str) -> None:
    """Child side: every model on every feed, logits saved to out_npz."""
    import onnxruntime as ort

    data = np.load(feeds_npz)
    n = int(data["n"])
    res = {}
    for i, path in enumerate(models):
        s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        names = [x.name for x in s.get_inputs()]
        res[f"m{i}"] = np.concatenate([s.run(None, {k: data[f"{j}:{k}"] for k in names})[0] for j in range(n)])
    np.savez(out_npz, **res)


def check_run(run_dir: Path, samples: int, stages: list[str] | None) -> list[dict]:
    from edgeft.artifact import Artifact
    from edgeft.ops.qdq import weights_to_uint8
    from edgeft.recipe import validate_recipe
    from edgeft.run_state import read_run_state
    from edgeft.tasks import get_task

    state = read_run_state(run_dir)
    recipe = validate_recipe(state["recipe"], base_dir=Path(state.get("recipe_dir") or ROOT), check_data=False)
    task = get_task(recipe.task)
    val = task.load_splits(recipe).validation
    arts = {n: Artifact.read(Path(s["path"]).parent if Path(s["path"]).is_file() else Path(s["path"]))
            for n, s in state["stages"].items() if s.get("path") and s.get("kind") == "onnx"}
    int8 = [n for n, a in arts.items() if a.meta.get("precision") == "int8" and (not stages or n in stages)]
    tmp = Path(tempfile.mkdtemp(prefix="isa-check-"))
    models, labels, fp32_models = [], [], {}
    for n in int8:
        a = arts[n]
        models.append(str(a.main_path))
        labels.append((n, "as stored"))
        if a.meta.get("int8_format", {}).get("ort_weights", "int8") == "int8":
            u8 = tmp / f"{n}-u8.onnx"
            if weights_to_uint8(a.main_path, u8)["weights_to_uint8"]:      # QDQ models (dynamic INT8 has no DQ)
                models.append(str(u8))
                labels.append((n, "uint8 copy"))
        src = next((x for x in arts.values() if x.key in a.parents), None)
        if src is not None:
            fp32_models[n] = str(src.main_path)      # run natively only: the FP32 reference
    proc = task.load_processor(arts[int8[0]].path, recipe.data)
    feeds = {"n": np.array(min(samples, len(val)))}
    for j, t in enumerate(val.items[:samples]):
        for k, v in task.encode(proc, [t], recipe.data.max_length).items():
            feeds[f"{j}:{k}"] = v
    np.savez(tmp / "feeds.npz", **feeds)
    run_models(models + list(fp32_models.values()), str(tmp / "feeds.npz"), str(tmp / "native.npz"))
    cmd = ["qemu-x86_64", "-cpu", "Haswell", sys.executable, __file__, "--child", str(tmp / "feeds.npz"),
           str(tmp / "haswell.npz"), *models]
    subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL)
    nat, has = np.load(tmp / "native.npz"), np.load(tmp / "haswell.npz")
    rows = []
    for n in int8:
        idx = {form: i for i, (name, form) in enumerate(labels) if name == n}
        fp32 = nat[f"m{len(models) + list(fp32_models).index(n)}"] if n in fp32_models else None
        for form in ("as stored", "uint8 copy"):
            if form not in idx:
                continue
            a, b = nat[f"m{idx[form]}"], has[f"m{idx[form]}"]
            row = {"stage": n, "weights": form if form == "uint8 copy" else arts[n].meta.get("int8_format", {}).get(
                       "ort_weights", "int8"), "samples": int(len(a)),
                   "avx2_vs_native_max_abs_diff": float(np.abs(a - b).max()),
                   "avx2_vs_native_agreement": float((a.argmax(-1) == b.argmax(-1)).mean())}
            if fp32 is not None:
                row["avx2_vs_fp32_agreement"] = float((b.argmax(-1) == fp32.argmax(-1)).mean())
                row["native_vs_fp32_agreement"] = float((a.argmax(-1) == fp32.argmax(-1)).mean())
            rows.append(row)
    shutil.rmtree(tmp, ignore_errors=True)
    return rows


def main(argv=None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--child":
        run_models(sys.argv[4:], sys.argv[2], sys.argv[3])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", nargs="?")
    ap.add_argument("--micro", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--stages", default=None)
    a = ap.parse_args(argv)
    if a.micro:
        res = micro()
        print(json.dumps(res) if a.json else "\n".join(f"{k}: max relative error {v:.3g}" for k, v in res.items()))
        return 0
    if not a.run_dir:
        ap.error("give RUN_DIR or --micro")
    if shutil.which("qemu-x86_64") is None:
        raise SystemExit("needs qemu-user: apt-get install qemu-user")
    rows = check_run(Path(a.run_dir), a.samples, a.stages.split(",") if a.stages else None)
    print(json.dumps(rows, indent=2) if a.json else "\n".join(
        f"{r['stage']:22s} {r['weights']:11s} n={r['samples']} AVX2 vs native: max |Δ| "
        f"{r['avx2_vs_native_max_abs_diff']:.4f}, agreement {r['avx2_vs_native_agreement']:.4f}; "
        f"vs FP32: AVX2 {r.get('avx2_vs_fp32_agreement', float('nan')):.4f}, "
        f"native {r.get('native_vs_fp32_agreement', float('nan')):.4f}" for r in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
