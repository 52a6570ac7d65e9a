"""Rewrites of QDQ models that keep every number they compute: integers stored instead of FP32 weights.

`fold_weight_quantizers` turns the FP32-weights-behind-Q/DQ form that a fake-quantized PyTorch
model exports to (NNCF QAT) into stored int8/uint8 weights, with Transposes and embedding-table
dequantization folded, the form ONNX Runtime fuses into integer kernels. `weights_to_uint8` stores
every int8 weight as uint8 with a shifted zero point, the exact form for x86 CPUs whose u8 x s8
kernels saturate (no VNNI; edgeft/isa.py). Both run the ONNX checker on what they write; `rewrite_max_diff`
compares a graph before and after a rewrite with graph optimisations off (the qat stage checks its
folding with it); the parity gates check the results against their source.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .onnx_graph import needs_external_data


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
        (_, w), (_, scale), (_, zp) = const(qn.input[0]), const(qn.input[1]), const(qn.input[2])
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
    onnx.save(m, str(dst), save_as_external_data=needs_external_data(src))
    return {"weights_to_uint8": converted}


def rewrite_max_diff(before, after, feeds: list[dict], output: str) -> float:
    """max |Δ| of `output` between two ONNX graphs that must compute the same numbers (weight folding,
    uint8 weights), both run with ONNX Runtime's graph optimizations off: a graph rewrite is checked
    as the ONNX spec defines the ops, not through this CPU's integer kernels. (Optimised, the unfolded
    graph's int8 weights run on u8 x s8 kernels that saturate on x86 without VNNI, while its uint8
    copy does not: a kernel difference, which the parity gate against the torch model judges.)"""
    from . import onnx_export as ox
    from .parity import compare_runs

    runs = []
    for path in (before, after):
        sess = ox.session(path, optimize=False)
        pick = ox.output_index(sess, output)
        runs.append([ox.run_session(sess, f)[pick] for f in feeds])
        del sess
    return compare_runs(*runs)[0]["max_abs_diff"]
