"""qat: quantization-aware fine-tuning with NNCF for PyTorch, exported to QDQ ONNX.

1. `nncf.quantize` inserts INT8 fake-quantizers into the input torch model (fine-tuned or
   distilled), their ranges initialised on the recipe's calibration set (model type transformer);
2. the model trains on the train split with the quantizers in the loop (HF Trainer, a fixed number
   of epochs: NNCF-wrapped models are not checkpointed), so the weights adapt to INT8 rounding;
3. `nncf.strip` turns the fake-quantizers into Quantize/Dequantize ops and the model is exported to
   ONNX (QDQ), which ONNX Runtime (`cpu`) and OpenVINO (`openvino`) both run as INT8; an OpenVINO IR
   (model.xml + model.bin) converted from it is written beside it and checked against it;
4. the exported weights are stored as integers (ops/qdq.fold_weight_quantizers: the weight
   Quantize ops, the Transposes after them and the embedding tables' dequantization are computed
   once). The export keeps FP32 weights behind Q/DQ pairs, which ONNX Runtime runs at FP32 speed and
   size; folded, the model is about a quarter of the size and runs at INT8 speed (README has the
   figures), and the numbers do not change.

The parity gate checks the export against the QAT torch model it came from (argmax agreement and
max |Δlogit| on real validation samples: quantization rounding may differ by one step between
PyTorch and the runtimes, hence a looser tolerance than FP32 exports). Agreement with the FP32
input model is reported too.
"""

from __future__ import annotations

import logging
from typing import ClassVar, Literal

from pydantic import Field, PositiveInt

from ..errors import StageError
from ..schema import Strict
from .base import IsaName, isa_warnings, with_int8_isa
from .training import TrainConfig, train_classifier

log = logging.getLogger("edgeft")


class QATParityConfig(Strict):
    samples: PositiveInt = Field(256, description="real validation samples compared (all if fewer)")
    max_abs_diff: float | None = Field(None, gt=0, description="ONNX vs the QAT torch model, max |Δlogit| "
                                       "(default: the task's QDQ_TOLERANCE: 0.25 text, 1.0 images)")
    min_agreement: float = Field(0.99, ge=0, le=1, description="ONNX vs the QAT torch model, argmax agreement")


class QATConfig(TrainConfig):
    type: Literal["qat"]
    epochs: float = Field(gt=0, description="QAT epochs (required)")
    lr: float = Field(1e-5, gt=0, le=1)
    keep_best: bool = Field(False, description="not supported: NNCF-wrapped models are not checkpointed")
    calibration: str = Field(description="calibration manifest: initial quantizer ranges")
    opset: int = Field(18, ge=14, le=23)
    activations: Literal["asymmetric", "symmetric"] = Field(
        "asymmetric", description="NNCF's activation quantizers: its default for the model type (asymmetric for "
                                  "transformers: preset mixed), or symmetric (preset performance), the form TensorRT "
                                  "reads as explicit quantization (export format tensorrt, precision int8)")
    isa: IsaName = Field("auto", description="the CPU class the INT8 model is for (edgeft/isa.py): auto = "
                                             "this machine; avx2/avx512 (no VNNI) store uint8 weights")
    parity: QATParityConfig = QATParityConfig()

    accepts = ("torch",)
    # 2: weights stored as integers (folded Q/DQ); 3: + OpenVINO IR; 4: INT8 format per ISA class, IR gated
    # against the QAT torch model too
    version: ClassVar[int] = 4

    def key_config(self) -> dict:
        d = super().key_config()
        if self.activations == "asymmetric":      # keys of recipes written before the setting stay as they were
            d.pop("activations", None)
        return with_int8_isa(d, self.isa)

    def warnings(self, recipe, stages) -> list[tuple[str, str]]:
        return isa_warnings(self.isa)

    def produces(self) -> str:
        return "onnx"

    def files(self, recipe) -> dict[str, str]:
        return {"calibration": str(recipe.resolve_path(self.calibration))}

    def check(self, recipe, stages) -> list[tuple[str, str]]:
        import importlib.util

        from ..calibration import read_manifest

        problems = []
        if self.keep_best:
            problems.append(("keep_best", "qat trains a fixed number of epochs (NNCF-wrapped models are not "
                                          "checkpointed); leave keep_best false"))
        missing = [m for m in ("nncf", "torchao") if importlib.util.find_spec(m) is None]
        if missing:
            problems.append(("type", f"qat needs {', '.join(missing)}: pip install 'edgeft[openvino]'"))
        _, errs = read_manifest(recipe.resolve_path(self.calibration))
        problems += [(f"calibration{'.' + p if p else ''}", r) for p, r in errs]
        return problems


