"""Data sources. Splits are plain lists + label arrays so every stage and runtime can use them."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Split:
    items: list            # texts (or image paths / arrays for vision tasks)
    labels: np.ndarray     # int64 class ids

    def __len__(self) -> int:
        return len(self.items)

    def subset(self, idx) -> "Split":
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
