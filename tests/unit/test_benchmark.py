"""benchmark stage, end to end on real parts: shipped MiniLM, real Rotten Tomatoes texts, real
runtimes (PyTorch eager, ONNX Runtime FP32 and dynamic INT8), through the runner (so the report is
written too), with the real finetune, export and quantize stages: nothing is stood in for.

Fine-tuning is kept tiny (64 train and 32 validation texts, one epoch of 4 steps): the benchmark needs
a torch model, not a good one (tests/unit/test_finetune.py covers training), so the head sits near
chance and accuracy is checked by recomputing it from each artifact's own logits, not against a floor."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import small_recipe

REQUIRED = ("artifact", "stage", "target", "precision", "accuracy", "f1", "latency_ms", "latency_fixed_ms",
            "throughput_sps", "size_mb", "params", "macs", "peak_rss_mb")


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    from edgeft.recipe import validate_recipe
    from edgeft.runner import run_recipe

    raw = small_recipe(stages=[
        {"name": "finetune", "type": "finetune", "epochs": 1, "batch_size": 16},
        {"name": "export", "type": "export", "optimize": False},
        # a barely trained head has near-tied logits that INT8 may flip: INT8 quality is not tested here
        {"name": "int8", "type": "quantize", "method": "dynamic", "parity": {"min_agreement": 0.5}},
        {"name": "bench", "type": "benchmark", "artifacts": ["@finetune", "@export", "@int8"],
         "targets": ["pytorch", "cpu"], "threads": 1, "latency_samples": 20, "rounds": 2, "warmup": 3, "fixed_runs": 5,
         "throughput_batches": 2, "memory": True},
    ])
    raw["data"]["max_samples"] = {"train": 64, "validation": 32, "test": 200}
    recipe = validate_recipe(raw)
    result = run_recipe(recipe, runs_dir=tmp_path_factory.mktemp("runs"))
    return result, recipe


def _own_metrics(art, recipe) -> tuple[float, float]:
    """Accuracy and macro-F1 of an artifact on the recipe's test split, from its own logits: HF
    transformers for a torch folder, a plain ONNX Runtime session (1 thread, as the row ran) for an
    .onnx file, the metrics counted here. Batches as the benchmark documents them (64, sorted by
    length), so dynamic INT8's per-batch activation ranges are the same and the figures match exactly."""
    import onnxruntime as ort
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from edgeft.tasks import get_task

    splits = get_task(recipe.task).load_splits(recipe)
    test = splits.test
    labels = np.asarray(test.labels)
    tok = AutoTokenizer.from_pretrained(str(art.path))
    max_len = recipe.data.max_length
    order = np.argsort([len(x) for x in tok(list(test.items), truncation=True, max_length=max_len)["input_ids"]],
                       kind="stable")
    if art.kind == "torch":
        model = AutoModelForSequenceClassification.from_pretrained(str(art.path)).eval()
    else:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        sess = ort.InferenceSession(str(art.main_path), opts, providers=["CPUExecutionProvider"])
        names = {i.name for i in sess.get_inputs()}
    pred = np.full(len(labels), -1)
    for ix in np.array_split(order, -(-len(order) // 64)):
        enc = tok([test.items[i] for i in ix], truncation=True, max_length=max_len, padding="longest",
                  return_tensors="np")
        if art.kind == "torch":
            with torch.inference_mode():
                logits = model(**{k: torch.from_numpy(v.astype(np.int64)) for k, v in enc.items()}).logits.numpy()
        else:
            logits = sess.run(["logits"], {k: v.astype(np.int64) for k, v in enc.items() if k in names})[0]
        pred[ix] = logits.argmax(-1)
    f1s = []
    for c in range(len(splits.label_names)):
        tp, fp, fn = [int(((pred == c) & (labels == c)).sum()), int(((pred == c) & (labels != c)).sum()),
                      int(((pred != c) & (labels == c)).sum())]
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return float((pred == labels).mean()), float(np.mean(f1s))


@pytest.mark.slow
def test_rows_fields_and_numbers(bench):
    result, recipe = bench
    ft = result.artifacts["finetune"].meta             # the real finetune stage trained this model
    assert ft["train_precision"] == "fp32" and len(ft["val_accuracy_per_epoch"]) == 1 and ft["label_names"]
    art = result.artifacts["bench"]
    assert art.kind == "report" and art.file == "report.json"
    report = json.loads(art.main_path.read_text())
    rows = report["rows"]
    # targets in recipe order, artifacts in recipe order, only compatible pairs
    assert [(r["artifact"], r["target"]) for r in rows] == [("finetune", "pytorch"), ("export", "cpu"),
                                                            ("int8", "cpu")]
    assert [r["precision"] for r in rows] == ["fp32", "fp32", "int8"]
    for r in rows:
        for k in REQUIRED:
            assert r.get(k) is not None, (r["artifact"], k)
        lat = r["latency_ms"]
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"]
        assert 0 < r["latency_fixed_ms"]["p50"] <= r["latency_fixed_ms"]["p90"]
        # the figures are this artifact's own on the 200 test texts, recomputed from its logits
        acc, f1 = _own_metrics(result.artifacts[r["artifact"]], recipe)
        assert r["accuracy"] == pytest.approx(acc, abs=1e-9) and r["f1"] == pytest.approx(f1, abs=1e-9), r["artifact"]
        assert r["throughput_sps"] > 0 and r["size_mb"] > 0 and r["peak_rss_mb"] > r["model_rss_mb"] > 0
        assert r["params"] > 20e6 and r["macs"] > 0
        fp = r["fingerprint"]
        assert fp["threads"] == 1 and fp["target"] == r["target"] and "cpu" in fp and "runtimes" in fp
    assert rows[0]["fingerprint"]["provider"] == "eager fp32"
    assert rows[1]["fingerprint"]["provider"] == "CPUExecutionProvider"
    # same model, same MACs and params, whatever runtime or precision
    assert rows[0]["macs"] == rows[1]["macs"] == rows[2]["macs"]
    assert rows[0]["params"] == rows[1]["params"] == rows[2]["params"]
    # MiniLM-L6: ~10.6M MACs per token in linears plus attention, at seq 32
    assert 10.6e6 * 32 < rows[0]["macs"] < 11.5e6 * 32
    # FP32 export predicts like its source; INT8 weights are ~4x smaller
    assert abs(rows[1]["accuracy"] - rows[0]["accuracy"]) <= 0.01
    assert rows[2]["size_mb"] < rows[1]["size_mb"] / 3
    assert rows[0]["speedup_vs_reference"] == 1.0 and rows[0]["accuracy_delta_vs_reference"] == 0.0
    for r in rows[1:]:
        assert r["reference"] == "finetune@pytorch" and r["speedup_vs_reference"] > 0
    assert report["data"]["test"] == 200 and report["settings"]["latency_samples_used"] == 20
    assert report["recipe"]["name"] == "tiny" and report["environment"]["cores"]
    timings = json.loads((art.path / "timings.json").read_text())
    assert len(timings["finetune@pytorch:real"]) == 2 * 20 and len(timings["int8@cpu:fixed"]) == 2 * 5


@pytest.mark.slow
def test_report_written_to_run_dir(bench):
    result, _ = bench
    md = (result.run_dir / "report.md").read_text()
    assert "## Target `pytorch`" in md and "## Target `cpu`" in md
    for name in ("finetune", "export", "int8"):
        assert f"| {name} |" in md or f"| **{name}** |" in md
    png = (result.run_dir / "pareto.png").read_bytes()
    assert png[:4] == b"\x89PNG" and len(png) > 1024
    assert json.loads((result.run_dir / "report.json").read_text())["rows"]


@pytest.mark.slow
def test_sessions_agree_on_real_inputs(bench):
    """The targets' sessions give the same logits for the same encoded batch (FP32)."""
    from edgeft.targets import target_module
    from edgeft.tasks import get_task

    result, _ = bench
    task = get_task("text-classification")
    torch_art, onnx_art = result.artifacts["finetune"], result.artifacts["export"]
    proc = task.load_processor(onnx_art.path)
    batch = task.encode(proc, ["a gripping, funny film", "flat and long"], 32)
    a = target_module("pytorch").load(torch_art, 1, task).run(batch)
    b = target_module("cpu").load(onnx_art, 1, task).run(batch)
    assert a.shape == b.shape == (2, 2)
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_reference_artifact_sets_every_rows_baseline():
    from edgeft.rows import compare_to_reference

    def row(artifact, target, key, source, p50, acc):
        return {"artifact": artifact, "target": target, "key": key, "torch_source": source,
                "latency_ms": {"p50": p50}, "accuracy": acc}

    rows = [row("teacher", "pytorch", "T", "T", 12.0, 0.84), row("student", "pytorch", "S", "S", 6.0, 0.83),
            row("student-int8", "cpu", "Q", "S", 1.5, 0.825)]
    compare_to_reference(rows)                                 # default: each row's own torch model
    assert rows[2]["reference"] == "student@pytorch" and rows[2]["speedup_vs_reference"] == 4.0
    compare_to_reference(rows, reference="teacher")            # the dense teacher: what pruning bought
    assert rows[2]["reference"] == "teacher@pytorch" and rows[2]["speedup_vs_reference"] == 8.0
    assert rows[1]["accuracy_delta_vs_reference"] == -1.0


def test_reference_must_be_a_benchmarked_artifact_on_pytorch():
    from edgeft.errors import RecipeError
    from edgeft.recipe import validate_recipe
    from tests.conftest import small_recipe

    stages = [{"name": "ft", "type": "finetune"}, {"name": "onnx", "type": "export"},
              {"name": "b", "type": "benchmark", "artifacts": ["@onnx"], "targets": ["cpu"], "reference": "@ft"}]
    with pytest.raises(RecipeError) as e:
        validate_recipe(small_recipe(stages=stages), check_data=False)
    assert any(p == "stages[2].reference" and "not one of" in r for p, r in e.value.problems)


def test_bench_inputs_batches_samples_and_shapes():
    """The shared input encoding (stage and compare_peers): accuracy batches sorted by the task's own
    lengths, batch-1 requests at their own length, the fixed request padded to `fixed_length`,
    throughput batches padded to their longest; the seeded draws the stage always made."""
    from edgeft.targets.inputs import encode_bench_inputs, sample_indices

    class Task:     # a "token" per character, truncated at max_length
        @staticmethod
        def example_lengths(proc, items, max_length):
            return np.array([min(len(x), max_length) for x in items])

        @staticmethod
        def encode(proc, items, max_length, pad_to_max=False):
            n = max_length if pad_to_max else max(min(len(x), max_length) for x in items)
            return {"input_ids": np.array([[len(x)] * n for x in items], dtype=np.int64)}

    items = ["x" * n for n in (5, 1, 9, 3, 12, 2, 7)]
    rng = np.random.default_rng(7)
    want_lat = rng.choice(len(items), size=4, replace=False)
    want_tp = np.resize(rng.permutation(len(items)), 3 * 3)
    lat_idx, tp_idx = sample_indices(len(items), 7, latency_samples=4, tp_batch_size=3, tp_batches=3)
    assert (lat_idx == want_lat).all() and (tp_idx == want_tp).all() and len(set(lat_idx)) == 4
    assert len(sample_indices(len(items), 7, 100, 3, 3)[0]) == len(items)       # capped at the split

    x = encode_bench_inputs(Task, None, items, 10, lat_idx, tp_idx, 3, fixed_length=16, eval_batch_size=3)
    assert x.lengths.tolist() == [5, 1, 9, 3, 10, 2, 7]
    assert [ix.tolist() for ix, _ in x.evals] == [[1, 5, 3], [0, 6], [2, 4]]       # sorted by length, 3 batches
    assert [b["input_ids"].shape for _, b in x.evals] == [(3, 3), (2, 7), (2, 10)]
    assert [b["input_ids"].shape for b in x.real] == [(1, x.lengths[i]) for i in lat_idx]
    assert x.real_lengths.tolist() == x.lengths[lat_idx].tolist()
    assert x.fixed["input_ids"].shape == (1, 16) and x.fixed["input_ids"][0, 0] == len(items[lat_idx[0]])
    assert [b["input_ids"].shape for b in x.tp] == [(3, n) for n in x.tp_lengths]
    assert x.tp_lengths == [int(x.lengths[ix].max()) for ix in np.array_split(tp_idx, 3)]
