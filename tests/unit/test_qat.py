"""qat: NNCF quantization-aware fine-tuning of a briefly fine-tuned MiniLM, exported to QDQ ONNX,
run on both ONNX Runtime and OpenVINO. Real weights, real Rotten Tomatoes subsets."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeft.errors import RecipeError
from edgeft.recipe import validate_recipe
from edgeft.runner import run_recipe
from tests.conftest import small_recipe


@pytest.fixture(scope="module")
def manifest(calibration_manifest):
    return calibration_manifest


@pytest.fixture(scope="module")
def qat_run(tmp_path_factory, manifest):
    stages = [{"name": "finetune", "type": "finetune", "epochs": 1, "batch_size": 16},
              {"name": "qat", "type": "qat", "input": "@finetune", "epochs": 1, "batch_size": 16,
               "calibration": str(manifest)},
              {"name": "bench", "type": "benchmark", "artifacts": ["@qat"], "targets": ["cpu", "openvino"],
               "latency_samples": 20, "rounds": 1, "warmup": 2, "fixed_runs": 5, "throughput_batches": 1,
               "memory": False}]
    root = tmp_path_factory.mktemp("qat")
    return run_recipe(validate_recipe(small_recipe(stages=stages)), runs_dir=root / "runs")


@pytest.mark.slow
def test_qat_trains_and_exports_a_verified_qdq_onnx(qat_run):
    from edgeft.ops.onnx_export import op_counts

    art, src = qat_run.artifacts["qat"], qat_run.artifacts["finetune"]
    m = art.meta
    assert art.kind == "onnx" and art.file == "model.onnx" and m["precision"] == "int8" and m["method"] == "qat"
    assert m["torch_source"] == src.key and m["steps"] == 25 and len(m["val_accuracy_per_epoch"]) == 1
    ops = op_counts(art.main_path)
    assert ops.get("QuantizeLinear", 0) >= 36 and m["qdq_pairs"] == ops["QuantizeLinear"]
    # weights are stored as integers: no weight QuantizeLinear left, no FP32 copy of the weights
    assert m["folding"]["weights_folded"] >= 36 + 3 and m["folding"]["transposes_folded"] >= 36
    assert m["folding"]["gathers_of_integers"] == 3            # word, position and token-type embeddings
    assert m["size_mb"] < 0.3 * 4 * 22.7                       # MiniLM: 22.7M params, 91 MB in FP32
    assert m["parity"]["agreement"] >= 0.99 and m["parity"]["max_abs_diff"] <= m["parity_limits"]["max_abs_diff"]
    assert 0 < m["parity_vs_fp32_input"]["agreement"] <= 1
    assert not any(p.suffix == ".safetensors" for p in art.path.iterdir())   # the artifact is the ONNX model
    assert m["calibration"]["num_samples"] == 32
    # the OpenVINO IR beside it: the same model (checked on OpenVINO against the ONNX)
    ir = m["openvino_ir"]
    vs_torch, limits = ir["parity_vs_qat_torch"], m["parity_limits"]
    assert ir["parity_vs_onnx_on_openvino"]["max_abs_diff"] <= limits["max_abs_diff"]
    assert ir["parity_vs_onnx_on_openvino"]["agreement"] >= limits["min_agreement"]
    passes = vs_torch["agreement"] >= limits["min_agreement"] and vs_torch["max_abs_diff"] <= limits["max_abs_diff"]
    assert ir["written"] == passes              # shipped exactly when OpenVINO agrees with the QAT model
    if passes:
        assert (art.path / "model.xml").is_file() and (art.path / "model.bin").stat().st_size > 1e6
    else:
        assert not (art.path / "model.xml").exists() and "QAT torch model" in ir["reason"]


@pytest.mark.slow
def test_qat_model_runs_on_onnx_runtime_and_openvino(qat_run):
    report = json.loads(qat_run.artifacts["bench"].main_path.read_text())
    rows = {r["target"]: r for r in report["rows"]}
    assert set(rows) == {"cpu", "openvino"}
    assert rows["cpu"]["accuracy"] == pytest.approx(rows["openvino"]["accuracy"], abs=0.02)
    assert rows["cpu"]["accuracy"] > 0.55                            # a trained model, not chance


def test_qat_without_epochs_or_with_keep_best_fails_at_load_time(manifest):
    for extra, path, reason in [({}, "stages[1].epochs", "required key is missing"),
                                ({"epochs": 1, "keep_best": True}, "stages[1].keep_best", "fixed number of epochs")]:
        stages = [{"name": "ft", "type": "finetune"},
                  {"name": "qat", "type": "qat", "calibration": str(manifest), **extra}]
        with pytest.raises(RecipeError) as e:
            validate_recipe(small_recipe(stages=stages), check_data=False)
        assert any(p == path and reason in r for p, r in e.value.problems), e.value.problems


def test_folding_weight_quantizers_keeps_every_output(tmp_path):
    """A QDQ graph as NNCF exports it (per-channel weight Q/DQ -> Transpose -> MatMul; an embedding
    table Q/DQ -> Gather) computes the same numbers once its weights are stored as integers."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgeft.ops import onnx_export as ox
    from edgeft.ops.qdq import fold_weight_quantizers

    rng = np.random.default_rng(0)
    w, table = rng.normal(size=(6, 8)).astype(np.float32), rng.normal(size=(10, 8)).astype(np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in [
        (w, "w"), (np.abs(w).max(1) / 127, "w_s"), (np.zeros(6, np.int8), "w_z"),
        (table, "t"), (np.abs(table).max(1) / 127, "t_s"), (np.full(10, 3, np.int8), "t_z"),
        (np.float32(0.05), "a_s"), (np.uint8(128), "a_z")]]
    nodes = [helper.make_node("Gather", ["t_dq", "ids"], ["emb"], axis=0),
             helper.make_node("QuantizeLinear", ["emb", "a_s", "a_z"], ["emb_q"]),
             helper.make_node("DequantizeLinear", ["emb_q", "a_s", "a_z"], ["emb_dq"]),
             helper.make_node("MatMul", ["emb_dq", "w_t"], ["y"])]
    nodes = [helper.make_node("QuantizeLinear", ["w", "w_s", "w_z"], ["w_q"], axis=0),
             helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["w_dq"], axis=0),
             helper.make_node("Transpose", ["w_dq"], ["w_t"], perm=[1, 0]),
             helper.make_node("QuantizeLinear", ["t", "t_s", "t_z"], ["t_q"], axis=0),
             helper.make_node("DequantizeLinear", ["t_q", "t_s", "t_z"], ["t_dq"], axis=0)] + nodes
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("ids", TensorProto.INT64, [2, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5, 6])], inits)
    src, dst = tmp_path / "qdq.onnx", tmp_path / "folded.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), src)
    facts = fold_weight_quantizers(src, dst)
    assert facts == {"weights_folded": 2, "transposes_folded": 1, "gathers_of_integers": 1,
                     "initializers_removed": 3}
    folded = onnx.load(str(dst))
    assert {i.name: i.data_type for i in folded.graph.initializer}["w_quantized_t"] == TensorProto.INT8
    assert all(i.data_type != TensorProto.FLOAT or i.name not in ("w", "t") for i in folded.graph.initializer)
    assert ox.op_counts(dst).get("Transpose", 0) == 0
    ids = {"ids": rng.integers(0, 10, size=(2, 5)).astype(np.int64)}
    before, after = ox.run_session(ox.session(src), ids)[0], ox.run_session(ox.session(dst), ids)[0]
    np.testing.assert_array_equal(before, after)


