"""Peer: PyTorch eager FP32, the fine-tuned model as transformers loads it (the teacher)."""

from __future__ import annotations

import logging
from pathlib import Path

from . import Built

log = logging.getLogger("edgeft.peers")


def pytorch_fp32(*, model_dir: Path, threads: int, task, **_) -> Built:
    import torch

    from edgeft.targets.pytorch import TorchSession

    torch.set_num_threads(threads)
    model = task.load_model(model_dir)            # AutoModelForSequenceClassification.from_pretrained, eval()
    sess = TorchSession(model, threads)
    log.info("  pytorch-fp32: %s, torch %s, %d threads, kernels %s", type(model).__name__, torch.__version__,
             torch.get_num_threads(), torch.backends.cpu.get_cpu_capability())
    return Built("pytorch-fp32", "PyTorch eager FP32", "fp32", "torch", Path(model_dir), sess,
                 how="AutoModelForSequenceClassification.from_pretrained(model).eval(), torch.inference_mode(), "
                     f"torch.set_num_threads({threads})",
                 details={"torch": torch.__version__, "kernel_isa": torch.backends.cpu.get_cpu_capability()})
