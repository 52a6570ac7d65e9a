"""Parity figures and the gate: plain numpy, no models."""

from __future__ import annotations

import numpy as np
import pytest

from edgeft.errors import ExportParityError
from edgeft.ops.parity import compare_logits, compare_runs, output_failures, parity_feeds, parity_gate


def _logits(n=50, k=3, seed=0):
    return np.random.default_rng(seed).normal(size=(n, k)).astype(np.float32)


def test_identical_logits_agree_fully():
    a = _logits()
    f = compare_logits(a, a.copy())
    assert f == {"max_abs_diff": 0.0, "mean_abs_diff": 0.0, "max_rel_diff": 0.0, "logit_scale": float(np.abs(a).max()),
                 "agreement": 1.0, "n": 50}
    assert parity_gate("export", f, max_abs_diff=1e-6, min_agreement=1.0) is f


def test_small_noise_passes_with_its_figures():
    a = _logits()
    b = a + np.float32(1e-6)
    f = compare_logits(a, b)
    assert f["max_abs_diff"] == pytest.approx(1e-6, rel=0.1)
    assert f["agreement"] == 1.0
    parity_gate("export", f, max_abs_diff=1e-4, min_agreement=0.999)


def test_perturbed_logits_fail_listing_every_check_with_figures():
    a = _logits()
    b = a.copy()
    b[:10] = -b[:10] * 3          # flips argmax on (most of) 10 rows, large diffs
    f = compare_logits(a, b)
    assert f["max_abs_diff"] > 0.5 and f["agreement"] < 1.0
    with pytest.raises(ExportParityError) as e:
        parity_gate("my-export", f, max_abs_diff=1e-4, min_agreement=0.999, failures=["output names are ['x']"])
    msg = str(e.value)
    assert "my-export" in msg
    assert "max |Δlogit|" in msg and f"{f['max_abs_diff']:.3g}" in msg     # the figure, not just the name
    assert "argmax agreement" in msg and f"{f['agreement']:.4f}" in msg
    assert "output names" in msg
    assert len(e.value.failures) == 3
    assert e.value.figures is f


def test_only_the_failing_check_is_reported():
    a = _logits()
    f = compare_logits(a, a + 0.01)           # same argmax, diff too large
    with pytest.raises(ExportParityError) as e:
        parity_gate("x", f, max_abs_diff=1e-3, min_agreement=0.999)
    assert len(e.value.failures) == 1 and "agreement" not in e.value.failures[0]
    parity_gate("x", f, max_abs_diff=None, min_agreement=0.999)   # no ceiling: passes


def test_nan_candidate_fails():
    a = _logits()
    b = a.copy()
    b[3, 1] = np.nan
    f = compare_logits(a, b)
    assert f["max_abs_diff"] == float("inf")
    with pytest.raises(ExportParityError):
        parity_gate("x", f, max_abs_diff=1e-4)


def test_shapes_must_match():
    with pytest.raises(ValueError, match="shapes differ"):
        compare_logits(_logits(4, 2), _logits(4, 3))
    f, shapes = compare_runs([_logits(4, 2), _logits(2, 2)], [_logits(4, 2), _logits(2, 3)])
    assert f["n"] == 4                          # the mismatched run is left out of the figures...
    fails = output_failures(["logits"], ["logits"], shapes)
    assert len(fails) == 1 and "(2, 3)" in fails[0] and "1 of 2" in fails[0]   # ...and reported
    assert output_failures(["out"], ["logits"]) == ["output names are ['out'], expected ['logits']"]


def test_compare_runs_concatenates_runs():
    runs = [_logits(32, 2, 1), _logits(5, 2, 2), _logits(1, 2, 3)]
    f, _ = compare_runs(runs, [r.copy() for r in runs])
    assert f["n"] == 38 and f["agreement"] == 1.0


def test_parity_feeds_cover_every_text_then_batch1_runs():
    texts = [f"t{i}" for i in range(70)]
    seen = []

    def encode(batch):
        seen.append(list(batch))
        return {"input_ids": np.zeros((len(batch), 4), dtype=np.int64)}

    feeds, n_batched = parity_feeds(texts, encode, batch_size=32, singles=5)
    assert n_batched == 3
    assert sum(len(b) for b in seen[:n_batched]) == 70 and seen[0][0] == "t0"
    assert all(len(b) == 1 for b in seen[n_batched:]) and len(feeds) == 3 + 5
    assert seen[n_batched][0] == "t0" and seen[-1][0] == "t69"


def test_allclose_bound_scales_with_the_logits():
    """CNN logits reach tens: an error that is small against them passes, the same error on small
    logits fails, and a real export bug (logits scaled up by 3, as the corrupted-export tests) fails."""
    big = _logits() * 20                      # |logits| up to ~50
    noisy = big + np.float32(1.5e-4)          # what an FP32 export on another CPU measured (1.49e-4)
    f = compare_logits(big, noisy, atol=1e-4, rtol=1e-4)
    assert f["max_abs_diff"] > 1e-4 and f["tolerance_used"] < 1.0
    assert f["max_rel_diff"] == pytest.approx(1.5e-4 / np.abs(big).max(-1).min(), rel=0.2)
    parity_gate("cnn export", f)
    small = _logits() * 0.01                  # the same error on logits of scale 0.03 is 1e-2 relative
    g = compare_logits(small, small + np.float32(1.5e-4), atol=1e-4, rtol=1e-4)
    assert g["tolerance_used"] > 1.0
    with pytest.raises(ExportParityError, match="relative"):
        parity_gate("text export", g)
    with pytest.raises(ExportParityError, match=r"x the bound"):
        parity_gate("broken", compare_logits(big, big * 3, atol=1e-4, rtol=1e-4))
    # row by row: one sample's large logits do not excuse another sample's error
    mixed = np.concatenate([big[:1], small[1:]])
    h = compare_logits(mixed, mixed + np.float32(1.5e-4), atol=1e-4, rtol=1e-4)
    assert h["tolerance_used"] > 1.0
