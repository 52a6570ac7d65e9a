"""INT8 with ONNX Runtime: dynamic and static (QDQ) quantization, calibration reader, op summaries.

Choices (measured on AVX-512 VNNI, see stages/quantize.py):
- weights int8 symmetric, activations uint8 asymmetric: the u8×s8 VNNI path. Static with int8
  activations (s8×s8) falls back to slow kernels in ONNX Runtime's CPU provider (~10x slower).
- dynamic quantizes every op ONNX Runtime has an integer kernel for (MatMul, Attention -> QAttention,
  Gather / EmbedLayerNormalization -> int8 embeddings), so a fused graph is quantized whole.
- static QDQ needs an unfused graph: ONNX Runtime has no QDQ form of the fused Attention and
  EmbedLayerNormalization ops (their weights would stay FP32).
"""

from __future__ import annotations

import contextlib
import io
import shutil
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from .onnx_export import TWO_GB, op_counts, quiet_library_logs, scratch_tempdir

# fused ops from ONNX Runtime's transformer optimizer that static QDQ quantization cannot handle
FUSED_OPS = ("Attention", "MultiHeadAttention", "EmbedLayerNormalization")
# op types that only appear in quantized graphs
QUANT_OPS = ("DynamicQuantizeLinear", "MatMulInteger", "MatMulIntegerToFloat", "DynamicQuantizeMatMul",
             "QAttention", "QEmbedLayerNormalization", "QuantizeLinear", "DequantizeLinear",
             "QLinearMatMul", "QGemm", "QLinearAdd", "QLinearMul", "ConvInteger", "QLinearConv")
CALIBRATE_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
# histogram calibrators: 2048 bins; entropy searches thresholds for 256 levels (uint8 activations)
CALIBRATOR_OPTIONS = {"minmax": {}, "entropy": {"num_bins": 2048, "num_quantized_bins": 256},
                      "percentile": {"num_bins": 2048, "percentile": 99.999}}
# static: ops with weights (MatMul, Gemm) and embedding lookups (Gather: int8 tables, the bulk of the
# size). Quantizing everything QDQ can (LayerNormalization, Softmax, Add, ...) cost ~17 points of
# argmax agreement on a fine-tuned MiniLM (0.77 vs 0.94).
STATIC_OP_TYPES = ("MatMul", "Gemm", "Gather")


def fused_ops(path: str | Path) -> dict[str, int]:
    """Counts of fused transformer ops present in the graph (empty if none)."""
    return {k: v for k, v in op_counts(path).items() if k in FUSED_OPS}


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
                         use_external_data_format=_needs_external(src),
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
                          save_as_external_data=_needs_external(src))
    shutil.rmtree(dst.parent / ".ort-tmp", ignore_errors=True)
    return dst


def static_calibration(src: str | Path, reader, cache_path: str | Path, calibrate_method: str = "minmax",
                       op_types: list[str] = STATIC_OP_TYPES) -> Path:
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
                                       calibrate_method=method, use_external_data_format=_needs_external(src),
                                       providers=["CPUExecutionProvider"],
                                       extra_options=dict(CALIBRATOR_OPTIONS[calibrate_method]))
        calibrator.collect_data(reader)
        save_tensors_data(calibrator.compute_data(), cache_path)
        del calibrator
    shutil.rmtree(cache_path.parent / ".ort-tmp", ignore_errors=True)
    return cache_path


