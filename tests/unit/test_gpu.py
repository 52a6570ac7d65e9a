"""NVIDIA GPU paths: everything up to the device boundary runs here on the CPU (profile shapes from real
data, the engine cache key, recipe validation, the mismatched-engine check, the QDQ form TensorRT reads,
GPU timing bookkeeping); the tests that need a GPU or TensorRT are marked `gpu` / `tensorrt` and skip
with the reason where there is none (CI and the development machines have none).
"""

from __future__ import annotations

import numpy as np
import pytest

from edgeft.errors import RecipeError
from edgeft.ops import gpu
from edgeft.recipe import validate_recipe
from tests.conftest import small_recipe

H200 = {"gpu": "NVIDIA H200", "compute_capability": "9.0", "tensorrt": "11.4.0.106", "cuda": "13.0"}
H100 = {**H200, "gpu": "NVIDIA H100 80GB HBM3"}

NO_CUDA = gpu.cuda_unavailable_reason()
NO_TRT = gpu.tensorrt_unavailable_reason()
needs_gpu = [pytest.mark.gpu, pytest.mark.slow, pytest.mark.skipif(NO_CUDA is not None, reason=f"no GPU: {NO_CUDA}")]
needs_trt = [pytest.mark.tensorrt, pytest.mark.slow,
             pytest.mark.skipif(NO_TRT is not None, reason=f"no TensorRT: {NO_TRT}")]


def _apply(marks):
    def deco(fn):
        for m in reversed(marks):
            fn = m(fn)
        return fn
    return deco


# ------------------------------------------------------------------ profile shapes from the recipe's data

def test_profile_shapes_come_from_the_real_data():
    from edgeft.models import resolve_source
    from edgeft.ops.tensorrt_engine import outside_profile, profile_shapes
    from edgeft.tasks import text_classification as task

    recipe = validate_recipe(small_recipe())
    splits = task.load_splits(recipe)
    tok = task.load_processor(resolve_source(recipe.model.source))
    lengths = {n: task.example_lengths(tok, splits.get(n).items, 32) for n in ("train", "validation", "test")}
    everything = np.concatenate(list(lengths.values()))
    example = task.encode(tok, splits.validation.items[:1], 32)
    prof = profile_shapes(example, task.INPUT_AXES, everything, lengths["train"], 32, max_batch=64)
    assert set(prof) == set(example)
    lo, opt, hi = prof["input_ids"]
    assert lo == [1, int(everything.min())] and hi == [64, 32]
    assert opt == [1, int(round(float(np.median(lengths["train"]))))]
    assert lo[1] < opt[1] < hi[1]               # real review snippets: 32 truncates some, the shortest are short
    # every test example fits at its own length, and the benchmark's accuracy batches of 64 fit too
    for text in splits.test.items[:50]:
        assert outside_profile(task.encode(tok, [text], 32), prof) is None
    assert outside_profile(task.encode(tok, splits.test.items[:64], 32, pad_to_max=True), prof) is None
    why = outside_profile(task.encode(tok, splits.test.items[:65], 32), prof)
    assert "shape [65," in why and "[64, 32]" in why


def test_image_profiles_have_only_a_batch_axis():
    from edgeft.ops.tensorrt_engine import profile_shapes

    example = {"pixel_values": np.zeros((1, 3, 64, 64), np.float32)}
    prof = profile_shapes(example, {0: "batch"}, np.ones(10), np.ones(10), 0, max_batch=32, opt_batch=8)
    assert prof == {"pixel_values": [[1, 3, 64, 64], [8, 3, 64, 64], [32, 3, 64, 64]]}
    with pytest.raises(ValueError, match="opt_batch 40"):
        profile_shapes(example, {0: "batch"}, np.ones(10), np.ones(10), 0, max_batch=32, opt_batch=40)


# ------------------------------------------------------------------ engines are specific to their GPU

