"""export: a torch model to ONNX (dynamic batch and sequence axes), then the parity gate.

The gate runs source and export on real validation samples; output names and shapes must match,
max |Δlogit| must be within tolerance and argmax agreement at or above the floor, else the stage
fails with ExportParityError. `optimize: true` adds ONNX Runtime transformer fusions, verified alike.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from .base import StageConfig
from ..recipe import Strict


class ParityConfig(Strict):
    samples: PositiveInt = Field(256, description="real validation samples compared (all if fewer)")
    max_abs_diff: float | None = Field(None, gt=0, description="max |Δlogit|; default: the task's tolerance")
    min_agreement: float = Field(0.999, ge=0, le=1, description="argmax agreement floor")


class ExportConfig(StageConfig):
    type: Literal["export"]
    opset: int = Field(18, ge=14, le=23)
    optimize: bool = Field(True, description="ONNX Runtime transformer fusions (verified by the gate)")
    parity: ParityConfig = ParityConfig()

    accepts = ("torch",)

    def produces(self) -> str:
        return "onnx"


def run(cfg: ExportConfig, inputs: dict, ctx):
    raise NotImplementedError("export.run")