def _qdq_matmul(path, k: int = 64, n: int = 16):
    """x (float) -> Q/DQ (uint8, scale 0.01) -> MatMul with int8 weights behind DequantizeLinear: the form
    a QAT export folds to. Optimised, ONNX Runtime runs it as a u8 x s8 integer MatMul, which saturates
    on x86 without VNNI for activations near 255 and same-sign weights near 127."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).integers(90, 128, size=(k, n)).astype(np.int8)
    inits = [numpy_helper.from_array(a, name) for a, name in (
        (w, "wq"), (np.array(0.01, np.float32), "ws"), (np.array(0, np.int8), "wz"),
        (np.array(0.01, np.float32), "xs"), (np.array(0, np.uint8), "xz"))]
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
             helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"]),
             helper.make_node("MatMul", ["xd", "wd"], ["logits"])]
    g = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, k])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, n])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path, w


def test_rewrite_check_reads_the_graph_not_this_cpus_kernels(tmp_path):
    """The folding check compares the two graphs with ONNX Runtime's optimisations off, so a uint8 copy
    of int8 weights (the same numbers) passes on every CPU. Optimised, the two run different integer
    kernels: on an AVX2 CPU without VNNI the int8 one saturates (seen natively on an AVX2 EPYC)."""
    from edgeft.ops import onnx_export as ox
    from edgeft.ops.qdq import rewrite_max_diff, weights_to_uint8

    int8, w = _qdq_matmul(tmp_path / "int8.onnx")
    uint8 = tmp_path / "uint8.onnx"
    assert weights_to_uint8(int8, uint8)["weights_to_uint8"] == 1
    feeds = [{"x": np.full((1, 64), 2.5, np.float32)}, {"x": np.linspace(0, 2.55, 128, dtype=np.float32)[None, :64]}]
    assert rewrite_max_diff(int8, uint8, feeds, "logits") == 0.0
    # unoptimised is the spec's arithmetic: x quantized to uint8 steps of 0.01, weights w x 0.01
    reference = ox.run_session(ox.session(int8, optimize=False), feeds[0])[0]
    assert np.allclose(reference, np.full((1, 64), 2.5) @ (w.astype(np.float64) * 0.01), rtol=1e-5)
    # optimised, ONNX Runtime fuses both into integer MatMuls: uint8 weights are exact on every CPU, int8
    # weights saturate exactly where edgeft/isa.py says they do (x86 without VNNI)
    from edgeft.isa import int8_format

    def optimised(path):
        return ox.run_session(ox.session(path), feeds[0])[0]

    assert np.abs(optimised(uint8) - reference).max() < 1e-3
    deviation = np.abs(optimised(int8) - reference).max()
    if int8_format("auto").saturating:
        assert deviation > 1.0, f"int8 weights did not saturate on this {int8_format('auto').isa}-class CPU"
    else:
        assert deviation < 1e-3
    broken = tmp_path / "broken.onnx"             # a rewrite that changes the numbers is caught
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(uint8))
    for t in m.graph.initializer:
        if t.data_type == onnx.TensorProto.UINT8 and len(t.dims) == 2:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t) - 1, t.name))
    onnx.save(m, str(broken))
    assert rewrite_max_diff(int8, broken, feeds, "logits") > 0.1
