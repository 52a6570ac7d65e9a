"""TensorRT engines from ONNX: optimization profiles from the data, the graphs TensorRT reads for each
precision, the build (TensorRT Python API) and a runner on torch CUDA buffers.

Precision lives in the graph (strongly typed networks: TensorRT 11 has no other kind, TensorRT 10.12+
takes the same flag): fp32 builds the ONNX as it is, without TF32 where the builder has that flag;
fp16 first converts the ONNX to FP16 (onnxruntime's float16 converter, inputs and outputs kept in
their types: the engine takes the same feeds); int8 builds a QDQ ONNX as it is (explicit
quantization), which TensorRT reads only with signed INT8 Q/DQ and zero points of 0 (`qdq_problems`).

Optimization profile (`profile_shapes`): batch 1 .. max_batch, optimal at opt_batch (1: the latency
case); for text the sequence axis from the shortest example of the data to the recipe's max_length,
optimal at the median length of the training split. A request outside the profile is a clear error.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger("edgeft")

WORKSPACE_MB = 1024


def profile_shapes(example: dict[str, np.ndarray], axes: dict[int, str], lengths: np.ndarray, train_lengths,
                   max_length: int, max_batch: int, opt_batch: int = 1) -> dict[str, list[list[int]]]:
    """{input name: [min shape, opt shape, max shape]} for every input of `example` (one encoded batch:
    the shapes of the other axes). `axes` is the task's INPUT_AXES ({0: "batch", 1: "sequence"});
    `lengths`: every example's length the engine must take (all splits); `train_lengths`: the lengths
    whose median is the optimum (the training split)."""
    if not 1 <= opt_batch <= max_batch:
        raise ValueError(f"opt_batch {opt_batch} must be between 1 and max_batch {max_batch}")
    lengths = np.asarray(lengths)
    if "sequence" in axes.values():
        if lengths.size == 0:
            raise ValueError("no example lengths to size the sequence axis from")
        lo = int(max(1, lengths.min()))
        hi = int(max_length)
        if lengths.max() > hi:
            raise ValueError(f"an example is {int(lengths.max())} tokens, above max_length {hi}")
        opt = int(np.clip(round(float(np.median(np.asarray(train_lengths)))), lo, hi))
    out = {}
    for name, arr in example.items():
        lo_s, opt_s, hi_s = list(arr.shape), list(arr.shape), list(arr.shape)
        for axis, what in axes.items():
            if axis >= arr.ndim:
                continue
            if what == "batch":
                lo_s[axis], opt_s[axis], hi_s[axis] = 1, opt_batch, max_batch
            elif what == "sequence":
                lo_s[axis], opt_s[axis], hi_s[axis] = lo, opt, hi
        out[name] = [lo_s, opt_s, hi_s]
    return out


def outside_profile(feed: dict[str, np.ndarray], profile: dict[str, list[list[int]]]) -> str | None:
    """Why `feed` does not fit the engine's profile (None: it fits)."""
    for name, (lo, _, hi) in profile.items():
        if name not in feed:
            return f"input {name!r} is missing"
        shape = list(feed[name].shape)
        if len(shape) != len(lo) or any(s < a or s > b for s, a, b in zip(shape, lo, hi)):
            return f"input {name!r} has shape {shape}; the engine's profile takes {lo} .. {hi}"
    return None


def qdq_problems(onnx_path: str | Path, limit: int = 5) -> list[str]:
    """Why TensorRT cannot read this graph's Q/DQ as explicit quantization: QuantizeLinear /
    DequantizeLinear nodes with unsigned (uint8) types or non-zero zero points (TensorRT takes
    symmetric INT8 only), or no Q/DQ at all. Empty: it can."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path), load_external_data=False)
    inits = {t.name: t for t in model.graph.initializer}
    consts = {n.output[0]: n.attribute[0].t for n in model.graph.node if n.op_type == "Constant" and n.attribute}
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    if not qdq:
        return ["the graph has no QuantizeLinear/DequantizeLinear nodes: it is not explicitly quantized "
                "(INT8 TensorRT engines come from QDQ models: quantize method static or qat)"]
    bad = []
    for n in qdq:
        name = n.name or n.op_type
        name = name if len(name) <= 60 else "…" + name[-59:]          # exporters' names run to 300 characters
        if len(n.input) < 3 or not n.input[2]:
            bad.append(f"{name}: no zero point (ONNX's default is uint8)")
            continue
        t = inits.get(n.input[2]) or consts.get(n.input[2])
        if t is None:
            continue                       # computed zero point: TensorRT's parser judges it
        zp = numpy_helper.to_array(t)
        if zp.dtype != np.int8:
            bad.append(f"{name}: {zp.dtype} zero point (TensorRT takes int8)")
        elif np.any(zp != 0):
            bad.append(f"{name}: non-zero zero point (TensorRT takes symmetric INT8)")
    if not bad:
        return []
    more = f" (and {len(bad) - limit} more)" if len(bad) > limit else ""
    return [f"{len(bad)} of {len(qdq)} Q/DQ nodes are not symmetric INT8: " + "; ".join(bad[:limit]) + more]


def to_fp16_onnx(src: str | Path, dst: str | Path) -> Path:
    """An FP16 copy of an FP32 ONNX graph (weights and compute in float16, inputs and outputs in their
    own types), with onnxruntime's converter: the graph a strongly typed FP16 engine (and the cuda-fp16
    target's ONNX Runtime session) is built from."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(src))
    half = convert_float_to_float16(model, keep_io_types=True)
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(half, str(dst))
    return dst


