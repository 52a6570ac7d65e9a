"""The device runner: one benchmark job on this machine with only numpy and the runtime.

    python -m edgeft.device.runner JOB_DIR

reads JOB_DIR/job.json and inputs.npz (edgeft/device/protocol.py), loads the model with the same
session settings as the local targets (targets/ort_cpu.py, targets/openvino_cpu.py), runs every
accuracy batch, then the same timing protocol as local rows (ops/timing.time_rows: warm-up, fixed
threads, interleaved rounds, real lengths, fixed shape, throughput batches), and writes logits.npz and
result.json into JOB_DIR (each written to a temporary name and renamed: a half-written result is never
read back). Exit status 0 on success; on failure result.json is absent and the error is on stderr.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from . import PROTOCOL
from .protocol import check_protocol, unpack_inputs

RUNTIMES = ("onnxruntime", "openvino")


def load_session(model: Path, runtime: str, threads: int, text: bool):
    """A targets.base.Session for `model`, set up as the local `cpu` / `openvino` targets set theirs up."""
    artifact = SimpleNamespace(kind="openvino" if model.suffix == ".xml" else "onnx", main_path=model,
                               stage=model.parent.name)
    if runtime == "onnxruntime":
        from ..targets import ort_cpu

        return ort_cpu.load(artifact, threads), ort_cpu.fingerprint(threads)
    if runtime == "openvino":
        from ..targets import openvino_cpu

        task = SimpleNamespace(INPUT_AXES={0: "batch", 1: "sequence"} if text else {0: "batch"})
        return openvino_cpu.load(artifact, threads, task), openvino_cpu.fingerprint(threads)
    raise ValueError(f"unknown runtime {runtime!r}; known: {', '.join(RUNTIMES)}")


def device_fingerprint() -> dict:
    from ..targets.fingerprint import cpu_info

    model, isa = cpu_info()
    return {"cpu": model, "isa": list(isa), "arch": platform.machine(), "cores": os.cpu_count(),
            "os": platform.platform(), "python": platform.python_version(), "numpy": np.__version__}


def run_job(job_dir: Path) -> dict:
    from ..ops.timing import TimedRow, time_rows

    job = json.loads((job_dir / "job.json").read_text())
    check_protocol(job.get("protocol"), "host")
    with np.load(job_dir / "inputs.npz") as arrays:
        evals, real, fixed, tp = unpack_inputs({k: arrays[k] for k in arrays.files})
    sess, runtime_fp = load_session(job_dir / job["model"], job["runtime"], int(job["threads"]), bool(job["text"]))
    logits = {f"eval/{i}": sess.run(batch) for i, (_, batch) in enumerate(evals)}
    timing = time_rows([TimedRow.of(sess, real, fixed, tp)], int(job["rounds"]), int(job["warmup"]),
                       int(job["fixed_runs"]))
    notes = sess.shape_notes() if hasattr(sess, "shape_notes") else None
    sess.close()
    result = {"protocol": PROTOCOL, "times_ms": {kind: timing.times[(0, kind)] for kind in ("real", "fixed", "tp")},
              "others_cpu_share": timing.others_cpu_share, "load_avg_1min": timing.load_avg_1min,
              "fingerprint": {**device_fingerprint(), **runtime_fp}, "shapes": notes}
    _write_atomic(job_dir / "logits.npz", lambda p: np.savez(p, **logits))
    _write_atomic(job_dir / "result.json", lambda p: p.write_text(json.dumps(result)))
    return result


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")      # same suffix: np.savez keeps the name
    write(tmp)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m edgeft.device.runner JOB_DIR", file=sys.stderr)
        return 2
    try:
        run_job(Path(args[0]))
    except Exception as e:  # the host reads stderr: name the step and the cause
        print(f"edgeft device runner: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
