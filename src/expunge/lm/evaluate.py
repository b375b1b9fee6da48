"""``evaluate_language``: the TOFU and MUSE scores of a causal language model, its membership attacks, and its
gaps to the oracle, as one flat dict of floats (what ``expunge.evaluate`` returns for the language task).

Metric definitions are in :mod:`expunge.lm.metrics` and :mod:`expunge.lm.attacks`. Scales: probabilities, ROUGE,
truth scores, exact match, AUCs and TPRs are fractions in [0, 1] (as TOFU reports them; MUSE's VerbMem and KnowMem
are × 100 in its tables); ``privleak`` is a percentage; every ``gap_*`` and ``avg_gap`` is in percentage points.

Per set ``S`` (``forget``, ``retain``, ``world``, ``holdout`` = ``test``), question/answer data:

- ``S_prob``: mean over rows of P(answer | question) = exp(−mean answer NLL) (answer tokens and eos).
- ``S_token_accuracy``: mean over rows of the share of answer tokens the model's argmax predicts (teacher
  forcing; OpenUnlearning's ``exact_memorization``).
- ``S_rouge``: mean over the set's distinct questions of the ROUGE-L recall of the greedy answer (at most
  ``max_new_tokens`` tokens, stopping at eos) against the question's true answers, the best over them; a question
  asked in several rows (the authors corpus trains each fact with two answer phrasings) is answered once and
  either answer counts. TOFU scores against one answer, which is the same when each question has one row.
- ``S_exact_match``: share of distinct questions whose greedy answer has exactly a true answer's words.
- ``S_truth_ratio`` (rows with ``perturbed_answers``; one per distinct question, its first row): the forget set's
  mean min(R, 1/R), other sets' mean max(0, 1 − R) (TOFU; R in :func:`expunge.lm.metrics.truth_ratio`: the
  geometric mean of the perturbed answers' probabilities over the paraphrased answer's).
- ``world_prob_normalised``: P(correct) / (P(correct) + Σ P(perturbed)) per distinct question, TOFU's probability
  on world facts; "correct" is the answer the truth ratio uses (the paraphrased answer where a record has one: in
  the authors corpus it is phrased like the perturbed answers, so the comparison is like for like; TOFU, whose
  world-facts records have no paraphrase, uses the answer).
- Document data (``kind = "document"``): ``S_prob`` only (per-token probability of the whole text).

MUSE: ``knowmem_forget`` / ``knowmem_retain``: mean ROUGE-L F1 of the same greedy answers (best over true answers;
MUSE adds in-context examples to its prompts, not needed by a model trained on this question format);
``verbmem`` (with ``documents=``, or when ``forget`` holds documents): mean ROUGE-L F1 of the greedy continuation
of each document's prefix (its first ``verbmem_prefix`` text tokens, at most half of them) against the next
``verbmem_tokens`` tokens of the document.

Utility: ``model_utility`` = the harmonic mean of {retain, world} × {probability, ROUGE-L recall, truth score}
(world's probability normalised as in TOFU; only retain's three without ``world=``; a set without perturbed
answers contributes no truth score); ``model_utility_components`` counts them. Rows of ``retain`` that are also
rows of ``world`` (the same rows of the same base dataset, e.g. the authors corpus, whose world facts are trained and
retained) are left out of every ``retain_*`` score (``knowmem_retain`` and the gaps too), so world facts are counted
once, in the ``world_*`` scores.

Membership (with ``test``, the holdout: forget rows are members, holdout rows non-members; see
:mod:`expunge.lm.attacks`): ``mia_{loss,zlib,min_k,min_k_plus_plus}_{auc,balanced_accuracy,tpr_at_1pct,
tpr_at_0_1pct,n_reference}``, Min-K% and Min-K%++ with k = ``k`` (0.4); with a reference also ``mia_reference_*``
(the oracle as the reference model).

With ``reference`` (the oracle):

- ``forget_quality``: KS-test p-value between the model's and the oracle's per-question forget truth ratios;
  absent without a reference (OpenUnlearning reports None) or without perturbed answers.
- ``privleak`` (needs ``test``): MUSE's PrivLeak, (AUC − AUC_oracle) / AUC_oracle × 100 with MUSE's AUC of the
  Min-40% attack (holdout as the positive class, i.e. 1 − ``mia_min_k_auc``; :func:`expunge.lm.metrics.privleak`):
  near 0 is good, negative = under-unlearned (the forget set still stands out), positive = over-unlearned. When the
  oracle's MUSE AUC is 0 (its ``mia_min_k_auc`` is 1) PrivLeak is undefined: the key is left out and
  ``privleak_undefined`` = 1 is reported instead.
- ``gap_X`` = 100 · |X − X_oracle| for X in ``forget_/retain_/world_`` × ``prob, rouge, truth_ratio``,
  ``model_utility``, ``knowmem_forget``, ``knowmem_retain`` and ``verbmem`` (where both have them).
- ``avg_gap``: the mean of ``gap_forget_prob``, ``gap_forget_rouge``, ``gap_forget_truth_ratio``,
  ``gap_retain_prob``, ``gap_retain_rouge``, ``gap_retain_truth_ratio`` (those present): the mean absolute
  difference to the oracle, in percentage points, of what TOFU measures on the forget and retain sets. 0 = the
  oracle's numbers; tuning minimises it.

Always: ``seconds`` (the model's recorded wall time) and with a reference ``rte`` (% of the oracle's);
``evidence_tier`` = 0 and ``n_oracles`` (1 with a reference, 0 without): one oracle gives population-level numbers
only; nothing here shows per-fact indistinguishability from retraining.

Tier 1 (``oracles=``: a list of K >= 2 oracles retrained with different seeds, and ``test``): offline LiRA per fact
(:func:`expunge.audit.tier1.reference_attack`) on φ = logit of the length-normalised answer probability. Each
forget and holdout row's φ under the model is standardised against the oracles' φ of that row (z = (φ − μ) / σ,
σ pooled below 64 oracles); forget rows are the members, holdout rows (never seen by any oracle either) the
non-members: ``lira_auc``, ``lira_tpr_at_1pct``, ``lira_tpr_at_0_1pct``, ``n_reference``; the same attack on each
oracle in turn with the others as references (leave one out), the target values: ``lira_oracle_auc``,
``lira_oracle_tpr_at_1pct``, ``lira_oracle_tpr_at_0_1pct``, ``lira_n_heldout``; and ``lira_forget_mean_z``, the mean
z of the forget rows (near 0 for a model like the oracles, large when it still finds the forget answers easy).
``n_oracles`` = K and ``evidence_tier`` = 1 from :data:`TIER1_ORACLES` (8) oracles on (classification asks 16; 8
oracles of a ~1M-parameter model is what the language task can afford).

``max_examples``: score at most this many rows of each set (a seeded sample, the same rows for the model and the
reference), to keep big sets fast. The reference's own scores are remembered (for the same weights, rows and
settings; the last :data:`REFERENCE_CACHE_SIZE`), since a benchmark evaluates many models against one oracle.
Relearning attack: :func:`expunge.lm.relearn.relearn_attack`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from ..threads import scoped
from . import attacks as A
from . import metrics as M
from .generate import greedy_generate

SETS = ("forget", "retain", "world", "holdout")
AVG_GAP_KEYS = ("forget_prob", "forget_rouge", "forget_truth_ratio", "retain_prob", "retain_rouge",
                "retain_truth_ratio")
TIER1_ORACLES = 8      # oracles of the model's size for per-fact (tier-1) evidence on language models
GAP_KEYS = AVG_GAP_KEYS + ("world_prob", "world_rouge", "world_truth_ratio", "model_utility", "knowmem_forget",
                           "knowmem_retain", "verbmem")


@dataclass
class _Rows:
    """The rows of one set that are scored: the base TextDataset, their indices, their records."""

    name: str
    base: Any
    idx: torch.Tensor
    records: list[dict] = field(default_factory=list)


@dataclass
class _Raw:
    """What one model's scores are built from, kept for the comparisons with the reference."""

    scores: dict[str, float]
    stats: dict[str, dict[str, np.ndarray]]          # per set: sequence statistics of every scored row
    truth_ratios: dict[str, np.ndarray]              # per set: per-question R


