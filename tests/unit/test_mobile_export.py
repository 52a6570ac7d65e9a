"""Mobile and embedded formats: ExecuTorch programs (FP32, INT8) and ORT format models (FP32, INT8)
from a really fine-tuned MiniLM on real Rotten Tomatoes text, run in their runtimes, gated, benchmarked.

One run (finetune -> onnx -> dynamic INT8 -> ort-mobile of both; executorch FP32 and INT8 from the
fine-tuned model; a benchmark on the three runtimes) is shared by the tests of this file. The
corrupted-export tests change the model after its reference logits were taken and check that the gate
fails and nothing reaches the store.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgeft.errors import ExportParityError, RecipeError
from edgeft.recipe import validate_recipe
from edgeft.runner import plan, run_recipe
from tests.conftest import small_recipe

pytestmark = pytest.mark.slow
executorch = pytest.importorskip("executorch", reason="ExecuTorch not installed: pip install 'edgeft[mobile]'")

FINETUNE = {"name": "finetune", "type": "finetune", "epochs": 2, "batch_size": 16, "lr": 1e-4}
PARITY = {"samples": 96}


def stages(calibration) -> list[dict]:
    return [
        FINETUNE,
        {"name": "onnx", "type": "export", "parity": PARITY},
        {"name": "int8", "type": "quantize", "method": "dynamic", "parity": {"samples": 96}},
        {"name": "ort", "type": "export", "format": "ort-mobile", "input": "@onnx", "parity": PARITY},
        {"name": "ort-int8", "type": "export", "format": "ort-mobile", "input": "@int8", "parity": PARITY},
        {"name": "pte", "type": "export", "format": "executorch", "input": "@finetune", "parity": PARITY},
        {"name": "pte-int8", "type": "export", "format": "executorch", "precision": "int8", "input": "@finetune",
         "calibration": str(calibration), "parity": PARITY},
        {"name": "pte-int8-dyn", "type": "export", "format": "executorch", "precision": "int8",
         "activations": "dynamic", "input": "@finetune", "parity": PARITY},
        {"name": "bench", "type": "benchmark", "artifacts": ["@finetune", "@onnx", "@ort", "@ort-int8", "@pte",
                                                              "@pte-int8"],
         "targets": ["pytorch", "cpu", "ort-mobile", "executorch"], "latency_samples": 40, "rounds": 1,
         "warmup": 5, "fixed_runs": 10, "throughput_batches": 2, "memory": False},
    ]


@pytest.fixture(scope="module")
def run(tmp_path_factory, calibration_manifest):
    root = tmp_path_factory.mktemp("mobile")
    recipe = validate_recipe(small_recipe(stages=stages(calibration_manifest)))
    res = run_recipe(recipe, runs_dir=root / "runs")
    assert res.ok, res.failed
    return res


def real_batches():
    """Real validation texts (not the parity ones) at batch 1 and batch 3, encoded by the model's tokenizer."""
    from edgeft.tasks import text_classification as task

    texts = task.load_splits(validate_recipe(small_recipe())).validation.items[100:104]
    return texts, task


def torch_logits(art, batch):
    from edgeft.tasks import text_classification as task

    return task.torch_forward(task.load_model(art.path), batch)


