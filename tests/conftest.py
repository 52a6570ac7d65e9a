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
