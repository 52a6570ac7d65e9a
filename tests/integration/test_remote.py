"""Remote devices over SSH, on real parts: Debian's sshd on 127.0.0.1 (tests/sshd.py), the system ssh
client with a Host entry in an ssh_config file and strict host-key checking, and a device-side Python
(.venv-device) that has only numpy, onnxruntime and openvino (and their own few dependencies) — no
torch, transformers, pydantic or edgeft installed: the host copies the runner over.

The recipe tests run the real finetune → export → dynamic INT8 path on the shipped MiniLM and real
Rotten Tomatoes texts, then benchmark the INT8 artifact on `cpu` and on the SSH device."""

from __future__ import annotations

import json
import subprocess
import threading
import time

import numpy as np
import pytest

from tests import sshd
from tests.conftest import small_recipe

pytestmark = pytest.mark.skipif(sshd.missing() is not None, reason=str(sshd.missing()))

DEVICE_PY = str(sshd.DEVICE_VENV / "bin" / "python")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = sshd.SshServer(tmp_path_factory.mktemp("sshd")).start()
    yield s
    s.stop()


def _target(server, workdir, **over) -> dict:
    t = {"name": "testdev", "ssh": server.host, "ssh_config": str(server.ssh_config), "python": DEVICE_PY,
         "workdir": str(workdir), "connect_timeout_s": 10}
    t.update(over)
    return t


def _device(server, workdir, **over):
    from edgeft.targets.remote import RemoteTarget, SshDevice

    return SshDevice(RemoteTarget(**_target(server, workdir, **over)))


def _tiny_onnx(path):
    from tests.unit.test_device_runner import _model

    return _model(path)


# ------------------------------------------------------------------------------------- the link itself


