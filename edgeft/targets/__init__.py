"""Target registry: where artifacts run. Metadata only here; runtimes load in each target module.

Each target module has `load(artifact, threads, task) -> Session` (see targets/base.py) and
`fingerprint(threads) -> dict`; a target that only some machines can run also has
`unavailable_reason() -> str | None` (checked when a recipe loads).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class TargetInfo:
    name: str
    accepts: tuple[str, ...]     # artifact kinds it runs
    module: str                  # edgeft.targets.<module>
    description: str
    sparse_speedup: bool = False  # runs unstructured-sparse weights faster than dense ones
    float_precision: str = "fp32"  # what FP32 artifacts' matmuls run in (the row's precision column)


TARGETS: dict[str, TargetInfo] = {
    "pytorch": TargetInfo("pytorch", ("torch",), "pytorch", "PyTorch eager on CPU (the reference)"),  # dense kernels
    "cpu": TargetInfo("cpu", ("onnx",), "ort_cpu", "ONNX Runtime, CPU execution provider"),  # dense MatMul/Gemm
    # OpenVINO's CPU plugin decompresses sparse INT8 weights only on AMX CPUs: not counted as a speedup
    "openvino": TargetInfo("openvino", ("onnx", "openvino"), "openvino_cpu",
                           "OpenVINO runtime, CPU device (LATENCY hint, f32 inference precision)"),
    # OpenVINO's default on CPUs with AMX / AVX-512 BF16; recipes naming it fail to load elsewhere
    "openvino-bf16": TargetInfo("openvino-bf16", ("onnx", "openvino"), "openvino_bf16",
                                "OpenVINO runtime, CPU device (LATENCY hint, bf16 inference precision: "
                                "OpenVINO's default on CPUs with AMX or AVX-512 BF16)", float_precision="bf16"),
    # the runtimes apps embed (README "Mobile and embedded formats")
    "executorch": TargetInfo("executorch", ("executorch",), "executorch_cpu",
                             "ExecuTorch runtime, XNNPACK delegate (the .pte programs of export format executorch)"),
    "ort-mobile": TargetInfo("ort-mobile", ("ort",), "ort_mobile",
                             "ONNX Runtime, CPU execution provider, on ORT format models (export format ort-mobile)"),
    # NVIDIA GPUs (README "NVIDIA GPUs"): recipes naming them fail to load on machines without one
    "cuda": TargetInfo("cuda", ("torch", "onnx"), "cuda",
                       "NVIDIA GPU: PyTorch eager on CUDA (torch), ONNX Runtime CUDA provider (onnx); FP32, TF32 off"),
    "cuda-fp16": TargetInfo("cuda-fp16", ("torch", "onnx"), "cuda",
                            "NVIDIA GPU in FP16: torch models in float16, FP32 ONNX converted to FP16 on load",
                            float_precision="fp16"),
    "cuda-bf16": TargetInfo("cuda-bf16", ("torch",), "cuda", "NVIDIA GPU, torch models in bfloat16",
                            float_precision="bf16"),
    "tensorrt": TargetInfo("tensorrt", ("tensorrt",), "tensorrt",
                           "TensorRT engines (export format tensorrt) on the GPU they were built for"),
}


def target_module(name: str):
    """The module that runs target `name` (or, for a module serving several targets, e.g. cuda's
    precisions, its `variant(name)`: an object with the same functions)."""
    mod = importlib.import_module(f"{__name__}.{TARGETS[name].module}")
    return mod.variant(name) if hasattr(mod, "variant") else mod


def unavailable_reason(name: str) -> str | None:
    """Why this machine cannot run target `name` (None: it can)."""
    check = getattr(target_module(name), "unavailable_reason", None)
    return check() if check is not None else None


def kind_unavailable_reason(name: str, kind: str) -> str | None:
    """Why target `name` cannot run `kind` artifacts on this machine (None: it can), for targets whose
    runtimes differ by kind (cuda: torch needs PyTorch CUDA, onnx needs ONNX Runtime's CUDA provider)."""
    check = getattr(target_module(name), "kind_unavailable_reason", None)
    return check(kind) if check is not None else None


def row_precision(artifact_precision: str, target: str) -> str:
    """The precision a row reports: an FP32 artifact on a bf16 target runs in bf16."""
    return TARGETS[target].float_precision if artifact_precision == "fp32" else artifact_precision
