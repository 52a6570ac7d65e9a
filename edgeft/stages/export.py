"""export: a model to a deployable format, then the parity gate.

format onnx (default): a torch model to ONNX (dynamic batch and sequence axes); `optimize: true` adds
ONNX Runtime transformer fusions, verified alike. format executorch: a torch model to an
XNNPACK-delegated ExecuTorch program (.pte), FP32 or INT8 (PT2E, calibrated on a pinned manifest;
ops/executorch_export.py). format ort-mobile: an ONNX artifact (FP32 or INT8) to ONNX Runtime's ORT
format (.ort) plus the required-operators config of a reduced build (ops/ort_mobile.py). format
tensorrt: an ONNX artifact to a TensorRT engine (model.plan) for this machine's NVIDIA GPU, FP32, FP16
(the graph converted to FP16) or INT8 (a symmetric QDQ model read as explicit quantization), with an
optimization profile sized from the recipe's data (ops/tensorrt_engine.py); its cache key includes
the GPU model, compute capability, TensorRT and CUDA versions.

The gate runs source and export on real validation samples; output names and shapes must match,
max |Δlogit| must be within tolerance and argmax agreement at or above the floor, else the stage
fails with ExportParityError and nothing is stored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, PositiveInt

from ..schema import Strict
from .base import StageConfig

log = logging.getLogger("edgeft")

FORMATS = {          # format -> (artifact kind it makes, input kinds it takes)
    "onnx": ("onnx", ("torch",)),
    "executorch": ("executorch", ("torch",)),
    "ort-mobile": ("ort", ("onnx",)),
    "tensorrt": ("tensorrt", ("onnx",)),
}
INT8_MIN_AGREEMENT = 0.95      # the floor of INT8 made here (as `quantize`): logits move by design
FP32_MIN_AGREEMENT = 0.999
# FP16 made here (tensorrt precision fp16): float16 keeps ~3 significant digits per operation, so the
# bound is relative to the logits' scale; argmax may flip only on near-ties
FP16_MAX_ABS_DIFF, FP16_RTOL, FP16_MIN_AGREEMENT = 2e-2, 2e-2, 0.99


class ParityConfig(Strict):
    samples: PositiveInt = Field(256, description="real validation samples compared (all if fewer)")
    max_abs_diff: float | None = Field(None, gt=0, description="absolute part of the bound on |Δlogit|; "
                                       "default: the task's (1e-4) for FP32, none for INT8 made here")
    rtol: float | None = Field(None, ge=0, description="relative part: |Δlogit| <= max_abs_diff + rtol x the "
                               "sample's max |logit|; default: the task's (1e-4)")
    min_agreement: float | None = Field(None, ge=0, le=1, description="argmax agreement floor; default 0.999, "
                                        "0.95 for INT8 made here (executorch precision int8)")
    batch_size: PositiveInt = Field(32, description="samples per batch, padded to the batch's longest")
    single_runs: int = Field(8, ge=0, description="extra batch-1 runs at natural length (dynamic axes)")


class ExportConfig(StageConfig):
    type: Literal["export"]
    format: Literal["onnx", "executorch", "ort-mobile", "tensorrt"] = Field(
        "onnx", description="onnx (from a torch model), executorch (.pte from a torch model), ort-mobile "
                            "(.ort from an ONNX artifact, FP32 or INT8), tensorrt (an engine for this machine's "
                            "NVIDIA GPU from an ONNX artifact)")
    precision: Literal["fp32", "fp16", "int8"] = Field(
        "fp32", description="executorch: int8 quantizes with the PT2E flow and XNNPACKQuantizer, calibrated on "
                            "`calibration`; tensorrt: fp32, fp16 (the FP32 ONNX converted to FP16) or int8 (from "
                            "a symmetric QDQ model: quantize static with activations symmetric, or qat); "
                            "ort-mobile keeps its input's precision")
    activations: Literal["static", "dynamic"] = Field(
        "static", description="executorch int8: static activation ranges from `calibration`, or dynamic (measured "
                              "per call, no calibration; more accurate, slower)")
    calibration: str | None = Field(None, description="calibration manifest (executorch int8, static activations)")
    target_platform: Literal["arm", "amd64"] = Field(
        "arm", description="ort-mobile: the CPU the .ort is for; arm leaves out x86-only layout rewrites")
    max_batch: PositiveInt = Field(64, description="tensorrt: the largest batch the engine's profile takes "
                                   "(the benchmark's accuracy pass runs batches of 64)")
    opt_batch: PositiveInt = Field(1, description="tensorrt: the batch TensorRT tunes kernels for (1: latency)")
    opset: int = Field(18, ge=14, le=23)
    optimize: bool = Field(
        False, description="ONNX Runtime transformer fusions (Attention, SkipLayerNorm, ...; verified by the "
                           "gate). Off by default: at batch 1 on CPU they measured no faster than the fusions "
                           "ONNX Runtime applies at load time, and static INT8 needs the unfused graph")
    opt_level: Literal[0, 1, 2, 99] = Field(
        1, description="ONNX Runtime graph optimizations applied with the fusions: 0/1 keep the file "
                       "portable across runtimes and devices; 2/99 bake in CPU-specific rewrites")
    parity: ParityConfig = ParityConfig()

    accepts = ("torch", "onnx")      # per format: FORMATS (checked in `check`)

    def produces(self) -> str:
        return FORMATS[self.format][0]

    def files(self, recipe) -> dict[str, str]:
        return {"calibration": str(recipe.resolve_path(self.calibration))} if self.calibration else {}

    def key_config(self) -> dict:
        """An onnx export keys as it did before formats existed: the new keys only where they matter."""
        d = super().key_config()
        if self.format != "tensorrt":
            for k in ("max_batch", "opt_batch"):
                d.pop(k, None)
        if self.format == "onnx":
            for k in ("format", "precision", "calibration", "target_platform", "activations"):
                d.pop(k, None)
            if d["parity"]["min_agreement"] is None:
                d["parity"]["min_agreement"] = FP32_MIN_AGREEMENT
        else:
            for k in ("opset", "optimize", "opt_level") + (("target_platform",) if self.format != "ort-mobile"
                                                            else ()):
                d.pop(k, None)
            if self.precision != "int8" or self.format != "executorch":
                d.pop("activations", None)
        return d

    def key_context(self) -> dict:
        """A TensorRT engine is specific to the GPU and versions it was built with: they key it, so another
        GPU or TensorRT/CUDA version builds its own engine instead of reusing this one."""
        if self.format != "tensorrt":
            return {}
        from ..ops.gpu import engine_fingerprint

        return {"engine_device": engine_fingerprint()}

    def check(self, recipe, stages) -> list[tuple[str, str]]:
        from .graph import input_stage

        problems = []
        fmt = self.format
        if recipe.task != "text-classification" and self.optimize:
            problems.append(("optimize", "ONNX Runtime transformer fusions are for transformer encoders; "
                                         f"a {recipe.task} CNN exports without them (ONNX Runtime fuses "
                                         f"Conv+activation at load time)"))
        if fmt != "onnx":
            for key in ("optimize", "opt_level", "opset"):
                if getattr(self, key) != type(self).model_fields[key].default:
                    problems.append((key, f"`{key}` is an ONNX export setting; format {fmt} does not take it"))
        if fmt != "ort-mobile" and self.target_platform != "arm":
            problems.append(("target_platform", "only format ort-mobile takes `target_platform`"))
        if self.precision == "int8" and fmt not in ("executorch", "tensorrt"):
            problems.append(("precision", f"format {fmt} exports its input as it is (INT8 ONNX comes from a "
                                          f"quantize stage); precision int8 is for formats executorch and tensorrt"))
        if self.precision == "fp16" and fmt != "tensorrt":
            problems.append(("precision", "precision fp16 is for format tensorrt (the cuda-fp16 target runs other "
                                          "artifacts in FP16)"))
        if fmt != "tensorrt":
            for key in ("max_batch", "opt_batch"):
                if getattr(self, key) != type(self).model_fields[key].default:
                    problems.append((key, f"`{key}` sizes a TensorRT engine's profile; format {fmt} does not take it"))
        elif self.opt_batch > self.max_batch:
            problems.append(("opt_batch", f"opt_batch {self.opt_batch} is above max_batch {self.max_batch}"))
        static = fmt == "executorch" and self.precision == "int8" and self.activations == "static"
        if self.activations != "static" and not (fmt == "executorch" and self.precision == "int8"):
            problems.append(("activations", "`activations` is for an INT8 ExecuTorch export (format executorch, "
                                            "precision int8)"))
        if static and not self.calibration:
            problems.append(("calibration", "INT8 ExecuTorch export with static activations needs a calibration "
                                            "manifest (calibration/*.yaml; `edgeft calibration` writes one), or "
                                            "set `activations: dynamic`"))
        if self.calibration and not static:
            problems.append(("calibration", "only an INT8 ExecuTorch export with static activations (format "
                                            "executorch, precision int8) is calibrated"))
        if self.calibration:
            from ..calibration import manifest_problems

            problems += manifest_problems(recipe, self.calibration)
        takes = FORMATS[fmt][1]
        src = input_stage(stages, self)
        kind = src.produces() if src is not None else ("torch" if self.input is None or self.input == "@model"
                                                        else None)
        if kind is not None and kind not in takes:
            what = f"@{src.name} produces a {kind!r} artifact" if src is not None else "the recipe's model is torch"
            hint = {"ort-mobile": "; set `input:` to an export (format onnx) or quantize stage",
                    "executorch": "; ExecuTorch exports from a torch model: set `input:` to the model stage "
                                  "(prune/distill/finetune), not its ONNX or OpenVINO form"}.get(fmt, "")
            problems.append(("input", f"format {fmt} takes a {', '.join(takes)} model; {what}{hint}"))
        if fmt == "tensorrt":
            problems += self._tensorrt_problems(src)
        if fmt == "executorch":
            from ..ops.executorch_export import installed

            if installed() is None:
                problems.append(("format", "format executorch needs ExecuTorch: pip install 'edgeft[mobile]'"))
        return problems


    def _tensorrt_problems(self, src) -> list[tuple[str, str]]:
        """INT8 engines need a symmetric QDQ input; FP32/FP16 engines an FP32 one; and TensorRT plus a GPU here."""
        from ..ops.gpu import tensorrt_unavailable_reason

        problems = []
        kind = getattr(src, "type", None)
        int8_in = kind == "qat" or (kind == "quantize" and src.produces() == "onnx")
        if self.precision == "int8":
            if not int8_in:
                what = f"@{src.name} is an FP32 {kind or 'model'}" if src is not None else "the input is FP32"
                problems.append(("input", f"an INT8 TensorRT engine is built from an explicitly quantized (QDQ) ONNX "
                                          f"model; {what}: set `input:` to a quantize stage (method static, "
                                          f"activations symmetric) or a qat stage (activations symmetric)"))
            elif kind == "quantize" and src.method != "static":
                problems.append(("input", f"@{src.name} is {src.method} INT8 (no QDQ for TensorRT to read: "
                                          f"MatMulInteger/DynamicQuantizeLinear); use method static with "
                                          f"activations symmetric"))
            elif src.activations != "symmetric":
                problems.append(("input", f"@{src.name} has asymmetric activations; TensorRT reads only "
                                          f"symmetric INT8 Q/DQ (zero point 0): set `activations: symmetric` on it"))
        elif int8_in:
            problems.append(("precision", f"@{src.name} is INT8 already; build it with precision int8 (its QDQ is "
                                          f"read as explicit quantization), or give an FP32 export for "
                                          f"{self.precision}"))
        if reason := tensorrt_unavailable_reason():
            problems.append(("format", f"format tensorrt builds on this machine's NVIDIA GPU: {reason}"))
        return problems


def run(cfg: ExportConfig, inputs: dict, ctx):
    return {"onnx": _onnx, "executorch": _executorch, "ort-mobile": _ort_mobile,
            "tensorrt": _tensorrt}[cfg.format](cfg, inputs, ctx)


@dataclass
class Source:
    """What every export compares against: the source's parity feeds and its logits on them."""
    model_dir: object
    torch_source: str
    processor: object
    names: list
    encode: object
    val: object
    n: int
    feeds: list
    n_batched: int
    reference: list
    model: object = None          # the torch model (torch sources)