def test_device_env_has_no_torch_and_the_runner_needs_nothing_else(server, tmp_path):
    """The device's Python cannot import torch, transformers, pydantic or edgeft; the runner still runs
    there once the host copied its files, and reports its fingerprint."""
    from edgeft.device import PROTOCOL

    out = subprocess.run(["ssh", "-F", str(server.ssh_config), server.host, DEVICE_PY, "-c",
                          "'import importlib.util as u; print([m for m in (\"torch\", \"transformers\", \"pydantic\", "
                          "\"edgeft\", \"yaml\") if u.find_spec(m)])'"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    dev = _device(server, tmp_path / "device")
    try:
        info = dev.connect()
        dev.check_runtime(info)
    finally:
        dev.close()
    assert info["protocol"] == PROTOCOL
    fp = info["fingerprint"]
    import onnxruntime

    assert fp["runtimes"]["onnxruntime"] == onnxruntime.__version__ and fp["cores"] >= 1 and fp["isa"]
    assert list((tmp_path / "device" / "runner").iterdir())       # the runner's files, by content hash


def test_objects_are_sent_once_and_again_when_changed(server, tmp_path):
    from edgeft.device import PROTOCOL
    from edgeft.device.protocol import pack_inputs
    from tests.unit.test_device_runner import _inputs

    model = _tiny_onnx(tmp_path / "model.onnx")
    evals, real, fixed, tp = _inputs(np.random.default_rng(1))
    import io

    buf = io.BytesIO()
    np.savez(buf, **pack_inputs(evals, real, fixed, tp))
    dev = _device(server, tmp_path / "device")
    try:
        dev.connect()
        objects = {"m1": {"model.onnx": model}, "in1": {"inputs.npz": buf.getvalue()}}
        assert dev.send(objects) == 2
        assert dev.send(objects) == 0                                  # cached on the device
        assert dev.send({**objects, "m2": {"model.onnx": model}}) == 1  # new content hash: sent
        job = {"protocol": PROTOCOL, "runtime": "onnxruntime", "threads": 1, "rounds": 2, "warmup": 1,
               "fixed_runs": 3, "rows": [{"model": "objects/m1/model.onnx", "inputs": "objects/in1/inputs.npz",
                                          "text": False}]}
        result, logits = dev.run_job(job)
    finally:
        dev.close()
    import onnxruntime as ort

    ref = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    for i, (_, batch) in enumerate(evals):
        np.testing.assert_allclose(logits[0][f"eval/{i}"], ref.run(None, {"input_ids": batch["input_ids"]})[0],
                                   rtol=1e-5, atol=1e-6)
    assert len(result["rows"][0]["times_ms"]["real"]) == 2 * len(real)
    assert not list((tmp_path / "device" / "jobs").iterdir())      # the job folder is cleaned up
    assert not list((tmp_path / "device" / "objects").glob(".in-*"))   # no half upload left


def test_wrong_host_key_is_refused_with_a_clear_error(server, tmp_path):
    from edgeft.targets.remote import DeviceError

    other = sshd._keygen(tmp_path / "other_key")
    server.trust(other)
    try:
        dev = _device(server, tmp_path / "device")
        with pytest.raises(DeviceError) as e:
            dev.connect()
        dev.close()
    finally:
        server.trust(server.host_pub)
    assert e.value.step == "connect" and "host key does not match" in str(e.value) and "testdev" in str(e.value)
    assert not (tmp_path / "device").exists()                       # nothing was sent


def test_device_without_the_runtime(server, tmp_path):
    """A device whose Python has numpy but not the runtime the target names: a clear error with the fix."""
    from edgeft.targets.remote import DeviceError

    bare = tmp_path / "bare"
    subprocess.run([sshd.DEVICE_VENV / "bin" / "python", "-m", "venv", "--without-pip", str(bare)], check=True)
    site = next((bare / "lib").glob("python*/site-packages"))
    numpy_dir = next((sshd.DEVICE_VENV / "lib").glob("python*/site-packages/numpy"))
    (site / "numpy").symlink_to(numpy_dir)              # numpy only: no onnxruntime, no openvino
    for libs in numpy_dir.parent.glob("numpy.libs"):
        (site / "numpy.libs").symlink_to(libs)
    dev = _device(server, tmp_path / "device", python=str(bare / "bin" / "python"))
    try:
        info = dev.connect()
        with pytest.raises(DeviceError) as e:
            dev.check_runtime(info)
    finally:
        dev.close()
    assert e.value.step == "runtime" and "cannot import onnxruntime" in str(e.value) and "pip install onnxruntime==" \
        in str(e.value)
    dev = _device(server, tmp_path / "device", python="/nonexistent/python3")
    with pytest.raises(DeviceError, match="not found on the device"):
        dev.connect()
    dev.close()


def test_unreachable_device(tmp_path):
    from edgeft.targets.remote import DeviceError

    dead = sshd.SshServer(tmp_path / "dead")          # configured, never started: nothing listens
    dev = _device(dead, tmp_path / "device")
    with pytest.raises(DeviceError) as e:
        dev.connect()
    dev.close()
    assert e.value.step == "connect" and "unreachable" in str(e.value) and "Connection refused" in str(e.value)


def test_host_key_checking_cannot_be_switched_off_in_a_recipe(server, tmp_path):
    from edgeft.errors import RecipeError
    from edgeft.recipe import validate_recipe

    t = _target(server, tmp_path, ssh_options=["StrictHostKeyChecking=no"])
    stages = [{"name": "onnx", "type": "export"},
              {"name": "bench", "type": "benchmark", "artifacts": ["@onnx"], "targets": ["cpu", t]}]
    with pytest.raises(RecipeError) as e:
        validate_recipe(small_recipe(stages=stages), check_data=False)
    assert any("targets[1]" in p and "host-key checking" in r for p, r in e.value.problems)
    t = _target(server, tmp_path, name="cpu")
    with pytest.raises(RecipeError) as e:
        validate_recipe(small_recipe(stages=[stages[0], {**stages[1], "targets": ["cpu", t]}]), check_data=False)
    assert any("local target's name" in r or "listed twice" in r for _, r in e.value.problems)


# ------------------------------------------------------------------------------------ through a recipe


def _recipe(server, workdir, name="remote", rounds=2, latency_samples=60, device=None, test_samples=200, **bench):
    from edgeft.recipe import validate_recipe

    raw = small_recipe(name=name, stages=[
        {"name": "finetune", "type": "finetune", "epochs": 1, "batch_size": 16},
        {"name": "export", "type": "export", "optimize": False},
        {"name": "int8", "type": "quantize", "method": "dynamic", "parity": {"min_agreement": 0.5}},
        {"name": "bench", "type": "benchmark", "artifacts": ["@export", "@int8"],
         "targets": ["cpu", device or _target(server, workdir, threads=1)], "threads": 1,
         "latency_samples": latency_samples, "rounds": rounds, "warmup": 3, "fixed_runs": 5, "throughput_batches": 2,
         "memory": False, **bench},
    ])
    raw["data"]["max_samples"] = {"train": 64, "validation": 32, "test": test_samples}
    return validate_recipe(raw)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


@pytest.mark.slow
def test_int8_on_cpu_and_on_the_ssh_device(server, runs, tmp_path_factory):
    from edgeft.runner import run_recipe

    workdir = tmp_path_factory.mktemp("dev")
    result = run_recipe(_recipe(server, workdir), runs_dir=runs)
    assert result.ok, result.failed
    report = json.loads(result.artifacts["bench"].main_path.read_text())
    rows = {(r["artifact"], r["target"]): r for r in report["rows"]}
    assert set(rows) == {("export", "cpu"), ("int8", "cpu"), ("export", "testdev"), ("int8", "testdev")}
    for art in ("export", "int8"):
        here, there = rows[(art, "cpu")], rows[(art, "testdev")]
        # the same ONNX Runtime on the same CPU, one thread each: the device's logits give the same answers
        assert there["accuracy"] == here["accuracy"] and there["f1"] == here["f1"]
        assert there["device"] == "testdev" and here["device"] is None
        assert there["latency_ms"]["p50"] > 0 and there["throughput_sps"] > 0 and there["size_mb"] == here["size_mb"]
        assert there["speedup_vs_reference"] is None                 # never against another device's row
        # one ONNX Runtime build, one CPU, one thread: the device predicts exactly what this machine does
        assert there["host_row"] == f"{art}@cpu" and there["agreement_with_host"] == 1.0
        fp = there["fingerprint"]
        assert fp["device"] == "testdev" and fp["ssh"] == server.host and fp["runtime"].startswith("onnxruntime")
        assert fp["threads"] == 1 and fp["cpu"] and fp["arch"]
    assert rows[("int8", "testdev")]["int8_speedup_vs_fp32"] is not None    # INT8 vs FP32 on the device itself
    assert report["devices"]["testdev"]["objects_sent"] == 3        # two models + one inputs set
    timings = json.loads((result.artifacts["bench"].path / "timings.json").read_text())
    assert len(timings["int8@testdev:real"]) == 2 * 60
    md = (result.run_dir / "report.md").read_text()
    assert "## Device `testdev` — over SSH" in md and "- **Device:**" in md

    # a second run with the benchmark forced: both groups come from their caches (same fingerprints)
    again = run_recipe(_recipe(server, workdir), runs_dir=runs, force=["bench"])
    assert again.ok
    report2 = json.loads(again.artifacts["bench"].main_path.read_text())
    assert [r["latency_ms"] for r in report2["rows"]] == [r["latency_ms"] for r in report["rows"]]


def _stop_orphan_runners(workdir) -> None:
    import psutil

    for p in psutil.process_iter(["cmdline", "cwd"]):
        if "edgeft.device.runner" in " ".join(p.info["cmdline"] or []) and str(workdir) in (p.info["cwd"] or ""):
            p.kill()


@pytest.mark.slow
def test_connection_lost_mid_benchmark_keeps_the_other_rows_and_a_rerun_resumes(server, runs, tmp_path_factory):
    from edgeft.runner import run_recipe

    workdir = tmp_path_factory.mktemp("dev")
    recipe = _recipe(server, workdir, name="remote-cut", rounds=15, latency_samples=100)
    killed = {}

    def cut_when_timing_starts():
        deadline = time.time() + 600
        while time.time() < deadline and not killed:
            if list((workdir / "jobs").glob("*/logits-1.npz")):     # both rows loaded: timing has begun
                killed["n"] = server.kill_connections()
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=cut_when_timing_starts, daemon=True)
    watcher.start()
    result = run_recipe(recipe, runs_dir=runs)
    watcher.join(timeout=5)
    assert killed.get("n"), "the job ended before the connection could be cut"
    assert not result.ok and "bench" in result.failed
    assert "device 'testdev', step run" in result.failed["bench"]["error"]
    assert "connection was lost" in result.failed["bench"]["error"]
    report = json.loads(result.artifacts["bench"].main_path.read_text())
    assert {r["target"] for r in report["rows"]} == {"cpu"}        # no partial row of the device
    assert report["failed_targets"][0]["target"] == "testdev" and report["failed_targets"][0]["step"] == "run"
    md = (result.run_dir / "report.md").read_text()
    assert "## Failed devices" in md and "connection was lost" in md
    cpu_rows = [r["latency_ms"] for r in report["rows"]]
    _stop_orphan_runners(workdir)       # the runner the cut left behind (a board would be power-cycled)

    server.start()                                                  # the device is back
    again = run_recipe(recipe, runs_dir=runs)
    assert again.ok, again.failed
    report2 = json.loads(again.artifacts["bench"].main_path.read_text())
    assert {r["target"] for r in report2["rows"]} == {"cpu", "testdev"} and not report2["failed_targets"]
    assert [r["latency_ms"] for r in report2["rows"] if r["target"] == "cpu"] == cpu_rows   # reused, not re-timed


def test_targets_check_prints_each_devices_fingerprint_and_what_is_missing(server, tmp_path, capsys):
    import yaml

    from edgeft.cli import main

    dead = sshd.SshServer(tmp_path / "dead")
    stages = [{"name": "onnx", "type": "export"},
              {"name": "bench", "type": "benchmark", "artifacts": ["@onnx"],
               "targets": ["cpu", _target(server, tmp_path / "device"),
                           _target(dead, tmp_path / "device2", name="deadboard"),
                           _target(server, tmp_path / "device3", name="ovboard", runtime="openvino")]}]
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(small_recipe(stages=stages)))
    code = main(["targets", "--check", str(path)])
    out = capsys.readouterr().out
    assert code == 1                                      # deadboard is unreachable
    assert "this machine:" in out and "  cpu: ok" in out
    dev = out.split("testdev:")[1].split("deadboard:")[0]
    assert "runtimes: onnxruntime" in dev and "openvino" in dev and "ISA" in dev and "cores" in dev and "ok" in dev
    assert "free:" in dev and "MB disk" in dev
    assert "missing / failed: device 'deadboard', step connect: unreachable" in out
    assert "ovboard" in out and out.split("ovboard:")[1].strip().endswith("ok")


