"""Structured pruning on the shipped MiniLM with real Rotten Tomatoes sentences.

Op level: pruning nothing is an identity; a pruned model equals the original with the same heads
masked (head_mask) and the same FFN neurons zeroed; dropped layers keep the kept layers' weights;
a pruned model round-trips through save_pretrained/from_pretrained. Stage level: prune → export
(parity gate) → distill in one small recipe run; the unstructured-sparsity warning.
"""

from __future__ import annotations

import copy
import logging

import pytest
import torch

from edgeft.errors import RecipeError
from edgeft.ops import pruning
from edgeft.recipe import validate_recipe
from edgeft.runner import run_recipe
from tests.conftest import small_recipe

SENTENCES = ["a gripping, beautifully acted film .", "tedious and far too long , with no payoff .",
             "the best thing about it is the soundtrack", "i laughed , i cried , i wanted more ."]


@pytest.fixture(scope="module")
def base(minilm_path):
    from edgeft.tasks import text_classification as task

    torch.manual_seed(0)
    model = task.load_model(minilm_path, ["neg", "pos"])
    tok = task.load_processor(minilm_path)
    batch = tok(SENTENCES, padding=True, return_tensors="pt")
    return model, batch


def _logits(model, batch, **kw):
    with torch.no_grad():
        return model(**batch, **kw).logits


def _scores(model, batch):
    return pruning.importance(model, [{**batch, "labels": torch.tensor([1, 0, 1, 1])}])


def test_importance_scores_every_remaining_head_and_neuron(base):
    model, batch = base
    imp = _scores(model, batch)
    assert imp.examples == 4
    assert [len(s) for s in imp.heads] == [12] * 6 and [len(s) for s in imp.ffn] == [1536] * 6
    assert all(bool((s >= 0).all()) and float(s.sum()) > 0 for s in imp.heads + imp.ffn)
    assert all(p.grad is None for p in model.parameters())          # no gradients left behind


def test_pruning_nothing_is_an_identity(base):
    model, batch = base
    m = copy.deepcopy(model)
    imp = _scores(m, batch)
    pruning.prune_heads(m, pruning.heads_to_remove(imp.heads, 0))
    pruning.prune_ffn(m, imp.ffn, 1536)
    assert torch.equal(_logits(m, batch), _logits(model, batch))
    assert pruning.head_counts(m) == [12] * 6 and not getattr(m.config, "pruned_heads", None)


def test_pruned_model_equals_original_with_the_same_parts_masked(base):
    model, batch = base
    m = copy.deepcopy(model)
    imp = _scores(m, batch)
    remove = pruning.heads_to_remove(imp.heads, 30, min_per_layer=2)
    assert sum(map(len, remove)) == 30 and all(12 - len(r) >= 2 for r in remove)
    pruning.prune_heads(m, remove)
    keep_ffn = [torch.topk(s, 1000).indices for s in imp.ffn]
    pruning.prune_ffn(m, imp.ffn, 1000)
    assert pruning.ffn_sizes(m) == [1000] * 6 and m.config.intermediate_size == 1000
    assert sum(pruning.head_counts(m)) == 72 - 30

    masked = copy.deepcopy(model)
    for layer, keep, positions in zip(pruning._check_layout(masked), keep_ffn, remove):
        dead = torch.ones(1536, dtype=torch.bool)
        dead[keep] = False
        size = layer.attention.self.attention_head_size
        with torch.no_grad():                    # GELU(0) = 0: a zeroed row is a removed neuron
            layer.intermediate.dense.weight[dead] = 0
            layer.intermediate.dense.bias[dead] = 0
            for h in positions:                  # a head masked as head_mask does (transformers 5 has none):
                layer.attention.output.dense.weight[:, h * size:(h + 1) * size] = 0   # its output unread
    expected = _logits(masked, batch)
    got = _logits(m, batch)
    assert torch.allclose(got, expected, atol=1e-5), (got - expected).abs().max()
    assert not torch.allclose(got, _logits(model, batch), atol=1e-3)   # and pruning did change something


