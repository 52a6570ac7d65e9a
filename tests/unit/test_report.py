"""report.py: markdown, PNG and the Pareto front, from a hand-made report.json."""

from __future__ import annotations

import json

from edgeft.report import pareto_front, render_markdown, write_report

COLUMNS = ["artifact", "precision", "accuracy %", "F1", "p50 ms", "p90 ms", "p99 ms", "fixed p50 ms",
           "throughput /s", "size MB", "params", "MACs", "peak RSS MB", "speedup"]


def _row(artifact, target, precision, acc, p50, key):
    return {"artifact": artifact, "stage": "export", "key": key, "target": target, "precision": precision,
            "threads": 2, "accuracy": acc, "f1": acc - 0.01,
            "latency_ms": {"p50": p50, "p90": p50 * 1.2, "p99": p50 * 1.5, "mean": p50 * 1.1},
            "latency_fixed_ms": {"p50": p50 * 2, "p90": p50 * 2.2, "p99": p50 * 2.5, "mean": p50 * 2.1},
            "throughput_sps": 1000 / p50, "size_mb": 90.9 if precision == "fp32" else 23.0, "params": 22_713_986,
            "macs": 1_434_600_192, "macs_shape": [1, 128], "peak_rss_mb": 400.0, "model_rss_mb": 100.0,
            "speedup_vs_reference": round(7.77 / p50, 3), "reference": "finetune@pytorch",
            "accuracy_delta_vs_reference": round(100 * (acc - 0.8427), 2), "fingerprint": {"threads": 2}}


def _report():
    rows = [
        _row("finetune", "pytorch", "fp32", 0.8427, 7.77, "k1"),
        _row("pruned", "pytorch", "fp32", 0.8353, 4.10, "k2"),
        _row("student", "pytorch", "fp32", 0.8200, 4.50, "k3"),        # dominated by pruned
        _row("export", "cpu", "fp32", 0.8427, 3.25, "k4"),
        _row("int8", "cpu", "int8", 0.8408, 1.82, "k5"),
        _row("student-int8", "cpu", "int8", 0.8216, 1.34, "k6"),
    ]
    return {"recipe": {"name": "hand-made", "task": "text-classification", "seed": 0,
                       "model": {"source": "shipped:all-MiniLM-L6-v2"},
                       "data": {"source": "builtin:rotten_tomatoes", "max_length": 128}, "stages": []},
            "environment": {"cpu": "AMD EPYC", "isa": ["avx512f", "avx512_vnni"], "cores": 2, "machine": "x86_64",
                            "python": "3.11", "runtimes": {"torch": "2.13.0", "onnxruntime": "1.32.0"}},
            "settings": {"threads": 2, "latency_samples": 300, "rounds": 3, "warmup": 20, "fixed_runs": 100,
                         "throughput_batch_size": 32, "throughput_batches": 8, "memory": True,
                         "fixed_shape": [1, 128], "sample_mean_tokens": 27.1},
            "data": {"train": 10196, "validation": 1133, "test": 2556, "test_mean_tokens": 27.0},
            "rows": rows, "created": "2026-01-01T00:00:00+00:00"}


def test_pareto_front_known_set():
    pts = [(1.0, 80.0), (2.0, 85.0), (2.5, 84.0), (3.0, 85.0), (0.5, 70.0), (2.0, 85.0), (4.0, 90.0),
           (None, 99.0), (5.0, None), (4.0, 89.0)]
    # (2.5, 84) dominated by (2, 85); (3, 85) dominated by (2, 85) (tie on accuracy, slower);
    # (4, 89) dominated by (4, 90) (tie on latency); the two equal (2, 85) points both stay; Nones ignored
    assert pareto_front(pts) == [4, 0, 1, 5, 6]
    assert pareto_front([]) == []
    assert pareto_front([(1.0, 50.0)]) == [0]
    assert pareto_front([(1.0, 50.0), (1.0, 50.0)]) == [0, 1]
    assert pareto_front([(2.0, 90.0), (1.0, 95.0)]) == [1]


