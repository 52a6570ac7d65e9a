"""export: a torch model to ONNX (dynamic batch and sequence axes), then the parity gate.

The gate runs source and export on real validation samples; output names and shapes must match,
max |Δlogit| must be within tolerance and argmax agreement at or above the floor, else the stage
fails with ExportParityError. `optimize: true` adds ONNX Runtime transformer fusions, verified alike.
"""

from __future__ import annotations

import logging
from typing import Literal

from pydantic import Field, PositiveInt

from ..schema import Strict
from .base import StageConfig

log = logging.getLogger("edgeft")


class ParityConfig(Strict):
    samples: PositiveInt = Field(256, description="real validation samples compared (all if fewer)")
    max_abs_diff: float | None = Field(None, gt=0, description="absolute part of the bound on |Δlogit|; "
                                       "default: the task's (1e-4)")
    rtol: float | None = Field(None, ge=0, description="relative part: |Δlogit| <= max_abs_diff + rtol x the "
                               "sample's max |logit|; default: the task's (1e-4)")
    min_agreement: float = Field(0.999, ge=0, le=1, description="argmax agreement floor")
    batch_size: PositiveInt = Field(32, description="samples per batch, padded to the batch's longest")
    single_runs: int = Field(8, ge=0, description="extra batch-1 runs at natural length (dynamic axes)")


class ExportConfig(StageConfig):
    type: Literal["export"]
    opset: int = Field(18, ge=14, le=23)
    optimize: bool = Field(
        False, description="ONNX Runtime transformer fusions (Attention, SkipLayerNorm, ...; verified by the "
                           "gate). Off by default: at batch 1 on CPU they measured no faster than the fusions "
                           "ONNX Runtime applies at load time, and static INT8 needs the unfused graph")
    opt_level: Literal[0, 1, 2, 99] = Field(
        1, description="ONNX Runtime graph optimizations applied with the fusions: 0/1 keep the file "
                       "portable across runtimes and devices; 2/99 bake in CPU-specific rewrites")
    parity: ParityConfig = ParityConfig()

    accepts = ("torch",)

    def produces(self) -> str:
        return "onnx"

    def check(self, recipe, stages) -> list[tuple[str, str]]:
        if recipe.task != "text-classification" and self.optimize:
            return [("optimize", "ONNX Runtime transformer fusions are for transformer encoders; "
                                 f"a {recipe.task} CNN exports without them (ONNX Runtime fuses Conv+activation "
                                 f"at load time)")]
        return []


def run(cfg: ExportConfig, inputs: dict, ctx):
    import shutil

    import numpy as np
    import torch

    from ..ops import onnx_export as ox
    from ..ops.parity import ParityLimits, check_parity, parity_feeds

    task, src = ctx.task, inputs.get("input")
    splits = ctx.splits()
    if src is None:                      # first stage: the recipe's model, with a head for our labels
        from ..models import resolve_source
        model_dir, torch_source = resolve_source(ctx.recipe.model.source), "model:" + ctx.recipe.model.source
        torch.manual_seed(ctx.recipe.seed)   # a new head is initialized: same recipe, same export
        model = task.load_model(model_dir, splits.label_names, ctx.recipe.data)
    else:
        model_dir, torch_source = src.path, src.key
        model = task.load_model(model_dir)
    model = model.float().eval()
    processor = task.load_processor(model_dir, ctx.recipe.data)
    names = task.input_names(processor)
    max_len = ctx.recipe.data.max_length

    def encode(texts):
        return task.encode(processor, texts, max_len)

    val = splits.validation
    n = min(cfg.parity.samples, len(val))
    feeds, n_batched = parity_feeds(val.items[:n], encode, cfg.parity.batch_size, cfg.parity.single_runs)
    reference = [task.torch_forward(model, f) for f in feeds]
    tol = cfg.parity.max_abs_diff or task.FP32_TOLERANCE
    rtol = task.FP32_RTOL if cfg.parity.rtol is None else cfg.parity.rtol
    limits = ParityLimits(max_abs_diff=tol, rtol=rtol, min_agreement=cfg.parity.min_agreement)

    work = ctx.out_dir / ".work"
    plain = work / "model.onnx"
    log.info("export: tracing %s to ONNX (opset %d, inputs %s)", type(model).__name__, cfg.opset, ", ".join(names))
    ox.export_onnx(model, encode(val.items[:2]), plain, names, task.OUTPUT_NAMES, cfg.opset, task.INPUT_AXES)

    def gate(path, what):
        sess = ox.session(path)
        pick = ox.output_index(sess, task.OUTPUT_NAMES[0])

        def report(figures, _):
            log.info("export: parity of %s on %d validation samples + %d batch-1 runs: max |Δlogit| %.2e (relative "
                     "%.2e, %.0f%% of the bound), agreement %.4f", what, n, len(feeds) - n_batched,
                     figures["max_abs_diff"], figures["max_rel_diff"], 100 * figures["tolerance_used"],
                     figures["agreement"])

        return check_parity(f"{ctx.stage_name}: {what}", reference, lambda f: ox.run_session(sess, f)[pick], limits,
                            feeds=feeds, output_names=ox.io_names(sess)[1], expected_names=task.OUTPUT_NAMES,
                            report=report)

    plain_figures, cand = gate(plain, "ONNX export")
    fusions: dict = {}
    final = ctx.out_dir / "model.onnx"
    if cfg.optimize:
        c = model.config
        pruned = bool(getattr(c, "pruned_heads", None))   # per-layer head counts differ: let ORT detect
        heads = 0 if pruned else getattr(c, "num_attention_heads", getattr(c, "n_heads", 0))
        hidden = 0 if pruned else getattr(c, "hidden_size", getattr(c, "dim", 0))
        fusions = ox.optimize_transformer(plain, final, ox.optimizer_model_type(c.model_type), heads, hidden,
                                          cfg.opt_level)
        log.info("export: ONNX Runtime fusions: %s", ", ".join(f"{k} {v}" for k, v in fusions.items()) or "none")
        figures, cand = gate(final, "ONNX export with ONNX Runtime fusions (optimize: true; "
                                          "optimize: false ships the plain export)")
    else:
        for f in work.iterdir():          # model.onnx (plus external data, only past 2 GB)
            shutil.move(str(f), ctx.out_dir / f.name)
        figures = plain_figures
    shutil.rmtree(work, ignore_errors=True)

    # self-contained: the tokenizer and config next to model.onnx (load_processor works on it)
    processor.save_pretrained(ctx.out_dir)
    model.config.save_pretrained(ctx.out_dir)

    labels = val.labels[:n]
    ref_logits, cand_logits = np.concatenate(reference[:n_batched]), np.concatenate(cand[:n_batched])
    meta = {
        "precision": "fp32", "torch_source": torch_source, "opset": cfg.opset, "inputs": names,
        "exporter": f"torch.onnx TorchScript tracer (torch {torch.__version__})",
        "optimized": cfg.optimize, "fusions": fusions,
        "parity": figures, "parity_limits": limits.meta(),
        "parity_batch1_runs": len(feeds) - n_batched,
        "val_accuracy_fp32": task.metrics(ref_logits, labels)["accuracy"],
        "val_accuracy_onnx": task.metrics(cand_logits, labels)["accuracy"],
        "size_mb": round(ox.file_size_mb(final), 2),
    }
    if cfg.optimize:
        meta["parity_unoptimized"] = plain_figures
    return ctx.artifact(kind="onnx", file="model.onnx", meta=meta)
