"""cuda: an NVIDIA GPU. Torch artifacts run in PyTorch eager on CUDA, ONNX artifacts in ONNX Runtime with
the CUDA execution provider (onnxruntime-gpu, the `gpu` extra).

Precisions (one target each, the row's precision column): `cuda` FP32 (TF32 off: FP32 means FP32),
`cuda-fp16` (torch: weights and compute in float16; ONNX: the graph converted to FP16 on load, inputs
and outputs kept in their types), `cuda-bf16` (torch only: ONNX Runtime's CUDA provider has no bf16
conversion). Every call copies the numpy inputs to the GPU and the logits back: the row's latency is
what an application sees; torch rows also carry the GPU time of the forward alone between CUDA
events (`gpu_latency_ms`). On a machine without a CUDA GPU the recipe fails when it loads, naming
the target. One module serves the three names (`VARIANTS`; targets/__init__.py asks `variant(name)`).
"""

from __future__ import annotations

import inspect

import numpy as np

from .base import Session

NAME = "cuda"
TORCH_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
VARIANTS = {"cuda": "fp32", "cuda-fp16": "fp16", "cuda-bf16": "bf16"}    # target name -> precision


class CudaTorchSession(Session):
    def __init__(self, model, precision: str, target: str):
        import torch

        self.torch, self.target, self.precision = torch, target, precision
        dtype = getattr(torch, TORCH_DTYPES[precision])
        self.model = model.to(device="cuda", dtype=dtype).eval()
        params = inspect.signature(model.forward).parameters
        self.input_names = [n for n in ("input_ids", "attention_mask", "token_type_ids", "pixel_values")
                            if n in params]
        self.dtype = dtype
        self.start, self.end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def run_feed(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            x = {k: torch.from_numpy(v).to("cuda", non_blocking=True) for k, v in feed.items()}
            if "pixel_values" in x:
                x["pixel_values"] = x["pixel_values"].to(self.dtype)
            self.start.record()
            out = self.model(**x)
            self.end.record()
            logits = out.logits if hasattr(out, "logits") else out[0]
            return logits.float().cpu().numpy()

    def last_gpu_ms(self) -> float:
        self.end.synchronize()
        return float(self.start.elapsed_time(self.end))

    def gpu_peak_mb(self) -> float:
        return round(self.torch.cuda.max_memory_allocated() / 2**20, 1)

    def close(self) -> None:
        del self.model
        self.torch.cuda.empty_cache()


class CudaOrtSession(Session):
    def __init__(self, session, target: str):
        self.session, self.target = session, target
        self.input_names = [i.name for i in session.get_inputs()]
        outputs = [o.name for o in session.get_outputs()]
        self._outputs = ["logits" if "logits" in outputs else outputs[0]]

    def run_feed(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self.session.run(self._outputs, feed)[0], dtype=np.float32)


def unavailable_reason() -> str | None:
    from ..ops.gpu import cuda_unavailable_reason

    return cuda_unavailable_reason()


def kind_unavailable_reason(kind: str, precision: str = "fp32") -> str | None:
    """Why this target cannot run artifacts of `kind` here (None: it can)."""
    if kind == "onnx":
        if precision == "bf16":
            return "ONNX artifacts have no bf16 path on ONNX Runtime's CUDA provider; use cuda or cuda-fp16"
        from ..ops.gpu import ort_cuda_unavailable_reason

        return ort_cuda_unavailable_reason()
    return None


def preload() -> None:
    import torch

    torch.cuda.init()


def load(artifact, threads: int, task, precision: str = "fp32", target: str = NAME) -> Session:
    import torch

    if artifact.kind == "torch":
        torch.backends.cuda.matmul.allow_tf32 = False   # FP32 rows are FP32 (TF32 is PyTorch's opt-in)
        torch.backends.cudnn.allow_tf32 = False
        return CudaTorchSession(task.load_model(artifact.path), precision, target)
    if artifact.kind == "onnx":
        if artifact.meta.get("precision", "fp32") != "fp32" and precision != "fp32":
            raise ValueError(f"target {target} converts FP32 ONNX to {precision}; {artifact.stage} is "
                             f"{artifact.meta.get('precision')} already: use the cuda target")
        return CudaOrtSession(ort_cuda_session(artifact.main_path, threads, precision), target)
    raise ValueError(f"target {target} runs torch and onnx artifacts, not {artifact.kind!r}")


def ort_cuda_session(path, threads: int, precision: str = "fp32"):
    """An ONNX Runtime session on the CUDA provider (FP16: the graph converted first, in a temporary folder).
    Refuses to fall back to the CPU silently: a session without the CUDA provider is an error."""
    import tempfile

    import onnxruntime as ort

    from ..ops.gpu import ORT_CUDA_PROVIDER, ort_cuda_unavailable_reason
    from .ort_cpu import session_options

    why = ort_cuda_unavailable_reason()
    if why:
        raise RuntimeError(why)
    opts = session_options(threads)
    providers = [(ORT_CUDA_PROVIDER, {"device_id": 0}), "CPUExecutionProvider"]
    if precision == "fp16":
        from ..ops.tensorrt_engine import to_fp16_onnx

        with tempfile.TemporaryDirectory() as tmp:
            half = to_fp16_onnx(path, f"{tmp}/model.onnx")
            sess = ort.InferenceSession(str(half), opts, providers=providers)
    else:
        sess = ort.InferenceSession(str(path), opts, providers=providers)
    if sess.get_providers()[0] != ORT_CUDA_PROVIDER:
        raise RuntimeError(f"ONNX Runtime did not put {path} on the GPU (providers {sess.get_providers()})")
    return sess


def fingerprint(threads: int, precision: str = "fp32", target: str = NAME) -> dict:
    from ..ops.gpu import gpu_info

    info = gpu_info() or {}
    return {"target": target, "runtime": f"torch {info.get('torch')} / onnxruntime CUDA provider",
            "provider": f"CUDA {info.get('cuda')}, {precision}" + (", TF32 off" if precision == "fp32" else ""),
            "threads": threads, "gpu": info}


class Variant:
    """One precision of this target with a target module's interface (targets/__init__.py `target_module`
    returns `variant(name)` for the names in VARIANTS)."""

    def __init__(self, name: str):
        self.NAME, self.PRECISION = name, VARIANTS[name]

    @staticmethod
    def unavailable_reason() -> str | None:
        return unavailable_reason()

    def kind_unavailable_reason(self, kind: str) -> str | None:
        return kind_unavailable_reason(kind, self.PRECISION)

    @staticmethod
    def preload() -> None:
        preload()

    def load(self, artifact, threads: int, task=None) -> Session:
        return load(artifact, threads, task, precision=self.PRECISION, target=self.NAME)

    def fingerprint(self, threads: int) -> dict:
        return fingerprint(threads, precision=self.PRECISION, target=self.NAME)


def variant(name: str) -> Variant:
    return Variant(name)
