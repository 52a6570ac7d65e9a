"""What every training stage shares (finetune, distill, qat, and prune's recovery steps): the training
settings, loading the input model, and the HF Trainer loop with validation every epoch.

AdamW, linear warm-up then decay, dynamic padding, optional keep-best, bf16/fp16 autocast on CUDA,
fp32 on CPU.
"""

from __future__ import annotations

import logging
import shutil
import time
from typing import Literal

from pydantic import Field, PositiveInt

from ..errors import StageError
from ..schema import differs_from_default
from .base import StageConfig

log = logging.getLogger("edgeft")
SCRATCH = ".checkpoints"   # Trainer's checkpoints (keep-best) live here, inside out_dir, and are deleted


class TrainConfig(StageConfig):
    """Training settings shared by finetune and distill."""
    epochs: float = Field(2.0, gt=0)
    lr: float = Field(5e-5, gt=0, le=1)
    batch_size: PositiveInt = 32
    eval_batch_size: PositiveInt = 128
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    max_grad_norm: float = Field(1.0, gt=0)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 (or fp16) autocast on CUDA, fp32 on CPU")
    group_by_length: bool = Field(True, description="batch similar lengths together: less padding, faster")
    keep_best: bool = Field(True, description="keep the epoch with the best validation accuracy")
    augment: list[Literal["flip", "crop"]] = Field(
        [], description="image tasks: random horizontal flip / random crop (zero padding of size/8) of training images")

    accepts = ("torch",)

    def produces(self) -> str:
        return "torch"

    def key_config(self) -> dict:
        d = super().key_config()
        if not d.get("augment"):
            d.pop("augment", None)      # recipes without it keep their cache keys
        return d

    def check(self, recipe, stages) -> list[tuple[str, str]]:
        return task_knob_problems(self, recipe)


TEXT_ONLY_KEYS = ("group_by_length", "freeze_embeddings", "freeze_layers")
IMAGE_ONLY_KEYS = ("augment",)


def task_knob_problems(cfg, recipe) -> list[tuple[str, str]]:
    """Keys of a training stage that the recipe's task does not use: errors, never silently ignored."""
    image = recipe.task == "image-classification"
    keys = TEXT_ONLY_KEYS if image else IMAGE_ONLY_KEYS
    return [(k, f"{'a text' if image else 'an image'}-classification setting; this recipe's task is "
                f"{recipe.task}")
            for k in keys if k in type(cfg).model_fields and differs_from_default(cfg, k)]


def resolve_precision(requested: str, cuda: bool, bf16_ok: bool) -> str:
    """The autocast precision to train in: fp32, bf16 or fp16. Raises StageError if it cannot be had."""
    if requested == "auto":
        return ("bf16" if bf16_ok else "fp16") if cuda else "fp32"
    if requested in ("bf16", "fp16") and not cuda:
        raise StageError(f"finetune: precision {requested} needs a CUDA GPU and none is available; "
                         f"use precision: auto (fp32 on CPU) or fp32")
    if requested == "bf16" and not bf16_ok:
        raise StageError("finetune: precision bf16 is not supported by this GPU; use auto or fp16")
    return requested


def load_input(inputs: dict, ctx):
    """(input artifact or None, processor, classifier) for a stage that trains or changes a torch
    model: the `input` artifact, or the recipe's model with a new head for the data's classes."""
    from transformers import set_seed

    from ..models import resolve_source

    src = inputs.get("input")
    model_dir = str(src.main_path) if src is not None else resolve_source(ctx.recipe.model.source)
    label_names = ctx.splits().label_names
    set_seed(ctx.recipe.seed)             # before a new head is initialised
    data = ctx.recipe.data
    return src, ctx.task.load_processor(model_dir, data), ctx.task.load_model(model_dir, label_names, data)


def lineage(src) -> dict:
    """Layer-origin facts of a pruned input that a trained copy of it keeps (distill's layer map)."""
    if src is None or "layer_origin" not in src.meta:
        return {}
    return {k: src.meta[k] for k in ("layer_origin", "layer_origin_of") if k in src.meta}


