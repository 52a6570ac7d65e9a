"""ONNX export and ONNX Runtime helpers: plain functions over modules, paths and numpy arrays.

Exporter: torch.onnx.export with the TorchScript tracer (`dynamo=False`). On torch 2.13 it is
deprecated but works without extra packages, takes `dynamic_axes`, and produces the classic BERT
graph that ONNX Runtime's transformer optimizer fuses completely (Attention, EmbedLayerNormalization,
SkipLayerNormalization, BiasGelu). The dynamo exporter would need onnxscript; optimum's exporter
uses the same tracer underneath, adding only a layer.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

TWO_GB = 2 * 1024**3
# ORT transformer-optimizer model types; everything encoder-like fuses with the "bert" patterns
OPTIMIZER_MODEL_TYPES = {"bart": "bart", "gpt2": "gpt2", "t5": "t5", "vit": "vit", "clip": "clip", "swin": "swin"}


@contextlib.contextmanager
def scratch_tempdir(folder: str | Path):
    """Point `tempfile` at `folder` while inside, so libraries' temp files stay in our output folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    old = tempfile.tempdir
    tempfile.tempdir = str(folder)
    try:
        yield folder
    finally:
        tempfile.tempdir = old


@contextlib.contextmanager
def quiet_library_logs(level: int = logging.ERROR):
    """Silence ONNX Runtime's tools while inside: the transformer optimizer logs every fusion and the
    quantizer logs per tensor on the root logger. Our own checks report what matters."""
    loggers = [logging.getLogger(), logging.getLogger("onnxruntime")]
    old = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(level, lg.getEffectiveLevel()))
    try:
        yield
    finally:
        for lg, lv in zip(loggers, old):
            lg.setLevel(lv)


def positional(model, input_names: list[str], output_name: str):
    """`model` behind a module taking its inputs positionally (as exporters pass them) and returning the
    output named `output_name` as a plain tensor; in eval mode."""
    import torch

    class _Positional(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *tensors):
            out = self.inner(**dict(zip(input_names, tensors)))
            if isinstance(out, torch.Tensor):
                return out
            return out[output_name] if hasattr(out, "keys") else out[0]

    return _Positional(model).eval()


def export_onnx(model, example: dict[str, np.ndarray], path: str | Path, input_names: list[str],
                output_names: list[str] = ("logits",), opset: int = 18,
                input_axes: dict[int, str] | None = None, output_axes: dict[int, str] | None = None) -> Path:
    """Trace `model(**inputs)` to ONNX. Every input gets `input_axes` (default batch, sequence) as
    dynamic axes, every output `output_axes` (default batch). The first output is taken from the
    model's output object by name (e.g. `.logits`); the model is left in eval mode."""
    import torch

    input_names = list(input_names)
    output_names = list(output_names)
    input_axes = input_axes or {0: "batch", 1: "sequence"}
    output_axes = output_axes or {0: "batch"}

    # The tracer restores the *wrapper's* training flag after export and that recurses into the
    # model: a wrapper left in train mode would switch dropout on in the source model afterwards.
    wrapper = positional(model, input_names, output_names[0])
    args = tuple(torch.from_numpy(np.ascontiguousarray(example[n])) for n in input_names)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)       # legacy exporter notice
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # constants in the mask code
        warnings.filterwarnings("ignore", message=".*[Cc]onstant folding.*")
        with torch.inference_mode(False), torch.no_grad(), _eager_attention(model):
            torch.onnx.export(
                wrapper, args, str(path), input_names=input_names, output_names=output_names,
                opset_version=opset, dynamo=False, do_constant_folding=True,
                dynamic_axes={**{n: dict(input_axes) for n in input_names},
                              **{n: dict(output_axes) for n in output_names}})
    model.eval()
    explicit_head_counts(path)
    return path


@contextlib.contextmanager
def _eager_attention(model):
    """transformers 5 only: trace eager attention instead of SDPA, whose graph ONNX Runtime's transformer
    optimizer fuses no Attention in (transformers 4's SDPA graph it fuses). Same logits: the gate checks."""
    import transformers

    impl = getattr(getattr(model, "config", None), "_attn_implementation", None)
    if (int(transformers.__version__.split(".")[0]) < 5 or impl != "sdpa"
            or not hasattr(model, "set_attn_implementation")):
        yield
        return
    model.set_attn_implementation("eager")
    try:
        yield
    finally:
        model.set_attn_implementation(impl)


