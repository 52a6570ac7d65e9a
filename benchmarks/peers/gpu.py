"""Peers on an NVIDIA GPU (compare_peers.py --gpu), each as its tool's documentation shows:

- ort-cuda-fp32: the Optimum export (as ort-fp32) in an `onnxruntime.InferenceSession` with
  providers=["CUDAExecutionProvider", "CPUExecutionProvider"] (what
  `ORTModelForSequenceClassification.from_pretrained(..., provider="CUDAExecutionProvider")` runs).
- ort-cuda-fp16: `optimum.exporters.onnx.main_export(model, output, task="text-classification",
  dtype="fp16", device="cuda")` (Optimum's FP16 export, which needs the GPU) on the same provider.
- trt-fp16: the trtexec equivalent through the TensorRT Python API: that FP16 export parsed and built
  as it is (TensorRT 11 networks are strongly typed; trtexec --onnx=model.onnx --minShapes/--optShapes/
  --maxShapes), shapes batch 1..64 x sequence 1..max_length, optimal at 1 x the fixed length.

Every GPU row is timed by the same protocol as the CPU rows (inputs copied to the GPU and logits back
inside each timed call). Needs onnxruntime-gpu, TensorRT and Optimum on a machine with a GPU: on one
without, `--gpu` stops with the reason before any work.
"""

from __future__ import annotations

import logging
from pathlib import Path

from edgeft.targets.base import Session

from . import Built, build_once

log = logging.getLogger("edgeft.peers")


def unavailable_reason() -> str | None:
    import importlib.util

    from edgeft.ops.gpu import ort_cuda_unavailable_reason, tensorrt_unavailable_reason

    if importlib.util.find_spec("optimum") is None:
        return "the GPU peers export with Optimum, which is not installed"
    return ort_cuda_unavailable_reason() or tensorrt_unavailable_reason()


def _session(path: Path, threads: int):
    from edgeft.targets.cuda import CudaOrtSession, ort_cuda_session

    return CudaOrtSession(ort_cuda_session(path, threads), "peer")


def ort_cuda_fp32(*, model_dir: Path, work: Path, threads: int, built: dict, rebuild: bool = False, **_) -> Built:
    from .optimum_ort import optimum_export

    folder, secs, reused = optimum_export(model_dir, work, rebuild)
    path = folder / "model.onnx"
    return Built("ort-cuda-fp32", "Optimum export + ONNX Runtime CUDA provider FP32", "fp32", "onnx", path,
                 _session(path, threads), how="main_export(model, output, task='text-classification'); "
                 "InferenceSession(providers=['CUDAExecutionProvider', 'CPUExecutionProvider'])",
                 build_s=secs, reused=reused)


def _fp16_export(model_dir: Path, work: Path, rebuild: bool):
    def build(out: Path):
        from optimum.exporters.onnx import main_export

        main_export(str(model_dir), output=out, task="text-classification", dtype="fp16", device="cuda")

    return build_once(work / "optimum-onnx-fp16", build, rebuild)


def ort_cuda_fp16(*, model_dir: Path, work: Path, threads: int, rebuild: bool = False, **_) -> Built:
    folder, secs, reused = _fp16_export(model_dir, work, rebuild)
    path = folder / "model.onnx"
    return Built("ort-cuda-fp16", "Optimum FP16 export + ONNX Runtime CUDA provider", "fp16", "onnx", path,
                 _session(path, threads), how="main_export(model, output, task='text-classification', dtype='fp16', "
                 "device='cuda'); InferenceSession(providers=['CUDAExecutionProvider', ...])",
                 build_s=secs, reused=reused)


class _EngineSession(Session):
    target = "peer"

    def __init__(self, runner):
        self.runner, self.input_names = runner, list(runner.inputs)

    def run_feed(self, feed):
        return self.runner.run(feed)

    def last_gpu_ms(self):
        return self.runner.last_gpu_ms()


def trt_fp16(*, model_dir: Path, work: Path, task, rebuild: bool = False, max_length: int = 128,
             fixed_length: int = 128, **_) -> Built:
    import numpy as np

    from edgeft.ops.tensorrt_engine import EngineRunner, build_engine, profile_shapes

    folder, secs, reused = _fp16_export(model_dir, work, rebuild)
    onnx_path = folder / "model.onnx"
    import onnx

    names = [i.name for i in onnx.load(str(onnx_path), load_external_data=False).graph.input]
    example = {n: np.zeros((1, fixed_length), np.int64) for n in names}
    profile = profile_shapes(example, {0: "batch", 1: "sequence"}, np.array([1, max_length]),
                             np.array([fixed_length]), max_length, 64)

    def build(out: Path):
        plan, facts = build_engine(onnx_path, profile, "fp16")
        (out / "model.plan").write_bytes(plan)

    eng_dir, bsecs, breused = build_once(work / "trt-fp16", build, rebuild)
    runner = EngineRunner((eng_dir / "model.plan").read_bytes(), profile)
    return Built("trt-fp16", "TensorRT engine of the Optimum FP16 export (trtexec equivalent)", "fp16", "engine",
                 eng_dir / "model.plan", _EngineSession(runner),
                 how="trtexec --onnx=<optimum fp16 export> --minShapes=1x1 --optShapes=1xL --maxShapes=64xmax_length "
                     "(TensorRT Python API: OnnxParser + build_serialized_network)",
                 details={"profile": profile}, build_s=secs + bsecs, reused=reused and breused)
