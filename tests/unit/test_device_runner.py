"""edgeft/device: the runner that benchmarks a job on a device with only numpy and the runtime.

The runner runs in a subprocess in which torch, transformers, pydantic, onnx and yaml cannot be
imported, nor psutil (the device's environment), on a small real ONNX model with text-shaped inputs at several
lengths; its logits must be ONNX Runtime's for the same batches and its times follow the protocol."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from edgeft.device import PROTOCOL
from edgeft.device.protocol import pack_inputs, save_inputs, unpack_inputs

BLOCKED = ("torch", "transformers", "pydantic", "onnx", "yaml", "psutil")


def _model(path, vocab: int = 50, dim: int = 8, classes: int = 2):
    """input_ids [batch, seq] -> embedding -> mean over the sequence -> linear -> logits [batch, 2]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=(vocab, dim)).astype(np.float32), "emb"),
             numpy_helper.from_array(rng.normal(size=(dim, classes)).astype(np.float32), "w"),
             numpy_helper.from_array(np.array([1], np.int64), "axes")]
    nodes = [helper.make_node("Gather", ["emb", "input_ids"], ["h"]),
             helper.make_node("ReduceMean", ["h", "axes"], ["m"], keepdims=0),
             helper.make_node("MatMul", ["m", "w"], ["logits"])]
    g = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "s"])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", classes])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def _inputs(rng):
    def ids(b, s):
        return {"input_ids": rng.integers(0, 50, size=(b, s)).astype(np.int64),
                "token_type_ids": np.zeros((b, s), np.int64)}          # an input the model does not take

    evals = [(np.array([0, 1, 2]), ids(3, 5)), (np.array([3, 4]), ids(2, 9))]
    return evals, [ids(1, n) for n in (3, 7, 12)], ids(1, 16), [ids(4, 6), ids(4, 10)]


def _job(tmp_path, runtime="onnxruntime", protocol=PROTOCOL, rows=1):
    """A device work folder with `rows` copies of the model (each its own row) and one inputs file."""
    root = tmp_path / "device"
    (root / "jobs" / "j1").mkdir(parents=True)
    (root / "objects" / "m").mkdir(parents=True)
    _model(root / "objects" / "m" / "model.onnx")
    evals, real, fixed, tp = _inputs(np.random.default_rng(1))
    save_inputs(root / "objects" / "inputs.npz", pack_inputs(evals, real, fixed, tp))
    spec = {"model": "objects/m/model.onnx", "inputs": "objects/inputs.npz", "text": False}
    (root / "jobs" / "j1" / "job.json").write_text(json.dumps(
        {"protocol": protocol, "runtime": runtime, "threads": 1, "rounds": 2, "warmup": 2, "fixed_runs": 5,
         "rows": [spec] * rows}))
    return root, (evals, real, fixed, tp)


def _run_device(root, *args):
    """The runner as a device runs it: a fresh interpreter where the heavy libraries do not exist,
    in the device's work folder."""
    code = (f"import sys\nfor m in {BLOCKED!r}: sys.modules[m] = None\n"
            "from edgeft.device.runner import main\nsys.exit(main(sys.argv[1:]))")
    return subprocess.run([sys.executable, "-c", code, *(args or ("run", "jobs/j1"))], capture_output=True,
                          text=True, timeout=300, cwd=root)


def test_inputs_round_trip_through_the_job_layout():
    evals, real, fixed, tp = _inputs(np.random.default_rng(0))
    e2, r2, f2, t2 = unpack_inputs(pack_inputs(evals, real, fixed, tp))
    assert [ix.tolist() for ix, _ in e2] == [ix.tolist() for ix, _ in evals]
    for a, b in zip([b for _, b in evals] + real + [fixed] + tp, [b for _, b in e2] + r2 + [f2] + t2):
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="unexpected array"):
        unpack_inputs({"stray": np.zeros(1)})


def test_runner_needs_only_numpy_and_the_runtime_and_follows_the_protocol(tmp_path):
    import onnxruntime as ort

    root, (evals, real, fixed, tp) = _job(tmp_path, rows=2)
    out = _run_device(root)
    assert out.returncode == 0, out.stderr[-2000:]
    job = root / "jobs" / "j1"
    result = json.loads((job / "result.json").read_text())
    ref = ort.InferenceSession(str(root / "objects" / "m" / "model.onnx"), providers=["CPUExecutionProvider"])
    for row in (0, 1):
        with np.load(job / f"logits-{row}.npz") as logits:
            assert sorted(logits.files) == ["eval/0", "eval/1"]
            for i, (_, batch) in enumerate(evals):
                np.testing.assert_allclose(logits[f"eval/{i}"], ref.run(None, {"input_ids": batch["input_ids"]})[0],
                                           rtol=1e-5, atol=1e-6)
    assert len(result["rows"]) == 2
    for row in result["rows"]:                  # rounds x requests per block, every time a positive number
        t = row["times_ms"]
        assert (len(t["real"]), len(t["fixed"]), len(t["tp"])) == (2 * len(real), 2 * 5, 2 * len(tp))
        assert all(x > 0 for v in t.values() for x in v)
    fp = result["fingerprint"]
    assert fp["runtime"].startswith("onnxruntime ") and fp["threads"] == 1 and fp["arch"] and "isa" in fp
    assert fp["runtimes"]["onnxruntime"] == ort.__version__ and fp["memory_mb"] > 0
    assert result["protocol"] == PROTOCOL and 0 <= result["others_cpu_share"] <= 1 and result["peak_rss_mb"] > 0
    assert not list(job.glob(".tmp-*"))         # nothing half-written left behind