def test_engine_mismatch_names_both_machines_and_what_differs():
    assert gpu.engine_mismatch(H200, dict(H200)) is None
    why = gpu.engine_mismatch(H200, H100)
    assert "NVIDIA H200" in why and "NVIDIA H100 80GB HBM3" in why and "run the export stage again" in why
    assert "tensorrt" in gpu.engine_mismatch(H200, {**H200, "tensorrt": "10.14.1.48"})
    assert "cuda '12.8' (built)" in gpu.engine_mismatch({**H200, "cuda": "12.8"}, H200)
    assert "not built by edgeft" in gpu.engine_mismatch(None, H200)
    assert "cannot run TensorRT engines" in gpu.engine_mismatch(H200, {"unavailable": "no GPU"})


def test_a_mismatched_engine_is_refused_before_tensorrt_sees_it(tmp_path, monkeypatch):
    """Up to the device boundary: the check runs before deserialization (TensorRT is not even imported:
    it is not installed here, so reaching it would be an ImportError, not this message)."""
    from edgeft.artifact import Artifact
    from edgeft.targets import tensorrt as trt_target

    (tmp_path / "model.plan").write_bytes(b"\x00" * 64)
    art = Artifact(key="k", kind="tensorrt", stage="engine", stage_type="export", path=tmp_path, file="model.plan",
                   meta={"engine_device": H200, "profile": {}})
    monkeypatch.setattr(gpu, "engine_fingerprint", lambda: dict(H100))
    with pytest.raises(trt_target.EngineMismatchError) as e:
        trt_target.load(art, 2)
    assert "engine (" in str(e.value) and "NVIDIA H200" in str(e.value) and "NVIDIA H100" in str(e.value)
    with pytest.raises(ValueError, match="runs tensorrt engines"):
        trt_target.load(Artifact(key="k", kind="onnx", stage="o", stage_type="export", path=tmp_path,
                                 file="model.plan"), 2)


# ------------------------------------------------------------------ recipes: checked when they load

QDQ_SYM = {"name": "q", "type": "quantize", "input": "@onnx", "method": "static", "activations": "symmetric"}


def _stages(*more, calibration=None):
    out = [{"name": "onnx", "type": "export"}]
    if any(s.get("input") == "@ft" for s in more):
        out.insert(0, {"name": "ft", "type": "finetune", "epochs": 1})
        out[1]["input"] = "@ft"
    for s in more:
        s = dict(s)
        if s.get("method") == "static" or s.get("type") == "qat":
            s["calibration"] = str(calibration)
        out.append(s)
    return out


def _problems(stages) -> list[tuple[str, str]]:
    with pytest.raises(RecipeError) as e:
        validate_recipe(small_recipe(stages=stages), check_data=False)
    return e.value.problems


def test_tensorrt_without_tensorrt_or_a_gpu_fails_at_load_time_with_the_reason():
    if NO_TRT is None:
        pytest.skip("this machine has TensorRT and a GPU")
    probs = _problems(_stages({"name": "e", "type": "export", "format": "tensorrt", "input": "@onnx"}))
    assert ("stages[1].format", f"format tensorrt builds on this machine's NVIDIA GPU: {NO_TRT}") in probs


@pytest.mark.parametrize("engine, src, words", [
    # INT8 without QDQ: an FP32 export, dynamic INT8 (MatMulInteger), asymmetric static QDQ
    ({"precision": "int8", "input": "@onnx"}, None, "built from an explicitly quantized (QDQ)"),
    ({"precision": "int8", "input": "@q"}, {"name": "q", "type": "quantize", "input": "@onnx", "method": "dynamic"},
     "is dynamic INT8 (no QDQ"),
    ({"precision": "int8", "input": "@q"}, {**QDQ_SYM, "activations": "asymmetric"}, "set `activations: symmetric`"),
    ({"precision": "int8", "input": "@q"}, {"name": "q", "type": "qat", "input": "@ft", "epochs": 1},
     "has asymmetric activations"),
    # an INT8 input for an FP16 engine
    ({"precision": "fp16", "input": "@q"}, QDQ_SYM, "is INT8 already"),
])
def test_int8_engines_need_symmetric_qdq_inputs(engine, src, words, calibration_manifest, monkeypatch):
    monkeypatch.setattr(gpu, "tensorrt_unavailable_reason", lambda: None)      # as on a GPU machine
    stages = _stages(*([src] if src else []), {"name": "e", "type": "export", "format": "tensorrt", **engine},
                     calibration=calibration_manifest)
    probs = _problems(stages)
    assert any(words in reason for _, reason in probs), probs
    assert all(not path.endswith(".format") for path, _ in probs)


