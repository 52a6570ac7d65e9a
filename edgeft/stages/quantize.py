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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, PositiveInt

from ..schema import Strict, differs_from_default
from .base import IsaName, StageConfig, isa_warnings, with_int8_isa
from .quantize_methods import Job, dynamic, nncf_accuracy_control, nncf_ptq, static

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
    activations: Literal["asymmetric", "symmetric"] = Field(
        "asymmetric", description="static: uint8 asymmetric activations (ONNX Runtime's CPU default), or int8 "
                                  "symmetric (zero point 0), the QDQ form TensorRT reads (export format tensorrt, "
                                  "precision int8); symmetric also keeps int8 weights whatever the CPU class")
    reduce_range: bool = Field(False, description="7-bit int8 weights (ONNX Runtime methods) instead of the "
                                                  "format `isa` picks")
    isa: IsaName = Field("auto", description="the CPU class the INT8 model is for (edgeft/isa.py): auto = "
                                             "this machine; avx2/avx512 (no VNNI) get a format that cannot saturate")
    parity: QuantParityConfig = QuantParityConfig()

    accepts = ("onnx",)

    def produces(self) -> str:
        return METHODS[self.method].kind

    def target_limits(self):
        if self.method == "dynamic":
            return ("cpu",), "dynamic INT8 uses ONNX Runtime-only operators (MatMulInteger, DynamicQuantizeLinear)"
        return None

    def files(self, recipe) -> dict[str, str]:
        return {"calibration": str(recipe.resolve_path(self.calibration))} if self.calibration else {}

    def key_config(self) -> dict:
        d = super().key_config()
        if self.activations == "asymmetric":      # keys of recipes written before the setting stay as they were
            d.pop("activations", None)
        return with_int8_isa(d, self.isa)

    def warnings(self, recipe, stages) -> list[tuple[str, str]]:
        from ..isa import int8_format

        out = isa_warnings(self.isa)
        fmt = int8_format(self.isa)
        if fmt.saturating and self.method != "dynamic":
            out.append(("isa", f"{self.method} INT8 for an {fmt.isa} CPU without VNNI: QDQ and OpenVINO INT8 measured "
                               f"no faster than FP32 on such a CPU (dynamic INT8 did pay; README 'INT8 and the CPU "
                               f"it runs on'), so this step may buy no speed; the report marks INT8 rows that are "
                               f"not >= 1.15x their FP32 row"))
        if fmt.saturating and self.activations == "symmetric":
            out.append(("activations", f"symmetric INT8 keeps int8 weights (TensorRT's form), not the uint8 weights "
                                       f"edgeft uses on a {fmt.isa} CPU without VNNI, where ONNX Runtime's int8 "
                                       f"kernels can saturate: its CPU rows there may lose accuracy"))
        return out

    def check(self, recipe, stages) -> list[tuple[str, str]]:
        from ..calibration import manifest_problems
        from .graph import input_stage

        # the keys METHODS says the method needs are set; those it does not take stay at their defaults
        m, spec = self.method, METHODS[self.method]
        problems = [(k, NEEDS[k].format(method=m)) for k in spec.needs if not self._given(k)]
        unused = [k for k in OPTIONAL_KEYS if self._given(k) and not (
            k in spec.takes and (k not in TAKEN_WITH or self._given(TAKEN_WITH[k])))]
        if spec.kind == "openvino":       # the ONNX Runtime settings: one problem for all three
            import importlib.util

            if importlib.util.find_spec("nncf") is None or importlib.util.find_spec("openvino") is None:
                problems.append(("method", f"{m} needs NNCF and OpenVINO: pip install 'edgeft[openvino]'"))
            if set(unused) & set(ORT_SETTINGS):
                problems.append(("method", f"calibrate_method, per_channel and reduce_range are ONNX Runtime "
                                           f"settings; {m} uses NNCF's own (leave them at their defaults)"))
            unused = [k for k in unused if k not in ORT_SETTINGS]
        problems += [(k, UNUSED[k].format(method=m)) for k in unused]
        if self.calibration:
            problems += manifest_problems(recipe, self.calibration)
        # what the input stage makes is known now: catch an already-INT8 or a fused input before any work
        src = input_stage(stages, self)
        kind = getattr(src, "type", None)
        if spec.unfused and kind == "export" and getattr(src, "optimize", False):
            problems.append(("input", f"{m} INT8 needs an unfused FP32 graph, but @{src.name} has `optimize: true` "
                                      f"(fused Attention/EmbedLayerNormalization have no QDQ form); export "
                                      f"with `optimize: false` for static, or use method: dynamic"))
        if kind == "quantize":
            problems.append(("input", f"@{src.name} is already INT8; quantize an FP32 export "
                                      f"(set `input:` to the export stage)"))
        return problems

    def _given(self, key: str) -> bool:
        # compared with the default, not model_fields_set: a dumped and re-loaded recipe lists every key
        if type(self).model_fields[key].default is None:
            return bool(getattr(self, key))
        return differs_from_default(self, key)


