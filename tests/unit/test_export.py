"""export: the shipped MiniLM (new random head, no fine-tuning) to ONNX, on real Rotten Tomatoes text.

One export (with ONNX Runtime fusions) is shared by the tests of this file; the parity-failure test
exports a deliberately corrupted model and checks that nothing reaches the store.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgeft.errors import ExportParityError
from edgeft.recipe import validate_recipe
from edgeft.runner import plan, run_recipe
from tests.conftest import small_recipe

EXPORT = {"name": "onnx", "type": "export", "optimize": True, "parity": {"samples": 64}}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    recipe = validate_recipe(small_recipe(stages=[EXPORT]))
    res = run_recipe(recipe, runs_dir=root / "runs")
    return res.artifacts["onnx"]


def test_export_writes_a_self_contained_onnx_artifact(exported):
    from edgeft.tasks import text_classification as task

    art = exported
    assert art.kind == "onnx" and art.file == "model.onnx"
    names = {p.name for p in art.path.iterdir()}
    assert {"model.onnx", "config.json", "tokenizer.json"} <= names
    assert not any(n.startswith(".") for n in names)            # scratch folders are gone
    assert [p.name for p in art.path.glob("*.onnx*")] == ["model.onnx"]   # one file, no external data
    assert task.load_processor(art.path)("a fine film")["input_ids"][0] == 101
    m = art.meta
    assert m["precision"] == "fp32" and m["opset"] == 18
    assert m["torch_source"] == "model:shipped:all-MiniLM-L6-v2"
    assert m["optimized"] is True and m["fusions"].get("Attention") == 6
    for figures in (m["parity"], m["parity_unoptimized"]):
        assert figures["tolerance_used"] <= 1.0 and figures["atol"] == task.FP32_TOLERANCE
        assert figures["rtol"] == task.FP32_RTOL and figures["max_rel_diff"] < 1e-3
        assert figures["agreement"] == 1.0
        assert figures["n"] == 64 + m["parity_batch1_runs"]
    assert m["val_accuracy_onnx"] == m["val_accuracy_fp32"]


def test_export_has_dynamic_batch_and_sequence_axes(exported):
    from edgeft.ops.onnx_export import dynamic_dims, io_names, session

    path = exported.main_path
    inputs, outputs = io_names(path)
    assert inputs == ["input_ids", "token_type_ids", "attention_mask"] and outputs == ["logits"]
    dims = dynamic_dims(path)
    assert all(dims[n] == ["batch", "sequence"] for n in inputs)
    assert dims["logits"][0] == "batch" and dims["logits"][1] == 2
    sess = session(path, threads=1)
    rng = np.random.default_rng(0)
    for batch, seq in [(1, 7), (3, 20)]:
        feed = {"input_ids": rng.integers(1000, 5000, (batch, seq)).astype(np.int64),
                "token_type_ids": np.zeros((batch, seq), np.int64),
                "attention_mask": np.ones((batch, seq), np.int64)}
        (logits,) = sess.run(["logits"], feed)
        assert logits.shape == (batch, 2) and np.isfinite(logits).all()


def test_parity_gate_fails_a_corrupted_export_and_commits_nothing(tmp_path, monkeypatch):
    import torch

    from edgeft.ops import onnx_export

    real_export = onnx_export.export_onnx

    def corrupted_export(model, *args, **kwargs):
        with torch.no_grad():                     # after the reference ran: the ONNX file differs
            model.classifier.weight.mul_(3.0)
        return real_export(model, *args, **kwargs)

    monkeypatch.setattr(onnx_export, "export_onnx", corrupted_export)
    recipe = validate_recipe(small_recipe(stages=[{**EXPORT, "optimize": False, "parity": {"samples": 32}}]))
    key = plan(recipe)[0].key
    store = tmp_path / "runs" / ".store"
    with pytest.raises(ExportParityError) as e:
        run_recipe(recipe, runs_dir=tmp_path / "runs", fail_fast=True)
    msg = str(e.value)
    assert "max |Δlogit|" in msg and e.value.figures["max_abs_diff"] > 1e-4
    assert "max_abs_diff=" in msg and "agreement=" in msg
    assert not (store / key).exists()
    assert not list(store.glob(".tmp-*"))


def test_a_reused_artifact_carries_the_reusing_recipes_stage_name(exported):
    runs = exported.path.parent.parent                 # <runs>/.store/<key>
    renamed = small_recipe(name="other", stages=[{**EXPORT, "name": "renamed"}])
    res = run_recipe(validate_recipe(renamed), runs_dir=runs)
    assert res.skipped == ["renamed"] and res.artifacts["renamed"].key == exported.key
    assert res.artifacts["renamed"].stage == "renamed"   # reports name rows after this recipe's stages