def test_executorch_fp32_program_matches_its_source_at_new_shapes(run):
    from edgeft.ops import executorch_export as et

    art, src = run.artifacts["pte"], run.artifacts["finetune"]
    assert art.kind == "executorch" and art.file == "model.pte"
    assert {"model.pte", "config.json", "tokenizer.json"} <= {p.name for p in art.path.iterdir()}
    m = art.meta
    assert m["precision"] == "fp32" and m["format"] == "executorch" and m["torch_source"] == src.key
    assert m["parity"]["agreement"] == 1.0 and m["parity"]["tolerance_used"] <= 1.0
    d = m["delegation"]
    # eager attention: every matmul, softmax and GELU delegates; embeddings and layer norms stay portable
    assert 0 < d["delegated_share"] < 1 and "embedding" in d["non_delegated_ops"]
    assert not {"bmm", "linear", "mm", "addmm", "softmax", "_softmax", "gelu"} & set(d["non_delegated_ops"])

    texts, task = real_batches()
    proc = task.load_processor(art.path)
    run_pte = et.load_method(art.main_path)
    largest = task.encode(proc, (texts * et.MAX_BATCH)[:et.MAX_BATCH], 32)     # memory planned for the bound
    for batch in (task.encode(proc, texts[:1], 32), task.encode(proc, texts[1:4], 32), largest):
        got = et.run_program(run_pte, batch, m["inputs"])
        ref = torch_logits(src, batch)
        assert got.shape == ref.shape
        assert np.abs(got - ref).max() <= 1e-4 + 1e-4 * np.abs(ref).max()


def test_executorch_int8_program_is_smaller_calibrated_and_agrees(run):
    fp32, int8 = run.artifacts["pte"].meta, run.artifacts["pte-int8"].meta
    assert int8["precision"] == "int8" and "XNNPACKQuantizer" in int8["quantizer"]
    assert int8["activations"] == "static" and int8["quantized_modules"] == ["Linear"]
    assert int8["calibration"]["num_samples"] == 32 and int8["calibration_forwards"] == 32
    assert int8["parity"]["agreement"] >= 0.95 and int8["parity_limits"]["min_agreement"] == 0.95
    assert int8["parity"]["max_abs_diff"] > fp32["parity"]["max_abs_diff"]        # it really is quantized
    # linear weights in int8; the embedding table (half of MiniLM's weights) stays fp32
    assert int8["size_mb"] < 0.75 * fp32["size_mb"]


def test_executorch_int8_with_dynamic_activations_needs_no_calibration(run):
    static, dyn = run.artifacts["pte-int8"].meta, run.artifacts["pte-int8-dyn"].meta
    assert dyn["activations"] == "dynamic" and "calibration" not in dyn and dyn["calibration_forwards"] == 0
    assert dyn["size_mb"] == pytest.approx(static["size_mb"], rel=0.02)        # the same int8 weights
    # activation ranges measured per call: closer to FP32 than ranges fixed by 32 calibration texts
    assert dyn["parity"]["max_abs_diff"] < static["parity"]["max_abs_diff"]
    assert dyn["parity"]["agreement"] >= static["parity"]["agreement"]


def test_ort_mobile_models_and_their_reduced_build_operators(run):
    import onnx

    from edgeft.ops import onnx_export as ox
    from edgeft.ops import ort_mobile

    for name, source in (("ort", "onnx"), ("ort-int8", "int8")):
        art, src = run.artifacts[name], run.artifacts[source]
        m = art.meta
        assert art.kind == "ort" and art.file == "model.ort" and m["onnx_source"] == src.key
        assert m["precision"] == src.meta["precision"] and m["target_platform"] == "arm"
        assert m["parity"]["agreement"] == 1.0 and m["parity"]["max_abs_diff"] <= 1e-4
        config = art.path / ort_mobile.CONFIG
        assert ort_mobile.read_required_operators(config) == m["required_operators"]
        ops = {o for v in m["required_operators"].values() for o in v}
        assert m["required_operator_count"] == len(ops) > 3
        # every operator of the source ONNX model is either in the list or was fused away by the optimizer
        assert "Gather" in ops
        source_ops = {n.op_type for n in onnx.load(str(src.main_path), load_external_data=False).graph.node}
        assert ops - source_ops, "the optimized model has fused operators the source has not"
        sess = ox.session(art.main_path)
        assert ox.io_names(sess)[1] == ["logits"]
    int8_ops = {o for v in run.artifacts["ort-int8"].meta["required_operators"].values() for o in v}
    assert int8_ops & {"DynamicQuantizeMatMul", "MatMulInteger", "DynamicQuantizeLinear"}


