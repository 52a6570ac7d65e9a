"""quantize: dynamic and static INT8 of a real export, calibrated and checked on real Rotten Tomatoes
text. One FP32 export is shared by every test of this file.

The model is the shipped MiniLM with a linear probe fitted on its pooled features (seconds, no
fine-tuning): a random head's logits all sit near its decision boundary, where any quantization
noise flips argmax, which would make the agreement figures meaningless.
"""

from __future__ import annotations

import re

import pytest
import yaml

from edgeft.errors import DataError, ExportParityError, RecipeError
from edgeft.recipe import validate_recipe
from edgeft.runner import plan, run_recipe
from tests.conftest import small_recipe

EXPORT = {"name": "onnx", "type": "export", "optimize": False, "parity": {"samples": 32}}
PARITY = {"samples": 128, "min_agreement": 0.8}


@pytest.fixture(scope="module")
def probe_model(tmp_path_factory, minilm_path):
    """The shipped MiniLM whose classifier is a logistic regression on its pooled train features."""
    import numpy as np
    import torch
    from sklearn.linear_model import LogisticRegression

    from edgeft.tasks import text_classification as task

    splits = task.load_splits(validate_recipe(small_recipe()))
    torch.manual_seed(0)
    model, tok = task.load_model(minilm_path, splits.label_names), task.load_processor(minilm_path)
    texts = splits.train.items
    with torch.inference_mode():
        feats = np.concatenate([model.bert(**tok(texts[i:i + 64], truncation=True, max_length=32, padding=True,
                                                 return_tensors="pt")).pooler_output.numpy()
                                for i in range(0, len(texts), 64)])
    probe = LogisticRegression(C=10.0, max_iter=5000).fit(feats, splits.train.labels)
    w, b = probe.coef_[0], probe.intercept_[0]
    with torch.no_grad():
        model.classifier.weight.copy_(torch.tensor(np.stack([-w / 2, w / 2])))
        model.classifier.bias.copy_(torch.tensor([-b / 2, b / 2]))
    out = tmp_path_factory.mktemp("probe") / "minilm-probe"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def _recipe(probe_model, stages):
    return validate_recipe(small_recipe(model={"source": probe_model}, stages=stages))


@pytest.fixture(scope="module")
def manifest(calibration_manifest):
    return calibration_manifest


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return tmp_path_factory.mktemp("quantize") / "runs"


@pytest.fixture(scope="module")
def quantized(runs, manifest, probe_model):
    stages = [EXPORT,
              {"name": "dyn", "type": "quantize", "input": "@onnx", "method": "dynamic", "parity": PARITY},
              {"name": "static", "type": "quantize", "input": "@onnx", "method": "static",
               "calibration": str(manifest), "parity": PARITY},
              {"name": "static-ac", "type": "quantize", "input": "@onnx", "method": "static",
               "calibration": str(manifest), "parity": PARITY, "max_drop": 1.0, "fallback_samples": 64}]
    return run_recipe(_recipe(probe_model, stages), runs_dir=runs).artifacts


_VAL_ACCURACY = {}


def _val_accuracy(onnx_path) -> float:
    """Accuracy of an .onnx classifier on the first 128 validation texts of small_recipe(), from a plain
    ONNX Runtime session, in batches of 32 as the quantize stage's parity check feeds them (dynamic
    INT8's activation ranges are per batch). Counted here, not by the task's metric."""
    import numpy as np
    import onnxruntime as ort
    from transformers import AutoTokenizer

    from edgeft.tasks import text_classification as task

    key = str(onnx_path)
    if key not in _VAL_ACCURACY:
        val = task.load_splits(validate_recipe(small_recipe())).validation
        texts, labels = val.items[:128], np.asarray(val.labels[:128])
        tok = AutoTokenizer.from_pretrained(str(onnx_path.parent))
        sess = ort.InferenceSession(key, providers=["CPUExecutionProvider"])
        names = {i.name for i in sess.get_inputs()}
        pred = np.concatenate([
            sess.run(["logits"], {k: v.astype(np.int64) for k, v in tok(texts[i:i + 32], truncation=True,
                                                                          max_length=32, padding=True,
                                                                          return_tensors="np").items()
                                  if k in names})[0].argmax(-1)
            for i in range(0, len(texts), 32)])
        _VAL_ACCURACY[key] = float((pred == labels).mean())
    return _VAL_ACCURACY[key]


