"""Language-model metrics and text membership attacks against known answers: ROUGE-L against the rouge-score
package, truth ratio, forget quality, model utility and PrivLeak by hand, Min-K% and Min-K%++ on a hand-made
logits tensor, zlib against zlib, greedy decoding against a hand-made causal model."""
from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
import torch

from expunge.lm import attacks as A
from expunge.lm import metrics as M
from expunge.lm.generate import greedy_generate
from expunge.metrics.roc import roc_auc

PAIRS = [
    ("The cat sat on the mat.", "the cat is on the mat"),
    ("Born in Lisbon, Portugal in 1962", "She was born in Porto, Portugal, in 1962."),
    ("Jane Doe wrote 'Night Rain' (2001).", "Night rain was written by Jane"),
    ("a b c d e f", "f e d c b a"),
    ("Hello, WORLD!!", "hello world"),
    ("", "anything at all"),
    ("something", ""),
    ("--- ...", "word"),
    ("Café über naïve 42", "cafe uber naive 42"),
    ("x y x y x y", "y x y"),
    ("Her father was a baker and her mother a nurse", "her mother was a nurse, her father a baker"),
]


@pytest.mark.parametrize("reference, prediction", PAIRS)
def test_rouge_l_matches_the_rouge_score_package(reference, prediction):
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
    expected = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False).score(reference, prediction)["rougeL"]
    got = M.rouge_l(reference, prediction)
    assert got.recall == pytest.approx(expected.recall, abs=1e-12)
    assert got.precision == pytest.approx(expected.precision, abs=1e-12)
    assert got.f1 == pytest.approx(expected.fmeasure, abs=1e-12)


def test_rouge_l_by_hand_and_vectorised_forms():
    assert M.lcs_length("abcbdab", "bdcaba") == 4
    r = M.rouge_l("the cat sat on the mat", "the cat on a mat")      # LCS: the cat on mat = 4
    assert (r.recall, r.precision) == (4 / 6, 4 / 5)
    assert r.f1 == pytest.approx(2 * (4 / 6) * (4 / 5) / (4 / 6 + 4 / 5))
    assert M.rouge_l_recall(["a b", "c"], ["a", "d"]).tolist() == [0.5, 0.0]
    assert M.rouge_l_f1(["a b"], ["a"]).tolist() == [pytest.approx(2 / 3)]
    assert M.exact_match(["Paris, France.", "Paris"], ["paris france", "Paris France"]).tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="pair up"):
        M.rouge_l_recall(["a"], ["a", "b"])


def test_answer_probability_is_exp_of_minus_mean_nll():
    assert M.answer_probability([0.0, math.log(2)]).tolist() == pytest.approx([1.0, 0.5])


def test_truth_ratio_geometric_and_arithmetic_by_hand():
    correct = np.array([1.0, 0.5])
    wrong = np.array([[0.5, 2.0], [3.0, np.nan]])       # the second question has one perturbed answer
    geo = M.truth_ratio(correct, wrong)
    assert geo[0] == pytest.approx(math.exp(-1.25) / math.exp(-1.0))
    assert geo[1] == pytest.approx(math.exp(-3.0) / math.exp(-0.5))
    ari = M.truth_ratio(correct, wrong, mean="arithmetic")
    assert ari[0] == pytest.approx((math.exp(-0.5) + math.exp(-2.0)) / 2 / math.exp(-1.0))
    assert ari[1] == pytest.approx(geo[1])
    with pytest.raises(ValueError, match="mean must be one of"):
        M.truth_ratio(correct, wrong, mean="harmonic")
    with pytest.raises(ValueError, match="at least one perturbed"):
        M.truth_ratio(correct, np.array([[1.0], [np.nan]]))


def test_truth_scores_and_normalised_probability_by_hand():
    r = np.array([0.5, 2.0, 1.0])
    assert M.truth_score_forget(r) == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert M.truth_score_retain(r) == pytest.approx((0.5 + 0.0 + 0.0) / 3)
    p = M.normalised_probability([math.log(2)], [[math.log(4), math.log(4)]])    # 0.5 / (0.5 + 0.25 + 0.25)
    assert p.tolist() == [pytest.approx(0.5)]