def test_tensorrt_takes_onnx_only(calibration_manifest, monkeypatch):
    monkeypatch.setattr(gpu, "tensorrt_unavailable_reason", lambda: None)
    ov = {"name": "ov", "type": "quantize", "input": "@onnx", "method": "nncf_ptq",
          "calibration": str(calibration_manifest)}
    probs = _problems(_stages(ov, {"name": "e", "type": "export", "format": "tensorrt", "input": "@ov"}))
    assert any(p == "stages[2].input" and "format tensorrt takes a onnx model" in r for p, r in probs), probs
    probs = _problems([{"name": "e", "type": "export", "format": "tensorrt"}])      # the recipe's torch model
    assert any("takes a onnx model" in r for _, r in probs), probs
    # a tensorrt target with an OpenVINO IR (or any non-engine) is a load-time error too
    probs = _problems(_stages(ov, {"name": "b", "type": "benchmark", "artifacts": ["@ov"], "targets": ["tensorrt"]}))
    assert any("none of the targets (tensorrt) runs that kind" in r for _, r in probs), probs


@pytest.mark.parametrize("stage, where, words", [
    ({"name": "x", "type": "export", "precision": "fp16"}, "stages[0].precision", "fp16 is for format tensorrt"),
    ({"name": "x", "type": "export", "max_batch": 8}, "stages[0].max_batch", "TensorRT engine's profile"),
    ({"name": "x", "type": "quantize", "input": "@o", "method": "dynamic", "activations": "symmetric"},
     "stages[1].activations", "only method static"),
])
def test_gpu_only_keys_elsewhere_fail_at_load_time(stage, where, words):
    stages = ([{"name": "o", "type": "export"}] if stage["type"] == "quantize" else []) + [stage]
    probs = _problems(stages)
    assert any(p == where and words in r for p, r in probs), probs


def test_engine_cache_keys_follow_the_gpu_and_versions(calibration_manifest, monkeypatch):
    """A cached engine from another GPU or TensorRT/CUDA version is not reused: the key changes with them;
    the other stages' keys do not."""
    from edgeft.runner import plan

    monkeypatch.setattr(gpu, "tensorrt_unavailable_reason", lambda: None)
    recipe = validate_recipe(small_recipe(stages=_stages(
        QDQ_SYM, {"name": "fp16", "type": "export", "format": "tensorrt", "precision": "fp16", "input": "@onnx"},
        {"name": "int8", "type": "export", "format": "tensorrt", "precision": "int8", "input": "@q"},
        calibration=calibration_manifest)), check_data=False)
    keys = {}
    for name, fp in (("h200", H200), ("h200-again", dict(H200)), ("h100", H100),
                     ("trt10", {**H200, "tensorrt": "10.14.1.48"}), ("cuda12", {**H200, "cuda": "12.8"})):
        monkeypatch.setattr(gpu, "engine_fingerprint", lambda fp=fp: dict(fp))
        keys[name] = {p.name: p.key for p in plan(recipe)}
    assert keys["h200"] == keys["h200-again"]
    for other in ("h100", "trt10", "cuda12"):
        assert keys[other]["onnx"] == keys["h200"]["onnx"] and keys[other]["q"] == keys["h200"]["q"]
        assert keys[other]["fp16"] != keys["h200"]["fp16"] and keys[other]["int8"] != keys["h200"]["int8"]


def test_engine_export_keys_and_onnx_keys():
    from edgeft.stages.export import ExportConfig

    onnx = ExportConfig(name="x", type="export")
    assert onnx.key_context() == {} and "max_batch" not in onnx.key_config()
    trt = ExportConfig(name="x", type="export", format="tensorrt", precision="fp16", max_batch=32).key_config()
    assert trt["max_batch"] == 32 and trt["precision"] == "fp16"
    assert not {"opset", "optimize", "opt_level", "activations", "target_platform"} & set(trt)