def _common_checks(art, fp32):
    from edgeft.tasks import text_classification as task

    m = art.meta
    assert art.kind == "onnx" and art.file == "model.onnx" and m["precision"] == "int8"
    assert m["torch_source"] == fp32.meta["torch_source"]
    assert m["torch_source"].startswith("model:")
    assert art.size_mb() < 0.4 * fp32.size_mb()
    assert m["size_ratio"] < 0.4
    assert {"max_abs_diff", "mean_abs_diff", "agreement", "n"} <= set(m["parity"])
    assert m["parity"]["agreement"] >= PARITY["min_agreement"]
    # both accuracies are the models' own on the 128 parity samples (all of validation), recomputed here
    # (the probe is weak, ~0.59 against 0.58 for the majority class, so no floor is asserted) ...
    assert m["val_accuracy_fp32"] == _val_accuracy(fp32.main_path)
    assert m["val_accuracy_int8"] == _val_accuracy(art.main_path)
    # ... and they differ by no more than the predictions that changed: at most the parity disagreements
    # (parity n counts the 128 batched samples plus a few batch-1 re-runs of them)
    assert 128 <= m["parity"]["n"] <= 128 + 8
    changed = round((1 - m["parity"]["agreement"]) * m["parity"]["n"])
    assert abs(m["val_accuracy_int8"] - m["val_accuracy_fp32"]) * 128 <= changed + 1e-6
    assert m["quantized_ops"]["matmul_int8"] >= 36      # 6 layers x 6 weight MatMuls
    assert task.load_processor(art.path)("ok")["input_ids"][0] == 101
    assert not any(p.name.startswith(".") for p in art.path.iterdir())


@pytest.mark.slow
def test_dynamic_int8(quantized):
    from edgeft.ops.onnx_export import op_counts

    art = quantized["dyn"]
    _common_checks(art, quantized["onnx"])
    ops = op_counts(art.main_path)
    assert ops.get("MatMulInteger", 0) >= 36 and ops.get("DynamicQuantizeLinear", 0) > 0
    assert art.meta["method"] == "dynamic" and art.meta["quantized_ops"]["weight_matmul_float"] == 0


@pytest.mark.slow
def test_static_int8_qdq(quantized, manifest):
    from edgeft.ops.onnx_export import op_counts

    art = quantized["static"]
    _common_checks(art, quantized["onnx"])
    ops = op_counts(art.main_path)
    assert ops.get("QuantizeLinear", 0) > 0 and ops.get("DequantizeLinear", 0) > 0
    m = art.meta
    assert m["method"] == "static" and m["calibrate_method"] == "minmax"
    want = yaml.safe_load(manifest.read_text())
    assert m["calibration"]["sha256"] == want["sha256"] and m["calibration"]["num_samples"] == 32
    assert m["calibration"]["manifest"] == str(manifest)
    assert m["quantized_ops"]["weight_matmul_float"] == 0


@pytest.mark.slow
def test_static_with_a_stale_manifest_fails(quantized, runs, manifest, probe_model, tmp_path):
    stale = tmp_path / "stale.yaml"
    stale.write_text(manifest.read_text().replace(yaml.safe_load(manifest.read_text())["sha256"], "f" * 64))
    stages = [EXPORT, {"name": "static", "type": "quantize", "method": "static", "calibration": str(stale)}]
    recipe = _recipe(probe_model, stages)
    with pytest.raises(DataError, match="the data changed"):
        run_recipe(recipe, runs_dir=runs, fail_fast=True)          # the export is reused from the store
    assert not (runs / ".store" / plan(recipe)[1].key).exists()


