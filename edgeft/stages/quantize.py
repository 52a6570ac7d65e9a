"""quantize: INT8 with ONNX Runtime — dynamic, or static QDQ with a calibration set.

Every quantized model gets a parity report against its FP32 source on real validation samples
(argmax agreement, max |Δlogit|); agreement below `parity.min_agreement` fails the stage.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from .base import StageConfig
from ..recipe import Strict


class QuantParityConfig(Strict):
    samples: PositiveInt = Field(256, description="real validation samples compared (all if fewer)")
    min_agreement: float = Field(0.95, ge=0, le=1, description="argmax agreement floor vs the FP32 source")
    max_abs_diff: float | None = Field(None, gt=0, description="optional ceiling on max |Δlogit|")


class QuantizeConfig(StageConfig):
    type: Literal["quantize"]
    method: Literal["dynamic", "static"]
    calibration: str | None = Field(None, description="calibration manifest (static only)")
    calibrate_method: Literal["minmax", "entropy", "percentile"] = "minmax"
    per_channel: bool = Field(True, description="per-channel weight scales")
    parity: QuantParityConfig = QuantParityConfig()

    accepts = ("onnx",)

    def produces(self) -> str:
        return "onnx"

    def files(self, recipe) -> dict[str, str]:
        return {"calibration": str(recipe.resolve_path(self.calibration))} if self.calibration else {}

    def check(self, recipe, stages) -> list[tuple[str, str]]:
        from ..calibration import data_source_id, read_manifest

        problems = []
        if self.method == "static" and not self.calibration:
            problems.append(("calibration", "method static needs a calibration manifest (calibration/*.yaml)"))
        if self.method == "dynamic" and self.calibration:
            problems.append(("calibration", "method dynamic takes no calibration set (did you mean static?)"))
        if self.method == "dynamic" and self.calibrate_method != "minmax":
            problems.append(("calibrate_method", "only used by method static"))
        if self.calibration:
            manifest, errs = read_manifest(recipe.resolve_path(self.calibration))
            problems += [(f"calibration{'.' + p if p else ''}", r) for p, r in errs]
            if manifest and manifest.source != data_source_id(recipe.data):
                problems.append(("calibration", f"manifest was drawn from {manifest.source!r}, "
                                                f"but the recipe's data is {data_source_id(recipe.data)!r}"))
        # quantizing an already-quantized model is a mistake we can see now
        names = {s.name: s for s in stages if s is not None}
        ref = self.input[1:] if self.input else None
        if ref is None:
            idx = next((i for i, s in enumerate(stages) if s is self), None)
            from . import default_input
            d = default_input(stages, idx) if idx is not None else None
            ref = d[1:] if d else None
        src = names.get(ref) if ref else None
        if src is not None and getattr(src, "type", None) == "quantize":
            problems.append(("input", f"@{ref} is already INT8; quantize an FP32 export "
                                      f"(set `input:` to the export stage)"))
        return problems


def run(cfg: QuantizeConfig, inputs: dict, ctx):
    raise NotImplementedError("quantize.run")