def test_device_out_of_disk_is_named_and_leaves_no_half_upload(server, tmp_path):
    """The device's edgeft folder on a 512 KiB tmpfs: the runner fits, a 2 MB artifact does not."""
    from edgeft.targets.remote import DeviceError

    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(small)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        dev = _device(server, small)
        try:
            dev.connect()
            with pytest.raises(DeviceError) as e:
                dev.send({"big": {"model.onnx": np.random.default_rng(0).bytes(2_000_000)}})
        finally:
            dev.close()
        assert e.value.step == "send" and "out of disk on the device" in str(e.value)
        assert not (small / "objects" / "big").exists() and not list((small / "objects").glob(".in-*"))
    finally:
        subprocess.run(["umount", str(small)], capture_output=True)


def _huge_intermediate_model(path):
    """input_ids [b, s] -> logits [b, 2] through a 4 GB intermediate (ConstantOfShape [40000, 25000])."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["big"],
                              value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])),
             helper.make_node("ReduceSum", ["big"], ["total"], keepdims=0),
             helper.make_node("Cast", ["input_ids"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("ReduceMean", ["f", "axes"], ["m"], keepdims=1),
             helper.make_node("Mul", ["m", "total"], ["m2"]),
             helper.make_node("Concat", ["m2", "m2"], ["logits"], axis=1)]
    inits = [numpy_helper.from_array(np.array([40000, 25000], np.int64), "shape"),
             numpy_helper.from_array(np.array([1], np.int64), "axes")]
    g = helper.make_graph(nodes, "huge", [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "s"])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", 2])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def test_device_out_of_memory_is_named(server, tmp_path):
    """A device whose processes may use at most 1.5 GB (ulimit -v in its python wrapper) and a model that
    needs a 4 GB buffer: ONNX Runtime's allocation fails on the device, the host names it."""
    import io

    from edgeft.device import PROTOCOL
    from edgeft.device.protocol import pack_inputs
    from edgeft.targets.remote import DeviceError
    from tests.unit.test_device_runner import _inputs

    wrapper = tmp_path / "python-1.5g"
    wrapper.write_text(f"#!/bin/sh\nulimit -v 1500000\nexec {DEVICE_PY} \"$@\"\n")
    wrapper.chmod(0o755)
    buf = io.BytesIO()
    np.savez(buf, **pack_inputs(*_inputs(np.random.default_rng(1))))
    dev = _device(server, tmp_path / "device", python=str(wrapper))
    try:
        dev.connect()
        dev.send({"m": {"model.onnx": _huge_intermediate_model(tmp_path / "huge.onnx")},
                  "i": {"inputs.npz": buf.getvalue()}})
        job = {"protocol": PROTOCOL, "runtime": "onnxruntime", "threads": 1, "rounds": 1, "warmup": 1,
               "fixed_runs": 1, "rows": [{"model": "objects/m/model.onnx", "inputs": "objects/i/inputs.npz",
                                          "text": False}]}
        with pytest.raises(DeviceError) as e:
            dev.run_job(job)
    finally:
        dev.close()
    assert e.value.step == "run" and "out of memory on the device" in str(e.value)
    assert not list((tmp_path / "device" / "jobs").iterdir())


