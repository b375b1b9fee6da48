"""Relearning attack on language models: does forgotten knowledge come back after a little fine-tuning?

Following the relearning evaluations of Hu et al., "Jogging the Memory of Unlearned LLMs Through Targeted
Relearning Attacks" (arXiv 2406.13356; ICLR 2025 as "Unlearning or Obfuscating?") and Lynch et al., "Eight
Methods to Evaluate Robust Unlearning in LLMs" (arXiv 2402.16835):
fine-tune a copy of the unlearned model for a few epochs on a part of the forget set and measure answer
probability and ROUGE-L recall on the rest of it, against the oracle fine-tuned the same way. A model that only
hid the facts recovers the unseen ones far above the oracle; a model that truly forgot recovers them no more than
a model that never saw them.

The split is by distinct question (rows sharing a question, such as the two answer phrasings of the authors
corpus, stay on one side), drawn with ``seed``: ``fraction`` of the questions (at least one, leaving at least one)
are relearned. Fine-tuning is :func:`expunge.train` with the language task's recipe (AdamW, warmup, clipping) and
``epochs``, ``lr``, ``batch_size`` as given; the caller's models are not changed.

Scores (fractions in [0, 1]; the gaps in percentage points): ``relearn_prob_before``, ``relearn_prob``,
``relearn_rouge_before``, ``relearn_rouge`` (the model on the measured questions before and after relearning);
with ``reference``, the oracle's ``relearn_oracle_prob_before``, ``relearn_oracle_prob``,
``relearn_oracle_rouge_before``, ``relearn_oracle_rouge`` and ``gap_relearn_prob``, ``gap_relearn_rouge``
(100 · |model − oracle| after relearning); ``relearn_questions`` and ``measured_questions`` (how many of each).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn
from torch.utils.data import Dataset, Subset

from . import metrics as M
from .attacks import MIN_K
from .evaluate import _check_int, _generation_scores, _question_groups, _rows, _statistics


def relearn_attack(model: nn.Module, *, forget: Dataset, reference: nn.Module | None = None, fraction: float = 0.5,
                   epochs: int = 5, lr: float | None = None, batch_size: int = 8, max_new_tokens: int = 32,
                   seed: int = 0) -> dict[str, float]:
    """Relearn ``fraction`` of the forget questions and measure the rest (see the module docstring)."""
    from ..api import train
    from .models import as_language_model

    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise ValueError(f"fraction must lie strictly between 0 and 1; got {fraction!r}")
    _check_int("epochs", epochs, 1)
    _check_int("batch_size", batch_size, 1)
    _check_int("max_new_tokens", max_new_tokens, 1)
    if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0):
        raise ValueError(f"lr must be a positive number or None (the language task's default); got {lr!r}")
    rows = _rows("forget", forget, None, np.random.default_rng(seed))
    firsts, _ = _question_groups(rows)
    questions = [rows.records[i]["question"] for i in firsts]
    if len(questions) < 2:
        raise ValueError(f"the relearning attack needs at least 2 distinct forget questions; got {len(questions)}")
    order = np.random.default_rng(seed).permutation(len(questions))
    n_relearn = min(len(questions) - 1, max(1, int(round(fraction * len(questions)))))
    chosen = {questions[i] for i in order[:n_relearn]}
    relearn_pos = [i for i, r in enumerate(rows.records) if r["question"] in chosen]
    measure_pos = [i for i, r in enumerate(rows.records) if r["question"] not in chosen]
    part, rest = Subset(forget, relearn_pos), Subset(forget, measure_pos)
    measured = _rows("forget", rest, None, np.random.default_rng(seed))
    recipe: dict[str, Any] = {"epochs": epochs, "batch_size": batch_size, **({"lr": float(lr)} if lr else {})}

    def measure(m: nn.Module) -> tuple[float, float]:
        was_training = m.training
        m.eval()
        try:
            nll = _statistics(m, measured.base.x[measured.idx], measured.base.y[measured.idx], MIN_K, 64)["mean_nll"]
            rouge = _generation_scores(m, measured, max_new_tokens, 64)["forget_rouge"]
        finally:
            m.train(was_training)
        return float(np.mean(M.answer_probability(nll))), rouge

    out: dict[str, float] = {"relearn_questions": float(n_relearn),
                             "measured_questions": float(len(questions) - n_relearn)}
    candidates = [("relearn", as_language_model(model, forget))]
    if reference is not None:
        candidates.append(("relearn_oracle", as_language_model(reference, forget)))
    for prefix, m in candidates:
        out[f"{prefix}_prob_before"], out[f"{prefix}_rouge_before"] = measure(m)
        out[f"{prefix}_prob"], out[f"{prefix}_rouge"] = measure(train(m, part, seed=seed, **recipe))
    if reference is not None:
        out["gap_relearn_prob"] = 100.0 * abs(out["relearn_prob"] - out["relearn_oracle_prob"])
        out["gap_relearn_rouge"] = 100.0 * abs(out["relearn_rouge"] - out["relearn_oracle_rouge"])
    return out