def build_engine(onnx_path: str | Path, profile: dict[str, list[list[int]]], precision: str,
                 workspace_mb: int = WORKSPACE_MB) -> tuple[bytes, dict]:
    """Build a serialized engine (the bytes of model.plan) from `onnx_path` (already in the graph form
    of `precision`, see the module doc) with one optimization profile. Returns (plan, build facts).
    Raises RuntimeError with the parser's or builder's own messages when TensorRT refuses the model."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if typed is not None:
        flags |= 1 << int(typed)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(getattr(parser, "num_errors", 0))]
        raise RuntimeError(f"TensorRT's ONNX parser refused {onnx_path}: " + "; ".join(errors or ["no message"]))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    tf32 = getattr(trt.BuilderFlag, "TF32", None)
    if precision == "fp32" and tf32 is not None:
        config.clear_flag(tf32)           # FP32 means FP32: TF32 matmuls round inputs to 10 mantissa bits
    opt = builder.create_optimization_profile()
    names = [network.get_input(i).name for i in range(network.num_inputs)]
    for name in names:
        if name not in profile:
            raise RuntimeError(f"the ONNX input {name!r} has no profile shape (profile: {sorted(profile)})")
        lo, mid, hi = profile[name]
        opt.set_shape(name, lo, mid, hi)
    config.add_optimization_profile(opt)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError(f"TensorRT could not build an engine from {onnx_path} (precision {precision}); "
                           f"its log above says why")
    facts = {"tensorrt": trt.__version__, "strongly_typed": typed is not None, "tf32": precision != "fp32",
             "workspace_mb": workspace_mb, "inputs": names, "layers": network.num_layers}
    return bytes(plan), facts


class EngineRunner:
    """One deserialized engine with an execution context on torch's current CUDA stream. `run(feed)`
    copies the numpy inputs to the GPU, runs the engine and returns the first output (logits) as numpy;
    `last_gpu_ms()` is the GPU time of the last run between CUDA events (transfers left out)."""

    def __init__(self, plan: bytes, profile: dict[str, list[list[int]]]):
        import tensorrt as trt
        import torch

        self.trt, self.torch, self.profile = trt, torch, profile
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise RuntimeError("TensorRT could not deserialize the engine (corrupted, or built by another TensorRT "
                               "version or for another GPU)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        self.pick = self.outputs.index("logits") if "logits" in self.outputs else 0
        dt = trt.DataType                  # member names: the trt.float16-style aliases live in its Python wrapper
        table = {getattr(dt, k): getattr(torch, v) for k, v in (("FLOAT", "float32"), ("HALF", "float16"),
                 ("BF16", "bfloat16"), ("INT32", "int32"), ("INT64", "int64"), ("INT8", "int8"), ("BOOL", "bool"))
                 if hasattr(dt, k)}
        self.dtypes = {n: table[self.engine.get_tensor_dtype(n)] for n in names}   # once, not per call
        self.stream = torch.cuda.current_stream()
        self.start, self.end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        why = outside_profile({n: feed[n] for n in self.inputs if n in feed}, self.profile)
        if why:
            raise ValueError(f"TensorRT engine: {why}")
        torch = self.torch
        keep = []
        for n in self.inputs:
            t = torch.from_numpy(np.ascontiguousarray(feed[n])).to("cuda", dtype=self.dtypes[n], non_blocking=True)
            keep.append(t)
            self.context.set_input_shape(n, tuple(t.shape))
            self.context.set_tensor_address(n, t.data_ptr())
        outs = []
        for n in self.outputs:
            o = torch.empty(tuple(self.context.get_tensor_shape(n)), dtype=self.dtypes[n], device="cuda")
            outs.append(o)
            self.context.set_tensor_address(n, o.data_ptr())
        self.start.record(self.stream)
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise RuntimeError("TensorRT execute_async_v3 failed (its log above says why)")
        self.end.record(self.stream)
        return outs[self.pick].float().cpu().numpy()        # .cpu() waits for the stream

    def last_gpu_ms(self) -> float:
        self.end.synchronize()
        return float(self.start.elapsed_time(self.end))
