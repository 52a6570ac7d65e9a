"""finetune stage: real MiniLM weights, real Rotten Tomatoes data, small subsets."""

from __future__ import annotations

import pytest
import torch

from edgeft.errors import StageError
from edgeft.ops.training import count_params, encoder_layers, freeze
from edgeft.recipe import validate_recipe
from edgeft.runner import run_recipe
from edgeft.stages.training import SCRATCH, resolve_precision
from tests.conftest import small_recipe

FROZEN_PREFIXES = ("bert.embeddings.", "bert.encoder.layer.0.", "bert.encoder.layer.1.")


def _load_model(path, label_names=None):
    from edgeft.tasks import text_classification as tc

    return tc.load_model(path, label_names)


# ------------------------------------------------------------------ no training

@pytest.mark.parametrize("requested,cuda,bf16_ok,expected", [
    ("auto", False, False, "fp32"),
    ("auto", True, True, "bf16"),
    ("auto", True, False, "fp16"),
    ("fp32", True, True, "fp32"),
    ("fp16", True, True, "fp16"),
])
def test_resolve_precision(requested, cuda, bf16_ok, expected):
    assert resolve_precision(requested, cuda, bf16_ok) == expected


@pytest.mark.parametrize("requested,cuda,bf16_ok", [("bf16", False, False), ("fp16", False, False),
                                                     ("bf16", True, False)])
def test_resolve_precision_rejects(requested, cuda, bf16_ok):
    with pytest.raises(StageError, match=requested):
        resolve_precision(requested, cuda, bf16_ok)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only error")
def test_bf16_on_cpu_fails_the_stage(tmp_path):
    r = small_recipe()
    r["stages"][0]["precision"] = "bf16"
    with pytest.raises(StageError, match="needs a CUDA GPU"):
        run_recipe(validate_recipe(r), runs_dir=tmp_path, fail_fast=True)
    # nothing half-written
    assert not [p for p in (tmp_path / ".store").iterdir() if p.name not in (".hashes.json", ".locks")]


def test_freeze_embeddings_and_first_layers(minilm_path):
    model = _load_model(minilm_path, ["a", "b"])
    assert len(encoder_layers(model)) == 6
    total, _ = count_params(model)
    names = freeze(model, embeddings=True, num_layers=2)
    expected = {n for n, _ in model.named_parameters() if n.startswith(FROZEN_PREFIXES)}
    assert set(names) == expected and names
    for n, p in model.named_parameters():
        assert p.requires_grad == (n not in expected), n
    assert count_params(model)[1] == total - sum(p.numel() for n, p in model.named_parameters() if n in expected)
    with pytest.raises(ValueError, match="has 6"):
        freeze(model, num_layers=7)


def test_encoder_layers_not_found_is_clear():
    with pytest.raises(ValueError, match="cannot find the layer stack"):
        encoder_layers(torch.nn.Sequential(torch.nn.Linear(2, 2)))


# ------------------------------------------------------------------ one real training run (shared)

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    r = small_recipe()
    r["stages"][0].update(epochs=2, batch_size=8, lr=1e-4, freeze_embeddings=True, freeze_layers=2)
    result = run_recipe(validate_recipe(r), runs_dir=runs)
    return result.artifacts["finetune"], runs


@pytest.mark.slow
def test_output_is_a_standard_hf_model_folder(trained):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    art, _ = trained
    assert art.kind == "torch" and art.file == ""
    assert (art.path / "model.safetensors").is_file()
    model = AutoModelForSequenceClassification.from_pretrained(art.path)
    assert model.config.id2label == {0: "rotten", 1: "fresh"}
    tok = AutoTokenizer.from_pretrained(art.path)
    logits = model(**tok(["a gripping, beautifully acted film"], return_tensors="pt")).logits
    assert logits.shape == (1, 2)


@pytest.mark.slow
def test_meta_and_learning(trained):
    art, _ = trained
    m = art.meta
    assert m["precision"] == "fp32" and m["device"] == "cpu" and m["label_names"] == ["rotten", "fresh"]
    assert m["params"] > 20_000_000 and m["trainable_params"] < m["params"]
    assert m["train_samples"] == 400 and m["validation_samples"] == 128
    assert len(m["val_accuracy_per_epoch"]) == 2 and len(m["epoch_wall_s"]) == 2
    # keep_best: the kept model is the best epoch's
    assert m["val_accuracy"] == max(m["val_accuracy_per_epoch"])
    assert m["kept_epoch"] == m["best_epoch"] == 1 + m["val_accuracy_per_epoch"].index(m["val_accuracy"])
    # majority class on this validation subset is 0.578; 100 steps reach ~0.69
    assert m["val_accuracy"] >= 0.64, m


@pytest.mark.slow
def test_no_checkpoints_left(trained):
    art, runs = trained
    assert not (art.path / SCRATCH).exists()
    assert not [p for p in art.path.rglob("*") if "checkpoint" in p.name]
    assert not list((runs / ".store").glob(".tmp-*"))


@pytest.mark.slow
def test_frozen_weights_unchanged_and_others_trained(trained, minilm_path):
    art, _ = trained
    before = _load_model(minilm_path, ["rotten", "fresh"]).state_dict()
    after = _load_model(art.path).state_dict()
    frozen = [n for n in before if n.startswith(FROZEN_PREFIXES) and "position_ids" not in n]
    assert frozen
    for n in frozen:
        assert torch.equal(before[n], after[n]), f"{n} changed although frozen"
    trained_names = [n for n in before if n.startswith("bert.encoder.layer.5.")]
    assert any(not torch.equal(before[n], after[n]) for n in trained_names)
