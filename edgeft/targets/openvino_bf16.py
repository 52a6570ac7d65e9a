"""openvino-bf16: the OpenVINO runtime on the CPU device with bf16 inference precision.

What OpenVINO does by default on CPUs with AMX or AVX-512 BF16 (its CPU plugin then lists `BF16`
among its optimization capabilities): float matmuls and convolutions run in bfloat16, so an FP32
artifact's row is reported as precision `bf16`, and an INT8 artifact runs its quantized ops in INT8
and the rest in bf16. Every other setting as the `openvino` target (LATENCY hint, fixed threads,
dynamic shapes). The accuracy column is measured with exactly this setting, so the cost of bf16 is
in the report. On a CPU without bf16 the recipe fails when it loads, naming the target.
"""

from __future__ import annotations

from . import openvino_cpu

NAME = "openvino-bf16"
PRECISION = "bf16"


def unavailable_reason() -> str | None:
    """Why this machine cannot run the target (None: it can)."""
    try:
        import openvino as ov
    except ImportError:
        return "needs openvino: pip install 'edgeft[openvino]'"
    caps = [str(c) for c in ov.Core().get_property(openvino_cpu.DEVICE, "OPTIMIZATION_CAPABILITIES")]
    if "BF16" not in caps:
        return (f"this CPU has no bf16 support (OpenVINO CPU capabilities: {', '.join(caps)}); "
                f"use the openvino target")
    return None


def preload() -> None:
    openvino_cpu.preload()


def load(artifact, threads: int, task=None):
    return openvino_cpu.load(artifact, threads, task, precision=PRECISION, target=NAME)


def fingerprint(threads: int) -> dict:
    return openvino_cpu.fingerprint(threads, precision=PRECISION, target=NAME)