def _parity_feeds(cfg: ExportConfig, ctx, encode):
    from ..ops.parity import parity_feeds

    val = ctx.splits().validation
    n = min(cfg.parity.samples, len(val))
    feeds, n_batched = parity_feeds(val.items[:n], encode, cfg.parity.batch_size, cfg.parity.single_runs)
    return val, n, feeds, n_batched


def load_torch_source(cfg: ExportConfig, inputs: dict, ctx) -> Source:
    """The torch model to export (the recipe's, with a new head for our labels, when it is the first
    stage) and its logits on the parity feeds."""
    import torch

    task, src = ctx.task, inputs.get("input")
    if src is None:                      # first stage: the recipe's model, with a head for our labels
        from ..models import resolve_source
        model_dir, source = resolve_source(ctx.recipe.model.source), "model:" + ctx.recipe.model.source
        torch.manual_seed(ctx.recipe.seed)   # a new head is initialized: same recipe, same export
        model = task.load_model(model_dir, ctx.splits().label_names, ctx.recipe.data)
    else:
        model_dir, source = src.path, src.key
        model = task.load_model(model_dir)
    model = model.float().eval()
    processor = task.load_processor(model_dir, ctx.recipe.data)
    max_len = ctx.recipe.data.max_length

    def encode(texts):
        return task.encode(processor, texts, max_len)

    val, n, feeds, n_batched = _parity_feeds(cfg, ctx, encode)
    reference = [task.torch_forward(model, f) for f in feeds]
    return Source(model_dir, source, processor, task.input_names(processor), encode, val, n, feeds, n_batched,
                  reference, model)


