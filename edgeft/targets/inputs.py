"""The benchmark's inputs, encoded on the host: what every row of a benchmark (the stage, the peers
comparison) runs on. The task does the encoding (`task.encode`, `task.example_lengths`); this module
only decides which examples, in which batches, at which shape.

- evals: the whole test split in batches of `eval_batch_size`, sorted by length (accuracy, F1);
- real: batch-1 requests of the sampled examples `lat_idx`, each at its own length;
- fixed: batch 1 of the first sampled example, padded to `fixed_length`;
- tp: the throughput batches, `tp_idx` split in `tp_batches`, each padded to its longest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class BenchInputs:
    lengths: np.ndarray          # task.example_lengths of every test example (tokens; 1 per image)
    lat_idx: np.ndarray          # the test examples timed at batch 1
    evals: list                  # [(test indices, batch)], sorted by length
    real: list[dict]             # one batch-1 encoding per lat_idx entry, at its own length
    fixed: dict                  # batch 1 padded to the fixed length
    tp: list[dict]               # throughput batches
    tp_lengths: list[int]        # longest example of each throughput batch (its padded length for text)

    @property
    def real_lengths(self) -> np.ndarray:
        return self.lengths[self.lat_idx]


def sample_indices(n: int, seed: int, latency_samples: int, tp_batch_size: int,
                   tp_batches: int) -> tuple[np.ndarray, np.ndarray]:
    """(lat_idx, tp_idx) over a test split of `n` examples: a seeded sample of `latency_samples` without
    replacement, then `tp_batch_size * tp_batches` indices of a seeded permutation (cycled when short).
    The benchmark stage and compare_peers draw the same for the same seed."""
    rng = np.random.default_rng(seed)
    lat_idx = rng.choice(n, size=min(latency_samples, n), replace=False)
    tp_idx = np.resize(rng.permutation(n), tp_batch_size * tp_batches)
    return lat_idx, tp_idx


def encode_bench_inputs(task, proc, items, max_length: int, lat_idx, tp_idx, tp_batches: int,
                        fixed_length: int, eval_batch_size: int = 64) -> BenchInputs:
    """Encode the test `items` with processor `proc` for every part of a benchmark (see the module doc);
    everything truncated at `max_length`, the fixed-shape request at `fixed_length`."""
    lengths = task.example_lengths(proc, items, max_length)
    order = np.argsort(lengths, kind="stable")
    evals = [(ix, task.encode(proc, [items[i] for i in ix], max_length))
             for ix in np.array_split(order, max(1, -(-len(order) // eval_batch_size)))]
    tp_split = np.array_split(tp_idx, tp_batches)
    tp = [task.encode(proc, [items[i] for i in ix], max_length) for ix in tp_split]
    real = [task.encode(proc, [items[i]], max_length) for i in lat_idx]
    fixed = task.encode(proc, [items[lat_idx[0]]], fixed_length, pad_to_max=True)
    return BenchInputs(lengths, np.asarray(lat_idx), evals, real, fixed, tp,
                       [int(lengths[ix].max()) if len(ix) else 0 for ix in tp_split])


def timed_row(session, x: BenchInputs):
    """What ops.timing.time_rows times for `session` (a targets.base.Session, or anything with feed and
    run_feed) on inputs `x`: the feeds filtered once, up front, so only run_feed is timed."""
    from ..ops.timing import TimedRow

    return TimedRow.of(session, x.real, x.fixed, x.tp)
