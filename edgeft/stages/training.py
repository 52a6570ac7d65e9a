"""What every training stage shares (finetune, distill, qat, and prune's recovery steps): the training
settings, loading the input model, and the HF Trainer loop with validation every epoch.

AdamW, linear warm-up then decay, dynamic padding, optional keep-best (by accuracy, macro-F1 or loss),
early stopping, bf16/fp16 autocast on CUDA, fp32 on CPU; LoRA / IA3 adapters (finetune's `peft`),
merged into the weights before the model is saved. Train time and peak memory go into the meta.
"""

from __future__ import annotations

import logging
import shutil
import time
from typing import Literal

from pydantic import Field, PositiveInt

from ..errors import StageError
from ..schema import Strict, differs_from_default
from .base import StageConfig

log = logging.getLogger("edgeft")
SCRATCH = ".checkpoints"   # Trainer's checkpoints (keep-best) live here, inside out_dir, and are deleted
Metric = Literal["accuracy", "f1", "loss"]


class EarlyStoppingConfig(Strict):
    """Stop when the validation metric has not improved for `patience` evaluations (one per epoch)."""
    patience: PositiveInt = Field(description="evaluations (epochs) without improvement before training stops")
    metric: Metric | None = Field(None, description="accuracy, f1 (macro) or loss; default: the stage's "
                                                    "metric_for_best")
    min_delta: float = Field(0.0, ge=0, description="an improvement smaller than this does not count "
                                                    "(accuracy and f1 as fractions: 0.005 = half a point)")


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
    keep_best: bool = Field(True, description="keep the epoch with the best validation `metric_for_best`")
    metric_for_best: Metric = Field("accuracy", description="validation metric that picks the kept epoch: "
                                    "accuracy, f1 (macro-F1: for imbalanced classes) or loss")
    early_stopping: EarlyStoppingConfig | None = None
    augment: list[Literal["flip", "crop"]] = Field(
        [], description="image tasks: random horizontal flip / random crop (zero padding of size/8) of training images")

    accepts = ("torch",)

    def produces(self) -> str:
        return "torch"

    def key_config(self) -> dict:
        d = super().key_config()
        # keys added later, at their defaults, stay out: recipes without them keep their cache keys
        for k, default in (("augment", []), ("metric_for_best", "accuracy"), ("early_stopping", None),
                           ("peft", None)):
            if k in d and d[k] == default:
                d.pop(k)
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


def training_arguments(**kw):
    """`transformers.TrainingArguments(**kw)` for both 4.x and 5.x: 5.x dropped `logging_dir` and
    `save_safetensors` (safetensors is always used), folded `warmup_ratio` into `warmup_steps` (a float
    below 1 is a ratio) and replaced `group_by_length` by `train_sampling_strategy`."""
    import dataclasses

    from transformers import TrainingArguments

    fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    if "warmup_ratio" in kw and "warmup_ratio" not in fields:
        kw["warmup_steps"] = kw.pop("warmup_ratio")
    if "group_by_length" in kw and "group_by_length" not in fields:
        kw["train_sampling_strategy"] = "group_by_length" if kw.pop("group_by_length") else "random"
    for k in ("logging_dir", "save_safetensors"):
        if k not in fields:
            kw.pop(k, None)
    return TrainingArguments(**kw)


