"""Data sources. Splits are plain lists + label arrays so every stage and runtime can use them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Split:
    items: list            # texts (or image paths / arrays for vision tasks)
    labels: np.ndarray     # int64 class ids

    def __len__(self) -> int:
        return len(self.items)

    def subset(self, idx) -> Split:
        idx = list(idx)
        return Split([self.items[i] for i in idx], self.labels[idx])


@dataclass
class Splits:
    train: Split
    validation: Split
    test: Split
    label_names: list[str]
    info: dict = field(default_factory=dict)

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "validation": len(self.validation), "test": len(self.test)}

    def get(self, name: str) -> Split:
        return getattr(self, name)


def files_read(data, base_dir: Path) -> dict[str, list[Path]]:
    """{data key: the local files or folders it reads} for a recipe's `data` section (DataConfig):
    a CSV/JSONL file, a `datasets` save_to_disk folder or an image folder as resolved by the loaders,
    and the installed files of a builtin set. Keys naming nothing on disk are left out."""
    from ..errors import DataError
    from ..schema import resolve_path

    out = {}
    for key in ("source", "train", "validation", "test"):
        value = getattr(data, key)
        if not value:
            continue
        if value == "builtin:rotten_tomatoes":
            from .text import rotten_tomatoes_path

            try:
                out[key] = [rotten_tomatoes_path()]
            except DataError:
                pass                         # not installed: check_data reports it
        elif value == "builtin:fashion_mnist":
            from .images import FASHION_MNIST_FILES, fashion_mnist_dir

            paths = [fashion_mnist_dir() / f for pair in FASHION_MNIST_FILES.values() for f in pair]
            if all(p.is_file() for p in paths):
                out[key] = paths
        elif not value.startswith("builtin:"):
            path = resolve_path(value, base_dir)
            if path.exists():
                out[key] = [path]
    return out
