"""finetune: full fine-tuning of the model on the task's train split (HF Trainer).

AdamW, linear warm-up then decay, dynamic padding, optional freezing, validation every epoch
keeping the best, bf16/fp16 autocast on CUDA, fp32 on CPU. Output: a standard HF model folder.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeInt, PositiveInt

from .base import StageConfig


class FinetuneConfig(StageConfig):
    type: Literal["finetune"]
    epochs: float = Field(2.0, gt=0)
    lr: float = Field(5e-5, gt=0, le=1)
    batch_size: PositiveInt = 32
    eval_batch_size: PositiveInt = 128
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    max_grad_norm: float = Field(1.0, gt=0)
    freeze_embeddings: bool = False
    freeze_layers: NonNegativeInt = Field(0, description="freeze the first N encoder layers")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 (or fp16) autocast on CUDA, fp32 on CPU")
    group_by_length: bool = Field(True, description="batch similar lengths together: less padding, faster")
    keep_best: bool = Field(True, description="keep the epoch with the best validation accuracy")

    accepts = ("torch",)

    def produces(self) -> str:
        return "torch"


def run(cfg: FinetuneConfig, inputs: dict, ctx):
    raise NotImplementedError("finetune.run")
