"""openvino: the OpenVINO runtime on the CPU device.

Compiles an ONNX file or an OpenVINO IR (model.xml + model.bin) with the LATENCY performance hint
and a fixed `INFERENCE_NUM_THREADS`; inference precision is pinned to f32 so a CPU with bf16 or AMX
does not silently run an FP32 artifact in bf16 (OpenVINO's default there: the `openvino-bf16`
target, targets/openvino_bf16.py, measures that on purpose). Image models keep their shapes (the
batch axis dynamic). Text models answer batch-1 requests on sequence-length buckets (`BUCKETS`):
each request is padded with attention mask 0 to the next bucket and runs on a model compiled for
the static shape [1, bucket] (on first use); batches and longer requests run with dynamic shapes.
Static buckets measured faster than dynamic shapes for INT8 models and about even for FP32
(benchmarks/openvino_buckets.py measures it; the README has the figures). The settings are
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


# Sequence-length buckets for batch-1 requests (the edge case: one request at a time): each is padded
# (attention mask 0) up to the next bucket and runs on a model compiled for the static shape
# [1, bucket]; longer requests and batches run on the dynamic-shape model at their own shape.
BUCKETS = (16, 32, 64, 128)
# a bucket is used only if its first padded request gives the dynamic model's logits within this
# (and the same argmax): about the rounding noise of one INT8 step on a logit, far below what moves answers
BUCKET_ATOL, BUCKET_RTOL = 1e-3, 1e-2


class BucketedOvSession(OvSession):
    """Text models with a dynamic sequence axis (axis 1 of every input): one static [1, bucket]
    model per bucket, compiled when a request first needs it."""

    def __init__(self, model, threads: int, precision: str, target: str = NAME, buckets=BUCKETS, name: str = ""):
        super().__init__(compile_model(model, threads, precision), threads, target)
        self.name = name                                 # the artifact, for messages
        self.model, self.precision, self.buckets = model, precision, tuple(buckets)
        self.by_bucket: dict[int, object] = {}
        # per bucket: how far its first padded request was from the dynamic model, and whether it is used
        self.bucket_checks: dict[int, dict] = {}

    def _request(self, batch: int, length: int, feed: dict):
        bucket = next((b for b in self.buckets if b >= length), None)
        if batch != 1 or bucket is None:
            return self.request, length                  # batches, and longer than every bucket: dynamic
        if bucket not in self.by_bucket:
            m = self.model.clone()
            m.reshape({i.get_any_name(): [1, bucket] for i in m.inputs})
            request = compile_model(m, self.threads, self.precision).create_infer_request()
            self.by_bucket[bucket] = request if self._check_bucket(bucket, request, feed, length) else None
        if self.by_bucket[bucket] is None:
            return self.request, length                  # the padded model did not give the same answer here
        return self.by_bucket[bucket], bucket

    def _check_bucket(self, bucket: int, request, feed: dict, length: int) -> bool:
        """Padding with mask 0 is exact in arithmetic, but the static-shape model may run other kernels
        (other blocking, other INT8 rounding; on an AVX2 CPU an INT8 model moved 0.02 on logits of 0.8).
        So the first request of each bucket runs both ways; past BUCKET_ATOL + BUCKET_RTOL x |logits| the
        bucket is not used and its requests run with dynamic shapes: the target never changes answers
        to gain speed."""
        padded = {k: np.pad(v, ((0, 0), (0, bucket - length))) for k, v in feed.items()}
        got = np.array(request.infer(padded)[self.out], dtype=np.float64)
        ref = np.array(self.request.infer(feed)[self.out], dtype=np.float64)
        diff = float(np.abs(got - ref).max())
        bound = BUCKET_ATOL + BUCKET_RTOL * float(np.abs(ref).max())
        ok = diff <= bound and int(got.argmax()) == int(ref.argmax())
        self.bucket_checks[bucket] = {"max_abs_diff": round(diff, 6), "bound": round(bound, 6), "used": ok}
        if not ok:
            import logging
            logging.getLogger("edgeft").warning(
                "%s on %s: the static [1, %d] model differs from the dynamic one by %.3g (bound %.3g) on this CPU: "
                "requests of that bucket run with dynamic shapes", self.name or "model", self.target, bucket, diff,
                bound)
        return ok

    def run_feed(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        batch, length = next(iter(feed.values())).shape[:2]
        request, size = self._request(batch, length, feed)
        if size != length:
            feed = {k: np.pad(v, ((0, 0), (0, size - length))) for k, v in feed.items()}
        return np.array(request.infer(feed)[self.out])

    def shape_notes(self) -> dict:
        return {"buckets": {str(b): c for b, c in sorted(self.bucket_checks.items())}}


def shapes(model, task) -> str:
    """'buckets' for a text model whose inputs all have a dynamic sequence axis, else 'dynamic'."""
    axes = task.INPUT_AXES if task is not None else {}
    if axes.get(1) != "sequence":
        return "dynamic"
    ok = all(len(i.get_partial_shape()) == 2 and i.get_partial_shape()[1].is_dynamic for i in model.inputs)
    return "buckets" if ok else "dynamic"


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
    """Text models run on sequence-length buckets (BUCKETS), everything else with its own shapes."""
    import openvino as ov

    if artifact.kind not in ("onnx", "openvino"):
        raise ValueError(f"target {target} runs onnx and openvino artifacts, not {artifact.kind!r}")
    model = ov.Core().read_model(str(artifact.main_path))
    if shapes(model, task) == "buckets":
        return BucketedOvSession(model, threads, precision, target, name=getattr(artifact, "stage", ""))
    return OvSession(compile_model(model, threads, precision), threads, target)


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
            "text_shapes": f"sequence buckets {'/'.join(map(str, BUCKETS))} at batch 1 (static [1, bucket], "
                           f"padded, attention mask 0); batches and longer requests: dynamic",
            "device": core.get_property(DEVICE, "FULL_DEVICE_NAME"), "optimization_capabilities": caps}