@pytest.mark.slow
def test_static_with_max_drop_checks_the_whole_validation_split(quantized):
    m = quantized["static-ac"].meta
    fb = m["fallback"]
    assert fb["met"] and fb["candidates"] == 38          # 36 encoder MatMuls + pooler and classifier Gemms
    assert m["val_drop_points"] <= 1.0 and m["parity"]["n"] >= 128
    assert fb["val_accuracy_fp32"] == pytest.approx(m["val_accuracy_fp32"])
    assert fb["min_agreement"] == m["parity_limits"]["min_agreement"]
    if fb["val_drop_points_all_int8"] <= 1.0 and fb["val_agreement_all_int8"] >= fb["min_agreement"]:
        assert m["float_nodes"] == [] and fb["kept_float"] == []      # all INT8 already passes: nothing kept
        assert m["val_accuracy_int8"] == pytest.approx(fb["val_accuracy_all_int8"])
    else:                                                # the last kept node made both hold
        assert fb["kept_float"][-1]["val_drop_points"] <= 1.0
        assert fb["kept_float"][-1]["val_agreement"] >= fb["min_agreement"]
    assert m["quantized_ops"]["weight_matmul_float"] == len(m["float_nodes"])
    assert fb["latency_p50_ms_all_int8"] > 0


@pytest.fixture(scope="module")
def fallback_parts(quantized, manifest, tmp_path_factory):
    """Pre-processed FP32 graph, its calibration cache and validation texts of the `onnx` export."""
    import numpy as np

    from edgeft.ops import onnx_export as ox
    from edgeft.ops import ort_quantization as oq
    from edgeft.tasks import text_classification as task

    fp32 = quantized["onnx"]
    work = tmp_path_factory.mktemp("fallback")
    tok = task.load_processor(fp32.path)
    splits = task.load_splits(validate_recipe(small_recipe()))

    def encode(texts):
        return task.encode(tok, texts, 32)

    pre = oq.preprocess(fp32.main_path, work / "pre.onnx")
    names, _ = ox.io_names(pre)
    cache = oq.static_calibration(pre, oq.calibration_reader(splits.train.items[:32], encode, names, progress=False),
                                  work / "cal.json", op_types=task.STATIC_OP_TYPES)
    texts = splits.validation.items[:128]
    feeds = [encode(texts[i:i + 32]) for i in range(0, len(texts), 32)]

    def logits(path):
        sess = ox.session(path)
        return np.concatenate([ox.run_session(sess, f)[ox.output_index(sess, "logits")] for f in feeds])

    return pre, cache, work, logits


def _quantize_static(pre, dst, cache, kept):
    """Static INT8 of `pre` with the attention-score MatMuls and `kept` in float (the text task's op types)."""
    from edgeft.ops.onnx_graph import activation_matmuls
    from edgeft.ops.ort_quantization import quantize_static_int8
    from edgeft.tasks import text_classification as task

    return quantize_static_int8(pre, dst, cache, nodes_to_exclude=activation_matmuls(pre) + kept,
                                op_types=task.STATIC_OP_TYPES)


