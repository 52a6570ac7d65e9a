"""edgeft/rows.py: row arithmetic on numbers (no models)."""

from __future__ import annotations

from edgeft.rows import INT8_PAYS, int8_gains, summary


def _row(artifact, target, precision, source, p50, acc=0.8):
    return {"artifact": artifact, "target": target, "precision": precision, "torch_source": source,
            "latency_ms": {"p50": p50}, "latency_fixed_ms": {"p50": p50}, "accuracy": acc,
            "throughput_sps": 100.0, "size_mb": 10.0}


def test_int8_gains_against_the_fastest_fp32_row_of_the_same_model_and_target():
    rows = [_row("fp32", "cpu", "fp32", "T", 4.0), _row("fp32-fused", "cpu", "fp32", "T", 3.0),
            _row("int8", "cpu", "int8", "T", 1.5),           # 2x the fastest FP32 row (3.0 ms)
            _row("int8-slow", "cpu", "int8", "T", 2.8),      # 1.07x: does not pay
            _row("ov-int8", "openvino", "int8", "T", 1.0),   # no FP32 row on openvino
            _row("student-int8", "cpu", "int8", "S", 1.0)]   # another model: no FP32 row of its own
    int8_gains(rows)
    by = {r["artifact"]: r for r in rows}
    assert by["int8"]["int8_speedup_vs_fp32"] == 2.0 and by["int8"]["int8_fp32_row"] == "fp32-fused"
    assert by["int8"]["int8_pays"] is True
    assert by["int8-slow"]["int8_pays"] is False and by["int8-slow"]["int8_speedup_vs_fp32"] < INT8_PAYS
    assert by["ov-int8"]["int8_pays"] is None and by["student-int8"]["int8_speedup_vs_fp32"] is None
    assert "int8_pays" not in by["fp32"]


def test_summary_names_the_row_and_its_figures():
    r = _row("int8", "cpu", "int8", "T", 1.5) | {"speedup_vs_reference": 4.0, "peak_rss_mb": 321.0}
    line = summary(r)
    assert line.startswith("int8 on cpu (int8): acc 80.00%, p50 1.50 ms (4.00x)") and "peak RSS 321 MB" in line


def test_device_rows_compare_accuracy_with_the_reference_but_never_speed():
    from edgeft.rows import compare_to_reference

    ref = {"artifact": "finetune", "target": "pytorch", "key": "k1", "torch_source": "k1", "device": None,
           "accuracy": 0.80, "latency_ms": {"p50": 10.0}}
    local = {"artifact": "int8", "target": "cpu", "key": "k2", "torch_source": "k1", "device": None,
             "accuracy": 0.79, "latency_ms": {"p50": 4.0}}
    remote = {**local, "target": "pi5", "device": "pi5", "latency_ms": {"p50": 20.0}}
    rows = [ref, local, remote]
    compare_to_reference(rows)
    assert local["speedup_vs_reference"] == 2.5 and remote["speedup_vs_reference"] is None
    assert remote["accuracy_delta_vs_reference"] == local["accuracy_delta_vs_reference"] == -1.0


def test_agreement_with_host_matches_device_rows_to_this_machines_row_of_the_same_runtime():
    from edgeft.stages.benchmark_groups import agreement_with_host

    rows = [{"artifact": "int8", "target": "cpu", "device": None},
            {"artifact": "int8", "target": "pi5", "device": "pi5", "fingerprint": {"runtime": "onnxruntime 1.32"}},
            {"artifact": "ov", "target": "nuc", "device": "nuc", "fingerprint": {"runtime": "openvino 2026.4"}}]
    preds = {"int8@cpu": [0, 1, 1, 0], "int8@pi5": [0, 1, 0, 0], "ov@nuc": [1, 1, 1, 1]}
    agreement_with_host(rows, preds)
    assert rows[1]["agreement_with_host"] == 0.75 and rows[1]["host_row"] == "int8@cpu"
    assert rows[2]["agreement_with_host"] is None and rows[2]["host_row"] is None   # no ov@openvino row here
    assert "agreement_with_host" not in rows[0]
