"""openvino: the OpenVINO runtime on the CPU device.

Compiles an ONNX file or an OpenVINO IR (model.xml + model.bin) with the LATENCY performance hint
and a fixed `INFERENCE_NUM_THREADS`; inference precision is pinned to f32 so a CPU with bf16 or AMX
does not silently run an FP32 artifact in bf16 (OpenVINO's default there: the `openvino-bf16`
target, targets/openvino_bf16.py, measures that on purpose). Input shapes stay dynamic (batch and
sequence), so every request runs at its own length; the settings the compiled model reports are
recorded in the row's fingerprint.
"""

from __future__ import annotations

import numpy as np

from .base import Session

NAME = "openvino"
DEVICE = "CPU"


class OvSession(Session):
    target = NAME

    def __init__(self, compiled, threads: int, target: str = NAME):
        self.target = target
        self.compiled = compiled
        self.threads = threads
        self.request = compiled.create_infer_request()
        self.input_names = [i.get_any_name() for i in compiled.inputs]
        outs = compiled.outputs
        self.out = next((i for i, o in enumerate(outs) if "logits" in o.get_names()), 0)

    def run_feed(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        return np.array(self.request.infer(feed)[self.out])


def preload() -> None:
    import openvino  # noqa: F401


def settings(threads: int, precision: str = "f32") -> dict:
    """The target's compile settings: latency hint, fixed threads, inference precision (f32 here)."""
    import openvino as ov
    import openvino.properties as props
    import openvino.properties.hint as hints

    return {hints.performance_mode: hints.PerformanceMode.LATENCY, props.inference_num_threads: threads,
            hints.inference_precision: getattr(ov.Type, precision)}


def compile_model(model, threads: int, precision: str = "f32"):
    """Compile an ONNX/IR path or an `ov.Model` for the CPU with the target's settings."""
    import openvino as ov

    core = ov.Core()
    if not isinstance(model, ov.Model):
        model = core.read_model(str(model))
    return core.compile_model(model, DEVICE, settings(threads, precision))


def load(artifact, threads: int, task=None, precision: str = "f32", target: str = NAME) -> OvSession:
    if artifact.kind not in ("onnx", "openvino"):
        raise ValueError(f"target {target} runs onnx and openvino artifacts, not {artifact.kind!r}")
    return OvSession(compile_model(artifact.main_path, threads, precision), threads, target)


def compiled_settings(compiled) -> dict:
    out = {}
    for key in ("INFERENCE_NUM_THREADS", "NUM_STREAMS", "INFERENCE_PRECISION_HINT", "PERFORMANCE_HINT"):
        try:
            out[key] = str(compiled.get_property(key))
        except RuntimeError:
            pass
    return out


def fingerprint(threads: int, precision: str = "f32", target: str = NAME) -> dict:
    import openvino as ov

    core = ov.Core()
    caps = [str(c) for c in core.get_property(DEVICE, "OPTIMIZATION_CAPABILITIES")]
    return {"target": target, "runtime": f"openvino {ov.__version__}", "provider": f"{DEVICE} plugin",
            "threads": threads, "hints": {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": precision},
            "device": core.get_property(DEVICE, "FULL_DEVICE_NAME"), "optimization_capabilities": caps}
