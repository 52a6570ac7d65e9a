"""Parity figures and the gate: plain numpy, no models."""

from __future__ import annotations

import re

import numpy as np
import pytest

from edgeft.errors import ExportParityError
from edgeft.ops.parity import (
    ParityLimits,
    check_parity,
    compare_logits,
    compare_runs,
    output_failures,
    parity_feeds,
    parity_gate,
)


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


# ----------------------------------------------------------------------------- check_parity: the one gate

def _runs(seed=0):
    return [_logits(32, 3, seed), _logits(5, 3, seed + 1), _logits(1, 3, seed + 2)]


def test_check_parity_passes_identical_logits_and_returns_figures_and_candidate():
    ref = _runs()
    feeds = [{"i": i} for i in range(len(ref))]
    seen = []

    def runner(feed):                       # a candidate runtime: feed -> logits
        seen.append(feed["i"])
        return ref[feed["i"]].copy()

    reported = []
    figures, cand = check_parity("x", ref, runner, ParityLimits(1e-6, 1.0), feeds=feeds, output_names=["logits"],
                                 expected_names=["logits"], report=lambda f, c: reported.append((f, len(c))))
    assert seen == [0, 1, 2] and len(cand) == 3
    assert figures["max_abs_diff"] == 0.0 and figures["agreement"] == 1.0 and figures["n"] == 38
    assert reported == [(figures, 3)]
    # precomputed candidate logits give the same figures
    assert check_parity("x", ref, [r.copy() for r in ref], ParityLimits(1e-6, 1.0)).figures == figures


def test_check_parity_fails_on_an_output_name_mismatch():
    ref = _runs()
    with pytest.raises(ExportParityError) as e:
        check_parity("my-export", ref, [r.copy() for r in ref], ParityLimits(1e-4, 0.99),
                     output_names=["output_0"], expected_names=["logits"])
    assert "my-export" in str(e.value)
    assert e.value.failures == ["output names are ['output_0'], expected ['logits']"]


def test_check_parity_fails_on_a_shape_mismatch():
    ref = _runs()
    cand = [ref[0].copy(), _logits(5, 2, 9), ref[2].copy()]        # one run lost a class
    with pytest.raises(ExportParityError) as e:
        check_parity("x", ref, cand, ParityLimits(1e-4, 0.99), output_names=["logits"], expected_names=["logits"])
    assert len(e.value.failures) == 1 and "(5, 2)" in e.value.failures[0] and "1 of 3" in e.value.failures[0]
    assert e.value.figures["n"] == 33                                # the matching runs are still compared


def test_check_parity_fails_below_the_agreement_floor_and_lists_every_failure():
    ref = _runs()
    cand = [r.copy() for r in ref]
    cand[0][:8] = -cand[0][:8]               # argmax flips on (most of) 8 of 38 rows
    reported = []
    with pytest.raises(ExportParityError) as e:
        check_parity("x", ref, cand, ParityLimits(max_abs_diff=None, min_agreement=0.99), output_names=["out"],
                     expected_names=["logits"], report=lambda f, c: reported.append(f))
    figures = e.value.figures
    assert figures["agreement"] < 0.99 and reported == [figures]   # reported before the gate raised
    assert len(e.value.failures) == 2
    assert "output names" in e.value.failures[0] and f"{figures['agreement']:.4f}" in e.value.failures[1]
    # no ceiling on |Δlogit| and a floor it meets: the same logits pass
    check_parity("x", ref, cand, ParityLimits(max_abs_diff=None, min_agreement=0.5))


def test_check_parity_bound_is_allclose_with_rtol_and_a_plain_ceiling_without():
    big = [_logits(50, 3) * 20]
    noisy = [big[0] + np.float32(1.5e-4)]
    limits = ParityLimits(max_abs_diff=1e-4, min_agreement=1.0, rtol=1e-4)
    figures, _ = check_parity("cnn", big, noisy, limits)            # small against logits of ~50: passes
    assert figures["tolerance_used"] < 1.0 and figures["atol"] == 1e-4 and figures["rtol"] == 1e-4
    assert limits.meta() == {"max_abs_diff": 1e-4, "rtol": 1e-4, "min_agreement": 1.0}
    ceiling = ParityLimits(max_abs_diff=1e-4, min_agreement=1.0)
    assert ceiling.meta() == {"max_abs_diff": 1e-4, "min_agreement": 1.0}
    with pytest.raises(ExportParityError, match=re.escape("max |Δlogit|")) as e:
        check_parity("int8", big, noisy, ceiling)                   # no rtol: 1e-4 is a hard ceiling
    assert "tolerance_used" not in e.value.figures


def test_check_parity_runner_needs_feeds():
    with pytest.raises(ValueError, match="feeds"):
        check_parity("x", _runs(), lambda f: f, ParityLimits())
