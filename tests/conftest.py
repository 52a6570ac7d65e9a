"""Shared fixtures: real shipped weights and data, small subsets so tests stay fast on 2 cores."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]


def small_recipe(**over) -> dict:
    """A small real recipe as a dict: shipped MiniLM, Rotten Tomatoes subsets, max_length 32."""
    r = {
        "name": "tiny",
        "seed": 0,
        "task": "text-classification",
        "model": {"source": "shipped:all-MiniLM-L6-v2"},
        "data": {"source": "builtin:rotten_tomatoes", "max_length": 32,
                 "max_samples": {"train": 400, "validation": 128, "test": 200}},
        "stages": [{"name": "finetune", "type": "finetune", "epochs": 1, "batch_size": 16}],
    }
    r.update(over)
    return r


@pytest.fixture
def recipe_dict():
    return small_recipe()


@pytest.fixture(scope="session")
def minilm_path() -> str:
    from edgeft.models import resolve_source

    return resolve_source("shipped:all-MiniLM-L6-v2")


@pytest.fixture(scope="session")
def calibration_manifest(tmp_path_factory):
    """A pinned 32-sample calibration manifest drawn from small_recipe()'s train split."""
    from edgeft.calibration import write_manifest
    from edgeft.recipe import validate_recipe

    path = tmp_path_factory.mktemp("calib") / "rt-32.yaml"
    write_manifest(validate_recipe(small_recipe()), path, split="train", num_samples=32, seed=0)
    return path
