"""Channel pruning of CNNs with torch-pruning: plain functions on modules.

`prune_channels` builds torch-pruning's dependency graph of the network (which channels of which
convolutions, BatchNorms, residual adds and the classifier's input are coupled), scores every
group of coupled channels, and physically removes the lowest-scoring `ratio` of each layer's
channels: the convolutions get narrower weight tensors, so every runtime does less work. The
classifier (its outputs are the classes) is left out. Importance: first-order Taylor
(|Σ w·∂L/∂w| over a coupled group, gradients from real training batches) or the L2 norm of the
group's weights.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable


def conv_widths(net) -> list[int]:
    """Output channels of every Conv2d, in module order."""
    import torch.nn as nn

    return [m.out_channels for m in net.modules() if isinstance(m, nn.Conv2d)]


def prune_channels(net, example_input, ratio: float, ignored: list, round_to: int = 8,
                   importance: str = "taylor", batches: Iterable | None = None,
                   loss_fn: Callable | None = None) -> dict:
    """Remove `ratio` of the prunable channels of every layer of `net` (in place).

    `example_input`: one input tensor to trace the graph. For `importance="taylor"`, `batches` yields
    (inputs, labels) and `loss_fn(net(inputs), labels)` the loss whose gradients score the channels.
    `round_to`: kept channel counts are multiples of this (SIMD/INT8 kernels work in blocks).
    Returns facts: widths before/after, parameters before/after, examples scored."""
    import torch
    import torch_pruning as tp

    if importance == "taylor":
        imp = tp.importance.GroupTaylorImportance()
    elif importance == "magnitude":
        imp = tp.importance.GroupMagnitudeImportance(p=2)
    else:
        raise ValueError(f"unknown importance {importance!r} (taylor, magnitude)")
    before = conv_widths(net)
    params_before = sum(p.numel() for p in net.parameters())
    pruner = tp.pruner.MetaPruner(net, example_input, importance=imp, pruning_ratio=ratio,
                                  ignored_layers=list(ignored), round_to=round_to, global_pruning=False)
    scored = 0
    if importance == "taylor":
        if batches is None or loss_fn is None:
            raise ValueError("taylor importance needs batches and a loss function")
        was_training = net.training
        net.eval()                       # BatchNorm statistics stay as trained; gradients still flow
        net.zero_grad()
        for x, y in batches:
            loss_fn(net(x), y).backward()
            scored += len(y)
        net.train(was_training)
    pruner.step()
    net.zero_grad(set_to_none=True)
    for p in net.parameters():
        p.grad = None
    net.to(memory_format=torch.channels_last)
    return {"conv_widths_before": before, "conv_widths_after": conv_widths(net),
            "params_before": params_before, "params_after": sum(p.numel() for p in net.parameters()),
            "scored_examples": scored}
