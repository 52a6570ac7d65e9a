"""adapt: domain-adaptive pre-training ("don't stop pre-training", Gururangan et al. 2020).

Continued masked-language-model training of the encoder on unlabelled in-domain text — the recipe's
train split without its labels (default), and/or text files and table columns the user names —
before `finetune` puts a task head on it. HF Trainer with DataCollatorForLanguageModeling on
AutoModelForMaskedLM; the loss is computed on the masked positions only (ops/mlm.py).

The MLM head is the checkpoint's own if it has one, else newly initialised (recorded as `mlm_head`);
all-MiniLM-L6-v2 is a sentence-transformers BertModel without one: its decoder is tied to the word
embeddings, the transform layer and the bias are new. Weights of the input that BertForMaskedLM has
no place for (BERT's pooler) are saved beside it unchanged, so a classifier loaded from the output
starts from the same pooler as one loaded from the input.

Output: kind `encoder`, a model folder (MLM weights + tokenizer) that only `finetune` (and `adapt`)
take: it has no task head, so exporting or benchmarking it is a load-time error.
Held-out check: a slice of the text is kept out of training and its MLM loss measured before and
after on the same fixed masks, so the meta shows whether the model learned the domain.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, NonNegativeInt, PositiveInt, model_validator

from ..errors import StageError
from ..schema import Strict
from .base import StageConfig

log = logging.getLogger("edgeft")


class TextSource(Strict):
    """One source of unlabelled text: a split of the recipe's data (its texts, never its labels), or a file."""
    split: Literal["train", "validation", "test"] | None = Field(None, description="texts of this split")
    file: str | None = Field(None, description="a text file (one text per line) or a .csv/.tsv/.jsonl/.json "
                                               "table (with `column`); .gz/.bz2/.xz are read as such")
    column: str | None = Field(None, description="the column of a table `file` that holds the text")

    @model_validator(mode="after")
    def _one(self):
        if (self.split is None) == (self.file is None):
            raise ValueError("give either `split` (train or validation) or `file`")
        if self.split == "test":
            raise ValueError("the test split's texts would be trained on by a model that is then scored on "
                             "them; use train or validation")
        if self.split and self.column:
            raise ValueError("`column` goes with `file`; a split's texts are its text column")
        return self


class AdaptConfig(StageConfig):
    type: Literal["adapt"]
    text: list[TextSource] = Field([TextSource(split="train")], min_length=1,
                                   description="where the unlabelled text comes from; duplicates are read once")
    epochs: float = Field(1.0, gt=0)
    max_steps: PositiveInt | None = Field(None, description="stop after this many optimizer steps (overrides epochs)")
    lr: float = Field(5e-5, gt=0, le=1)
    batch_size: PositiveInt = 32
    eval_batch_size: PositiveInt = 128
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    mlm_probability: float = Field(0.15, gt=0, lt=1, description="share of tokens masked")
    whole_word_mask: bool = Field(False, description="mask every piece of a word together (fast tokenizers); "
                                                     "masked tokens all become [MASK]")
    max_length: PositiveInt | None = Field(None, description="tokens per sequence (default: data.max_length); "
                                                             "longer texts are cut into several, none dropped")
    held_out: NonNegativeInt = Field(256, description="texts kept out of training to measure MLM loss before and "
                                                      "after (at most a tenth of the texts); 0: none")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"

    accepts = ("torch", "encoder")
    version: ClassVar[int] = 1

    def produces(self) -> str:
        return "encoder"

    def files(self, recipe) -> dict[str, str]:
        return {f"text[{i}].file": str(recipe.resolve_path(t.file)) for i, t in enumerate(self.text) if t.file}

    def key_config(self) -> dict:
        """A file enters the key by its content (`files`) and the suffixes that pick its reader, not its path."""
        from ..data.unlabelled import formats

        d = super().key_config()
        d["text"] = [{**t, "file": "".join(formats(Path(t["file"])))} if t.get("file") else t for t in d["text"]]
        return d

    def check(self, recipe, stages) -> list[tuple[str, str]]:
        from ..data.unlabelled import TABLE_SUFFIXES, header, is_table
        from ..errors import DataError

        if recipe.task != "text-classification":
            return [("type", f"adapt is masked-language-model pre-training of a text encoder; this recipe's task "
                             f"is {recipe.task}")]
        problems = []
        for i, t in enumerate(self.text):
            if not t.file:
                continue
            path = recipe.resolve_path(t.file)
            if not path.is_file():
                problems.append((f"text[{i}].file", f"file not found: {path}"))
                continue
            if path.stat().st_size == 0:
                problems.append((f"text[{i}].file", f"file is empty: {path}"))
                continue
            if not is_table(path):
                if t.column:
                    problems.append((f"text[{i}].column", f"{path.name} is read one text per line; `column` is for "
                                                          f"{', '.join(TABLE_SUFFIXES)} files"))
                continue
            try:
                cols = header(path)
            except (OSError, DataError) as e:
                problems.append((f"text[{i}].file", f"cannot read {path}: {e}"))
                continue
            if not t.column:
                problems.append((f"text[{i}].column", f"{path.name} is a table: name the column that holds the text"
                                 + (f" (columns: {', '.join(cols)})" if cols else "")))
            elif cols is not None and t.column not in cols:
                problems.append((f"text[{i}].column", f"column {t.column!r} not in {path.name} "
                                                      f"(columns: {', '.join(cols)})"))
        return problems


