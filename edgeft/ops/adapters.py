"""Parameter-efficient fine-tuning with the `peft` library: wrap a classifier in LoRA or IA3 adapters,
and merge them back into its weights so every later stage (prune, distill, export, INT8) sees a
standard model and inference pays nothing for them.

Plain functions over modules and numbers (no config objects): `adapter_targets`, `add_adapters`,
`merge_adapters`, `merge_max_diff`.
"""

from __future__ import annotations

import re

# Methods that change weights and so merge into them. Prefix and prompt tuning add virtual tokens to
# every forward pass instead: nothing to merge, and the exported graph would have to carry them.
MERGEABLE = ("lora", "ia3")
NOT_MERGEABLE = {
    "prefix_tuning": "adds trained key/value prefixes to every attention layer at run time",
    "prompt_tuning": "prepends trained virtual token embeddings to every input at run time",
    "p_tuning": "prepends virtual token embeddings made by a prompt encoder at run time",
    "adaption_prompt": "adds gated prompt tokens to the attention layers at run time",
}

# The projections `target_modules: auto` picks per architecture (peft matches a name or a dotted suffix).
# BERT family: every Linear of the encoder — query/key/value, attention output, FFN in and out (all
# named `dense` besides the three) and the pooler; IA3: peft's own choice (keys, values, FFN output).
AUTO_TARGETS = {
    "lora": {
        **{t: ["query", "key", "value", "dense"] for t in ("bert", "roberta", "xlm-roberta", "electra", "camembert")},
        "mpnet": ["q", "k", "v", "o", "dense"],
        "distilbert": ["q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"],
    },
    "ia3": {
        **{t: (["key", "value", "output.dense"], ["output.dense"])
           for t in ("bert", "roberta", "xlm-roberta", "electra", "camembert")},
        "distilbert": (["k_lin", "v_lin", "lin2"], ["lin2"]),
    },
}


def adapter_targets(method: str, model_type: str, target_modules) -> tuple[list[str] | str, list[str]]:
    """(target_modules, feedforward_modules) for `method` on a model of `model_type` (config.model_type).
    `target_modules` "auto" picks from AUTO_TARGETS; for an architecture not listed there, LoRA takes
    peft's "all-linear" (every Linear but the classifier head) and IA3 is refused (ValueError)."""
    if target_modules != "auto":
        return list(target_modules), []
    table = AUTO_TARGETS[method]
    if model_type in table:
        t = table[model_type]
        return (list(t[0]), list(t[1])) if method == "ia3" else (list(t), [])
    if method == "lora":
        return "all-linear", []
    raise ValueError(f"ia3 has no automatic target modules for model type {model_type!r} (known: "
                     f"{', '.join(sorted(table))}); name them with peft.target_modules")


def add_adapters(model, method: str, r: int = 8, alpha: float = 16, dropout: float = 0.1,
                 target_modules="auto", seed: int = 0):
    """The classifier wrapped in new adapters (a peft PeftModel); only the adapters and the
    classification head train. Returns (peft model, facts: method, targets, adapted module count)."""
    import torch
    from peft import IA3Config, LoraConfig, TaskType, get_peft_model

    if method not in MERGEABLE:
        raise ValueError(f"{method}: not a mergeable adapter method (use one of {', '.join(MERGEABLE)})")
    model_type = getattr(model.config, "model_type", "")
    targets, feedforward = adapter_targets(method, model_type, target_modules)
    torch.manual_seed(seed)                         # adapter initialisation
    if method == "lora":
        config = LoraConfig(task_type=TaskType.SEQ_CLS, r=r, lora_alpha=alpha, lora_dropout=dropout,
                            target_modules=targets, bias="none")
    else:
        config = IA3Config(task_type=TaskType.SEQ_CLS, target_modules=targets, feedforward_modules=feedforward)
    try:
        wrapped = get_peft_model(model, config)
    except ValueError as e:            # peft: "Target modules ... not found in the base model"
        raise ValueError(f"{method} target modules {targets}: {e}") from None
    adapted = {re.split(r"\.(?:lora_|ia3_)", n)[0] for n, _ in wrapped.named_parameters()
               if ".lora_" in n or ".ia3_" in n}
    return wrapped, {"method": method, "target_modules": targets, "adapted_modules": len(adapted),
                     "model_type": model_type}


def merge_adapters(peft_model):
    """The plain model with the adapters folded into its weights (and the trained head kept)."""
    return peft_model.merge_and_unload()


def merge_max_diff(unmerged_logits, merged_logits) -> float:
    """Max |Δlogit| between the adapter model and its merged form on the same inputs."""
    import numpy as np

    return float(np.max(np.abs(np.asarray(unmerged_logits, dtype=np.float64) - np.asarray(merged_logits))))