# ------------------------------------------------------------------ targets: load-time errors on a CPU machine

def test_cuda_targets_fail_at_load_time_without_a_gpu():
    if NO_CUDA is None:
        pytest.skip("this machine has a CUDA GPU")
    probs = _problems(_stages({"name": "b", "type": "benchmark", "artifacts": ["@onnx"], "targets": ["cpu", "cuda"]}))
    assert ("stages[1].targets[1]", f"cuda: {NO_CUDA}") in probs


def test_onnx_on_cuda_needs_onnx_runtimes_cuda_provider(monkeypatch):
    """As on a GPU machine with the CPU-only onnxruntime (the H200 image): torch rows can run, ONNX rows
    on cuda cannot, and the recipe says so before any work."""
    import onnxruntime as ort

    if gpu.ORT_CUDA_PROVIDER in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    monkeypatch.setattr(gpu, "cuda_unavailable_reason", lambda: None)
    stages = [{"name": "ft", "type": "finetune", "epochs": 1}, {"name": "onnx", "type": "export"},
              {"name": "b", "type": "benchmark", "artifacts": ["@ft", "@onnx"], "targets": ["cuda", "cuda-bf16"]}]
    probs = _problems(stages)
    assert len(probs) == 1, probs
    path, reason = probs[0]
    assert path == "stages[2].artifacts[1]" and "@onnx (onnx) on cuda" in reason and "onnxruntime-gpu" in reason


def test_rows_on_cuda_targets_report_their_precision():
    from edgeft.targets import TARGETS, row_precision

    assert row_precision("fp32", "cuda") == "fp32"
    assert row_precision("fp32", "cuda-fp16") == "fp16" and row_precision("fp32", "cuda-bf16") == "bf16"
    assert row_precision("int8", "cuda-fp16") == "int8"
    assert TARGETS["tensorrt"].accepts == ("tensorrt",) and "onnx" not in TARGETS["cuda-bf16"].accepts
    from edgeft.targets import target_module

    for name, prec in (("cuda", "fp32"), ("cuda-fp16", "fp16"), ("cuda-bf16", "bf16")):
        mod = target_module(name)                    # one module, one variant per precision
        assert (mod.NAME, mod.PRECISION) == (name, prec) and mod.unavailable_reason() == NO_CUDA


# ------------------------------------------------------------------ GPU timing bookkeeping

def test_device_times_are_kept_per_call_without_the_warm_up():
    """time_rows reads a GPU session's device time after every call; the warm-up calls' times are dropped
    and the rest line up with the wall times (same count, same order)."""
    from edgeft.ops.timing import TimedRow, gpu_figures, time_rows

    class Counting:                    # a CPU session that reports the call number as its "device time"
        def __init__(self):
            self.n = 0

        def run(self, feed):
            self.n += 1
            return np.tanh(feed["x"] @ feed["x"].T)

        def last_gpu_ms(self):
            return float(self.n)

    s = Counting()
    x = {"x": np.random.default_rng(0).standard_normal((16, 64)).astype(np.float32)}
    rows = [TimedRow(s.run, [x] * 5, x, [x] * 2, s.last_gpu_ms), TimedRow(s.run, [x] * 5, x, [x] * 2)]
    t = time_rows(rows, rounds=2, warmup=3, fixed_runs=4)
    g = t.gpu_times
    assert set(g) == {(0, "real"), (0, "fixed"), (0, "tp")}       # the second row reports no device time
    for k, v in g.items():
        assert len(v) == len(t.times[k]) and v == sorted(v)
    assert len(g[(0, "real")]) == 10 and len(g[(0, "fixed")]) == 8
    warm = 3 + 3 + 1                  # real, fixed (min(warmup, fixed_runs)), one throughput batch
    assert min(min(v) for v in g.values()) > warm
    figs = gpu_figures(t, 0)
    assert set(figs) == {"gpu_latency_ms", "gpu_latency_fixed_ms"} and gpu_figures(t, 1) == {}


