"""finetune with LoRA / IA3 adapters (merged before saving), metric_for_best, early stopping, and what
training cost (trainable parameters, time, peak memory): real MiniLM weights, real Rotten Tomatoes data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgeft.errors import RecipeError
from edgeft.ops.adapters import adapter_targets, add_adapters, merge_adapters
from edgeft.ops.training import PeakMemory, count_params
from edgeft.recipe import validate_recipe
from edgeft.report import training_section
from edgeft.rows import training_rows
from edgeft.runner import run_recipe
from edgeft.stages.finetune import FinetuneConfig
from tests.conftest import small_recipe


def _recipe_with(**stage) -> dict:
    r = small_recipe()
    r["stages"][0].update(stage)
    return r


def _problems(raw) -> list[tuple[str, str]]:
    with pytest.raises(RecipeError) as e:
        validate_recipe(raw)
    return e.value.problems


# ------------------------------------------------------------------ load time

@pytest.mark.parametrize("method,says", [
    ("prefix_tuning", "prefix_tuning is refused: it adds trained key/value prefixes"),
    ("prompt_tuning", "prompt_tuning is refused: it prepends trained virtual token"),
    ("loha", "'loha' is not one of lora, ia3"),
])
def test_methods_that_cannot_merge_are_refused_at_load_time(method, says):
    problems = _problems(_recipe_with(peft={"method": method}))
    assert any(path == "stages[0].peft.method" and says in why for path, why in problems), problems


def test_lora_keys_on_ia3_and_conflicting_settings_are_load_time_errors():
    problems = _problems(_recipe_with(peft={"method": "ia3", "r": 16}))
    assert any(p == "stages[0].peft" and "r: lora settings" in w for p, w in problems), problems
    problems = _problems(_recipe_with(peft={"method": "lora"}, freeze_layers=2))
    assert ("stages[0].peft", "with adapters only the adapters and the head train; leave out freeze_layers") \
        in problems
    problems = _problems(_recipe_with(early_stopping={"patience": 0}))
    assert any(p == "stages[0].early_stopping.patience" for p, _ in problems), problems
    problems = _problems(_recipe_with(metric_for_best="precision"))
    assert any(p == "stages[0].metric_for_best" for p, _ in problems), problems


def test_peft_on_an_image_recipe_is_refused():
    from edgeft.stages.finetune import FinetuneConfig

    cfg = FinetuneConfig(name="ft", type="finetune", peft={"method": "lora"})

    class Image:
        task = "image-classification"

    assert ("peft", "adapters are for transformer models (text-classification); this recipe's task is "
                    "image-classification: fine-tune fully or freeze layers") in cfg.check(Image(), [])


def test_new_keys_at_their_defaults_leave_cache_keys_as_they_were():
    plain = FinetuneConfig(name="ft", type="finetune", epochs=2).key_config()
    assert not {"peft", "early_stopping", "metric_for_best"} & set(plain)
    lora = FinetuneConfig(name="ft", type="finetune", epochs=2, peft={"method": "lora"}).key_config()
    assert lora["peft"]["r"] == 8 and lora != plain
    f1 = FinetuneConfig(name="ft", type="finetune", epochs=2, metric_for_best="f1").key_config()
    assert f1["metric_for_best"] == "f1"


# ------------------------------------------------------------------ adapters on the real model, no training

def test_auto_targets_per_architecture():
    assert adapter_targets("lora", "bert", "auto") == (["query", "key", "value", "dense"], [])
    assert adapter_targets("lora", "some-new-arch", "auto") == ("all-linear", [])
    assert adapter_targets("ia3", "distilbert", "auto") == (["k_lin", "v_lin", "lin2"], ["lin2"])
    assert adapter_targets("lora", "bert", ["query"]) == (["query"], [])
    with pytest.raises(ValueError, match="ia3 has no automatic target modules for model type 'gpt-x'"):
        adapter_targets("ia3", "gpt-x", "auto")


@pytest.mark.parametrize("method", ["lora", "ia3"])
def test_only_adapters_and_head_train_and_merging_keeps_the_trained_function(minilm_path, method):
    from edgeft.tasks import text_classification as tc

    base = tc.load_model(minilm_path, ["rotten", "fresh"])
    base_state = {k: v.clone() for k, v in base.state_dict().items()}
    model, facts = add_adapters(base, method, r=8, alpha=16, dropout=0.0)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(("lora_" in n or "ia3_" in n or "classifier" in n) for n in trainable), trainable
    # lora: 6 Linears per layer x 6 layers + the pooler; ia3: key, value and both `output.dense` per layer
    assert facts["adapted_modules"] == (37 if method == "lora" else 24)
    total, n_train = count_params(model)
    assert n_train < 0.02 * total
    # stand in for training: move every adapter weight away from its identity initialisation
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n or "ia3_" in n:
                p.add_(torch.randn_like(p) * 0.05)
    tok = tc.load_processor(minilm_path)
    batch = dict(tok(["a gripping film", "dull and far too long, with nothing to say"], padding=True,
                     return_tensors="pt"))
    model.eval()
    with torch.no_grad():
        adapted = model(**batch).logits
    merged = merge_adapters(model).eval()
    with torch.no_grad():
        after = merged(**batch).logits
    assert torch.allclose(adapted, after, atol=1e-4), (adapted - after).abs().max()
    assert type(merged).__name__ == "BertForSequenceClassification"
    assert not [n for n in merged.state_dict() if "lora" in n or "ia3" in n or "base_layer" in n]
    # the merge changed the encoder's own weights (it is not the base model any more)
    changed = [k for k, v in merged.state_dict().items()
               if k in base_state and "classifier" not in k and not torch.equal(v, base_state[k])]
    assert changed


# ------------------------------------------------------------------ small pieces

def test_early_stopper_counts_evaluations_without_improvement():
    from transformers import TrainerControl

    from edgeft.stages.training import EarlyStoppingConfig, _early_stopper

    def run(values, metric, patience, min_delta=0.0):
        stopper = _early_stopper(EarlyStoppingConfig(patience=patience, min_delta=min_delta), metric)
        for i, v in enumerate(values):
            control = TrainerControl()
            stopper.on_evaluate(None, None, control, metrics={f"eval_{metric}": v})
            if control.should_training_stop:
                return i
        return None

    assert run([0.70, 0.72, 0.71, 0.71], "accuracy", patience=2) == 3
    assert run([0.70, 0.72, 0.71, 0.73], "accuracy", patience=2) is None
    assert run([0.70, 0.704, 0.703], "accuracy", patience=2, min_delta=0.005) == 2    # +0.4 points: no gain
    assert run([0.70, 0.704, 0.708], "accuracy", patience=2, min_delta=0.005) is None   # +0.8 over the best
    assert run([0.60, 0.55, 0.56], "loss", patience=1) == 2          # loss: lower is better
    assert run([0.60, 0.55, 0.50], "loss", patience=1) is None


def test_peak_memory_sees_a_short_allocation():
    with PeakMemory() as m:
        x = np.ones(40_000_000)       # 305 MB, freed before the block ends
        del x
    assert m.peak_rss_mb >= m.start_rss_mb + 250, (m.how, m.start_rss_mb, m.peak_rss_mb)


def test_training_rows_and_their_table():
    from types import SimpleNamespace

    full = SimpleNamespace(stage="finetune", stage_type="finetune", meta={
        "params": 22_700_000, "trainable_params": 22_700_000, "train_wall_s": 95.3, "train_peak_rss_mb": 1510.0,
        "device": "cpu", "val_accuracy": 0.8, "kept_epoch": 2, "method": "full"})
    lora = SimpleNamespace(stage="lora", stage_type="finetune", meta={
        "params": 23_000_000, "trainable_params": 340_000, "train_wall_s": 70.0, "train_peak_rss_mb": 1200.0,
        "device": "cpu", "val_accuracy": 0.79, "kept_epoch": 1, "method": "lora r8",
        "early_stopping": {"stopped_after_epoch": 2}})
    rows = training_rows([full, lora])
    assert rows[1]["trainable_share"] == round(340_000 / 23_000_000, 4)
    assert rows[1]["stopped_early_after_epoch"] == 2
    md = "\n".join(training_section(rows))
    assert "| lora | finetune | lora r8 | 340.00k | 1.48% | 1.2 min | 1200 | cpu | 79.00 | 1 (stopped after 2) |" in md
    assert "| finetune | finetune | full | 22.70M | 100.00% | 1.6 min | 1510 |" in md


# ------------------------------------------------------------------ a real LoRA fine-tune (shared)

@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    r = _recipe_with(epochs=3, batch_size=16, lr=1e-3, metric_for_best="f1",
                     # min_delta larger than any change: the second evaluation stops training, deterministically
                     early_stopping={"patience": 1, "metric": "loss", "min_delta": 10.0},
                     peft={"method": "lora", "r": 8, "alpha": 16, "save_adapter": True})
    result = run_recipe(validate_recipe(r), runs_dir=runs)
    return result.artifacts["finetune"]


@pytest.mark.slow
def test_lora_finetune_stores_a_plain_merged_model_and_its_adapter(lora_run):
    from safetensors import safe_open
    from transformers import AutoModelForSequenceClassification

    m = lora_run.meta
    assert m["method"] == "lora r8" and m["peft"]["method"] == "lora"
    assert m["trainable_params"] < 0.02 * m["params"]
    assert m["peft"]["merge_max_abs_diff"] < 1e-4 and m["peft"]["merge_check_samples"] == 32
    with safe_open(str(lora_run.path / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and not [k for k in keys if "lora" in k or "base_layer" in k]
    assert (lora_run.path / "adapter" / "adapter_config.json").is_file()
    assert (lora_run.path / "adapter" / "adapter_model.safetensors").is_file()
    model = AutoModelForSequenceClassification.from_pretrained(lora_run.path)
    assert model.config.id2label == {0: "rotten", 1: "fresh"}


@pytest.mark.slow
def test_early_stopping_metric_for_best_and_training_costs_in_meta(lora_run):
    m = lora_run.meta
    # 3 epochs planned; the loss cannot improve by 10, so training stops after the second evaluation
    assert m["early_stopping"] == {"stopped_after_epoch": 2, "planned_epochs": 3.0, "metric": "loss", "patience": 1}
    assert len(m["val_accuracy_per_epoch"]) == 2
    assert m["metric_for_best"] == "f1" and len(m["val_f1_per_epoch"]) == 2
    assert m["val_f1"] == max(m["val_f1_per_epoch"])
    assert m["kept_epoch"] == 1 + m["val_f1_per_epoch"].index(m["val_f1"])
    assert m["train_wall_s"] > 0 and m["train_peak_rss_mb"] > m["train_start_rss_mb"] > 0


def test_input_at_model_is_the_recipes_model_for_any_stage():
    from edgeft.runner import _input_refs

    r = small_recipe()
    r["stages"] = [{"name": "finetune", "type": "finetune"},
                   {"name": "lora", "type": "finetune", "input": "@model", "peft": {"method": "lora"}},
                   {"name": "after", "type": "finetune"}]
    recipe = validate_recipe(r)
    assert _input_refs(recipe.stages, 1)["input"] is None          # the recipe's model, not @finetune
    assert _input_refs(recipe.stages, 2)["input"] == "lora"
    r["stages"].append({"name": "model", "type": "finetune"})
    assert any(p == "stages[3].name" and "'model' is reserved" in w for p, w in _problems(r))