@pytest.mark.slow
def test_float_fallback_keeps_the_most_sensitive_ops_in_float_until_the_drop_is_met(fallback_parts):
    """Accuracy here is agreement with the FP32 model's own predictions (FP32 scores 1.0), so the
    all-INT8 model has a real drop to recover. Candidates: the last layer's six MatMuls, pooler and
    classifier, so the search stays short; with all of them in float the drop is smaller, and
    max_drop sits between the two."""
    import numpy as np

    from edgeft.ops.fallback import float_fallback
    from edgeft.ops.onnx_graph import quantization_summary, weight_nodes

    pre, cache, work, logits = fallback_parts
    candidates = weight_nodes(pre)[-8:]
    assert any("layer.5" in c for c in candidates) and len(candidates) == 8
    reference = logits(pre)
    made = []

    def quantize(kept, dst=work / "trial.onnx"):
        made.append(list(kept))
        return _quantize_static(pre, dst, cache, kept)

    def accuracy(path):
        return float((logits(path).argmax(-1) == reference.argmax(-1)).mean())

    def error(path):
        return float(np.abs(logits(path) - reference).mean())

    drop_all = 100 * (1 - accuracy(quantize([])))
    drop_none = 100 * (1 - accuracy(quantize(candidates)))
    assert drop_none < drop_all                      # keeping these in float does recover agreement
    max_drop = (drop_all + drop_none) / 2
    kept, rec = float_fallback(quantize, candidates, error, accuracy, lambda p: 1.0, 1.0, max_drop, progress=False)
    assert rec["met"] and rec["val_drop_points_all_int8"] == pytest.approx(drop_all, abs=1e-3)
    ranked = [s["node"] for s in rec["sensitivity"]]
    assert sorted(ranked) == sorted(candidates) and kept == ranked[:len(kept)]   # most sensitive first
    gains = [s["error_removed"] for s in rec["sensitivity"]]
    assert gains == sorted(gains, reverse=True)
    steps = rec["kept_float"]
    assert [s["node"] for s in steps] == kept and steps[-1]["val_drop_points"] <= max_drop
    assert all(s["val_drop_points"] > max_drop for s in steps[:-1])          # stops at the first that meets it
    assert quantization_summary(quantize(kept))["weight_matmul_float"] == len(kept)


@pytest.mark.slow
def test_float_fallback_says_when_max_drop_cannot_be_met(fallback_parts):
    from edgeft.ops.fallback import float_fallback
    from edgeft.ops.onnx_graph import weight_nodes

    pre, cache, work, logits = fallback_parts
    candidates = weight_nodes(pre)[:1]
    reference = logits(pre).argmax(-1)

    def quantize(kept):
        return _quantize_static(pre, work / "t2.onnx", cache, kept)

    def accuracy(path):      # a metric no INT8 model meets: 1.0 only for the FP32 graph itself
        return 1.0 if path == pre else float((logits(path).argmax(-1) == reference).mean()) - 0.5

    kept, rec = float_fallback(quantize, candidates, lambda p: 0.0, accuracy, lambda p: 1.0, 1.0, 1.0,
                               progress=False)
    assert not rec["met"] and kept == candidates and len(rec["kept_float"]) == 1
    assert rec["kept_float"][0]["val_drop_points"] > 1.0


@pytest.mark.slow
def test_quantize_parity_failure_commits_nothing(quantized, runs, probe_model):
    stages = [EXPORT, {"name": "dyn", "type": "quantize", "method": "dynamic", "per_channel": False,
                       "parity": {"samples": 32, "max_abs_diff": 1e-6}}]
    recipe = _recipe(probe_model, stages)
    with pytest.raises(ExportParityError, match=re.escape("max |Δlogit|")) as e:
        run_recipe(recipe, runs_dir=runs, fail_fast=True)
    assert e.value.figures["max_abs_diff"] > 1e-6 and e.value.figures["n"] > 0
    store = runs / ".store"
    assert not (store / plan(recipe)[1].key).exists() and not list(store.glob(".tmp-*"))


def test_static_needs_an_unfused_export(manifest):
    stages = [{"name": "onnx", "type": "export", "optimize": True},
              {"name": "static", "type": "quantize", "method": "static", "calibration": str(manifest)}]
    with pytest.raises(RecipeError, match="optimize: false"):
        validate_recipe(small_recipe(stages=stages))


def test_fused_ops_are_detected(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from edgeft.ops.onnx_graph import fused_ops

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8])
    node = helper.make_node("Attention", ["x"], ["y"], domain="com.microsoft", num_heads=2)
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(helper.make_graph([node], "g", [x], [y])), path)
    assert fused_ops(path) == {"Attention": 1}