def parity_limits(cfg: ExportConfig, task, int8: str | None = None):
    """The gate's limits; `parity.*` keys override each default. FP32: the task's allclose bound and
    the 0.999 floor. `int8="made"` (quantized by this export, or INT8 run on other kernels): the INT8
    floor, no |Δ| bound; `int8="kept"` (an INT8 source converted as it is, same kernels): the FP32
    floor, no |Δ| bound; `int8="fp16"` (FP16 made here): FP16's relative bound and floor."""
    from ..ops.parity import ParityLimits

    p = cfg.parity
    floor = {"made": INT8_MIN_AGREEMENT, "fp16": FP16_MIN_AGREEMENT}.get(int8 or "", FP32_MIN_AGREEMENT)
    floor = floor if p.min_agreement is None else p.min_agreement
    if int8 == "fp16":
        return ParityLimits(max_abs_diff=p.max_abs_diff or FP16_MAX_ABS_DIFF,
                            rtol=FP16_RTOL if p.rtol is None else p.rtol, min_agreement=floor)
    if int8:
        return ParityLimits(max_abs_diff=p.max_abs_diff, min_agreement=floor)
    return ParityLimits(max_abs_diff=p.max_abs_diff or task.FP32_TOLERANCE,
                        rtol=task.FP32_RTOL if p.rtol is None else p.rtol, min_agreement=floor)


