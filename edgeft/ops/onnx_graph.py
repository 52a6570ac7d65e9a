"""Read-only facts about an ONNX graph: which tensors are constants, which ops are fused or quantized.

Nothing here writes a model. `constant_names` is the one definition of "a constant input" (an
initializer or a Constant node's output) that every other question builds on: the fused transformer
ops static QDQ cannot take (`fused_ops`), the activation x activation MatMuls that stay in float
(`activation_matmuls`), the weight ops an accuracy-aware fallback may keep in float (`weight_nodes`),
what a quantization made integer (`quantization_summary`, `integer_weight_types`), and whether a file
needs the external-data format (`needs_external_data`). Op counts are `onnx_export.op_counts`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from .onnx_export import TWO_GB, op_counts

# fused ops from ONNX Runtime's transformer optimizer that static QDQ quantization cannot handle
FUSED_OPS = ("Attention", "MultiHeadAttention", "EmbedLayerNormalization")
# op types that only appear in quantized graphs
QUANT_OPS = ("DynamicQuantizeLinear", "MatMulInteger", "MatMulIntegerToFloat", "DynamicQuantizeMatMul",
             "QAttention", "QEmbedLayerNormalization", "QuantizeLinear", "DequantizeLinear",
             "QLinearMatMul", "QGemm", "QLinearAdd", "QLinearMul", "ConvInteger", "QLinearConv")
# matrix products that run in integer arithmetic whatever feeds them
INTEGER_MATMULS = ("MatMulInteger", "QAttention", "QLinearMatMul", "QGemm", "DynamicQuantizeMatMul",
                   "MatMulIntegerToFloat")
# ops with a weight: the candidates an accuracy-aware fallback may keep in float
WEIGHT_OP_TYPES = ("MatMul", "Gemm", "Conv")


def load_graph(path: str | Path):
    """The model at `path` without its external data (structure and small initializers only)."""
    import onnx

    return onnx.load(str(path), load_external_data=False)


def constant_names(model) -> set[str]:
    """Names of the graph's constant tensors: initializers and the outputs of Constant nodes."""
    g = model.graph
    return {i.name for i in g.initializer} | {o for n in g.node if n.op_type == "Constant" for o in n.output}


def fused_ops(path: str | Path) -> dict[str, int]:
    """Counts of fused transformer ops present in the graph (empty if none)."""
    return {k: v for k, v in op_counts(path).items() if k in FUSED_OPS}


def activation_matmuls(path: str | Path) -> list[str]:
    """Names of MatMul nodes with no constant input (e.g. attention scores Q·Kᵀ and probs·V)."""
    m = load_graph(path)
    consts = constant_names(m)
    return [n.name for n in m.graph.node if n.op_type == "MatMul" and not any(i in consts for i in n.input)]


def weight_nodes(path: str | Path, op_types: Iterable[str] = WEIGHT_OP_TYPES) -> list[str]:
    """Names of `op_types` nodes with a constant weight input, in graph order: the candidates that
    an accuracy-aware fallback may keep in float."""
    m = load_graph(path)
    consts, op_types = constant_names(m), set(op_types)
    return [n.name for n in m.graph.node if n.op_type in op_types and any(i in consts for i in n.input[1:3])]


def quantization_summary(quant_path: str | Path) -> dict:
    """What got quantized: counts of quantization ops; matrix products that run in int8
    (MatMulInteger, QAttention, QLinearMatMul, QGemm, or MatMul/Gemm fed by DequantizeLinear in QDQ
    form); those left in float, and of these the ones with a weight (a constant input) — dynamic
    quantization leaves activation x activation products (attention scores) in float by design."""
    qm = load_graph(quant_path)
    consts = constant_names(qm)
    dq_out = {o for n in qm.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    int8 = float_ = float_weight = 0
    for n in qm.graph.node:
        if n.op_type in INTEGER_MATMULS:
            int8 += 1
        elif n.op_type in ("MatMul", "Gemm", "Attention", "MultiHeadAttention"):
            if any(i in dq_out for i in n.input[:2]):
                int8 += 1
            else:
                float_ += 1
                float_weight += any(i in consts for i in n.input[1:3])
    return {"ops": {k: v for k, v in sorted(op_counts(quant_path).items()) if k in QUANT_OPS},
            "matmul_int8": int8, "matmul_float": float_, "weight_matmul_float": float_weight}


def integer_weight_types(path: str | Path) -> dict[str, int]:
    """Counts of the integer weight initializers of a quantized model by type ({'int8': n, 'uint8': m})."""
    import onnx

    names = {onnx.TensorProto.INT8: "int8", onnx.TensorProto.UINT8: "uint8"}
    out: dict[str, int] = {}
    for t in load_graph(path).graph.initializer:
        if t.data_type in names and len(t.dims) >= 2:
            out[names[t.data_type]] = out.get(names[t.data_type], 0) + 1
    return out


def needs_external_data(path: str | Path) -> bool:
    """Whether the model (its file plus any external data beside it) is past protobuf's 2 GB limit."""
    p = Path(path)
    return sum(q.stat().st_size for q in p.parent.glob(p.name + "*")) >= TWO_GB
