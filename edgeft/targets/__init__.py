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


TARGETS: dict[str, TargetInfo] = {
    "pytorch": TargetInfo("pytorch", ("torch",), "pytorch", "PyTorch eager on CPU (the reference)"),
    "cpu": TargetInfo("cpu", ("onnx",), "ort_cpu", "ONNX Runtime, CPU execution provider"),
}


def target_module(name: str):
    return importlib.import_module(f"{__name__}.{TARGETS[name].module}")