def _onnx(cfg: ExportConfig, inputs: dict, ctx):
    import shutil

    import numpy as np
    import torch

    from ..ops import onnx_export as ox
    task = ctx.task
    s = load_torch_source(cfg, inputs, ctx)
    model, torch_source_key, processor, names = s.model, s.torch_source, s.processor, s.names
    encode, val, n, feeds, n_batched, reference = s.encode, s.val, s.n, s.feeds, s.n_batched, s.reference
    limits = parity_limits(cfg, task)

    work = ctx.out_dir / ".work"
    plain = work / "model.onnx"
    log.info("export: tracing %s to ONNX (opset %d, inputs %s)", type(model).__name__, cfg.opset, ", ".join(names))
    ox.export_onnx(model, encode(val.items[:2]), plain, names, task.OUTPUT_NAMES, cfg.opset, task.INPUT_AXES)

    def gate(path, what):
        sess = ox.session(path)
        pick = ox.output_index(sess, task.OUTPUT_NAMES[0])
        return check(ctx, s, lambda f: ox.run_session(sess, f)[pick], limits, what, ox.io_names(sess)[1])

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
        "precision": "fp32", "torch_source": torch_source_key, "opset": cfg.opset, "inputs": names,
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


def check(ctx, s: Source, runner, limits, what: str, output_names=None):
    """The parity gate of `runner` (feed -> logits) against the source's logits, with its log line."""
    from ..ops.parity import check_parity

    def report(figures, _):
        rel = (f" (relative {figures['max_rel_diff']:.2e}, {100 * figures['tolerance_used']:.0f}% of the bound)"
               if "tolerance_used" in figures else "")
        log.info("export: parity of %s on %d validation samples + %d batch-1 runs: max |Δlogit| %.2e%s, "
                 "agreement %.4f", what, s.n, len(s.feeds) - s.n_batched, figures["max_abs_diff"], rel,
                 figures["agreement"])

    return check_parity(f"{ctx.stage_name}: {what}", s.reference, runner, limits, feeds=s.feeds,
                        output_names=output_names, expected_names=ctx.task.OUTPUT_NAMES if output_names else None,
                        report=report)


