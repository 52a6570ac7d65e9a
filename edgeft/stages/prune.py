"""prune: structured pruning that removes real work (heads, FFN neurons, whole layers).

Order inside the stage: drop layers (explicit `drop_layers`, or `keep_every: k` keeps layers
k-1, 2k-1, ... so the top layer stays), then per step: score every remaining head and FFN neuron
by first-order Taylor importance on training batches (ops/pruning.py), remove the lowest heads by a
global ranking across layers (per-layer budgets differ; each layer keeps `min_heads_per_layer`), and
the lowest FFN neurons of each layer (one width for all layers, rounded up to a multiple of
`ffn_multiple` for the INT8 GEMM kernels). With `steps: N` the fractions are reached in N equal
steps with `recovery_steps` of fine-tuning between them. The output is a standard HF model folder
that loads with `from_pretrained`, fine-tunes, distills and exports like any other.

`unstructured` (magnitude sparsity) keeps every shape: none of edgeft's targets runs sparse weights
faster, so the validator warns (an error with `strict: true`).

Image tasks (CNNs): `channels` removes that fraction of every convolution layer's output channels
with torch-pruning (ops/channel_pruning.py: dependency graph of coupled channels, Taylor or L2
importance, the classifier left out); the narrower weights are saved in edgeft's CNN folder format,
which records every module's new shape. The transformer keys and `channels` are each rejected for
the other task at load time.
"""

from __future__ import annotations

import logging
import math
from typing import Literal

from pydantic import Field, NonNegativeInt, PositiveInt

from ..errors import StageError
from ..schema import differs_from_default
from .base import StageConfig

log = logging.getLogger("edgeft")


class PruneConfig(StageConfig):
    type: Literal["prune"]
    heads: float = Field(0.0, ge=0, lt=1, description="fraction of the input's attention heads to remove")
    ffn: float = Field(0.0, ge=0, lt=1, description="fraction of each layer's FFN neurons to remove")
    drop_layers: list[NonNegativeInt] = Field([], description="encoder layers to remove (0 = input side)")
    keep_every: PositiveInt | None = Field(None, description="keep every k-th layer (k-1, 2k-1, ...), drop the rest")
    unstructured: float = Field(0.0, ge=0, lt=1, description="magnitude sparsity of encoder weights "
                                                             "(no target runs it faster: warns)")
    min_heads_per_layer: PositiveInt = 1
    ffn_multiple: PositiveInt = Field(16, description="kept FFN width is rounded up to a multiple of this")
    importance_samples: PositiveInt = Field(1024, description="training examples scored for importance")
    batch_size: PositiveInt = 32
    steps: PositiveInt = Field(1, description="reach the fractions in this many pruning steps")
    recovery_steps: NonNegativeInt = Field(0, description="fine-tuning optimizer steps between pruning steps")
    recovery_lr: float = Field(5e-5, gt=0, le=1)
    # image tasks (CNNs)
    channels: float = Field(0.0, ge=0, lt=1, description="image tasks: fraction of each conv layer's channels "
                                                          "to remove (coupled channels go together)")
    channel_multiple: PositiveInt = Field(8, description="image tasks: kept channel counts are multiples of this")
    channel_importance: Literal["taylor", "magnitude"] = Field(
        "taylor", description="image tasks: first-order Taylor on training batches, or the L2 norm of the weights")

    accepts = ("torch",)

    def produces(self) -> str:
        return "torch"

    def key_config(self) -> dict:
        d = super().key_config()
        if not self.channels:            # text recipes keep their cache keys
            for k in CNN_KEYS:
                d.pop(k, None)
        return d

    def check(self, recipe, stages) -> list[tuple[str, str]]:
        if recipe.task == "image-classification":
            problems = [(k, "a text-classification (transformer) setting; for a CNN use `channels`")
                        for k in TRANSFORMER_KEYS if differs_from_default(self, k)]
            if not self.channels:
                problems.append(("channels", "prunes nothing: set `channels` (fraction of each conv layer's "
                                             "channels to remove)"))
            return problems
        problems = [(k, f"an image-classification (CNN) setting; this recipe's task is {recipe.task}")
                    for k in CNN_KEYS if differs_from_default(self, k)]
        if self.drop_layers and self.keep_every:
            problems.append(("keep_every", "give `drop_layers` or `keep_every`, not both"))
        if len(set(self.drop_layers)) != len(self.drop_layers):
            problems.append(("drop_layers", "lists a layer twice"))
        if not (self.heads or self.ffn or self.drop_layers or self.keep_every or self.unstructured):
            problems.append(("", "prunes nothing: set heads, ffn, drop_layers, keep_every or unstructured"))
        if self.steps > 1 and not (self.heads or self.ffn):
            problems.append(("steps", "a gradual schedule needs `heads` or `ffn` to prune"))
        if self.recovery_steps and self.steps == 1:
            problems.append(("recovery_steps", "recovery fine-tuning runs between pruning steps: set steps > 1"))
        n = _input_layers(self, recipe, stages)
        if n is not None:
            if any(i >= n for i in self.drop_layers):
                problems.append(("drop_layers", f"the input model has {n} layers (0..{n - 1})"))
            elif len(set(self.drop_layers)) >= n:
                problems.append(("drop_layers", f"would remove all {n} layers"))
            if self.keep_every and self.keep_every > n:
                problems.append(("keep_every", f"keeps no layer of the input model's {n}"))
        return problems

    def warnings(self, recipe, stages) -> list[tuple[str, str]]:
        from ..targets import TARGETS
        from .graph import recipe_targets

        if not self.unstructured or recipe.task != "text-classification":
            return []
        targets = sorted(recipe_targets(stages)) or ["(none benchmarked)"]
        if any(TARGETS[t].sparse_speedup for t in targets if t in TARGETS):
            return []
        return [("unstructured", f"unstructured sparsity {self.unstructured:g} makes none of this recipe's targets "
                                 f"faster ({', '.join(targets)} run dense kernels): the model keeps its size and "
                                 f"latency. Use heads, ffn, drop_layers or keep_every to remove real work")]


