"""INT8 with ONNX Runtime's quantization tools: the dynamic and static (QDQ) quantize calls, the
calibration that feeds static (a reader over real inputs, pre-processing, a calibration cache), and
`StaticQuantizer`, which calibrates a graph once and then quantizes it with any nodes kept in float.

Choices (measured on AVX-512 VNNI, see stages/quantize.py): weights int8 symmetric, activations uint8
asymmetric, the u8 x s8 VNNI path (static with int8 activations, s8 x s8, falls back to slow kernels in
ONNX Runtime's CPU provider, ~10x slower). Dynamic quantizes every op ONNX Runtime has an integer
kernel for (MatMul, Attention -> QAttention, Gather / EmbedLayerNormalization -> int8 embeddings), so
a fused graph is quantized whole. Static QDQ needs an unfused graph (ONNX Runtime has no QDQ form of
the fused Attention and EmbedLayerNormalization ops) and quantizes only the `op_types` it is given:
the task's STATIC_OP_TYPES (for text, weight ops and embedding lookups: quantizing everything QDQ can,
norms and softmax included, cost much argmax agreement; see README). Which CPU gets which weight
format is edgeft/isa.py's; rewriting QDQ models is ops/qdq.py's.
"""

from __future__ import annotations

import contextlib
import io
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from .onnx_export import quiet_library_logs, scratch_tempdir
from .onnx_graph import activation_matmuls, needs_external_data

CALIBRATE_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
# histogram calibrators: 2048 bins; entropy searches thresholds for 256 levels (uint8 activations)
CALIBRATOR_OPTIONS = {"minmax": {}, "entropy": {"num_bins": 2048, "num_quantized_bins": 256},
                      "percentile": {"num_bins": 2048, "percentile": 99.999}}


def quantize_dynamic_int8(src: str | Path, dst: str | Path, per_channel: bool = True,
                          op_types: list[str] | None = None, reduce_range: bool = False,
                          uint8_weights: bool = False) -> Path:
    """Dynamic INT8: int8 symmetric weights, activations quantized to uint8 at run time.
    op_types None = every op ONNX Runtime has an integer kernel for. `uint8_weights`: uint8 weights
    (U8U8 kernels) for x86 CPUs without VNNI, where u8 x s8 can saturate (edgeft/isa.py)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dst = Path(dst)
    with scratch_tempdir(dst.parent / ".ort-tmp"), quiet_library_logs():
        quantize_dynamic(str(src), str(dst), op_types_to_quantize=op_types, per_channel=per_channel,
                         reduce_range=reduce_range, weight_type=QuantType.QUInt8 if uint8_weights else QuantType.QInt8,
                         use_external_data_format=needs_external_data(src),
                         # the traced graph leaves some MatMul outputs untyped; they are all float
                         extra_options={"WeightSymmetric": True, "ActivationSymmetric": False,
                                        "DefaultTensorType": onnx.TensorProto.FLOAT})
    shutil.rmtree(dst.parent / ".ort-tmp", ignore_errors=True)
    return dst


class BatchReader:
    """An onnxruntime CalibrationDataReader over prepared feeds (dicts of numpy arrays)."""

    def __init__(self, feeds: Iterable[dict[str, np.ndarray]], total: int | None = None, progress: bool = True):
        self._feeds = list(feeds)
        self._it = None
        self._bar = None
        self.progress = progress
        self.total = total or len(self._feeds)

    def get_next(self):
        if self._it is None:
            self._it = iter(self._feeds)
            if self.progress:
                from tqdm.auto import tqdm
                self._bar = tqdm(total=self.total, desc="calibrating", unit="sample", leave=False)
        feed = next(self._it, None)
        if self._bar is not None:
            if feed is None:
                self._bar.close()
            else:
                self._bar.update(len(next(iter(feed.values()))))
        return feed

    def rewind(self):
        self._it = None

    def set_range(self, start_index: int, end_index: int):   # used by ORT's batched calibration
        self._it = iter(self._feeds[start_index:end_index])


def calibration_reader(texts: list, encode: Callable[[list], dict[str, np.ndarray]], input_names: list[str],
                       batch_size: int = 1, progress: bool = True):
    """A CalibrationDataReader over `texts`, encoded `batch_size` at a time (batch 1 = natural length,
    so no padding enters the activation ranges). Only the graph's inputs are fed."""
    from onnxruntime.quantization import CalibrationDataReader

    feeds = []
    for i in range(0, len(texts), batch_size):
        enc = encode(texts[i:i + batch_size])
        feeds.append({k: v for k, v in enc.items() if k in input_names})

    class _Reader(BatchReader, CalibrationDataReader):
        pass

    return _Reader(feeds, total=len(texts), progress=progress)