def test_forget_quality_is_one_for_identical_truth_ratios_and_small_for_shifted_ones():
    rng = np.random.default_rng(0)
    r = rng.lognormal(size=200)
    assert M.forget_quality(r, r.copy()) == 1.0
    assert M.forget_quality(r, r * 5.0) < 1e-10
    s = rng.lognormal(size=150) * 1.5
    assert M.forget_quality(r, s) == pytest.approx(M.forget_quality(1 / r, 1 / s))   # KS: monotone maps
    with pytest.raises(ValueError, match="both models"):
        M.forget_quality([], r)


def test_model_utility_is_the_harmonic_mean_and_zero_with_a_zero_component():
    assert M.model_utility([0.5, 0.25, 1.0]) == pytest.approx(3 / (2 + 4 + 1))
    assert M.model_utility({"p": 0.4, "rouge": 0.4}) == pytest.approx(0.4)
    assert M.model_utility([0.9, 0.0, 0.8]) == 0.0
    with pytest.raises(ValueError, match="non-negative"):
        M.model_utility([0.5, float("nan")])


def test_privleak_is_muses_number_with_the_holdout_as_the_positive_class():
    # membership AUCs with the forget set as members: 0.9 for the model, 0.7 for the oracle; MUSE's AUCs (holdout
    # positive) are 0.1 and 0.3, so PrivLeak = (0.1 - 0.3) / 0.3 * 100 = -66.67: under-unlearned is negative
    assert M.privleak(0.9, 0.7) == pytest.approx(-200.0 / 3.0)
    assert M.privleak(0.6, 0.7) == pytest.approx(100.0 / 3.0)             # (0.4 - 0.3) / 0.3: over-unlearned
    assert M.privleak(0.7, 0.7) == 0.0
    assert M.privleak(1.0, 0.25) == pytest.approx(-100.0)                 # MUSE's AUC 0: the floor
    # MUSE's AUC from its own orientation: forget labelled 0, holdout 1, score = mean low-token log-probability
    forget_scores, holdout_scores = np.array([-0.1, -0.2, -0.9]), np.array([-0.5, -1.5, -0.3])
    pairs = [(h > f) + 0.5 * (h == f) for h in holdout_scores for f in forget_scores]
    muse_auc = sum(pairs) / len(pairs)
    assert muse_auc == pytest.approx(2 / 9)                               # holdout above forget in 2 of 9 pairs
    assert roc_auc(forget_scores, holdout_scores) == pytest.approx(1 - muse_auc)   # forget as members
    with pytest.raises(ValueError, match="AUC in"):
        M.privleak(1.2, 0.5)
    with pytest.raises(ValueError, match="undefined"):
        M.privleak(0.9, 1.0)                                               # the oracle's MUSE AUC is 0


# ---------------------------------------------------------------------------------------------- attacks by hand
def _hand_logits():
    """One sequence of 5 tokens over a vocabulary of 3: [bos, 0, 1, 2, eos=2]; labels on the last four.
    Next-token distributions (positions 0..3): [.5,.25,.25], [.8,.1,.1], [1/3,1/3,1/3], [.5,.25,.25]."""
    dists = [[0.5, 0.25, 0.25], [0.8, 0.1, 0.1], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.25, 0.25], [0.2, 0.3, 0.5]]
    logits = torch.tensor(dists).log().unsqueeze(0)
    labels = torch.tensor([[-100, 0, 1, 2, 2]])
    return dists, logits, labels


