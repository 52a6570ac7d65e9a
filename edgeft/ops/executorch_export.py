"""ExecuTorch programs (.pte): torch.export -> XNNPACK-delegated program, FP32 or INT8 (PT2E), and running one.

FP32: `torch.export` with dynamic batch (and sequence) dims, `to_edge_transform_and_lower` with the
XNNPACK partitioner, `to_executorch`. INT8: the PT2E flow with ExecuTorch's XNNPACKQuantizer
(symmetric int8, per-channel weights; activations static, from calibration, or dynamic, per call) —
export, `prepare_pt2e`, one forward per calibration sample at its own length, `convert_pt2e`, export
again, lower. `modules` limits quantization to those module types (a transformer's Linear layers:
quantizing its attention-score matmuls and softmax as well cost 8 points of agreement and was slower,
on the test suite's briefly fine-tuned MiniLM), else the quantizer's global set (a CNN's convolutions,
adds, pools). The program runs the XNNPACK delegate where it can and ExecuTorch's portable kernels
for the rest (embedding lookups, layer norms and shape ops on a BERT); `delegation()` says how much
went where.

Dynamic dims have bounds (ExecuTorch plans memory for the largest shape): batch 1..MAX_BATCH and,
for token inputs, sequence 2..max_length. A request outside them is an error from the runtime.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

log = logging.getLogger("edgeft")

MAX_BATCH = 64      # largest batch a program accepts (parity batches are 32, the benchmark's 32)
MIN_SEQ = 2         # a tokenized text has at least [CLS] and [SEP]


def installed() -> str | None:
    """The executorch version, or None when it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("executorch")
    except PackageNotFoundError:
        return None


def eager_attention(model):
    """A copy of a Hugging Face model with eager attention when it uses SDPA, else the model itself.

    SDPA's mask preparation (any/eq/logical_not on the mask) exports to ops XNNPACK does not take,
    leaving the graph cut into many small delegate blocks; eager attention's mask is one subtraction
    and a multiply, and its matmuls and softmax all delegate. Same weights, same logits."""
    import copy

    config = getattr(model, "config", None)
    if getattr(config, "_attn_implementation", None) != "sdpa":
        return model
    config = copy.deepcopy(config)
    config._attn_implementation = "eager"
    eager = type(model)(config)          # pruned_heads in the config: post_init prunes the same heads
    eager.load_state_dict(model.state_dict())
    return eager.float().eval()


def contiguous_weights(model):
    """A copy of the model with contiguous (NCHW) weights when any are channels-last (edgeft's CNNs train
    that way), else the model: XNNPACK's layout pass expects NCHW parameters and converts them itself."""
    import copy

    import torch

    if all(p.is_contiguous() for p in model.parameters()):
        return model
    return copy.deepcopy(model).to(memory_format=torch.contiguous_format)


def dynamic_shapes(input_names: list[str], axes: dict[int, str], max_length: int) -> tuple:
    """torch.export dynamic shapes of the wrapper's one `*tensors` argument: per input the task's axes
    (batch, sequence) with their bounds, the same Dim objects for every input (they share the dims)."""
    from torch.export import Dim

    dims = {"batch": Dim("batch", min=1, max=MAX_BATCH), "sequence": Dim("sequence", min=MIN_SEQ, max=max_length)}
    return (tuple({i: dims[name] for i, name in axes.items()} for _ in input_names),)


def _tensors(batch: dict[str, np.ndarray], input_names: list[str]) -> tuple:
    import torch

    return tuple(torch.from_numpy(np.ascontiguousarray(batch[n])) for n in input_names)