def _accuracies(ctx, s: Source, cand: list, name: str) -> dict:
    import numpy as np

    labels = s.val.labels[:s.n]
    return {"val_accuracy_source": ctx.task.metrics(np.concatenate(s.reference[:s.n_batched]), labels)["accuracy"],
            f"val_accuracy_{name}": ctx.task.metrics(np.concatenate(cand[:s.n_batched]), labels)["accuracy"]}


def _executorch(cfg: ExportConfig, inputs: dict, ctx):
    import time

    from ..ops import executorch_export as et
    from ..ops.onnx_export import file_size_mb
    task, s = ctx.task, load_torch_source(cfg, inputs, ctx)
    int8 = cfg.precision == "int8"
    calibration, facts = None, {}
    if int8 and cfg.activations == "static":
        from ..calibration import calibration_set

        facts, samples = calibration_set(cfg.calibration, ctx)
        calibration = (s.encode([x]) for x in samples)        # one sample per forward, at its own length
    log.info("export: %s to an ExecuTorch program (XNNPACK, %s%s)", type(s.model).__name__, cfg.precision.upper(),
             f", calibrated on {facts['num_samples']} samples" if facts else
             ", dynamic activations" if int8 else "")
    t0 = time.perf_counter()
    buffer, program = et.export_program(s.model, s.encode(s.val.items[:2]), s.names, task.OUTPUT_NAMES[0],
                                        task.INPUT_AXES, ctx.recipe.data.max_length, calibration, int8=int8,
                                        activations=cfg.activations, modules=task.EXECUTORCH_INT8_MODULES)
    d = program["delegation"]
    log.info("export: lowered in %.0f s: %d of %d operator nodes delegated to XNNPACK (%d blocks); left to "
             "portable kernels: %s", time.perf_counter() - t0, d["delegated_nodes"],
             d["delegated_nodes"] + d["non_delegated_nodes"], d["delegate_blocks"],
             ", ".join(f"{k} x{v}" for k, v in d["non_delegated_ops"].items()) or "none")
    work = ctx.out_dir / ".work"
    work.mkdir(parents=True, exist_ok=True)
    tmp = work / "model.pte"
    tmp.write_bytes(buffer)
    run = et.load_method(tmp)
    limits = parity_limits(cfg, task, "made" if int8 else None)
    figures, cand = check(ctx, s, lambda f: et.run_program(run, f, s.names), limits,
                          f"ExecuTorch program ({cfg.precision.upper()})")
    final = ctx.out_dir / "model.pte"
    tmp.replace(final)
    work.rmdir()
    s.processor.save_pretrained(ctx.out_dir)
    s.model.config.save_pretrained(ctx.out_dir)
    meta = {"precision": cfg.precision, "format": "executorch", "torch_source": s.torch_source, "inputs": s.names,
            "exporter": f"torch.export + ExecuTorch {program['executorch']} (to_edge_transform_and_lower, "
                        f"XnnpackPartitioner)", **{k: v for k, v in program.items() if k != "executorch"},
            "parity": figures, "parity_limits": limits.meta(), "parity_batch1_runs": len(s.feeds) - s.n_batched,
            **_accuracies(ctx, s, cand, "executorch"), "size_mb": round(file_size_mb(final), 2)}
    if facts:
        meta["calibration"] = facts
    return ctx.artifact(kind="executorch", file="model.pte", meta=meta)