def train_classifier(model, processor, cfg: TrainConfig, ctx, trainer_cls=None, trainer_kwargs=None,
                     save: bool = True) -> dict:
    """Train `model` on the train split with validation every epoch (HF Trainer, or `trainer_cls`),
    keep the best epoch by `metric_for_best`, stop early if asked, merge adapters (`peft`), save model
    and processor to ctx.out_dir (unless `save` is false: the caller exports the trained model itself).
    Returns the training meta."""
    import torch
    from transformers import Trainer

    from ..ops.training import PeakMemory, count_params

    recipe, task, what = ctx.recipe, ctx.task, ctx.stage_type
    cuda = torch.cuda.is_available()
    precision = resolve_precision(cfg.precision, cuda, cuda and torch.cuda.is_bf16_supported())
    splits = ctx.splits()
    peft_cfg = getattr(cfg, "peft", None)
    adapters = None
    if peft_cfg is not None:
        model, adapters = _add_adapters(model, peft_cfg, recipe.seed, what)
    n_params, n_trainable = count_params(model)
    max_length = recipe.data.max_length
    train = task.training_examples(processor, splits.train, recipe.data, augment=getattr(cfg, "augment", ()))
    val = task.training_examples(processor, splits.validation, recipe.data)
    metric = cfg.metric_for_best
    higher = metric != "loss"

    scratch = ctx.out_dir / SCRATCH
    args = training_arguments(
        output_dir=str(scratch), logging_dir=str(scratch / "logs"), report_to="none",
        num_train_epochs=cfg.epochs, learning_rate=cfg.lr, weight_decay=cfg.weight_decay,
        warmup_ratio=cfg.warmup_ratio, lr_scheduler_type="linear", optim="adamw_torch",
        max_grad_norm=cfg.max_grad_norm,
        per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=cfg.eval_batch_size,
        group_by_length=cfg.group_by_length and task.GROUP_BY_LENGTH,
        eval_strategy="epoch", logging_strategy="epoch",
        save_strategy="epoch" if cfg.keep_best else "no", save_only_model=True, save_total_limit=1,
        save_safetensors=True, load_best_model_at_end=cfg.keep_best,
        metric_for_best_model=metric, greater_is_better=higher,
        bf16=precision == "bf16", fp16=precision == "fp16", use_cpu=not cuda,
        seed=recipe.seed, data_seed=recipe.seed,
        dataloader_num_workers=0, disable_tqdm=False,
    )
    timer = _epoch_timer()
    stopper = _early_stopper(cfg.early_stopping, metric) if cfg.early_stopping else None
    trainer = (trainer_cls or Trainer)(
        model=model, args=args, train_dataset=train, eval_dataset=val, processing_class=processor,
        data_collator=task.collator(processor),
        compute_metrics=lambda p: task.metrics(p.predictions, p.label_ids),
        callbacks=[timer] + ([stopper] if stopper else []), **(trainer_kwargs or {}),
    )
    device = str(args.device)
    log.info("%s: %d train / %d validation examples, %s epochs, batch %d, lr %g, on %s (%s, %d threads); "
             "%d of %d parameters train%s", what, len(train), len(val), cfg.epochs, cfg.batch_size, cfg.lr,
             device, precision, torch.get_num_threads(), n_trainable, n_params,
             f" ({adapters['method']} adapters on {adapters['adapted_modules']} modules)" if adapters else "")
    try:
        t0 = time.perf_counter()
        with PeakMemory(cuda=cuda) as mem:
            out = trainer.train()
        train_wall_s = time.perf_counter() - t0
        history = trainer.state.log_history
        evals = [h for h in history if "eval_accuracy" in h]
        losses = [round(h["loss"], 4) for h in history if "loss" in h and "eval_loss" not in h]
        if not evals:
            raise StageError(f"{what}: no validation pass ran (is the train split empty?)")
        accs = [h["eval_accuracy"] for h in evals]
        scores = [h[f"eval_{metric}"] for h in evals]
        pick = max if higher else min
        best = pick(range(len(scores)), key=lambda i: scores[i])     # first epoch with the top score
        kept = best if cfg.keep_best else len(scores) - 1
        model = trainer.model.to("cpu").eval()
        if adapters is not None:
            model, merge = _merge_adapters(model, peft_cfg, task, processor, val, trainer.data_collator,
                                           ctx.out_dir, what)
            adapters.update(merge)
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
        "train_wall_s": round(train_wall_s, 1),
        "train_peak_rss_mb": mem.peak_rss_mb,
        "train_start_rss_mb": mem.start_rss_mb,
        **({"train_peak_cuda_mb": mem.peak_cuda_mb} if cuda else {}),
    }
    if metric != "accuracy":
        meta.update({"metric_for_best": metric, f"val_{metric}": round(scores[kept], 4),
                     f"val_{metric}_per_epoch": [round(x, 4) for x in scores]})
    if stopper is not None:
        early = stopper.stopped and evals[-1]["epoch"] < cfg.epochs - 1e-6     # stopped before the planned end
        meta["early_stopping"] = {"stopped_after_epoch": _epoch(evals[-1]["epoch"]) if early else None,
                                  "planned_epochs": cfg.epochs, "metric": stopper.metric,
                                  "patience": cfg.early_stopping.patience}
    if adapters is not None:
        meta["peft"] = adapters
    log.info("%s: validation %s per epoch %s; kept epoch %s (%.4f); %.0f s, peak RSS %s MB%s",
             what, metric, [round(x, 4) for x in scores], meta["kept_epoch"], scores[kept], train_wall_s,
             mem.peak_rss_mb, " (stopped early)" if meta.get("early_stopping", {}).get("stopped_after_epoch") else "")
    return meta


