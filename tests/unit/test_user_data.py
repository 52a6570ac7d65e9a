"""Users' own data, tried as a new user would: train + test files only, stratified splits, labels as users
have them, invalid rows listed by file and line (or dropped and counted), max_length above the model's
limit, seeds out of range, truncation counts and the report naming the data. Small real CSV / JSONL files
and a real image folder, written in tmp_path."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
import yaml

from edgeft.data.images import load_image_splits
from edgeft.data.text import load_text_splits
from edgeft.errors import DataError, RecipeError
from edgeft.recipe import DataConfig, validate_recipe
from tests.conftest import small_recipe

REVIEWS = ["a warm and funny film", "dull and far too long", "the cast is wonderful", "a mess from start to end",
           "quietly moving", "I want those two hours back", "sharp writing and great pacing", "flat and lifeless"]


def write_csv(path, rows, header="text,label"):
    """`rows`: (text, label) pairs written as they are (no quoting added)."""
    path.write_text("\n".join([header] + [f"{t},{lab}" for t, lab in rows]) + "\n")
    return path


def labelled(n, labels, offset=0):
    """n (text, label) rows cycling through `labels`, every text distinct."""
    return [(f"{REVIEWS[i % len(REVIEWS)]} #{i + offset}", labels[i % len(labels)]) for i in range(n)]


def text_recipe(data, **over):
    return small_recipe(data={"max_length": 32, **data}, **over)


def problems_of(raw, check_data=True) -> list[tuple[str, str]]:
    with pytest.raises(RecipeError) as e:
        validate_recipe(raw, check_data=check_data)
    return e.value.problems


# ---------------------------------------------------------------------------------------------
# 1. train + test files only: validation carved out of train

def test_train_and_test_only_carves_a_stratified_seeded_validation(tmp_path):
    train = write_csv(tmp_path / "train.csv", labelled(90, ["pos"]) + labelled(30, ["neg"], offset=90))
    write_csv(tmp_path / "test.csv", labelled(20, ["pos", "neg"], offset=500))
    cfg = DataConfig(train="train.csv", test="test.csv", split={"validation": 0.25})
    s = load_text_splits(cfg, seed=0, base_dir=tmp_path)
    assert s.sizes() == {"train": 90, "validation": 30, "test": 20}
    assert s.label_names == ["neg", "pos"]
    # stratified: 25% of each class (90 pos, 30 neg) -> 22 or 23 pos and 7 or 8 neg, never all of one class
    assert sorted(np.bincount(s.validation.labels).tolist()) in ([7, 23], [8, 22])
    assert not set(s.validation.items) & set(s.train.items)
    with open(train, newline="") as fh:
        texts = {row[0] for row in csv.reader(fh)} - {"text"}
    assert set(s.train.items) | set(s.validation.items) == texts
    assert "validation carved out of train: 0.25 of it, stratified by label, seed 0" in s.info["split"]
    again = load_text_splits(cfg, seed=0, base_dir=tmp_path)
    other = load_text_splits(cfg, seed=1, base_dir=tmp_path)
    assert again.validation.items == s.validation.items and other.validation.items != s.validation.items
    # the whole recipe validates; its report header names the files
    r = validate_recipe(text_recipe({"train": str(train), "test": str(tmp_path / "test.csv")}))
    assert r.data.validation is None


def test_train_without_test_and_split_test_with_files_are_load_time_errors(tmp_path):
    write_csv(tmp_path / "train.csv", labelled(10, ["a", "b"]))
    probs = problems_of(text_recipe({"train": str(tmp_path / "train.csv")}))
    assert probs == [("data", "`train` given: give `source` (one file or builtin:NAME), or `train` and `test` files "
                              "(`validation` is optional: without it `split.validation` of train is held out)")]
    probs = problems_of(text_recipe({"validation": "v.csv", "test": "t.csv"}), check_data=False)
    assert probs[0][0] == "data" and "`validation` and `test` given" in probs[0][1]
    # a fraction the files make meaningless is an error, not silently ignored
    write_csv(tmp_path / "test.csv", labelled(4, ["a", "b"]))
    probs = problems_of(text_recipe({"train": str(tmp_path / "train.csv"), "test": str(tmp_path / "test.csv"),
                                     "split": {"test": 0.3}}))
    assert probs == [("data.split.test", "the `test` file is the test split; split.test applies to a single "
                                         "`source` only")]


# ---------------------------------------------------------------------------------------------
# 2. stratified single-file splits; grouped splits keep their groups

def test_single_file_is_split_stratified_and_a_tiny_class_stays_in_train(tmp_path):
    rows = labelled(180, ["common"]) + labelled(20, ["rare"], offset=180) + [("the only one of its kind", "once")]
    write_csv(tmp_path / "all.csv", rows)
    cfg = DataConfig(source="all.csv", split={"validation": 0.1, "test": 0.2})
    s = load_text_splits(cfg, seed=0, base_dir=tmp_path)
    assert s.label_names == ["common", "once", "rare"]
    counts = {n: np.bincount(s.get(n).labels, minlength=3).tolist() for n in ("train", "validation", "test")}
    # exactly in proportion: test 20% of 180 / 20 rows, validation 10% of the whole out of the rest
    assert counts == {"train": [126, 1, 14], "validation": [18, 0, 2], "test": [36, 0, 4]}
    everything = s.train.items + s.validation.items + s.test.items
    assert sorted(everything) == sorted(t for t, _ in rows)                # every row once, in one split
    assert "stratified by label, seed 0" in s.info["split"]
    assert "fewer than 3 rows not split, kept whole in train (learned, not evaluated): 'once' (1 row)" \
        in s.info["split"]
    assert load_text_splits(cfg, seed=3, base_dir=tmp_path).test.items != s.test.items
    write_csv(tmp_path / "tiny.csv", [("good", "pos"), ("bad", "neg"), ("great", "pos"), ("awful", "neg")])
    with pytest.raises(DataError) as e:
        load_text_splits(DataConfig(source="tiny.csv"), seed=0, base_dir=tmp_path)
    assert str(e.value) == (f"the validation and test splits of {tmp_path / 'tiny.csv'} are empty: too few rows "
                            f"to hold any out: "
                            f"a class of fewer than 3 rows stays whole in train")


def test_grouped_single_file_keeps_groups_whole(tmp_path):
    rows = [(f"{REVIEWS[i % 8]} by {i % 12}", "pos" if i % 3 else "neg", f"author{i % 12}") for i in range(120)]
    (tmp_path / "g.csv").write_text("text,label,author\n" + "".join(f"{t},{lab},{a}\n" for t, lab, a in rows))
    s = load_text_splits(DataConfig(source="g.csv", group_column="author"), seed=0, base_dir=tmp_path)
    owners = {n: {t.rsplit(" ", 1)[1] for t in s.get(n).items} for n in ("train", "validation", "test")}
    assert not owners["train"] & owners["test"] and not owners["train"] & owners["validation"]
    assert not owners["validation"] & owners["test"]
    assert s.info["split"].startswith("grouped by author")


# ---------------------------------------------------------------------------------------------
# 3. max_length above the model's position limit

def test_max_length_above_the_models_position_limit_is_a_load_time_error(tmp_path):
    from edgeft.models import position_limit, resolve_source

    write_csv(tmp_path / "all.csv", labelled(20, ["a", "b"]))
    raw = text_recipe({"source": str(tmp_path / "all.csv"), "max_length": 100000})
    config = f"{resolve_source('shipped:all-MiniLM-L6-v2')}/config.json"
    assert problems_of(raw) == [("data.max_length", f"100000 is above the model's limit of 512 tokens "
                                                    f"(max_position_embeddings in {config}); use 512 or less")]
    raw["data"]["max_length"] = 512
    assert validate_recipe(raw).data.max_length == 512
    # a local folder: its config.json; RoBERTa-style models lose the padding offset (514 -> 512)
    model = tmp_path / "my-model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "bert", "max_position_embeddings": 128}))
    raw = text_recipe({"source": str(tmp_path / "all.csv"), "max_length": 256}, model={"source": "my-model"})
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(raw))
    from edgeft.recipe import load_recipe

    with pytest.raises(RecipeError, match=r"data.max_length: 256 is above the model's limit of 128 tokens"):
        load_recipe(tmp_path / "recipe.yaml")
    (model / "config.json").write_text(json.dumps({"model_type": "roberta", "max_position_embeddings": 514,
                                                   "pad_token_id": 1}))
    assert position_limit("my-model", tmp_path)[0] == 512
    # a hub id that cannot be read offline: no check, no crash
    assert position_limit("some-org/not-cached-model-xyz") is None
    hub = text_recipe({"source": str(tmp_path / "all.csv"), "max_length": 100000},
                      model={"source": "some-org/not-cached-model-xyz"})
    assert validate_recipe(hub).data.max_length == 100000


# ---------------------------------------------------------------------------------------------
# 4. invalid rows: one error with file and line, or dropped and counted

def test_invalid_rows_are_one_error_with_file_and_line(tmp_path):
    tr = tmp_path / "train.csv"
    tr.write_text("text,label\n"
                  "a fine film,pos\n"
                  ",neg\n"                                   # line 3: empty text
                  '"a review that goes\n'
                  'over two lines",pos\n'                    # lines 4-5: one row
                  "no label here,\n"                         # line 6: missing label
                  "NA,neg\n"                                 # line 7: a text that says NA is a text
                  "   ,pos\n"                                # line 8: blank text
                  "awful,neg\n"
                  + "".join(f"review {i},{'pos' if i % 2 else 'neg'}\n" for i in range(8)))
    (tmp_path / "test.jsonl").write_text(
        json.dumps({"text": "lovely", "label": "pos"}) + "\n"
        + json.dumps({"text": "so-so", "label": "meh"}) + "\n"          # line 2: label train never has
        + "\n"
        + json.dumps({"text": "", "label": "neg"}) + "\n"              # line 4: empty text
        + "{not json\n"                                                 # line 5
        + json.dumps({"text": "great", "label": "pos"}) + "\n")
    cfg = DataConfig(train="train.csv", test="test.jsonl", split={"validation": 0.3})
    with pytest.raises(DataError) as e:
        load_text_splits(cfg, seed=0, base_dir=tmp_path)
    msg = str(e.value)
    assert msg.splitlines()[0] == ("6 invalid row(s) in the data (empty text 3, missing label 1, not valid JSON 1, "
                                   "label not in train 1); the first 5:")
    for expected in (f"{tr} line 3: empty text", f"{tr} line 6: missing label", f"{tr} line 8: empty text",
                     f"{tmp_path / 'test.jsonl'} line 4: empty text",
                     f"{tmp_path / 'test.jsonl'} line 5: not valid JSON"):
        assert expected in msg
    assert "... and 1 more" in msg
    assert msg.endswith("Fix them, or set `data.drop_invalid: true` to drop such rows (the report counts them).")

    s = load_text_splits(cfg.model_copy(update={"drop_invalid": True}), seed=0, base_dir=tmp_path)
    assert s.info["dropped"] == {"train": {"empty text": 2, "missing label": 1},
                                 "test": {"empty text": 1, "not valid JSON": 1, "label not in train": 1}}
    assert "NA" in s.train.items + s.validation.items                     # kept: it is a text
    assert "a review that goes\nover two lines" in s.train.items + s.validation.items
    assert s.test.items == ["lovely", "great"] and s.label_names == ["neg", "pos"]


def test_an_unquoted_comma_is_named_not_shifted_into_an_index(tmp_path):
    # every row with an extra comma: pandas' read_csv would take the first field as an index, silently
    (tmp_path / "all.csv").write_text("text,label\n" + "".join(f"warm, funny {i},{i % 2}\n" for i in range(12))
                                      + "".join(f'"dull, long {i}",{i % 2}\n' for i in range(12)))
    with pytest.raises(DataError) as e:
        load_text_splits(DataConfig(source="all.csv"), seed=0, base_dir=tmp_path)
    assert str(e.value).splitlines()[:2] == [
        "12 invalid row(s) in the data (too many fields 12); the first 5:",
        f"  {tmp_path / 'all.csv'} line 2: 3 fields, the header has 2 (quote a text that contains a comma)"]
    s = load_text_splits(DataConfig(source="all.csv", drop_invalid=True), seed=0, base_dir=tmp_path)
    assert s.info["dropped"] == {"all.csv": {"too many fields": 12}}
    assert sorted(s.train.items + s.validation.items + s.test.items) == sorted(f"dull, long {i}" for i in range(12))


def test_unseen_label_line_is_named_and_dropping_it_is_counted(tmp_path):
    write_csv(tmp_path / "tr.csv", [("a", "x"), ("b", "y"), ("c", "x")])
    write_csv(tmp_path / "va.csv", [("d", "x")])
    write_csv(tmp_path / "te.csv", [("e", "y"), ("f", "z")])
    cfg = DataConfig(train="tr.csv", validation="va.csv", test="te.csv")
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'te.csv'} line 3: label 'z' does not appear in the "
                                                  f"training split (labels: x, y)")):
        load_text_splits(cfg, seed=0, base_dir=tmp_path)
    s = load_text_splits(cfg.model_copy(update={"drop_invalid": True}), seed=0, base_dir=tmp_path)
    assert s.test.items == ["e"] and s.info["dropped"] == {"test": {"label not in train": 1}}


def test_unreadable_images_are_listed_or_dropped(tmp_path):
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for split in ("train", "test"):                       # train/ and test/ only: validation carved per class
        for cls in (0, 1):
            d = tmp_path / "imgs" / split / f"digit{cls}"
            d.mkdir(parents=True)
            for j, i in enumerate(np.flatnonzero(digits.target == cls)[:8 if split == "train" else 3]):
                Image.fromarray((digits.images[i] * 16).astype(np.uint8)).resize((32, 32)).save(d / f"{j}.jpg")
    good = tmp_path / "imgs" / "train" / "digit1" / "5.jpg"
    cut = good.read_bytes()[: good.stat().st_size // 2]
    (tmp_path / "imgs" / "train" / "digit1" / "5.jpg").write_bytes(cut)           # truncated: decodes no more
    cfg = DataConfig(source="imgs", image_size=32)
    with pytest.raises(DataError) as e:
        load_image_splits(cfg, seed=0, base_dir=tmp_path)
    assert str(e.value).splitlines() == [
        "1 invalid row(s) in the data (unreadable image 1):",
        f"  {good}: cannot read image: Truncated File Read",
        "Fix them, or set `data.drop_invalid: true` to drop such rows (the report counts them)."]
    s = load_image_splits(cfg.model_copy(update={"drop_invalid": True}), seed=0, base_dir=tmp_path)
    assert s.info["dropped"] == {"train": {"unreadable image": 1}}
    assert good not in s.train.items + s.validation.items
    assert s.sizes() == {"train": 13, "validation": 2, "test": 6}
    assert s.info["split"] == "validation carved out of train: 0.1 of each class, seed 0"
    # the same folders named as `train:` and `test:` keys: the same carve
    keys = load_image_splits(DataConfig(train="imgs/train", test="imgs/test", image_size=32, drop_invalid=True),
                             seed=0, base_dir=tmp_path)
    assert keys.validation.items == s.validation.items and keys.test.items == s.test.items


# ---------------------------------------------------------------------------------------------
# 5. labels as users have them

@pytest.mark.parametrize("labels,names", [((-1, 1), ["-1", "1"]), ((0, 1000000), ["0", "1000000"]),
                                          ((1, 2), ["1", "2"]), ((0, 1, 2), ["0", "1", "2"])])
def test_integer_labels_map_to_contiguous_ids_named_as_given(tmp_path, labels, names):
    write_csv(tmp_path / "train.csv", labelled(12, labels))
    write_csv(tmp_path / "test.csv", labelled(6, labels, offset=60))
    s = load_text_splits(DataConfig(train="train.csv", test="test.csv"), seed=0, base_dir=tmp_path)
    assert s.label_names == names                              # two (or three) classes, never a million
    for split in (s.train, s.validation, s.test):
        for text, y in zip(split.items, split.labels):
            i = int(text.rsplit("#", 1)[1]) % len(labels)
            assert s.label_names[y] == str(labels[i])
    if labels == (0, 1, 2):                                    # already 0..K-1: ids are the values, as before
        assert all(int(s.label_names[y]) == y for y in s.train.labels)


def test_a_missing_label_turning_the_column_into_floats_still_matches_clean_labels(tmp_path):
    import pandas as pd

    train = pd.DataFrame({"text": [t for t, _ in labelled(10, [0])],
                          "label": [0.0, 1.0, 1.0, None, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0]})
    train.to_csv(tmp_path / "train.csv", index=False)            # written as 0.0 / 1.0 / empty
    assert "1.0" in (tmp_path / "train.csv").read_text()
    train.to_json(tmp_path / "train.json", orient="records")     # a JSON array: pandas reads floats and NaN
    write_csv(tmp_path / "valid.csv", [("ok", 0), ("fine", 1)])
    write_csv(tmp_path / "test.csv", [("good", 1), ("bad", 0)])
    for name, line in (("train.csv", "line 5"), ("train.json", "row 4")):
        cfg = DataConfig(train=name, validation="valid.csv", test="test.csv")
        with pytest.raises(DataError, match=re.escape(f"{tmp_path / name} {line}: missing label")):
            load_text_splits(cfg, seed=0, base_dir=tmp_path)
        s = load_text_splits(cfg.model_copy(update={"drop_invalid": True}), seed=0, base_dir=tmp_path)
        assert s.label_names == ["0", "1"] and s.validation.labels.tolist() == [0, 1]
        assert s.info["dropped"] == {"train": {"missing label": 1}} and len(s.train) == 9


# ---------------------------------------------------------------------------------------------
# 6. seed range; edgeft calibration -n 0

@pytest.mark.parametrize("seed", [-1, 2**40])
def test_seed_out_of_range_is_a_load_time_error(seed):
    probs = problems_of(small_recipe(seed=seed), check_data=False)
    assert probs == [("seed", f"{seed} is out of range: a seed is 0..4294967295 (2**32 - 1), what numpy, "
                              f"scikit-learn and torch all accept")]


def test_top_seed_works_through_the_split(tmp_path):
    write_csv(tmp_path / "all.csv", labelled(40, ["a", "b"]))
    r = validate_recipe(text_recipe({"source": str(tmp_path / "all.csv")}, seed=2**32 - 1))
    s = load_text_splits(r.data, r.seed, tmp_path)                  # seed + 1 wraps, never overflows
    assert s.sizes() == {"train": 28, "validation": 4, "test": 8}


def test_calibration_cli_refuses_zero_samples_and_bad_seed_without_traceback(tmp_path, capsys):
    from edgeft.calibration import read_manifest
    from edgeft.cli import main

    write_csv(tmp_path / "all.csv", labelled(40, ["a", "b"]))
    rf = tmp_path / "recipe.yaml"
    rf.write_text(yaml.safe_dump(text_recipe({"source": str(tmp_path / "all.csv")})))
    out = tmp_path / "calib.yaml"
    assert main(["calibration", str(rf), "-n", "0", "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "edgeft calibration: 1 problem(s)\n  -n/--num-samples: Input should be greater than 0"
    assert main(["calibration", str(rf), "-n", "8", "--seed", "-1", "--output", str(out)]) == 2
    assert "--seed: Input should be greater than or equal to 0" in capsys.readouterr().err
    assert not out.exists()
    assert main(["calibration", str(rf), "-n", "8", "--output", str(out)]) == 0
    assert read_manifest(out)[0].num_samples == 8 and not list(tmp_path.glob(".calib.yaml.*"))
    out.write_text(out.read_text().replace("seed: 0", "seed: -5"))
    assert read_manifest(out)[1] == [("seed", "Input should be greater than or equal to 0")]


# ---------------------------------------------------------------------------------------------
# 7. truncation counted per split

def test_truncated_examples_are_counted_per_split(tmp_path):
    from edgeft.recipe import load_recipe
    from edgeft.tasks import get_task

    long = " ".join(["an endlessly winding review"] * 20)
    rows = [(f"short {i}", "ab"[i % 2]) for i in range(30)] + [(f"{long} {i}", "ab"[i % 2]) for i in range(10)]
    write_csv(tmp_path / "all.csv", rows)
    rf = tmp_path / "recipe.yaml"
    rf.write_text(yaml.safe_dump(text_recipe({"source": "all.csv", "max_length": 16})))
    recipe = load_recipe(rf)
    s = get_task(recipe.task).load_splits(recipe)
    cut = s.info["truncated"]
    assert cut["max_length"] == 16
    assert sum(cut[n] for n in ("train", "validation", "test")) == 10
    assert cut["test"] == sum(long in t for t in s.test.items) and cut["train"] == sum(long in t for t in s.train.items)


# ---------------------------------------------------------------------------------------------
# 8. the report names the data; cache keys

def test_report_header_names_the_files_and_shows_drops_and_truncation():
    from edgeft.report import render_markdown

    report = {"recipe": {"name": "mine", "task": "text-classification", "seed": 0,
                         "model": {"source": "shipped:all-MiniLM-L6-v2"},
                         "data": {"source": None, "train": "data/train.csv", "validation": None,
                                  "test": "data/test.csv", "split": {"validation": 0.1, "test": 0.2},
                                  "max_length": 64}},
              "data": {"train": 2400, "validation": 266, "test": 600, "test_mean_tokens": 21.0,
                       "split": "validation carved out of train: 0.1 of it, stratified by label, seed 0",
                       "dropped": {"train": {"empty text": 2, "missing label": 1}},
                       "truncated": {"max_length": 64, "train": 12, "validation": 0, "test": 3}},
              "rows": []}
    md = render_markdown(report, image=None)
    assert ("data train `data/train.csv`, validation 0.1 of train, test `data/test.csv` (max_length 64)" in md)
    assert "data `None`" not in md
    assert "- **Split:** validation carved out of train: 0.1 of it, stratified by label, seed 0" in md
    assert "- **Dropped** (`data.drop_invalid`): train 3 (empty text 2, missing label 1)" in md
    assert "- **Truncated** at max_length 64: train 12 (0.5%), validation 0, test 3 (0.5%)" in md


def test_cache_keys_change_for_users_text_files_only(tmp_path):
    from edgeft.recipe import USER_TEXT_LOADER

    builtin = validate_recipe(small_recipe()).context_fields()["data"]
    assert set(builtin) == {"source", "train", "validation", "test", "split", "group_column", "text_column",
                            "label_column", "max_length", "max_samples"}         # as before: no new keys
    dropping = small_recipe()
    dropping["data"] = {**dropping["data"], "drop_invalid": True}
    assert validate_recipe(dropping).context_fields()["data"] == builtin      # same data either way
    write_csv(tmp_path / "all.csv", labelled(20, ["a", "b"]))
    user = validate_recipe(text_recipe({"source": str(tmp_path / "all.csv")})).context_fields()["data"]
    assert user["loader"] == USER_TEXT_LOADER                                  # new splits, new ids: new keys
    image = small_recipe(task="image-classification", model={"source": "shipped:efficientnet-lite0"},
                         data={"source": "builtin:fashion_mnist", "image_size": 32})
    assert not {"loader", "drop_invalid"} & set(validate_recipe(image, check_data=False).context_fields()["data"])