def explicit_head_counts(path: str | Path) -> int:
    """transformers 5 reshapes Q/K/V to (batch, seq, -1, head_size): ONNX Runtime's optimizer cannot tell
    the head count (per layer after pruning) and fuses no Attention. Writes each count (projection bias
    size / head_size, what -1 resolves to) instead of -1; no-op on other graphs. Returns how many."""
    import onnx
    from onnx import numpy_helper

    path = Path(path)
    if path.stat().st_size >= TWO_GB or any(path.parent.glob(path.name + ".*")):
        return 0                                  # external data: leave it as exported
    m = onnx.load(str(path))
    made = {o: n for n in m.graph.node for o in n.output}
    inits = {i.name: i for i in m.graph.initializer}

    def const(name):
        if name in inits:
            return numpy_helper.to_array(inits[name])
        n = made.get(name)
        vals = [a.t for a in n.attribute if a.name == "value"] if n is not None and n.op_type == "Constant" else []
        return numpy_helper.to_array(vals[0]) if vals else None

    done = 0
    for r in [n for n in m.graph.node if n.op_type == "Reshape"]:
        cat, add = made.get(r.input[1]), made.get(r.input[0])
        if cat is None or cat.op_type != "Concat" or len(cat.input) != 4 or add is None or add.op_type != "Add":
            continue
        heads, size = const(cat.input[2]), const(cat.input[3])
        bias = [b for b in (const(i) for i in add.input) if b is not None and b.ndim == 1]
        if heads is None or size is None or heads.size != 1 or size.size != 1 or int(heads.ravel()[0]) != -1 \
                or len(bias) != 1 or int(size.ravel()[0]) <= 0 or bias[0].size % int(size.ravel()[0]):
            continue
        name = f"{r.name}/num_heads"
        m.graph.initializer.append(numpy_helper.from_array(
            np.array([bias[0].size // int(size.ravel()[0])], dtype=heads.dtype), name))
        inits[name] = m.graph.initializer[-1]
        cat.input[2] = name
        done += 1
    if done:
        onnx.save(m, str(path))
    return done


def optimizer_model_type(hf_model_type: str) -> str:
    return OPTIMIZER_MODEL_TYPES.get(hf_model_type, "bert")


def optimize_transformer(src: str | Path, dst: str | Path, model_type: str = "bert", num_heads: int = 0,
                         hidden_size: int = 0, opt_level: int = 1) -> dict[str, int]:
    """ONNX Runtime transformer fusions (FP32, CPU). num_heads/hidden_size 0 = detect from the graph.
    Returns the fused-operator counts that are non-zero. opt_level 0/1 keep the graph portable;
    2/99 also bake in ONNX Runtime's CPU-specific rewrites."""
    from onnxruntime.transformers.optimizer import optimize_model

    dst = Path(dst)
    with scratch_tempdir(dst.parent / ".ort-tmp"), quiet_library_logs():
        om = optimize_model(str(src), model_type=model_type, num_heads=num_heads, hidden_size=hidden_size,
                            opt_level=opt_level, use_gpu=False)
        stats = {k: int(v) for k, v in om.get_fused_operator_statistics().items() if v}
        om.save_model_to_file(str(dst), use_external_data_format=om.model.ByteSize() >= TWO_GB)
    shutil.rmtree(dst.parent / ".ort-tmp", ignore_errors=True)
    return stats


def session(path: str | Path, threads: int | None = None, optimize: bool = True):
    """A CPU ONNX Runtime session with every graph optimization (as a user would run it), or with
    `optimize=False` none: each op computed as the ONNX spec defines it, no fusion into integer
    kernels, so the result does not depend on which kernels this CPU has (graph rewrites are checked
    that way)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else
                                     ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def run_session(sess, batch: dict[str, np.ndarray]) -> list[np.ndarray]:
    """All outputs for one batch; inputs the graph does not take (e.g. token_type_ids) are dropped."""
    names = {i.name for i in sess.get_inputs()}
    return sess.run(None, {k: v for k, v in batch.items() if k in names})


def io_names(path_or_session) -> tuple[list[str], list[str]]:
    """(input names, output names) of an ONNX file or session."""
    if hasattr(path_or_session, "get_inputs"):
        s = path_or_session
        return [i.name for i in s.get_inputs()], [o.name for o in s.get_outputs()]
    import onnx

    m = onnx.load(str(path_or_session), load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    return [i.name for i in m.graph.input if i.name not in inits], [o.name for o in m.graph.output]


def output_index(session, name: str) -> int:
    """Position of output `name` among the session's outputs (the first output if it has no such name)."""
    outs = [o.name for o in session.get_outputs()]
    return outs.index(name) if name in outs else 0


def dynamic_dims(path: str | Path) -> dict[str, list[str | int]]:
    """Each graph input/output -> its dims (symbolic names for dynamic axes, ints for fixed ones)."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    out = {}
    for v in list(m.graph.input) + list(m.graph.output):
        dims = v.type.tensor_type.shape.dim
        out[v.name] = [d.dim_param if d.dim_param else d.dim_value for d in dims]
    return out


def op_counts(path: str | Path) -> dict[str, int]:
    """How many nodes of each op type the graph has (top-level graph)."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    return dict(Counter(n.op_type for n in m.graph.node))


def onnx_files(folder: str | Path) -> list[Path]:
    """The model's files in a folder: *.onnx and their external data."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.suffix == ".onnx" or p.name.endswith((".onnx.data", ".onnx_data")))


def copy_side_files(src: str | Path, dst: str | Path) -> None:
    """Copy what sits beside an ONNX artifact's model (tokenizer, config) into `dst`, so an artifact made
    from it stays self-contained; not the model files, the store's manifest or logs."""
    import shutil

    from ..artifact import MANIFEST

    model_files = {p.name for p in onnx_files(src)}
    for p in Path(src).iterdir():
        if p.is_file() and p.name not in model_files and p.name != MANIFEST and not p.name.endswith(".log"):
            shutil.copy2(p, Path(dst) / p.name)


def file_size_mb(path: str | Path) -> float:
    p = Path(path)
    extra = [q for q in p.parent.glob(p.name + "*") if q != p]      # external data next to it
    return (os.path.getsize(p) + sum(os.path.getsize(q) for q in extra)) / 1e6