# ----------------------------------------------------------------------------- NNCF + OpenVINO

TINY_BENCH = {"latency_samples": 20, "rounds": 1, "warmup": 2, "fixed_runs": 5, "throughput_batches": 1,
              "memory": False}


@pytest.fixture(scope="module")
def nncf_run(runs, manifest, probe_model):
    stages = [EXPORT,
              {"name": "ov-int8", "type": "quantize", "input": "@onnx", "method": "nncf_ptq",
               "calibration": str(manifest), "parity": PARITY},
              {"name": "ov-ac", "type": "quantize", "input": "@onnx", "method": "nncf_accuracy_control",
               "calibration": str(manifest), "max_drop": 1.0, "parity": PARITY},
              {"name": "dyn", "type": "quantize", "input": "@onnx", "method": "dynamic", "parity": PARITY},
              {"name": "bench", "type": "benchmark", "artifacts": ["@onnx", "@ov-int8", "@dyn"],
               "targets": ["cpu", "openvino"], **TINY_BENCH}]
    return run_recipe(_recipe(probe_model, stages), runs_dir=runs)


@pytest.mark.slow
def test_nncf_ptq_makes_a_verified_openvino_ir(nncf_run, manifest):
    art, fp32 = nncf_run.artifacts["ov-int8"], nncf_run.artifacts["onnx"]
    m = art.meta
    assert art.kind == "openvino" and art.file == "model.xml" and (art.path / "model.bin").is_file()
    assert m["precision"] == "int8" and m["method"] == "nncf_ptq" and m["torch_source"] == fp32.meta["torch_source"]
    assert m["nncf"]["fake_quantize_ops"] > 0 and m["nncf"]["model_type"] == "transformer"
    assert m["calibration"]["num_samples"] == 32
    assert m["calibration"]["sha256"] == yaml.safe_load(manifest.read_text())["sha256"]
    assert m["parity"]["agreement"] >= PARITY["min_agreement"] and m["parity"]["n"] > 0
    assert m["size_ratio"] < 0.4                      # xml + bin against the FP32 .onnx


@pytest.mark.slow
def test_nncf_accuracy_control_keeps_the_drop_within_max_drop(nncf_run):
    m = nncf_run.artifacts["ov-ac"].meta
    assert nncf_run.artifacts["ov-ac"].kind == "openvino" and m["method"] == "nncf_accuracy_control"
    assert m["nncf"]["max_drop_points"] == 1.0 and m["nncf"]["validation_items"] == 128
    assert m["parity"]["n"] >= 128                   # checked again by edgeft on the whole validation split
    assert m["val_drop_points"] <= 1.0
    assert m["val_drop_points"] == pytest.approx(100 * (m["val_accuracy_fp32"] - m["val_accuracy_int8"]), abs=1e-3)


@pytest.mark.slow
def test_openvino_target_runs_onnx_and_ir_artifacts(nncf_run):
    import json

    report = json.loads((nncf_run.artifacts["bench"].main_path).read_text())
    rows = {(r["artifact"], r["target"]): r for r in report["rows"]}
    # no IR on cpu; ORT dynamic INT8 not on openvino, said in the report
    assert set(rows) == {("onnx", "cpu"), ("onnx", "openvino"), ("ov-int8", "openvino"), ("dyn", "cpu")}
    assert [(n["artifact"], n["target"]) for n in report["not_run"]] == [("dyn", "openvino")]
    assert "ONNX Runtime-only" in report["not_run"][0]["reason"]
    ov_fp32, ort_fp32, ov_int8 = rows[("onnx", "openvino")], rows[("onnx", "cpu")], rows[("ov-int8", "openvino")]
    assert ov_fp32["accuracy"] == pytest.approx(ort_fp32["accuracy"], abs=0.011)   # same FP32 model, 2 runtimes
    assert abs(ov_int8["accuracy"] - ov_fp32["accuracy"]) < 0.1
    fp = ov_int8["fingerprint"]
    assert fp["target"] == "openvino" and fp["threads"] == 2 and fp["hints"]["PERFORMANCE_HINT"] == "LATENCY"
    assert ov_int8["latency_ms"]["p50"] > 0 and ov_int8["size_mb"] < 0.4 * ov_fp32["size_mb"]
    assert fp["text_shapes"].startswith("sequence buckets 16/32/64/128 at batch 1")


