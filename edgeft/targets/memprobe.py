"""Peak memory of one artifact on one target, measured in a fresh process.

    python -m edgeft.targets.memprobe --target cpu --artifact STORE/KEY --threads 2 --max-length 128

Imports the runtime, takes a baseline (peak RSS so far), loads the artifact, runs a batch-1 input at
the fixed shape (seq = max_length) and a batch-32 input of the same length, and prints one JSON line:
baseline_rss_mb, loaded_rss_mb (after loading), peak_rss_mb (the process's peak RSS, VmHWM) and
model_rss_mb = peak - baseline (what the model and its inference buffers add). Inputs are synthetic
(the task's dummy_inputs: token ids, or random images of the run's size; memory does not depend on their
values), so no tokenizer or data set is loaded.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
from pathlib import Path


def max_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB.

    Linux: VmHWM of /proc/self/status, the high-water mark of this process's own address space.
    (ru_maxrss is not usable in a child: Linux carries the parent's peak across fork and exec, so a
    probe started from a 1 GB benchmark process would report 1 GB before loading anything.)
    Elsewhere: getrusage's ru_maxrss (bytes on macOS, KiB on the BSDs).
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1e6 if sys.platform == "darwin" else r / 1024


def probe(target: str, artifact_dir: str, threads: int, max_length: int, task_name: str,
          big_batch: int = 32) -> dict:
    import numpy as np  # noqa: F401

    from ..artifact import Artifact
    from ..tasks import get_task
    from . import target_module

    mod = target_module(target)
    mod.preload()
    task = get_task(task_name)
    artifact = Artifact.read(Path(artifact_dir))
    baseline = max_rss_mb()
    session = mod.load(artifact, threads, task)
    loaded = max_rss_mb()
    for b in (1, big_batch):
        session.run(task.dummy_inputs(session.input_names, b, max_length, artifact_dir))
    peak = max_rss_mb()
    gpu = {"peak_gpu_mb": session.gpu_peak_mb()} if hasattr(session, "gpu_peak_mb") else {}
    return {**gpu, "target": target, "threads": threads, "max_length": max_length, "big_batch": big_batch,
            "baseline_rss_mb": round(baseline, 1), "loaded_rss_mb": round(loaded, 1),
            "peak_rss_mb": round(peak, 1), "model_rss_mb": round(peak - baseline, 1)}


def measure_in_subprocess(target: str, artifact, threads: int, max_length: int, task_name: str,
                          timeout_s: float = 900) -> dict:
    """Run this probe in a fresh, offline Python process; {peak_rss_mb, model_rss_mb, baseline_rss_mb}."""
    import os
    import subprocess

    from ..errors import StageError

    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=os.pathsep.join([root] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH")
                                                    else [])))
    cmd = [sys.executable, "-m", "edgeft.targets.memprobe", "--target", target, "--artifact", str(artifact.path),
           "--threads", str(threads), "--max-length", str(max_length), "--task", task_name]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise StageError(f"memory probe of {artifact.stage} on {target} failed (exit {proc.returncode}):\n"
                         + proc.stderr[-2000:])
    out = json.loads(lines[-1])
    return {k: out[k] for k in ("peak_rss_mb", "model_rss_mb", "baseline_rss_mb", "peak_gpu_mb") if k in out}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edgeft.targets.memprobe", description=__doc__.split("\n")[0])
    ap.add_argument("--target", required=True)
    ap.add_argument("--artifact", required=True, help="a committed artifact folder (with artifact.json)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-length", type=int, required=True)
    ap.add_argument("--batch", type=int, default=32, help="the larger batch run after batch 1")
    ap.add_argument("--task", default="text-classification")
    a = ap.parse_args(argv)
    print(json.dumps(probe(a.target, a.artifact, a.threads, a.max_length, a.task, a.batch)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