def _add_adapters(model, peft_cfg, seed: int, what: str):
    from ..ops.adapters import add_adapters

    try:
        return add_adapters(model, peft_cfg.method, r=peft_cfg.r, alpha=peft_cfg.alpha, dropout=peft_cfg.dropout,
                            target_modules=peft_cfg.target_modules, seed=seed)
    except ValueError as e:
        raise StageError(f"{what}: peft: {e}") from None


MERGE_ATOL = 1e-4     # |Δlogit| allowed between the adapter model and its merged form (float summation order)


def _merge_adapters(model, peft_cfg, task, processor, val: list, collator, out_dir, what: str):
    """Fold the adapters into the weights, check on validation examples that the merged model gives the
    adapter model's logits, and save the bare adapter too if asked. Returns (merged model, facts)."""
    import torch

    from ..ops.adapters import merge_adapters, merge_max_diff

    batch = collator([{k: v for k, v in ex.items() if k != "labels"} for ex in val[:32]])
    batch = {k: v for k, v in batch.items() if k != "labels"}
    with torch.inference_mode():
        before = model(**batch).logits.float().numpy()
    if peft_cfg.save_adapter:
        model.save_pretrained(out_dir / "adapter", safe_serialization=True)   # adapter_model.safetensors + config
    merged = merge_adapters(model).eval()
    with torch.inference_mode():
        after = merged(**batch).logits.float().numpy()
    diff = merge_max_diff(before, after)
    scale = float(abs(before).max()) or 1.0
    if diff > MERGE_ATOL + 1e-4 * scale:
        raise StageError(f"{what}: merging the {peft_cfg.method} adapters changed the logits by {diff:.3g} on "
                         f"{len(before)} validation examples (allowed {MERGE_ATOL} + 1e-4 x {scale:.3g})")
    log.info("%s: %s adapters merged into the weights (max |Δlogit| %.2g on %d validation examples)",
             what, peft_cfg.method, diff, len(before))
    return merged, {"merge_max_abs_diff": diff, "merge_check_samples": len(before),
                    **({"adapter_dir": "adapter"} if peft_cfg.save_adapter else {})}


def train_steps(model, processor, examples: list[dict], steps: int, lr: float, batch_size: int, seed: int,
                scratch_parent, collator=None) -> None:
    """A short fine-tune of `steps` optimizer steps (no validation, nothing saved): recovery
    between pruning steps. `collator` default: dynamic padding (text)."""
    import torch
    from transformers import DataCollatorWithPadding, Trainer

    scratch = scratch_parent / SCRATCH
    args = training_arguments(
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


def _early_stopper(es, metric_for_best: str):
    """A Trainer callback that stops training after `es.patience` evaluations without an improvement of
    at least `es.min_delta` in `es.metric` (default: the stage's metric_for_best)."""
    from transformers import TrainerCallback

    class EarlyStopper(TrainerCallback):
        def __init__(self):
            self.metric = es.metric or metric_for_best
            self.best: float | None = None
            self.waited = 0
            self.stopped = False

        def on_evaluate(self, args, state, control, metrics=None, **kw):
            value = (metrics or {}).get(f"eval_{self.metric}")
            if value is None:
                return
            better = self.best is None or (
                (self.best - value) if self.metric == "loss" else (value - self.best)) > es.min_delta
            if better:
                self.best, self.waited = value, 0
                return
            self.waited += 1
            if self.waited >= es.patience:
                self.stopped = True
                control.should_training_stop = True
                log.info("early stopping: validation %s has not improved by more than %g for %d evaluation(s) "
                         "(best %.4f)", self.metric, es.min_delta, es.patience, self.best)

    return EarlyStopper()


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