def load_onnx_source(cfg: ExportConfig, inputs: dict, ctx) -> Source:
    """An ONNX artifact to convert (ort-mobile, tensorrt) and its logits on the parity feeds in ONNX
    Runtime on the CPU (the kernels every ONNX row of the report is first measured on)."""
    from ..ops import onnx_export as ox

    task, src = ctx.task, inputs["input"]
    processor = task.load_processor(src.path, ctx.recipe.data)
    max_len = ctx.recipe.data.max_length

    def encode(texts):
        return task.encode(processor, texts, max_len)

    val, n, feeds, n_batched = _parity_feeds(cfg, ctx, encode)
    ref_sess = ox.session(src.main_path)
    pick = ox.output_index(ref_sess, task.OUTPUT_NAMES[0])
    reference = [ox.run_session(ref_sess, f)[pick] for f in feeds]
    return Source(src.path, src.meta.get("torch_source", src.key), processor, ox.io_names(ref_sess)[0], encode, val,
                  n, feeds, n_batched, reference)


def engine_profile(cfg: ExportConfig, ctx, s: Source) -> dict:
    """The engine's optimization profile from the recipe's data: every split's example lengths bound the
    sequence axis (the benchmark runs the test split at its own lengths), the training split's median is
    the optimum; batch 1 .. max_batch, optimal at opt_batch."""
    from ..ops.tensorrt_engine import profile_shapes

    task, splits, max_len = ctx.task, ctx.splits(), ctx.recipe.data.max_length
    per_split = {name: task.example_lengths(s.processor, getattr(splits, name).items, max_len)
                 for name in ("train", "validation", "test")}
    example = {k: v for k, v in s.encode(s.val.items[:1]).items() if k in s.names}
    import numpy as np

    return profile_shapes(example, task.INPUT_AXES, np.concatenate(list(per_split.values())), per_split["train"],
                          max_len, cfg.max_batch, cfg.opt_batch)


