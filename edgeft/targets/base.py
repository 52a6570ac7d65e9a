"""What every target gives the benchmark: a Session that runs one artifact on one runtime.

A target module (`targets/<module>.py`, registered in `targets/__init__.py`) has:

    load(artifact, threads, task) -> Session    # ready to run, `threads` intra-op threads
    fingerprint(threads) -> dict                # runtime, provider, threads, ISA: what timings depend on
    preload() -> None                           # import the runtime (memprobe's baseline is taken after it)

A Session takes the task's numpy inputs (e.g. input_ids, attention_mask, token_type_ids as int64) and
returns the logits as a numpy array. It ignores inputs the model does not declare, so one encoded
batch can feed every runtime.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class Session(ABC):
    target: str = ""
    input_names: list[str] = []

    def feed(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Only the inputs this session declares (missing ones are the caller's error)."""
        missing = [n for n in self.input_names if n not in batch]
        if missing:
            raise KeyError(f"{self.target} session needs inputs {missing}; got {sorted(batch)}")
        return {n: batch[n] for n in self.input_names}

    def run(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        return self.run_feed(self.feed(batch))

    @abstractmethod
    def run_feed(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        """Run on an already filtered feed (what `feed` returns): the call the benchmark times."""

    def close(self) -> None:  # noqa: B027 (optional: most sessions hold nothing to release)
        """Release what the session holds (default: nothing)."""


def synthetic_inputs(input_names: list[str], batch: int, seq: int, vocab_size: int = 30522,
                     seed: int = 0) -> dict[str, np.ndarray]:
    """Token inputs of a fixed shape without a tokenizer (memory probes): ids drawn from the vocab,
    a full attention mask, zero token types."""
    rng = np.random.default_rng(seed)
    out = {}
    for n in input_names:
        if "mask" in n:
            out[n] = np.ones((batch, seq), dtype=np.int64)
        elif "type" in n or "position" in n:
            out[n] = (np.zeros((batch, seq), dtype=np.int64) if "type" in n
                      else np.tile(np.arange(seq, dtype=np.int64), (batch, 1)))
        else:
            lo = min(1000, max(vocab_size - 1, 0))
            out[n] = rng.integers(lo, max(vocab_size, lo + 1), size=(batch, seq), dtype=np.int64)
    return out


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def weights_mb(artifact) -> float:
    """Size in MB of the model file(s) a user ships for the runtime: the safetensors/bin weights of a
    torch folder; the .onnx file plus its external data; for other kinds the main file plus files
    sharing its stem (OpenVINO .xml + .bin). Tokenizer and config are left out: they are the same for
    every row and say nothing about compression (`Artifact.size_mb()` counts everything)."""
    if artifact.kind == "torch":
        files = [p for p in artifact.path.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES]
    elif artifact.kind == "onnx":
        import onnx

        model = onnx.load(str(artifact.main_path), load_external_data=False)
        ext = {e.value for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL
               for e in t.external_data if e.key == "location"}
        files = [artifact.main_path] + [artifact.main_path.parent / loc for loc in sorted(ext)]
    else:
        main = artifact.main_path
        files = [main] + [p for p in main.parent.glob(main.stem + ".*") if p != main]
    return sum(p.stat().st_size for p in files if p.is_file()) / 1e6