ARM64_PY = sshd.DEVICE_VENV.parent / ".arm64-board" / "python"


@pytest.mark.slow
@pytest.mark.skipif(not ARM64_PY.exists(), reason="no emulated ARM64 board (.arm64-board: tests/boards/arm64.sh, "
                    "run by make setup as root)")
def test_emulated_arm64_board_runs_the_artifacts_and_agrees(server, runs, tmp_path_factory):
    """An ARM64 board emulated by qemu-user (Cortex-A72; Debian's arm64 Python, the aarch64 numpy and
    onnxruntime wheels), reached over the same SSH: the FP32 and INT8 artifacts run there, give this
    machine's answers, and their latencies are labelled emulated and compared with nothing."""
    from edgeft.runner import run_recipe

    board = _target(server, tmp_path_factory.mktemp("arm"), name="arm64", python=str(ARM64_PY), emulated=True,
                    threads=1, job_timeout_s=1800)
    # emulation runs MiniLM some 100x slower than this CPU: 24 test texts, a few timed requests
    recipe = _recipe(server, None, name="remote-arm", device=board, latency_samples=3, rounds=1, warmup=1,
                     fixed_runs=2, throughput_batches=1, throughput_batch_size=2, test_samples=24)
    result = run_recipe(recipe, runs_dir=runs)
    assert result.ok, result.failed
    report = json.loads(result.artifacts["bench"].main_path.read_text())
    rows = {(r["artifact"], r["target"]): r for r in report["rows"]}
    assert set(rows) == {("export", "cpu"), ("int8", "cpu"), ("export", "arm64"), ("int8", "arm64")}
    for art in ("export", "int8"):
        arm = rows[(art, "arm64")]
        assert arm["emulated"] is True and arm["fingerprint"]["arch"] == "aarch64"
        assert arm["fingerprint"]["cpu"] == "ARM Cortex-A72" and "asimd" in arm["fingerprint"]["isa"]
        assert arm["latency_ms"]["p50"] > 0 and arm["speedup_vs_reference"] is None
    # other kernels (NEON instead of this CPU's AVX2 / AVX-512 / VNNI ones): FP32 differs in rounding only,
    # which moves no answer; INT8 kernels round their quantized activations differently on each ISA, which
    # flips the near-tied answers of this barely trained head (4 steps, accuracy near chance): 1 of 24 on
    # the AVX-512 VNNI EPYC. Allowed: 3 of 24; a broken ARM path agrees about half the time.
    assert rows[("export", "arm64")]["agreement_with_host"] == 1.0
    assert rows[("int8", "arm64")]["agreement_with_host"] >= 21 / 24
    md = (result.run_dir / "report.md").read_text()
    # `cpu` is the only real target: with the emulated one left out there is nothing to compare across
    assert "**Emulated:**" in md and "## Across targets" not in md
