"""Parity between a source model and its export: figures from two logits arrays, and the gate.

`compare_logits` / `compare_runs` turn (reference, candidate) logits into figures; `output_failures`
checks output names and shapes; `parity_gate` checks the figures against the limits and raises
ExportParityError listing every failed check with its numbers. `check_parity` is all of them in the
order every export and quantization path needs (run the candidate on the parity feeds, compare,
check names and shapes, report, gate): the one call a stage, a new export format or a remote device
makes with its reference logits, its candidate and its `ParityLimits`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..errors import ExportParityError


def compare_logits(reference, candidate, atol: float | None = None, rtol: float = 0.0) -> dict:
    """Figures for two logits arrays of the same shape ([n, classes] or [classes]).

    max_abs_diff / mean_abs_diff: |Δlogit| over every element; max_rel_diff: |Δlogit| over the scale
    of its row (max |reference logit| of that sample); agreement: fraction of rows whose argmax is the
    same; n: rows compared. Non-finite candidates count as infinitely far away.
    With `atol`, the allclose-style figure `tolerance_used` = max |Δ| / (atol + rtol * row scale): at
    most 1 passes. Logits are unnormalised, their scale differs by model (CNN logits reach tens), so
    an absolute bound alone is either too loose for small logits or too strict for large ones.
    """
    ref = np.asarray(reference, dtype=np.float64)
    cand = np.asarray(candidate, dtype=np.float64)
    if ref.shape != cand.shape:
        raise ValueError(f"logits shapes differ: reference {ref.shape}, candidate {cand.shape}")
    if ref.ndim == 1:
        ref, cand = ref[None], cand[None]
    n = int(ref.shape[0])
    if n == 0:
        out = {"max_abs_diff": 0.0, "mean_abs_diff": 0.0, "max_rel_diff": 0.0, "agreement": 1.0, "n": 0}
        return out | ({"tolerance_used": 0.0} if atol is not None else {})
    diff = np.abs(ref - cand)
    diff[~np.isfinite(diff)] = np.inf
    scale = np.abs(ref).max(-1, keepdims=True)
    agree = ref.argmax(-1) == cand.argmax(-1)
    out = {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
           "max_rel_diff": float((diff / np.maximum(scale, 1e-12)).max()), "logit_scale": float(scale.max()),
           "agreement": float(agree.mean()), "n": n}
    if atol is not None:
        out["tolerance_used"] = float((diff / (atol + rtol * scale)).max())
        out["atol"], out["rtol"] = atol, rtol
    return out


def output_failures(output_names: list[str], expected_names: list[str],
                    shapes: list[tuple[tuple, tuple]] = ()) -> list[str]:
    """Structural checks: output names, and (reference shape, candidate shape) pairs that must match."""
    failures = []
    if list(output_names) != list(expected_names):
        failures.append(f"output names are {list(output_names)}, expected {list(expected_names)}")
    bad = [(r, c) for r, c in shapes if tuple(r) != tuple(c)]
    if bad:
        r, c = bad[0]
        failures.append(f"output shape {tuple(c)} differs from the source's {tuple(r)} "
                        f"({len(bad)} of {len(shapes)} runs)")
    return failures


def parity_gate(what: str, figures: dict, max_abs_diff: float | None = None, min_agreement: float | None = None,
                failures: list[str] = ()) -> dict:
    """Raise ExportParityError listing every failed check (with its figures); return figures if all pass.

    `failures` carries structural problems found earlier (names, shapes) so one error lists them all.
    """
    failures = list(failures)
    if "tolerance_used" in figures:          # allclose-style: |Δ| <= atol + rtol * scale of the sample's logits
        if not figures["tolerance_used"] <= 1.0:
            failures.append(f"max |Δlogit| {figures['max_abs_diff']:.3g} (relative {figures['max_rel_diff']:.3g}) "
                            f"exceeds atol {figures['atol']:.3g} + rtol {figures['rtol']:.3g} x |logits| "
                            f"({figures['tolerance_used']:.3g}x the bound)")
    elif max_abs_diff is not None and not figures["max_abs_diff"] <= max_abs_diff:   # NaN fails too
        failures.append(f"max |Δlogit| {figures['max_abs_diff']:.3g} > {max_abs_diff:.3g}")
    if min_agreement is not None and not figures["agreement"] >= min_agreement:
        failures.append(f"argmax agreement {figures['agreement']:.4f} < {min_agreement:.4f} "
                        f"on {figures['n']} samples")
    if failures:
        raise ExportParityError(what, figures, failures)
    return figures


def parity_feeds(texts: list, encode, batch_size: int = 32, singles: int = 8) -> tuple[list[dict], int]:
    """Feeds for a parity check: `texts` in batches padded to their longest item (covering every
    text once, in order), then `singles` batch-1 runs at natural length spread over the texts, so
    the dynamic batch and sequence axes are both exercised. Returns (feeds, number of batched feeds)."""
    feeds = [encode(texts[i:i + batch_size]) for i in range(0, len(texts), batch_size)]
    n_batched = len(feeds)
    if texts and singles:
        idx = sorted(set(np.linspace(0, len(texts) - 1, min(singles, len(texts))).round().astype(int).tolist()))
        feeds += [encode([texts[i]]) for i in idx]
    return feeds, n_batched


def compare_runs(reference: list, candidate: list, atol: float | None = None,
                 rtol: float = 0.0) -> tuple[dict, list[tuple[tuple, tuple]]]:
    """Figures over many runs (lists of logits arrays, one per feed), skipping runs whose shapes
    differ; returns (figures, [(reference shape, candidate shape)] for every run). atol/rtol: see
    compare_logits."""
    shapes = [(tuple(np.shape(r)), tuple(np.shape(c))) for r, c in zip(reference, candidate)]
    pairs = [(r, c) for (r, c), (rs, cs) in zip(zip(reference, candidate), shapes) if rs == cs]
    if not pairs:
        out = {"max_abs_diff": float("inf"), "mean_abs_diff": float("inf"), "max_rel_diff": float("inf"),
               "agreement": 0.0, "n": 0}
        if atol is not None:
            out.update(tolerance_used=float("inf"), atol=atol, rtol=rtol)
        return out, shapes
    ref = np.concatenate([np.reshape(r, (-1, np.shape(r)[-1])) for r, _ in pairs])
    cand = np.concatenate([np.reshape(c, (-1, np.shape(c)[-1])) for _, c in pairs])
    return compare_logits(ref, cand, atol, rtol), shapes


@dataclass(frozen=True)
class ParityLimits:
    """What a candidate must meet. `max_abs_diff`: a ceiling on max |Δlogit| (None: none); with
    `rtol` it is the absolute part of the allclose-style bound |Δ| <= max_abs_diff + rtol x the
    sample's max |logit| (see compare_logits). `min_agreement`: the argmax agreement floor."""
    max_abs_diff: float | None = None
    min_agreement: float | None = None
    rtol: float | None = None

    def meta(self) -> dict:
        """The limits as the stages record them (`parity_limits`): rtol only where it applies."""
        return {"max_abs_diff": self.max_abs_diff, **({"rtol": self.rtol} if self.rtol is not None else {}),
                "min_agreement": self.min_agreement}