def test_runner_info_reports_the_device(tmp_path):
    root, _ = _job(tmp_path)
    out = _run_device(root, "info")
    assert out.returncode == 0, out.stderr[-2000:]
    info = json.loads(out.stdout)
    assert info["protocol"] == PROTOCOL and info["disk_free_mb"] > 0 and info["memory_available_mb"] > 0
    assert "onnxruntime" in info["fingerprint"]["runtimes"] and info["fingerprint"]["cores"] >= 1
    assert _run_device(root, "bogus").returncode == 2


def test_runner_refuses_another_protocol_and_writes_nothing(tmp_path):
    root, _ = _job(tmp_path, protocol=PROTOCOL + 1)
    out = _run_device(root)
    assert out.returncode == 1 and "protocol mismatch" in out.stderr
    job = root / "jobs" / "j1"
    assert not (job / "result.json").exists() and not list(job.glob("logits-*"))


def test_runner_names_an_unknown_runtime(tmp_path):
    root, _ = _job(tmp_path, runtime="tflite")
    out = _run_device(root)
    assert out.returncode == 1 and "unknown runtime 'tflite'" in out.stderr


def test_runner_on_openvino(tmp_path):
    pytest.importorskip("openvino")
    import onnxruntime as ort

    root, (evals, _, _, _) = _job(tmp_path, runtime="openvino")
    out = _run_device(root)
    assert out.returncode == 0, out.stderr[-2000:]
    job = root / "jobs" / "j1"
    assert json.loads((job / "result.json").read_text())["fingerprint"]["runtime"].startswith("openvino")
    ref = ort.InferenceSession(str(root / "objects" / "m" / "model.onnx"), providers=["CPUExecutionProvider"])
    with np.load(job / "logits-0.npz") as logits:
        for i, (_, batch) in enumerate(evals):
            np.testing.assert_allclose(logits[f"eval/{i}"], ref.run(None, {"input_ids": batch["input_ids"]})[0],
                                       rtol=1e-4, atol=1e-5)


def test_inputs_hash_follows_content():
    from edgeft.device.protocol import inputs_hash

    a = {"x": np.arange(6).reshape(2, 3), "y": np.zeros(2)}
    assert inputs_hash(a) == inputs_hash({"y": np.zeros(2), "x": np.arange(6).reshape(2, 3)})
    assert inputs_hash(a) != inputs_hash({**a, "x": np.arange(6).reshape(3, 2)})      # shape counts
    assert inputs_hash(a) != inputs_hash({**a, "y": np.ones(2)})


def test_runner_runs_an_ort_format_model(tmp_path):
    """An .ort model (export format ort-mobile) on an onnxruntime device: the same runner, the same logits."""
    import onnxruntime as ort

    from edgeft.ops import ort_mobile
    from edgeft.targets.remote import RUNTIME_KINDS

    assert "ort" in RUNTIME_KINDS["onnxruntime"] and "ort" not in RUNTIME_KINDS["openvino"]
    root, (evals, *_) = _job(tmp_path)
    objects = root / "objects" / "m"
    ort_mobile.convert(objects / "model.onnx", objects / "model.ort")
    job = root / "jobs" / "j1" / "job.json"
    spec = json.loads(job.read_text())
    spec["rows"][0]["model"] = "objects/m/model.ort"
    job.write_text(json.dumps(spec))
    (objects / "model.onnx").unlink()                       # only the .ort is on the device
    out = _run_device(root)
    assert out.returncode == 0, out.stderr[-2000:]
    ref = ort.InferenceSession(str(objects / "model.ort"), providers=["CPUExecutionProvider"])
    with np.load(root / "jobs" / "j1" / "logits-0.npz") as logits:
        for i, (_, batch) in enumerate(evals):
            np.testing.assert_allclose(logits[f"eval/{i}"], ref.run(None, {"input_ids": batch["input_ids"]})[0],
                                       rtol=1e-5, atol=1e-6)
