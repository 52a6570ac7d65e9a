"""The one place stages are registered: a discriminated union of configs and their run functions.

To add a stage: write `stages/x.py` with `XConfig` (type: Literal["x"]) and `run(cfg, inputs, ctx)`,
then add it to CONFIGS below. Run functions are imported lazily (heavy libraries).
"""

from __future__ import annotations

import importlib
from typing import Annotated, Union

from pydantic import Field, TypeAdapter

from .adapt import AdaptConfig
from .benchmark import BenchmarkConfig
from .distill import DistillConfig
from .export import ExportConfig
from .finetune import FinetuneConfig
from .prune import PruneConfig
from .qat import QATConfig
from .quantize import QuantizeConfig

CONFIGS = {
    "adapt": AdaptConfig,
    "finetune": FinetuneConfig,
    "prune": PruneConfig,
    "distill": DistillConfig,
    "export": ExportConfig,
    "quantize": QuantizeConfig,
    "qat": QATConfig,
    "benchmark": BenchmarkConfig,
}

StageConfigUnion = Annotated[Union[tuple(CONFIGS.values())], Field(discriminator="type")]  # noqa: UP007
_adapter = TypeAdapter(StageConfigUnion)


def parse_stage(raw):
    return _adapter.validate_python(raw)


def run_function(stage_type: str):
    """The stage's `run(cfg, inputs, ctx) -> Artifact` (module imported on first use)."""
    return importlib.import_module(f"{__name__}.{stage_type}").run
