"""cpu: ONNX Runtime with the CPU execution provider.

Session settings: `threads` intra-op threads, 1 inter-op thread, sequential execution, every graph
optimization (ORT_ENABLE_ALL). Thread spinning stays at ONNX Runtime's default (on), as users get it.
"""

from __future__ import annotations

import numpy as np

from .base import Session

NAME = "cpu"
PROVIDER = "CPUExecutionProvider"


class OrtSession(Session):
    target = NAME

    def __init__(self, session, threads: int):
        self.session = session
        self.threads = threads
        self.input_names = [i.name for i in session.get_inputs()]
        outputs = [o.name for o in session.get_outputs()]
        self.output = "logits" if "logits" in outputs else outputs[0]
        self._outputs = [self.output]

    def run_feed(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(self._outputs, feed)[0]


def preload() -> None:
    import onnxruntime  # noqa: F401


def session_options(threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return opts


def load(artifact, threads: int, task=None) -> OrtSession:
    import onnxruntime as ort

    if artifact.kind != "onnx":
        raise ValueError(f"target {NAME} runs onnx artifacts, not {artifact.kind!r}")
    sess = ort.InferenceSession(str(artifact.main_path), session_options(threads), providers=[PROVIDER])
    return OrtSession(sess, threads)


def fingerprint(threads: int) -> dict:
    import onnxruntime as ort

    return {"target": NAME, "runtime": f"onnxruntime {ort.__version__}", "provider": PROVIDER,
            "threads": threads, "inter_op_threads": 1, "graph_optimization": "ORT_ENABLE_ALL"}