def preprocess(src: str | Path, dst: str | Path) -> Path:
    """ONNX Runtime's quantization pre-processing (ORT basic optimizations + ONNX shape inference).
    Symbolic shape inference is skipped: it fails on transformers 4.57 BERT exports."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    dst = Path(dst)
    with scratch_tempdir(dst.parent / ".ort-tmp"), quiet_library_logs():
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=True,
                          save_as_external_data=needs_external_data(src))
    shutil.rmtree(dst.parent / ".ort-tmp", ignore_errors=True)
    return dst


def static_calibration(src: str | Path, reader, cache_path: str | Path, calibrate_method: str = "minmax", *,
                       op_types: Iterable[str]) -> Path:
    """Activation ranges of the graph's `op_types` tensors over `reader`, saved as an ONNX Runtime
    calibration cache (JSON) for quantize_static_int8.

    Calibrating here rather than inside quantize_static lets the histogram methods have enough bins:
    quantize_static builds its entropy calibrator with 128 bins for 128 quantized bins, which leaves
    one candidate threshold (the full range), so `entropy` silently equals `minmax` there."""
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    cache_path = Path(cache_path)
    method = getattr(CalibrationMethod, CALIBRATE_METHODS[calibrate_method])
    with scratch_tempdir(cache_path.parent / ".ort-tmp") as tmp, quiet_library_logs(), _ragged_histograms(), \
            contextlib.redirect_stdout(io.StringIO()):            # the histogram calibrators print
        calibrator = create_calibrator(Path(src), list(op_types), augmented_model_path=str(tmp / "augmented.onnx"),
                                       calibrate_method=method, use_external_data_format=needs_external_data(src),
                                       providers=["CPUExecutionProvider"],
                                       extra_options=dict(CALIBRATOR_OPTIONS[calibrate_method]))
        calibrator.collect_data(reader)
        save_tensors_data(calibrator.compute_data(), cache_path)
        del calibrator
    shutil.rmtree(cache_path.parent / ".ort-tmp", ignore_errors=True)
    return cache_path


def quantize_static_int8(src: str | Path, dst: str | Path, calibration_cache: str | Path,
                         calibrate_method: str = "minmax", per_channel: bool = True, *, op_types: Iterable[str],
                         nodes_to_exclude: list[str] | None = None, reduce_range: bool = False,
                         symmetric_activations: bool = False) -> Path:
    """Static INT8 in QDQ format: int8 symmetric weights (per channel), uint8 asymmetric activations
    (or, `symmetric_activations`, int8 with zero point 0 and float biases: what TensorRT reads) with the ranges of
    `calibration_cache` (from static_calibration, same op_types and method).
    `src` should be pre-processed and unfused. nodes_to_exclude None = activation x activation
    MatMuls (attention scores): int8 there cost accuracy and measured no faster."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if nodes_to_exclude is None:
        nodes_to_exclude = activation_matmuls(src)
    dst = Path(dst)
    with scratch_tempdir(dst.parent / ".ort-tmp"), quiet_library_logs():
        quantize_static(str(src), str(dst), None, quant_format=QuantFormat.QDQ, op_types_to_quantize=list(op_types),
                        per_channel=per_channel, reduce_range=reduce_range,
                        activation_type=QuantType.QInt8 if symmetric_activations else QuantType.QUInt8,
                        weight_type=QuantType.QInt8,
                        calibrate_method=getattr(CalibrationMethod, CALIBRATE_METHODS[calibrate_method]),
                        nodes_to_exclude=nodes_to_exclude, calibration_cache_path=str(calibration_cache),
                        use_external_data_format=needs_external_data(src),
                        # TensorRT's form: biases stay float (it reads no int32 DequantizeLinear; it fuses them)
                        extra_options={"WeightSymmetric": True, "ActivationSymmetric": symmetric_activations,
                                       "QuantizeBias": not symmetric_activations})
    shutil.rmtree(dst.parent / ".ort-tmp", ignore_errors=True)
    return dst


@contextlib.contextmanager
def _ragged_histograms():
    """Let entropy/percentile calibration take batches of different sequence lengths.

    ONNX Runtime's HistogramCollector turns each tensor's list of per-batch arrays into one array
    with np.asarray, which fails when the arrays differ in shape (every sample at its own length).
    It flattens that array right after, so flattening and joining the list first is the same data."""
    from onnxruntime.quantization.calibrate import HistogramCollector

    original = HistogramCollector.collect

    def collect(self, name_to_arr):
        flat = {k: np.concatenate([np.ravel(a) for a in v]) if isinstance(v, list) and v else v
                for k, v in name_to_arr.items()}
        return original(self, flat)

    HistogramCollector.collect = collect
    try:
        yield
    finally:
        HistogramCollector.collect = original


class StaticQuantizer:
    """Static QDQ INT8 of one FP32 graph for any set of nodes kept in float: `src` is pre-processed
    and calibrated once (files in `work`), then each call `quantizer(kept, dst)` writes an INT8 model
    with the activation x activation MatMuls and the nodes `kept` left in float, in the final weight
    format (uint8 weights with `uint8_weights`, see ops/qdq.weights_to_uint8), and returns its path.
    `preprocessed` is the FP32 graph every trial starts from (node names match it)."""

    def __init__(self, src: str | Path, work: str | Path, reader, *, op_types: Iterable[str],
                 calibrate_method: str = "minmax", per_channel: bool = True, reduce_range: bool = False,
                 uint8_weights: bool = False, symmetric_activations: bool = False):
        work = Path(work)
        self.symmetric_activations = symmetric_activations
        self.work, self.op_types, self.calibrate_method = work, list(op_types), calibrate_method
        self.per_channel, self.reduce_range, self.uint8_weights = per_channel, reduce_range, uint8_weights
        self.preprocessed = preprocess(src, work / "preprocessed.onnx")
        self.cache = static_calibration(self.preprocessed, reader, work / "calibration.json", calibrate_method,
                                        op_types=self.op_types)
        self.always_float = activation_matmuls(self.preprocessed)

    def __call__(self, kept: list[str], dst: str | Path | None = None) -> Path:
        from .qdq import weights_to_uint8

        out = quantize_static_int8(self.preprocessed, dst or self.work / "trial.onnx", self.cache,
                                   self.calibrate_method, per_channel=self.per_channel, reduce_range=self.reduce_range,
                                   nodes_to_exclude=self.always_float + list(kept), op_types=self.op_types,
                                   symmetric_activations=self.symmetric_activations)
        if self.uint8_weights:        # every trial in the final format: int8 trials would mislead on saturating CPUs
            weights_to_uint8(out, out)
        return out
