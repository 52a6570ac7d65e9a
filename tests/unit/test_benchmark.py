"""benchmark stage, end to end on real parts: shipped MiniLM, real Rotten Tomatoes test texts, real
runtimes (PyTorch eager, ONNX Runtime FP32 and dynamic INT8), through the runner (so the report is
written too), with the real export and quantize stages.

Fine-tuning is stood in for (the shipped encoder saved with a new 2-class head): the benchmark needs a
torch model, not a trained one, and training costs most of a minute on a busy 2-core machine
(tests/unit/test_finetune.py covers it). Export and quantize are stood in for only where their stage
is not implemented (torch.onnx.export, quantize_dynamic), so this test runs at any point of the build."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tests.conftest import small_recipe

REQUIRED = ("artifact", "stage", "target", "precision", "accuracy", "f1", "latency_ms", "latency_fixed_ms",
            "throughput_sps", "size_mb", "params", "macs", "peak_rss_mb")


# ------------------------------------------------------------------ stand-ins for unimplemented stages

def _copy_side_files(src, dst):
    for p in src.iterdir():
        if p.is_file() and p.suffix != ".onnx" and p.name != "artifact.json":
            shutil.copy(p, dst / p.name)


def _finetune(cfg, inputs, ctx):
    import torch

    from edgeft.models import resolve_source

    src = resolve_source(ctx.recipe.model.source)
    torch.manual_seed(ctx.recipe.seed)          # the new head is random: make it the same every run
    model = ctx.task.load_model(src, ctx.splits().label_names)
    model.save_pretrained(ctx.out_dir)
    ctx.task.load_processor(src).save_pretrained(ctx.out_dir)
    return ctx.artifact("torch", meta={"precision": "fp32"})


def _export(cfg, inputs, ctx):
    import torch

    src = inputs["input"]
    model, proc = ctx.task.load_model(src.path), ctx.task.load_processor(src.path)
    names = ctx.task.input_names(proc)
    batch = ctx.task.encode(proc, ["a fine film", "dull"], ctx.recipe.data.max_length)
    args = tuple(torch.from_numpy(batch[n]) for n in names)
    torch.onnx.export(model, args, str(ctx.out_dir / "model.onnx"), input_names=names, output_names=["logits"],
                      dynamic_axes={**{n: {0: "batch", 1: "sequence"} for n in names}, "logits": {0: "batch"}},
                      opset_version=17, dynamo=False)
    _copy_side_files(src.path, ctx.out_dir)
    return ctx.artifact("onnx", file="model.onnx", meta={"precision": "fp32", "torch_source": src.key})


def _quantize(cfg, inputs, ctx):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src = inputs["input"]
    quantize_dynamic(str(src.main_path), str(ctx.out_dir / "model.onnx"), weight_type=QuantType.QInt8)
    _copy_side_files(src.path, ctx.out_dir)
    return ctx.artifact("onnx", file="model.onnx",
                        meta={"precision": "int8", "torch_source": src.meta["torch_source"]})


STAND_INS = {"finetune": _finetune, "export": _export, "quantize": _quantize}
ALWAYS_STAND_IN = {"finetune"}


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    import edgeft.stages as registry
    from edgeft.recipe import validate_recipe
    from edgeft.runner import run_recipe

    raw = small_recipe(stages=[
        {"name": "finetune", "type": "finetune", "epochs": 1, "batch_size": 16},
        {"name": "export", "type": "export", "optimize": False},
        # an untrained head has near-tied logits that INT8 may flip: INT8 quality is not tested here
        {"name": "int8", "type": "quantize", "method": "dynamic", "parity": {"min_agreement": 0.5}},
        {"name": "bench", "type": "benchmark", "artifacts": ["@finetune", "@export", "@int8"],
         "targets": ["pytorch", "cpu"], "threads": 1, "latency_samples": 20, "rounds": 2, "warmup": 3, "fixed_runs": 5,
         "throughput_batches": 2, "memory": True},
    ])
    raw["data"]["max_samples"] = {"train": 64, "validation": 32, "test": 200}
    recipe = validate_recipe(raw)
    real = registry.run_function
    stood_in = []

    def run_function(stage_type):
        if stage_type in ALWAYS_STAND_IN:
            stood_in.append(stage_type)
            return STAND_INS[stage_type]
        try:
            fn = real(stage_type)
        except AttributeError:          # a stage module without `run` yet
            stood_in.append(stage_type)
            return STAND_INS[stage_type]

        def wrapped(cfg, inputs, ctx):
            try:
                return fn(cfg, inputs, ctx)
            except NotImplementedError:
                stood_in.append(stage_type)
                return STAND_INS[stage_type](cfg, inputs, ctx)
        return wrapped

    runs = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(registry, "run_function", run_function)
        result = run_recipe(recipe, runs_dir=runs)
    return result, stood_in


def test_rows_fields_and_numbers(bench):
    result, stood_in = bench
    art = result.artifacts["bench"]
    assert art.kind == "report" and art.file == "report.json"
    report = json.loads(art.main_path.read_text())
    rows = report["rows"]
    # targets in recipe order, artifacts in recipe order, only compatible pairs
    assert [(r["artifact"], r["target"]) for r in rows] == [("finetune", "pytorch"), ("export", "cpu"),
                                                            ("int8", "cpu")]
    assert [r["precision"] for r in rows] == ["fp32", "fp32", "int8"]
    for r in rows:
        for k in REQUIRED:
            assert r.get(k) is not None, (r["artifact"], k)
        lat = r["latency_ms"]
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"]
        assert 0 < r["latency_fixed_ms"]["p50"] <= r["latency_fixed_ms"]["p90"]
        assert 0 <= r["accuracy"] <= 1 and 0 <= r["f1"] <= 1
        assert r["throughput_sps"] > 0 and r["size_mb"] > 0 and r["peak_rss_mb"] > r["model_rss_mb"] > 0
        assert r["params"] > 20e6 and r["macs"] > 0
        fp = r["fingerprint"]
        assert fp["threads"] == 1 and fp["target"] == r["target"] and "cpu" in fp and "runtimes" in fp
    assert rows[0]["fingerprint"]["provider"] == "eager fp32"
    assert rows[1]["fingerprint"]["provider"] == "CPUExecutionProvider"
    # same model, same MACs and params, whatever runtime or precision
    assert rows[0]["macs"] == rows[1]["macs"] == rows[2]["macs"]
    assert rows[0]["params"] == rows[1]["params"] == rows[2]["params"]
    # MiniLM-L6: ~10.6M MACs per token in linears plus attention, at seq 32
    assert 10.6e6 * 32 < rows[0]["macs"] < 11.5e6 * 32
    # FP32 export predicts like its source; INT8 weights are ~4x smaller
    assert abs(rows[1]["accuracy"] - rows[0]["accuracy"]) <= 0.01
    assert rows[2]["size_mb"] < rows[1]["size_mb"] / 3
    assert rows[0]["speedup_vs_reference"] == 1.0 and rows[0]["accuracy_delta_vs_reference"] == 0.0
    for r in rows[1:]:
        assert r["reference"] == "finetune@pytorch" and r["speedup_vs_reference"] > 0
    assert report["data"]["test"] == 200 and report["settings"]["latency_samples_used"] == 20
    assert report["recipe"]["name"] == "tiny" and report["environment"]["cores"]
    timings = json.loads((art.path / "timings.json").read_text())
    assert len(timings["finetune@pytorch:real"]) == 2 * 20 and len(timings["int8@cpu:fixed"]) == 2 * 5
    print("stood in for:", stood_in)


def test_report_written_to_run_dir(bench):
    result, _ = bench
    md = (result.run_dir / "report.md").read_text()
    assert "## Target `pytorch`" in md and "## Target `cpu`" in md
    for name in ("finetune", "export", "int8"):
        assert f"| {name} |" in md or f"| **{name}** |" in md
    png = (result.run_dir / "pareto.png").read_bytes()
    assert png[:4] == b"\x89PNG" and len(png) > 1024
    assert json.loads((result.run_dir / "report.json").read_text())["rows"]


def test_sessions_agree_on_real_inputs(bench):
    """The targets' sessions give the same logits for the same encoded batch (FP32)."""
    from edgeft.tasks import get_task
    from edgeft.targets import target_module

    result, _ = bench
    task = get_task("text-classification")
    torch_art, onnx_art = result.artifacts["finetune"], result.artifacts["export"]
    proc = task.load_processor(onnx_art.path)
    batch = task.encode(proc, ["a gripping, funny film", "flat and long"], 32)
    a = target_module("pytorch").load(torch_art, 1, task).run(batch)
    b = target_module("cpu").load(onnx_art, 1, task).run(batch)
    assert a.shape == b.shape == (2, 2)
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_reference_artifact_sets_every_rows_baseline():
    from edgeft.stages.benchmark import _compare

    def row(artifact, target, key, source, p50, acc):
        return {"artifact": artifact, "target": target, "key": key, "torch_source": source,
                "latency_ms": {"p50": p50}, "accuracy": acc}

    rows = [row("teacher", "pytorch", "T", "T", 12.0, 0.84), row("student", "pytorch", "S", "S", 6.0, 0.83),
            row("student-int8", "cpu", "Q", "S", 1.5, 0.825)]
    _compare(rows)                                 # default: each row's own torch model
    assert rows[2]["reference"] == "student@pytorch" and rows[2]["speedup_vs_reference"] == 4.0
    _compare(rows, reference="teacher")            # the dense teacher: what pruning bought
    assert rows[2]["reference"] == "teacher@pytorch" and rows[2]["speedup_vs_reference"] == 8.0
    assert rows[1]["accuracy_delta_vs_reference"] == -1.0


def test_reference_must_be_a_benchmarked_artifact_on_pytorch():
    from edgeft.errors import RecipeError
    from edgeft.recipe import validate_recipe
    from tests.conftest import small_recipe

    stages = [{"name": "ft", "type": "finetune"}, {"name": "onnx", "type": "export"},
              {"name": "b", "type": "benchmark", "artifacts": ["@onnx"], "targets": ["cpu"], "reference": "@ft"}]
    with pytest.raises(RecipeError) as e:
        validate_recipe(small_recipe(stages=stages), check_data=False)
    assert any(p == "stages[2].reference" and "not one of" in r for p, r in e.value.problems)
