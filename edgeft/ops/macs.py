"""MACs of one forward pass, counted by PyTorch's FlopCounterMode (no hand-written formulas per model).

FlopCounterMode counts matmuls, linears, convolutions and the fused attention kernels it knows.
The CPU scaled-dot-product-attention kernel (what transformers uses by default) is not among them,
so it is added here with PyTorch's own `sdpa_flop_count`: QK^T and AV, 2 x B x H x L x S x E each.
Element-wise work (softmax, GELU, LayerNorm, embedding lookups) is not counted, as is customary.
MACs = FLOPs / 2. A quantized model does the same MACs, in INT8 instead of FP32.
"""

from __future__ import annotations


def _sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


def count_flops(model, inputs: dict) -> tuple[int, dict[str, int]]:
    """(total FLOPs, FLOPs per aten op) of `model(**inputs)` with torch tensors as inputs."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    aten = torch.ops.aten
    mapping = {aten.scaled_dot_product_attention: _sdpa_flops}
    cpu_sdpa = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if cpu_sdpa is not None:
        mapping[cpu_sdpa] = _sdpa_flops
    counter = FlopCounterMode(display=False, custom_mapping=mapping)
    with counter, torch.inference_mode():
        model(**inputs)
    per_op = {str(k): int(v) for k, v in counter.get_flop_counts().get("Global", {}).items()}
    return int(counter.get_total_flops()), per_op


def count_macs(model, inputs: dict) -> int:
    """Multiply-accumulates of one forward pass (FLOPs / 2)."""
    return count_flops(model, inputs)[0] // 2


def count_params(model) -> int:
    """Every parameter, embeddings included (the model a user ships)."""
    return int(sum(p.numel() for p in model.parameters()))
