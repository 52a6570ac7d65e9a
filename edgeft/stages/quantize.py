"""quantize: INT8 with ONNX Runtime — dynamic, or static QDQ with a calibration set.

Every quantized model gets a parity report against its FP32 source on real validation samples
(argmax agreement, max |Δlogit|); agreement below `parity.min_agreement` fails the stage.

dynamic: int8 weights (per channel by default), uint8 activations quantized per call. Works on the
ORT-fused graph (Attention -> QAttention, EmbedLayerNormalization -> QEmbedLayerNormalization), which
is the fastest INT8 form for CPUs and the recommended path. static: QDQ with activation ranges from
a pinned calibration manifest, on weight MatMul/Gemm and embedding Gathers (attention-score MatMuls
and normalizations stay FP32, they cost accuracy). It needs an unfused export (`optimize: false`):
the fused Attention/EmbedLayerNormalization ops have no QDQ form, which `check` reports at load time.
On MiniLM / Rotten Tomatoes, static INT8 was both slower and less faithful than dynamic INT8.
"""

from __future__ import annotations

import logging
from typing import Literal

from pydantic import Field, PositiveInt

from .base import StageConfig
from ..recipe import Strict

log = logging.getLogger("edgeft")


class QuantParityConfig(Strict):
    samples: PositiveInt = Field(256, description="real validation samples compared (all if fewer)")
    min_agreement: float = Field(0.95, ge=0, le=1, description="argmax agreement floor vs the FP32 source")
    max_abs_diff: float | None = Field(None, gt=0, description="optional ceiling on max |Δlogit|")


class QuantizeConfig(StageConfig):
    type: Literal["quantize"]
    method: Literal["dynamic", "static"]
    calibration: str | None = Field(None, description="calibration manifest (static only)")
    calibrate_method: Literal["minmax", "entropy", "percentile"] = "minmax"
    per_channel: bool = Field(True, description="per-channel weight scales")
    reduce_range: bool = Field(False, description="7-bit weights: for x86 CPUs without VNNI (AVX2 only), "
                                                  "where u8 x s8 products can saturate")
    parity: QuantParityConfig = QuantParityConfig()

    accepts = ("onnx",)

    def produces(self) -> str:
        return "onnx"

    def files(self, recipe) -> dict[str, str]:
        return {"calibration": str(recipe.resolve_path(self.calibration))} if self.calibration else {}

    def check(self, recipe, stages) -> list[tuple[str, str]]:
        from ..calibration import data_source_id, read_manifest

        problems = []
        if self.method == "static" and not self.calibration:
            problems.append(("calibration", "method static needs a calibration manifest (calibration/*.yaml)"))
        if self.method == "dynamic" and self.calibration:
            problems.append(("calibration", "method dynamic takes no calibration set (did you mean static?)"))
        if self.method == "dynamic" and self.calibrate_method != "minmax":
            problems.append(("calibrate_method", "only used by method static"))
        if self.calibration:
            manifest, errs = read_manifest(recipe.resolve_path(self.calibration))
            problems += [(f"calibration{'.' + p if p else ''}", r) for p, r in errs]
            if manifest and manifest.source != data_source_id(recipe.data):
                problems.append(("calibration", f"manifest was drawn from {manifest.source!r}, "
                                                f"but the recipe's data is {data_source_id(recipe.data)!r}"))
        # what the input stage makes is known now: catch an already-INT8 or a fused input before any work
        from . import input_stage

        src = input_stage(stages, self)
        ref = src.name if src is not None else None
        if src is not None and self.method == "static" and getattr(src, "type", None) == "export" \
                and getattr(src, "optimize", False):
            problems.append(("input", f"static INT8 needs an unfused FP32 graph, but @{ref} has `optimize: true` "
                                      f"(fused Attention/EmbedLayerNormalization have no QDQ form); export "
                                      f"with `optimize: false` for static, or use method: dynamic"))
        if src is not None and getattr(src, "type", None) == "quantize":
            problems.append(("input", f"@{ref} is already INT8; quantize an FP32 export "
                                      f"(set `input:` to the export stage)"))
        return problems