@pytest.mark.slow
def test_openvino_buckets_pad_to_the_next_length_and_give_the_dynamic_models_logits(nncf_run):
    import numpy as np

    from edgeft.targets import openvino_cpu
    from edgeft.tasks import text_classification as task

    art = nncf_run.artifacts["ov-int8"]
    bucketed, dynamic = openvino_cpu.load(art, 2, task), openvino_cpu.load(art, 2)
    assert isinstance(bucketed, openvino_cpu.BucketedOvSession) and type(dynamic) is openvino_cpu.OvSession
    proc = task.load_processor(nncf_run.artifacts["onnx"].path)
    for text, length in [("great", 3), ("a long and winding review " * 5, 27), ("word " * 150, 152)]:
        feed = bucketed.feed(task.encode(proc, [text], 512))
        assert feed["input_ids"].shape == (1, length)
        got, ref = bucketed.run_feed(feed), dynamic.run_feed(feed)
        # a bucket whose padded model moved the logits is not used (its requests run dynamic): never
        # more than the bound apart, whichever kernels this CPU runs
        bound = openvino_cpu.BUCKET_ATOL + openvino_cpu.BUCKET_RTOL * np.abs(ref).max()
        assert np.abs(got - ref).max() <= bound and got.argmax() == ref.argmax()
    assert sorted(bucketed.by_bucket) == [16, 32]      # compiled on first use; 152 tokens ran dynamic
    checks = bucketed.shape_notes()["buckets"]
    assert set(checks) == {"16", "32"} and all(c["max_abs_diff"] >= 0 for c in checks.values())
    for b, c in checks.items():                         # a bucket is used exactly when it passed its check
        assert c["used"] == (c["max_abs_diff"] <= c["bound"]) == (bucketed.by_bucket[int(b)] is not None)


@pytest.mark.slow
def test_an_openvino_bucket_that_changes_answers_is_not_used(nncf_run, monkeypatch):
    import numpy as np

    from edgeft.targets import openvino_cpu
    from edgeft.tasks import text_classification as task

    art = nncf_run.artifacts["ov-int8"]
    monkeypatch.setattr(openvino_cpu, "BUCKET_ATOL", -1.0)      # no bucket can pass: every request dynamic
    bucketed, dynamic = openvino_cpu.load(art, 2, task), openvino_cpu.load(art, 2)
    proc = task.load_processor(nncf_run.artifacts["onnx"].path)
    feed = bucketed.feed(task.encode(proc, ["a long and winding review " * 2], 512))
    np.testing.assert_array_equal(bucketed.run_feed(feed), dynamic.run_feed(feed))
    assert bucketed.by_bucket == {16: None} and bucketed.shape_notes()["buckets"]["16"]["used"] is False


