"""INT8 with NNCF on OpenVINO models: plain functions.

`nncf_ptq`: `nncf.quantize` on the OpenVINO model converted from an FP32 ONNX file, with a
calibration set of real inputs (each at its own length), `model_type=TRANSFORMER` for encoders
(NNCF then keeps attention-sensitive parts in float and applies SmoothQuant). Saved as IR
(model.xml + model.bin) with FP32 where float remains.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np


def _prepare(src_onnx, calibration: list[dict], transformer: bool, preset: str | None, overflow_fix: str | None):
    import nncf
    import openvino as ov

    model = ov.convert_model(str(src_onnx))
    names = [i.get_any_name() for i in model.inputs]
    missing = [n for n in names if n not in calibration[0]]
    if missing:
        raise ValueError(f"calibration feeds lack model inputs {missing}")
    kwargs = {"model_type": nncf.ModelType.TRANSFORMER} if transformer else {}
    if preset:
        kwargs["preset"] = nncf.QuantizationPreset(preset)
    if overflow_fix:     # "enable": 7-bit weights for x86 CPUs without VNNI (edgeft/isa.py)
        kwargs["advanced_parameters"] = nncf.AdvancedQuantizationParameters(overflow_fix=nncf.OverflowFix(overflow_fix))
    return model, names, nncf.Dataset(calibration, lambda f: {n: f[n] for n in names}), kwargs


def _facts(q, calibration, transformer, preset, overflow_fix=None) -> dict:
    import nncf
    import openvino as ov

    return {"nncf": nncf.__version__, "openvino": ov.__version__,
            "model_type": "transformer" if transformer else None,
            "preset": preset or "NNCF default (mixed for transformers)", "subset_size": len(calibration),
            "fake_quantize_ops": fake_quantize_count(q), "overflow_fix": overflow_fix or "NNCF default"}


def nncf_ptq(src_onnx: str | Path, dst_xml: str | Path, calibration: list[dict], transformer: bool = True,
             preset: str | None = None, overflow_fix: str | None = None) -> dict:
    """Quantize `src_onnx` with NNCF PTQ; `calibration` is a list of feeds {input name: array}.
    Returns facts for the artifact's meta."""
    import nncf
    import openvino as ov

    model, _, dataset, kwargs = _prepare(src_onnx, calibration, transformer, preset, overflow_fix)
    q = nncf.quantize(model, dataset, subset_size=len(calibration), **kwargs)
    ov.save_model(q, str(dst_xml), compress_to_fp16=False)
    return _facts(q, calibration, transformer, preset, overflow_fix)


def nncf_accuracy_control(src_onnx: str | Path, dst_xml: str | Path, calibration: list[dict],
                          validation: list[tuple[dict, int]], metric: Callable[[np.ndarray, np.ndarray], float],
                          max_drop_points: float, transformer: bool = True, preset: str | None = None,
                          overflow_fix: str | None = None) -> dict:
    """NNCF's quantize-with-accuracy-control: quantize, then return the most sensitive layers to
    float until the validation metric drops by at most `max_drop_points` (absolute, in points).
    `validation` is a list of (feed, label); `metric(logits, labels)` gives a fraction."""
    import nncf
    import openvino as ov

    model, names, dataset, kwargs = _prepare(src_onnx, calibration, transformer, preset, overflow_fix)

    def validate(compiled, items) -> float:
        logits, labels = [], []
        for feed, label in items:
            logits.append(np.asarray(compiled({n: feed[n] for n in names})[0]))
            labels.append(label)
        return float(metric(np.concatenate(logits), np.asarray(labels)))

    val = nncf.Dataset(validation)
    if "advanced_parameters" in kwargs:       # this entry point names the same thing differently
        kwargs["advanced_quantization_parameters"] = kwargs.pop("advanced_parameters")
    q = nncf.quantize_with_accuracy_control(
        model, dataset, val, validate, max_drop=max_drop_points / 100, drop_type=nncf.DropType.ABSOLUTE,
        subset_size=len(calibration), **kwargs)
    ov.save_model(q, str(dst_xml), compress_to_fp16=False)
    return {**_facts(q, calibration, transformer, preset, overflow_fix), "max_drop_points": max_drop_points,
            "validation_items": len(validation)}


def fake_quantize_count(model) -> int:
    return sum(1 for op in model.get_ops() if op.get_type_name() == "FakeQuantize")
