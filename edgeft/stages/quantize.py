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

static with `max_drop` (points) is accuracy-aware: if the all-INT8 model loses more validation
accuracy than that, each weight MatMul/Gemm/Conv's sensitivity is measured (the output error against
FP32 removed by keeping it alone in float, on `fallback_samples` validation samples), then the most
sensitive ones are kept in float one at a time until the drop on the whole validation split is within
`max_drop`. meta["fallback"] records every step: node, validation accuracy, batch-1 latency and its
cost. One calibration serves every trial quantization.
"""

from __future__ import annotations

import logging
from typing import Literal

from pydantic import Field, PositiveInt

from ..schema import Strict, differs_from_default
from .base import IsaName, StageConfig, isa_warnings

log = logging.getLogger("edgeft")


class QuantParityConfig(Strict):
    samples: PositiveInt = Field(256, description="real validation samples compared (all if fewer)")
    min_agreement: float = Field(0.95, ge=0, le=1, description="argmax agreement floor vs the FP32 source")
    max_abs_diff: float | None = Field(None, gt=0, description="optional ceiling on max |Δlogit|")


class QuantizeConfig(StageConfig):
    type: Literal["quantize"]
    method: Literal["dynamic", "static", "nncf_ptq", "nncf_accuracy_control"]
    calibration: str | None = Field(None, description="calibration manifest (static, nncf_ptq)")
    calibrate_method: Literal["minmax", "entropy", "percentile"] = "minmax"
    per_channel: bool = Field(True, description="per-channel weight scales")
    max_drop: float | None = Field(None, gt=0, le=100, description="accuracy-aware methods (static, "
                                   "nncf_accuracy_control): the largest validation accuracy drop allowed, in points")
    fallback_samples: PositiveInt = Field(256, description="static with max_drop: validation samples on which "
                                          "each weight op's sensitivity is measured")
    reduce_range: bool = Field(False, description="7-bit int8 weights (ONNX Runtime methods) instead of the "
                                                  "format `isa` picks")
    isa: IsaName = Field("auto", description="the CPU class the INT8 model is for (edgeft/isa.py): auto = "
                                             "this machine; avx2/avx512 (no VNNI) get a format that cannot saturate")
    parity: QuantParityConfig = QuantParityConfig()

    accepts = ("onnx",)

    def produces(self) -> str:
        return "openvino" if self.method.startswith("nncf") else "onnx"

    def target_limits(self):
        if self.method == "dynamic":
            return ("cpu",), "dynamic INT8 uses ONNX Runtime-only operators (MatMulInteger, DynamicQuantizeLinear)"
        return None

    def files(self, recipe) -> dict[str, str]:
        return {"calibration": str(recipe.resolve_path(self.calibration))} if self.calibration else {}

    def key_config(self) -> dict:
        from ..isa import resolve

        # with isa: auto the format depends on this machine's CPU class: part of the key
        return {**super().key_config(), "int8_isa": resolve(self.isa)[0]}

    def warnings(self, recipe, stages) -> list[tuple[str, str]]:
        from ..isa import int8_format

        out = isa_warnings(self.isa)
        fmt = int8_format(self.isa)
        if fmt.saturating and not self.method.startswith("nncf"):
            out.append(("isa", f"INT8 for an {fmt.isa} CPU without VNNI: ONNX Runtime's INT8 kernels there are about as "
                               f"fast as FP32 (MiniLM on an AVX2 EPYC: 26.51 vs 26.53 ms p50), so this step may buy "
                               f"no speed; the report marks INT8 rows that are not >= 1.15x their FP32 row"))
        return out

    def check(self, recipe, stages) -> list[tuple[str, str]]:
        from ..calibration import data_source_id, read_manifest

        problems = []
        if self.method == "nncf_accuracy_control" and self.max_drop is None:
            problems.append(("max_drop", "nncf_accuracy_control needs `max_drop` (validation accuracy points)"))
        if self.max_drop is not None and self.method not in ("static", "nncf_accuracy_control"):
            problems.append(("max_drop", f"method {self.method} does not control accuracy; "
                                         f"use static (ONNX Runtime) or nncf_accuracy_control (OpenVINO)"))
        # compared with the default, not model_fields_set: a dumped and re-loaded recipe lists every key
        if differs_from_default(self, "fallback_samples") and (self.method != "static" or self.max_drop is None):
            problems.append(("fallback_samples", "only used by method static with max_drop"))
        if self.method != "dynamic" and not self.calibration:
            problems.append(("calibration", f"method {self.method} needs a calibration manifest (calibration/*.yaml)"))
        if self.method.startswith("nncf"):
            import importlib.util

            if importlib.util.find_spec("nncf") is None or importlib.util.find_spec("openvino") is None:
                problems.append(("method", f"{self.method} needs NNCF and OpenVINO: pip install 'edgeft[openvino]'"))
            if self.calibrate_method != "minmax" or not self.per_channel or self.reduce_range:
                problems.append(("method", f"calibrate_method, per_channel and reduce_range are ONNX Runtime "
                                           f"settings; {self.method} uses NNCF's own (leave them at their defaults)"))
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
        from .graph import input_stage

        src = input_stage(stages, self)
        ref = src.name if src is not None else None
        if src is not None and self.method != "dynamic" and getattr(src, "type", None) == "export" \
                and getattr(src, "optimize", False):
            problems.append(("input", f"{self.method} INT8 needs an unfused FP32 graph, but @{ref} has `optimize: true` "
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
    from ..calibration import calibration_set
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

    from ..isa import int8_format

    fmt = int8_format(cfg.isa)
    uint8_weights = fmt.ort_weights == "uint8" and not cfg.reduce_range and not cfg.method.startswith("nncf")
    nncf = cfg.method.startswith("nncf")
    work, final = ctx.out_dir / ".work", ctx.out_dir / ("model.xml" if nncf else "model.onnx")
    meta: dict = {"precision": "int8", "torch_source": src.meta.get("torch_source", src.key),
                  "opset": src.meta.get("opset"), "method": cfg.method, "per_channel": cfg.per_channel,
                  "reduce_range": cfg.reduce_range, "int8_format": fmt.meta(),
                  "weights": (("uint8 (ONNX Runtime QUInt8)" if cfg.method == "dynamic" else
                               "int8 symmetric stored as uint8 (zero point 128)") if uint8_weights else
                              "int8 symmetric" + (" 7-bit" if cfg.reduce_range else "")),
                  "activations": "uint8 asymmetric"}
    log.info("quantize: INT8 format for ISA class %s (%s): %s", fmt.isa,
             "this machine" if fmt.source == "host" else "the recipe's isa", meta["weights"] if not nncf else
             f"NNCF overflow fix {fmt.nncf_overflow_fix}")
    t0 = time.perf_counter()
    if cfg.method == "dynamic":
        log.info("quantize: dynamic INT8 of %s", src.main_path)
        q.quantize_dynamic_int8(src.main_path, final, per_channel=cfg.per_channel, reduce_range=cfg.reduce_range,
                                uint8_weights=uint8_weights)
        meta["calibrate_method"] = None
    elif nncf:
        from ..ops.nncf_quant import nncf_ptq

        cal, samples = calibration_set(cfg.calibration, ctx)
        log.info("quantize: NNCF PTQ (OpenVINO) calibrating on %d %s samples", len(samples), cal["split"])
        feeds = [{k: v for k, v in encode([t]).items() if k in in_names} for t in samples]
        meta.update(calibrate_method="nncf", calibration=cal,
                    weights="int8 symmetric per channel (NNCF)" + (", 7-bit (overflow fix)" if fmt.saturating else ""),
                    activations="int8/uint8 per tensor (NNCF default preset: asymmetric for transformers)")
        if cfg.max_drop is None:
            meta["nncf"] = nncf_ptq(src.main_path, final, feeds, transformer=task.TRANSFORMER,
                                    overflow_fix=fmt.nncf_overflow_fix)
        else:
            from ..ops.nncf_quant import nncf_accuracy_control

            val = ctx.splits().validation
            items = [({k: v for k, v in encode([t]).items() if k in in_names}, int(y))
                     for t, y in zip(val.items, val.labels)]
            log.info("quantize: NNCF accuracy control, max drop %.2f points on %d validation samples",
                     cfg.max_drop, len(items))
            meta["nncf"] = nncf_accuracy_control(src.main_path, final, feeds, items,
                                                 lambda lg, lb: task.metrics(lg, lb)["accuracy"], cfg.max_drop,
                                                 transformer=task.TRANSFORMER, overflow_fix=fmt.nncf_overflow_fix)
    else:
        fused = q.fused_ops(src.main_path)
        if fused:
            raise StageError(f"{ctx.stage_name}: static quantization needs an unfused FP32 graph, but @{src.stage} "
                             f"has fused ops ({', '.join(f'{k} x{v}' for k, v in fused.items())}) that QDQ cannot "
                             f"quantize; export with `optimize: false` for static INT8, or use method: dynamic")
        meta["calibrate_method"] = cfg.calibrate_method
        meta["calibration"], fallback = _static(cfg, ctx, encode, in_names, src, work, final, q, uint8_weights)
        if fallback is not None:
            meta["fallback"] = fallback
            meta["float_nodes"] = [k["node"] for k in fallback["kept_float"]]
    log.info("quantize: done in %.1f s", time.perf_counter() - t0)
    if not nncf:
        meta["quantized_ops"] = q.quantization_summary(final)
        meta["integer_weights"] = q.integer_weight_types(final)

    # parity against the FP32 source on real validation samples
    val = ctx.splits().validation
    # accuracy-aware methods are checked on the whole validation split NNCF optimised against
    n = len(val) if cfg.max_drop is not None else min(cfg.parity.samples, len(val))
    feeds, n_batched = parity_feeds(val.items[:n], encode)
    ref_sess = ox.session(src.main_path)
    ref = [ox.run_session(ref_sess, f)[ox.output_index(ref_sess, task.OUTPUT_NAMES[0])] for f in feeds]
    if nncf:
        from ..targets.openvino_cpu import OvSession, compile_model

        ov_sess = OvSession(compile_model(final, threads=2), 2)
        cand = [ov_sess.run(f) for f in feeds]
        cand_outputs = task.OUTPUT_NAMES
    else:
        q_sess = ox.session(final)
        cand = [ox.run_session(q_sess, f)[ox.output_index(q_sess, task.OUTPUT_NAMES[0])] for f in feeds]
        cand_outputs = ox.io_names(q_sess)[1]
    figures, shapes = compare_runs(ref, cand)
    labels = val.labels[:n]
    meta["val_accuracy_fp32"] = task.metrics(np.concatenate(ref[:n_batched]), labels)["accuracy"]
    meta["val_accuracy_int8"] = task.metrics(np.concatenate(cand[:n_batched]), labels)["accuracy"]
    meta["parity"] = figures
    meta["parity_limits"] = {"max_abs_diff": cfg.parity.max_abs_diff, "min_agreement": cfg.parity.min_agreement}
    log.info("quantize: vs FP32 on %d validation samples: agreement %.4f, max |Δlogit| %.3g, accuracy %.4f -> %.4f",
             n, figures["agreement"], figures["max_abs_diff"], meta["val_accuracy_fp32"], meta["val_accuracy_int8"])
    parity_gate(f"{ctx.stage_name}: INT8 ({cfg.method})", figures, cfg.parity.max_abs_diff, cfg.parity.min_agreement,
                output_failures(cand_outputs, ox.io_names(ref_sess)[1], shapes))
    if cfg.max_drop is not None:
        drop = 100 * (meta["val_accuracy_fp32"] - meta["val_accuracy_int8"])
        meta["val_drop_points"] = round(drop, 3)
        if drop > cfg.max_drop + 1e-9:
            raise StageError(f"{ctx.stage_name}: validation accuracy dropped {drop:.2f} points "
                             f"({meta['val_accuracy_fp32']:.4f} -> {meta['val_accuracy_int8']:.4f} on {n} samples), "
                             f"more than max_drop {cfg.max_drop:g}; nothing was stored")

    shutil.rmtree(work, ignore_errors=True)
    model_files = {p.name for p in ox.onnx_files(src.path)}
    for p in src.path.iterdir():        # tokenizer + config: the artifact stays self-contained
        if p.is_file() and p.name not in model_files and p.name != MANIFEST and not p.name.endswith(".log"):
            shutil.copy2(p, ctx.out_dir / p.name)
    size = ox.file_size_mb(final) + (ox.file_size_mb(final.with_suffix(".bin")) if nncf else 0.0)
    meta["size_mb"] = round(size, 2)
    meta["size_ratio"] = round(size / ox.file_size_mb(src.main_path), 3)
    return ctx.artifact(kind="openvino" if nncf else "onnx", file=final.name, meta=meta)


def _static(cfg, ctx, encode, in_names, src, work, final, q, uint8_weights: bool) -> tuple[dict, dict | None]:
    """Static QDQ INT8 into `final`; with max_drop, the most sensitive weight ops stay in float until
    the validation drop is within it. Returns (calibration facts, fallback record or None)."""
    from ..calibration import calibration_set
    from ..errors import StageError

    facts, samples = calibration_set(cfg.calibration, ctx)
    log.info("quantize: static INT8 (QDQ, %s), calibrating on %d %s samples from %s",
             cfg.calibrate_method, len(samples), facts["split"], facts["manifest"])
    pre = q.preprocess(src.main_path, work / "preprocessed.onnx")
    reader = q.calibration_reader(samples, encode, in_names, batch_size=1)   # natural lengths, no padding
    op_types = ctx.task.STATIC_OP_TYPES     # the task's: Conv for CNNs
    cache = q.static_calibration(pre, reader, work / "calibration.json", cfg.calibrate_method, op_types)
    always_float = q.activation_matmuls(pre)

    def quantize(kept: list[str], dst=work / "trial.onnx"):
        # every trial in the final format: on a CPU that saturates, int8 trials would mislead the search
        out = q.quantize_static_int8(pre, dst, cache, cfg.calibrate_method, per_channel=cfg.per_channel,
                                     reduce_range=cfg.reduce_range, nodes_to_exclude=always_float + kept,
                                     op_types=op_types)
        if uint8_weights:
            q.weights_to_uint8(out, out)
        return out

    if cfg.max_drop is None:
        quantize([], final)
        return facts, None
    kept, record = _fallback_search(cfg, ctx, encode, pre, quantize, q)
    if not record["met"]:
        last = record["kept_float"][-1]
        raise StageError(f"{ctx.stage_name}: even with all {len(kept)} weight ops in float the validation drop is "
                         f"{last['val_drop_points']:.2f} points (max_drop {cfg.max_drop:g}) and the agreement "
                         f"with FP32 {last.get('val_agreement', float('nan')):.4f} (parity.min_agreement "
                         f"{cfg.parity.min_agreement:g}); nothing was stored")
    log.info("quantize: %d of %d weight ops kept in float for max_drop %g and parity.min_agreement %g "
             "(all-INT8: drop %.2f points, agreement %.4f)", len(kept), record["candidates"], cfg.max_drop,
             cfg.parity.min_agreement, record["val_drop_points_all_int8"], record["val_agreement_all_int8"])
    quantize(kept, final)
    return facts, record


def _fallback_search(cfg, ctx, encode, fp32_path, quantize, q) -> tuple[list[str], dict]:
    """The measurements float_fallback needs, on the validation split: accuracy on all of it (in
    batches of 32, as the stage's final check), output error on the first `fallback_samples`, batch-1
    latency (2 threads) on 64 sentences at their own length."""
    import time

    import numpy as np

    from ..ops import onnx_export as ox
    from ..ops.parity import parity_feeds

    task, val = ctx.task, ctx.splits().validation
    feeds, _ = parity_feeds(val.items, encode, singles=0)
    sens = feeds[:max(1, -(-min(cfg.fallback_samples, len(val)) // 32))]
    singles = [encode([t]) for t in val.items[:64]]

    def outputs(path, fs, threads=None):
        sess = ox.session(path, threads)
        i = ox.output_index(sess, task.OUTPUT_NAMES[0])
        return [ox.run_session(sess, f)[i] for f in fs]

    seen: dict = {}

    def val_logits(path):            # accuracy and agreement read one pass over validation per model
        stamp = (str(path), path.stat().st_mtime_ns, path.stat().st_size)
        if seen.get("stamp") != stamp:
            seen.update(stamp=stamp, logits=np.concatenate(outputs(path, feeds)))
        return seen["logits"]

    def accuracy(path) -> float:
        return task.metrics(val_logits(path), val.labels)["accuracy"]

    fp32_pred = np.concatenate(outputs(fp32_path, feeds)).argmax(-1)

    def agreement(path) -> float:
        return float((val_logits(path).argmax(-1) == fp32_pred).mean())

    reference = outputs(fp32_path, sens)

    def error(path) -> float:
        return float(np.mean([np.abs(c - r).mean() for c, r in zip(outputs(path, sens), reference)]))

    def latency_ms(path) -> float:
        sess = ox.session(path, threads=2)
        for f in singles[:8]:
            ox.run_session(sess, f)
        ms = []
        for f in singles * 2:
            t = time.perf_counter()
            ox.run_session(sess, f)
            ms.append(1e3 * (time.perf_counter() - t))
        return float(np.median(ms))

    fp32_acc = accuracy(fp32_path)
    # the parity gate checks agreement on these same validation samples: the search must reach it too
    kept, record = q.float_fallback(quantize, q.weight_nodes(fp32_path), error, accuracy, latency_ms, fp32_acc,
                                    cfg.max_drop, agreement=agreement, min_agreement=cfg.parity.min_agreement)
    record.update(val_accuracy_fp32=fp32_acc, sensitivity_samples=sum(len(next(iter(f.values()))) for f in sens),
                  latency="batch 1, 2 threads, median of 128 runs over 64 validation sentences at own length")
    return kept, record
