"""Text classification: sequence -> class logits (a Hugging Face AutoModelForSequenceClassification).

Everything a stage or runtime needs to know about the task lives here: data, model loading,
tokenizing, input names and dynamic axes, the metric and the FP32 parity tolerance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

NAME = "text-classification"
OUTPUT_NAMES = ["logits"]
FP32_TOLERANCE = 1e-4          # FP32 export against its source: |Δlogit| <= FP32_TOLERANCE + FP32_RTOL x the
FP32_RTOL = 1e-4               # sample's logit scale (max |logit|); summation order differs by CPU and runtime
QDQ_TOLERANCE = 0.25          # qat: max |Δlogit| of the QDQ export vs the QAT torch model (one rounding step apart)
INPUT_AXES = {0: "batch", 1: "sequence"}
GROUP_BY_LENGTH = True         # finetune may batch similar lengths together
HIDDEN_STATE_KD = True         # distill may match hidden states layer by layer
TRANSFORMER = True             # NNCF model type
STATIC_OP_TYPES = ("MatMul", "Gemm", "Gather")   # static INT8 (ONNX Runtime QDQ): weights and embeddings
EXECUTORCH_INT8_MODULES = ("Linear",)   # not the attention-score matmuls/softmax: -8 points of agreement, slower


# ----------------------------------------------------------------------------- data

def check_data(recipe) -> list[tuple[str, str]]:
    from ..data.text import check_text_data
    from ..models import check_source

    problems = check_text_data(recipe.data, recipe.base_dir)
    reason = check_source(recipe.model.source, NAME)
    if reason:
        problems.append(("model.source", reason))
    else:
        problems += check_max_length(recipe)
    return problems


def check_max_length(recipe) -> list[tuple[str, str]]:
    """data.max_length above the model's position limit (read from its config.json, no torch): an error
    at load time, not an index error in the middle of training. Unknown limit (a hub id not cached
    here): no check."""
    from ..models import position_limit

    found = position_limit(recipe.model.source, recipe.base_dir)
    if found is None or recipe.data.max_length <= found[0]:
        return []
    limit, config = found
    return [("data.max_length", f"{recipe.data.max_length} is above the model's limit of {limit} tokens "
                                f"(max_position_embeddings in {config}); use {limit} or less")]


def load_splits(recipe):
    """The recipe's splits; `info["truncated"]` counts the examples per split that max_length cuts,
    with the tokenizer of the recipe's model (left out if it cannot be loaded here)."""
    import logging

    from ..data.text import count_truncated, load_text_splits

    splits = load_text_splits(recipe.data, recipe.seed, recipe.base_dir)
    tokenizer = _source_tokenizer(recipe)
    if tokenizer is not None:
        cut = splits.info["truncated"] = count_truncated(tokenizer, splits, recipe.data.max_length)
        if any(cut[n] for n in ("train", "validation", "test")):
            logging.getLogger("edgeft").info("data: max_length %d truncates train %d, validation %d, test %d "
                                             "example(s)", cut["max_length"], cut["train"], cut["validation"],
                                             cut["test"])
    return splits


def _source_tokenizer(recipe):
    import logging

    from ..errors import EdgeftError
    from ..models import resolve_source

    try:
        source = resolve_source(recipe.model.source)
        local = recipe.resolve_path(source)
        return load_processor(local if local.exists() else source)
    except (EdgeftError, OSError, ValueError) as e:
        logging.getLogger("edgeft").info("data: truncation not counted (no tokenizer for %s: %s)",
                                         recipe.model.source, e)
        return None


# ----------------------------------------------------------------------------- model

def load_processor(model_dir: str | Path, data=None):
    """The tokenizer saved with the model (`data` is for tasks whose preprocessing the recipe sets)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir))


def load_model(model_dir: str | Path, label_names: list[str] | None = None, data=None):
    """A torch classifier. With `label_names`, a (possibly new) head of that many classes."""
    from transformers import AutoModelForSequenceClassification

    kwargs = {}
    if label_names is not None:
        kwargs = dict(num_labels=len(label_names), id2label=dict(enumerate(label_names)),
                      label2id={n: i for i, n in enumerate(label_names)},
                      ignore_mismatched_sizes=True)
    from ..ops.pruning import load_pruned

    model = (load_pruned(AutoModelForSequenceClassification, model_dir, **kwargs)     # transformers 5
             or AutoModelForSequenceClassification.from_pretrained(str(model_dir), **kwargs))
    model.eval()
    return model


def encode(processor, items: list[str], max_length: int, pad_to_max: bool = False) -> dict[str, np.ndarray]:
    """Token ids as int64 numpy arrays. Without pad_to_max, padded to the longest item only."""
    enc = processor(list(items), truncation=True, max_length=max_length,
                    padding="max_length" if pad_to_max else "longest", return_tensors="np")
    return {k: np.asarray(v, dtype=np.int64) for k, v in enc.items()}


def input_names(processor) -> list[str]:
    return list(processor.model_input_names)


def torch_forward(model, batch: dict[str, np.ndarray]) -> np.ndarray:
    import torch

    with torch.inference_mode():
        out = model(**{k: torch.from_numpy(v) for k, v in batch.items()})
    return out.logits.float().numpy()


# ----------------------------------------------------------------------------- training

def training_examples(processor, split, data, augment=()):
    """One dict per example (unpadded token ids + label): `collator` pads per batch."""
    keep = list(processor.model_input_names)
    enc = processor(list(split.items), truncation=True, max_length=data.max_length)
    return [{**{k: enc[k][i] for k in keep if k in enc}, "labels": int(split.labels[i])}
            for i in range(len(split))]


def collator(processor):
    from transformers import DataCollatorWithPadding

    return DataCollatorWithPadding(processor)


def processor_key(processor, model_dir) -> str:
    """Artifacts whose processors share this key get the same encoded inputs: each artifact's own
    tokenizer (a tokenizer is cheap to run; comparing vocabularies is not worth it)."""
    return str(model_dir)


def example_lengths(processor, items, max_length: int) -> np.ndarray:
    """Tokens per example after truncation."""
    return np.array([len(x) for x in processor(list(items), truncation=True, max_length=max_length)["input_ids"]])


def fixed_shape(data) -> list[int]:
    return [1, data.max_length]


def dummy_inputs(names: list[str], batch: int, max_length: int, model_dir=None, seed: int = 0) -> dict:
    """Token inputs of a fixed shape without a tokenizer (memory probes, MAC counts)."""
    import json

    from ..targets.base import synthetic_inputs

    vocab = 30522
    cfg = Path(model_dir) / "config.json" if model_dir is not None else None
    if cfg is not None and cfg.is_file():
        vocab = int(json.loads(cfg.read_text()).get("vocab_size", vocab))
    return synthetic_inputs(names, batch, max_length, vocab, seed)


# ----------------------------------------------------------------------------- metric

def metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    pred = np.asarray(logits).argmax(-1)
    return {"accuracy": float(accuracy_score(labels, pred)),
            "f1": float(f1_score(labels, pred, average="macro"))}
