"""TOFU and MUSE metrics for language models, as pure functions over numbers and strings.

Papers: Maini et al., "TOFU: A Task of Fictitious Unlearning for LLMs" (COLM 2024; code locuslab/tofu);
Shi et al., "MUSE: Machine Unlearning Six-Way Evaluation for Language Models" (ICLR 2025; code swj0419/muse_bench);
OpenUnlearning (locuslab/open-unlearning, commit d3d7cf9) for the definitions as commonly run.

- **ROUGE-L** (:func:`rouge_l`): longest common subsequence over the tokens the ``rouge-score`` package makes without
  stemming (text lower-cased, every run of characters other than ``a-z0-9`` a separator); recall = LCS / reference
  tokens, precision = LCS / predicted tokens, F1 their harmonic mean; all 0 when either side has no token. TOFU
  reports the recall of greedy answers; MUSE's VerbMem and KnowMem report the F1 (MUSE multiplies by 100; here all
  ROUGE values are fractions in [0, 1]).
- **Answer probability** (:func:`answer_probability`): P(y|x) = exp(−mean NLL over the answer tokens), the
  length-normalised probability of TOFU.
- **Truth ratio** (:func:`truth_ratio`): R = P_wrong / P_correct per question, P_correct the length-normalised
  probability of the paraphrased answer (of the answer itself where a record has no paraphrase, as TOFU does for
  its real-author and world-facts sets) and P_wrong that of the perturbed answers, combined by default as a
  **geometric** mean, exp(−mean over perturbed answers of their mean token NLL). The TOFU paper writes an arithmetic
  mean of the perturbed probabilities; TOFU's own evaluation code (``aggregate_eval_stat.py``) and OpenUnlearning's
  shipped configurations use the geometric mean, and every published forget-quality and model-utility number comes
  from that code, so it is the default here (``mean="arithmetic"`` gives the paper's formula). Aggregates, as TOFU
  and OpenUnlearning's shipped configurations (``closer_to_1_better`` and ``true_better``): on the forget set
  :func:`truth_score_forget` = mean min(R, 1/R) (1 = the model cannot tell true from false, what a model that never
  saw the facts shows); on retain and utility sets :func:`truth_score_retain` = mean max(0, 1 − R) (1 = the true
  answer is much more likely). OpenUnlearning's pull request #163 added a third aggregate, the mean of
  P_correct / (P_correct + P_wrong) ("prob_mean", from its own meta-evaluation), and changed nothing else; it is not
  used here.
- **Forget quality** (:func:`forget_quality`): the p-value of scipy's two-sample Kolmogorov–Smirnov test between
  the per-question forget-set truth ratios of the model and of the oracle. It is a p-value about two distributions
  (high = indistinguishable), not a percentage; identical samples give 1. KS is invariant under monotone maps, so R,
  1/R (TOFU's code tests 1/R) and log R give the same p-value.
- **Normalised probability** (:func:`normalised_probability`): P(correct) / (P(correct) + Σ P(perturbed)), what
  TOFU uses as the probability of its real-author and world-facts sets.
- **Model utility** (:func:`model_utility`): the harmonic mean of its components (TOFU: probability, ROUGE-L recall
  and truth score on each utility set); 0 when any component is 0.
- **PrivLeak** (:func:`privleak`): MUSE's number, (AUC − AUC_oracle) / AUC_oracle × 100 with MUSE's AUC of the
  Min-40% attack (``eval.py`` and ``metrics/privleak.py``, key ``forget_holdout_Min-40%``; OpenUnlearning's
  ``privleak`` reproduces it): the forget set labelled 0, the holdout set labelled 1 (the positive class), score =
  mean log-probability of the 40% least likely tokens (higher = more likely text). That AUC is 1 − AUC_f, AUC_f the
  usual membership AUC with the forget set as members (``mia_min_k_auc``), so
  PrivLeak = ((1 − AUC_f) − (1 − AUC_f,oracle)) / (1 − AUC_f,oracle) × 100. Near 0 is good (the forget set stands
  out as much as it does for the oracle). **Negative = under-unlearned** in MUSE's convention (the forget set is
  still more likely than the holdout: a model that never unlearned has AUC near 0 and PrivLeak near −100), positive
  = over-unlearned (the forget set became less likely than the oracle finds it). Undefined when the oracle's MUSE
  AUC is 0 (AUC_f,oracle = 1).
- **Exact match** (:func:`exact_match`): the generated answer has exactly the reference's ROUGE tokens.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

_SEPARATORS = re.compile(r"[^a-z0-9]+")
TRUTH_RATIO_MEANS = ("geometric", "arithmetic")


# ---------------------------------------------------------------------------------------------------------- ROUGE-L
@dataclass(frozen=True)
class RougeL:
    """ROUGE-L of one prediction against one reference."""

    precision: float
    recall: float
    f1: float


def rouge_tokens(text: str) -> list[str]:
    """The tokens ``rouge-score`` compares without stemming: lower-cased runs of ``a-z0-9``."""
    if not isinstance(text, str):
        raise TypeError(f"ROUGE compares strings; got {type(text).__name__}")
    return [t for t in _SEPARATORS.split(text.lower()) if t]


def lcs_length(a: Sequence[Any], b: Sequence[Any]) -> int:
    """Length of the longest common subsequence of two token sequences (dynamic programming, O(len a · len b))."""
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(reference: str, prediction: str) -> RougeL:
    """ROUGE-L precision, recall and F1 of ``prediction`` against ``reference`` (see the module docstring)."""
    ref, pred = rouge_tokens(reference), rouge_tokens(prediction)
    if not ref or not pred:
        return RougeL(0.0, 0.0, 0.0)
    common = lcs_length(ref, pred)
    precision, recall = common / len(pred), common / len(ref)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return RougeL(precision, recall, f1)


def rouge_l_recall(references: Sequence[str], predictions: Sequence[str]) -> np.ndarray:
    """Per-pair ROUGE-L recall (TOFU's ROUGE)."""
    return np.array([rouge_l(r, p).recall for r, p in _pairs(references, predictions)], dtype=np.float64)


def rouge_l_f1(references: Sequence[str], predictions: Sequence[str]) -> np.ndarray:
    """Per-pair ROUGE-L F1 (MUSE's VerbMem and KnowMem)."""
    return np.array([rouge_l(r, p).f1 for r, p in _pairs(references, predictions)], dtype=np.float64)


def exact_match(references: Sequence[str], predictions: Sequence[str]) -> np.ndarray:
    """Per pair 1.0 when the prediction has exactly the reference's ROUGE tokens (case and punctuation ignored)."""
    return np.array([float(rouge_tokens(r) == rouge_tokens(p)) for r, p in _pairs(references, predictions)],
                    dtype=np.float64)


def _pairs(references: Sequence[str], predictions: Sequence[str]) -> Iterable[tuple[str, str]]:
    if len(references) != len(predictions):
        raise ValueError(f"got {len(references)} references but {len(predictions)} predictions; they pair up")
    return zip(references, predictions)


# ----------------------------------------------------------------------------------------------- probabilities, TOFU
def answer_probability(mean_nll: Any) -> np.ndarray:
    """exp(−mean answer-token NLL), per answer (TOFU's length-normalised P(y|x))."""
    return np.exp(-_finite(mean_nll, "mean_nll"))


def truth_ratio(correct_nll: Any, wrong_nll: Any, *, mean: str = "geometric") -> np.ndarray:
    """Per question R = P_wrong / P_correct from mean token NLLs: ``correct_nll`` [N] (the paraphrased answer's),
    ``wrong_nll`` [N, P] (P perturbed answers each; NaN marks a missing one). ``mean="geometric"`` (default; TOFU's
    code and OpenUnlearning): P_wrong = exp(−mean_j wrong_nll[:, j]); ``"arithmetic"`` (the TOFU paper):
    P_wrong = mean_j exp(−wrong_nll[:, j])."""
    if mean not in TRUTH_RATIO_MEANS:
        raise ValueError(f"mean must be one of {', '.join(TRUTH_RATIO_MEANS)}; got {mean!r}")
    correct = _finite(correct_nll, "correct_nll").ravel()
    wrong = np.asarray(wrong_nll, dtype=np.float64)
    if wrong.ndim == 1:
        wrong = wrong[:, None]
    if wrong.ndim != 2 or wrong.shape[0] != correct.shape[0]:
        raise ValueError(f"wrong_nll must have shape [N, P] with N = {correct.shape[0]} questions; "
                         f"got shape {wrong.shape}")
    present = ~np.isnan(wrong)
    if not present.any(axis=1).all():
        raise ValueError("every question needs at least one perturbed answer for its truth ratio")
    if np.isinf(wrong[present]).any():
        raise ValueError("wrong_nll contains inf; NLLs must be finite")
    count = present.sum(axis=1)
    if mean == "geometric":
        log_wrong = -np.where(present, wrong, 0.0).sum(axis=1) / count
    else:
        log_wrong = _logmeanexp(np.where(present, -wrong, -np.inf), count)
    return np.exp(log_wrong + correct)


def _logmeanexp(values: np.ndarray, count: np.ndarray) -> np.ndarray:
    top = values.max(axis=1)
    return top + np.log(np.exp(values - top[:, None]).sum(axis=1) / count)


def truth_score_forget(ratios: Any) -> float:
    """Mean of min(R, 1/R): 1 when true and false answers are equally likely (TOFU's forget-set truth ratio)."""
    r = _positive(ratios, "truth ratios")
    return float(np.mean(np.minimum(r, 1.0 / r)))


def truth_score_retain(ratios: Any) -> float:
    """Mean of max(0, 1 − R): 1 when the true answer is far more likely (TOFU's truth ratio on utility sets)."""
    r = _positive(ratios, "truth ratios")
    return float(np.mean(np.maximum(0.0, 1.0 - r)))


def normalised_probability(correct_nll: Any, wrong_nll: Any) -> np.ndarray:
    """Per question P(correct) / (P(correct) + Σ_j P(wrong_j)) from mean token NLLs (NaN marks a missing wrong
    answer): TOFU's probability on its real-author and world-facts sets."""
    correct = _finite(correct_nll, "correct_nll").ravel()
    wrong = np.asarray(wrong_nll, dtype=np.float64)
    wrong = wrong[:, None] if wrong.ndim == 1 else wrong
    if wrong.ndim != 2 or wrong.shape[0] != correct.shape[0]:
        raise ValueError(f"wrong_nll must have shape [N, P] with N = {correct.shape[0]}; got shape {wrong.shape}")
    # divide through by P(correct): 1 / (1 + Σ_j exp(correct − wrong_j)), stable for tiny probabilities
    rel = np.where(np.isnan(wrong), 0.0, np.exp(np.clip(correct[:, None] - np.nan_to_num(wrong), -700, 700)))
    return 1.0 / (1.0 + rel.sum(axis=1))


def forget_quality(model_ratios: Any, reference_ratios: Any) -> float:
    """p-value of the two-sample KS test between the model's and the oracle's forget-set truth ratios."""
    from scipy.stats import ks_2samp

    a = _finite(model_ratios, "model truth ratios").ravel()
    b = _finite(reference_ratios, "reference truth ratios").ravel()
    if a.size == 0 or b.size == 0:
        raise ValueError(f"forget quality needs truth ratios from both models; got {a.size} and {b.size}")
    return float(ks_2samp(a, b).pvalue)


def model_utility(components: Mapping[str, float] | Sequence[float]) -> float:
    """Harmonic mean of non-negative components (a mapping's values or a sequence): n / Σ 1/c, 0 if any is 0."""
    values = list(components.values()) if isinstance(components, Mapping) else list(components)
    if not values:
        raise ValueError("model utility needs at least one component")
    c = np.asarray(values, dtype=np.float64)
    if np.isnan(c).any() or (c < 0).any() or np.isinf(c).any():
        raise ValueError(f"model-utility components must be finite and non-negative; got {values}")
    if (c == 0).any():
        return 0.0
    return float(len(c) / np.sum(1.0 / c))


# ---------------------------------------------------------------------------------------------------------- MUSE
def privleak(auc: float, reference_auc: float) -> float:
    """MUSE's PrivLeak in %: ((1 − auc) − (1 − reference_auc)) / (1 − reference_auc) × 100, from the membership
    AUCs with the forget set as members (``auc`` the model's, ``reference_auc`` the oracle's; 1 − AUC is MUSE's AUC
    with the holdout as the positive class). Near 0 is good; negative = under-unlearned, positive = over-unlearned
    (MUSE's sign; see the module docstring). ValueError when the oracle's AUC is 1 (MUSE's AUC 0: undefined)."""
    for name, v in (("auc", auc), ("reference_auc", reference_auc)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v) or not 0.0 <= v <= 1.0:
            raise ValueError(f"{name} must be an AUC in [0, 1]; got {v!r}")
    muse, muse_reference = 1.0 - auc, 1.0 - reference_auc
    if muse_reference == 0.0:
        raise ValueError("the oracle's membership AUC is 1 (MUSE's AUC 0); PrivLeak divides by MUSE's AUC, so it is "
                         "undefined")
    return float((muse - muse_reference) / muse_reference * 100.0)


# ---------------------------------------------------------------------------------------------------------- checks
def _finite(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x.detach().cpu().double().numpy() if hasattr(x, "detach") else x, dtype=np.float64)
    if not np.isfinite(a).all():
        raise ValueError(f"{name} must be finite numbers")
    return a


def _positive(x: Any, name: str) -> np.ndarray:
    a = _finite(x, name).ravel()
    if a.size == 0 or (a <= 0).any():
        raise ValueError(f"{name} must be a non-empty array of positive numbers")
    return a