def run(cfg: QuantizeConfig, inputs: dict, ctx):
    import shutil
    import time

    from ..errors import StageError
    from ..isa import int8_format
    from ..ops import onnx_export as ox
    from ..ops import onnx_graph

    src, task, method = inputs["input"], ctx.task, METHODS[cfg.method]
    if src.meta.get("precision", "fp32") != "fp32":
        raise StageError(f"{ctx.stage_name}: input @{src.stage} is {src.meta['precision']}, not FP32; "
                         f"quantize an FP32 export")
    processor = task.load_processor(src.path)
    max_len = ctx.recipe.data.max_length

    def encode(texts):
        return task.encode(processor, texts, max_len)

    fmt, onnx_out = int8_format(cfg.isa), method.kind == "onnx"
    symmetric = cfg.activations == "symmetric"
    uint8 = fmt.ort_weights == "uint8" and not cfg.reduce_range and onnx_out and not symmetric
    job = Job(ctx, src, encode, ox.io_names(src.main_path)[0], fmt, uint8, ctx.out_dir / ".work",
              ctx.out_dir / ("model.onnx" if onnx_out else "model.xml"))
    meta: dict = {"precision": "int8", "torch_source": src.meta.get("torch_source", src.key),
                  "opset": src.meta.get("opset"), "method": cfg.method, "per_channel": cfg.per_channel,
                  "reduce_range": cfg.reduce_range, "int8_format": fmt.meta(),
                  "weights": (("uint8 (ONNX Runtime QUInt8)" if cfg.method == "dynamic" else
                               "int8 symmetric stored as uint8 (zero point 128)") if uint8 else
                              "int8 symmetric" + (" 7-bit" if cfg.reduce_range else "")),
                  "activations": "int8 symmetric (zero point 0)" if symmetric else "uint8 asymmetric"}
    log.info("quantize: INT8 format for ISA class %s (%s): %s", fmt.isa,
             "this machine" if fmt.source == "host" else "the recipe's isa", meta["weights"] if onnx_out else
             f"NNCF overflow fix {fmt.nncf_overflow_fix}")
    t0 = time.perf_counter()
    meta.update(method.quantize(cfg, job))
    log.info("quantize: done in %.1f s", time.perf_counter() - t0)
    if onnx_out:
        meta["quantized_ops"] = onnx_graph.quantization_summary(job.final)
        meta["integer_weights"] = onnx_graph.integer_weight_types(job.final)
    meta.update(_parity(cfg, job))

    shutil.rmtree(job.work, ignore_errors=True)
    ox.copy_side_files(src.path, ctx.out_dir)
    size = ox.file_size_mb(job.final) + (0.0 if onnx_out else ox.file_size_mb(job.final.with_suffix(".bin")))
    meta["size_mb"] = round(size, 2)
    meta["size_ratio"] = round(size / ox.file_size_mb(src.main_path), 3)
    return ctx.artifact(kind=method.kind, file=job.final.name, meta=meta)