def quantize_static_int8(src: str | Path, dst: str | Path, calibration_cache: str | Path,
                         calibrate_method: str = "minmax", per_channel: bool = True,
                         op_types: list[str] = STATIC_OP_TYPES, nodes_to_exclude: list[str] | None = None,
                         reduce_range: bool = False) -> Path:
    """Static INT8 in QDQ format: int8 symmetric weights (per channel), uint8 asymmetric activations
    with the ranges of `calibration_cache` (from static_calibration, same op_types and method).
    `src` should be pre-processed and unfused. nodes_to_exclude None = activation x activation
    MatMuls (attention scores): int8 there cost accuracy and measured no faster."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if nodes_to_exclude is None:
        nodes_to_exclude = activation_matmuls(src)
    dst = Path(dst)
    with scratch_tempdir(dst.parent / ".ort-tmp"), quiet_library_logs():
        quantize_static(str(src), str(dst), None, quant_format=QuantFormat.QDQ, op_types_to_quantize=list(op_types),
                        per_channel=per_channel, reduce_range=reduce_range,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=getattr(CalibrationMethod, CALIBRATE_METHODS[calibrate_method]),
                        nodes_to_exclude=nodes_to_exclude, calibration_cache_path=str(calibration_cache),
                        use_external_data_format=_needs_external(src),
                        extra_options={"WeightSymmetric": True, "ActivationSymmetric": False})
    shutil.rmtree(dst.parent / ".ort-tmp", ignore_errors=True)
    return dst


def activation_matmuls(path: str | Path) -> list[str]:
    """Names of MatMul nodes with no constant input (e.g. attention scores Q·Kᵀ and probs·V)."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    consts = {i.name for i in m.graph.initializer}
    consts |= {o for n in m.graph.node if n.op_type == "Constant" for o in n.output}
    return [n.name for n in m.graph.node if n.op_type == "MatMul" and not any(i in consts for i in n.input)]


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