def run(cfg: QuantizeConfig, inputs: dict, ctx):
    import shutil
    import time

    import numpy as np

    from ..artifact import MANIFEST
    from ..errors import StageError
    from ..ops import onnx_export as ox
    from ..ops import quantization as q
    from ..ops.parity import compare_runs, output_failures, parity_feeds, parity_gate

    src, task = inputs["input"], ctx.task
    if src.meta.get("precision", "fp32") != "fp32":
        raise StageError(f"{ctx.stage_name}: input @{src.stage} is {src.meta['precision']}, not FP32; "
                         f"quantize an FP32 export")
    processor = task.load_processor(src.path)
    max_len = ctx.recipe.data.max_length
    in_names, _ = ox.io_names(src.main_path)

    def encode(texts):
        return task.encode(processor, texts, max_len)

    work, final = ctx.out_dir / ".work", ctx.out_dir / "model.onnx"
    meta: dict = {"precision": "int8", "torch_source": src.meta.get("torch_source", src.key),
                  "opset": src.meta.get("opset"), "method": cfg.method, "per_channel": cfg.per_channel,
                  "reduce_range": cfg.reduce_range,
                  "weights": "int8 symmetric", "activations": "uint8 asymmetric"}
    t0 = time.perf_counter()
    if cfg.method == "dynamic":
        log.info("quantize: dynamic INT8 of %s", src.main_path)
        q.quantize_dynamic_int8(src.main_path, final, per_channel=cfg.per_channel, reduce_range=cfg.reduce_range)
        meta["calibrate_method"] = None
    else:
        fused = q.fused_ops(src.main_path)
        if fused:
            raise StageError(f"{ctx.stage_name}: static quantization needs an unfused FP32 graph, but @{src.stage} "
                             f"has fused ops ({', '.join(f'{k} x{v}' for k, v in fused.items())}) that QDQ cannot "
                             f"quantize; export with `optimize: false` for static INT8, or use method: dynamic")
        meta["calibrate_method"] = cfg.calibrate_method
        meta["calibration"] = _calibration(cfg, ctx, encode, in_names, src, work, final, q)
    log.info("quantize: done in %.1f s", time.perf_counter() - t0)
    meta["quantized_ops"] = q.quantization_summary(final)

    # parity against the FP32 source on real validation samples
    val = ctx.splits().validation
    n = min(cfg.parity.samples, len(val))
    feeds, n_batched = parity_feeds(val.items[:n], encode)
    sessions = [ox.session(p) for p in (src.main_path, final)]
    pick = [_logits_index(s, task) for s in sessions]
    ref = [ox.run_session(sessions[0], f)[pick[0]] for f in feeds]
    cand = [ox.run_session(sessions[1], f)[pick[1]] for f in feeds]
    figures, shapes = compare_runs(ref, cand)
    labels = val.labels[:n]
    meta["val_accuracy_fp32"] = task.metrics(np.concatenate(ref[:n_batched]), labels)["accuracy"]
    meta["val_accuracy_int8"] = task.metrics(np.concatenate(cand[:n_batched]), labels)["accuracy"]
    meta["parity"] = figures
    meta["parity_limits"] = {"max_abs_diff": cfg.parity.max_abs_diff, "min_agreement": cfg.parity.min_agreement}
    log.info("quantize: vs FP32 on %d validation samples: agreement %.4f, max |Δlogit| %.3g, accuracy %.4f -> %.4f",
             n, figures["agreement"], figures["max_abs_diff"], meta["val_accuracy_fp32"], meta["val_accuracy_int8"])
    parity_gate(f"{ctx.stage_name}: INT8 ({cfg.method})", figures, cfg.parity.max_abs_diff, cfg.parity.min_agreement,
                output_failures(ox.io_names(sessions[1])[1], ox.io_names(sessions[0])[1], shapes))
    del sessions

    shutil.rmtree(work, ignore_errors=True)
    model_files = {p.name for p in ox.onnx_files(src.path)}
    for p in src.path.iterdir():        # tokenizer + config: the artifact stays self-contained
        if p.is_file() and p.name not in model_files and p.name != MANIFEST and not p.name.endswith(".log"):
            shutil.copy2(p, ctx.out_dir / p.name)
    meta["size_mb"] = round(ox.file_size_mb(final), 2)
    meta["size_ratio"] = round(ox.file_size_mb(final) / ox.file_size_mb(src.main_path), 3)
    return ctx.artifact(kind="onnx", file="model.onnx", meta=meta)


def _calibration(cfg, ctx, encode, in_names, src, work, final, q) -> dict:
    from ..calibration import calibration_samples, read_manifest, samples_hash
    from ..errors import DataError
    from ..store import hash_file

    path = ctx.recipe.resolve_path(cfg.calibration)
    manifest, problems = read_manifest(path)
    if manifest is None:
        raise DataError("; ".join(f"{p}: {r}" if p else r for p, r in problems))
    samples = calibration_samples(manifest, ctx.splits(), path)     # DataError if the hash no longer matches
    log.info("quantize: static INT8 (QDQ, %s), calibrating on %d %s samples from %s",
             cfg.calibrate_method, len(samples), manifest.split, path)
    pre = q.preprocess(src.main_path, work / "preprocessed.onnx")
    reader = q.calibration_reader(samples, encode, in_names, batch_size=1)   # natural lengths, no padding
    cache = q.static_calibration(pre, reader, work / "calibration.json", cfg.calibrate_method)
    q.quantize_static_int8(pre, final, cache, cfg.calibrate_method, per_channel=cfg.per_channel,
                           reduce_range=cfg.reduce_range)
    return {"manifest": str(path), "file_sha256": hash_file(path), "sha256": manifest.sha256 or samples_hash(samples),
            "split": manifest.split, "seed": manifest.seed, "num_samples": len(samples)}


def _logits_index(session, task) -> int:
    outs = [o.name for o in session.get_outputs()]
    return outs.index(task.OUTPUT_NAMES[0]) if task.OUTPUT_NAMES[0] in outs else 0
