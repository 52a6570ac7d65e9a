"""Unlabelled text for domain-adaptive pre-training (the `adapt` stage's `text: [{file: ...}]`).

Two kinds of file, told apart by the name, with an optional `.gz`/`.bz2`/`.xz` on top:
- a table (`.csv`, `.tsv`, `.jsonl`, `.json`): one column of it, named by the recipe;
- anything else (`.txt`, ...): one text per line.
Blank texts are left out. `header` reads as little as possible, for load-time checks.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
from pathlib import Path

from ..errors import DataError

TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json")
COMPRESSED = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


def formats(path: Path) -> tuple[str, str]:
    """(the format suffix under any compression, the compression suffix or "")."""
    suffixes = [s.lower() for s in path.suffixes]
    comp = suffixes[-1] if suffixes and suffixes[-1] in COMPRESSED else ""
    inner = suffixes[-2] if comp and len(suffixes) > 1 else ("" if comp else (suffixes[-1] if suffixes else ""))
    return inner, comp


def is_table(path: Path) -> bool:
    return formats(path)[0] in TABLE_SUFFIXES


def _open(path: Path):
    return COMPRESSED.get(formats(path)[1], open)(path, "rt", encoding="utf-8", errors="replace")


def header(path: Path) -> list[str] | None:
    """A table's column names; None where they cannot be had without reading the whole file
    (`.json`: checked when the stage reads it)."""
    import csv

    inner = formats(path)[0]
    if inner == ".json":
        return None
    with _open(path) as fh:
        first = fh.readline()
    if inner == ".csv":
        return next(csv.reader([first]), [])
    if inner == ".tsv":
        return first.rstrip("\r\n").split("\t")
    try:
        row = json.loads(first) if first.strip() else {}
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: the first line is not JSON ({e})") from None
    return list(row) if isinstance(row, dict) else []


def read_texts(path: Path, column: str | None = None) -> list[str]:
    """The non-blank texts of a file: one per line, or one per row of `column` of a table."""
    if not is_table(path):
        with _open(path) as fh:
            return [s for s in (line.strip() for line in fh) if s]
    import pandas as pd

    inner = formats(path)[0]
    try:
        if inner in (".csv", ".tsv"):
            df = pd.read_csv(path, sep="\t" if inner == ".tsv" else ",", usecols=[column])
        else:
            df = pd.read_json(path, lines=inner == ".jsonl")
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read column {column!r} of {path}: {e}") from None
    if column not in df.columns:
        raise DataError(f"{path}: column {column!r} not found; columns are {', '.join(map(str, df.columns))}")
    values = df[column].dropna().astype(str).str.strip()
    return values[values != ""].tolist()
