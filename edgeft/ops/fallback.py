"""Accuracy-aware static INT8: which weight ops to keep in float so the INT8 model loses at most
`max_drop` points, and the ONNX Runtime measurements that decide it.

`float_fallback` is the search itself, a pure function over callables (quantize a candidate set,
measure its error, accuracy, agreement and latency): greedy, most sensitive op first, one at a time
until the drop and the agreement floor are met. `Measurements` gives it those callables for ONNX
files on a validation set: accuracy and agreement from one pass over the split per model, output
error against FP32 on a sensitivity subset, batch-1 latency at each sample's own length.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import onnx_export as ox


def float_fallback(quantize: Callable[[list[str]], Path], candidates: list[str],
                   error: Callable[[Path], float], accuracy: Callable[[Path], float],
                   latency_ms: Callable[[Path], float], fp32_accuracy: float, max_drop_points: float,
                   progress: bool = True, agreement: Callable[[Path], float] | None = None,
                   min_agreement: float = 0.0) -> tuple[list[str], dict]:
    """Greedy accuracy-aware fallback for static INT8.

    `quantize(kept)` writes the INT8 model with the nodes `kept` left in float and returns its path;
    `error(path)` is its output error against FP32 on a sensitivity subset (lower is better),
    `accuracy(path)` its validation accuracy (0..1), `latency_ms(path)` its batch-1 latency.

    If everything in INT8 already drops at most `max_drop_points`, nothing is kept in float.
    Otherwise each candidate's sensitivity is the error removed by keeping it alone in float; the
    candidates are then kept in float one at a time, most sensitive first, until the validation
    drop is within `max_drop_points`. With `agreement(path)` (argmax agreement with FP32 on the
    same validation data) a model must also reach `min_agreement` (the stage's parity floor), so
    the search does not stop at a model the parity gate then rejects. Returns (kept, record);
    record["met"] says whether it was reached (False: every candidate was tried)."""
    from tqdm.auto import tqdm

    def check(path) -> tuple[float, float | None, bool]:
        acc = accuracy(path)
        agree = agreement(path) if agreement is not None else None
        ok = 100 * (fp32_accuracy - acc) <= max_drop_points + 1e-9 and (agree is None or agree >= min_agreement)
        return acc, agree, ok

    base = quantize([])
    acc, agree, ok = check(base)
    lat = latency_ms(base)
    record: dict = {"candidates": len(candidates), "val_accuracy_all_int8": acc,
                    "val_drop_points_all_int8": round(100 * (fp32_accuracy - acc), 3),
                    "latency_p50_ms_all_int8": round(lat, 3), "kept_float": [], "met": True}
    if agreement is not None:
        record.update(val_agreement_all_int8=round(agree, 4), min_agreement=min_agreement)
    if ok:
        return [], record
    err_all = error(base)
    gains = [(err_all - error(quantize([name])), name)
             for name in tqdm(candidates, desc="node sensitivity", unit="node", disable=not progress)]
    ranked = sorted(gains, key=lambda g: -g[0])
    record["error_all_int8"] = err_all
    record["sensitivity"] = [{"node": n, "error_removed": round(g, 6)} for g, n in ranked]
    kept: list[str] = []
    bar = tqdm(ranked, desc="float fallback", unit="node", disable=not progress)
    for gain, name in bar:
        kept.append(name)
        path = quantize(kept)
        (acc, agree, ok), prev_lat, lat = check(path), lat, latency_ms(path)
        drop = 100 * (fp32_accuracy - acc)
        record["kept_float"].append({"node": name, "error_removed_alone": round(gain, 6),
                                     "val_accuracy": acc, "val_drop_points": round(drop, 3),
                                     **({"val_agreement": round(agree, 4)} if agree is not None else {}),
                                     "latency_p50_ms": round(lat, 3), "latency_cost_ms": round(lat - prev_lat, 3)})
        bar.set_postfix(drop=f"{drop:.2f}")
        if ok:
            bar.close()
            return kept, record
    record["met"] = False
    return kept, record


class Measurements:
    """float_fallback's measurements of ONNX files against the FP32 model at `fp32_path`.

    `feeds`: the validation split in batches (accuracy, agreement; `labels` in the same order,
    `metric(logits, labels)` a fraction); `sensitivity_feeds`: the batches on which output error is
    measured; `latency_feeds`: batch-1 feeds at their own length, timed twice each after 8 warm-up
    runs on `latency_threads` threads. Validation logits are kept for the last model read, so
    accuracy and agreement of one model cost one pass."""

    def __init__(self, fp32_path: str | Path, feeds: list[dict], labels, metric: Callable,
                 sensitivity_feeds: list[dict], latency_feeds: list[dict], output_name: str = "logits",
                 latency_threads: int = 2):
        self.feeds, self.labels, self.metric = feeds, labels, metric
        self.sensitivity_feeds, self.latency_feeds = sensitivity_feeds, latency_feeds
        self.output_name, self.latency_threads = output_name, latency_threads
        self._stamp = self._logits = None
        self.fp32_pred = np.concatenate(self.outputs(fp32_path, feeds)).argmax(-1)
        self.reference = self.outputs(fp32_path, sensitivity_feeds)

    def outputs(self, path, feeds: list[dict], threads: int | None = None) -> list[np.ndarray]:
        sess = ox.session(path, threads)
        i = ox.output_index(sess, self.output_name)
        return [ox.run_session(sess, f)[i] for f in feeds]

    def val_logits(self, path) -> np.ndarray:
        path = Path(path)
        stamp = (str(path), path.stat().st_mtime_ns, path.stat().st_size)
        if self._stamp != stamp:
            self._stamp, self._logits = stamp, np.concatenate(self.outputs(path, self.feeds))
        return self._logits

    def accuracy(self, path) -> float:
        return self.metric(self.val_logits(path), self.labels)

    def agreement(self, path) -> float:
        return float((self.val_logits(path).argmax(-1) == self.fp32_pred).mean())

    def error(self, path) -> float:
        out = self.outputs(path, self.sensitivity_feeds)
        return float(np.mean([np.abs(c - r).mean() for c, r in zip(out, self.reference)]))

    def latency_ms(self, path) -> float:
        from functools import partial

        from .timing import interleaved_latencies

        sess = ox.session(path, threads=self.latency_threads)
        calls = [partial(ox.run_session, sess, f) for f in self.latency_feeds]
        return float(np.median(interleaved_latencies({0: calls}, rounds=2, warmup=8)[0]))

    def sensitivity_samples(self) -> int:
        return sum(len(next(iter(f.values()))) for f in self.sensitivity_feeds)
