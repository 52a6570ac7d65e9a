"""The quantize stage's methods, one function each: given the stage config and a Job (the FP32 input,
its encoder, the INT8 format, where to write), write the INT8 model to job.final and return the meta
entries. stages/quantize.py maps method names to these (METHODS) and runs the parity gate after.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .quantize import QuantizeConfig

log = logging.getLogger("edgeft")


@dataclass(frozen=True)
class Job:
    """What a method works with: the FP32 input artifact, its encoder and graph inputs, the INT8
    format, the scratch folder and the model file to write."""
    ctx: Any
    src: Any
    encode: Callable
    in_names: list[str]
    fmt: Any
    uint8_weights: bool
    work: Path
    final: Path

    def feed(self, text) -> dict:            # one sample at its own length, the graph's inputs only
        return {k: v for k, v in self.encode([text]).items() if k in self.in_names}


def dynamic(cfg: QuantizeConfig, job: Job) -> dict:
    from ..ops.ort_quantization import quantize_dynamic_int8

    log.info("quantize: dynamic INT8 of %s", job.src.main_path)
    quantize_dynamic_int8(job.src.main_path, job.final, per_channel=cfg.per_channel, reduce_range=cfg.reduce_range,
                          uint8_weights=job.uint8_weights)
    return {"calibrate_method": None}


def static(cfg: QuantizeConfig, job: Job) -> dict:
    """Static QDQ INT8 into job.final; with max_drop, the most sensitive weight ops stay in float until
    the validation drop is within it (meta["fallback"] records the search)."""
    from ..calibration import calibration_set
    from ..errors import StageError
    from ..ops.onnx_graph import fused_ops
    from ..ops.ort_quantization import StaticQuantizer, calibration_reader

    ctx, src = job.ctx, job.src
    fused = fused_ops(src.main_path)
    if fused:
        raise StageError(f"{ctx.stage_name}: static quantization needs an unfused FP32 graph, but @{src.stage} "
                         f"has fused ops ({', '.join(f'{k} x{v}' for k, v in fused.items())}) that QDQ cannot "
                         f"quantize; export with `optimize: false` for static INT8, or use method: dynamic")
    facts, samples = calibration_set(cfg.calibration, ctx)
    log.info("quantize: static INT8 (QDQ, %s), calibrating on %d %s samples from %s",
             cfg.calibrate_method, len(samples), facts["split"], facts["manifest"])
    reader = calibration_reader(samples, job.encode, job.in_names, batch_size=1)   # natural lengths, no padding
    quantize = StaticQuantizer(src.main_path, job.work, reader, op_types=ctx.task.STATIC_OP_TYPES,  # Conv for CNNs
                               calibrate_method=cfg.calibrate_method, per_channel=cfg.per_channel,
                               reduce_range=cfg.reduce_range, uint8_weights=job.uint8_weights,
                               symmetric_activations=cfg.activations == "symmetric")
    meta = {"calibrate_method": cfg.calibrate_method, "calibration": facts}
    if cfg.max_drop is None:
        quantize([], job.final)
        return meta
    kept, record = fallback_search(cfg, job, quantize)
    if not record["met"]:
        last = record["kept_float"][-1]
        raise StageError(f"{ctx.stage_name}: even with all {len(kept)} weight ops in float the validation drop is "
                         f"{last['val_drop_points']:.2f} points (max_drop {cfg.max_drop:g}) and the agreement "
                         f"with FP32 {last.get('val_agreement', float('nan')):.4f} (parity.min_agreement "
                         f"{cfg.parity.min_agreement:g}); nothing was stored")
    log.info("quantize: %d of %d weight ops kept in float for max_drop %g and parity.min_agreement %g "
             "(all-INT8: drop %.2f points, agreement %.4f)", len(kept), record["candidates"], cfg.max_drop,
             cfg.parity.min_agreement, record["val_drop_points_all_int8"], record["val_agreement_all_int8"])
    quantize(kept, job.final)
    return {**meta, "fallback": record, "float_nodes": [k["node"] for k in record["kept_float"]]}


def fallback_search(cfg: QuantizeConfig, job: Job, quantize) -> tuple[list[str], dict]:
    """float_fallback on the validation split: accuracy and agreement on all of it (in batches of 32, as
    the stage's final check), output error on the first `fallback_samples`, batch-1 latency (2 threads)
    on 64 sentences at their own length."""
    from ..ops.fallback import Measurements, float_fallback
    from ..ops.onnx_graph import weight_nodes
    from ..ops.parity import parity_feeds

    task, val, fp32 = job.ctx.task, job.ctx.splits().validation, quantize.preprocessed
    feeds, _ = parity_feeds(val.items, job.encode, singles=0)
    m = Measurements(fp32, feeds, val.labels, lambda lg, lb: task.metrics(lg, lb)["accuracy"],
                     sensitivity_feeds=feeds[:max(1, -(-min(cfg.fallback_samples, len(val)) // 32))],
                     latency_feeds=[job.encode([t]) for t in val.items[:64]], output_name=task.OUTPUT_NAMES[0])
    fp32_acc = m.accuracy(fp32)
    # the parity gate checks agreement on these same validation samples: the search must reach it too
    kept, record = float_fallback(quantize, weight_nodes(fp32), m.error, m.accuracy, m.latency_ms, fp32_acc,
                                  cfg.max_drop, agreement=m.agreement, min_agreement=cfg.parity.min_agreement)
    record.update(val_accuracy_fp32=fp32_acc, sensitivity_samples=m.sensitivity_samples(),
                  latency="batch 1, 2 threads, median of 128 runs over 64 validation sentences at own length")
    return kept, record


def _nncf_calibration(cfg: QuantizeConfig, job: Job) -> tuple[list[dict], dict]:
    from ..calibration import calibration_set

    cal, samples = calibration_set(cfg.calibration, job.ctx)
    log.info("quantize: NNCF PTQ (OpenVINO) calibrating on %d %s samples", len(samples), cal["split"])
    return [job.feed(t) for t in samples], {
        "calibrate_method": "nncf", "calibration": cal,
        "weights": "int8 symmetric per channel (NNCF)" + (", 7-bit (overflow fix)" if job.fmt.saturating else ""),
        "activations": "int8/uint8 per tensor (NNCF default preset: asymmetric for transformers)"}


def nncf_ptq(cfg: QuantizeConfig, job: Job) -> dict:
    from ..ops.nncf_quant import nncf_ptq

    feeds, meta = _nncf_calibration(cfg, job)
    meta["nncf"] = nncf_ptq(job.src.main_path, job.final, feeds, transformer=job.ctx.task.TRANSFORMER,
                            overflow_fix=job.fmt.nncf_overflow_fix)
    return meta


def nncf_accuracy_control(cfg: QuantizeConfig, job: Job) -> dict:
    from ..ops.nncf_quant import nncf_accuracy_control

    feeds, meta = _nncf_calibration(cfg, job)
    task, val = job.ctx.task, job.ctx.splits().validation
    items = [(job.feed(t), int(y)) for t, y in zip(val.items, val.labels)]
    log.info("quantize: NNCF accuracy control, max drop %.2f points on %d validation samples", cfg.max_drop, len(items))
    meta["nncf"] = nncf_accuracy_control(job.src.main_path, job.final, feeds, items,
                                         lambda lg, lb: task.metrics(lg, lb)["accuracy"], cfg.max_drop,
                                         transformer=task.TRANSFORMER, overflow_fix=job.fmt.nncf_overflow_fix)
    return meta