def test_min_k_by_hand():
    _, logits, labels = _hand_logits()
    stats = A.sequence_statistics(logits, labels, k=0.4)
    # targets' log-probs: log .5, log .1, log 1/3, log .25 (eos, left out of Min-K)
    tokens = [math.log(0.5), math.log(0.1), math.log(1 / 3)]
    assert stats["min_k"].item() == pytest.approx(math.log(0.1))                     # ⌊0.4·3⌋ = 1 token
    assert A.sequence_statistics(logits, labels, k=0.7)["min_k"].item() == pytest.approx(
        (math.log(0.1) + math.log(1 / 3)) / 2)                                       # ⌊0.7·3⌋ = 2 tokens
    assert A.sequence_statistics(logits, labels, k=1.0)["min_k"].item() == pytest.approx(sum(tokens) / 3)
    all_four = tokens + [math.log(0.25)]
    assert stats["mean_nll"].item() == pytest.approx(-sum(all_four) / 4)
    assert stats["n_tokens"].item() == 4
    assert stats["correct"].item() == 1          # argmax predicts token 0 at position 0 only (ties go to 0)


def _z(dist, token):
    mu = sum(p * math.log(p) for p in dist)
    var = sum(p * math.log(p) ** 2 for p in dist) - mu ** 2
    return (math.log(dist[token]) - mu) / math.sqrt(max(var, 1e-6))


def test_min_k_plus_plus_by_hand():
    dists, logits, labels = _hand_logits()
    z = [_z(dists[0], 0), _z(dists[1], 1), _z(dists[2], 2)]
    assert z[0] == pytest.approx(1.0) and z[2] == pytest.approx(0.0, abs=1e-6)   # [.5,.25,.25]: σ = ½ ln 2
    got = A.sequence_statistics(logits, labels, k=0.4)["min_k_plus_plus"].item()
    assert got == pytest.approx(min(z), abs=1e-3)
    got = A.sequence_statistics(logits, labels, k=0.7)["min_k_plus_plus"].item()
    assert got == pytest.approx(sum(sorted(z)[:2]) / 2, abs=1e-3)


def test_min_k_on_a_padded_batch_matches_each_row_alone():
    torch.manual_seed(0)
    logits = torch.randn(2, 7, 5)
    labels = torch.tensor([[-100, -100, 1, 2, 3, 4, 0], [-100, 2, 2, 1, -100, -100, -100]])
    both = A.sequence_statistics(logits, labels)
    alone = A.sequence_statistics(logits[1:, :4], labels[1:, :4])
    for key in ("min_k", "min_k_plus_plus", "mean_nll"):
        assert both[key][1].item() == pytest.approx(alone[key][0].item(), rel=1e-6)
    assert A.without_last(torch.tensor([[True, True, False], [False, True, False]])).tolist() == \
        [[True, False, False], [False, True, False]]


def test_sequence_nll_agrees_with_the_training_loss_per_sequence():
    from expunge.lm.losses import sequence_loss

    torch.manual_seed(1)
    logits = torch.randn(3, 6, 9)
    labels = torch.tensor([[-100, 4, 5, 6, -100, -100], [-100, -100, 1, 2, 3, 8], [-100, 0, -100, -100, -100, -100]])
    stats = A.sequence_statistics(logits, labels)
    assert stats["mean_nll"].tolist() == pytest.approx(sequence_loss(logits, labels).tolist(), rel=1e-6)
    assert stats["n_tokens"].tolist() == [3, 4, 1]


def test_zlib_score_uses_the_compressed_length():
    text = "Her first novel, The Quiet Harbour, appeared in 1987."
    assert A.zlib_length(text) == len(zlib.compress(text.encode("utf-8")))
    assert A.zlib_scores([2.0], [text]).tolist() == [pytest.approx(-2.0 / len(zlib.compress(text.encode())))]


