"""The verdict rule on constructed score dicts with known answers."""
from __future__ import annotations

import math

import numpy as np
import pytest

from expunge.verdict import (FORGET_MARGIN, MIN_FLOOR, auc_margin, audit_verdict, degenerate_original, judge,
                             noise_floor, oracle_pairs)

ORACLE = {"forget_acc": 92.0, "retain_acc": 99.0, "test_acc": 95.0, "mia_efficacy": 20.0}


def scored(values: dict[str, float], reference: dict[str, float] = ORACLE) -> dict[str, float]:
    """A score dict as evaluate returns it: the values, UA, and the gaps to ``reference``."""
    s = dict(values, ua=100 - values["forget_acc"])
    ref = dict(reference, ua=100 - reference["forget_acc"])
    for k in ("ua", "retain_acc", "test_acc", "mia_efficacy"):
        s[f"gap_{k}"] = abs(s[k] - ref[k])
    s["avg_gap"] = sum(s[f"gap_{k}"] for k in ("ua", "retain_acc", "test_acc", "mia_efficacy")) / 4
    return s


# the original remembers its forget set: forget accuracy 100%, MIA-efficacy 5% (vs the oracle's 92% and 20%)
ORIGINAL = scored({"forget_acc": 100.0, "retain_acc": 99.5, "test_acc": 95.5, "mia_efficacy": 5.0})
OTHER_ORACLE = scored({"forget_acc": 91.0, "retain_acc": 98.6, "test_acc": 94.2, "mia_efficacy": 22.0})
FLOOR = noise_floor([OTHER_ORACLE], ORACLE)


def test_floor_is_the_oracle_vs_oracle_gap_with_a_minimum():
    assert FLOOR.measured and FLOOR.pairs == 1
    assert FLOOR.of("ua") == pytest.approx(1.0) and FLOOR.of("mia_efficacy") == pytest.approx(2.0)
    assert FLOOR.of("test_acc") == pytest.approx(0.8) and FLOOR.avg_gap == pytest.approx(OTHER_ORACLE["avg_gap"])
    twin = noise_floor([scored(ORACLE)])                  # two oracles that agree exactly: the minimum, not 0
    assert twin.of("ua") == MIN_FLOOR and twin.avg_gap == MIN_FLOOR
    unmeasured = noise_floor([])
    assert not unmeasured.measured and unmeasured.of("retain_acc") == MIN_FLOOR


def test_do_nothing_copy_did_not_forget():
    v = judge(dict(ORIGINAL), ORIGINAL, FLOOR)
    assert v.forgot is False and v.kept is True
    assert "forget accuracy exactly the original's" in v.text and v.short == "did not forget, kept"
    assert v.floors == pytest.approx(ORIGINAL["avg_gap"] / FLOOR.avg_gap)


def test_oracle_of_another_seed_forgot_and_kept():
    v = judge(OTHER_ORACLE, ORIGINAL, FLOOR)
    assert (v.forgot, v.complete, v.kept) == (True, True, True) and v.short == "forgot, kept"
    assert v.floors == pytest.approx(1.0)


def test_forgetting_at_the_cost_of_test_accuracy_did_not_keep():
    v = judge(scored({"forget_acc": 90.0, "retain_acc": 98.5, "test_acc": 85.0, "mia_efficacy": 21.0}),
              ORIGINAL, FLOOR)
    assert (v.forgot, v.kept) == (True, False)
    assert "test accuracy 10 from the oracle's" in v.text


def test_a_small_step_is_not_forgetting():
    # forget accuracy moved by one example's worth: within FORGET_MARGIN floors of the original's gap
    v = judge(scored({"forget_acc": 99.0, "retain_acc": 99.4, "test_acc": 95.4, "mia_efficacy": 6.0}),
              ORIGINAL, FLOOR)
    assert v.forgot is False and v.kept is True
    assert v.forget_gap > v.original_forget_gap - FORGET_MARGIN * 1.5


def test_halfway_is_partly_forgotten():
    # forget accuracy 96% (the original 100%, the oracle 92%): clearly moved, but not to the oracle
    v = judge(scored({"forget_acc": 96.0, "retain_acc": 99.0, "test_acc": 95.0, "mia_efficacy": 12.0}),
              ORIGINAL, FLOOR)
    assert (v.forgot, v.complete, v.kept) == (True, False, True)
    assert v.short == "partly forgot, kept" and "closed 48% of the original's forget gap" in v.text


def test_nothing_to_forget_when_the_original_is_within_the_floor():
    original = scored({"forget_acc": 92.5, "retain_acc": 99.2, "test_acc": 95.1, "mia_efficacy": 21.0})
    v = judge(scored({"forget_acc": 80.0, "retain_acc": 99.0, "test_acc": 95.0, "mia_efficacy": 20.0}),
              original, FLOOR)
    assert v.forgot is None and v.short.startswith("nothing to forget")


