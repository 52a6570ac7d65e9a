"""Which INT8 format is right for the CPU an artifact will run on.

ONNX Runtime (MLAS) and OpenVINO (oneDNN) multiply uint8 activations by int8 weights. On x86 CPUs
with VNNI (AVX-512 VNNI, AVX-VNNI, AMX) one instruction (`vpdpbusd`) accumulates the products in
int32: exact. On x86 without VNNI (AVX2, or AVX-512 without VNNI) the u8 x s8 kernels use
`vpmaddubsw`, which adds two products into a *saturating int16*: 255 x 127 x 2 = 64,770 > 32,767, so
large activations against large weights are clipped. ONNX Runtime's documentation names this and
advises 7-bit weights (reduce_range) or U8U8; NNCF calls it the overflow issue (`OverflowFix`).
Measured here under `qemu-x86_64 -cpu Haswell` (an AVX2 CPU, no VNNI): a MatMulInteger with
activations 250 and weights near 127 was off by 43% of its output; with 7-bit weights or U8U8 it was
exact (benchmarks/int8_isa_check.py). ARM64 (udot/sdot, or widening multiplies without them) and
x86 without AVX2 (pmaddwd on 16-bit values) do not saturate.

So the INT8 format is chosen from the ISA class of the CPU the artifact targets:
- saturating classes (avx2, avx512): ONNX Runtime artifacts store their int8 weights as uint8
  (q + 128, zero point + 128: the same numbers, computed exactly by the U8U8 kernels); NNCF uses
  its overflow fix on every layer (7-bit weights, the only form OpenVINO's kernels run exactly there).
- the others (vnni, amx, arm64, x86): int8 weights, full 8-bit range.
The class comes from the stage's `isa:` (the CPU you ship to) or, with `auto`, from this machine,
where every local target runs. It is recorded in each artifact's meta and is part of its cache key.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

# user-facing names for `isa:` -> ISA class
ISA_NAMES = {
    "avx2": "avx2",                # x86-64 with AVX2, no VNNI (older Xeons/EPYCs, many edge boxes)
    "avx512": "avx512",            # AVX-512 without VNNI (Skylake-SP)
    "avx512_vnni": "vnni", "avx_vnni": "vnni", "vnni": "vnni",
    "amx": "amx",
    "arm64": "arm64", "arm64_dotprod": "arm64",
    "x86": "x86",                  # x86-64 without AVX2 (SSE4 only)
}
SATURATING = ("avx2", "avx512")


@dataclass(frozen=True)
class Int8Format:
    isa: str                       # the ISA class the artifact is made for
    source: str                    # "recipe" (the stage's isa:) or "host" (auto: this machine)
    saturating: bool               # u8 x s8 products can saturate int16 on this class
    ort_weights: str               # "int8" or "uint8" (ONNX Runtime artifacts)
    nncf_overflow_fix: str         # NNCF OverflowFix value: "disable" or "enable" (7-bit weights)

    def meta(self) -> dict:
        return {**asdict(self), "why": (
            "x86 without VNNI: u8 x s8 kernels (vpmaddubsw) saturate int16; uint8 weights for ONNX Runtime "
            "(U8U8 kernels, exact), 7-bit weights for NNCF/OpenVINO" if self.saturating else
            "int32 accumulation of u8 x s8 products (VNNI / AMX / ARM dot products or widening multiplies): "
            "full 8-bit int8 weights")}


def isa_class(flags, machine: str) -> str:
    """The INT8-relevant class of a CPU from its /proc/cpuinfo flags and `platform.machine()`."""
    flags = set(flags)
    if machine in ("aarch64", "arm64"):
        return "arm64"
    if "amx_int8" in flags:
        return "amx"
    if flags & {"avx512_vnni", "avx_vnni"}:
        return "vnni"
    if "avx512bw" in flags:
        return "avx512"
    if "avx2" in flags:
        return "avx2"
    return "x86"


def host_isa_class() -> str:
    import platform

    from .targets.fingerprint import cpu_flags

    return isa_class(cpu_flags(), platform.machine())


def resolve(isa: str) -> tuple[str, str]:
    """(ISA class, source) for a stage's `isa:` setting ("auto" = this machine)."""
    if isa == "auto":
        return host_isa_class(), "host"
    return ISA_NAMES[isa], "recipe"


def int8_format(isa: str = "auto") -> Int8Format:
    cls, source = resolve(isa)
    sat = cls in SATURATING
    return Int8Format(cls, source, sat, "uint8" if sat else "int8", "enable" if sat else "disable")
