"""benchmarks/compare_peers.py: edgeft rows against the peers a user would pick instead.

End to end on real parts: a tiny real run (shipped MiniLM with a fresh seeded head standing in for
fine-tuning; the real export, dynamic-INT8 quantize and benchmark
stages through the runner), then compare_peers with every peer (PyTorch, Optimum + ONNX Runtime FP32
and dynamic INT8, OpenVINO FP32, OpenVINO + NNCF INT8) on tiny settings. Nothing is timed against a
threshold: the machine is shared. The helpers (peaks, headline, MACs fit, markdown) are tested on
synthetic numbers.
"""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from tests.conftest import ROOT, small_recipe

PEERS = ["pytorch-fp32", "ort-fp32", "ort-int8-dynamic", "openvino-fp32", "openvino-nncf-int8"]
ROW_NUMBERS = ("macs_real_mean", "macs_fixed", "gops_real", "gops_fixed", "gops_throughput", "peak_gops",
               "peak_share_real", "peak_share_fixed", "peak_share_throughput", "throughput_sps", "size_mb")
BEST_FIELDS = ("artifact", "target", "accuracy", "p50_ms", "speedup_vs_best_peer")


@pytest.fixture(scope="module")
def cp():
    """The script as a module (benchmarks/ is not a package), its folder on sys.path as when it runs
    as `python benchmarks/compare_peers.py` (it imports `peers` from there)."""
    folder = str(ROOT / "benchmarks")
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location("compare_peers", ROOT / "benchmarks" / "compare_peers.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["compare_peers"] = mod
    spec.loader.exec_module(mod)
    yield mod
    if added:
        sys.path.remove(folder)


def _finetune_stand_in(cfg, inputs, ctx):
    import torch

    from edgeft.models import resolve_source

    src = resolve_source(ctx.recipe.model.source)
    torch.manual_seed(ctx.recipe.seed)          # the new head is random: the same every run
    model = ctx.task.load_model(src, ctx.splits().label_names)
    model.save_pretrained(ctx.out_dir)
    ctx.task.load_processor(src).save_pretrained(ctx.out_dir)
    return ctx.artifact("torch", meta={"precision": "fp32"})


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    import edgeft.stages as registry
    from edgeft.recipe import validate_recipe
    from edgeft.runner import run_recipe

    raw = small_recipe(name="tiny-peers", stages=[
        {"name": "finetune", "type": "finetune", "epochs": 1, "batch_size": 16},
        {"name": "export", "type": "export", "optimize": False},
        # an untrained head has near-tied logits that INT8 may flip: INT8 quality is not tested here
        {"name": "int8", "type": "quantize", "method": "dynamic", "parity": {"min_agreement": 0.5}},
        {"name": "bench", "type": "benchmark", "artifacts": ["@finetune", "@export", "@int8"],
         "targets": ["pytorch", "cpu"], "latency_samples": 4, "rounds": 1, "warmup": 1, "fixed_runs": 2,
         "throughput_batch_size": 8, "throughput_batches": 1, "memory": False},
    ])
    raw["data"]["max_samples"] = {"train": 64, "validation": 32, "test": 64}
    recipe = validate_recipe(raw)
    real = registry.run_function
    runs = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(registry, "run_function", lambda t: _finetune_stand_in if t == "finetune" else real(t))
        result = run_recipe(recipe, runs_dir=runs)
    return result.run_dir


@pytest.fixture(scope="session")
def openvino_installed():
    """Checked before the tiny run is built, so a machine without the extra skips at once."""
    pytest.importorskip("openvino", reason="the OpenVINO peers need the [openvino] extra")
    pytest.importorskip("nncf", reason="the OpenVINO + NNCF peer needs the [openvino] extra")


@pytest.fixture(scope="module")
def compared(openvino_installed, cp, tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("peers")
    argv = [str(tiny_run), "--json", str(out / "peers.json"), "--md", str(out / "peers.md"),
            "--samples", "10", "--rounds", "1", "--warmup", "1", "--fixed-runs", "2",
            "--throughput-batch-size", "8", "--throughput-batches", "1", "--calibration-samples", "10",
            "--max-test", "48", "--threads", "2"]
    returned = cp.main(argv)
    return returned, json.loads((out / "peers.json").read_text()), (out / "peers.md").read_text(), tiny_run


def _model_metrics(run_dir, n: int) -> tuple[float, float]:
    """Accuracy and macro-F1 of the run's torch model (HF transformers, one batch) on the seeded n-sentence
    subset of the run's test split that --max-test draws; the metrics counted here."""
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from edgeft.recipe import validate_recipe
    from edgeft.tasks import get_task

    recipe = validate_recipe(json.loads((run_dir / "run.json").read_text())["recipe"], check_data=False)
    splits = get_task(recipe.task).load_splits(recipe)
    test = splits.test.subset(np.sort(np.random.default_rng(recipe.seed).choice(len(splits.test), n, replace=False)))
    folder = json.loads((run_dir / "run.json").read_text())["stages"]["finetune"]["path"]
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.inference_mode():
        pred = model(**tok(list(test.items), truncation=True, max_length=recipe.data.max_length, padding=True,
                           return_tensors="pt")).logits.argmax(-1).numpy()
    labels = np.asarray(test.labels)
    f1s = []
    for c in range(len(splits.label_names)):
        tp, fp, fn = (int(((pred == c) & (labels == c)).sum()), int(((pred == c) & (labels != c)).sum()),
                      int(((pred != c) & (labels == c)).sum()))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return float((pred == labels).mean()), float(np.mean(f1s))


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and x > 0


@pytest.mark.slow
def test_every_peer_and_edgeft_row_measured(compared):
    returned, out, _, run_dir = compared
    assert set(out) >= {"peers", "edgeft", "best", "best_fixed", "machine", "settings"}
    assert [p["name"] for p in out["peers"]] == PEERS
    from edgeft.targets import unavailable_reason

    # OpenVINO's default precision, which the peers keep, is bf16 on CPUs with AMX / AVX-512 BF16
    ov_default = "fp32" if unavailable_reason("openvino-bf16") else "bf16"
    assert [p["precision"] for p in out["peers"]] == ["fp32", "fp32", "int8", ov_default, "int8"]
    report = json.loads((run_dir / "report.json").read_text())
    assert [(r["artifact"], r["target"]) for r in out["edgeft"]] == [(r["artifact"], r["target"])
                                                                     for r in report["rows"]]
    assert [r["name"] for r in out["edgeft"]] == ["finetune@pytorch", "export@cpu", "int8@cpu"]
    # the eager FP32 rows' figures are the model's own on the test subset, recomputed here from its logits;
    # every other row's accuracy is a count of those same n sentences
    n = out["settings"]["test_size"]
    acc, f1 = _model_metrics(run_dir, n)
    for name, r in (("pytorch-fp32", out["peers"][0]), ("finetune@pytorch", out["edgeft"][0])):
        assert r["name"] == name and r["accuracy"] == pytest.approx(acc, abs=1e-9), (name, r["accuracy"], acc)
        assert r["f1"] == pytest.approx(f1, abs=1e-9), (name, r["f1"], f1)
    for r in out["peers"] + out["edgeft"]:
        assert r["accuracy"] * n == pytest.approx(round(r["accuracy"] * n), abs=1e-6), r["name"]
        assert 0 < r["f1"] <= 1, r["name"]
        for key in ("latency_ms", "latency_fixed_ms"):
            lat = r[key]
            assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"], (r["name"], key)
        for k in ROW_NUMBERS:
            assert _positive(r[k]), (r["name"], k, r[k])
        assert r["peak_gops"] == (out["machine"]["int8_peak_gops"] if r["precision"] == "int8"
                                  else out["machine"]["fp32_peak_gflops"])
        assert isinstance(r["accuracy_delta_vs_teacher"], float)
    # one model behind every row: the same MACs; MiniLM-L6 at 128 tokens ~1.43 GMACs
    macs = {(r["macs_real_mean"], r["macs_fixed"]) for r in out["peers"] + out["edgeft"]}
    assert len(macs) == 1
    assert 10.6e6 * 128 < out["peers"][0]["macs_fixed"] < 11.5e6 * 128
    for r in out["edgeft"]:
        assert set(r["speedup_vs_peers"]) == set(PEERS)
        for v in r["speedup_vs_peers"].values():
            assert all(_positive(v[k]) for k in ("real_p50", "fixed_p50", "throughput"))
    # FP32 conversions predict like the teacher; INT8 weights are ~4x smaller
    teacher = out["peers"][0]
    assert teacher["accuracy_delta_vs_teacher"] == 0.0
    for r in out["peers"][1:] + out["edgeft"][:2]:
        if r["precision"] == "fp32":
            assert abs(r["accuracy"] - teacher["accuracy"]) <= 0.05, r["name"]
    sizes = {p["name"]: p["size_mb"] for p in out["peers"]}
    assert sizes["ort-int8-dynamic"] < sizes["ort-fp32"] / 3
    assert sizes["openvino-nncf-int8"] < sizes["openvino-fp32"] / 2
    assert json.loads(json.dumps(returned, default=str)) == out


@pytest.mark.slow
def test_best_machine_and_settings(compared):
    _, out, _, _ = compared
    for key in ("best", "best_fixed"):
        b = out[key]
        for k in BEST_FIELDS:
            assert b.get(k) is not None, (key, k)
        assert f"{b['artifact']}@{b['target']}" in [r["name"] for r in out["edgeft"]]
        assert b["best_peer"] in PEERS and _positive(b["speedup_vs_best_peer"]) and _positive(b["p50_ms"])
        assert 100 * (b["teacher_accuracy"] - b["accuracy"]) <= b["tolerance_points"] + 1e-9
    m = out["machine"]
    assert m["threads"] == 2 and _positive(m["clock_mhz"]) and _positive(m["fp32_peak_gflops"])
    assert m["int8_peak_gops"] >= m["fp32_peak_gflops"]
    assert "GFLOP/s" in m["fp32_formula"] and "GOPS" in m["int8_formula"] and m["runtimes"]["onnxruntime"]
    s = out["settings"]
    assert s["samples_used"] == 10 and s["test_size"] == 48 and s["rounds"] == 1 and s["threads"] == 2
    assert s["calibration_samples"] == 10 and s["fixed_length"] == 128 and s["model_stage"] == "finetune"


@pytest.mark.slow
def test_markdown_and_reuse_of_built_peers(compared):
    _, out, md, run_dir = compared
    assert md.startswith("# edgeft vs peers")
    for name in PEERS + ["finetune@pytorch", "export@cpu", "int8@cpu"]:
        assert f"| {name} |" in md
    assert "## Speedup of each edgeft row over each peer" in md and "## Headline" in md
    assert out["machine"]["fp32_formula"] in md and out["machine"]["int8_formula"] in md
    # built peer models are kept under the run (keyed by the model) and reused next time
    work = run_dir / "peers" / out["settings"]["model_key"]
    for folder in ("optimum-onnx", "optimum-int8-avx512_vnni-dynamic", "openvino-fp32", "openvino-nncf-int8-c10"):
        assert (work / folder / ".done").is_file(), folder


# ------------------------------------------------------------------ helpers on synthetic numbers

def _row(name, acc, p50, fixed, kind="edgeft", tp=100.0):
    r = {"name": name, "accuracy": acc, "latency_ms": {"p50": p50}, "latency_fixed_ms": {"p50": fixed},
         "throughput_sps": tp}
    if kind == "edgeft":
        r["artifact"], r["target"] = name.split("@")
    return r


def test_compare_headline_respects_the_accuracy_band(cp):
    peers = [_row("pytorch-fp32", 0.85, 8.0, 20.0, "peer"), _row("ort-int8-dynamic", 0.845, 2.0, 5.0, "peer"),
             _row("fast-but-bad", 0.80, 0.5, 0.5, "peer")]
    ours = [_row("tiny@cpu", 0.83, 0.8, 1.0), _row("int8@cpu", 0.842, 1.6, 4.0), _row("onnx@cpu", 0.85, 3.0, 9.0)]
    best, best_fixed = cp.compare(peers, ours)
    # tiny@cpu is 2 points below the teacher; fast-but-bad is out of the band too
    assert (best["artifact"], best["target"]) == ("int8", "cpu") and best["best_peer"] == "ort-int8-dynamic"
    assert best["speedup_vs_best_peer"] == pytest.approx(2.0 / 1.6, abs=1e-3) and best["p50_ms"] == 1.6
    assert best_fixed["speedup_vs_best_peer"] == pytest.approx(5.0 / 4.0, abs=1e-3)
    assert ours[0]["accuracy_delta_vs_teacher"] == -2.0
    assert ours[1]["speedup_vs_peers"]["pytorch-fp32"]["real_p50"] == 5.0
    none, _ = cp.compare(peers[:1], [_row("bad@cpu", 0.5, 1.0, 1.0)])
    assert none["artifact"] is None and none["speedup_vs_best_peer"] is None and none["best_peer"] == "pytorch-fp32"


def test_cpu_limits_formula(cp, monkeypatch):
    import edgeft.targets.fingerprint as fp

    monkeypatch.setattr(fp, "cpu_info", lambda: ("Test CPU", ("avx2", "avx512f", "avx512_vnni", "fma")))
    monkeypatch.setattr(cp, "_clock_mhz", lambda: (2500.0, "test"))
    m = cp.cpu_limits(threads=2, fma_units=2)
    assert m["fp32_peak_gflops"] == pytest.approx(2 * 2.5 * 16 * 2 * 2)       # 320 GFLOP/s
    assert m["int8_peak_gops"] == pytest.approx(2 * 2.5 * 64 * 2 * 2)         # 1280 GOPS
    monkeypatch.setattr(fp, "cpu_info", lambda: ("Old CPU", ("avx2", "fma")))
    m = cp.cpu_limits(threads=1, fma_units=2)
    assert m["fp32_peak_gflops"] == pytest.approx(2.5 * 8 * 2 * 2)
    assert m["int8_peak_gops"] == pytest.approx(2 * 2.5 * 16 * 2)


def test_macs_fit_is_exact_for_quadratic_costs_and_falls_back_otherwise(cp):
    quad = cp.MacsModel(None, [], 0)
    quad.count = lambda L: 1000 + 700 * L + 3 * L * L
    assert [quad(L) for L in (1, 17, 200)] == [1000 + 700 * L + 3 * L * L for L in (1, 17, 200)]
    assert quad.coef is not False
    odd = cp.MacsModel(None, [], 0)
    odd.count = lambda L: 5 * L ** 3
    assert odd(10) == 5000 and odd.coef is False


def test_the_gpu_peers_stop_with_the_reason_where_they_cannot_run(cp):
    """--gpu on a machine without onnxruntime-gpu / TensorRT / a GPU: a CompareError with the reason,
    before any work; without --gpu the GPU peers are not in the set."""
    from peers import GPU_PEERS
    from peers.gpu import unavailable_reason

    why = unavailable_reason()
    if why is None:
        pytest.skip("this machine can run the GPU peers")
    with pytest.raises(cp.CompareError) as e:
        cp._check_peers("pytorch-fp32,ort-fp32", gpu=True)
    assert "--gpu: the GPU peers" in str(e.value) and why in str(e.value)
    assert cp._check_peers("pytorch-fp32,ort-fp32") == ["pytorch-fp32", "ort-fp32"]
    with pytest.raises(cp.CompareError, match="unknown"):
        cp._check_peers("pytorch-fp32," + next(iter(GPU_PEERS)))          # only with --gpu