# ------------------------------------------------------------------ the QDQ form TensorRT reads (real models)

@pytest.mark.slow
def test_symmetric_static_int8_is_the_qdq_tensorrt_reads(tmp_path, calibration_manifest):
    """quantize static with activations symmetric: every Q/DQ is signed INT8 with zero point 0 (TensorRT's
    explicit quantization); the default (uint8 asymmetric) is refused by the same check, with the nodes."""
    import onnx
    from onnx import numpy_helper

    from edgeft.ops.tensorrt_engine import qdq_problems
    from edgeft.runner import run_recipe

    parity = {"samples": 64, "min_agreement": 0.8}
    stages = [{"name": "ft", "type": "finetune", "epochs": 1, "batch_size": 16},
              {"name": "onnx", "type": "export", "parity": {"samples": 32}},
              {"name": "sym", "type": "quantize", "input": "@onnx", "method": "static", "activations": "symmetric",
               "calibration": str(calibration_manifest), "parity": parity},
              {"name": "asym", "type": "quantize", "input": "@onnx", "method": "static",
               "calibration": str(calibration_manifest), "parity": parity},
              {"name": "qat", "type": "qat", "input": "@ft", "epochs": 0.1, "activations": "symmetric",
               "calibration": str(calibration_manifest), "parity": {"samples": 32, "min_agreement": 0.5}}]
    arts = run_recipe(validate_recipe(small_recipe(stages=stages)), runs_dir=tmp_path / "runs").artifacts
    sym, asym = arts["sym"], arts["asym"]
    assert qdq_problems(sym.main_path) == []
    # NNCF's QAT with symmetric activations (preset performance) exports the same form
    assert qdq_problems(arts["qat"].main_path) == [] and "performance" in arts["qat"].meta["activations"]
    assert sym.meta["activations"] == "int8 symmetric (zero point 0)" and sym.meta["weights"].startswith("int8")
    model = onnx.load(str(sym.main_path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    zps = [inits[n.input[2]] for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert len(zps) >= 36 and all(z.dtype == np.int8 and not z.any() for z in zps)
    probs = qdq_problems(asym.main_path)
    assert len(probs) == 1 and "not symmetric INT8" in probs[0] and "uint8 zero point" in probs[0]
    assert "no QuantizeLinear" in qdq_problems(arts["onnx"].main_path)[0]
    # both pass their own parity gate against the FP32 export; symmetric costs a little range, not correctness
    assert sym.meta["parity"]["agreement"] >= 0.8 and asym.meta["parity"]["agreement"] >= 0.8


@pytest.mark.slow
def test_fp16_graph_keeps_its_io_types_and_tracks_fp32(tmp_path):
    """The FP16 graph an FP16 engine (and cuda-fp16's ONNX session) is built from, run here on the CPU:
    same inputs and outputs, FP16 inside, logits within the FP16 gate's bound of the FP32 export."""
    import onnx
    import onnxruntime as ort

    from edgeft.ops.parity import ParityLimits, check_parity
    from edgeft.ops.tensorrt_engine import to_fp16_onnx
    from edgeft.runner import run_recipe
    from edgeft.stages.export import FP16_MAX_ABS_DIFF, FP16_MIN_AGREEMENT, FP16_RTOL
    from edgeft.tasks import text_classification as task

    stages = [{"name": "ft", "type": "finetune", "epochs": 1, "batch_size": 16},
              {"name": "onnx", "type": "export", "parity": {"samples": 32}}]
    recipe = validate_recipe(small_recipe(stages=stages))
    fp32 = run_recipe(recipe, runs_dir=tmp_path / "runs").artifacts["onnx"]
    half = to_fp16_onnx(fp32.main_path, tmp_path / "fp16" / "model.onnx")
    m = onnx.load(str(half))
    assert [i.type.tensor_type.elem_type for i in m.graph.input] == [onnx.TensorProto.INT64] * len(m.graph.input)
    assert m.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert sum(t.data_type == onnx.TensorProto.FLOAT16 for t in m.graph.initializer) > 30
    assert half.stat().st_size < 0.6 * fp32.main_path.stat().st_size
    a = ort.InferenceSession(str(fp32.main_path), providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(str(half), providers=["CPUExecutionProvider"])
    tok = task.load_processor(fp32.path)
    val = task.load_splits(recipe).validation.items[:128]
    feeds = [task.encode(tok, val[i:i + 32], 32) for i in range(0, 128, 32)]
    names = [i.name for i in a.get_inputs()]
    ref = [a.run(["logits"], {k: f[k] for k in names})[0] for f in feeds]
    got = [b.run(["logits"], {k: f[k] for k in names})[0] for f in feeds]
    figures, _ = check_parity("FP16 graph", ref, got,
                              ParityLimits(max_abs_diff=FP16_MAX_ABS_DIFF, rtol=FP16_RTOL,
                                           min_agreement=FP16_MIN_AGREEMENT))
    assert 0 < figures["max_abs_diff"] < FP16_MAX_ABS_DIFF


# ------------------------------------------------------------------ on a GPU (skipped here, with the reason)

def _gpu_recipe(stages):
    return validate_recipe(small_recipe(stages=stages))


@_apply(needs_gpu)
def test_cuda_targets_match_the_cpu_rows(tmp_path):
    """Fine-tune on CUDA (bf16 autocast), then the same model on pytorch (CPU), cuda FP32, cuda-fp16 and
    cuda-bf16: FP32 rows agree on every test example, reduced precisions on nearly all."""
    import json

    from edgeft.runner import run_recipe

    stages = [{"name": "ft", "type": "finetune", "epochs": 1, "batch_size": 16},
              {"name": "b", "type": "benchmark", "artifacts": ["@ft"], "targets": ["pytorch", "cuda", "cuda-fp16",
                                                                                   "cuda-bf16"],
               "latency_samples": 20, "rounds": 1, "fixed_runs": 5, "throughput_batches": 1, "warmup": 3}]
    res = run_recipe(_gpu_recipe(stages), runs_dir=tmp_path / "runs")
    assert res.artifacts["ft"].meta["train_precision"] in ("bf16", "fp16")
    report = json.loads(res.artifacts["b"].main_path.read_text())
    rows = {r["target"]: r for r in report["rows"]}
    assert abs(rows["cuda"]["accuracy"] - rows["pytorch"]["accuracy"]) <= 1 / 200 + 1e-9
    for t in ("cuda", "cuda-fp16", "cuda-bf16"):
        assert rows[t]["gpu_latency_ms"]["p50"] <= rows[t]["latency_ms"]["p50"]
        assert rows[t]["fingerprint"]["gpu"]["gpu"]
    assert rows["cuda-fp16"]["precision"] == "fp16" and rows["cuda-bf16"]["precision"] == "bf16"


@_apply(needs_trt)
def test_tensorrt_engines_pass_their_gate_and_refuse_another_gpu(tmp_path, calibration_manifest, monkeypatch):
    import json

    from edgeft.runner import run_recipe
    from edgeft.targets import tensorrt as trt_target

    stages = [{"name": "ft", "type": "finetune", "epochs": 1, "batch_size": 16},
              {"name": "onnx", "type": "export"},
              {**QDQ_SYM, "calibration": str(calibration_manifest), "parity": {"samples": 64, "min_agreement": 0.8}},
              {"name": "e16", "type": "export", "format": "tensorrt", "precision": "fp16", "input": "@onnx"},
              {"name": "e8", "type": "export", "format": "tensorrt", "precision": "int8", "input": "@q",
               "parity": {"min_agreement": 0.9}},
              {"name": "b", "type": "benchmark", "artifacts": ["@onnx", "@e16", "@e8"], "targets": ["cpu", "tensorrt"],
               "latency_samples": 20, "rounds": 1, "fixed_runs": 5, "throughput_batches": 1, "warmup": 3}]
    res = run_recipe(_gpu_recipe(stages), runs_dir=tmp_path / "runs")
    e16 = res.artifacts["e16"]
    assert e16.meta["engine_device"] == gpu.engine_fingerprint()
    rows = json.loads(res.artifacts["b"].main_path.read_text())["rows"]
    assert {(r["artifact"], r["target"]) for r in rows} == {("onnx", "cpu"), ("e16", "tensorrt"), ("e8", "tensorrt")}
    monkeypatch.setattr(gpu, "engine_fingerprint", lambda: {**e16.meta["engine_device"], "gpu": "another GPU"})
    with pytest.raises(trt_target.EngineMismatchError):
        trt_target.load(e16, 2)


# ------------------------------------------------------------------ the prepared GPU check and the GPU peers

def _gpu_check():
    import importlib.util

    from tests.conftest import ROOT

    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gpu_check_plans_only_what_this_machine_has(tmp_path, monkeypatch, minilm_path):
    """benchmarks/gpu_check.py's recipe: here (no GPU) the CPU rows only, every GPU part listed as skipped
    with its reason; as on the H200 image (CUDA torch, CPU onnxruntime, no TensorRT) the torch rows on the
    three cuda targets; with everything, the engines too. Each plan is a recipe that validates."""
    gc = _gpu_check()
    recipe, skipped = gc.plan(minilm_path, tmp_path, quick=True)
    if NO_CUDA is not None:
        assert [s["targets"] for s in recipe["stages"] if s["type"] == "benchmark"] == [["pytorch"], ["cpu"]]
        assert any(s.startswith("cuda targets: ") and NO_CUDA in s for s in skipped)
        validate_recipe(recipe, check_data=False)
    monkeypatch.setattr(gpu, "cuda_unavailable_reason", lambda: None)
    monkeypatch.setattr(gpu, "tensorrt_unavailable_reason", lambda: "TensorRT is not installed")
    monkeypatch.setattr(gpu, "ort_cuda_unavailable_reason", lambda: "no CUDAExecutionProvider")
    recipe, skipped = gc.plan(minilm_path, tmp_path, quick=True)
    bench = {s["name"]: s for s in recipe["stages"] if s["type"] == "benchmark"}
    assert bench["bench-torch"]["targets"] == ["pytorch", "cuda", "cuda-fp16", "cuda-bf16"]
    assert bench["bench-onnx"]["targets"] == ["cpu"] and recipe["stages"][0]["precision"] == "bf16"
    assert len(skipped) == 2 and "no CUDAExecutionProvider" in skipped[0] and "TensorRT" in skipped[1]
    validate_recipe(recipe, check_data=False)
    monkeypatch.setattr(gpu, "tensorrt_unavailable_reason", lambda: None)
    monkeypatch.setattr(gpu, "ort_cuda_unavailable_reason", lambda: None)
    recipe, skipped = gc.plan(minilm_path, tmp_path, quick=True)
    bench = {s["name"]: s for s in recipe["stages"] if s["type"] == "benchmark"}
    assert skipped == [] and bench["bench-onnx"]["targets"] == ["cpu", "cuda", "cuda-fp16", "tensorrt"]
    assert bench["bench-onnx"]["artifacts"] == ["@onnx", "@int8-sym", "@trt-fp16", "@trt-int8"]


def test_gpu_check_exits_2_without_a_gpu():
    if NO_CUDA is None:
        pytest.skip("this machine has a GPU")
    assert _gpu_check().main(["--work", "/tmp/edgeft-gpu-check-none"]) == 2


def test_symmetric_int8_on_a_cpu_without_vnni_warns_about_its_cpu_rows(calibration_manifest):
    """The symmetric QDQ keeps int8 weights whatever the CPU class; for a saturating class (avx2) the
    recipe says that its CPU rows may lose accuracy (the formats edgeft picks there avoid it)."""
    from edgeft.stages.quantize import QuantizeConfig

    q = QuantizeConfig(name="q", type="quantize", method="static", calibration=str(calibration_manifest),
                       activations="symmetric", isa="avx2")
    assert any(k == "activations" and "saturate" in w for k, w in q.warnings(None, []))
    assert not any(k == "activations" for k, _ in q.model_copy(update={"isa": "avx512_vnni"}).warnings(None, []))
