"""Target registry: where artifacts run. Metadata only here; runtimes load in each target module.

Each target module has `load(artifact, threads, task) -> Session` (see targets/base.py) and
`fingerprint(threads) -> dict`.
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


TARGETS: dict[str, TargetInfo] = {
    "pytorch": TargetInfo("pytorch", ("torch",), "pytorch", "PyTorch eager on CPU (the reference)"),  # dense kernels
    "cpu": TargetInfo("cpu", ("onnx",), "ort_cpu", "ONNX Runtime, CPU execution provider"),  # dense MatMul/Gemm
    # OpenVINO's CPU plugin decompresses sparse INT8 weights only on AMX CPUs: not counted as a speedup
    "openvino": TargetInfo("openvino", ("onnx", "openvino"), "openvino_cpu",
                           "OpenVINO runtime, CPU device (LATENCY hint, f32 inference precision)"),
}


def target_module(name: str):
    return importlib.import_module(f"{__name__}.{TARGETS[name].module}")
