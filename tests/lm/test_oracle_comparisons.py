"""The language scores that compare a model with its oracle, recomputed independently on the tiny trained task:
forget quality is the KS-test p-value of both models' per-question truth ratios (and falls far below 0.05 for the
original against an oracle that never saw 36 forget questions); PrivLeak is MUSE's number and is left out, with a
flag, when the oracle's AUC makes it undefined; rows of retain that are also world rows are scored once, as world
facts."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

import expunge  # noqa: E402
from expunge.data import split_forget  # noqa: E402
from expunge.data.text import records_of, with_answers  # noqa: E402
from expunge.lm.evaluate import evaluate_language  # noqa: E402
from expunge.lm.losses import sequence_loss  # noqa: E402
from tests.lm_helpers import tiny_qa_task  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    return tiny_qa_task()


def mean_nll(model, dataset, answers) -> np.ndarray:
    """Each row's mean answer-token NLL under ``model`` with ``answers`` in place of its own."""
    data = with_answers(dataset, answers)
    with torch.no_grad():
        return sequence_loss(model(data.x), data.y).double().numpy()


def truth_ratios(model, dataset) -> np.ndarray:
    """Per question R = P_wrong / P_correct: exp(NLL of the paraphrased answer − the mean NLL of the perturbed
    answers), every question of these sets having one row and three perturbed answers."""
    records = records_of(dataset)
    correct = mean_nll(model, dataset, [r["paraphrased_answer"] for r in records])
    wrong = np.stack([mean_nll(model, dataset, [r["perturbed_answers"][j] for r in records]) for j in range(3)], 1)
    return np.exp(correct - wrong.mean(1))


def test_forget_quality_is_the_ks_p_value_of_both_models_truth_ratios(tiny):
    from scipy.stats import ks_2samp

    s = evaluate_language(tiny.original, forget=tiny.forget, retain=tiny.retain, reference=tiny.oracle)
    mine, oracle = truth_ratios(tiny.original, tiny.forget), truth_ratios(tiny.oracle, tiny.forget)
    assert len(mine) == len(tiny.forget) == 9
    assert s["forget_quality"] == pytest.approx(ks_2samp(mine, oracle).pvalue, rel=1e-9)
    assert s["forget_truth_ratio"] == pytest.approx(np.mean(np.minimum(mine, 1 / mine)), rel=1e-5)


def test_forget_quality_of_the_original_is_far_below_0_05_with_36_forget_questions(tiny):
    from scipy.stats import ks_2samp

    forget, retain = split_forget(tiny.data, where=lambda person: np.asarray(person) < 12)
    oracle = expunge.unlearn(tiny.original, forget=forget, retain=retain, method="retrain", seed=0)
    s = evaluate_language(tiny.original, forget=forget, retain=retain, reference=oracle, max_new_tokens=8)
    mine, theirs = truth_ratios(tiny.original, forget), truth_ratios(oracle, forget)
    assert len(mine) == 36
    assert s["forget_quality"] == pytest.approx(ks_2samp(mine, theirs).pvalue, rel=1e-9)
    assert s["forget_quality"] < 1e-3                     # the original still tells true from false answers
    assert np.median(mine) < np.median(theirs)


def test_privleak_is_left_out_and_flagged_when_the_oracles_auc_leaves_it_undefined(tiny):
    as_oracle = evaluate_language(tiny.original, forget=tiny.forget, retain=tiny.retain, test=tiny.holdout)
    assert as_oracle["mia_min_k_auc"] == 1.0              # MUSE's AUC of this "oracle" is 0: PrivLeak divides by it
    s = evaluate_language(tiny.oracle, forget=tiny.forget, retain=tiny.retain, test=tiny.holdout,
                          reference=tiny.original)
    assert "privleak" not in s and s["privleak_undefined"] == 1.0
    fine = evaluate_language(tiny.original, forget=tiny.forget, retain=tiny.retain, test=tiny.holdout,
                             reference=tiny.oracle)
    assert "privleak_undefined" not in fine and np.isfinite(fine["privleak"])


def test_retain_rows_that_are_also_world_rows_are_scored_once_as_world_facts(tiny):
    n = len(tiny.retain)
    world = torch.utils.data.Subset(tiny.retain, list(range(n - 9, n)))        # rows of retain's own base dataset
    only_retain = torch.utils.data.Subset(tiny.retain, list(range(n - 9)))
    overlapping = evaluate_language(tiny.original, forget=tiny.forget, retain=tiny.retain, world=world,
                                    reference=tiny.oracle)
    disjoint = evaluate_language(tiny.original, forget=tiny.forget, retain=only_retain, world=world,
                                 reference=tiny.oracle)
    assert overlapping == disjoint
    whole = evaluate_language(tiny.original, forget=tiny.forget, retain=tiny.retain, reference=tiny.oracle)
    assert whole["retain_prob"] != overlapping["retain_prob"]                  # the world rows did count there
    with pytest.raises(ValueError, match="retain holds only rows that are also in world"):
        evaluate_language(tiny.original, forget=tiny.forget, retain=world, world=world)
