"""The job and result layout shared by the host and the device runner (numpy only).

`job.json`: protocol, runtime, threads, the timing settings (rounds, warmup, fixed_runs) and `rows`,
one per artifact: {model: path of the model file, inputs: path of its inputs .npz, text: bool}, paths
relative to the runner's working directory. An inputs file holds the benchmark inputs of
targets/inputs.BenchInputs flattened to arrays — `eval/<i>/ix` and `eval/<i>/<input>` for the
accuracy batches, `real/<i>/<input>`, `fixed/<input>`, `tp/<i>/<input>`. The runner writes, into the
job folder, `logits-<row>.npz` (`eval/<i>`: the logits of accuracy batch i) and `result.json`
({protocol, rows: [{times_ms: {real, fixed, tp}, shapes}], the other processes' CPU share, load
average, busy flag, peak RSS, the device's fingerprint, temperature}).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import PROTOCOL


def pack_inputs(evals: list, real: list[dict], fixed: dict, tp: list[dict]) -> dict[str, np.ndarray]:
    """The benchmark inputs as named arrays for one .npz file (evals: [(test indices, batch)])."""
    out: dict[str, np.ndarray] = {}
    for i, (ix, batch) in enumerate(evals):
        out[f"eval/{i}/ix"] = np.asarray(ix)
        out.update({f"eval/{i}/{k}": v for k, v in batch.items()})
    for i, b in enumerate(real):
        out.update({f"real/{i}/{k}": v for k, v in b.items()})
    out.update({f"fixed/{k}": v for k, v in fixed.items()})
    for i, b in enumerate(tp):
        out.update({f"tp/{i}/{k}": v for k, v in b.items()})
    return out


def unpack_inputs(arrays) -> tuple[list, list[dict], dict, list[dict]]:
    """The inverse of pack_inputs: (evals, real, fixed, tp), batches in their original order."""
    groups: dict[str, dict[int, dict[str, np.ndarray]]] = {"eval": {}, "real": {}, "tp": {}}
    fixed: dict[str, np.ndarray] = {}
    for key in arrays.keys():
        parts = key.split("/")
        if parts[0] == "fixed":
            fixed[parts[1]] = arrays[key]
        elif parts[0] in groups and len(parts) == 3:
            groups[parts[0]].setdefault(int(parts[1]), {})[parts[2]] = arrays[key]
        else:
            raise ValueError(f"unexpected array {key!r} in the job's inputs")

    def ordered(g):
        return [g[i] for i in sorted(g)]

    evals = [(b.pop("ix"), b) for b in ordered(groups["eval"])]
    return evals, ordered(groups["real"]), fixed, ordered(groups["tp"])


def check_protocol(found, side: str) -> None:
    """A clear error when the two sides speak different protocol versions."""
    if found != PROTOCOL:
        raise RuntimeError(f"edgeft device protocol mismatch: the {side} speaks {found}, this side {PROTOCOL}; "
                           f"install the same edgeft version on both")


def inputs_hash(arrays: dict[str, np.ndarray]) -> str:
    """A content hash of named arrays (names, dtypes, shapes, bytes): the device keeps inputs by it."""
    import hashlib

    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:24]


def save_inputs(path: Path, arrays: dict[str, np.ndarray]) -> None:
    np.savez(path, **arrays)
