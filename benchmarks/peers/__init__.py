"""Peers: what a user would pick instead of edgeft, one function per peer, each with its tool's defaults.

Every function takes keyword arguments (model_dir, work, threads, task, built, calib, rebuild) and
returns a `Built`: a ready session (edgeft.targets.base.Session interface) plus how it was made.
Models are built once under `work/` and reused by later calls (a folder counts as built only once
its `.done` marker is written, after an atomic rename), unless `rebuild`.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Built:
    name: str
    label: str                 # what it is, in words (table column)
    precision: str             # fp32 | int8
    kind: str                  # torch | onnx | openvino: for the weight size
    path: Path                 # main model file (or the torch folder)
    session: object            # has feed(batch) and run_feed(feed), like edgeft's target sessions
    how: str                   # the exact calls, for the report
    details: dict = field(default_factory=dict)
    build_s: float = 0.0       # seconds spent converting/quantizing in this call (0 when reused)
    reused: bool = False


def build_once(folder: Path, build: Callable[[Path], None], rebuild: bool = False) -> tuple[Path, float, bool]:
    """Run `build(tmp)` into a temp folder and move it to `folder`; skip if `folder` was built before.
    Returns (folder, seconds spent, reused)."""
    done = folder / ".done"
    if done.is_file() and not rebuild:
        return folder, 0.0, True
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    t0 = time.perf_counter()
    try:
        build(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    (tmp / ".done").write_text("")
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder, time.perf_counter() - t0, False


from .gpu import ort_cuda_fp16, ort_cuda_fp32, trt_fp16  # noqa: E402
from .openvino_nncf import openvino_fp32, openvino_nncf_int8  # noqa: E402
from .optimum_ort import ort_fp32, ort_int8_dynamic  # noqa: E402
from .pytorch import pytorch_fp32  # noqa: E402

PEERS: dict[str, Callable[..., Built]] = {
    "pytorch-fp32": pytorch_fp32,
    "ort-fp32": ort_fp32,
    "ort-int8-dynamic": ort_int8_dynamic,
    "openvino-fp32": openvino_fp32,
    "openvino-nncf-int8": openvino_nncf_int8,
}
# on an NVIDIA GPU (compare_peers.py --gpu): not in the default set
GPU_PEERS: dict[str, Callable[..., Built]] = {
    "ort-cuda-fp32": ort_cuda_fp32,
    "ort-cuda-fp16": ort_cuda_fp16,
    "trt-fp16": trt_fp16,
}
