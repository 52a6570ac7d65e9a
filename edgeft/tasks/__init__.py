"""Task registry: per task the inputs, data, model loading, metric and parity tolerance."""

from __future__ import annotations

import importlib

TASK_MODULES = {"text-classification": "text_classification"}


def get_task(name: str):
    return importlib.import_module(f"{__name__}.{TASK_MODULES[name]}")
