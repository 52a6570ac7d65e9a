"""NVIDIA GPUs: what this machine has (GPU model, compute capability, CUDA, TensorRT, ONNX Runtime's CUDA
provider), why a GPU path cannot run here, and whether a TensorRT engine built elsewhere can load here.

Everything here imports its library lazily and works on a machine without a GPU (it then says so): the
recipe checks, cache keys and reasons below are unit-tested on CPU-only machines.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache

ORT_CUDA_PROVIDER = "CUDAExecutionProvider"
GPU_EXTRA = "pip install 'edgeft[gpu]' on a machine with an NVIDIA GPU (README 'NVIDIA GPUs')"


@lru_cache(maxsize=1)
def gpu_info() -> dict | None:
    """The first CUDA device as torch sees it: {gpu, compute_capability "9.0", memory_mb, multiprocessors,
    cuda (runtime torch was built with), torch, driver (where NVML answers)}; None without a usable GPU."""
    if cuda_unavailable_reason() is not None:
        return None
    import torch

    p = torch.cuda.get_device_properties(0)
    info = {"gpu": p.name, "compute_capability": f"{p.major}.{p.minor}", "memory_mb": round(p.total_memory / 2**20),
            "multiprocessors": p.multi_processor_count, "cuda": torch.version.cuda, "torch": torch.__version__}
    info["driver"] = _driver_version()
    return info


def _driver_version() -> str | None:
    try:
        import pynvml  # nvidia-ml-py

        pynvml.nvmlInit()
        v = pynvml.nvmlSystemGetDriverVersion()
        return v.decode() if isinstance(v, bytes) else str(v)
    except Exception:                      # noqa: BLE001 (no NVML: the driver is simply not recorded)
        return None


def cuda_unavailable_reason() -> str | None:
    """Why PyTorch cannot run on a CUDA GPU here (None: it can)."""
    if importlib.util.find_spec("torch") is None:
        return "PyTorch is not installed"
    import torch

    if torch.version.cuda is None:
        return (f"this PyTorch ({torch.__version__}) is a CPU-only build; a CUDA target needs a CUDA build of "
                f"PyTorch and an NVIDIA GPU")
    if not torch.cuda.is_available():
        return f"no CUDA GPU is visible to PyTorch {torch.__version__} (CUDA {torch.version.cuda})"
    return None


def ort_cuda_unavailable_reason() -> str | None:
    """Why ONNX Runtime cannot use the CUDA execution provider here (None: it can)."""
    import onnxruntime as ort

    if ORT_CUDA_PROVIDER not in ort.get_available_providers():
        return (f"ONNX Runtime {ort.__version__} has no {ORT_CUDA_PROVIDER} (providers: "
                f"{', '.join(ort.get_available_providers())}); ONNX artifacts on a CUDA target need onnxruntime-gpu "
                f"in place of onnxruntime: {GPU_EXTRA}")
    return cuda_unavailable_reason()


def tensorrt_version() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return None
    import tensorrt as trt

    return trt.__version__


def tensorrt_unavailable_reason() -> str | None:
    """Why TensorRT engines cannot be built or run here (None: they can)."""
    if tensorrt_version() is None:
        return f"TensorRT is not installed: {GPU_EXTRA}"
    return cuda_unavailable_reason()


ENGINE_KEYS = ("gpu", "compute_capability", "tensorrt", "cuda")


def engine_fingerprint() -> dict:
    """What a TensorRT engine is specific to: the GPU model, its compute capability, the TensorRT and the
    CUDA versions. Part of a tensorrt export's cache key (an engine from another GPU or version is
    rebuilt) and of the engine's meta (checked before an engine is deserialized)."""
    info = gpu_info()
    if info is None:
        return {"unavailable": tensorrt_unavailable_reason() or cuda_unavailable_reason()}
    return {"gpu": info["gpu"], "compute_capability": info["compute_capability"], "tensorrt": tensorrt_version(),
            "cuda": info["cuda"]}


def engine_mismatch(built: dict | None, here: dict) -> str | None:
    """Why an engine built on `built` (its meta's engine_device) cannot be loaded on `here` (this machine's
    engine_fingerprint()); None when it can. TensorRT engines are specific to the GPU model and the
    TensorRT version they were built with; deserializing one elsewhere fails or crashes."""
    if not built:
        return "the engine's meta has no engine_device: it was not built by edgeft's tensorrt export"
    if "unavailable" in here:
        return f"this machine cannot run TensorRT engines: {here['unavailable']}"
    diffs = [f"{k} {built.get(k)!r} (built) vs {here.get(k)!r} (here)" for k in ENGINE_KEYS
             if str(built.get(k)) != str(here.get(k))]
    if not diffs:
        return None
    return ("the engine was built for " + describe(built) + ", this machine has " + describe(here) + ": "
            + "; ".join(diffs) + ". TensorRT engines run only on the GPU model and TensorRT version they were "
            "built with: run the export stage again on this machine (its cache key includes these, so it rebuilds)")


def describe(fp: dict) -> str:
    if "unavailable" in fp:
        return f"no usable GPU ({fp['unavailable']})"
    return (f"{fp.get('gpu')} (compute capability {fp.get('compute_capability')}, TensorRT {fp.get('tensorrt')}, "
            f"CUDA {fp.get('cuda')})")
