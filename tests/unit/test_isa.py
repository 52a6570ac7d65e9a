"""INT8 format per ISA class: the classes, the uint8-weight form (exact), and the stages that use it."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from edgeft.isa import int8_format, isa_class
from tests.unit.test_quantize import EXPORT, PARITY, _recipe, manifest, probe_model, runs  # noqa: F401  fixtures


@pytest.mark.parametrize("flags, machine, cls", [
    (("avx2", "fma", "f16c"), "x86_64", "avx2"),                                  # the AMD EPYC the demo failed on
    (("avx2", "avx512f", "avx512bw"), "x86_64", "avx512"),                         # Skylake-SP: no VNNI
    (("avx2", "avx512f", "avx512bw", "avx512_vnni"), "x86_64", "vnni"),
    (("avx2", "avx_vnni"), "x86_64", "vnni"),                                      # Alder Lake
    (("avx2", "avx512bw", "avx512_vnni", "amx_tile", "amx_int8"), "x86_64", "amx"),
    (("sse4_2",), "x86_64", "x86"),
    (("asimd", "asimddp"), "aarch64", "arm64"),
])
def test_isa_classes(flags, machine, cls):
    assert isa_class(flags, machine) == cls


def test_saturating_classes_get_formats_that_cannot_saturate():
    for name in ("avx2", "avx512"):
        f = int8_format(name)
        assert f.saturating and f.ort_weights == "uint8" and f.nncf_overflow_fix == "enable" and f.source == "recipe"
    for name in ("avx512_vnni", "avx_vnni", "amx", "arm64", "x86"):
        f = int8_format(name)
        assert not f.saturating and f.ort_weights == "int8" and f.nncf_overflow_fix == "disable"
    assert int8_format("auto").source == "host"
    assert "vpmaddubsw" in int8_format("avx2").meta()["why"]


@pytest.fixture(scope="module")
def isa_runs(runs, manifest, probe_model):  # noqa: F811
    from edgeft.runner import run_recipe

    stages = [EXPORT,
              {"name": "static-vnni", "type": "quantize", "input": "@onnx", "method": "static", "isa": "avx512_vnni",
               "calibration": str(manifest), "parity": PARITY},
              {"name": "static-avx2", "type": "quantize", "input": "@onnx", "method": "static", "isa": "avx2",
               "calibration": str(manifest), "parity": PARITY},
              {"name": "dyn-avx2", "type": "quantize", "input": "@onnx", "method": "dynamic", "isa": "avx2",
               "parity": PARITY}]
    return run_recipe(_recipe(probe_model, stages), runs_dir=runs, fail_fast=True).artifacts


@pytest.mark.slow
def test_avx2_static_int8_is_the_same_numbers_in_uint8(isa_runs):
    from edgeft.ops.onnx_graph import integer_weight_types

    vnni, avx2 = isa_runs["static-vnni"], isa_runs["static-avx2"]
    assert vnni.meta["int8_format"]["isa"] == "vnni" and avx2.meta["int8_format"]["isa"] == "avx2"
    assert avx2.meta["int8_format"]["ort_weights"] == "uint8" and "uint8" in avx2.meta["weights"]
    # ORT stores the embedding tables as uint8 either way; the 36+ weight MatMuls are what differ
    assert integer_weight_types(vnni.main_path)["int8"] >= 36
    assert integer_weight_types(avx2.main_path).get("int8", 0) == 0
    assert integer_weight_types(avx2.main_path)["uint8"] >= 36 + integer_weight_types(vnni.main_path).get("uint8", 0)
    assert vnni.key != avx2.key
    # the same numbers: ONNX Runtime gives identical logits on a CPU where neither form saturates, or
    # the int8 form saturates and uint8 does not (then they may differ, and avx2 is the right one)
    fmt_here = int8_format("auto")
    if not fmt_here.saturating:
        assert avx2.meta["parity"] == vnni.meta["parity"]
        assert avx2.meta["val_accuracy_int8"] == vnni.meta["val_accuracy_int8"]


@pytest.mark.slow
def test_avx2_dynamic_int8_uses_uint8_weights(isa_runs):
    from edgeft.ops.onnx_graph import integer_weight_types

    art = isa_runs["dyn-avx2"]
    assert integer_weight_types(art.main_path).get("uint8", 0) > 0 and art.meta["int8_format"]["saturating"]
    assert art.meta["parity"]["agreement"] >= PARITY["min_agreement"]


@pytest.mark.slow
def test_weights_to_uint8_is_exact_and_a_changed_copy_is_not(isa_runs, tmp_path):
    import onnx
    from onnx import numpy_helper

    from edgeft.ops import onnx_export as ox
    from edgeft.ops.qdq import weights_to_uint8
    from edgeft.tasks import text_classification as task

    src = isa_runs["static-vnni"].main_path
    out = weights_to_uint8(src, tmp_path / "u8.onnx")
    assert out["weights_to_uint8"] >= 36
    proc = task.load_processor(isa_runs["static-vnni"].path)
    feed = task.encode(proc, ["a fine, moving film", "a dull and lifeless mess", "it was fine"], 32)
    a, b = ox.session(src), ox.session(tmp_path / "u8.onnx")
    la = ox.run_session(a, {k: v for k, v in feed.items() if k in ox.io_names(a)[0]})[0]
    lb = ox.run_session(b, {k: v for k, v in feed.items() if k in ox.io_names(b)[0]})[0]
    if not int8_format("auto").saturating:
        np.testing.assert_array_equal(la, lb)
    # the check can fail: shifting the stored uint8 weights by one step moves the logits
    m = onnx.load(str(tmp_path / "u8.onnx"))
    t = next(t for t in m.graph.initializer if t.data_type == onnx.TensorProto.UINT8 and len(t.dims) == 2)
    w = numpy_helper.to_array(t).astype(np.int16)
    t.CopyFrom(numpy_helper.from_array(np.clip(w + 8, 0, 255).astype(np.uint8), t.name))
    onnx.save(m, str(tmp_path / "bad.onnx"))
    c = ox.session(tmp_path / "bad.onnx")
    lc = ox.run_session(c, {k: v for k, v in feed.items() if k in ox.io_names(c)[0]})[0]
    assert np.abs(lc - la).max() > 1e-4


@pytest.mark.skipif(shutil.which("qemu-x86_64") is None, reason="needs qemu-user (apt-get install qemu-user) "
                    "to emulate an AVX2 CPU without VNNI")
@pytest.mark.slow
def test_uint8_weights_do_not_saturate_on_an_emulated_avx2_cpu():
    """Under qemu-x86_64 -cpu Haswell (AVX2, no VNNI), ONNX Runtime's u8 x s8 MatMulInteger saturates;
    7-bit and uint8 weights are exact (benchmarks/int8_isa_check.py --micro)."""
    import json
    import sys

    from tests.conftest import ROOT

    script = str(ROOT / "benchmarks" / "int8_isa_check.py")
    out = subprocess.run(["qemu-x86_64", "-cpu", "Haswell", sys.executable, script, "--micro", "--json"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["int8 full range"] > 0.01            # saturated: a large relative error
    assert res["int8 7-bit (reduce_range)"] == 0 and res["uint8 (zero point 128)"] == 0


def test_validator_warns_about_int8_for_another_or_a_saturating_cpu(caplog, calibration_manifest):
    from edgeft.isa import host_isa_class
    from edgeft.recipe import validate_recipe
    from tests.conftest import small_recipe

    stages = [{"name": "finetune", "type": "finetune"}, {"name": "onnx", "type": "export"},
              {"name": "q", "type": "quantize", "method": "dynamic", "isa": "avx2"},
              {"name": "s", "type": "quantize", "method": "static", "isa": "avx2", "input": "@onnx",
               "calibration": str(calibration_manifest)}]
    with caplog.at_level("WARNING", logger="edgeft"):
        r = validate_recipe(small_recipe(stages=stages))
    text = caplog.text
    # static INT8 may buy nothing on AVX2; dynamic INT8 measured faster there, so no such warning for it
    assert "stages[3].isa: static INT8 for an avx2 CPU without VNNI" in text and "no faster than FP32" in text
    assert "stages[2].isa: dynamic INT8 for an avx2" not in text
    if host_isa_class() != "avx2":                                            # and the gate runs other kernels
        assert "stages[2].isa: INT8 made for avx2" in text and "parity gate runs on this machine's kernels" in text
    # the class is in the key: the same stage for another CPU class is another artifact
    from edgeft.runner import plan
    stages[2]["isa"] = "avx512_vnni"
    assert plan(validate_recipe(small_recipe(stages=stages)))[2].key != plan(r)[2].key
