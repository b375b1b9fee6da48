"""The two challenge-score variants, named for what they are: across originals (K originals, one run each) and the
NeurIPS 2023 protocol (one original, K runs), each checked against a hand computation."""
from __future__ import annotations

import math

import numpy as np
import pytest

from expunge.audit.tier2 import CHALLENGE_VARIANTS, tier2
from expunge.metrics.forgetting import DELTA


def test_both_variants_match_hand_computations():
    o = np.array([[10, 1, 14], [11, 2, 15], [12, 3, 16], [3, 4, 17]], float)     # 4 oracles, 3 forget examples
    # NeurIPS 2023 protocol: one original unlearned 4 times. Example 0: the best threshold keeps 3 of 4 oracle
    # values and 1 of 4 unlearned, ε = log(0.75 − δ) − log(0.25) = 1.0986, H = 2^(−⌊2.197⌋) = 1/4; example 1: the
    # same values as the oracles, ε = 0, H = 1; example 2: separated, ε = ∞ ≥ ⌈ln 3⌉ = 2, H = 0. F = 1.25 / 3.
    one_original = np.array([[0, 1, 1], [1, 2, 2], [2, 3, 3], [11.5, 4, 4]], float)
    # across originals: 4 originals unlearned once each, their φ equal to the oracles' on every example: F = 1
    across = o.copy()
    rng = np.random.default_rng(0)
    side = lambda: rng.normal(size=(4, 5))
    phi = {g: {"forget": f, "retain": side(), "test": side()}
           for g, f in (("unlearned", across), ("oracle", o), ("baseline", o + 0.5), ("one_original", one_original))}
    acc = {"unlearned": {"retain": np.full(4, 90.0), "test": np.full(4, 80.0)},
           "oracle": {"retain": np.full(4, 100.0), "test": np.full(4, 80.0)},
           "baseline": {"retain": np.full(4, 100.0), "test": np.full(4, 80.0)},
           "one_original": {"retain": np.array([90.0, 70.0, 90.0, 70.0]), "test": np.full(4, 60.0)}}
    t2 = tier2(phi, acc)
    s = t2.summary()
    assert t2.challenge_neurips2023.epsilons == pytest.approx([math.log(3 - 4 * DELTA), 0.0, 50.0], abs=1e-12)
    assert s["challenge_neurips2023_forget_quality"] == pytest.approx(1.25 / 3)
    assert s["challenge_neurips2023_final"] == pytest.approx(1.25 / 3 * 0.8 * 0.75)     # RA 80/100, TA 60/80
    assert s["challenge_forget_quality"] == 1.0 and s["challenge_final"] == pytest.approx(0.9)
    assert set(t2.challenge_variants()) == set(CHALLENGE_VARIANTS) == {"across_originals", "neurips2023"}
    assert "one original unlearned K times" in CHALLENGE_VARIANTS["neurips2023"]


def test_without_the_one_original_runs_only_the_across_originals_variant_is_reported():
    rng = np.random.default_rng(1)
    phi = {g: {s: rng.normal(size=(4, 6)) for s in ("forget", "retain", "test")}
           for g in ("unlearned", "oracle", "baseline")}
    acc = {g: {"retain": np.full(4, 99.0), "test": np.full(4, 90.0)} for g in phi}
    t2 = tier2(phi, acc)
    assert t2.challenge_neurips2023 is None and set(t2.challenge_variants()) == {"across_originals"}
    assert not any(k.startswith("challenge_neurips2023") for k in t2.summary())