# NNCF compiles its PyTorch C++ extension on first use and gives up after 60 s by default: a 2-core
# machine with other work running took longer (the quick demo's qat failed so, 2026-12-03). Ten minutes,
# unless the user set it.
NNCF_EXTENSION_LOAD_TIMEOUT_S = 600


def run(cfg: QATConfig, inputs: dict, ctx):
    import os
    import shutil

    os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", str(NNCF_EXTENSION_LOAD_TIMEOUT_S))
    import nncf
    import numpy as np
    import torch

    from ..calibration import calibration_set
    from ..isa import int8_format
    from ..ops import onnx_export as ox
    from ..ops.parity import ParityLimits, check_parity, compare_runs, parity_feeds
    from ..ops.qdq import fold_weight_quantizers, rewrite_max_diff, weights_to_uint8
    from .training import lineage, load_input

    recipe, task, splits = ctx.recipe, ctx.task, ctx.splits()
    src, processor, model = load_input(inputs, ctx)
    names = task.input_names(processor)
    max_len = recipe.data.max_length

    def encode(texts):
        return task.encode(processor, texts, max_len)

    cal, samples = calibration_set(cfg.calibration, ctx)
    feeds = [{k: torch.from_numpy(v) for k, v in encode([t]).items() if k in names} for t in samples]
    val = splits.validation
    n = min(cfg.parity.samples, len(val))
    pfeeds, n_batched = parity_feeds(val.items[:n], encode)
    fp32 = [task.torch_forward(model, f) for f in pfeeds]

    log.info("qat: NNCF fake-quantizers initialised on %d calibration samples", len(samples))
    model_type = {"model_type": nncf.ModelType.TRANSFORMER} if task.TRANSFORMER else {}
    if cfg.activations == "symmetric":
        model_type["preset"] = nncf.QuantizationPreset.PERFORMANCE
    qmodel = nncf.quantize(model, nncf.Dataset(feeds), subset_size=len(feeds), **model_type)
    train_meta = train_classifier(qmodel, processor, cfg, ctx, save=False)
    qmodel.eval()
    stripped = nncf.strip(qmodel, do_copy=True, example_input=dict(feeds[0]))
    qat_logits = [task.torch_forward(stripped, f) for f in pfeeds]

    final, exported = ctx.out_dir / "model.onnx", ctx.out_dir / ".work" / "qdq.onnx"
    exported.parent.mkdir(exist_ok=True)
    ox.export_onnx(stripped, encode(val.items[:2]), exported, names, task.OUTPUT_NAMES, cfg.opset, task.INPUT_AXES)
    folding = fold_weight_quantizers(exported, final)
    fmt = int8_format(cfg.isa)
    if fmt.ort_weights == "uint8":      # x86 without VNNI: the same numbers as uint8, run by exact U8U8 kernels
        folding.update(weights_to_uint8(final, final))
    log.info("qat: INT8 format for ISA class %s (%s): %s weights", fmt.isa,
             "this machine" if fmt.source == "host" else "the recipe's isa", fmt.ort_weights)
    sess = ox.session(final)
    pick = ox.output_index(sess, task.OUTPUT_NAMES[0])
    cand = [ox.run_session(sess, f)[pick] for f in pfeeds]
    folding["max_abs_diff_vs_unfolded"] = rewrite_max_diff(exported, final, pfeeds, task.OUTPUT_NAMES[0])
    shutil.rmtree(exported.parent)
    if folding["max_abs_diff_vs_unfolded"] > 1e-4:
        raise StageError(f"{ctx.stage_name}: folding the weight quantizers changed the outputs "
                         f"(max |Δlogit| {folding['max_abs_diff_vs_unfolded']:.3g}): please report this model")
    vs_fp32, _ = compare_runs(fp32, cand)
    labels = val.labels[:n]
    limits = ParityLimits(max_abs_diff=cfg.parity.max_abs_diff or task.QDQ_TOLERANCE,
                          min_agreement=cfg.parity.min_agreement)

    def report(figures, _):
        log.info("qat: ONNX (QDQ) vs the QAT torch model on %d validation samples: agreement %.4f, max |Δlogit| "
                 "%.3g; vs the FP32 input: agreement %.4f", n, figures["agreement"], figures["max_abs_diff"],
                 vs_fp32["agreement"])

    figures, _ = check_parity(f"{ctx.stage_name}: QAT export", qat_logits, cand, limits,
                              output_names=ox.io_names(sess)[1], expected_names=task.OUTPUT_NAMES, report=report)
    ir = write_openvino_ir(final, ctx.out_dir, pfeeds, qat_logits, f"{ctx.stage_name}: OpenVINO IR", limits)
    processor.save_pretrained(ctx.out_dir)
    model.config.save_pretrained(ctx.out_dir)
    ops = ox.op_counts(final)
    meta = {
        **train_meta, **lineage(src),
        "precision": "int8", "method": "qat", "int8_format": fmt.meta(), "torch_source": src.key if src is not None else
        "model:" + recipe.model.source, "opset": cfg.opset, "calibration": cal,
        "weights": "int8 symmetric (NNCF)",
        "activations": ("symmetric (NNCF preset performance)" if cfg.activations == "symmetric" else
                        "int8/uint8 (NNCF transformer defaults)"),
        "qdq_pairs": ops.get("QuantizeLinear", 0), "folding": folding,
        "parity": figures, "parity_limits": limits.meta(),
        "parity_vs_fp32_input": vs_fp32, "openvino_ir": ir,
        "val_accuracy_fp32": task.metrics(np.concatenate(fp32[:n_batched]), labels)["accuracy"],
        "val_accuracy_int8": task.metrics(np.concatenate(cand[:n_batched]), labels)["accuracy"],
        "size_mb": round(ox.file_size_mb(final), 2),
    }
    return ctx.artifact(kind="onnx", file="model.onnx", meta=meta)


