"""Membership-inference attacks on text: a score per sequence from its per-token log-probabilities.

Every score here is oriented "higher = member", the convention of :mod:`expunge.metrics.roc`, whose
:class:`~expunge.metrics.roc.AttackResult` turns scores into AUC and TPR at 1% and 0.1% FPR.

- **LOSS** (Yeom et al., CSF 2018): −mean NLL of the labelled tokens (the answer and its eos for question/answer
  records; every token but bos for documents), the NLL behind TOFU's answer probability.
- **zlib** (Carlini et al., "Extracting Training Data from Large Language Models", USENIX Security 2021):
  −mean NLL / len(zlib.compress(text as UTF-8)), ``text`` the answer (question/answer records) or the document; the
  statistic of MUSE's ``PPL/zlib`` and OpenUnlearning's zlib attack with the sign turned.
- **Min-K%** (Shi et al., "Detecting Pretraining Data from Large Language Models", ICLR 2024): the mean of the
  lowest k% of the token log-probabilities, ⌊k·n⌋ of the n tokens but at least one (OpenUnlearning; MUSE takes
  ⌊k·n⌋ with no floor, an empty mean for very short texts). k = 0.4 is MUSE's PrivLeak setting (``Min-40%``).
- **Min-K%++** (Zhang et al., "Min-K%++: Improved Baseline for Detecting Pre-Training Data from Large Language
  Models", ICLR 2025): per token z_t = (log p(x_t) − μ_t) / σ_t, with μ_t = Σ_v p(v)·log p(v) and
  σ_t² = Σ_v p(v)·log² p(v) − μ_t² under the model's next-token distribution p(·|x_<t) (σ_t² floored at 1e-6 as in
  OpenUnlearning), then the mean of the lowest k% of the z_t.
- **Reference** (Carlini et al. 2021's comparison with a second model; Mireshghallah et al. 2022): the statistic
  NLL_model − NLL_reference, scored as its negative; with the oracle as the reference it asks whether the model
  finds a text easier than a model that never saw it.

Which tokens: LOSS, zlib and the reference attack use every labelled token, as OpenUnlearning's
``evaluate_probability`` does. Min-K% and Min-K%++ leave out the last labelled token of each sequence, which is the
eos the language task's encoding appends (unless ``max_length`` truncated the sequence): OpenUnlearning's
``tokenwise_logprobs`` drops it ("ignore eos prediction"), and MUSE scores raw text without an eos, so both
references score the text's own tokens only. A sequence with a single labelled token keeps it.
"""
from __future__ import annotations

import zlib
from typing import Any, Sequence

import numpy as np
import torch

from ..metrics.roc import AttackResult
from .losses import IGNORE, shifted

MIN_K = 0.4                 # MUSE's PrivLeak attack, forget_holdout_Min-40%
SIGMA2_FLOOR = 1e-6         # OpenUnlearning's clamp of σ² in Min-K%++
ATTACKS = ("loss", "zlib", "min_k", "min_k_plus_plus", "reference")


def next_token_log_probs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                                              torch.Tensor]:
    """(log_probs [B, L−1, V] of the next token in float32, targets' log-probs [B, L−1], labelled mask
    [B, L−1]); ``labels`` aligned with the inputs (−100 where not scored), shifted here."""
    logits, targets = shifted(logits, labels)
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    mask = targets != IGNORE
    token_lp = log_probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return log_probs, torch.where(mask, token_lp, torch.zeros_like(token_lp)), mask


def min_k_plus_plus_tokens(log_probs: torch.Tensor, token_lp: torch.Tensor) -> torch.Tensor:
    """Per token (log p(x_t) − μ_t) / σ_t under the next-token distribution ``log_probs`` [B, T, V]."""
    p = log_probs.exp()
    mu = (p * log_probs).sum(-1)
    sigma2 = (p * log_probs.square()).sum(-1) - mu.square()
    return (token_lp - mu) / sigma2.clamp(min=SIGMA2_FLOOR).sqrt()


def without_last(mask: torch.Tensor) -> torch.Tensor:
    """``mask`` [B, T] with each row's last True cleared, where the row has at least two."""
    count = mask.sum(-1)
    last = torch.where(mask, torch.arange(mask.shape[-1], device=mask.device), -1).max(-1).values
    drop = torch.zeros_like(mask)
    rows = torch.nonzero(count >= 2).squeeze(-1)
    drop[rows, last[rows]] = True
    return mask & ~drop


