"""The device runner: benchmark jobs on this machine with only numpy and the runtime.

    python -m edgeft.device.runner info             # JSON: protocol, fingerprint, what is missing
    python -m edgeft.device.runner run JOB_DIR      # one job (edgeft/device/protocol.py)

`run` reads JOB_DIR/job.json; the model and input paths it names are relative to the working
directory (the device's edgeft folder, where the host keeps artifacts and inputs by content hash).
It loads every row's model with the same session settings as the local targets
(targets/ort_cpu.py, targets/openvino_cpu.py), runs the accuracy batches, then the same timing
protocol as local rows (ops/timing.time_rows: warm-up, fixed threads, rounds that interleave every
row of the job, real lengths, fixed shape, throughput batches), and writes logits-<row>.npz and
result.json into JOB_DIR, each under a temporary name and renamed: a half-written result is never
read back. Exit status 0 on success; on failure result.json is absent and the error is on stderr.
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


def _meminfo_mb() -> dict:
    out = {}
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                k, _, v = line.partition(":")
                if k in ("MemTotal", "MemAvailable"):
                    out[k] = round(int(v.split()[0]) / 1024)
    except (OSError, ValueError, IndexError):
        pass
    return {"memory_mb": out.get("MemTotal"), "memory_available_mb": out.get("MemAvailable")}


def _temperature_c() -> float | None:
    """The hottest thermal zone in °C where the kernel exposes one (boards do; VMs mostly do not)."""
    temps = []
    for p in Path("/sys/class/thermal").glob("thermal_zone*/temp"):
        try:
            temps.append(int(p.read_text().strip()) / 1000)
        except (OSError, ValueError):
            continue
    return max(temps) if temps else None


def runtime_versions() -> dict:
    """{runtime: version} of the runtimes importable here (a missing one is absent)."""
    out = {}
    for name in RUNTIMES:
        try:
            mod = __import__(name)
        except Exception:  # noqa: BLE001 (a broken install is as missing as an absent one)
            continue
        version = getattr(mod, "__version__", None)
        if version is None and name == "openvino":
            version = mod.get_version()
        out[name] = str(version)
    return out


def device_fingerprint() -> dict:
    """What this device's timings depend on (stable between runs; `info` adds the volatile parts)."""
    from ..targets.fingerprint import cpu_info

    model, isa = cpu_info()
    return {"cpu": model, "isa": list(isa), "arch": platform.machine(), "cores": os.cpu_count(),
            "memory_mb": _meminfo_mb()["memory_mb"], "os": platform.platform(), "python": platform.python_version(),
            "numpy": np.__version__, "runtimes": runtime_versions()}


def info(workdir: Path) -> dict:
    """The device as `edgeft targets --check` shows it: fingerprint, free disk and memory, temperature."""
    from .. import __version__

    try:
        st = os.statvfs(workdir)
        disk_free_mb = round(st.f_bavail * st.f_frsize / 1e6)
    except OSError:
        disk_free_mb = None
    return {"protocol": PROTOCOL, "edgeft": __version__, "fingerprint": device_fingerprint(),
            "memory_available_mb": _meminfo_mb()["memory_available_mb"], "disk_free_mb": disk_free_mb,
            "temperature_c": _temperature_c()}


def run_job(job_dir: Path) -> dict:
    from ..ops.timing import TimedRow, time_rows

    job = json.loads((job_dir / "job.json").read_text())
    check_protocol(job.get("protocol"), "host")
    threads = int(job["threads"])
    sessions, inputs, runtime_fp = [], [], None
    for i, row in enumerate(job["rows"]):
        with np.load(row["inputs"]) as arrays:
            evals, real, fixed, tp = unpack_inputs({k: arrays[k] for k in arrays.files})
        sess, runtime_fp = load_session(Path(row["model"]), job["runtime"], threads, bool(row["text"]))
        logits = {f"eval/{j}": sess.run(batch) for j, (_, batch) in enumerate(evals)}
        _write_atomic(job_dir / f"logits-{i}.npz", lambda p, lg=logits: np.savez(p, **lg))
        sessions.append(sess)
        inputs.append((real, fixed, tp))
    timing = time_rows([TimedRow.of(s, *x) for s, x in zip(sessions, inputs)], int(job["rounds"]),
                       int(job["warmup"]), int(job["fixed_runs"]))
    rows = [{"times_ms": {kind: timing.times[(i, kind)] for kind in ("real", "fixed", "tp")},
             "shapes": s.shape_notes() if hasattr(s, "shape_notes") else None} for i, s in enumerate(sessions)]
    for s in sessions:
        s.close()
    result = {"protocol": PROTOCOL, "rows": rows, "others_cpu_share": timing.others_cpu_share,
              "load_avg_1min": timing.load_avg_1min, "busy": timing.busy, "peak_rss_mb": _peak_rss_mb(),
              "fingerprint": {**device_fingerprint(), **(runtime_fp or {})}, "temperature_c": _temperature_c()}
    _write_atomic(job_dir / "result.json", lambda p: p.write_text(json.dumps(result)))
    return result


def _peak_rss_mb() -> float | None:
    """Peak resident memory of this runner process (all rows of the job together) in MB."""
    try:
        import resource

        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return round(kb / 1024 / (1024 if sys.platform == "darwin" else 1), 1)
    except (ImportError, OSError):
        return None


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")      # same suffix: np.savez keeps the name
    write(tmp)
    os.replace(tmp, path)


USAGE = "usage: python -m edgeft.device.runner info | run JOB_DIR"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["info"] and len(args) == 1:
        print(json.dumps(info(Path.cwd())))
        return 0
    if args[:1] != ["run"] or len(args) != 2:
        print(USAGE, file=sys.stderr)
        return 2
    try:
        run_job(Path(args[1]))
    except MemoryError:
        print("edgeft device runner: out of memory", file=sys.stderr)
        return 1
    except Exception as e:  # the host reads stderr: name the cause
        print(f"edgeft device runner: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