def write_openvino_ir(onnx_path, out_dir, feeds: list[dict], qat_logits: list, what: str, limits) -> dict:
    """Convert the QDQ ONNX to OpenVINO IR (model.xml + model.bin, weights not compressed) beside it.
    Gate: the IR must give OpenVINO's logits for the ONNX itself within the same limits as the ONNX
    Runtime export against the torch model (`limits`: max_abs_diff, min_agreement): both are INT8 graphs,
    and OpenVINO compiles the converted IR and the ONNX read directly along different paths, which may
    round one INT8 step apart; past that the conversion is broken and the stage fails. Then what
    OpenVINO's kernels compute on this CPU is compared with the QAT torch model, with the ONNX Runtime
    export's limits (`limits` again): comparing two OpenVINO runs alone would not see kernels that
    compute the model differently (the README has the figures that showed both
    cases). If that check fails the IR is
    not shipped (the ONNX artifact stands; the benchmark's `openvino` rows of it show the accuracy
    OpenVINO really gets) and the meta says why."""
    import openvino as ov

    from ..errors import ExportParityError
    from ..ops.parity import check_parity
    from ..targets.openvino_cpu import OvSession, compile_model

    xml = out_dir / "model.xml"
    ov.save_model(ov.convert_model(str(onnx_path)), str(xml), compress_to_fp16=False)
    from_ir, from_onnx = OvSession(compile_model(xml, 2), 2), OvSession(compile_model(onnx_path, 2), 2)
    figures, ir_out = check_parity(what + " vs the ONNX on OpenVINO", [from_onnx.run(f) for f in feeds], from_ir.run,
                                   limits, feeds=feeds)

    def report(vs_torch, _):
        log.info("qat: OpenVINO IR vs the QDQ ONNX on OpenVINO: max |Δlogit| %.3g; vs the QAT torch model: agreement "
                 "%.4f, max |Δlogit| %.3g", figures["max_abs_diff"], vs_torch["agreement"], vs_torch["max_abs_diff"])

    try:                                 # not fatal: without the IR, the ONNX artifact stands
        vs_torch = check_parity(what + " vs the QAT torch model", qat_logits, ir_out, limits, report=report).figures
    except ExportParityError as e:
        for p in (xml, xml.with_suffix(".bin")):
            p.unlink(missing_ok=True)
        log.warning("qat: %s; the OpenVINO IR is not shipped (the ONNX artifact is)", e)
        return {"parity_vs_onnx_on_openvino": figures, "parity_vs_qat_torch": e.figures, "written": False,
                "reason": str(e), "files": []}
    return {"parity_vs_onnx_on_openvino": figures, "parity_vs_qat_torch": vs_torch, "written": True,
            "files": ["model.xml", "model.bin"], "size_mb": round((out_dir / "model.bin").stat().st_size / 1e6, 2)}
