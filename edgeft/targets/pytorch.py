"""pytorch: eager PyTorch FP32 on the CPU, the reference every other row is compared with."""

from __future__ import annotations

import inspect

import numpy as np

from .base import Session

NAME = "pytorch"


class TorchSession(Session):
    target = NAME

    def __init__(self, model, threads: int):
        import torch

        self.torch = torch
        self.model = model
        self.threads = threads
        params = inspect.signature(model.forward).parameters
        known = ("input_ids", "attention_mask", "token_type_ids", "pixel_values")
        self.input_names = [n for n in known if n in params]

    def run_feed(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            out = self.model(**{k: torch.from_numpy(v) for k, v in feed.items()})
        logits = out.logits if hasattr(out, "logits") else out[0]
        return logits.float().numpy()


def preload() -> None:
    import torch  # noqa: F401
    import transformers  # noqa: F401
    from transformers import AutoModelForSequenceClassification  # noqa: F401


def load(artifact, threads: int, task) -> TorchSession:
    import torch

    if artifact.kind != "torch":
        raise ValueError(f"target {NAME} runs torch artifacts, not {artifact.kind!r}")
    torch.set_num_threads(threads)
    return TorchSession(task.load_model(artifact.path), threads)


def fingerprint(threads: int) -> dict:
    import torch

    return {"target": NAME, "runtime": f"torch {torch.__version__}", "provider": "eager fp32",
            "threads": threads, "interop_threads": torch.get_num_interop_threads(),
            "kernel_isa": torch.backends.cpu.get_cpu_capability()}