@pytest.mark.parametrize("extra, bench_targets, path, reason", [
    ({}, ["cpu"], "stages[2].artifacts[0]", "none of the targets (cpu) runs that kind"),
    ({"calibration": None}, ["openvino"], "stages[1].calibration", "needs a calibration manifest"),
    ({"per_channel": False}, ["openvino"], "stages[1].method", "NNCF's own"),
    ({"method": "nncf_accuracy_control"}, ["openvino"], "stages[1].max_drop", "needs `max_drop`"),
    ({"max_drop": 1.0}, ["openvino"], "stages[1].max_drop", "does not control accuracy"),
    ({"method": "dynamic", "calibration": None, "max_drop": 1.0}, ["cpu"], "stages[1].max_drop",
     "use static (ONNX Runtime) or nncf_accuracy_control"),
])
def test_bad_nncf_combinations_fail_at_load_time(manifest, extra, bench_targets, path, reason):
    q = {"name": "ov", "type": "quantize", "method": "nncf_ptq", "calibration": str(manifest), **extra}
    stages = [{"name": "onnx", "type": "export"}, q,
              {"name": "b", "type": "benchmark", "artifacts": ["@ov"], "targets": bench_targets}]
    with pytest.raises(RecipeError) as e:
        validate_recipe(small_recipe(stages=stages), check_data=False)
    assert any(p == path and reason in r for p, r in e.value.problems), e.value.problems


def test_an_artifact_no_listed_target_can_run_fails_at_load_time():
    stages = [{"name": "onnx", "type": "export"}, {"name": "dyn", "type": "quantize", "method": "dynamic"},
              {"name": "b", "type": "benchmark", "artifacts": ["@dyn"], "targets": ["openvino"]}]
    with pytest.raises(RecipeError) as e:
        validate_recipe(small_recipe(stages=stages), check_data=False)
    assert any(p == "stages[2].artifacts[0]" and "runs only on cpu" in r for p, r in e.value.problems)


def test_nncf_needs_an_unfused_export(manifest):
    stages = [{"name": "onnx", "type": "export", "optimize": True},
              {"name": "ov", "type": "quantize", "method": "nncf_ptq", "calibration": str(manifest)}]
    with pytest.raises(RecipeError, match="optimize: false"):
        validate_recipe(small_recipe(stages=stages), check_data=False)


@pytest.mark.slow
def test_openvino_bf16_target_runs_float_ops_in_bf16(nncf_run):
    """On a CPU with bf16 (AMX / AVX-512 BF16): the same artifacts compiled with bf16 inference
    precision, as OpenVINO does by default there; FP32 rows are reported as bf16."""
    import numpy as np

    from edgeft.targets import row_precision, target_module, unavailable_reason

    if reason := unavailable_reason("openvino-bf16"):
        pytest.skip(f"openvino-bf16: {reason}")
    mod, f32 = target_module("openvino-bf16"), target_module("openvino")
    for name in ("onnx", "ov-int8"):
        art = nncf_run.artifacts[name]
        bf16, ref = mod.load(art, 2), f32.load(art, 2)
        assert bf16.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "bf16"
        assert ref.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "f32"
        assert bf16.target == "openvino-bf16" and mod.fingerprint(2)["hints"]["INFERENCE_PRECISION_HINT"] == "bf16"
        feed = {"input_ids": np.array([[101, 2023, 3185, 2001, 2307, 102]]),
                "attention_mask": np.ones((1, 6), np.int64), "token_type_ids": np.zeros((1, 6), np.int64)}
        a, b = bf16.run(feed), ref.run(feed)
        assert a.shape == b.shape and np.abs(a - b).max() < 0.5       # bf16 rounding, not a different model
    assert row_precision("fp32", "openvino-bf16") == "bf16" and row_precision("int8", "openvino-bf16") == "int8"
    assert row_precision("fp32", "openvino") == "fp32"


def test_a_target_this_cpu_cannot_run_fails_at_load_time(monkeypatch):
    from edgeft.targets import openvino_bf16

    # the capability check itself is real above; here the CPU's answer is replaced to reach the error path
    monkeypatch.setattr(openvino_bf16, "unavailable_reason", lambda: "this CPU has no bf16 support")
    stages = [{"name": "onnx", "type": "export"},
              {"name": "b", "type": "benchmark", "artifacts": ["@onnx"], "targets": ["openvino-bf16"]}]
    with pytest.raises(RecipeError) as e:
        validate_recipe(small_recipe(stages=stages), check_data=False)
    assert ("stages[1].targets[0]", "openvino-bf16: this CPU has no bf16 support") in e.value.problems
