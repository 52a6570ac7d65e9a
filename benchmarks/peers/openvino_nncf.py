"""Peers on OpenVINO, as its documentation shows.

- openvino-fp32: `ov.convert_model(<the Optimum ONNX>)`, saved with `compress_to_fp16=False` (so the
  weights stay FP32 on disk too), compiled with `core.compile_model(model, "CPU",
  {PERFORMANCE_HINT: LATENCY, INFERENCE_NUM_THREADS: threads})`. The inference precision stays at
  OpenVINO's default, as users get it: bf16 on CPUs with AMX or AVX-512 BF16 (the row then says bf16),
  f32 elsewhere.
- openvino-nncf-int8: `nncf.quantize(ov_model, nncf.Dataset(calibration), subset_size=N,
  model_type=nncf.ModelType.TRANSFORMER)` on that model, every other argument at its default
  (preset performance, SmoothQuant and bias correction on as the transformer type sets them);
  N train sentences (300), each tokenized at its own length. Compiled like openvino-fp32.

Timed through an InferRequest (`request.infer(feed)`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from edgeft.targets.openvino_cpu import OvSession

from . import Built, build_once
from .optimum_ort import optimum_export

log = logging.getLogger("edgeft.peers")


def compile_cpu(path: Path, threads: int) -> tuple[OvSession, dict]:
    import openvino as ov
    import openvino.properties as props
    import openvino.properties.hint as hints

    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(path)), "CPU", {
        hints.performance_mode: hints.PerformanceMode.LATENCY, props.inference_num_threads: threads})
    info = {}
    for key in ("INFERENCE_NUM_THREADS", "NUM_STREAMS", "INFERENCE_PRECISION_HINT", "PERFORMANCE_HINT"):
        try:
            v = compiled.get_property(key)
            info[key] = v.get_type_name() if hasattr(v, "get_type_name") else str(v)
        except RuntimeError:
            pass
    info["openvino"] = ov.__version__
    return OvSession(compiled, threads), info


def _runs_bf16(info: dict) -> bool:
    """OpenVINO's default inference precision is bf16 on CPUs with AMX / AVX-512 BF16."""
    return "bf16" in str(info.get("INFERENCE_PRECISION_HINT", "")).lower()


COMPILE = "core.compile_model(model, 'CPU', {{PERFORMANCE_HINT: LATENCY, INFERENCE_NUM_THREADS: {threads}}})"


def _fp32_model(model_dir: Path, work: Path, built: dict, rebuild: bool) -> tuple[Path, float, bool]:
    onnx_path = (built["ort-fp32"].path if "ort-fp32" in built
                 else optimum_export(model_dir, work, rebuild)[0] / "model.onnx")

    def build(out: Path):
        import openvino as ov

        ov.save_model(ov.convert_model(str(onnx_path)), str(out / "model.xml"), compress_to_fp16=False)

    folder, secs, reused = build_once(work / "openvino-fp32", build, rebuild)
    return folder / "model.xml", secs, reused


def openvino_fp32(*, model_dir: Path, work: Path, threads: int, built: dict, rebuild: bool = False, **_) -> Built:
    path, secs, reused = _fp32_model(model_dir, work, built, rebuild)
    sess, info = compile_cpu(path, threads)
    log.info("  openvino-fp32: %s", info)
    bf16 = _runs_bf16(info)
    return Built("openvino-fp32", "OpenVINO FP32 model, default precision" + (" (bf16 on this CPU)" if bf16 else ""),
                 "bf16" if bf16 else "fp32", "openvino", path, sess,
                 how="ov.convert_model(optimum model.onnx); ov.save_model(..., compress_to_fp16=False); "
                     + COMPILE.format(threads=threads),
                 details=info, build_s=secs, reused=reused)


def openvino_nncf_int8(*, model_dir: Path, work: Path, threads: int, built: dict, calib: list,
                       rebuild: bool = False, **_) -> Built:
    fp32 = built["openvino-fp32"].path if "openvino-fp32" in built else _fp32_model(model_dir, work, built, rebuild)[0]

    def build(out: Path):
        import nncf
        import openvino as ov

        model = ov.Core().read_model(str(fp32))
        names = [i.get_any_name() for i in model.inputs]
        dataset = nncf.Dataset(calib, lambda b: {n: b[n] for n in names})
        log.info("  openvino-nncf-int8: nncf.quantize on %d calibration samples (model_type TRANSFORMER)", len(calib))
        q = nncf.quantize(model, dataset, subset_size=len(calib), model_type=nncf.ModelType.TRANSFORMER)
        ov.save_model(q, str(out / "model.xml"), compress_to_fp16=False)

    folder, secs, reused = build_once(work / f"openvino-nncf-int8-c{len(calib)}", build, rebuild)
    path = folder / "model.xml"
    sess, info = compile_cpu(path, threads)
    import nncf

    info["nncf"] = nncf.__version__
    info["calibration_samples"] = len(calib)
    float_ops = ", float ops in bf16 on this CPU" if _runs_bf16(info) else ""
    return Built("openvino-nncf-int8", f"OpenVINO + NNCF PTQ INT8 ({len(calib)} calibration samples{float_ops})",
                 "int8", "openvino", path, sess,
                 how=f"nncf.quantize(ov_model, nncf.Dataset({len(calib)} train sentences at own length), "
                     f"subset_size={len(calib)}, model_type=nncf.ModelType.TRANSFORMER); "
                     + COMPILE.format(threads=threads),
                 details=info, build_s=secs, reused=reused)