@scoped
def evaluate_language(model: nn.Module, *, forget: Dataset, retain: Dataset, test: Dataset | None = None,
                      world: Dataset | None = None, reference: nn.Module | None = None,
                      documents: Dataset | None = None, max_examples: int | None = None, max_new_tokens: int = 32,
                      verbmem_prefix: int = 32, verbmem_tokens: int = 128, k: float = A.MIN_K,
                      batch_size: int = 64, seed: int = 0, oracles: Sequence[nn.Module] | None = None
                      ) -> dict[str, float]:
    """Score a language model on its forget, retain, world-facts and holdout (``test``) sets; with ``reference``
    (the oracle) also forget quality, PrivLeak, the reference attack and the gaps. See the module docstring."""
    from .models import as_language_model

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch nn.Module; got {type(model).__name__}")
    model = as_language_model(model, forget)
    if reference is not None:
        if not isinstance(reference, nn.Module):
            raise TypeError(f"reference must be a language model (the oracle); got {type(reference).__name__}")
        reference = as_language_model(reference, forget)
    for name, v, low in (("max_new_tokens", max_new_tokens, 1), ("verbmem_prefix", verbmem_prefix, 1),
                         ("verbmem_tokens", verbmem_tokens, 1), ("batch_size", batch_size, 1)):
        _check_int(name, v, low)
    if max_examples is not None:
        _check_int("max_examples", max_examples, 1)
    A.check_k(k)
    if oracles is not None:
        oracles = _check_oracles(oracles, forget, test)
    rng = np.random.default_rng(seed)
    in_world = _rows_also_in(retain, world)
    sets = {name: _rows(name, data, max_examples, rng, drop=in_world if name == "retain" else None)
            for name, data in (("forget", forget), ("retain", retain), ("world", world), ("holdout", test))
            if data is not None}
    docs = documents if documents is not None else (forget if sets["forget"].base.kind == "document" else None)
    doc_rows = _rows("documents", docs, max_examples, rng) if docs is not None else None
    tokenizers = {id(r.base.tokenizer) for r in list(sets.values()) + ([doc_rows] if doc_rows else [])}
    if len(tokenizers) > 1:
        raise ValueError("forget, retain, world, test and documents must be encoded with one tokenizer")
    for m in [model] + ([reference] if reference is not None else []) + list(oracles or []):
        _check_vocabulary(m, list(sets.values()) + ([doc_rows] if doc_rows else []))
    settings = dict(max_new_tokens=max_new_tokens, verbmem_prefix=verbmem_prefix, verbmem_tokens=verbmem_tokens,
                    k=k, batch_size=batch_size)
    mine = _raw(model, sets, doc_rows, **settings)
    scores = dict(mine.scores)
    ref = _reference_raw(reference, sets, doc_rows, settings) if reference is not None else None
    if "holdout" in sets:
        scores.update(_membership(sets, mine, ref))
    if ref is not None:
        scores.update(_comparisons(mine, ref))
    from ..evaluate import time_scores

    scores.update(time_scores(model, reference))
    scores["evidence_tier"] = 0.0
    scores["n_oracles"] = 1.0 if reference is not None else 0.0
    if oracles is not None:
        scores.update(_tier1(mine, oracles, sets, batch_size))
    return scores