def export_program(model, example: dict[str, np.ndarray], input_names: list[str], output_name: str,
                   axes: dict[int, str], max_length: int,
                   calibration: Iterable[dict[str, np.ndarray]] | None = None, int8: bool = False,
                   activations: str = "static", modules: tuple[str, ...] | None = None) -> tuple[bytes, dict]:
    """(the .pte program's bytes, facts) of `model` lowered to XNNPACK, FP32, or INT8 with `int8`:
    static activations calibrated on `calibration` (feeds of one sample each), or dynamic ones (no
    calibration). `modules`: torch.nn type names to quantize (None: all the quantizer takes).
    `example` must fit the dynamic bounds (batch >= 1, sequence >= 2)."""
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from torch.export import export

    from .onnx_export import positional

    wrapped = positional(contiguous_weights(eager_attention(model)), input_names, output_name)
    # traced at the largest batch: where a delegate pass loses the batch symbol's bound (EfficientNet's
    # channels-last pass did), ExecuTorch plans memory from the example, and a batch-2 example gave a
    # program that refused batches above 15
    args = _tensors({k: np.concatenate([v] * -(-MAX_BATCH // len(v)))[:MAX_BATCH] for k, v in example.items()},
                    input_names)
    shapes = dynamic_shapes(input_names, axes, max_length)
    facts: dict = {"executorch": installed(), "torch": torch.__version__, "backend": "XNNPACK",
                   "max_batch": MAX_BATCH}
    if len(axes) > 1:
        facts["max_sequence"] = max_length
    with warnings.catch_warnings(), torch.no_grad():
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning)
        program = export(wrapped, args, dynamic_shapes=shapes, strict=False)
        if int8:
            from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
                XNNPACKQuantizer,
                get_symmetric_quantization_config,
            )
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

            dynamic = activations == "dynamic"
            config = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=dynamic)
            quantizer = XNNPACKQuantizer()
            if modules is None or dynamic:      # dynamic: the quantizer takes only linear (and conv) layers
                modules = None
                quantizer.set_global(config)
            else:
                for name in modules:
                    quantizer.set_module_type(getattr(torch.nn, name), config)
            prepared = prepare_pt2e(program.module(), quantizer)
            n = 0
            for feed in calibration or ():
                prepared(*_tensors(feed, input_names))
                n += 1
            if n == 0 and not dynamic:
                raise ValueError("static INT8 ExecuTorch export needs at least one calibration sample")
            if dynamic:                 # the weight observers size their per-channel scales on a forward
                prepared(*args)
            program = export(convert_pt2e(prepared), args, dynamic_shapes=shapes[0], strict=False)   # flat inputs
            facts.update(quantizer=f"XNNPACKQuantizer (symmetric int8, per-channel weights, {activations} "
                                   f"activations)", activations=activations,
                         quantized_modules=list(modules) if modules else "all the quantizer takes",
                         calibration_forwards=n)
        edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
        facts["delegation"] = delegation(edge)
        buffer = edge.to_executorch().buffer
    return bytes(buffer), facts


def delegation(edge) -> dict:
    """How much of the lowered graph XNNPACK runs: delegated and non-delegated operator nodes, and the
    operators left to ExecuTorch's portable kernels with their counts."""
    from executorch.devtools.backend_debug import get_delegation_info

    info = get_delegation_info(edge.exported_program().graph_module)
    df = info.get_operator_delegation_dataframe()
    rest = {}
    for _, r in df.iterrows():
        name = str(r["op_type"])
        if name == "Total" or not int(r["occurrences_in_non_delegated_graphs"]):
            continue
        rest[name.removeprefix("aten_").removesuffix("_default")] = int(r["occurrences_in_non_delegated_graphs"])
    delegated, other = int(info.num_delegated_nodes), int(info.num_non_delegated_nodes)
    return {"delegated_nodes": delegated, "non_delegated_nodes": other,
            "delegated_share": round(delegated / max(delegated + other, 1), 3),
            "delegate_blocks": int(info.num_delegated_subgraphs), "non_delegated_ops": rest}


def load_method(path: str | Path, threads: int | None = None) -> Callable[[tuple], np.ndarray]:
    """A callable running the program's `forward` on a tuple of torch tensors, returning numpy logits.
    `threads` sizes XNNPACK's thread pool (process-wide in ExecuTorch's Python runtime)."""
    from executorch.runtime import Runtime

    if threads:
        set_threads(threads)
    method = Runtime.get().load_program(Path(path)).load_method("forward")

    def run(tensors: tuple) -> np.ndarray:
        return method.execute(list(tensors))[0].numpy()

    return run


def set_threads(threads: int) -> bool:
    """Resize ExecuTorch's process-wide thread pool; False where this build does not expose it."""
    try:
        from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool
    except ImportError:
        return False
    _unsafe_reset_threadpool(int(threads))
    return True


def run_program(run: Callable, batch: dict[str, np.ndarray], input_names: list[str]) -> np.ndarray:
    return run(_tensors(batch, input_names))
