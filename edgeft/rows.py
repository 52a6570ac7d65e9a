"""Arithmetic on a benchmark report's rows (plain dicts, as in report.json): each row against its
reference PyTorch row, each INT8 row against its FP32 row on the same target, and a one-line summary.
No models, no runtimes: the benchmark stage calls these after timing, and they are tested on numbers.
"""

from __future__ import annotations

import logging

log = logging.getLogger("edgeft")


def compare_to_reference(rows: list[dict], reference: str | None = None) -> None:
    """speedup_vs_reference and accuracy_delta_vs_reference (points) against a pytorch row: the
    `reference` artifact's, else the row's own torch model's, else the first. Speedups only between
    rows of one device (`device`: None on this machine, the target's name on an SSH device)."""
    torch_rows = [r for r in rows if r["target"] == "pytorch"]
    fixed = next((t for t in torch_rows if t["artifact"] == reference), None) if reference else None
    for r in rows:
        ref = fixed or next((t for t in torch_rows if t["key"] == r["torch_source"]),
                            torch_rows[0] if torch_rows else None)
        if ref is None:
            r.update(reference=None, speedup_vs_reference=None, accuracy_delta_vs_reference=None)
            continue
        r["reference"] = f"{ref['artifact']}@{ref['target']}"
        # a row measured on another device (an SSH target) is not faster or slower than this machine's
        # reference: only its accuracy compares
        same_device = r.get("device") == ref.get("device")
        r["speedup_vs_reference"] = round(ref["latency_ms"]["p50"] / r["latency_ms"]["p50"], 3) if same_device else None
        r["accuracy_delta_vs_reference"] = round(100 * (r["accuracy"] - ref["accuracy"]), 2)


INT8_PAYS = 1.15    # an INT8 row at most 1/1.15 of its FP32 row's p50 on the same target pays for its accuracy risk


def int8_gains(rows: list[dict]) -> None:
    """int8_speedup_vs_fp32: the p50 of the FP32 row of the same torch model on the same target divided
    by this INT8 row's p50; int8_pays false when it is below INT8_PAYS (on x86 CPUs without VNNI
    ONNX Runtime INT8 measured no faster than FP32). None where there is no such FP32 row."""
    for r in rows:
        if r["precision"] != "int8":
            continue
        fp32 = [f for f in rows if f["target"] == r["target"] and f["precision"] in ("fp32", "bf16")
                and f["torch_source"] == r["torch_source"] and f.get("latency_ms")]
        if not fp32:
            r.update(int8_speedup_vs_fp32=None, int8_pays=None)
            continue
        best = min(fp32, key=lambda f: f["latency_ms"]["p50"])
        ratio = best["latency_ms"]["p50"] / r["latency_ms"]["p50"]
        r.update(int8_speedup_vs_fp32=round(ratio, 3), int8_fp32_row=best["artifact"], int8_pays=ratio >= INT8_PAYS)
        if ratio < INT8_PAYS:
            log.warning("%s on %s: INT8 is %.2fx the FP32 row %s (p50 %.2f vs %.2f ms): it buys no speed on this "
                        "target", r["artifact"], r["target"], ratio, best["artifact"], r["latency_ms"]["p50"],
                        best["latency_ms"]["p50"])


def summary(r: dict) -> str:
    sp = f" ({r['speedup_vs_reference']:.2f}x)" if r.get("speedup_vs_reference") else ""
    rss = f", peak RSS {r['peak_rss_mb']:.0f} MB" if r.get("peak_rss_mb") else ""
    return (f"{r['artifact']} on {r['target']} ({r['precision']}): acc {100 * r['accuracy']:.2f}%, "
            f"p50 {r['latency_ms']['p50']:.2f} ms{sp}, fixed p50 {r['latency_fixed_ms']['p50']:.2f} ms, "
            f"{r['throughput_sps']:.0f} samples/s, {r['size_mb']:.1f} MB{rss}")


def training_rows(artifacts: list) -> list[dict]:
    """One row per trained model among the benchmarked artifacts and their torch ancestors (anything whose
    meta has `trainable_params`: finetune, distill, qat): how it was trained and what training cost."""
    out = []
    for a in artifacts:
        m = a.meta
        params, trainable = m.get("params"), m.get("trainable_params")
        out.append({
            "artifact": a.stage, "stage_type": a.stage_type,
            "method": m.get("method") or {"distill": "distill (full)", "qat": "qat (full)"}.get(a.stage_type, "full"),
            "params": params, "trainable_params": trainable,
            "trainable_share": round(trainable / params, 4) if params and trainable is not None else None,
            "train_wall_s": m.get("train_wall_s"), "train_peak_rss_mb": m.get("train_peak_rss_mb"),
            **({"train_peak_cuda_mb": m["train_peak_cuda_mb"]} if "train_peak_cuda_mb" in m else {}),
            "train_device": m.get("device"), "val_accuracy": m.get("val_accuracy"),
            "kept_epoch": m.get("kept_epoch"), "steps": m.get("steps"),
            "stopped_early_after_epoch": (m.get("early_stopping") or {}).get("stopped_after_epoch"),
        })
    return out
