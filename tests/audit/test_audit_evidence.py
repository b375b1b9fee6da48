"""The audit's retain leakage, SWAP-test advantage and challenge variants end to end, on known answers: retraining
(the unlearned models are oracles) stays inside every band and scores 0; doing nothing scores 1 on the scaled
advantage; fine-tuning on the retain set for many more epochs than the oracles trained leaks retain membership."""
from __future__ import annotations

import json

import numpy as np
import pytest

import expunge
from expunge.audit import audit, write_audit_reports
from expunge.audit.report import text_summary
from expunge.data import generated_classification

RECIPE = dict(epochs=8, lr=0.05, batch_size=32)       # oracles that have not yet memorised their training data
NOTHING = dict(epochs=1, lr=1e-5)                      # the originals as they were: they kept the forget set
MEMORISE = dict(epochs=40, lr=0.05)                    # 40 more epochs on the retain set


@pytest.fixture(scope="module")
def audits():
    train, test = generated_classification(n=400, seed=0)
    forget, retain = expunge.split_forget(train, fraction=0.1, seed=0)
    template = expunge.model("mlp", train, hidden=[64])
    run = lambda method, args: audit(template, train, test, forget=forget, retain=retain, method=method,
                                     method_args=args, recipe=RECIPE, n_models=8)
    return {"retrain": run("retrain", None), "nothing": run("finetune", NOTHING),
            "memorise": run("finetune", MEMORISE)}


def test_retraining_stays_inside_the_bands_and_scores_zero(audits):
    r = audits["retrain"]
    s = r.summary()
    for key in ("auc", "tpr_at_1pct"):
        assert s[f"retain_leakage_{key}_exceeds"] == 0.0 and s[f"retain_leakage_audited_{key}_exceeds"] == 0.0
        assert s[f"retain_leakage_{key}_band_low"] <= s[f"retain_leakage_{key}_difference"] \
            <= s[f"retain_leakage_{key}_band_high"]
    assert "retain_leakage_tpr_at_0_1pct" not in s       # 8 × 100 test examples cannot resolve 0.1% FPR
    assert s["swap_advantage_ci_low"] <= 0.0 <= s["swap_advantage_ci_high"] and abs(s["swap_advantage"]) < 0.1
    assert s["swap_advantage_scaled_ci_low"] <= 0.0 <= s["swap_advantage_scaled_ci_high"]
    assert s["swap_advantage_original"] > 0.3          # the originals kept the forget set: the scale is meaningful
    # retraining ignores the original, so one original unlearned K times gives the very models of the K originals
    assert s["challenge_neurips2023_forget_quality"] == s["challenge_forget_quality"]
    assert np.array_equal(r.tier2.challenge_neurips2023.epsilons, r.tier2.challenge.epsilons)


def test_doing_nothing_scores_one_on_the_scaled_advantage(audits):
    s = audits["nothing"].summary()
    assert s["swap_advantage_scaled"] == pytest.approx(1.0, abs=0.05)
    assert s["swap_advantage_scaled_ci_low"] > 0.8 and s["swap_advantage"] > s["swap_advantage_baseline_ci_high"]
    # one original fine-tuned at lr 1e-5 K times: K near-identical models, ε at its cap, F = 0
    assert s["challenge_neurips2023_forget_quality"] == 0.0 < s["challenge_baseline_forget_quality"]


def test_training_longer_on_retain_leaks_retain_membership(audits):
    s = audits["memorise"].summary()
    assert s["retain_leakage_auc_exceeds"] == 1.0 and s["retain_leakage_audited_auc_exceeds"] == 1.0
    assert s["retain_leakage_auc_difference"] > 0.03
    assert s["retain_leakage_auc"] > s["retain_leakage_oracle_auc"]


def test_reports_name_the_new_scores(tmp_path, audits):
    r = audits["memorise"]
    paths = write_audit_reports(r, tmp_path, title="t")
    md, html = paths["md"].read_text(), paths["html"].read_text()
    for text in ("Retain leakage", "LEAKS", "Calibrated advantage (SWAP test)", "1 = kept the data",
                 "challenge, across originals (K originals, one run each)",
                 "challenge, NeurIPS 2023 protocol (one original, K runs)"):
        assert text in md and text in html
    printed = text_summary(r)
    assert "Retain leakage" in printed and "SWAP test" in printed and "NeurIPS 2023 protocol" in printed
    data = json.loads(paths["json"].read_text())
    assert set(data["challenge_variants"]) == {"across_originals", "neurips2023"}
    assert "one original unlearned K times" in data["challenge_variants"]["neurips2023"]["protocol"]
    assert data["retain_leakage"]["exceeds"]["auc"] is True and data["retain_leakage"]["n_models"] == 8
    assert data["advantage"]["method"]["value"] == pytest.approx(r.advantage.method.value)
    assert len(data["advantage"]["method"]["per_pair"]) == 8
    assert data["sizes"]["swap_examples"] == 30