def train_classifier(model, processor, cfg: TrainConfig, ctx, trainer_cls=None, trainer_kwargs=None,
                     save: bool = True) -> dict:
    """Train `model` on the train split with validation every epoch (HF Trainer, or `trainer_cls`),
    keep the best epoch, save model and processor to ctx.out_dir (unless `save` is false: the
    caller exports the trained model itself). Returns the training meta."""
    import torch
    from transformers import Trainer, TrainingArguments

    from ..ops.training import count_params

    recipe, task, what = ctx.recipe, ctx.task, ctx.stage_type
    cuda = torch.cuda.is_available()
    precision = resolve_precision(cfg.precision, cuda, cuda and torch.cuda.is_bf16_supported())
    splits = ctx.splits()
    n_params, n_trainable = count_params(model)
    max_length = recipe.data.max_length
    train = task.training_examples(processor, splits.train, recipe.data, augment=getattr(cfg, "augment", ()))
    val = task.training_examples(processor, splits.validation, recipe.data)

    scratch = ctx.out_dir / SCRATCH
    args = TrainingArguments(
        output_dir=str(scratch), logging_dir=str(scratch / "logs"), report_to="none",
        num_train_epochs=cfg.epochs, learning_rate=cfg.lr, weight_decay=cfg.weight_decay,
        warmup_ratio=cfg.warmup_ratio, lr_scheduler_type="linear", optim="adamw_torch",
        max_grad_norm=cfg.max_grad_norm,
        per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=cfg.eval_batch_size,
        group_by_length=cfg.group_by_length and task.GROUP_BY_LENGTH,
        eval_strategy="epoch", logging_strategy="epoch",
        save_strategy="epoch" if cfg.keep_best else "no", save_only_model=True, save_total_limit=1,
        save_safetensors=True, load_best_model_at_end=cfg.keep_best,
        metric_for_best_model="accuracy", greater_is_better=True,
        bf16=precision == "bf16", fp16=precision == "fp16", use_cpu=not cuda,
        seed=recipe.seed, data_seed=recipe.seed,
        dataloader_num_workers=0, disable_tqdm=False,
    )
    timer = _epoch_timer()
    trainer = (trainer_cls or Trainer)(
        model=model, args=args, train_dataset=train, eval_dataset=val, processing_class=processor,
        data_collator=task.collator(processor),
        compute_metrics=lambda p: task.metrics(p.predictions, p.label_ids),
        callbacks=[timer], **(trainer_kwargs or {}),
    )
    device = str(args.device)
    log.info("%s: %d train / %d validation examples, %s epochs, batch %d, lr %g, on %s (%s, %d threads)",
             what, len(train), len(val), cfg.epochs, cfg.batch_size, cfg.lr, device, precision, torch.get_num_threads())
    try:
        out = trainer.train()
        history = trainer.state.log_history
        evals = [h for h in history if "eval_accuracy" in h]
        losses = [round(h["loss"], 4) for h in history if "loss" in h and "eval_loss" not in h]
        if not evals:
            raise StageError(f"{what}: no validation pass ran (is the train split empty?)")
        accs = [h["eval_accuracy"] for h in evals]
        best = max(range(len(accs)), key=lambda i: accs[i])      # first epoch with the top accuracy
        kept = best if cfg.keep_best else len(accs) - 1
        model = trainer.model.to("cpu").eval()
        if save:
            model.save_pretrained(ctx.out_dir, safe_serialization=True)
            processor.save_pretrained(ctx.out_dir)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    meta = {
        "precision": "fp32",                 # saved weights; autocast only changes training math
        "train_precision": precision,
        "device": device,
        "params": n_params,
        "trainable_params": n_trainable,
        "label_names": list(splits.label_names),
        "best_epoch": _epoch(evals[best]["epoch"]),
        "kept_epoch": _epoch(evals[kept]["epoch"]),
        "val_accuracy": round(accs[kept], 4),
        "val_accuracy_per_epoch": [round(a, 4) for a in accs],
        "train_loss": round(out.training_loss, 4),
        "train_loss_per_epoch": losses,
        "train_samples": len(train),
        "validation_samples": len(val),
        **({"max_length": max_length} if task.GROUP_BY_LENGTH else {"image_size": task.image_size(recipe.data)}),
        **({"augment": list(cfg.augment)} if getattr(cfg, "augment", None) else {}),
        "epoch_wall_s": timer.epoch_s,
        "steps": trainer.state.global_step,
    }
    log.info("%s: validation accuracy per epoch %s; kept epoch %s (%.4f)",
             what, meta["val_accuracy_per_epoch"], meta["kept_epoch"], meta["val_accuracy"])
    return meta


def train_steps(model, processor, examples: list[dict], steps: int, lr: float, batch_size: int, seed: int,
                scratch_parent, collator=None) -> None:
    """A short fine-tune of `steps` optimizer steps (no validation, nothing saved): recovery
    between pruning steps. `collator` default: dynamic padding (text)."""
    import torch
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    scratch = scratch_parent / SCRATCH
    args = TrainingArguments(
        output_dir=str(scratch), report_to="none", max_steps=steps, learning_rate=lr,
        warmup_ratio=0.1, lr_scheduler_type="linear", optim="adamw_torch", weight_decay=0.01,
        per_device_train_batch_size=batch_size, save_strategy="no", eval_strategy="no",
        logging_strategy="no", use_cpu=not torch.cuda.is_available(), seed=seed, data_seed=seed,
        dataloader_num_workers=0, disable_tqdm=False,
    )
    try:
        Trainer(model=model, args=args, train_dataset=examples, processing_class=processor,
                data_collator=collator or DataCollatorWithPadding(processor)).train()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    model.to("cpu").eval()


def _epoch(e: float):
    return int(round(e)) if abs(e - round(e)) < 1e-6 else round(e, 2)


def _epoch_timer():
    """A Trainer callback that records each epoch's wall time (training plus its validation pass)."""
    from transformers import TrainerCallback

    class EpochTimer(TrainerCallback):
        def __init__(self):
            self.epoch_s: list[float] = []
            self.t0 = time.perf_counter()

        def on_epoch_begin(self, args, state, control, **kw):
            self.t0 = time.perf_counter()

        def on_evaluate(self, args, state, control, **kw):
            self.epoch_s.append(round(time.perf_counter() - self.t0, 1))

    return EpochTimer()