CNN_KEYS = ("channels", "channel_multiple", "channel_importance")
TRANSFORMER_KEYS = ("heads", "ffn", "drop_layers", "keep_every", "unstructured", "min_heads_per_layer",
                    "ffn_multiple", "steps", "recovery_steps", "recovery_lr")


def _input_layers(cfg, recipe, stages) -> int | None:
    """Layer count of the input model when it is knowable at load time: the recipe's model (local
    config.json) reached through stages that keep the depth (finetune/distill). None otherwise."""
    import json
    from pathlib import Path

    from ..models import resolve_source
    from .graph import input_stage

    s = cfg
    while True:
        s = input_stage(stages, s)
        if s is None:
            break
        if s.type not in ("finetune", "distill"):
            return None
    try:
        config = json.loads((Path(resolve_source(recipe.model.source)) / "config.json").read_text())
    except Exception:
        return None
    return config.get("num_hidden_layers")


def layers_to_keep(n: int, drop: list[int], keep_every: int | None) -> list[int]:
    if keep_every:
        return [i for i in range(n) if (i + 1) % keep_every == 0]
    return [i for i in range(n) if i not in set(drop)]


def run(cfg: PruneConfig, inputs: dict, ctx):
    import torch
    from transformers import DataCollatorWithPadding

    from ..ops import pruning
    from ..ops.training import count_params
    from .training import load_input, train_steps

    recipe, task, splits = ctx.recipe, ctx.task, ctx.splits()
    src, processor, model = load_input(inputs, ctx)
    if not task.HIDDEN_STATE_KD:          # not a transformer encoder: a CNN
        return _run_channels(cfg, src, processor, model, ctx)
    params_before = count_params(model)[0]
    n_layers = model.config.num_hidden_layers
    origin = list((src.meta.get("layer_origin") if src is not None else None) or range(n_layers))

    keep = layers_to_keep(n_layers, cfg.drop_layers, cfg.keep_every)
    try:
        if len(keep) != n_layers:
            pruning.drop_layers(model, keep)
        heads0, ffn0 = sum(pruning.head_counts(model)), pruning.ffn_sizes(model)[0]
    except ValueError as e:
        raise StageError(f"prune: {e}") from None
    origin = [origin[i] for i in keep]
    log.info("prune: %d of %d layers kept (%s); %d heads, FFN width %d", len(keep), n_layers, keep, heads0, ffn0)

    heads_goal = round(cfg.heads * heads0)
    floor = cfg.min_heads_per_layer * len(keep)
    if heads_goal and heads0 - heads_goal < floor:
        raise StageError(f"prune: heads: {cfg.heads:g} asks to remove {heads_goal} of {heads0} heads, but "
                         f"min_heads_per_layer {cfg.min_heads_per_layer} keeps at least {floor}")
    ffn_goal = ffn0 - _round_up(ffn0 - round(cfg.ffn * ffn0), cfg.ffn_multiple, ffn0)
    collate = DataCollatorWithPadding(processor)
    train = task.training_examples(processor, splits.train, recipe.data)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(recipe.seed)).tolist()
    scored = [train[i] for i in order[:cfg.importance_samples]]
    history = []
    steps = cfg.steps if heads_goal or ffn_goal else 0     # only layers or unstructured: nothing to score
    for step in range(1, steps + 1):
        batches = (collate(scored[i:i + cfg.batch_size]) for i in range(0, len(scored), cfg.batch_size))
        imp = pruning.importance(model, batches)
        h_now = sum(pruning.head_counts(model))
        h_remove = h_now - (heads0 - round(heads_goal * step / cfg.steps))
        if h_remove > 0:
            pruning.prune_heads(model, pruning.heads_to_remove(imp.heads, h_remove, cfg.min_heads_per_layer))
        f_keep = ffn0 - round(ffn_goal * step / cfg.steps)
        if f_keep < pruning.ffn_sizes(model)[0]:
            pruning.prune_ffn(model, imp.ffn, f_keep)
        history.append({"step": step, "heads": pruning.head_counts(model), "ffn": pruning.ffn_sizes(model)[0],
                        "scored_examples": imp.examples})
        log.info("prune: step %d/%d: heads per layer %s, FFN width %d", step, cfg.steps,
                 history[-1]["heads"], history[-1]["ffn"])
        if step < cfg.steps and cfg.recovery_steps:
            train_steps(model, processor, train, cfg.recovery_steps, cfg.recovery_lr, cfg.batch_size,
                        recipe.seed, ctx.out_dir)
    sparsity = pruning.magnitude_sparsity(model, cfg.unstructured) if cfg.unstructured else 0.0

    model.eval()
    val_acc = _accuracy(model, processor, splits.validation, recipe.data.max_length, task)
    model.save_pretrained(ctx.out_dir, safe_serialization=True)
    processor.save_pretrained(ctx.out_dir)
    params_after = count_params(model)[0]
    meta = {
        "precision": "fp32",
        "label_names": list(splits.label_names),
        "params": params_after,
        "params_before": params_before,
        "params_ratio": round(params_after / params_before, 4),
        "layers_kept": keep,
        "layer_origin": origin,                 # teacher-side layer of each kept layer (for distill)
        "layer_origin_of": (src.meta.get("layer_origin_of") or src.key) if src is not None else None,
        "heads_per_layer": pruning.head_counts(model),
        "ffn_width": pruning.ffn_sizes(model)[0],
        "ffn_width_before": ffn0,
        "importance": "first-order Taylor |Σ a·∂L/∂a| per head (head-mask gradient) and per FFN neuron",
        "unstructured_sparsity": round(sparsity, 4),
        "steps": history,
        "val_accuracy_after_pruning": round(val_acc, 4),
    }
    log.info("prune: %d → %d parameters (%.0f%%); validation accuracy right after pruning %.4f",
             params_before, params_after, 100 * meta["params_ratio"], val_acc)
    return ctx.artifact(kind="torch", file="", meta=meta)