def test_unstable_mia_is_left_out_of_the_forget_gap():
    method = dict(OTHER_ORACLE, gap_mia_efficacy=80.0, mia_unstable=1.0)
    v = judge(method, ORIGINAL, FLOOR)
    assert v.forget_gap == pytest.approx(OTHER_ORACLE["gap_ua"]) and "MIA unstable" in v.text
    assert v.forgot is True


def test_oracle_pairs_from_per_seed_oracles():
    b = dict(OTHER_ORACLE, ua=100 - OTHER_ORACLE["forget_acc"])
    a = dict(ORACLE, ua=100 - ORACLE["forget_acc"])
    pairs = oracle_pairs([a, b, {}])
    assert len(pairs) == 1 and pairs[0]["gap_ua"] == pytest.approx(1.0)
    assert pairs[0]["avg_gap"] == pytest.approx(OTHER_ORACLE["avg_gap"])
    assert noise_floor(pairs).avg_gap == pytest.approx(OTHER_ORACLE["avg_gap"])
    unstable = oracle_pairs([a, dict(b, mia_unstable=1.0)])[0]
    assert unstable["avg_gap"] == pytest.approx((1.0 + 0.4 + 0.8) / 3)


def test_degenerate_original_is_named():
    assert degenerate_original({"test_acc": 95.0, "majority_acc": 11.0, "top_class_share": 12.0}) is None
    one_class = degenerate_original({"test_acc": 61.0, "majority_acc": 61.0, "top_class_share": 100.0})
    assert one_class.startswith("WARNING: the original model is degenerate") and "most common class" in one_class
    assert "one class for 100%" in one_class
    collapsed = degenerate_original({"test_acc": 40.0, "majority_acc": 30.0, "top_class_share": 93.0})
    assert "one class for 93%" in collapsed and "most common" not in collapsed
    # a skewed data set predicted well is not degenerate
    assert degenerate_original({"test_acc": 97.0, "majority_acc": 92.0, "top_class_share": 93.0}) is None
    assert degenerate_original({}) is None and math.isnan(judge({}, {}, FLOOR).floors)


def test_audit_verdict_reads_attacks_against_their_baselines():
    same = {"ulira_auc": 0.52, "ulira_baseline_auc": 0.50, "challenge_forget_quality": 0.15,
            "challenge_baseline_forget_quality": 0.16, "lira_auc": 0.55, "lira_oracle_auc": 0.54}
    line = audit_verdict(same, 2)
    assert line.startswith("Verdict (tier 2): not distinguishable from retraining (U-LiRA AUC 0.520 vs 0.500 for "
                           "oracles (margin 0.05)")
    seen = audit_verdict(dict(same, challenge_forget_quality=0.02), 1)
    assert seen.startswith("Verdict (tier 1): DISTINGUISHABLE") and "forgetting quality F 0.020 vs 0.160" in seen
    assert "U-LiRA" not in seen                                  # only the attacks that exceed their baseline
    assert audit_verdict(same, 0).endswith("tier 0: too few models for this to be evidence.")
    # one model's LiRA AUC on 30 forget and 100 test examples: 0.07 above the oracle's is within its noise
    noisy = dict(same, lira_auc=0.563, lira_oracle_auc=0.492)
    assert "not distinguishable" in audit_verdict(noisy, 1, {"forget": 30, "test": 100})
    assert auc_margin(30, 100) == pytest.approx(2 * (131 / (12 * 30 * 100)) ** 0.5)
    assert "DISTINGUISHABLE" in audit_verdict(dict(noisy, lira_auc=0.75), 1, {"forget": 30, "test": 100})
    assert "no attack numbers" in audit_verdict({}, 0)


def test_generated_sample_shares_get_at_least_their_sampling_noise_as_floor():
    from expunge.verdict import noise_floor, sampling_floor

    oracle = {"n_samples": 200.0, "retain_generation_accuracy": 90.0, "unlearning_accuracy": 100.0,
              **{f"gen_acc_class_{k}": 90.0 for k in range(10)}}
    # 20 samples per class: the retained share counts 9 classes' 180 samples, the forgotten one 20
    assert sampling_floor("retain_generation_accuracy", oracle) == pytest.approx(100 * (2 * 0.9 * 0.1 / 180) ** 0.5)
    assert sampling_floor("unlearning_accuracy", oracle) == pytest.approx(100 * (2 * 0.98 * 0.02 / 20) ** 0.5)
    agreeing = {"gap_unlearning_accuracy": 0.0, "gap_retain_generation_accuracy": 0.0, "avg_gap": 1.0}
    floor = noise_floor([agreeing], oracle)     # two oracles that happen to agree exactly
    assert floor.of("retain_generation_accuracy") == pytest.approx(3.162, abs=1e-3)
    far = noise_floor([{**agreeing, "gap_retain_generation_accuracy": 7.0}], oracle)
    assert far.of("retain_generation_accuracy") == 7.0          # a measured floor above the noise is kept


