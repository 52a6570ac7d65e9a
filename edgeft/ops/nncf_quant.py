"""INT8 with NNCF on OpenVINO models: plain functions.

`nncf_ptq`: `nncf.quantize` on the OpenVINO model converted from an FP32 ONNX file, with a
calibration set of real inputs (each at its own length), `model_type=TRANSFORMER` for encoders
(NNCF then keeps attention-sensitive parts in float and applies SmoothQuant). Saved as IR
(model.xml + model.bin) with FP32 where float remains.
"""

from __future__ import annotations

from pathlib import Path


def nncf_ptq(src_onnx: str | Path, dst_xml: str | Path, calibration: list[dict], transformer: bool = True,
             preset: str = "performance") -> dict:
    """Quantize `src_onnx` with NNCF PTQ; `calibration` is a list of feeds {input name: array}.
    Returns facts for the artifact's meta."""
    import nncf
    import openvino as ov

    model = ov.convert_model(str(src_onnx))
    names = [i.get_any_name() for i in model.inputs]
    missing = [n for n in names if n not in calibration[0]]
    if missing:
        raise ValueError(f"calibration feeds lack model inputs {missing}")
    dataset = nncf.Dataset(calibration, lambda f: {n: f[n] for n in names})
    kwargs = {"model_type": nncf.ModelType.TRANSFORMER} if transformer else {}
    q = nncf.quantize(model, dataset, subset_size=len(calibration),
                      preset=nncf.QuantizationPreset(preset), **kwargs)
    ov.save_model(q, str(dst_xml), compress_to_fp16=False)
    return {"nncf": nncf.__version__, "openvino": ov.__version__, "model_type": "transformer" if transformer else None,
            "preset": preset, "subset_size": len(calibration), "fake_quantize_ops": fake_quantize_count(q)}


def fake_quantize_count(model) -> int:
    return sum(1 for op in model.get_ops() if op.get_type_name() == "FakeQuantize")
