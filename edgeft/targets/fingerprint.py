"""What a measurement depends on: CPU model, ISA flags, cores, runtime versions, threads."""

from __future__ import annotations

import os
import platform
from functools import lru_cache

ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
             "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16", "asimd", "sve")


# Arm Ltd. cores by the `CPU part` of /proc/cpuinfo (implementer 0x41): ARM kernels print no model name
ARM_PARTS = {"0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
             "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
             "0xd0c": "Neoverse-N1", "0xd0d": "Cortex-A77", "0xd40": "Neoverse-V1", "0xd41": "Cortex-A78",
             "0xd44": "Cortex-X1", "0xd46": "Cortex-A510", "0xd47": "Cortex-A710", "0xd49": "Neoverse-N2",
             "0xd4f": "Neoverse-V2"}


@lru_cache(maxsize=1)
def cpu_info() -> tuple[str, tuple[str, ...]]:
    """(CPU model name, the ISA_FLAGS this CPU has) from /proc/cpuinfo (platform's names where unreadable;
    on Arm cores without a model line, the core's name from its `CPU part`)."""
    model, flags, part = platform.processor() or platform.machine(), set(), {}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                k, _, v = line.partition(":")
                k = k.strip()
                if k in ("model name", "Model") and model in ("", platform.machine(), platform.processor()):
                    model = v.strip()
                elif k in ("flags", "Features") and not flags:
                    flags = set(v.split())
                elif k in ("CPU implementer", "CPU part") and k not in part:
                    part[k] = v.strip()
    except OSError:
        pass
    if model in ("", platform.machine(), platform.processor()) and part.get("CPU implementer") == "0x41":
        model = f"ARM {ARM_PARTS.get(part.get('CPU part', ''), 'core ' + part.get('CPU part', '?'))}"
    return model, tuple(f for f in ISA_FLAGS if f in flags)


def cpu_flags() -> tuple[str, ...]:
    """Every flag /proc/cpuinfo lists for this CPU (empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                k, _, v = line.partition(":")
                if k.strip() in ("flags", "Features"):
                    return tuple(v.split())
    except OSError:
        pass
    return ()


def host_fingerprint(stable: bool = False) -> dict:
    """The machine. `stable=True` leaves out anything that changes between runs on one machine."""
    model, flags = cpu_info()
    fp = {"cpu": model, "isa": list(flags), "cores": os.cpu_count(), "machine": platform.machine(),
          "python": platform.python_version()}
    if not stable:
        fp["os"] = platform.platform()
    return fp


def runtime_versions() -> dict:
    import importlib.metadata as md

    out = {}
    for pkg in ("torch", "transformers", "onnx", "onnxruntime", "onnxruntime-gpu", "openvino", "nncf", "optimum",
                "optimum-onnx", "executorch", "tensorrt", "tensorrt-cu13", "tensorrt-cu12"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out