def test_audit_verdict_needs_both_the_margin_and_the_permutation_band():
    banded = {"ulira_auc": 0.62, "ulira_baseline_auc": 0.50, "ulira_band_low": 0.3, "ulira_band_high": 0.70,
              "challenge_forget_quality": 0.15, "challenge_baseline_forget_quality": 0.16,
              "challenge_band_low": math.nan, "lira_auc": 0.55, "lira_oracle_auc": 0.54,
              "lira_oracle_auc_high": 0.6}
    # beyond the margin but inside the band that the spread between models gives: not evidence
    line = audit_verdict(banded, 1, {"forget": 100, "test": 100})
    assert "not distinguishable" in line and "band to 0.700" in line
    assert "DISTINGUISHABLE" in audit_verdict(dict(banded, ulira_band_high=0.6), 1, {"forget": 100, "test": 100})
    # inside the margin, whatever the band says
    assert "not distinguishable" in audit_verdict(dict(banded, ulira_auc=0.53, ulira_band_high=0.51), 1,
                                                  {"forget": 100, "test": 100})
    low_f = dict(banded, challenge_forget_quality=0.02)
    assert "not distinguishable" in audit_verdict(dict(low_f, challenge_band_low=0.01), 1)
    assert "DISTINGUISHABLE" in audit_verdict(dict(low_f, challenge_band_low=0.05), 1)
    assert "not distinguishable" in audit_verdict(dict(banded, lira_auc=0.7, lira_oracle_auc_high=0.75), 1,
                                                  {"forget": 100, "test": 100})
    # a record without bands whose oracles told oracles apart: the margins do not hold, so no verdict either way
    old = {k: v for k, v in banded.items() if "band" not in k and "high" not in k}
    shaky = audit_verdict(dict(old, ulira_baseline_auc=0.28, ulira_auc=0.61), 1, {"forget": 146})
    assert shaky.startswith("Verdict (tier 1): inconclusive: U-LiRA told oracles from oracles with AUC 0.280")
    assert "DISTINGUISHABLE" in audit_verdict(dict(old, ulira_auc=0.8), 1, {"forget": 100, "test": 100})


def test_ulira_permutation_band_holds_when_forget_examples_move_together():
    """φ with a per-model offset shared by every forget example (as a forgotten class gives): exact retraining (one
    distribution for every group) passes the margin at 10 of seeds 0-19 (these among them), never the band; a shift of
    every forget example under the method's models (a kept class) passes both."""
    from expunge.audit.tier2 import ulira, ulira_band

    def phi(rng, shift=0.0):
        return rng.normal(size=(16, 1)) + 0.3 * rng.normal(size=(16, 60)) + shift

    margin = auc_margin(16 * 60 / 2, 16 * 60 / 2)
    for seed in (0, 1, 3):
        rng = np.random.default_rng(seed)
        method, oracles, baseline = phi(rng), phi(rng), phi(rng)
        auc, base = ulira(method, oracles, seed=seed).attack.auc, ulira(baseline, oracles, seed=seed).attack.auc
        assert auc - base > margin                                   # what the margin alone would flag
        assert auc <= ulira_band(method, oracles, seed=seed)[1]
    rng = np.random.default_rng(0)
    method, oracles = phi(rng, shift=3.0), phi(rng)
    assert ulira(method, oracles).attack.auc > ulira_band(method, oracles)[1]


def test_a_generator_verdict_without_attack_evidence_shows_what_it_still_draws():
    same = {"ulira_auc": 0.5, "ulira_baseline_auc": 0.5, "challenge_forget_quality": 0.3,
            "challenge_baseline_forget_quality": 0.3, "lira_auc": 0.5, "lira_oracle_auc": 0.5, "n_models": 16}
    drawn = dict(same, unlearning_accuracy=0.0, reference_unlearning_accuracy=100.0)
    line = audit_verdict(drawn, 1, {"forget": 100, "test": 100})
    assert "not distinguishable" in line and "unlearning accuracy 0.0% against 100.0%" in line
    assert "unlearning accuracy" not in audit_verdict(same, 1, {"forget": 100, "test": 100})
    flagged = audit_verdict(dict(drawn, ulira_auc=0.9), 1, {"forget": 100, "test": 100})
    assert flagged.startswith("Verdict (tier 1): DISTINGUISHABLE") and "unlearning accuracy" not in flagged