def quantization_summary(quant_path: str | Path) -> dict:
    """What got quantized: counts of quantization ops; matrix products that run in int8
    (MatMulInteger, QAttention, QLinearMatMul, QGemm, or MatMul/Gemm fed by DequantizeLinear in QDQ
    form); those left in float, and of these the ones with a weight (a constant input) — dynamic
    quantization leaves activation x activation products (attention scores) in float by design."""
    import onnx

    qm = onnx.load(str(quant_path), load_external_data=False)
    counts = op_counts(quant_path)
    consts = {i.name for i in qm.graph.initializer}
    dq_out = {o for n in qm.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    int8 = float_ = float_weight = 0
    for n in qm.graph.node:
        if n.op_type in ("MatMulInteger", "QAttention", "QLinearMatMul", "QGemm", "DynamicQuantizeMatMul",
                         "MatMulIntegerToFloat"):
            int8 += 1
        elif n.op_type in ("MatMul", "Gemm", "Attention", "MultiHeadAttention"):
            if any(i in dq_out for i in n.input[:2]):
                int8 += 1
            else:
                float_ += 1
                float_weight += any(i in consts for i in n.input[1:3])
    return {"ops": {k: v for k, v in sorted(counts.items()) if k in QUANT_OPS},
            "matmul_int8": int8, "matmul_float": float_, "weight_matmul_float": float_weight}


def _needs_external(src: str | Path) -> bool:
    p = Path(src)
    return sum(q.stat().st_size for q in p.parent.glob(p.name + "*")) >= TWO_GB


# ---------------------------------------------------------------------------------------------
# accuracy-aware static INT8: keep the most sensitive weight ops in float

WEIGHT_OP_TYPES = ("MatMul", "Gemm", "Conv")


def weight_nodes(path: str | Path, op_types: Iterable[str] = WEIGHT_OP_TYPES) -> list[str]:
    """Names of `op_types` nodes with a constant weight input, in graph order: the candidates that
    an accuracy-aware fallback may keep in float."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    consts = {i.name for i in m.graph.initializer}
    consts |= {o for n in m.graph.node if n.op_type == "Constant" for o in n.output}
    op_types = set(op_types)
    return [n.name for n in m.graph.node if n.op_type in op_types and any(i in consts for i in n.input[1:3])]


def float_fallback(quantize: Callable[[list[str]], Path], candidates: list[str],
                   error: Callable[[Path], float], accuracy: Callable[[Path], float],
                   latency_ms: Callable[[Path], float], fp32_accuracy: float, max_drop_points: float,
                   progress: bool = True, agreement: Callable[[Path], float] | None = None,
                   min_agreement: float = 0.0) -> tuple[list[str], dict]:
    """Greedy accuracy-aware fallback for static INT8.

    `quantize(kept)` writes the INT8 model with the nodes `kept` left in float and returns its path;
    `error(path)` is its output error against FP32 on a sensitivity subset (lower is better),
    `accuracy(path)` its validation accuracy (0..1), `latency_ms(path)` its batch-1 latency.

    If everything in INT8 already drops at most `max_drop_points`, nothing is kept in float.
    Otherwise each candidate's sensitivity is the error removed by keeping it alone in float; the
    candidates are then kept in float one at a time, most sensitive first, until the validation
    drop is within `max_drop_points`. With `agreement(path)` (argmax agreement with FP32 on the
    same validation data) a model must also reach `min_agreement` (the stage's parity floor), so
    the search does not stop at a model the parity gate then rejects. Returns (kept, record);
    record["met"] says whether it was reached (False: every candidate was tried)."""
    from tqdm.auto import tqdm

    def check(path) -> tuple[float, float | None, bool]:
        acc = accuracy(path)
        agree = agreement(path) if agreement is not None else None
        ok = 100 * (fp32_accuracy - acc) <= max_drop_points + 1e-9 and (agree is None or agree >= min_agreement)
        return acc, agree, ok

    base = quantize([])
    acc, agree, ok = check(base)
    lat = latency_ms(base)
    record: dict = {"candidates": len(candidates), "val_accuracy_all_int8": acc,
                    "val_drop_points_all_int8": round(100 * (fp32_accuracy - acc), 3),
                    "latency_p50_ms_all_int8": round(lat, 3), "kept_float": [], "met": True}
    if agreement is not None:
        record.update(val_agreement_all_int8=round(agree, 4), min_agreement=min_agreement)
    if ok:
        return [], record
    err_all = error(base)
    gains = [(err_all - error(quantize([name])), name)
             for name in tqdm(candidates, desc="node sensitivity", unit="node", disable=not progress)]
    ranked = sorted(gains, key=lambda g: -g[0])
    record["error_all_int8"] = err_all
    record["sensitivity"] = [{"node": n, "error_removed": round(g, 6)} for g, n in ranked]
    kept: list[str] = []
    bar = tqdm(ranked, desc="float fallback", unit="node", disable=not progress)
    for gain, name in bar:
        kept.append(name)
        path = quantize(kept)
        (acc, agree, ok), prev_lat, lat = check(path), lat, latency_ms(path)
        drop = 100 * (fp32_accuracy - acc)
        record["kept_float"].append({"node": name, "error_removed_alone": round(gain, 6),
                                     "val_accuracy": acc, "val_drop_points": round(drop, 3),
                                     **({"val_agreement": round(agree, 4)} if agree is not None else {}),
                                     "latency_p50_ms": round(lat, 3), "latency_cost_ms": round(lat - prev_lat, 3)})
        bar.set_postfix(drop=f"{drop:.2f}")
        if ok:
            bar.close()
            return kept, record
    record["met"] = False
    return kept, record


# ---------------------------------------------------------------------------------------------
# QDQ models from quantization-aware training

def fold_weight_quantizers(src: str | Path, dst: str | Path) -> dict[str, int]:
    """Store a QDQ model's weights as integers, the form ONNX Runtime fuses into integer kernels.

    A fake-quantized model exported from PyTorch (NNCF QAT) keeps FP32 weights behind
    QuantizeLinear -> DequantizeLinear (-> Transpose for nn.Linear). ONNX Runtime runs that at FP32
    speed and size. Here every QuantizeLinear of a constant weight is computed once (same rounding
    and saturation as the operator) into an int8/uint8 initializer read by its DequantizeLinear, and
    a 2-D Transpose right after such a DequantizeLinear is folded into the stored integers (the
    per-channel axis moves with it). An embedding table's DequantizeLinear -> Gather becomes
    Gather of the integers, then the per-row scale (ONNX Runtime would otherwise dequantize the whole
    table on every run). The numbers the graph computes do not change."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(src))
    g = m.graph
    inits = {i.name: i for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}

    def const(name):                     # follows Identity chains to an initializer or Constant
        while name in producer and producer[name].op_type == "Identity":
            name = producer[name].input[0]
        if name in inits:
            return name, numpy_helper.to_array(inits[name])
        if name in producer and producer[name].op_type == "Constant":
            return name, numpy_helper.to_array(producer[name].attribute[0].t)
        return name, None

    def add_init(name, array):
        t = numpy_helper.from_array(np.ascontiguousarray(array), name)
        g.initializer.append(t)
        inits[name] = t
        return name

    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    folded = transposes = 0
    drop = set()
    for qn in list(g.node):
        if qn.op_type != "QuantizeLinear" or qn.input[0] not in inits:
            continue
        (_, w), (_, scale), (zp_name, zp) = const(qn.input[0]), const(qn.input[1]), const(qn.input[2])
        dqs = consumers.get(qn.output[0], [])
        if w is None or scale is None or zp is None or not dqs or any(d.op_type != "DequantizeLinear" for d in dqs):
            continue
        axis = next((a.i for a in qn.attribute if a.name == "axis"), 1) % w.ndim
        shape = [1] * w.ndim
        if scale.ndim == 1:
            shape[axis] = -1
        info = np.iinfo(zp.dtype)
        q = np.clip(np.rint(w / scale.reshape(shape)) + zp.reshape(shape).astype(np.int32), info.min, info.max)
        q = q.astype(zp.dtype)
        for dq in dqs:
            users = consumers.get(dq.output[0], [])
            perm = next((list(a.ints) for a in users[0].attribute if a.name == "perm"), None) if len(users) == 1 \
                and users[0].op_type == "Transpose" else None
            dq_axis = axis
            stored = q
            if perm == [1, 0] and q.ndim == 2 and dq.output[0] not in {o.name for o in g.output}:
                stored, dq_axis = q.T, 1 - axis
                dq.output[0] = users[0].output[0]           # the DequantizeLinear now feeds the MatMul
                drop.add(id(users[0]))
                transposes += 1
            dq.input[0] = add_init(f"{qn.input[0]}_quantized{'_t' if stored is not q else ''}", stored)
            dq.input[1], dq.input[2] = const(dq.input[1])[0], const(dq.input[2])[0]
            for a in dq.attribute:
                if a.name == "axis":
                    a.i = dq_axis
            if scale.ndim == 1 and not any(a.name == "axis" for a in dq.attribute):
                dq.attribute.append(onnx.helper.make_attribute("axis", dq_axis))
        drop.add(id(qn))
        folded += 1
    gathers, after = 0, {}
    for dq in list(g.node):
        users = consumers.get(dq.output[0], [])
        if dq.op_type != "DequantizeLinear" or dq.input[0] not in inits or len(users) != 1 \
                or users[0].op_type != "Gather" or users[0].input[0] != dq.output[0] \
                or any(a.name == "axis" and a.i != 0 for a in users[0].attribute):
            continue
        gathers += 1
        after[id(users[0])] = _dequantize_after_gather(dq, users[0], const, add_init)
        drop.add(id(dq))
    kept = [k for n in g.node if id(n) not in drop for k in [n, *after.get(id(n), [])]]
    del g.node[:]
    g.node.extend(kept)
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    unused = [i for i in g.initializer if i.name not in used]
    for i in unused:
        g.initializer.remove(i)
    onnx.checker.check_model(m)
    onnx.save(m, str(dst))
    return {"weights_folded": folded, "transposes_folded": transposes, "gathers_of_integers": gathers,
            "initializers_removed": len(unused)}


def _dequantize_after_gather(dq, gather, const, add_init) -> list:
    """Rewrite DequantizeLinear(table) -> Gather(ids) as Gather(table, ids) -> (x - zp[ids]) * scale[ids]
    (per-row scales), or -> DequantizeLinear (one scale): `gather` is changed in place, the nodes to
    insert right after it are returned; `dq` is left for the caller to drop."""
    import onnx
    from onnx import TensorProto

    (_, scale), (zp_name, zp) = const(dq.input[1]), const(dq.input[2])
    ids, out, base = gather.input[1], gather.output[0], gather.output[0] + "_int"
    gather.input[0], gather.output[0] = dq.input[0], base
    if scale.ndim == 0:
        return [onnx.helper.make_node("DequantizeLinear", [base, const(dq.input[1])[0], zp_name], [out])]
    minus_one = add_init(base + "_axes", np.array([-1], dtype=np.int64))
    new = [onnx.helper.make_node("Cast", [base], [base + "_f"], to=TensorProto.FLOAT),
           onnx.helper.make_node("Gather", [const(dq.input[1])[0], ids], [base + "_s"], axis=0),
           onnx.helper.make_node("Unsqueeze", [base + "_s", minus_one], [base + "_su"])]
    x = base + "_f"
    if np.any(zp):
        zf = add_init(base + "_zp", zp.astype(np.float32))
        new += [onnx.helper.make_node("Gather", [zf, ids], [base + "_z"], axis=0),
                onnx.helper.make_node("Unsqueeze", [base + "_z", minus_one], [base + "_zu"]),
                onnx.helper.make_node("Sub", [x, base + "_zu"], [base + "_c"])]
        x = base + "_c"
    new.append(onnx.helper.make_node("Mul", [x, base + "_su"], [out]))
    return new


# ---------------------------------------------------------------------------------------------------
# the INT8 format for CPUs whose u8 x s8 kernels saturate (x86 without VNNI; see edgeft/isa.py)

def weights_to_uint8(src: str | Path, dst: str | Path) -> dict[str, int]:
    """Store every int8 weight of a QDQ model as uint8: q + 128 with zero point zp + 128. Each
    DequantizeLinear computes (q - zp) * scale, so the numbers are the same to the bit; ONNX Runtime
    then runs the MatMuls with its U8U8 kernels, which do not saturate on x86 CPUs without VNNI
    (its u8 x s8 kernels there add pairs of products in int16). Returns counts for the meta."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(src))
    g = m.graph
    inits = {i.name: i for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}

    def const(name):
        if name in inits:
            return numpy_helper.to_array(inits[name])
        if name in producer and producer[name].op_type == "Constant":
            return numpy_helper.to_array(producer[name].attribute[0].t)
        return None

    converted, done = 0, {}
    for dq in g.node:
        if dq.op_type != "DequantizeLinear" or dq.input[0] not in inits or len(dq.input) < 3:
            continue
        q, zp = const(dq.input[0]), const(dq.input[2])
        if q is None or zp is None or q.dtype != np.int8 or zp.dtype != np.int8:
            continue
        names = []
        for name, arr in ((dq.input[0], q), (dq.input[2], zp)):
            if name not in done:
                new = name + "_u8"
                g.initializer.append(numpy_helper.from_array((arr.astype(np.int16) + 128).astype(np.uint8), new))
                done[name] = new
            names.append(done[name])
        dq.input[0], dq.input[2] = names
        converted += 1
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    for i in [i for i in g.initializer if i.name not in used]:
        g.initializer.remove(i)
    onnx.checker.check_model(m)
    onnx.save(m, str(dst), save_as_external_data=_needs_external(src))
    return {"weights_to_uint8": converted}


def integer_weight_types(path: str | Path) -> dict[str, int]:
    """Counts of the integer weight initializers of a quantized model by type ({'int8': n, 'uint8': m})."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    names = {onnx.TensorProto.INT8: "int8", onnx.TensorProto.UINT8: "uint8"}
    out: dict[str, int] = {}
    for t in m.graph.initializer:
        if t.data_type in names and len(t.dims) >= 2:
            out[names[t.data_type]] = out.get(names[t.data_type], 0) + 1
    return out
