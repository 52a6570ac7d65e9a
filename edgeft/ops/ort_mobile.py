"""ONNX -> ORT format (.ort) for ONNX Runtime Mobile, and the operator list a reduced build needs.

What `python -m onnxruntime.tools.convert_onnx_models_to_ort` does with its defaults (optimization
style Fixed, level all), done in-process so the stage controls paths and errors: ONNX Runtime loads the
model with the CPU execution provider, applies its graph optimizations and saves the result in ORT
format. For `target_platform: arm` the x86-only NCHWc layout transformer is left out and QDQ int8
(rather than uint8) is allowed, as the tool does; `amd64` keeps them. The required-operators config
(`required_operators.config`) is the file a reduced build takes (`build.sh --minimal_build
--include_ops_by_config required_operators.config`): every operator the optimized model uses, per
domain and opset.
"""

from __future__ import annotations

from pathlib import Path

CONFIG = "required_operators.config"


def convert(src: str | Path, dst: str | Path, target_platform: str = "arm") -> Path:
    import onnxruntime as ort

    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(dst)
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    so.add_session_config_entry("session.save_model_format", "ORT")
    so.add_session_config_entry("session.qdqisint8allowed", "1" if target_platform == "arm" else "0")
    disabled = ["NchwcTransformer"] if target_platform != "amd64" else None
    ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"], disabled_optimizers=disabled)
    if not dst.is_file() or dst.stat().st_size == 0:
        raise RuntimeError(f"ONNX Runtime wrote no ORT format model to {dst}")
    return dst


def write_required_operators(model: str | Path, out: str | Path) -> Path:
    """The reduced-build config of `model` (an .ort file) at `out`."""
    from onnxruntime.tools.ort_format_model.utils import create_config_from_models

    from .onnx_export import quiet_library_logs

    with quiet_library_logs():
        create_config_from_models([Path(model)], Path(out), enable_type_reduction=False)
    return Path(out)


def read_required_operators(config: str | Path) -> dict[str, list[str]]:
    """{"domain;opset": [operators]} from a required-operators config (comments skipped)."""
    ops: dict[str, list[str]] = {}
    for line in Path(config).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        domain, opset, names = line.split(";", 2)
        ops.setdefault(f"{domain};{opset}", []).extend(n.strip() for n in names.split(",") if n.strip())
    return ops