def test_write_report_md_png_and_rerender(tmp_path):
    src = tmp_path / "store" / "report.json"
    src.parent.mkdir()
    src.write_text(json.dumps(_report()))
    run_dir = tmp_path / "run"
    paths = write_report(src, run_dir)
    assert [p.name for p in paths] == ["report.json", "report.md", "pareto.png"]
    assert json.loads((run_dir / "report.json").read_text()) == _report()

    md = (run_dir / "report.md").read_text()
    assert "# edgeft report: hand-made" in md and "AMD EPYC" in md
    assert "## Target `pytorch`" in md and "## Target `cpu`" in md
    header_lines = [ln for ln in md.splitlines() if ln.startswith("| artifact")]
    assert len(header_lines) == 2
    for col in COLUMNS:
        assert col in header_lines[0]
    for r in _report()["rows"]:
        assert any(ln.startswith(f"| {r['artifact']} |") or ln.startswith(f"| **{r['artifact']}** |")
                   for ln in md.splitlines()), r["artifact"]
    assert "| **int8** |" in md and "| **student-int8** |" in md and "| **export** |" in md
    assert "| student |" in md                       # dominated: not bold
    assert "Pareto front (fastest to most accurate): pruned, finetune" in md
    assert "What each column means" in md and "4.27x" in md and "(−0.19)" in md

    png = (run_dir / "pareto.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1024

    # re-render in place (what `edgeft report RUN_DIR` does), after editing the json
    data = _report()
    data["rows"][0]["artifact"] = "renamed"
    (run_dir / "report.json").write_text(json.dumps(data))
    paths = write_report(run_dir / "report.json", run_dir)
    assert "renamed" in (run_dir / "report.md").read_text()
    assert json.loads((run_dir / "report.json").read_text())["rows"][0]["artifact"] == "renamed"
    assert sorted(p.name for p in run_dir.iterdir()) == ["pareto.png", "report.json", "report.md"]


def test_missing_values_render_as_dashes():
    data = _report()
    for r in data["rows"]:
        r["peak_rss_mb"] = None
        r["speedup_vs_reference"] = None
    data["rows"][1]["latency_ms"]["p50"] = None
    md = render_markdown(data)
    assert "—" in md and "pruned" in md


def _device_row(artifact, target, precision, acc, p50, key, emulated=False):
    r = _row(artifact, target, precision, acc, p50, key)
    r.update(device=target, emulated=emulated, speedup_vs_reference=None, peak_rss_mb=None,
             fingerprint={"cpu": "ARM Cortex-A76", "arch": "aarch64", "cores": 4, "memory_mb": 8192,
                          "isa": ["asimd"], "os": "Linux-6.6-aarch64", "python": "3.11.2", "numpy": "2.4.6",
                          "runtime": "onnxruntime 1.32.0", "threads": 4, "ssh": "pi@pi5.local"})
    return r


def test_ssh_device_rows_get_their_own_table_fingerprint_and_failure_section(tmp_path):
    rep = _report()
    rep["rows"] += [{**_device_row("export", "pi5", "fp32", 0.8427, 9.0, "k4"), "agreement_with_host": 0.996,
                     "host_row": "export@cpu"},
                    _device_row("int8", "pi5", "int8", 0.8408, 5.0, "k5"),
                    _device_row("int8", "qemu-arm", "int8", 0.8408, 0.5, "k5", emulated=True)]
    rep["devices"] = {"pi5": {"temperature_c": 61.2, "busy": True, "others_cpu_share": 0.3}}
    rep["failed_targets"] = [{"target": "jetson", "step": "connect", "artifacts": ["export", "int8"],
                              "error": "device 'jetson', step connect: unreachable: Connection refused"}]
    md = render_markdown(rep)
    pi5 = md.split("## Device `pi5` — over SSH (pi@pi5.local)")[1].split("## ")[0]
    assert "- **Device:** ARM Cortex-A76, aarch64, 4 cores, 8.0 GB; ISA asimd" in pi5 and "61 °C" in pi5
    assert "onnxruntime 1.32.0, 4 thread(s)" in pi5 and "other work used 30% of the device's CPU" in pi5
    assert "**Emulated:**" not in pi5 and "same runtime: export 99.6% (vs export@cpu)" in pi5
    arm = md.split("## Device `qemu-arm`")[1].split("## ")[0]
    assert "**Emulated:**" in arm
    # the emulated row (0.5 ms, fastest of all) is left out of the cross-target front
    across = md.split("## Across targets")[1].split("\n\n")[1]
    assert "(emulated devices left out)" in across and "qemu-arm" not in across and "int8 on `cpu`" in across
    assert "## Failed devices" in md and "**jetson** (step connect; artifacts export, int8)" in md
    path = tmp_path / "report.json"
    path.write_text(json.dumps(rep))
    write_report(path, tmp_path)
    assert (tmp_path / "pareto.png").stat().st_size > 0
