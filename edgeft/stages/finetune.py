"""finetune: fine-tuning of the model on the task's train split, fully or with frozen layers.

The training loop (HF Trainer, validation every epoch, keep-best, autocast on CUDA) is stages/training.py,
shared with distill and qat. Output: a standard HF model folder.
"""

from __future__ import annotations

import logging
from typing import Literal

from pydantic import Field, NonNegativeInt

from ..errors import StageError
from .training import TrainConfig, lineage, load_input, train_classifier

log = logging.getLogger("edgeft")


class FinetuneConfig(TrainConfig):
    type: Literal["finetune"]
    freeze_embeddings: bool = False
    freeze_layers: NonNegativeInt = Field(0, description="freeze the first N encoder layers")

    accepts = ("torch",)

    def produces(self) -> str:
        return "torch"


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
    return ctx.artifact(kind="torch", file="", meta={**meta, **lineage(src)})
