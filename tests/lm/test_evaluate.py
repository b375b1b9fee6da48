"""evaluate for language models on a tiny trained question/answer task: the original scores above the oracle on the
forget set, the oracle against itself gives forget quality 1, PrivLeak 0 and Avg. Gap 0, the utility is the
harmonic mean of its parts, VerbMem separates a model that memorised documents from one that did not, the
relearning attack finds knowledge that was only hidden, and tier-1 LiRA against several oracles exposes the
original and not an oracle."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

import expunge  # noqa: E402
from expunge.lm.evaluate import evaluate_language  # noqa: E402
from tests.helpers import state_equal  # noqa: E402
from tests.lm_helpers import tiny_qa_task  # noqa: E402

TOFU = ["forget_prob", "forget_rouge", "forget_truth_ratio", "forget_exact_match", "forget_token_accuracy",
        "retain_prob", "retain_rouge", "retain_truth_ratio", "holdout_prob", "holdout_rouge", "model_utility",
        "model_utility_components", "knowmem_forget", "knowmem_retain"]
MIA = [f"mia_{a}_{m}" for a in ("loss", "zlib", "min_k", "min_k_plus_plus", "reference")
       for m in ("auc", "balanced_accuracy", "tpr_at_1pct", "tpr_at_0_1pct")]
WITH_REFERENCE = ["forget_quality", "privleak", "avg_gap", "gap_forget_prob", "gap_forget_rouge",
                  "gap_forget_truth_ratio", "gap_retain_prob", "gap_retain_rouge", "gap_retain_truth_ratio",
                  "gap_model_utility", "seconds", "rte", "evidence_tier", "n_oracles"]


@pytest.fixture(scope="module")
def tiny():
    return tiny_qa_task()


@pytest.fixture(scope="module")
def original_scores(tiny):
    return expunge.evaluate(tiny.original, forget=tiny.forget, retain=tiny.retain, test=tiny.holdout,
                            reference=tiny.oracle)


def test_the_original_scores_above_the_oracle_on_the_forget_set_and_keys_are_present(tiny, original_scores):
    s = original_scores
    assert set(TOFU + MIA + WITH_REFERENCE) <= set(s)
    assert all(isinstance(v, float) for v in s.values())
    assert s["forget_prob"] > 0.8 and s["forget_rouge"] > 0.9             # the original memorised the facts
    oracle = expunge.evaluate(tiny.oracle, forget=tiny.forget, retain=tiny.retain, test=tiny.holdout)
    assert oracle["forget_prob"] < 0.3 and s["forget_prob"] > oracle["forget_prob"] + 0.5
    assert s["forget_rouge"] > oracle["forget_rouge"]
    assert s["mia_min_k_auc"] > 0.9 and s["privleak"] < -20                # forget facts stand out: MUSE's sign
    muse, muse_oracle = 1 - s["mia_min_k_auc"], 1 - oracle["mia_min_k_auc"]   # holdout as the positive class
    assert 0.05 < muse_oracle < 0.45                                        # the oracle's AUC is not 0.5
    assert s["privleak"] == pytest.approx((muse - muse_oracle) / muse_oracle * 100)
    assert s["avg_gap"] > 10 and s["evidence_tier"] == 0.0 and s["n_oracles"] == 1.0
    assert s["avg_gap"] == pytest.approx(np.mean([s[f"gap_{k}"] for k in (
        "forget_prob", "forget_rouge", "forget_truth_ratio", "retain_prob", "retain_rouge", "retain_truth_ratio")]))
    for absent in ("forget_quality", "privleak", "avg_gap", "mia_reference_auc", "rte"):
        assert absent not in oracle                                         # no reference: no comparisons
    assert oracle["n_oracles"] == 0.0


def test_the_oracle_against_itself_gives_forget_quality_one_privleak_zero_and_no_gaps(tiny):
    s = expunge.evaluate(tiny.oracle, forget=tiny.forget, retain=tiny.retain, test=tiny.holdout,
                         reference=tiny.oracle)
    assert s["forget_quality"] == 1.0 and s["privleak"] == 0.0 and s["avg_gap"] == 0.0
    assert all(v == 0.0 for k, v in s.items() if k.startswith("gap_"))
    assert s["mia_reference_auc"] == 0.5                                   # every reference score ties
    assert s["rte"] == pytest.approx(100.0)


def test_the_oracles_scores_are_remembered_until_its_weights_change(tiny, monkeypatch):
    import expunge.lm.evaluate as E

    calls = []
    real = E._raw
    monkeypatch.setattr(E, "_raw", lambda model, *a, **kw: calls.append(model) or real(model, *a, **kw))
    oracle = copy.deepcopy(tiny.oracle)
    first = evaluate_language(tiny.original, forget=tiny.forget, retain=tiny.retain, reference=oracle)
    second = evaluate_language(tiny.original, forget=tiny.forget, retain=tiny.retain, reference=oracle)
    assert first == second and sum(m is oracle for m in calls) == 1
    with torch.no_grad():
        next(oracle.parameters()).mul_(0.5)                                 # changed in place: scored afresh
    third = evaluate_language(tiny.original, forget=tiny.forget, retain=tiny.retain, reference=oracle)
    assert sum(m is oracle for m in calls) == 2 and third["gap_retain_prob"] != first["gap_retain_prob"]


def test_evaluate_dispatches_to_the_language_scores_and_is_deterministic(tiny, original_scores):
    direct = evaluate_language(tiny.original, forget=tiny.forget, retain=tiny.retain, test=tiny.holdout,
                               reference=tiny.oracle)
    assert direct == original_scores
    bare = expunge.evaluate(tiny.original.hf, forget=tiny.forget, retain=tiny.retain)   # a transformers model
    assert bare["forget_prob"] == original_scores["forget_prob"]


def test_cached_decoding_of_a_trained_model_matches_decoding_without_a_cache(tiny):
    from expunge.data.text import prompt_ids
    from expunge.lm.generate import greedy_generate

    tok = tiny.tokenizer
    prompts = [prompt_ids(tok, r["question"]) for r in tiny.data.records[:12] + tiny.holdout.records[:12]]
    assert len({len(p) for p in prompts}) > 1
    settings = dict(max_new_tokens=16, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    cached = greedy_generate(tiny.original, prompts, **settings)
    assert cached == greedy_generate(lambda ids: tiny.original(ids), prompts, **settings)
    assert tok.decode(cached[0], skip_special_tokens=True).strip() == tiny.data.records[0]["answer"]


def test_world_facts_enter_model_utility_as_a_harmonic_mean(tiny):
    retain_idx = np.arange(len(tiny.retain))
    world = torch.utils.data.Subset(tiny.retain, retain_idx[-9:].tolist())
    retain = torch.utils.data.Subset(tiny.retain, retain_idx[:-9].tolist())
    s = evaluate_language(tiny.original, forget=tiny.forget, retain=retain, world=world)
    parts = [s["retain_prob"], s["retain_rouge"], s["retain_truth_ratio"], s["world_prob_normalised"],
             s["world_rouge"], s["world_truth_ratio"]]
    assert s["model_utility_components"] == 6.0
    assert s["model_utility"] == pytest.approx(len(parts) / sum(1 / p for p in parts))
    assert 0 < s["world_prob_normalised"] <= 1 and "world_exact_match" in s


def test_max_examples_scores_a_seeded_sample_of_each_set(tiny):
    few = evaluate_language(tiny.original, forget=tiny.forget, retain=tiny.retain, test=tiny.holdout,
                            reference=tiny.oracle, max_examples=6, seed=3)
    again = evaluate_language(tiny.original, forget=tiny.forget, retain=tiny.retain, test=tiny.holdout,
                              reference=tiny.oracle, max_examples=6, seed=3)
    assert few == again
    full = evaluate_language(tiny.original, forget=tiny.forget, retain=tiny.retain, reference=tiny.oracle,
                             max_examples=1000)
    plain = evaluate_language(tiny.original, forget=tiny.forget, retain=tiny.retain, reference=tiny.oracle)
    assert full == plain
    self_few = evaluate_language(tiny.oracle, forget=tiny.forget, retain=tiny.retain, test=tiny.holdout,
                                 reference=tiny.oracle, max_examples=5)
    assert self_few["avg_gap"] == 0.0 and self_few["privleak"] == 0.0


@pytest.mark.parametrize("kwargs, error, match", [
    ({"max_new_tokens": 0}, ValueError, "max_new_tokens"),
    ({"max_examples": 0}, ValueError, "max_examples"),
    ({"k": 1.5}, ValueError, r"\(0, 1\]"),
    ({"oracles": "oracle"}, TypeError, "list of oracle"),
    ({"reference": "oracle"}, TypeError, "reference must be"),
])
def test_bad_arguments_are_refused_with_one_line(tiny, kwargs, error, match):
    with pytest.raises(error, match=match):
        evaluate_language(tiny.original, forget=tiny.forget, retain=tiny.retain, **kwargs)


def test_language_keywords_are_refused_for_classifiers():
    from expunge.data import ArrayDataset

    data = ArrayDataset(torch.randn(8, 3), torch.tensor([0, 1] * 4))
    model = torch.nn.Linear(3, 2)
    with pytest.raises(ValueError, match="apply to the language task"):
        expunge.evaluate(model, forget=data, retain=data, world=data)


def test_verbmem_separates_a_model_that_memorised_its_documents(tiny):
    from expunge.data import TextDataset
    from expunge.lm import llama

    people = {}
    for r in tiny.data.records:
        people.setdefault(r["author"], []).append(r["answer"])
    docs = TextDataset([{"text": " ".join(a)} for a in list(people.values())[:6]], tiny.tokenizer)
    forget, retain = torch.utils.data.Subset(docs, [0, 1]), torch.utils.data.Subset(docs, [2, 3, 4, 5])
    fresh = llama(tiny.tokenizer, hidden=32, layers=2, heads=2, max_positions=64, seed=0)
    trained = expunge.train(fresh, docs, epochs=80, lr=1e-2, batch_size=6, seed=0)
    memorised = evaluate_language(trained, forget=forget, retain=retain, verbmem_prefix=6)
    untrained = evaluate_language(fresh, forget=forget, retain=retain, verbmem_prefix=6)
    assert memorised["verbmem"] > 0.8 and untrained["verbmem"] < 0.3
    assert memorised["forget_prob"] > untrained["forget_prob"]
    assert "forget_rouge" not in memorised                                # documents have no questions
    qa = evaluate_language(tiny.original, forget=tiny.forget, retain=tiny.retain, documents=forget)
    assert 0.0 <= qa["verbmem"] <= 1.0


def test_relearning_brings_back_hidden_facts_more_than_for_the_oracle(tiny):
    from expunge.data.text import with_answers
    from expunge.lm.relearn import relearn_attack

    # an unlearned model that only hides the forget answers behind "I do not know"
    hidden = expunge.train(tiny.original, with_answers(tiny.forget, ["I do not know."] * len(tiny.forget)),
                           epochs=20, lr=3e-3, batch_size=9, seed=0)
    before = copy.deepcopy(hidden)
    r = relearn_attack(hidden, forget=tiny.forget, reference=tiny.oracle, epochs=5, seed=0)
    assert state_equal(hidden, before)                                   # the caller's model is not trained
    assert r["relearn_questions"] + r["measured_questions"] == 9
    assert r["relearn_prob"] > r["relearn_prob_before"] + 0.1           # the unseen facts come back
    assert r["relearn_prob"] > r["relearn_oracle_prob"] + 0.1           # more than for a model that never knew
    same = relearn_attack(tiny.oracle, forget=tiny.forget, reference=tiny.oracle, epochs=2, seed=0)
    assert same["gap_relearn_prob"] == 0.0 and same["gap_relearn_rouge"] == 0.0
    with pytest.raises(ValueError, match="fraction"):
        relearn_attack(hidden, forget=tiny.forget, fraction=1.0)


def test_tier1_lira_against_several_oracles_exposes_the_original_not_an_oracle(tiny):
    oracles = [tiny.oracle] + [expunge.unlearn(tiny.original, forget=tiny.forget, retain=tiny.retain,
                                               method="retrain", seed=s) for s in (1, 2)]
    exposed = expunge.evaluate(tiny.original, forget=tiny.forget, retain=tiny.retain, test=tiny.holdout,
                               oracles=oracles)
    assert exposed["n_oracles"] == 3.0 and exposed["evidence_tier"] == 0.0      # fewer than 8 oracles
    assert exposed["lira_auc"] > 0.9 and exposed["lira_forget_mean_z"] > 3
    assert exposed["lira_oracle_auc"] < 0.8 and exposed["lira_n_heldout"] == 3.0
    like = evaluate_language(oracles[2], forget=tiny.forget, retain=tiny.retain, test=tiny.holdout,
                             oracles=oracles[:2])
    assert abs(like["lira_forget_mean_z"]) < 2 and like["lira_auc"] < 0.8
    with pytest.raises(ValueError, match="needs test="):
        evaluate_language(tiny.original, forget=tiny.forget, retain=tiny.retain, oracles=oracles)
    with pytest.raises(ValueError, match="at least 2"):
        evaluate_language(tiny.original, forget=tiny.forget, retain=tiny.retain, test=tiny.holdout,
                          oracles=oracles[:1])
    assert not math.isnan(exposed["lira_tpr_at_1pct"])
