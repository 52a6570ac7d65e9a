"""Peers on ONNX Runtime, made with Hugging Face Optimum as its documentation shows.

- ort-fp32: `optimum.exporters.onnx.main_export(model_dir, output, task="text-classification")`
  (what `optimum-cli export onnx` and `ORTModelForSequenceClassification.from_pretrained(export=True)`
  run), every other argument at its default.
- ort-int8-dynamic: `ORTQuantizer.from_pretrained(onnx_dir).quantize(save_dir, qconfig)` with
  `AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=False)`, the configuration of
  Optimum's quantization guide. (No `quant_pre_process`: the ORTQuantizer path does not call it. If
  it is ever added, it needs skip_symbolic_shape=True on this export: see /work/shared/peers.md.)

Both run in a plain `onnxruntime.InferenceSession` with default SessionOptions except
`intra_op_num_threads = threads` (the defaults are ORT_ENABLE_ALL graph optimizations, sequential
execution, spinning threads), CPU execution provider.
"""

from __future__ import annotations

import logging
from pathlib import Path

from . import Built, build_once

log = logging.getLogger("edgeft.peers")

ORT_OPTIONS = "onnxruntime.SessionOptions() defaults, intra_op_num_threads={threads}, CPUExecutionProvider"


def ort_session(path: Path, threads: int):
    import onnxruntime as ort

    from edgeft.targets.ort_cpu import OrtSession

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    return OrtSession(ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]), threads)


def optimum_export(model_dir: Path, work: Path, rebuild: bool = False) -> tuple[Path, float, bool]:
    """The Optimum ONNX export folder (model.onnx + tokenizer and config)."""
    def build(out: Path):
        from optimum.exporters.onnx import main_export

        main_export(str(model_dir), output=out, task="text-classification")

    return build_once(work / "optimum-onnx", build, rebuild)


def _opset(path: Path) -> int | None:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), None)


def ort_fp32(*, model_dir: Path, work: Path, threads: int, rebuild: bool = False, **_) -> Built:
    import importlib.metadata as md

    import onnxruntime as ort

    folder, secs, reused = optimum_export(model_dir, work, rebuild)
    path = folder / "model.onnx"
    log.info("  ort-fp32: %s (opset %s)", path, _opset(path))
    return Built("ort-fp32", "Optimum export + ONNX Runtime FP32", "fp32", "onnx", path, ort_session(path, threads),
                 how=f"optimum.exporters.onnx.main_export(model, output, task='text-classification'); "
                     f"{ORT_OPTIONS.format(threads=threads)}",
                 details={"optimum": md.version("optimum"), "optimum-onnx": md.version("optimum-onnx"),
                          "onnxruntime": ort.__version__,
                          "opset": _opset(path)},
                 build_s=secs, reused=reused)


def ort_int8_dynamic(*, model_dir: Path, work: Path, threads: int, built: dict, rebuild: bool = False,
                     **_) -> Built:
    src = built["ort-fp32"].path.parent if "ort-fp32" in built else optimum_export(model_dir, work, rebuild)[0]

    def build(out: Path):
        from optimum.onnxruntime import ORTQuantizer
        from optimum.onnxruntime.configuration import AutoQuantizationConfig

        qconfig = AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=False)
        log.info("  ort-int8-dynamic: %s", qconfig)
        quantizer = ORTQuantizer.from_pretrained(src, file_name="model.onnx")
        quantizer.quantize(save_dir=out, quantization_config=qconfig)

    folder, secs, reused = build_once(work / "optimum-int8-avx512_vnni-dynamic", build, rebuild)
    path = folder / "model_quantized.onnx"
    return Built("ort-int8-dynamic", "Optimum ORTQuantizer dynamic INT8 (avx512_vnni cfg)", "int8", "onnx", path,
                 ort_session(path, threads),
                 how="ORTQuantizer.from_pretrained(onnx_dir).quantize(save_dir, "
                     "AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=False)); "
                     f"{ORT_OPTIONS.format(threads=threads)}",
                 details={"config": "QOperator IntegerOps, u8 activations / s8 weights, per-tensor, dynamic"},
                 build_s=secs, reused=reused)