def test_benchmark_rows_on_the_mobile_runtimes_carry_their_footprint(run):
    import json

    report = json.loads(run.artifacts["bench"].main_path.read_text())
    rows = {(r["artifact"], r["target"]): r for r in report["rows"]}
    assert {("ort", "ort-mobile"), ("ort-int8", "ort-mobile"), ("pte", "executorch"),
            ("pte-int8", "executorch")} <= set(rows)
    assert ("pte", "cpu") not in rows and ("onnx", "executorch") not in rows   # each runtime its own format
    ref = rows[("finetune", "pytorch")]
    for key in (("ort", "ort-mobile"), ("pte", "executorch")):          # FP32: the same predictions
        assert rows[key]["accuracy"] == pytest.approx(ref["accuracy"], abs=1 / 200)
    assert rows[("pte-int8", "executorch")]["precision"] == "int8"
    assert 0 < rows[("pte", "executorch")]["runtime_footprint"]["delegated_share"] < 1
    assert rows[("ort-int8", "ort-mobile")]["runtime_footprint"]["required_operators"] > 3
    assert "executorch" in rows[("pte", "executorch")]["fingerprint"]["runtime"]
    for r in rows.values():
        assert r["latency_ms"]["p50"] > 0 and r["size_mb"] > 0
    md = (run.run_dir / "report.md").read_text()
    assert "## Runtime footprint" in md and "run in the XNNPACK delegate" in md
    assert "ort-int8 on `ort-mobile`: a reduced ONNX Runtime build needs" in md


def test_a_corrupted_executorch_program_fails_the_gate_and_commits_nothing(tmp_path, monkeypatch):
    import torch

    from edgeft.ops import executorch_export as et

    real = et.export_program

    def corrupted(model, *args, **kwargs):
        with torch.no_grad():                      # after the reference ran: the program differs
            model.classifier.weight.mul_(3.0)
        return real(model, *args, **kwargs)

    monkeypatch.setattr(et, "export_program", corrupted)
    recipe = validate_recipe(small_recipe(stages=[{"name": "pte", "type": "export", "format": "executorch",
                                                   "parity": {"samples": 32, "single_runs": 2}}]))
    key = plan(recipe)[0].key
    with pytest.raises(ExportParityError) as e:
        run_recipe(recipe, runs_dir=tmp_path / "runs", fail_fast=True)
    assert "ExecuTorch program" in str(e.value) and e.value.figures["max_abs_diff"] > 1e-4
    assert not (tmp_path / "runs" / ".store" / key).exists()
    assert not list((tmp_path / "runs" / ".store").glob(".tmp-*"))


def test_a_corrupted_ort_format_model_fails_the_gate(tmp_path, monkeypatch):
    import onnx
    from onnx import numpy_helper

    from edgeft.ops import ort_mobile

    real = ort_mobile.convert

    def corrupted(src, dst, target_platform="arm"):
        model = onnx.load(str(src))
        for init in model.graph.initializer:          # the classifier's weight, scaled after the reference ran
            if "classifier" in init.name and "weight" in init.name:
                init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 3.0, init.name))
        bad = tmp_path / "bad.onnx"
        onnx.save(model, str(bad))
        return real(bad, dst, target_platform)

    monkeypatch.setattr(ort_mobile, "convert", corrupted)
    recipe = validate_recipe(small_recipe(stages=[
        {"name": "onnx", "type": "export", "parity": {"samples": 16, "single_runs": 0}},
        {"name": "ort", "type": "export", "format": "ort-mobile", "parity": {"samples": 32}}]))
    res = run_recipe(recipe, runs_dir=tmp_path / "runs")
    assert "onnx" in res.artifacts and "ort" in res.failed          # the branch fails, finished work stays
    assert res.failed["ort"]["error_type"] == "ExportParityError"
    assert "ORT format model" in res.failed["ort"]["error"]


