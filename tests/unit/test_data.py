"""Data sources: the built-in set split by movie, and users' CSV / JSONL files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeft.data.text import load_text_splits, rotten_tomatoes_path
from edgeft.errors import DataError
from edgeft.recipe import DataConfig


def test_rotten_tomatoes_split_by_movie_is_deterministic(tmp_path):
    import pandas as pd

    cfg = DataConfig(source="builtin:rotten_tomatoes", split={"validation": 0.1, "test": 0.2})
    a = load_text_splits(cfg, seed=0, base_dir=tmp_path)
    b = load_text_splits(cfg, seed=0, base_dir=tmp_path)
    assert a.sizes() == b.sizes() == {"train": 8839, "validation": 1357, "test": 2556}
    assert a.test.items == b.test.items and a.label_names == ["rotten", "fresh"]
    df = pd.read_csv(rotten_tomatoes_path()).drop_duplicates("text")
    movie = dict(zip(df.text, df.movie_name))
    movies = {n: {movie[t] for t in getattr(a, n).items} for n in ("train", "validation", "test")}
    assert not (movies["train"] & movies["test"]) and not (movies["train"] & movies["validation"])
    assert not (movies["validation"] & movies["test"])
    assert 0.5 < a.test.labels.mean() < 0.6                    # fresh share; majority ~55%
    c = load_text_splits(cfg, seed=1, base_dir=tmp_path)
    assert c.test.items != a.test.items                         # the seed picks the split


def test_single_csv_with_string_labels_and_fractions(tmp_path):
    rows = ["text,label,author"] + [f"review {i} is {'good' if i % 3 else 'bad'},{'pos' if i % 3 else 'neg'},a{i % 10}"
                                    for i in range(100)]
    (tmp_path / "all.csv").write_text("\n".join(rows) + "\n")
    cfg = DataConfig(source="all.csv", split={"validation": 0.2, "test": 0.2}, group_column="author",
                     max_samples={"train": 30})
    s = load_text_splits(cfg, seed=0, base_dir=tmp_path)
    assert s.label_names == ["neg", "pos"]                      # strings sorted -> ids
    assert len(s.train) == 30 and len(s.validation) + len(s.test) > 0
    for split in (s.train, s.validation, s.test):
        for text, label in zip(split.items, split.labels):
            assert s.label_names[label] == ("pos" if "good" in text else "neg")
    authors = {n: {int(t.split()[1]) % 10 for t in getattr(s, n).items} for n in ("validation", "test")}
    assert not (authors["validation"] & authors["test"])        # groups never straddle splits


def test_three_jsonl_files(tmp_path):
    for name, n in (("train", 12), ("dev", 4), ("test", 6)):
        with open(tmp_path / f"{name}.jsonl", "w") as fh:
            for i in range(n):
                fh.write(json.dumps({"sentence": f"{name} {i}", "y": i % 3}) + "\n")
    cfg = DataConfig(train="train.jsonl", validation="dev.jsonl", test="test.jsonl",
                     text_column="sentence", label_column="y")
    s = load_text_splits(cfg, seed=0, base_dir=tmp_path)
    assert s.sizes() == {"train": 12, "validation": 4, "test": 6}
    assert s.label_names == ["0", "1", "2"] and np.array_equal(s.test.labels, np.arange(6) % 3)


def test_unseen_label_and_missing_column_are_clear_errors(tmp_path):
    (tmp_path / "tr.csv").write_text("text,label\na,x\nb,y\n")
    (tmp_path / "va.csv").write_text("text,label\nc,x\n")
    (tmp_path / "te.csv").write_text("text,label\nd,z\n")
    cfg = DataConfig(train="tr.csv", validation="va.csv", test="te.csv")
    with pytest.raises(DataError, match="label 'z' does not appear in the training split"):
        load_text_splits(cfg, seed=0, base_dir=tmp_path)
    with pytest.raises(DataError, match="column\\(s\\) review not found"):
        load_text_splits(DataConfig(train="tr.csv", validation="va.csv", test="te.csv", text_column="review"),
                         seed=0, base_dir=tmp_path)