def test_dropping_layers_keeps_the_named_layers_weights(base):
    model, batch = base
    m = copy.deepcopy(model)
    pruning.drop_layers(m, [1, 3, 5])
    assert m.config.num_hidden_layers == 3 and len(pruning._check_layout(m)) == 3
    for new, old in enumerate([1, 3, 5]):
        a = pruning._check_layout(m)[new].state_dict()
        b = pruning._check_layout(model)[old].state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    _logits(m, batch)                            # and it still runs
    with pytest.raises(ValueError, match="distinct indices"):
        pruning.drop_layers(m, [0, 7])


def test_global_ranking_spends_the_budget_on_the_least_important_heads():
    scores = [torch.tensor([1.0, 1.0, 1.0, 1.0]), torch.tensor([10.0, 0.1, 0.2, 10.0])]
    # per-layer L2 normalisation: layer 1's small heads are the least important overall
    assert pruning.heads_to_remove(scores, 2) == [[], [1, 2]]
    assert pruning.heads_to_remove(scores, 7, min_per_layer=1) == [[0, 1, 2], [1, 2, 0]]


def test_pruned_model_round_trips_through_save_and_load(base, tmp_path):
    from edgeft.tasks import text_classification as task

    model, batch = base
    m = copy.deepcopy(model)
    pruning.drop_layers(m, [0, 2, 3, 5])
    imp = _scores(m, batch)
    pruning.prune_heads(m, pruning.heads_to_remove(imp.heads, 17))
    pruning.prune_heads(m, pruning.heads_to_remove(_scores(m, batch).heads, 5))   # a second round
    pruning.prune_ffn(m, imp.ffn, 512)
    m.save_pretrained(tmp_path)
    loaded = task.load_model(tmp_path)
    assert pruning.head_counts(loaded) == pruning.head_counts(m) and sum(pruning.head_counts(m)) == 48 - 22
    assert torch.allclose(_logits(loaded, batch), _logits(m, batch), atol=1e-6)


def test_unstructured_sparsity_zeroes_weights_but_keeps_shapes(base):
    m = copy.deepcopy(base[0])
    n = sum(p.numel() for p in m.parameters())
    got = pruning.magnitude_sparsity(m, 0.5)
    assert abs(got - 0.5) < 0.01 and sum(p.numel() for p in m.parameters()) == n


# ----------------------------------------------------------------------------- stages

PIPELINE = [
    {"name": "finetune", "type": "finetune", "epochs": 1, "batch_size": 16},
    {"name": "prune", "type": "prune", "keep_every": 2, "heads": 0.25, "ffn": 0.5, "importance_samples": 64,
     "steps": 2, "recovery_steps": 2, "batch_size": 16},
    {"name": "onnx", "type": "export", "parity": {"samples": 32}},
    {"name": "distill", "type": "distill", "input": "@prune", "teacher": "@finetune", "epochs": 1,
     "batch_size": 16},
]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("prune")
    return run_recipe(validate_recipe(small_recipe(stages=PIPELINE)), runs_dir=root / "runs")


@pytest.mark.slow
def test_prune_stage_removes_real_work_and_records_it(pipeline):
    from edgeft.tasks import text_classification as task

    art = pipeline.artifacts["prune"]
    m = art.meta
    assert m["layers_kept"] == [1, 3, 5] and m["layer_origin"] == [1, 3, 5]
    assert m["layer_origin_of"] == pipeline.artifacts["finetune"].key
    assert sum(m["heads_per_layer"]) == 36 - 9 and m["ffn_width"] == 768
    assert [s["step"] for s in m["steps"]] == [1, 2] and sum(m["steps"][0]["heads"]) == 36 - 4
    assert m["params"] < 0.75 * m["params_before"]
    model = task.load_model(art.main_path)       # a standard HF folder
    assert model.config.num_hidden_layers == 3 and model.config.intermediate_size == 768
    # the recorded accuracy is the pruned model's own on the validation split, recomputed here from its logits
    # (task.load_model is from_pretrained on transformers 4; transformers 5 ignores config.pruned_heads)
    from transformers import AutoTokenizer

    recipe = validate_recipe(small_recipe(stages=PIPELINE))
    val = task.load_splits(recipe).validation
    tok, pruned = AutoTokenizer.from_pretrained(str(art.path)), model
    with torch.inference_mode():
        pred = pruned(**tok(list(val.items), truncation=True, max_length=recipe.data.max_length, padding=True,
                            return_tensors="pt")).logits.argmax(-1).numpy()
    assert len(val) == 128 and m["val_accuracy_after_pruning"] == round(float((pred == val.labels).mean()), 4)