def run(cfg: AdaptConfig, inputs: dict, ctx):
    import numpy as np
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer, Trainer, set_seed

    from ..models import resolve_source
    from ..ops.mlm import head_module, head_status, masked_lm_loss, mlm_eval_loss
    from .training import SCRATCH, resolve_precision, training_arguments

    src = inputs.get("input")
    model_dir = str(src.main_path) if src is not None else resolve_source(ctx.recipe.model.source)
    seed, max_length = ctx.recipe.seed, cfg.max_length or ctx.recipe.data.max_length
    tok = AutoTokenizer.from_pretrained(model_dir)
    if tok.mask_token is None:
        raise StageError(f"adapt: the tokenizer of {model_dir} has no mask token; masked-LM training needs one")
    if cfg.whole_word_mask and not tok.is_fast:
        raise StageError("adapt: whole_word_mask needs a fast tokenizer (word boundaries from offsets)")

    texts, text_meta = gather_texts(cfg, ctx)
    if len(texts) < 2:
        raise StageError(f"adapt: {len(texts)} text(s) to train on; give more text (`text:`)")
    order = np.random.default_rng(seed).permutation(len(texts))
    n_held = min(cfg.held_out, len(texts) // 10)
    held = [texts[i] for i in sorted(order[:n_held])]
    train_texts = [texts[i] for i in sorted(order[n_held:])]
    train = encode(tok, train_texts, max_length, cfg.whole_word_mask)
    held_ex = encode(tok, held, max_length, cfg.whole_word_mask)

    set_seed(seed)
    model, info = AutoModelForMaskedLM.from_pretrained(model_dir, output_loading_info=True)
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit and max_length > limit:
        raise StageError(f"adapt: max_length {max_length} is more than the model's {limit} positions")
    prefix = model.base_model_prefix
    status, new_keys = head_status(info["missing_keys"], prefix)
    log.info("adapt: MLM head %s%s", status, f" (newly initialised: {', '.join(new_keys)})" if new_keys else "")
    extra = pooler_and_rest(model_dir, model, prefix)
    head = head_module(model)

    cuda = torch.cuda.is_available()
    precision = resolve_precision(cfg.precision, cuda, cuda and torch.cuda.is_bf16_supported())
    device = torch.device("cuda" if cuda else "cpu")
    eval_collate = collator(tok, cfg, seed=seed)           # the same masks before and after
    bs = cfg.eval_batch_size
    eval_batches = [eval_collate(held_ex[i:i + bs]) for i in range(0, len(held_ex), bs)]
    before, n_masked = mlm_eval_loss(model.to(device), eval_batches, head)

    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    total = cfg.max_steps or max(1, math.ceil(steps_per_epoch * cfg.epochs))
    scratch = ctx.out_dir / SCRATCH
    args = training_arguments(
        output_dir=str(scratch), report_to="none", num_train_epochs=cfg.epochs, max_steps=cfg.max_steps or -1,
        learning_rate=cfg.lr, weight_decay=cfg.weight_decay, warmup_ratio=cfg.warmup_ratio,
        lr_scheduler_type="linear", optim="adamw_torch", per_device_train_batch_size=cfg.batch_size,
        group_by_length=True, remove_unused_columns=False, save_strategy="no", eval_strategy="no",
        logging_strategy="steps", logging_steps=max(1, total // 10), bf16=precision == "bf16",
        fp16=precision == "fp16", use_cpu=not cuda, seed=seed, data_seed=seed, dataloader_num_workers=0,
        disable_tqdm=False,
    )

    class MLMTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = masked_lm_loss(model, inputs, head)
            return (loss, None) if return_outputs else loss

    trainer = MLMTrainer(model=model, args=args, train_dataset=train, data_collator=collator(tok, cfg),
                         processing_class=tok)
    trainer.model_accepts_loss_kwargs = False
    log.info("adapt: %d texts (%d sequences of <= %d tokens), %d held out; %d steps of batch %d, lr %g, on %s (%s)",
             len(train_texts), len(train), max_length, len(held), total, cfg.batch_size, cfg.lr, device, precision)
    t0 = time.perf_counter()
    try:
        out = trainer.train()
        wall = time.perf_counter() - t0
        model = trainer.model
        after, _ = mlm_eval_loss(model, eval_batches, head)
        model = model.to("cpu").eval()
        model.save_pretrained(ctx.out_dir, state_dict={**model.state_dict(), **extra}, safe_serialization=True)
        tok.save_pretrained(ctx.out_dir)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    losses = [round(h["loss"], 4) for h in trainer.state.log_history if "loss" in h]
    meta = {
        "precision": "fp32", "train_precision": precision, "device": str(device),
        "mlm_head": status, "mlm_head_new_keys": new_keys, "carried_over": sorted(extra),
        "texts": {**text_meta, "trained_on": len(train_texts), "held_out": len(held)},
        "sequences": len(train), "tokens": int(sum(len(e["input_ids"]) for e in train)),
        "max_length": max_length, "mlm_probability": cfg.mlm_probability, "whole_word_mask": cfg.whole_word_mask,
        "steps": trainer.state.global_step, "epochs": round(float(trainer.state.epoch or 0), 2),
        "train_loss": round(out.training_loss, 4), "train_loss_log": losses,
        "heldout_mlm_loss_before": _r(before), "heldout_mlm_loss_after": _r(after),
        "heldout_perplexity_before": _r(math.exp(before)) if n_masked else None,
        "heldout_perplexity_after": _r(math.exp(after)) if n_masked else None,
        "heldout_masked_tokens": n_masked, "train_wall_s": round(wall, 1),
    }
    log.info("adapt: held-out MLM loss %.3f -> %.3f (perplexity %s -> %s) over %d masked tokens; %d steps in %.0f s",
             before, after, meta["heldout_perplexity_before"], meta["heldout_perplexity_after"], n_masked,
             meta["steps"], wall)
    return ctx.artifact(kind="encoder", file="", meta=meta)


def _r(x: float):
    return None if x is None or math.isnan(x) else round(x, 4)


def gather_texts(cfg: AdaptConfig, ctx) -> tuple[list[str], dict]:
    """The texts of every source in order, each distinct text once, none of the test split's."""
    from ..data.unlabelled import read_texts

    splits = ctx.splits()
    texts, per_source = [], {}
    for t in cfg.text:
        if t.split:
            name, items = f"split:{t.split}", [str(x) for x in splits.get(t.split).items]
        else:
            name = f"file:{t.file}" + (f"#{t.column}" if t.column else "")
            items = read_texts(ctx.recipe.resolve_path(t.file), t.column)
        per_source[name] = len(items)
        texts += items
    distinct = list(dict.fromkeys(texts))
    test = set(map(str, splits.test.items))
    kept = [x for x in distinct if x not in test]
    if len(kept) < len(distinct):
        log.warning("adapt: left out %d texts that are in the test split", len(distinct) - len(kept))
    return kept, {"per_source": per_source, "duplicates_dropped": len(texts) - len(distinct),
                  "test_texts_dropped": len(distinct) - len(kept)}


def encode(tok, texts: list[str], max_length: int, whole_word: bool) -> list[dict]:
    """Token sequences of at most max_length (special tokens included): a longer text becomes several
    consecutive ones. With `whole_word`, each carries its offsets (word boundaries for the collator)."""
    from ..ops.mlm import windows

    size = max_length - tok.num_special_tokens_to_add(pair=False)
    if size < 1:
        raise StageError(f"adapt: max_length {max_length} leaves no room for text beside the special tokens")
    enc = tok(texts, add_special_tokens=False, return_offsets_mapping=whole_word, verbose=False)
    # the special tokens around one sequence (transformers 5's tokenizers have no
    # build_inputs_with_special_tokens): where a known text sits inside its encoding with them
    bare, full = tok("a", add_special_tokens=False)["input_ids"], tok("a")["input_ids"]
    at = next(i for i in range(len(full) - len(bare) + 1) if full[i:i + len(bare)] == bare)
    prefix, suffix = full[:at], full[at + len(bare):]
    out = []
    for j, ids in enumerate(enc["input_ids"]):
        offsets = enc["offset_mapping"][j] if whole_word else None
        for k, piece in enumerate(windows(ids, size)):
            full = prefix + list(piece) + suffix
            special = tok.get_special_tokens_mask(full, already_has_special_tokens=True)
            ex = {"input_ids": full, "special_tokens_mask": special}
            if whole_word:
                rest = iter(offsets[k * size:(k + 1) * size])
                ex["offset_mapping"] = [(0, 0) if s else tuple(next(rest)) for s in special]
            out.append(ex)
    return out


def collator(tok, cfg: AdaptConfig, seed: int | None = None):
    """DataCollatorForLanguageModeling (masks drawn from `seed`'s own generator, else torch's global one).
    Whole-word masking: offsets padded to the batch's length first (the collator pads only token ids)."""
    from transformers import DataCollatorForLanguageModeling

    # with whole words HF replaces every masked token by [MASK]; said here, as its own warning fails to format
    kw = dict(mask_replace_prob=1.0, random_replace_prob=0.0) if cfg.whole_word_mask else {}
    base = DataCollatorForLanguageModeling(tok, mlm_probability=cfg.mlm_probability,
                                           whole_word_mask=cfg.whole_word_mask, seed=seed, **kw)
    if not cfg.whole_word_mask:
        return base

    def collate(features):
        n = max(len(f["input_ids"]) for f in features)
        return base([{**f, "offset_mapping": f["offset_mapping"] + [(0, 0)] * (n - len(f["offset_mapping"]))}
                     for f in features])
    return collate


def pooler_and_rest(model_dir: str, mlm_model, prefix: str) -> dict:
    """Weights of the input's base model that the MLM model lacks and the checkpoint really has (BERT's
    pooler), under the MLM model's key names: saved with it, so `finetune` starts from them."""
    from transformers import AutoModel

    from ..ops.mlm import carried_over

    base, info = AutoModel.from_pretrained(model_dir, output_loading_info=True)
    missing = set(info["missing_keys"])
    state = {k: v.detach().clone() for k, v in base.state_dict().items() if k not in missing}
    extra = carried_over(state, mlm_model.state_dict().keys(), prefix)
    if extra:
        log.info("adapt: kept the input's %s unchanged (the MLM model has no place for them)", ", ".join(sorted(extra)))
    return extra
