"""`edgeft init`: a starter recipe from a user's file or image folder, valid as written.

Real data throughout: Rotten Tomatoes snippets written out as users' CSV / JSONL files with their own
column names, Fashion-MNIST images written out as PNG class folders; every written recipe is loaded
back with `load_recipe` (data checks on) and its calibration manifest must match the data.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edgeft.cli import main
from edgeft.errors import DataError, EdgeftError
from edgeft.init_recipe import (
    inspect_data,
    render_recipe,
    suggest_image_size,
    suggest_max_length,
    training_plan,
    write_starter,
)
from edgeft.recipe import load_recipe


def rotten_tomatoes_frame(n: int, seed: int = 0):
    """n real snippets (fresh / rotten) with the movie they are about."""
    import pandas as pd

    from edgeft.data.text import rotten_tomatoes_path

    df = pd.read_csv(rotten_tomatoes_path())
    df = df[df.category.isin(["fresh", "rotten"])].drop_duplicates("text")
    return df.sample(n=n, random_state=seed).reset_index(drop=True)


@pytest.fixture(scope="module")
def rt_csv(tmp_path_factory) -> Path:
    """400 snippets as a user's CSV: columns review, sentiment, movie."""
    df = rotten_tomatoes_frame(400)
    path = tmp_path_factory.mktemp("rt") / "reviews.csv"
    df.rename(columns={"text": "review", "category": "sentiment", "movie_name": "movie"})[
        ["movie", "review", "sentiment"]].to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def rt_starter(rt_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "starter.yaml"
    return write_starter(rt_csv, out)


def test_csv_columns_classes_lengths_found(rt_starter, rt_csv):
    import pandas as pd

    f, _, _, _ = rt_starter
    df = pd.read_csv(rt_csv)
    assert (f.text_column, f.label_column) == ("review", "sentiment")
    assert f.rows == 400 and sum(f.class_counts.values()) == 400
    assert f.class_counts == df.sentiment.value_counts().to_dict()
    assert set(f.class_counts) == {"fresh", "rotten"}
    tl = f.token_lengths
    assert 5 < tl["p50"] <= tl["p95"] <= tl["p99"] <= tl["max"] < 200
    # the smallest multiple of 16 that covers 99% of the snippets, within the model's 512 positions
    assert f.max_length % 16 == 0 and f.max_length >= tl["p99"] and f.max_length - 16 < tl["p99"]
    assert f.position_limit == 512 and f.truncated <= 0.01


def test_written_recipe_loads_with_data_checks_and_real_calibration(rt_starter, rt_csv):
    f, out, manifest, recipe = rt_starter
    r = load_recipe(out)                                  # data checks on: file, columns, model, manifests
    assert r.task == "text-classification" and r.model.source == "shipped:all-MiniLM-L6-v2"
    assert (r.data.text_column, r.data.label_column, r.data.max_length) == ("review", "sentiment", f.max_length)
    assert r.resolve_path(r.data.source).resolve() == rt_csv.resolve()
    types = [s.type for s in r.stages]
    assert types[0] == "finetune" and types[-1] == "benchmark" and {"export", "prune", "distill"} <= set(types)
    methods = {s.name: s.method for s in r.stages if s.type == "quantize"}
    assert {"dynamic", "static", "nncf_ptq"} <= set(methods.values())
    assert set(r.stage("bench").targets) == {"pytorch", "cpu", "openvino"}
    # every calibrated stage names the manifest written next to the recipe, drawn from this very data
    calibrated = [s for s in r.stages if getattr(s, "calibration", None)]
    assert calibrated and all(r.resolve_path(s.calibration) == manifest for s in calibrated)
    m = yaml.safe_load(manifest.read_text())
    assert m["source"] == r.data.source and m["num_samples"] == 256 and len(m["sha256"]) == 64
    # commented: the findings are in the recipe's header
    text = out.read_text()
    assert text.startswith("# Starter recipe") and f"p99 {f.token_lengths['p99']}" in text


def test_cli_prints_summary_and_next_command(rt_csv, tmp_path, capsys):
    out = tmp_path / "r.yaml"
    assert main(["init", str(rt_csv), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    for want in ("reviews.csv", "400 with text and label", "text: review, label: sentiment", "fresh",
                 "max_length", f"next: edgeft run {out}", "r.calibration.yaml"):
        assert want in printed, want
    # an existing recipe is not overwritten without --force
    before = out.read_text()
    assert main(["init", str(rt_csv), "-o", str(out)]) == 1
    assert "already exist" in capsys.readouterr().err and out.read_text() == before
    assert main(["init", str(rt_csv), "-o", str(out), "--force", "--text-column", "review",
                 "--label-column", "sentiment"]) == 0
    load_recipe(out)


def test_label_by_lowest_cardinality_in_jsonl(tmp_path):
    """No column named like a label: the one with the fewest distinct values is (integers 0/1 here)."""
    df = rotten_tomatoes_frame(300, seed=1)
    path = tmp_path / "snippets.jsonl"
    with path.open("w") as fh:
        for row in df.itertuples():
            fh.write(json.dumps({"film": row.movie_name, "snippet": row.text,
                                 "fresh": int(row.category == "fresh")}) + "\n")
    f, out, _, _ = write_starter(path, tmp_path / "j.yaml")
    assert (f.text_column, f.label_column) == ("snippet", "fresh")
    assert set(f.class_counts) == {"0", "1"} and f.rows == 300
    r = load_recipe(out)
    assert r.data.source == "snippets.jsonl"            # relative to the recipe, which sits beside it


def test_missing_rows_counted(tmp_path):
    df = rotten_tomatoes_frame(200, seed=2)[["text", "category"]]
    df.loc[:4, "category"] = None
    df.loc[5:7, "text"] = "  "
    path = tmp_path / "holes.csv"
    df.to_csv(path, index=False)
    f = inspect_data(path)
    assert f.rows == 192 and f.dropped == {"empty or missing text": 3, "missing label": 5}


def test_render_is_yaml_with_the_findings(rt_starter):
    f = rt_starter[0]
    raw = yaml.safe_load(render_recipe(f, name="x", data_ref="d.csv", calibration="c.yaml"))
    assert raw["name"] == "x" and raw["data"]["source"] == "d.csv" and raw["data"]["max_length"] == f.max_length
    assert sum(1 for s in raw["stages"] if s.get("calibration") == "c.yaml") >= 3


def test_suggested_sizes():
    assert suggest_max_length([10] * 99 + [200], 512) == 16           # 99% fit in 16
    assert suggest_max_length([10] * 98 + [200] * 2, 512) == 208      # 2% long: they count
    assert suggest_max_length([3], 512) == 16
    assert suggest_max_length([600] * 10, 512) == 512                 # capped at the position limit
    assert suggest_image_size(28) == 64 and suggest_image_size(100) == 128 and suggest_image_size(375) == 224


def test_training_plan_scales_with_data(rt_starter):
    """Small sets: smaller batches, more epochs (at least ~150 steps); large ones: the default recipe's."""
    from dataclasses import replace

    f = rt_starter[0]                                       # 400 rows: ~280 training examples
    small = training_plan(f)
    assert small["batch_size"] == 16 and small["epochs"] == 9 and small["steps"] >= 150
    large = training_plan(replace(f, rows=12_752))
    assert (large["batch_size"], large["epochs"], large["lr"]) == (32, 3, "5.0e-5")
    r = load_recipe(rt_starter[1])
    assert (r.stage("finetune").epochs, r.stage("finetune").batch_size) == (small["epochs"], 16)


# ------------------------------------------------------------------------------- refusals

def _csv(tmp_path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("name, content, message", [
    ("empty.csv", "", "the file is empty"),
    ("header.csv", "text,label\n", "no rows"),
    ("notes.txt", "just some notes\n", "not a table"),
    ("data.csv.bz2", "x", "decompress"),
    ("one.csv", "text,label\nit was good,pos\nit was bad,pos\nit was fine,pos\n", "at least two classes"),
    ("two.csv", "text,label,category\nit was good,pos,a\nit was bad,neg,b\n", "several columns look like the label"),
    ("tie.csv", "title,body,label\ngood film,bad film,pos\nbad film,good film,neg\n", "cannot tell the text column"),
    ("nums.csv", "x,label\n1,0\n2,1\n", "no column holds text"),
    ("nolabel.csv", "id,text\n1,good film\n2,bad film\n3,fine film\n", "no label column"),
])
def test_refused_with_clear_error(tmp_path, name, content, message):
    path = _csv(tmp_path, name, content)
    with pytest.raises(DataError, match=message) as e:
        write_starter(path, tmp_path / "r.yaml")
    assert not (tmp_path / "r.yaml").exists()
    if "column" in message and name != "tie.csv":
        assert "columns:" in str(e.value)                  # the error lists the columns


def test_binary_file_named_csv_and_missing_override_column(tmp_path):
    png = tmp_path / "photo.csv"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    with pytest.raises(DataError):
        inspect_data(png)
    path = _csv(tmp_path, "ok.csv", "text,label\ngood film,pos\nbad film,neg\n")
    with pytest.raises(DataError, match="--text-column 'review': no such column.*columns: text, label"):
        inspect_data(path, text_column="review")
    with pytest.raises(EdgeftError, match="not a file"):
        inspect_data(path, task="image")


def test_cli_error_exit_code(tmp_path, capsys):
    path = _csv(tmp_path, "one.csv", "text,label\ngood,pos\nbad,pos\n")
    assert main(["init", str(path), "-o", str(tmp_path / "r.yaml")]) == 1
    assert "at least two classes" in capsys.readouterr().err


# ------------------------------------------------------------------------------- images

@pytest.fixture(scope="module")
def fmnist_folders(tmp_path_factory):
    """Real Fashion-MNIST images as PNG class folders: flat (3 classes x 30) and train/ + test/."""
    from PIL import Image

    from edgeft.data.images import fashion_mnist_dir, load_fashion_mnist

    if not (fashion_mnist_dir() / "t10k-labels-idx1-ubyte.gz").is_file():
        pytest.skip(f"Fashion-MNIST is not installed in {fashion_mnist_dir()}: "
                    f"apt-get install -y dataset-fashion-mnist")
    splits = load_fashion_mnist(0.1, seed=0)
    root = tmp_path_factory.mktemp("fm")
    wanted = {"Trouser", "Bag", "Sneaker"}
    for folder, split, n in (("flat", splits.train, 30), ("tt/train", splits.train, 24), ("tt/test", splits.test, 8)):
        count: dict[str, int] = {}
        for x, y in zip(split.items, split.labels):
            name = splits.label_names[y]
            if name in wanted and count.get(name, 0) < n:
                count[name] = count.get(name, 0) + 1
                d = root / folder / name
                d.mkdir(parents=True, exist_ok=True)
                Image.fromarray(x).save(d / f"{count[name]:03d}.png")
    return root


def test_image_folder_recipe(fmnist_folders, tmp_path):
    f, out, manifest, _ = write_starter(fmnist_folders / "flat", tmp_path / "img.yaml")
    assert f.task == "image-classification" and f.class_counts == {"Bag": 30, "Sneaker": 30, "Trouser": 30}
    assert f.image_sizes["median"] == "28x28" and f.image_size == 64
    r = load_recipe(out)
    assert r.model.source == "shipped:efficientnet-lite0" and r.data.image_size == 64
    assert (r.data.split.validation, r.data.split.test) == (0.1, 0.2)
    assert yaml.safe_load(manifest.read_text())["num_samples"] == 90 - 9 - 18     # the whole train split


def test_image_train_test_folders(fmnist_folders, tmp_path):
    f, out, _, _ = write_starter(fmnist_folders / "tt", tmp_path / "tt.yaml", task="image")
    assert f.split_counts == {"train": 72, "test": 24} and f.class_counts["Bag"] == 24
    r = load_recipe(out)
    assert r.data.split.validation == 0.1
    assert "test" not in yaml.safe_load(out.read_text())["data"]["split"]   # the test/ folder is the test set


def test_image_folder_refusals(fmnist_folders, tmp_path):
    import shutil

    single = tmp_path / "single"
    shutil.copytree(fmnist_folders / "flat" / "Bag", single / "Bag")
    with pytest.raises(DataError, match="only one class folder"):
        inspect_data(single)
    (tmp_path / "nofolders").mkdir()
    (tmp_path / "nofolders" / "a.png").write_bytes((fmnist_folders / "flat" / "Bag" / "001.png").read_bytes())
    with pytest.raises(DataError, match="no class folders"):
        inspect_data(tmp_path / "nofolders")
    broken = tmp_path / "broken"
    shutil.copytree(fmnist_folders / "flat", broken)
    (broken / "Bag" / "bad.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="bad.png"):
        inspect_data(broken)


# ------------------------------------------------------------------------------- the newcomer's two commands

@pytest.mark.slow
def test_init_then_run(tmp_path):
    """`edgeft init data.csv -o r.yaml` then `edgeft run r.yaml` (made small with -o): a report with rows."""
    df = rotten_tomatoes_frame(600, seed=3)
    data = tmp_path / "data.csv"
    df.rename(columns={"text": "review", "category": "sentiment"})[["review", "sentiment"]].to_csv(data, index=False)
    cli = [sys.executable, "-m", "edgeft.cli"]
    done = subprocess.run(cli + ["init", "data.csv", "-o", "r.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "next: edgeft run r.yaml" in done.stdout
    # 600 snippets: ~420 to train on; the recipe says batch 16, lr 8e-5, 6 epochs; 3 are enough to beat the
    # majority class clearly (validation 0.70-0.73 after 2-3 epochs in a trial)
    small = ["data.max_length=32", "stages.finetune.epochs=3", "stages.distill.epochs=1",
             "stages.prune.importance_samples=128", "stages.int8-static.fallback_samples=32",
             "stages.bench.latency_samples=20", "stages.bench.rounds=1", "stages.bench.warmup=2",
             "stages.bench.fixed_runs=5", "stages.bench.throughput_batches=1", "stages.bench.memory=false"]
    done = subprocess.run(cli + ["run", "r.yaml", "--runs", "runs"] + [a for o in small for a in ("-o", o)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=1800)
    report = tmp_path / "runs" / "data" / "report.json"
    assert report.is_file(), done.stdout[-3000:] + done.stderr[-3000:]
    rows = json.loads(report.read_text())["rows"]
    got = {(r["artifact"], r["target"]) for r in rows}
    assert {("finetune", "pytorch"), ("onnx", "cpu"), ("int8-dynamic", "cpu"), ("student-int8", "cpu")} <= got, got
    teacher = next(r for r in rows if (r["artifact"], r["target"]) == ("finetune", "pytorch"))
    assert teacher["accuracy"] >= 0.62, teacher["accuracy"]          # the majority class is ~55-58%
    assert done.returncode == 0, done.stdout[-3000:]