def _tensorrt(cfg: ExportConfig, inputs: dict, ctx):
    import shutil
    import time

    from ..errors import StageError
    from ..ops import onnx_export as ox
    from ..ops import tensorrt_engine as te
    from ..ops.gpu import describe, engine_fingerprint

    task, src = ctx.task, inputs["input"]
    src_precision = src.meta.get("precision", "fp32")
    if cfg.precision == "int8":
        problems = te.qdq_problems(src.main_path)
        if problems:
            raise StageError(f"{ctx.stage_name}: TensorRT cannot read @{src.stage} as explicit quantization: "
                             f"{problems[0]}; quantize with method static and `activations: symmetric`")
    elif src_precision != "fp32":
        raise StageError(f"{ctx.stage_name}: @{src.stage} is {src_precision}; a {cfg.precision} engine is built "
                         f"from an FP32 ONNX model (INT8 QDQ models: precision int8)")
    s = load_onnx_source(cfg, inputs, ctx)
    profile = engine_profile(cfg, ctx, s)
    device = engine_fingerprint()
    work = ctx.out_dir / ".work"
    work.mkdir(parents=True, exist_ok=True)
    graph = te.to_fp16_onnx(src.main_path, work / "model-fp16.onnx") if cfg.precision == "fp16" else src.main_path
    log.info("export: building a TensorRT %s engine for %s, profile %s", cfg.precision.upper(), describe(device),
             "; ".join(f"{k} {v[0]}..{v[2]} (opt {v[1]})" for k, v in profile.items()))
    t0 = time.perf_counter()
    try:
        plan, build = te.build_engine(graph, profile, cfg.precision)
    except RuntimeError as e:
        shutil.rmtree(work, ignore_errors=True)
        raise StageError(f"{ctx.stage_name}: {e}") from None
    build["build_s"] = round(time.perf_counter() - t0, 1)
    tmp = work / "model.plan"
    tmp.write_bytes(plan)
    runner = te.EngineRunner(tmp.read_bytes(), profile)         # the bytes written, as the target reads them
    limits = parity_limits(cfg, task, {"fp32": None, "fp16": "fp16", "int8": "made"}[cfg.precision])
    try:
        figures, cand = check(ctx, s, runner.run, limits, f"TensorRT engine ({cfg.precision.upper()})")
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    final = ctx.out_dir / "model.plan"
    tmp.replace(final)
    shutil.rmtree(work, ignore_errors=True)
    ox.copy_side_files(src.path, ctx.out_dir)
    log.info("export: TensorRT engine %.1f MB built in %.0f s", ox.file_size_mb(final), build["build_s"])
    meta = {"precision": cfg.precision, "format": "tensorrt", "torch_source": s.torch_source, "onnx_source": src.key,
            "inputs": s.names, "engine_device": device, "profile": profile, "build": build,
            "exporter": f"TensorRT {build['tensorrt']} ONNX parser + builder (strongly typed: "
                        f"{build['strongly_typed']})",
            "parity": figures, "parity_limits": limits.meta(), "parity_batch1_runs": len(s.feeds) - s.n_batched,
            **_accuracies(ctx, s, cand, "tensorrt"), "size_mb": round(ox.file_size_mb(final), 2)}
    return ctx.artifact(kind="tensorrt", file="model.plan", meta=meta)


def _ort_mobile(cfg: ExportConfig, inputs: dict, ctx):
    import shutil

    from ..ops import onnx_export as ox
    from ..ops import ort_mobile

    task, src = ctx.task, inputs["input"]
    s = load_onnx_source(cfg, inputs, ctx)
    feeds, n_batched = s.feeds, s.n_batched
    precision = src.meta.get("precision", "fp32")
    work = ctx.out_dir / ".work"
    tmp = ort_mobile.convert(src.main_path, work / "model.ort", cfg.target_platform)
    sess = ox.session(tmp)
    cand_pick = ox.output_index(sess, task.OUTPUT_NAMES[0])
    limits = parity_limits(cfg, task, None if precision == "fp32" else "kept")   # INT8 in, INT8 out
    figures, cand = check(ctx, s, lambda f: ox.run_session(sess, f)[cand_pick], limits,
                          f"ORT format model ({precision.upper()}, for {cfg.target_platform})", ox.io_names(sess)[1])
    config = ort_mobile.write_required_operators(tmp, work / ort_mobile.CONFIG)
    ops = ort_mobile.read_required_operators(config)
    for f in (tmp, config):
        f.replace(ctx.out_dir / f.name)
    shutil.rmtree(work, ignore_errors=True)
    ox.copy_side_files(src.path, ctx.out_dir)
    final = ctx.out_dir / "model.ort"
    n_ops = sum(len(v) for v in ops.values())
    log.info("export: ORT format model %.1f MB; a reduced build needs %d operators (%s)", ox.file_size_mb(final),
             n_ops, "; ".join(f"{k}: {', '.join(v)}" for k, v in ops.items()))
    meta = {"precision": precision, "format": "ort-mobile", "torch_source": s.torch_source,
            "onnx_source": src.key, "target_platform": cfg.target_platform, "inputs": s.names,
            "exporter": "ONNX Runtime ORT format conversion (optimization style Fixed, level all)",
            "required_operators": ops, "required_operator_count": n_ops, "required_operators_config": ort_mobile.CONFIG,
            "parity": figures, "parity_limits": limits.meta(), "parity_batch1_runs": len(feeds) - n_batched,
            **_accuracies(ctx, s, cand, "ort"), "size_mb": round(ox.file_size_mb(final), 2)}
    return ctx.artifact(kind="ort", file="model.ort", meta=meta)
