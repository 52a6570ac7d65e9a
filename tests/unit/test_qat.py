"""qat: NNCF quantization-aware fine-tuning of a briefly fine-tuned MiniLM, exported to QDQ ONNX,
run on both ONNX Runtime and OpenVINO. Real weights, real Rotten Tomatoes subsets."""

from __future__ import annotations

import json

import pytest

from tests.conftest import small_recipe
from edgeft.errors import RecipeError
from edgeft.recipe import validate_recipe
from edgeft.runner import run_recipe


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


def test_qat_trains_and_exports_a_verified_qdq_onnx(qat_run):
    from edgeft.ops.onnx_export import op_counts

    art, src = qat_run.artifacts["qat"], qat_run.artifacts["finetune"]
    m = art.meta
    assert art.kind == "onnx" and art.file == "model.onnx" and m["precision"] == "int8" and m["method"] == "qat"
    assert m["torch_source"] == src.key and m["steps"] == 25 and len(m["val_accuracy_per_epoch"]) == 1
    ops = op_counts(art.main_path)
    assert ops.get("QuantizeLinear", 0) >= 36 and m["qdq_pairs"] == ops["QuantizeLinear"]
    assert m["parity"]["agreement"] >= 0.99 and m["parity"]["max_abs_diff"] <= m["parity_limits"]["max_abs_diff"]
    assert 0 < m["parity_vs_fp32_input"]["agreement"] <= 1
    assert not any(p.suffix == ".safetensors" for p in art.path.iterdir())   # the artifact is the ONNX model
    assert m["calibration"]["num_samples"] == 32


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
