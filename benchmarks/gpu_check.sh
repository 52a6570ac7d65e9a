#!/usr/bin/env bash
# The GPU check, on a machine with an NVIDIA GPU (README "NVIDIA GPUs"): one short prepared run, ~5 min.
#
# Here (a machine with a registry):   .venv/bin/python benchmarks/gpu_pack.py    # writes .gpucheck/ (~47 MiB)
# There (the device tool's H100/H200 image: its own python3 with torch 2.11 + CUDA, transformers 5.x,
# no registry), carrying .gpucheck:    bash benchmarks/gpu_check.sh [--quick]
#
# Installs the carried wheels (pydantic) into /tmp/edgeft-site, puts the Rotten Tomatoes file and edgeft's
# source on PYTHONPATH (edgeft is not pip-installed there: the image's own torch/transformers are used),
# then runs benchmarks/gpu_check.py: CUDA fine-tune (bf16 autocast), the cuda targets, and TensorRT /
# ONNX Runtime CUDA only where their packages are present (else it prints that they were skipped, and
# why). Prints the report tables; exits non-zero on any failed check. Reports go to $OUT when set.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
PACK=${GPUCHECK_DIR:-.gpucheck}
if [ ! -d "$PACK/wheels" ]; then
    echo "gpu_check: $PACK/ is missing: run '.venv/bin/python benchmarks/gpu_pack.py' where a registry is reachable" >&2
    exit 2
fi
SITE=/tmp/edgeft-site
missing=$($PY -c "import importlib.util as u; print(' '.join(m for m in ('pydantic',) if u.find_spec(m) is None))")
if [ -n "$missing" ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$PACK"/wheels/*.whl
fi
export PYTHONPATH="$PWD:$SITE:$PWD/$PACK/site${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
exec $PY benchmarks/gpu_check.py --model "$PACK/minilm-fp16" "$@"
