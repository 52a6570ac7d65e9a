"""tensorrt: TensorRT engines (export format tensorrt) on the NVIDIA GPU they were built for.

Before an engine is deserialized, the GPU model, compute capability, TensorRT and CUDA versions it was
built with (its meta's engine_device) are compared with this machine's: a mismatch is a clear error
naming both, never a crash inside TensorRT. A request outside the engine's optimization profile is an
error too. Rows carry `gpu_latency_ms` (the engine's execution between CUDA events) beside the
end-to-end latency (inputs to the GPU, logits back).
"""

from __future__ import annotations

import numpy as np

from .base import Session

NAME = "tensorrt"


class EngineMismatchError(RuntimeError):
    """A TensorRT engine built for another GPU or TensorRT/CUDA version than this machine's."""


class TensorRTSession(Session):
    target = NAME

    def __init__(self, artifact):
        from ..ops.tensorrt_engine import EngineRunner

        self.artifact = artifact
        self.runner = EngineRunner(artifact.main_path.read_bytes(), artifact.meta["profile"])
        self.input_names = list(self.runner.inputs)

    def run_feed(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        return self.runner.run(feed)

    def last_gpu_ms(self) -> float:
        return self.runner.last_gpu_ms()

    def gpu_peak_mb(self) -> float:
        import torch

        # torch's allocations (the I/O buffers); TensorRT's own device memory is not counted
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)

    def footprint(self) -> dict:
        m = self.artifact.meta
        return {"engine_device": m.get("engine_device"), "profile": m.get("profile"),
                "tensorrt": (m.get("build") or {}).get("tensorrt")}


def check_engine(artifact, here: dict | None = None) -> None:
    """Raise EngineMismatchError unless `artifact`'s engine can load on this machine (`here`: its
    engine_fingerprint(), computed when None)."""
    from ..ops.gpu import engine_fingerprint, engine_mismatch

    why = engine_mismatch(artifact.meta.get("engine_device"), here if here is not None else engine_fingerprint())
    if why:
        raise EngineMismatchError(f"{artifact.stage} ({artifact.main_path}): {why}")


def unavailable_reason() -> str | None:
    from ..ops.gpu import tensorrt_unavailable_reason

    return tensorrt_unavailable_reason()


def preload() -> None:
    import tensorrt  # noqa: F401
    import torch

    torch.cuda.init()


def load(artifact, threads: int, task=None) -> TensorRTSession:
    if artifact.kind != "tensorrt":
        raise ValueError(f"target {NAME} runs tensorrt engines (export format tensorrt), not {artifact.kind!r}")
    check_engine(artifact)
    return TensorRTSession(artifact)


def fingerprint(threads: int) -> dict:
    from ..ops.gpu import engine_fingerprint, gpu_info

    return {"target": NAME, "runtime": f"tensorrt {engine_fingerprint().get('tensorrt')}",
            "provider": "TensorRT engine (one optimization profile)", "threads": threads, "gpu": gpu_info() or {}}