# --------------------------------------------------------------------------------------------------- one model
def _raw(model: nn.Module, sets: dict[str, _Rows], doc_rows: _Rows | None, *, max_new_tokens: int,
         verbmem_prefix: int, verbmem_tokens: int, k: float, batch_size: int) -> _Raw:
    was_training = model.training
    model.eval()
    try:
        scores: dict[str, float] = {}
        stats, ratios = {}, {}
        for name, rows in sets.items():
            stats[name] = _statistics(model, rows.base.x[rows.idx], rows.base.y[rows.idx], k, batch_size,
                                      membership=name in ("forget", "holdout"))
            scores[f"{name}_prob"] = float(np.mean(M.answer_probability(stats[name]["mean_nll"])))
            if rows.base.kind != "qa":
                continue
            scores[f"{name}_token_accuracy"] = float(np.mean(stats[name]["correct"] / stats[name]["n_tokens"]))
            scores.update(_generation_scores(model, rows, max_new_tokens, batch_size))
            truth = _truth(model, rows, batch_size)
            if truth is not None:
                ratios[name] = truth["ratios"]
                aggregate = M.truth_score_forget if name == "forget" else M.truth_score_retain
                scores[f"{name}_truth_ratio"] = aggregate(truth["ratios"])
                if name == "world":
                    scores["world_prob_normalised"] = float(np.mean(truth["normalised"]))
        for name in ("forget", "retain"):
            if f"{name}_rouge_f1" in scores:
                scores[f"knowmem_{name}"] = scores[f"{name}_rouge_f1"]
        scores = {key: v for key, v in scores.items() if not key.endswith("_rouge_f1")}
        if doc_rows is not None:
            scores["verbmem"] = _verbmem(model, doc_rows, verbmem_prefix, verbmem_tokens, batch_size)
        scores.update(_utility(scores))
    finally:
        model.train(was_training)
    return _Raw(scores, stats, ratios)