def _parity(cfg: QuantizeConfig, job: Job) -> dict:
    """The INT8 model against its FP32 source on real validation samples (the parity gate), then the
    accuracy drop of accuracy-aware methods. Returns the meta entries."""
    import numpy as np

    from ..errors import StageError
    from ..ops import onnx_export as ox
    from ..ops.parity import ParityLimits, check_parity, parity_feeds

    ctx, task, val = job.ctx, job.ctx.task, job.ctx.splits().validation
    # accuracy-aware methods are checked on the whole validation split NNCF optimised against
    n = len(val) if cfg.max_drop is not None else min(cfg.parity.samples, len(val))
    feeds, n_batched = parity_feeds(val.items[:n], job.encode)
    ref_sess = ox.session(job.src.main_path)
    reference = [ox.run_session(ref_sess, f)[ox.output_index(ref_sess, task.OUTPUT_NAMES[0])] for f in feeds]
    if METHODS[cfg.method].kind == "openvino":
        from ..targets.openvino_cpu import OvSession, compile_model

        runner, outputs = OvSession(compile_model(job.final, threads=2), 2).run, task.OUTPUT_NAMES
    else:
        sess = ox.session(job.final)
        pick, outputs = ox.output_index(sess, task.OUTPUT_NAMES[0]), ox.io_names(sess)[1]

        def runner(f):
            return ox.run_session(sess, f)[pick]

    def accuracy(logits) -> float:
        return task.metrics(np.concatenate(logits[:n_batched]), val.labels[:n])["accuracy"]

    meta = {"val_accuracy_fp32": accuracy(reference)}
    limits = ParityLimits(max_abs_diff=cfg.parity.max_abs_diff, min_agreement=cfg.parity.min_agreement)

    def report(figures, cand):
        meta.update(val_accuracy_int8=accuracy(cand), parity=figures, parity_limits=limits.meta())
        log.info("quantize: vs FP32 on %d validation samples: agreement %.4f, max |Δlogit| %.3g, accuracy %.4f -> "
                 "%.4f", n, figures["agreement"], figures["max_abs_diff"], meta["val_accuracy_fp32"],
                 meta["val_accuracy_int8"])

    check_parity(f"{ctx.stage_name}: INT8 ({cfg.method})", reference, runner, limits, feeds=feeds,
                 output_names=outputs, expected_names=ox.io_names(ref_sess)[1], report=report)
    if cfg.max_drop is not None:
        drop = 100 * (meta["val_accuracy_fp32"] - meta["val_accuracy_int8"])
        meta["val_drop_points"] = round(drop, 3)
        if drop > cfg.max_drop + 1e-9:
            raise StageError(f"{ctx.stage_name}: validation accuracy dropped {drop:.2f} points "
                             f"({meta['val_accuracy_fp32']:.4f} -> {meta['val_accuracy_int8']:.4f} on {n} samples), "
                             f"more than max_drop {cfg.max_drop:g}; nothing was stored")
    return meta


@dataclass(frozen=True)
class Method:
    """A method: its function (writes job.final, returns meta entries), the artifact kind, the keys it
    takes beyond the common ones and those it needs, and whether its input must be unfused."""
    quantize: Callable[[QuantizeConfig, Job], dict]
    kind: Literal["onnx", "openvino"]
    takes: frozenset[str] = frozenset()
    needs: tuple[str, ...] = ()
    unfused: bool = True


ORT_SETTINGS = ("calibrate_method", "per_channel", "reduce_range")     # ONNX Runtime's; NNCF has its own
METHODS: dict[str, Method] = {
    "dynamic": Method(dynamic, "onnx", frozenset(ORT_SETTINGS) - {"calibrate_method"}, unfused=False),
    "static": Method(static, "onnx", frozenset({"calibration", "max_drop", "fallback_samples", "activations",
                                                *ORT_SETTINGS}),
                     needs=("calibration",)),
    "nncf_ptq": Method(nncf_ptq, "openvino", frozenset({"calibration"}), needs=("calibration",)),
    "nncf_accuracy_control": Method(nncf_accuracy_control, "openvino", frozenset({"calibration", "max_drop"}),
                                    needs=("calibration", "max_drop")),
}
NEEDS = {"calibration": "method {method} needs a calibration manifest (calibration/*.yaml)",
         "max_drop": "{method} needs `max_drop` (validation accuracy points)"}
# a key set for a method that does not take it (per_channel, reduce_range: taken by every ONNX Runtime method)
UNUSED = {"max_drop": "method {method} does not control accuracy; use static (ONNX Runtime) or "
                      "nncf_accuracy_control (OpenVINO)",
          "fallback_samples": "only used by method static with max_drop",
          "calibration": "method {method} takes no calibration set (did you mean static?)",
          "calibrate_method": "only used by method static",
          "activations": "only method static takes `activations` (symmetric: the QDQ form TensorRT reads)"}
TAKEN_WITH = {"fallback_samples": "max_drop"}                         # taken only together with that key
OPTIONAL_KEYS = (*UNUSED, "per_channel", "reduce_range")
