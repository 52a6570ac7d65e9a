"""Structured pruning of transformer encoders: plain functions on a Hugging Face model.

Everything here *removes* work: heads, FFN neurons and layers are cut out of the weight matrices,
and the model's config is updated so the result is a standard, smaller model that
`from_pretrained` loads (pruned heads through `config.pruned_heads`, FFN width through
`config.intermediate_size`, depth through `config.num_hidden_layers`).

Importance is first-order (Taylor): for a group of activations a feeding a Linear layer, the loss
change when the group is zeroed is ≈ |Σ a·∂L/∂a|. For a head that is exactly the gradient of a
head mask (Michel et al. 2019, "Are Sixteen Heads Really Better than One?"); for an FFN neuron it
is Molchanov et al.'s Taylor criterion. Per-example absolute values, summed over examples.

Supported layouts: the BERT family (BERT, RoBERTa, MiniLM, ELECTRA, XLM-R): `layer.attention`
with `self.query/key/value`, `attention.output.dense`, `intermediate.dense`, `output.dense`.

transformers 5 dropped head pruning (`prune_heads`, and `from_pretrained` no longer reads
`config.pruned_heads`): there heads are cut here with `prune_linear_layer` and `load_pruned` rebuilds
the pruned shapes from `config.pruned_heads` before loading the weights. transformers 4 uses its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .training import encoder_layers


@dataclass
class Importance:
    heads: list[torch.Tensor]         # per layer: one score per remaining head
    ffn: list[torch.Tensor]           # per layer: one score per remaining FFN neuron
    examples: int


def _check_layout(model):
    layers = encoder_layers(model)
    first = layers[0]
    ok = (hasattr(first, "attention") and hasattr(getattr(first.attention, "self", None), "query")
          and hasattr(first.attention, "output") and hasattr(first, "intermediate")
          and hasattr(first, "output") and hasattr(model.config, "intermediate_size"))
    if not ok:
        raise ValueError(f"structured pruning supports BERT-family encoders (attention.output.dense, "
                         f"intermediate.dense, output.dense); {type(model).__name__} has another layout")
    return layers


def head_counts(model) -> list[int]:
    return [int(layer.attention.self.num_attention_heads) for layer in _check_layout(model)]


def ffn_sizes(model) -> list[int]:
    return [int(layer.intermediate.dense.out_features) for layer in _check_layout(model)]


def remaining_heads(model, i: int) -> list[int]:
    """Original indices (as `prune_heads` and `config.pruned_heads` use them) of layer i's heads."""
    layer = _check_layout(model)[i]
    gone = getattr(layer.attention, "pruned_heads", set())
    return [h for h in range(model.config.num_attention_heads) if h not in gone]


def importance(model, batches, loss_fn=None) -> Importance:
    """Taylor importance of every remaining head and FFN neuron over `batches` (dicts of tensors
    with `labels`). `loss_fn(model, batch) -> loss`; default: the model's own loss on the labels."""
    layers = _check_layout(model)
    heads = [torch.zeros(int(layer.attention.self.num_attention_heads)) for layer in layers]
    ffn = [torch.zeros(layer.output.dense.in_features) for layer in layers]
    hooks = []

    def watch(module, acc, group: int):
        def fwd(mod, args):
            a = args[0]
            if not a.requires_grad:
                return

            def on_grad(g):
                per_example = (a.detach() * g).sum(dim=1)               # (batch, features)
                if group > 1:
                    per_example = per_example.view(per_example.shape[0], -1, group).sum(-1)
                acc.add_(per_example.abs().sum(0).float().cpu())
            a.register_hook(on_grad)
        hooks.append(module.register_forward_pre_hook(fwd))

    for i, layer in enumerate(layers):
        watch(layer.attention.output.dense, heads[i], int(layer.attention.self.attention_head_size))
        watch(layer.output.dense, ffn[i], 1)
    was_training = model.training
    model.eval()                      # no dropout: score the model as it will run
    n = 0
    try:
        for batch in batches:
            loss = loss_fn(model, batch) if loss_fn else model(**batch).loss
            loss.backward()
            n += int(batch["labels"].shape[0])
    finally:
        for h in hooks:
            h.remove()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return Importance(heads, ffn, n)


def drop_layers(model, keep: list[int]) -> None:
    """Keep only the encoder layers `keep` (indices into the current stack, in order)."""
    layers = _check_layout(model)
    if not keep or any(i < 0 or i >= len(layers) for i in keep) or len(set(keep)) != len(keep):
        raise ValueError(f"layers to keep {keep} must be distinct indices in 0..{len(layers) - 1}")
    keep = sorted(keep)
    kept = torch.nn.ModuleList([layers[i] for i in keep])
    model.base_model.encoder.layer = kept
    old = dict(getattr(model.config, "pruned_heads", None) or {})
    model.config.pruned_heads = {new: old[o] for new, o in enumerate(keep) if o in old}
    model.config.num_hidden_layers = len(keep)


def heads_to_remove(scores: list[torch.Tensor], n_remove: int, min_per_layer: int = 1) -> list[list[int]]:
    """Global ranking: which heads (positions among each layer's remaining heads) to remove so that
    `n_remove` go in all, lowest score first, each layer keeping at least `min_per_layer`.
    Scores are normalised per layer by their L2 norm first (Michel et al.): layers differ in
    gradient scale, and raw scores would strip whole layers."""
    normed = [s / (s.norm() + 1e-12) for s in scores]
    order = sorted(((float(v), li, hi) for li, s in enumerate(normed) for hi, v in enumerate(s)))
    left = [len(s) for s in scores]
    out: list[list[int]] = [[] for _ in scores]
    for _, li, hi in order:
        if n_remove <= 0:
            break
        if left[li] > min_per_layer:
            out[li].append(hi)
            left[li] -= 1
            n_remove -= 1
    return out


