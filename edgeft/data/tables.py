"""Users' tables: CSV / TSV / JSONL files and `datasets` folders read as the user wrote them, each row
with the line it is on, and labels as users have them (see `label_value`, `label_names_of`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError

TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json")
_INT_RE = re.compile(r"^[+-]?\d+(\.0*)?$")     # "1", "-1", "+1", "1.0": integer labels as users write them


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
# users' files: every value as written, each row with the line it is on

@dataclass
class Rows:
    """A user's table reduced to what the loader needs. `labels` are normalized (`label_value`);
    `lines[i]` is the line row i starts on (CSV: the header is line 1; JSONL: row + 1), None where the
    format has no lines (a .json array, a dataset folder)."""
    path: Path
    texts: list[str]
    labels: list
    lines: list
    groups: list | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def where(self, i: int) -> str:
        return f"{self.path} line {self.lines[i]}" if self.lines[i] is not None else f"{self.path} row {i + 1}"

    def take(self, idx) -> Rows:
        idx = [int(i) for i in idx]
        return Rows(self.path, [self.texts[i] for i in idx], [self.labels[i] for i in idx],
                    [self.lines[i] for i in idx], [self.groups[i] for i in idx] if self.groups is not None else None)


def label_value(v):
    """A label as the user has it: None if missing; an int for integers, integral floats (a column with
    one missing label is read as 0.0 / 1.0) and integer strings ("1", "-1", "1.0"); else the stripped
    string."""
    if _is_missing(v):
        return None
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        if np.isnan(v):
            return None
        return int(v) if float(v).is_integer() else str(v)
    text = str(v).strip()
    if not text:
        return None
    if _INT_RE.match(text):
        return int(text.split(".")[0])
    return text


def label_names_of(labels) -> list[str]:
    """Class names in id order: integer labels by value, then string labels sorted. Integer labels
    0..K-1 keep their value as id; any other set ({-1, 1}, {1, 2}, {0, 1000000}) maps to 0..K-1 in
    order, the names staying the user's values."""
    uniq = set(labels)
    ints = sorted(v for v in uniq if isinstance(v, int))
    return [str(v) for v in ints] + sorted(str(v) for v in uniq if not isinstance(v, int))


def _is_missing(v) -> bool:
    """None, NaN, pandas' NA / NaT (a scalar; a list or dict value is not missing)."""
    import pandas as pd

    if v is None:
        return True
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):         # an array-like value: pd.isna answers per element
        return False


def _read_csv(path: Path, sep: str, part: str, bad: list):
    """(frame of strings, line each row starts on): read with the csv module, every cell as written (a
    text "NA" stays a text), the header on line 1, quoted fields may span lines, blank lines skipped.
    A row with more fields than the header (an unquoted comma in a text) goes to `bad`: pandas would
    silently take the first field as an index and shift every column."""
    import csv

    import pandas as pd

    from . import Invalid

    header, records, lines, prev = None, [], [], 0
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh, delimiter=sep)
        try:
            for rec in reader:
                start, prev = prev + 1, reader.line_num
                if not rec or (len(rec) == 1 and not rec[0].strip()):
                    continue
                if header is None:
                    header = rec
                elif len(rec) > len(header):
                    what = "a comma" if sep == "," else "a tab"
                    bad.append(Invalid(f"{path} line {start}", "too many fields",
                                       f"{len(rec)} fields, the header has {len(header)} (quote a text that "
                                       f"contains {what})", part))
                else:
                    records.append(rec + [""] * (len(header) - len(rec)))
                    lines.append(start)
        except csv.Error as e:
            raise DataError(f"{path} line {reader.line_num}: {e}") from None
    return pd.DataFrame(records, columns=header or []), lines


def _read_jsonl(path: Path, part: str, bad: list):
    import json

    import pandas as pd

    from . import Invalid

    records, lines = [], []
    with open(path, encoding="utf-8-sig") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                bad.append(Invalid(f"{path} line {n}", "not valid JSON", f"not valid JSON ({e.msg})", part))
                continue
            if not isinstance(obj, dict):
                bad.append(Invalid(f"{path} line {n}", "not valid JSON", "not a JSON object", part))
                continue
            records.append(obj)
            lines.append(n)
    return pd.DataFrame.from_records(records), lines


def read_rows(path: Path, data, part: str, bad: list, with_groups: bool = False) -> Rows:
    """The rows of one user file with a text and a label; the others go to `bad` (Invalid: empty text,
    missing label, a CSV row with too many fields, a JSONL line that is not a JSON object). CSV/TSV cells
    are read as the strings they are, so a text "NA" or "null" is a text, not a missing value."""
    from . import Invalid

    suffix = path.suffix.lower()
    try:
        if path.is_file() and suffix in (".csv", ".tsv"):
            df, lines = _read_csv(path, "\t" if suffix == ".tsv" else ",", part, bad)
        elif path.is_file() and suffix == ".jsonl":
            df, lines = _read_jsonl(path, part, bad)
        else:
            df = read_table(path)
            lines = [None] * len(df)
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {path}: {e}") from None
    text_col, label_col = data.text_column, data.label_column
    group_col = data.group_column if with_groups else None
    missing = [c for c in (text_col, label_col) if c not in df.columns]
    if missing:
        raise DataError(f"{path}: column(s) {', '.join(missing)} not found; "
                        f"columns are {', '.join(map(str, df.columns))}")
    if group_col and group_col not in df.columns:
        raise DataError(f"{path}: group column {group_col!r} not found")
    twice = sorted({str(c) for c in df.columns[df.columns.duplicated()]} & {text_col, label_col, group_col})
    if twice:
        raise DataError(f"{path}: column(s) {', '.join(twice)} appear more than once in the header")
    rows = Rows(path, [], [], [], [] if group_col else None)
    groups = df[group_col].tolist() if group_col else None
    for i, (text, label) in enumerate(zip(df[text_col].tolist(), df[label_col].tolist())):
        text = "" if _is_missing(text) else str(text)
        value = label_value(label)
        where = f"{path} line {lines[i]}" if lines[i] is not None else f"{path} row {i + 1}"
        if not text.strip():
            bad.append(Invalid(where, "empty text", "empty text" + (" and no label" if value is None else ""), part))
        elif value is None:
            bad.append(Invalid(where, "missing label", "missing label", part))
        else:
            rows.texts.append(text)
            rows.labels.append(value)
            rows.lines.append(lines[i])
            if groups is not None:
                rows.groups.append(groups[i])
    return rows
