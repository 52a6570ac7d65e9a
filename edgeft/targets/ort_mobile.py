"""ort-mobile: ORT format models (.ort, from `export` format ort-mobile) in ONNX Runtime on this CPU.

The Python package is ONNX Runtime's full build; it loads ORT format models with the same CPU
execution provider and kernels that a reduced (minimal) build compiles in, with the session settings
of the `cpu` target. What a reduced build would have to contain is the row's `runtime_footprint`: the
operators of the model's required-operators config.
"""

from __future__ import annotations

from .ort_cpu import OrtSession, session_options

NAME = "ort-mobile"
PROVIDER = "CPUExecutionProvider"


class OrtMobileSession(OrtSession):
    target = NAME

    def __init__(self, session, threads: int, artifact):
        super().__init__(session, threads)
        self.artifact = artifact

    def footprint(self) -> dict:
        return footprint(self.artifact)


def footprint(artifact) -> dict:
    return {"required_operators": artifact.meta.get("required_operator_count"),
            "operators": artifact.meta.get("required_operators"),
            "config": artifact.meta.get("required_operators_config")}


def preload() -> None:
    import onnxruntime  # noqa: F401


def load(artifact, threads: int, task=None) -> OrtMobileSession:
    import onnxruntime as ort

    if artifact.kind != "ort":
        raise ValueError(f"target {NAME} runs ort (ORT format) artifacts, not {artifact.kind!r}")
    sess = ort.InferenceSession(str(artifact.main_path), session_options(threads), providers=[PROVIDER])
    return OrtMobileSession(sess, threads, artifact)


def fingerprint(threads: int) -> dict:
    import onnxruntime as ort

    return {"target": NAME, "runtime": f"onnxruntime {ort.__version__} (ORT format model)", "provider": PROVIDER,
            "threads": threads, "inter_op_threads": 1, "graph_optimization": "ORT_ENABLE_ALL"}