def prune_heads(model, remove: list[list[int]]) -> None:
    """Remove heads given as positions among each layer's *remaining* heads."""
    plan = {}
    for i, positions in enumerate(remove):
        if positions:
            alive = remaining_heads(model, i)
            plan[i] = [alive[p] for p in positions]
    if plan and hasattr(model, "prune_heads"):      # transformers 4
        model.prune_heads(plan)
    elif plan:
        _cut_heads(model, plan)


def _cut_heads(model, plan: dict[int, list[int]]) -> None:
    """transformers 5 (no `prune_heads`): remove heads `plan` {layer: original head indices} from the
    query/key/value rows and the attention output's columns, and record them in `config.pruned_heads`."""
    from transformers.pytorch_utils import prune_linear_layer

    layers = _check_layout(model)
    recorded = {int(k): list(v) for k, v in (getattr(model.config, "pruned_heads", None) or {}).items()}
    for i, heads in plan.items():
        att = layers[i].attention
        gone = getattr(att, "pruned_heads", set())
        heads = set(heads) - gone
        if not heads:
            continue
        alive = [h for h in range(model.config.num_attention_heads) if h not in gone]
        size = int(att.self.attention_head_size)
        idx = torch.tensor([p * size + j for p, h in enumerate(alive) if h not in heads for j in range(size)],
                           dtype=torch.long, device=att.self.query.weight.device)
        for name in ("query", "key", "value"):
            setattr(att.self, name, prune_linear_layer(getattr(att.self, name), idx, dim=0))
        att.output.dense = prune_linear_layer(att.output.dense, idx, dim=1)
        att.self.num_attention_heads = len(alive) - len(heads)
        att.self.all_head_size = size * att.self.num_attention_heads
        att.pruned_heads = gone | heads
        recorded[int(i)] = sorted(att.pruned_heads)
    model.config.pruned_heads = recorded


def load_pruned(model_cls, model_dir, **kwargs):
    """`model_cls.from_pretrained(model_dir, **kwargs)` for a checkpoint with `config.pruned_heads` under
    transformers 5, which builds every layer at full width: the model is built from the config, its
    heads cut to the config's plan, then the weights loaded (a mismatched task head stays new, as
    `ignore_mismatched_sizes` does). Returns None where from_pretrained handles it itself."""
    from pathlib import Path

    from safetensors.torch import load_file
    from transformers import AutoConfig, PreTrainedModel

    if hasattr(PreTrainedModel, "prune_heads"):
        return None
    ignore = kwargs.pop("ignore_mismatched_sizes", False)
    config = AutoConfig.from_pretrained(str(model_dir), **kwargs)
    plan = {int(k): list(v) for k, v in (getattr(config, "pruned_heads", None) or {}).items()}
    if not plan:
        return None
    config.pruned_heads = {}
    model = model_cls.from_config(config)
    _cut_heads(model, plan)
    state = {}
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        state.update(load_file(str(f)))
    own = model.state_dict()
    bad = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if bad and not ignore:
        raise ValueError(f"{model_dir}: weights of another shape than config.pruned_heads gives: {bad[:4]}")
    missing, unexpected = model.load_state_dict({k: v for k, v in state.items() if k not in bad}, strict=False)
    if unexpected or set(missing) - set(bad):
        raise ValueError(f"{model_dir}: missing {sorted(set(missing) - set(bad))[:4]}, unexpected {unexpected[:4]}")
    return model


def prune_ffn(model, scores: list[torch.Tensor], keep: int) -> None:
    """Keep the `keep` highest-scoring FFN neurons of every layer (one width for all layers, so
    `config.intermediate_size` describes the model and `from_pretrained` loads it)."""
    from transformers.pytorch_utils import prune_linear_layer

    layers = _check_layout(model)
    if not 0 < keep <= min(ffn_sizes(model)):
        raise ValueError(f"cannot keep {keep} FFN neurons per layer (layers have {ffn_sizes(model)})")
    for layer, s in zip(layers, scores):
        idx = torch.topk(s, keep).indices.sort().values.to(layer.intermediate.dense.weight.device)
        layer.intermediate.dense = prune_linear_layer(layer.intermediate.dense, idx, dim=0)
        layer.output.dense = prune_linear_layer(layer.output.dense, idx, dim=1)
    model.config.intermediate_size = keep


def magnitude_sparsity(model, sparsity: float) -> float:
    """Unstructured: zero the smallest-magnitude weights of the encoder's Linear layers (global
    threshold, torch.nn.utils.prune). Shapes do not change; returns the achieved zero fraction."""
    import torch.nn.utils.prune as tprune

    linears = [(m, "weight") for m in encoder_layers(model).modules() if isinstance(m, torch.nn.Linear)]
    tprune.global_unstructured(linears, pruning_method=tprune.L1Unstructured, amount=float(sparsity))
    for m, name in linears:
        tprune.remove(m, name)
    zeros = sum(int((m.weight == 0).sum()) for m, _ in linears)
    return zeros / sum(m.weight.numel() for m, _ in linears)