def _run_channels(cfg: PruneConfig, src, processor, model, ctx):
    """Channel pruning of a CNN (torch-pruning), then the same validation check and folder output."""
    import torch

    from ..models.cnn import classifier_module
    from ..ops.channel_pruning import prune_channels

    recipe, task, splits = ctx.recipe, ctx.task, ctx.splits()
    net = model.net
    example = torch.from_numpy(task.encode(processor, splits.validation.items[:1])[task.INPUT_NAME])
    order = torch.randperm(len(splits.train), generator=torch.Generator().manual_seed(recipe.seed)).tolist()
    idx = order[:cfg.importance_samples]

    def batches():
        for i in range(0, len(idx), cfg.batch_size):
            ix = idx[i:i + cfg.batch_size]
            x = task.encode(processor, [splits.train.items[j] for j in ix])[task.INPUT_NAME]
            yield torch.from_numpy(x), torch.from_numpy(splits.train.labels[ix])

    try:
        facts = prune_channels(net, example, cfg.channels, [classifier_module(net)], cfg.channel_multiple,
                               cfg.channel_importance, batches(), torch.nn.functional.cross_entropy)
    except (ValueError, RuntimeError) as e:
        raise StageError(f"prune: channel pruning failed: {e}") from None
    model.eval()
    val_acc = _accuracy(model, processor, splits.validation, recipe.data.max_length, task)
    model.save_pretrained(ctx.out_dir, safe_serialization=True)
    processor.save_pretrained(ctx.out_dir)
    before, after = facts["conv_widths_before"], facts["conv_widths_after"]
    meta = {
        "precision": "fp32",
        "label_names": list(splits.label_names),
        "params": facts["params_after"],
        "params_before": facts["params_before"],
        "params_ratio": round(facts["params_after"] / facts["params_before"], 4),
        "channels": cfg.channels,
        "conv_channels_before": sum(before),
        "conv_channels_after": sum(after),
        "conv_widths_after": after,
        "importance": ("first-order Taylor |Σ w·∂L/∂w| per group of coupled channels (torch-pruning "
                       "GroupTaylorImportance)" if cfg.channel_importance == "taylor" else
                       "L2 norm of each group of coupled channels' weights (torch-pruning GroupMagnitudeImportance)"),
        "scored_examples": facts["scored_examples"],
        "channel_multiple": cfg.channel_multiple,
        "val_accuracy_after_pruning": round(val_acc, 4),
    }
    log.info("prune: conv channels %d → %d, parameters %d → %d (%.0f%%); validation accuracy right after "
             "pruning %.4f", sum(before), sum(after), facts["params_before"], facts["params_after"],
             100 * meta["params_ratio"], val_acc)
    return ctx.artifact(kind="torch", file="", meta=meta)


def _round_up(n: int, multiple: int, cap: int) -> int:
    return min(cap, max(multiple, int(math.ceil(n / multiple) * multiple)))


def _accuracy(model, processor, split, max_length: int, task, batch_size: int = 128) -> float:
    import numpy as np

    logits = [task.torch_forward(model, task.encode(processor, split.items[i:i + batch_size], max_length))
              for i in range(0, len(split), batch_size)]
    return task.metrics(np.concatenate(logits), np.asarray(split.labels))["accuracy"]
