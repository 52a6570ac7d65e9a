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


# ---------------------------------------------------------------------------------------------
# invalid rows: one error that lists them, or (data.drop_invalid) dropped and counted

SHOW_INVALID = 5          # offending rows quoted in the error; the rest are counted


@dataclass
class Invalid:
    """One row (or image) that cannot be used: where it is as the user sees it, why, and which part
    of the data it came from (the key its drop is counted under)."""
    where: str            # "/data/train.csv line 4", "/data/imgs/cat/3.jpg"
    reason: str           # the short kind counted in the report: "empty text", "missing label", ...
    detail: str = ""      # e.g. "label 'z' is not in the training data (labels: neg, pos)"
    part: str = "train"   # train / validation / test, or the single file's name before it is split


def invalid_error(bad: list[Invalid]):
    """One DataError: how many rows in all (by kind), the first few with file and line, and the way out."""
    from ..errors import DataError

    kinds = _counts(bad)
    lines = [f"{len(bad)} invalid row(s) in the data ({', '.join(f'{k} {v}' for k, v in kinds.items())})"
             + (f"; the first {SHOW_INVALID}:" if len(bad) > SHOW_INVALID else ":")]
    lines += [f"  {b.where}: {b.detail or b.reason}" for b in bad[:SHOW_INVALID]]
    if len(bad) > SHOW_INVALID:
        lines.append(f"  ... and {len(bad) - SHOW_INVALID} more")
    lines.append("Fix them, or set `data.drop_invalid: true` to drop such rows (the report counts them).")
    return DataError("\n".join(lines))


def dropped_counts(bad: list[Invalid]) -> dict[str, dict[str, int]]:
    """{part: {kind: count}} of the dropped rows, parts in the order they were found."""
    out: dict[str, list[Invalid]] = {}
    for b in bad:
        out.setdefault(b.part, []).append(b)
    return {part: _counts(rows) for part, rows in out.items()}


def _counts(bad: list[Invalid]) -> dict[str, int]:
    out: dict[str, int] = {}
    for b in bad:
        out[b.reason] = out.get(b.reason, 0) + 1
    return out


def report_fields(splits: Splits) -> dict:
    """What the report's data section says about the data beyond the split sizes: where it came from,
    how it was split, rows dropped (`data.drop_invalid`) and texts cut at max_length."""
    return {k: splits.info[k] for k in ("source", "split", "dropped", "truncated") if splits.info.get(k) is not None}


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