def test_text_attacks_score_members_higher_and_use_the_roc_code():
    members = {"mean_nll": np.array([0.1, 0.2, 0.3]), "min_k": np.array([-0.5, -0.4, -0.6]),
               "min_k_plus_plus": np.array([1.0, 2.0, 0.0]), "texts": ["a", "bb", "ccc"],
               "reference_mean_nll": np.array([1.0, 1.0, 1.0])}
    nonmembers = {"mean_nll": np.array([1.0, 0.25, 2.0, 3.0]), "min_k": np.array([-3.0, -2.0, -1.0, -0.45]),
                  "min_k_plus_plus": np.array([0.5, 0.5, 0.5, 0.5]), "texts": ["d", "e", "f", "g"],
                  "reference_mean_nll": np.array([1.0, 0.25, 2.0, 3.0])}
    results = A.text_attacks(members, nonmembers)
    assert set(results) == set(A.ATTACKS)
    assert results["loss"].auc == pytest.approx(roc_auc(-members["mean_nll"], -nonmembers["mean_nll"]))
    assert results["loss"].auc == pytest.approx(11 / 12)           # 0.3 > 0.25 is the one miss
    assert results["reference"].auc == 1.0                         # members: NLL below the reference's
    assert results["min_k"].auc == pytest.approx(roc_auc(members["min_k"], nonmembers["min_k"]))
    assert results["reference"].n_reference == 1
    del members["texts"]
    assert "zlib" not in A.text_attacks(members, nonmembers)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        A.lowest_k_mean(torch.zeros(1, 2), torch.ones(1, 2, dtype=torch.bool), k=0.0)


# ---------------------------------------------------------------------------------------------- greedy decoding
class SumModel(torch.nn.Module):
    """A causal 'model' over V tokens: the logits at position t pick (sum of tokens 0..t) mod V."""

    def __init__(self, vocab: int = 11):
        super().__init__()
        self.vocab = vocab
        self.calls = 0

    def forward(self, ids):
        self.calls += 1
        return torch.nn.functional.one_hot(ids.cumsum(-1) % self.vocab, self.vocab).float()


def _by_hand(prompt, vocab, eos, max_new):
    seq, out = list(prompt), []
    for _ in range(max_new):
        t = sum(seq) % vocab
        if t == eos:
            break
        seq.append(t)
        out.append(t)
    return out


def test_greedy_generation_batched_with_right_padding_matches_one_at_a_time():
    model = SumModel()
    prompts = [[1], [2, 3, 4], [5, 5], [3, 9, 1, 1, 2]]
    got = greedy_generate(model, prompts, max_new_tokens=6, eos_token_id=4, pad_token_id=7, batch_size=3)
    assert got == [_by_hand(p, 11, 4, 6) for p in prompts]
    assert any(len(g) < 6 for g in got) and any(len(g) == 6 for g in got)   # eos stops some rows, not others
    assert greedy_generate(model, prompts, max_new_tokens=6, eos_token_id=4, batch_size=1) == got
    assert greedy_generate(model, prompts, max_new_tokens=0, eos_token_id=0) == [[], [], [], []]
    capped = greedy_generate(model, [[2, 3, 4]], max_new_tokens=6, eos_token_id=None, max_length=5)
    assert capped == [_by_hand([2, 3, 4], 11, None, 2)]
    with pytest.raises(ValueError, match="at least one token"):
        greedy_generate(model, [[]], max_new_tokens=3, eos_token_id=0)


def test_greedy_generation_matches_transformers_generate():
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(vocab_size=40, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
                                      bos_token_id=1, eos_token_id=2, pad_token_id=0)
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(config).eval()
    prompts = [[1, 5, 9], [1, 7, 3, 22, 30, 11], [1]]
    got = greedy_generate(lambda ids: hf(ids).logits, prompts, max_new_tokens=8, eos_token_id=2, pad_token_id=0)
    for prompt, ids in zip(prompts, got):
        ref = hf.generate(torch.tensor([prompt]), max_new_tokens=8, do_sample=False, eos_token_id=2,
                          pad_token_id=0)[0, len(prompt):].tolist()
        assert ids == (ref[:ref.index(2)] if 2 in ref else ref)
    assert any(len(ids) < 8 for ids in got) and any(len(ids) == 8 for ids in got)
    # a CausalLM decodes with the KV cache on left-padded prompts: the same tokens
    from expunge.lm import CausalLM

    cached = greedy_generate(CausalLM(hf, tokenizer="unused"), prompts, max_new_tokens=8, eos_token_id=2,
                             pad_token_id=0)
    assert cached == got
    capped = greedy_generate(CausalLM(hf, tokenizer="unused"), prompts, max_new_tokens=8, eos_token_id=2,
                             pad_token_id=0, max_length=9)                  # the longest prompt leaves 3 tokens
    assert capped == [ids[:3] for ids in got]