_REFERENCE_CACHE: dict[str, _Raw] = {}
REFERENCE_CACHE_SIZE = 4


def _reference_raw(reference: nn.Module, sets: dict[str, _Rows], doc_rows: _Rows | None,
                   settings: dict[str, Any]) -> _Raw:
    """The reference's scores, remembered for the same weights, rows and settings: a benchmark evaluates many
    models against one oracle. The key hashes the reference's parameters and buffers and the scored token ids,
    so a changed model or changed data is scored afresh."""
    import hashlib

    digest = hashlib.sha256(repr(sorted(settings.items())).encode())
    for name, t in reference.state_dict().items():
        digest.update(name.encode())
        digest.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    for rows in list(sets.values()) + ([doc_rows] if doc_rows is not None else []):
        digest.update(rows.name.encode())
        for t in (rows.base.x[rows.idx], rows.base.y[rows.idx]):
            digest.update(t.contiguous().numpy().tobytes())
        digest.update(repr(rows.records).encode())
    key = digest.hexdigest()
    if key not in _REFERENCE_CACHE:
        while len(_REFERENCE_CACHE) >= REFERENCE_CACHE_SIZE:
            _REFERENCE_CACHE.pop(next(iter(_REFERENCE_CACHE)))
        _REFERENCE_CACHE[key] = _raw(reference, sets, doc_rows, **settings)
    return _REFERENCE_CACHE[key]


@torch.no_grad()
def _statistics(model: nn.Module, x: torch.Tensor, y: torch.Tensor, k: float, batch_size: int, *,
                membership: bool = False) -> dict[str, np.ndarray]:
    device = _device(model)
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(x), batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        width = int((yb != A.IGNORE).nonzero()[:, 1].max()) + 1 if (yb != A.IGNORE).any() else xb.shape[1]
        xb, yb = xb[:, :width].to(device), yb[:, :width].to(device)
        for key, v in A.sequence_statistics(model(xb), yb, k=k, membership=membership).items():
            parts.setdefault(key, []).append(v.detach().cpu().double().numpy())
    out = {key: np.concatenate(v) for key, v in parts.items()}
    if (out["n_tokens"] == 0).any():
        raise ValueError("a scored sequence has no labelled tokens (an answer truncated away by max_length?)")
    return out


def _mean_nll(model: nn.Module, tokenizer: Any, pairs: list[tuple[str, str]], max_length: int | None,
              batch_size: int) -> np.ndarray:
    """Mean answer-token NLL of each (question, answer) pair, encoded as the dataset encodes its rows."""
    from ..data.text import encode, pad_id

    encoded = [encode(tokenizer, {"question": q, "answer": a}, max_length) for q, a in pairs]
    width = max(len(ids) for ids, _ in encoded)
    x = torch.full((len(encoded), width), pad_id(tokenizer), dtype=torch.long)
    y = torch.full((len(encoded), width), A.IGNORE, dtype=torch.long)
    for i, (ids, labels) in enumerate(encoded):
        x[i, :len(ids)], y[i, :len(labels)] = torch.tensor(ids), torch.tensor(labels)
    return _statistics(model, x, y, A.MIN_K, batch_size)["mean_nll"]