def lowest_k_mean(values: torch.Tensor, mask: torch.Tensor, k: float = MIN_K) -> torch.Tensor:
    """Per row, the mean of the lowest max(1, ⌊k·n⌋) of its n masked-in ``values`` (NaN for a row with none)."""
    check_k(k)
    n = mask.sum(-1)
    take = torch.clamp(torch.tensor([int(int(c) * k) for c in n], device=values.device), min=1)
    ordered = torch.where(mask, values.double(), torch.full_like(values, float("inf"), dtype=torch.float64))
    ordered = ordered.sort(-1).values
    keep = torch.arange(values.shape[-1], device=values.device) < take[:, None]
    total = torch.where(keep, ordered, torch.zeros_like(ordered)).sum(-1)
    return torch.where(n > 0, total / take, torch.full_like(total, float("nan")))


def sequence_statistics(logits: torch.Tensor, labels: torch.Tensor, *, k: float = MIN_K,
                        membership: bool = True) -> dict[str, torch.Tensor]:
    """Per sequence of a batch: ``nll_sum``, ``n_tokens``, ``mean_nll`` over labelled tokens, ``correct`` (labelled
    tokens the argmax predicts) and, with ``membership``, ``min_k`` and ``min_k_plus_plus`` (eos left out; see the
    module docstring)."""
    with torch.no_grad():
        log_probs, token_lp, mask = next_token_log_probs(logits, labels)
        n = mask.sum(-1)
        nll_sum = -(token_lp.double()).sum(-1)
        predicted = log_probs.argmax(-1) == labels[:, 1:]
        out = {"nll_sum": nll_sum, "n_tokens": n, "mean_nll": nll_sum / n.clamp(min=1),
               "correct": (predicted & mask).sum(-1)}
        if membership:
            scored = without_last(mask)
            out["min_k"] = lowest_k_mean(token_lp, scored, k)
            out["min_k_plus_plus"] = lowest_k_mean(min_k_plus_plus_tokens(log_probs, token_lp), scored, k)
        return out


def zlib_length(text: str) -> int:
    """Bytes of the zlib-compressed UTF-8 text (zlib's default level, as MUSE and OpenUnlearning)."""
    if not isinstance(text, str):
        raise TypeError(f"zlib length needs a string; got {type(text).__name__}")
    return len(zlib.compress(text.encode("utf-8")))


def loss_scores(mean_nll: Any) -> np.ndarray:
    return -_array(mean_nll)


def zlib_scores(mean_nll: Any, texts: Sequence[str]) -> np.ndarray:
    nll = _array(mean_nll)
    if len(texts) != len(nll):
        raise ValueError(f"zlib scores need one text per sequence; got {len(texts)} texts for {len(nll)} sequences")
    return -nll / np.array([zlib_length(t) for t in texts], dtype=np.float64)


def reference_scores(mean_nll: Any, reference_mean_nll: Any) -> np.ndarray:
    a, b = _array(mean_nll), _array(reference_mean_nll)
    if a.shape != b.shape:
        raise ValueError(f"the model and the reference scored different numbers of sequences: {a.shape} vs {b.shape}")
    return -(a - b)


def text_attacks(members: dict[str, Any], nonmembers: dict[str, Any]) -> dict[str, AttackResult]:
    """Every attack the statistics allow, members vs non-members. Each side is a dict with ``mean_nll``,
    ``min_k``, ``min_k_plus_plus`` (as from :func:`sequence_statistics`, concatenated over batches), optionally
    ``texts`` (zlib) and ``reference_mean_nll`` (the reference attack; the reference model's ``mean_nll``)."""
    def scores(side: dict[str, Any], name: str) -> np.ndarray | None:
        if name == "loss":
            return loss_scores(side["mean_nll"])
        if name == "zlib":
            return zlib_scores(side["mean_nll"], side["texts"]) if "texts" in side else None
        if name == "reference":
            ref = side.get("reference_mean_nll")
            return reference_scores(side["mean_nll"], ref) if ref is not None else None
        return _array(side[name])

    out = {}
    for name in ATTACKS:
        m, n = scores(members, name), scores(nonmembers, name)
        if m is None or n is None:
            continue
        is_member = np.r_[np.ones(len(m), bool), np.zeros(len(n), bool)]
        out[name] = AttackResult.from_scores(name, np.r_[m, n], is_member,
                                             n_reference=1 if name == "reference" else 0)
    return out


def _array(x: Any) -> np.ndarray:
    a = np.asarray(x.detach().cpu().double().numpy() if hasattr(x, "detach") else x, dtype=np.float64).ravel()
    return a


def check_k(k: float) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, float)) or not 0.0 < k <= 1.0:
        raise ValueError(f"k (the fraction of lowest-probability tokens) must lie in (0, 1]; got {k!r}")