class ParityResult(NamedTuple):
    figures: dict              # compare_runs' figures, as checked
    candidate: list            # the candidate's logits, one array per feed


def check_parity(what: str, reference: list, candidate: Callable | list, limits: ParityLimits, *,
                 feeds: Sequence | None = None, output_names: Sequence[str] | None = None,
                 expected_names: Sequence[str] | None = None,
                 report: Callable[[dict, list], None] | None = None) -> ParityResult:
    """The parity gate of every export and quantization path.

    `reference`: the source's logits, one array per feed; `candidate`: the candidate's logits in the
    same order, or a callable feed -> logits run on each of `feeds`. `output_names` (the candidate's)
    must equal `expected_names` when both are given, and every run's shape must equal the
    reference's. `report(figures, candidate logits)` is called before the gate, so a stage's log
    line is written whether or not the candidate passes. Raises ExportParityError (labelled `what`)
    listing every failure; returns (figures, candidate logits)."""
    if callable(candidate):
        if feeds is None:
            raise ValueError("check_parity: a candidate runner needs the feeds to run it on")
        candidate = [candidate(f) for f in feeds]
    candidate = list(candidate)
    allclose = limits.rtol is not None and limits.max_abs_diff is not None
    figures, shapes = compare_runs(reference, candidate, limits.max_abs_diff if allclose else None,
                                   limits.rtol if allclose else 0.0)
    names = (output_names, expected_names) if output_names is not None and expected_names is not None else ((), ())
    failures = output_failures(*names, shapes)
    if report is not None:
        report(figures, candidate)
    parity_gate(what, figures, limits.max_abs_diff, limits.min_agreement, failures)
    return ParityResult(figures, candidate)