@pytest.mark.parametrize("stage, where, words", [
    ({"name": "x", "type": "export", "format": "ort-mobile"}, "stages[0].input",
     "format ort-mobile takes a onnx model; the recipe's model is torch"),
    ({"name": "x", "type": "export", "format": "executorch", "precision": "int8"}, "stages[0].calibration",
     "needs a calibration manifest"),
    ({"name": "x", "type": "export", "format": "executorch", "activations": "dynamic"}, "stages[0].activations",
     "for an INT8 ExecuTorch export"),
    ({"name": "x", "type": "export", "format": "executorch", "optimize": True}, "stages[0].optimize",
     "ONNX export setting"),
    ({"name": "x", "type": "export", "precision": "int8"}, "stages[0].precision", "INT8 ONNX comes from a quantize"),
    ({"name": "x", "type": "export", "target_platform": "amd64"}, "stages[0].target_platform",
     "only format ort-mobile"),
])
def test_unsupported_mobile_combinations_fail_at_load_time(stage, where, words):
    with pytest.raises(RecipeError) as e:
        validate_recipe(small_recipe(stages=[stage]))
    assert where in str(e.value) and words in str(e.value)


def test_an_onnx_or_openvino_artifact_is_not_an_executorch_source(calibration_manifest):
    for prev in ({"name": "p", "type": "export"},
                 {"name": "p", "type": "quantize", "method": "nncf_ptq", "calibration": str(calibration_manifest),
                  "input": "@o"}):
        pre = [{"name": "o", "type": "export"}] if prev["type"] == "quantize" else []
        with pytest.raises(RecipeError) as e:
            validate_recipe(small_recipe(stages=[*pre, prev, {"name": "x", "type": "export", "format": "executorch"}]))
        assert "format executorch takes a torch model" in str(e.value) and "set `input:`" in str(e.value)


def test_a_mobile_target_refuses_other_formats_at_load_time():
    with pytest.raises(RecipeError) as e:
        validate_recipe(small_recipe(stages=[{"name": "o", "type": "export"},
                                             {"name": "b", "type": "benchmark", "artifacts": ["@o"],
                                              "targets": ["executorch"]}]))
    assert "executorch" in str(e.value)


def test_onnx_export_keys_are_unchanged_by_the_format_keys():
    """Adding format/precision/target_platform must not invalidate users' cached ONNX exports."""
    from edgeft.stages.export import ExportConfig

    d = ExportConfig(name="x", type="export").key_config()
    assert set(d) == {"type", "opset", "optimize", "opt_level", "parity"}
    assert d["parity"]["min_agreement"] == 0.999


def test_executorch_program_of_the_channels_last_cnn(tmp_path):
    """EfficientNet-Lite0 (trained channels-last) to an FP32 program: XNNPACK's layout pass needs NCHW
    weights, and memory must be planned for the batch bound (a batch-2 trace refused batch 16+)."""
    from edgeft.ops import executorch_export as et
    from edgeft.tasks import image_classification as task
    from tests.unit.test_image_data import image_recipe

    stages = [{"name": "finetune", "type": "finetune", "epochs": 1, "batch_size": 32},
              {"name": "pte", "type": "export", "format": "executorch", "parity": {"samples": 64}}]
    recipe = validate_recipe(image_recipe(stages=stages))
    res = run_recipe(recipe, runs_dir=tmp_path / "runs")
    assert res.ok, res.failed
    m = res.artifacts["pte"].meta
    assert m["parity"]["agreement"] == 1.0 and m["parity"]["tolerance_used"] <= 1.0
    assert m["delegation"]["delegated_share"] > 0.9 and "convolution" not in m["delegation"]["non_delegated_ops"]
    run_pte = et.load_method(res.artifacts["pte"].main_path)
    x = np.random.default_rng(0).random((et.MAX_BATCH, 3, 32, 32), dtype=np.float32)
    got = et.run_program(run_pte, {"pixel_values": x}, ["pixel_values"])
    ref = task.torch_forward(task.load_model(res.artifacts["finetune"].path), {"pixel_values": x})
    assert got.shape == (et.MAX_BATCH, 10)
    assert np.abs(got - ref).max() <= 1e-4 + 1e-4 * np.abs(ref).max()
