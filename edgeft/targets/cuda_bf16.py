"""cuda-bf16: the cuda target (targets/cuda.py) with torch models in bf16 (torch artifacts only)."""

from __future__ import annotations

from . import cuda

NAME = "cuda-bf16"
PRECISION = "bf16"


def unavailable_reason() -> str | None:
    return cuda.unavailable_reason()


def kind_unavailable_reason(kind: str) -> str | None:
    return cuda.kind_unavailable_reason(kind, PRECISION)


def preload() -> None:
    cuda.preload()


def load(artifact, threads: int, task=None):
    return cuda.load(artifact, threads, task, precision=PRECISION, target=NAME)


def fingerprint(threads: int) -> dict:
    return cuda.fingerprint(threads, precision=PRECISION, target=NAME)