def _question_groups(rows: _Rows) -> tuple[list[int], list[list[str]]]:
    """Positions (in ``rows``) of the first row of each distinct question, and each question's true answers."""
    first: dict[str, int] = {}
    answers: dict[str, list[str]] = {}
    for i, r in enumerate(rows.records):
        first.setdefault(r["question"], i)
        answers.setdefault(r["question"], []).append(r["answer"])
    return list(first.values()), [answers[rows.records[i]["question"]] for i in first.values()]


def _generation_scores(model: nn.Module, rows: _Rows, max_new_tokens: int, batch_size: int) -> dict[str, float]:
    from ..data.text import prompt_ids

    tok = rows.base.tokenizer
    firsts, truths = _question_groups(rows)
    prompts = [prompt_ids(tok, rows.records[i]["question"]) for i in firsts]
    generated = greedy_generate(model, prompts, max_new_tokens=max_new_tokens, eos_token_id=tok.eos_token_id,
                                pad_token_id=_pad(tok), batch_size=batch_size, max_length=_max_positions(model))
    texts = [tok.decode(g, skip_special_tokens=True) for g in generated]
    recall = [max(M.rouge_l(t, g).recall for t in truth) for truth, g in zip(truths, texts)]
    f1 = [max(M.rouge_l(t, g).f1 for t in truth) for truth, g in zip(truths, texts)]
    exact = [max(M.exact_match([t], [g])[0] for t in truth) for truth, g in zip(truths, texts)]
    return {f"{rows.name}_rouge": float(np.mean(recall)), f"{rows.name}_rouge_f1": float(np.mean(f1)),
            f"{rows.name}_exact_match": float(np.mean(exact))}


def _truth(model: nn.Module, rows: _Rows, batch_size: int) -> dict | None:
    """Per distinct question (its first row) with perturbed answers: R and TOFU's normalised probability."""
    firsts, _ = _question_groups(rows)
    firsts = [i for i in firsts if rows.records[i].get("perturbed_answers")]
    if not firsts:
        return None
    recs = [rows.records[i] for i in firsts]
    tok, max_length = rows.base.tokenizer, rows.base.max_length
    correct_pairs = [(r["question"], r.get("paraphrased_answer") or r["answer"]) for r in recs]
    correct = _mean_nll(model, tok, correct_pairs, max_length, batch_size)
    width = max(len(r["perturbed_answers"]) for r in recs)
    wrong_pairs = [(i, j, r["question"], a) for i, r in enumerate(recs) for j, a in enumerate(r["perturbed_answers"])]
    wrong = np.full((len(recs), width), np.nan)
    nll = _mean_nll(model, tok, [(q, a) for _, _, q, a in wrong_pairs], max_length, batch_size)
    for (i, j, _, _), v in zip(wrong_pairs, nll):
        wrong[i, j] = v
    return {"ratios": M.truth_ratio(correct, wrong), "normalised": M.normalised_probability(correct, wrong)}


