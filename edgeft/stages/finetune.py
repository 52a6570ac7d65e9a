"""finetune: fine-tuning of the model on the task's train split, fully, with frozen layers, or with
LoRA / IA3 adapters (`peft`) that are merged into the weights before the model is stored.

The training loop (HF Trainer, validation every epoch, keep-best, early stopping, autocast on CUDA) is
stages/training.py, shared with distill and qat. Output: a standard HF model folder (with the bare
adapter in `adapter/` when `peft.save_adapter` is set).
"""

from __future__ import annotations

import logging
from typing import Literal

from pydantic import Field, NonNegativeInt, PositiveInt, field_validator, model_validator

from ..errors import StageError
from ..schema import Strict, differs_from_default
from .training import TrainConfig, lineage, load_input, train_classifier

log = logging.getLogger("edgeft")


class PeftConfig(Strict):
    """Parameter-efficient fine-tuning with the peft library; the adapters are merged before saving."""
    method: str = Field(description="lora or ia3 (both merge into the weights)")
    r: PositiveInt = Field(8, description="lora: rank of the update matrices")
    alpha: float = Field(16.0, gt=0, description="lora: scale (the update is alpha / r x B A)")
    dropout: float = Field(0.1, ge=0, lt=1, description="lora: dropout on the adapter's input")
    target_modules: Literal["auto"] | list[str] = Field(
        "auto", description="module names (or dotted suffixes) that get adapters; auto: per architecture "
                            "(ops/adapters.py AUTO_TARGETS)")
    save_adapter: bool = Field(False, description="also store the unmerged adapter in <artifact>/adapter/")

    @field_validator("method")
    @classmethod
    def _mergeable(cls, v: str) -> str:
        from ..ops.adapters import MERGEABLE, NOT_MERGEABLE

        if v in MERGEABLE:
            return v
        if v in NOT_MERGEABLE:
            raise ValueError(f"{v} is refused: it {NOT_MERGEABLE[v]}, so there is nothing to merge into the "
                             f"weights and the exported model would not be the one trained; use lora or ia3")
        raise ValueError(f"{v!r} is not one of lora, ia3")

    @model_validator(mode="after")
    def _lora_keys(self):
        if self.method == "ia3":
            bad = [k for k in ("r", "alpha", "dropout") if differs_from_default(self, k)]
            if bad:
                raise ValueError(f"{', '.join(bad)}: lora settings; ia3 learns scaling vectors and has none")
        if self.target_modules != "auto" and not self.target_modules:
            raise ValueError("target_modules: name at least one module, or auto")
        return self


class FinetuneConfig(TrainConfig):
    type: Literal["finetune"]
    freeze_embeddings: bool = False
    freeze_layers: NonNegativeInt = Field(0, description="freeze the first N encoder layers")
    peft: PeftConfig | None = Field(None, description="train LoRA / IA3 adapters instead of the weights")

    accepts = ("torch", "encoder")      # encoder: an `adapt` output, given a new task head

    def produces(self) -> str:
        return "torch"

    def check(self, recipe, stages) -> list[tuple[str, str]]:
        problems = super().check(recipe, stages)
        if self.peft is not None:
            if recipe.task != "text-classification":
                problems.append(("peft", f"adapters are for transformer models (text-classification); this "
                                         f"recipe's task is {recipe.task}: fine-tune fully or freeze layers"))
            both = [k for k in ("freeze_embeddings", "freeze_layers") if differs_from_default(self, k)]
            if both:
                problems.append(("peft", f"with adapters only the adapters and the head train; leave out "
                                         f"{', '.join(both)}"))
        return problems


def run(cfg: FinetuneConfig, inputs: dict, ctx):
    from ..ops.training import count_params, freeze

    src, processor, model = load_input(inputs, ctx)
    try:
        frozen = freeze(model, embeddings=cfg.freeze_embeddings, num_layers=cfg.freeze_layers)
    except ValueError as e:
        raise StageError(f"finetune: freeze_layers={cfg.freeze_layers}: {e}") from None
    if frozen:
        n_params, n_trainable = count_params(model)
        log.info("finetune: froze %d parameter tensors; %d of %d parameters train", len(frozen), n_trainable, n_params)
    meta = train_classifier(model, processor, cfg, ctx)
    meta["method"] = training_method(cfg, meta)
    return ctx.artifact(kind="torch", file="", meta={**meta, **lineage(src)})


def training_method(cfg: FinetuneConfig, meta: dict) -> str:
    """How the model was fine-tuned, in a few words for the report: full, frozen ..., lora r8, ia3."""
    if cfg.peft is not None:
        return f"lora r{cfg.peft.r}" if cfg.peft.method == "lora" else cfg.peft.method
    parts = (["embeddings"] if cfg.freeze_embeddings else []) + (
        [f"{cfg.freeze_layers} layers"] if cfg.freeze_layers else [])
    return f"frozen {' + '.join(parts)}" if parts else "full"
