"""executorch: ExecuTorch's runtime (Python bindings of the C++ runtime apps embed) on this CPU.

Runs .pte programs from `export` format executorch: the XNNPACK delegate for what was lowered to it,
ExecuTorch's portable kernels for the rest. `threads` sizes XNNPACK's thread pool (one pool per
process in ExecuTorch). The row's `runtime_footprint` is the program's delegated share.
"""

from __future__ import annotations

import numpy as np

from .base import Session

NAME = "executorch"


class ExecuTorchSession(Session):
    target = NAME

    def __init__(self, artifact, threads: int):
        from ..ops import executorch_export as et

        self.artifact = artifact
        self.input_names = list(artifact.meta.get("inputs") or [])
        self._run = et.load_method(artifact.main_path, threads)
        self._program = et.run_program

    def run_feed(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        return self._program(self._run, feed, self.input_names)

    def footprint(self) -> dict:
        return footprint(self.artifact)


def footprint(artifact) -> dict:
    d = artifact.meta.get("delegation") or {}
    return {"delegated_share": d.get("delegated_share"), "delegated_nodes": d.get("delegated_nodes"),
            "non_delegated_nodes": d.get("non_delegated_nodes"), "non_delegated_ops": d.get("non_delegated_ops")}


def unavailable_reason() -> str | None:
    from ..ops.executorch_export import installed

    return None if installed() else "ExecuTorch is not installed: pip install 'edgeft[mobile]'"


def preload() -> None:
    from executorch.runtime import Runtime  # noqa: F401


def load(artifact, threads: int, task=None) -> ExecuTorchSession:
    if artifact.kind != "executorch":
        raise ValueError(f"target {NAME} runs executorch artifacts, not {artifact.kind!r}")
    return ExecuTorchSession(artifact, threads)


def fingerprint(threads: int) -> dict:
    from ..ops.executorch_export import installed

    return {"target": NAME, "runtime": f"executorch {installed()}", "provider": "XNNPACK delegate + portable kernels",
            "threads": threads}