@pytest.mark.slow
def test_pruned_model_passes_the_onnx_parity_gate(pipeline):
    from edgeft.tasks import text_classification as task

    m = pipeline.artifacts["onnx"].meta
    assert m["parity"]["tolerance_used"] <= 1.0 and m["parity"]["agreement"] == 1.0
    assert m["parity"]["max_rel_diff"] < 1e-3 and m["parity"]["atol"] == task.FP32_TOLERANCE


@pytest.mark.slow
def test_distill_trains_the_student_against_the_teacher(pipeline):
    from edgeft.tasks import text_classification as task

    art = pipeline.artifacts["distill"]
    m = art.meta
    assert m["teacher"] == pipeline.artifacts["finetune"].key
    assert m["layer_map"] == [1, 3, 5] and m["layer_map_from"] == "pruned-from"
    assert m["layer_origin"] == [1, 3, 5]        # a distilled student keeps its lineage
    assert len(m["val_accuracy_per_epoch"]) == 1 and m["steps"] == 25
    student = task.load_model(art.main_path)
    assert student.config.num_hidden_layers == 3
    before = task.load_model(pipeline.artifacts["prune"].main_path)
    changed = [k for k, v in student.state_dict().items() if not torch.equal(v, before.state_dict()[k])]
    assert changed                               # it trained


def test_unstructured_sparsity_warns_when_no_target_gets_faster(caplog):
    stages = [{"name": "prune", "type": "prune", "unstructured": 0.5},
              {"name": "onnx", "type": "export"},
              {"name": "bench", "type": "benchmark", "artifacts": ["@onnx"], "targets": ["cpu"]}]
    with caplog.at_level(logging.WARNING, logger="edgeft"):
        validate_recipe(small_recipe(stages=stages), check_data=False)
    assert "stages[0].unstructured" in caplog.text and "makes none of this recipe's targets faster" in caplog.text
    assert "cpu" in caplog.text
    with pytest.raises(RecipeError) as e:
        validate_recipe(small_recipe(stages=stages, strict=True), check_data=False)
    assert any(p == "stages[0].unstructured" and "strict: true" in r for p, r in e.value.problems)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="edgeft"):     # structured pruning: no warning
        validate_recipe(small_recipe(stages=[{"name": "prune", "type": "prune", "heads": 0.5}]), check_data=False)
    assert "unstructured" not in caplog.text


@pytest.mark.parametrize("stage, path, reason", [
    ({"name": "p", "type": "prune"}, "stages[0]", "prunes nothing"),
    ({"name": "p", "type": "prune", "drop_layers": [6]}, "stages[0].drop_layers", "has 6 layers"),
    ({"name": "p", "type": "prune", "drop_layers": [0, 1, 2, 3, 4, 5]}, "stages[0].drop_layers", "all 6"),
    ({"name": "p", "type": "prune", "drop_layers": [1], "keep_every": 2}, "stages[0].keep_every", "not both"),
    ({"name": "p", "type": "prune", "heads": 1.0}, "stages[0].heads", "less than 1"),
    ({"name": "p", "type": "prune", "heads": 0.5, "recovery_steps": 10}, "stages[0].recovery_steps", "steps > 1"),
    ({"name": "d", "type": "distill", "teacher": "@nope"}, "stages[0].teacher", "does not name a stage"),
])
def test_bad_prune_and_distill_configs_fail_at_load_time(stage, path, reason):
    with pytest.raises(RecipeError) as e:
        validate_recipe(small_recipe(stages=[stage]), check_data=False)
    assert any(p == path and reason in r for p, r in e.value.problems), e.value.problems


def test_distill_refuses_the_teacher_as_its_own_student():
    stages = [{"name": "ft", "type": "finetune"}, {"name": "d", "type": "distill", "teacher": "@ft"}]
    with pytest.raises(RecipeError) as e:
        validate_recipe(small_recipe(stages=stages), check_data=False)
    assert any(p == "stages[1].teacher" and "also the student" in r for p, r in e.value.problems)