def _verbmem(model: nn.Module, rows: _Rows, prefix: int, tokens: int, batch_size: int) -> float:
    tok = rows.base.tokenizer
    prompts, truths = [], []
    for i in rows.idx.tolist():
        ids, labels = rows.base.x[i], rows.base.y[i]
        start = _first_labelled(labels)                       # the bos (and anything else unlabelled) first
        text = [int(t) for t, lb in zip(ids.tolist(), labels.tolist()) if lb != A.IGNORE and t != tok.eos_token_id]
        cut = max(1, min(prefix, len(text) // 2))
        prompts.append(ids[:start].tolist() + text[:cut])
        truths.append(tok.decode(text[cut:cut + tokens], skip_special_tokens=True))
    generated = greedy_generate(model, prompts, max_new_tokens=tokens, eos_token_id=tok.eos_token_id,
                                pad_token_id=_pad(tok), batch_size=batch_size, max_length=_max_positions(model))
    texts = [tok.decode(g, skip_special_tokens=True) for g in generated]
    return float(np.mean(M.rouge_l_f1(truths, texts)))


def _utility(scores: dict[str, float]) -> dict[str, float]:
    parts = [scores.get("retain_prob"), scores.get("retain_rouge"), scores.get("retain_truth_ratio")]
    if "world_prob" in scores:
        parts += [scores.get("world_prob_normalised", scores["world_prob"]), scores.get("world_rouge"),
                  scores.get("world_truth_ratio")]
    parts = [p for p in parts if p is not None]
    return {"model_utility": M.model_utility(parts), "model_utility_components": float(len(parts))}


# ---------------------------------------------------------------------------------------------- comparisons
def _membership(sets: dict[str, _Rows], mine: _Raw, ref: _Raw | None) -> dict[str, float]:
    from ..metrics.roc import roc_auc

    out: dict[str, float] = {}
    sides = {}
    for name in ("forget", "holdout"):
        side = dict(mine.stats[name])
        side["texts"] = [r["answer"] if "answer" in r else r["text"] for r in sets[name].records]
        if ref is not None:
            side["reference_mean_nll"] = ref.stats[name]["mean_nll"]
        sides[name] = side
    for name, result in A.text_attacks(sides["forget"], sides["holdout"]).items():
        out.update(result.summary(f"mia_{name}"))
    if ref is not None:
        ref_auc = roc_auc(ref.stats["forget"]["min_k"], ref.stats["holdout"]["min_k"])
        if ref_auc < 1.0:
            out["privleak"] = M.privleak(out["mia_min_k_auc"], ref_auc)
        else:                                 # the oracle's MUSE AUC (1 − ref_auc) is 0: PrivLeak is undefined
            out["privleak_undefined"] = 1.0
    return out


def _comparisons(mine: _Raw, ref: _Raw) -> dict[str, float]:
    out: dict[str, float] = {}
    if "forget" in mine.truth_ratios and "forget" in ref.truth_ratios:
        out["forget_quality"] = M.forget_quality(mine.truth_ratios["forget"], ref.truth_ratios["forget"])
    gaps = {f"gap_{key}": 100.0 * abs(mine.scores[key] - ref.scores[key]) for key in GAP_KEYS
            if key in mine.scores and key in ref.scores}
    out.update(gaps)
    averaged = [gaps[f"gap_{key}"] for key in AVG_GAP_KEYS if f"gap_{key}" in gaps]
    if averaged:
        out["avg_gap"] = float(np.mean(averaged))
    return out


def _tier1(mine: _Raw, oracles: list[nn.Module], sets: dict[str, _Rows], batch_size: int) -> dict[str, float]:
    """Offline LiRA per fact with the oracles as reference models (see the module docstring)."""
    from ..audit.tier1 import reference_attack

    def phi(stats_of) -> np.ndarray:
        nll = np.concatenate([stats_of("forget"), stats_of("holdout")])
        return answer_logit(nll)

    def oracle_stats(oracle: nn.Module, name: str) -> np.ndarray:
        rows = sets[name]
        was_training = oracle.training
        oracle.eval()
        try:
            return _statistics(oracle, rows.base.x[rows.idx], rows.base.y[rows.idx], A.MIN_K, batch_size)["mean_nll"]
        finally:
            oracle.train(was_training)

    model_phi = phi(lambda name: mine.stats[name]["mean_nll"])
    oracle_phi = np.stack([phi(lambda name, o=o: oracle_stats(o, name)) for o in oracles])
    is_forget = np.r_[np.ones(len(sets["forget"].idx), bool), np.zeros(len(sets["holdout"].idx), bool)]
    result = reference_attack(model_phi, oracle_phi, is_forget)
    out = result.summary()
    out["lira_forget_mean_z"] = float(np.mean(result.attack.scores[is_forget]))
    out["n_oracles"] = float(len(oracles))
    out["evidence_tier"] = 1.0 if len(oracles) >= TIER1_ORACLES else 0.0
    return out


def answer_logit(mean_nll: Any) -> np.ndarray:
    """log p − log(1 − p) of the length-normalised answer probability p = exp(−mean NLL): LiRA's logit scaling,
    computed from the NLL so that p near 1 stays finite (NLL floored at 1e-12)."""
    nll = np.maximum(np.asarray(mean_nll, dtype=np.float64), 1e-12)
    return -nll - np.log(-np.expm1(-nll))


def _check_oracles(oracles: Any, forget: Dataset, test: Dataset | None) -> list[nn.Module]:
    from .models import as_language_model

    if isinstance(oracles, nn.Module) or not isinstance(oracles, (list, tuple)):
        raise TypeError(f"oracles must be a list of oracle language models (retrained on retain with different "
                        f"seeds); got {type(oracles).__name__}")
    if len(oracles) < 2:
        raise ValueError(f"oracles= needs at least 2 oracle models; got {len(oracles)}")
    if test is None:
        raise ValueError("oracles= needs test= (the holdout facts are the attack's non-members)")
    if not all(isinstance(o, nn.Module) for o in oracles):
        raise TypeError("every oracle must be a language model (expunge.lm.CausalLM or a transformers model)")
    return [as_language_model(o, forget) for o in oracles]


# ------------------------------------------------------------------------------------------------------ helpers
def _rows_also_in(retain: Dataset, world: Dataset | None) -> tuple[Any, np.ndarray] | None:
    """``(base, indices)`` of ``world``'s rows when ``world`` and ``retain`` are rows of one base dataset (those
    rows are then left out of the retain scores); None otherwise."""
    from ..data.text import text_base

    if world is None:
        return None
    try:
        (retain_base, _), (world_base, world_idx) = text_base(retain), text_base(world)
    except TypeError:
        return None                            # _rows names the set that is not text data
    return (world_base, world_idx.numpy()) if world_base is retain_base else None


def _rows(name: str, data: Dataset, max_examples: int | None, rng: np.random.Generator,
          drop: tuple[Any, np.ndarray] | None = None) -> _Rows:
    from ..data.text import text_base

    try:
        base, idx = text_base(data)
    except TypeError:
        raise TypeError(f"{name} must be text data (an expunge.data.TextDataset or a subset of one); got "
                        f"{type(data).__name__}") from None
    if len(idx) == 0:
        raise ValueError(f"{name} is empty")
    if drop is not None and drop[0] is base:
        idx = idx[torch.from_numpy(~np.isin(idx.numpy(), drop[1]))]
        if len(idx) == 0:
            raise ValueError(f"{name} holds only rows that are also in world; give {name} rows outside world")
    if max_examples is not None and len(idx) > max_examples:
        idx = idx[np.sort(rng.choice(len(idx), size=max_examples, replace=False))]
    return _Rows(name, base, idx, [base.records[int(i)] for i in idx])


def _check_vocabulary(model: nn.Module, rows: list[_Rows]) -> None:
    vocab = getattr(model, "vocab_size", None)
    top = max(int(r.base.x[r.idx].max()) for r in rows)
    if vocab is not None and top >= vocab:
        raise ValueError(f"the text data has token id {top} but a model's vocabulary has {vocab} tokens; encode "
                         "the data with the models' own tokenizer")


def _first_labelled(labels: torch.Tensor) -> int:
    where = (labels != A.IGNORE).nonzero()
    return int(where[0, 0]) if len(where) else len(labels)


def _pad(tokenizer: Any) -> int:
    from ..data.text import pad_id

    return pad_id(tokenizer)


def _max_positions(model: nn.Module) -> int | None:
    config = getattr(model, "config", None)
    return getattr(config, "max_position_embeddings", None)


def _device(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}; got {value!r}")


# Public names of the pieces other views of a model's answers build on (the comparator's per-fact table): the rows
# of a set that are scored, their sequence statistics, the mean answer NLL of (question, answer) pairs, each distinct
# question's first row, TOFU's truth ratio per question, the tokenizer's padding id and the model's context length.
ScoredRows = _Rows
scored_rows = _rows
row_statistics = _statistics
mean_answer_nll = _mean_nll
question_groups = _question_groups
truth_ratios = _truth
padding_id = _pad
max_positions = _max_positions
