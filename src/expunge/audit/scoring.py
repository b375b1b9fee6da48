"""The audit's evidence from per-example statistics alone: every tier-1 and tier-2 score, the retain leakage, the
SWAP-test advantage and the vulnerable-sample games, computed from φ arrays, whatever the task that produced them.

φ is a per-example statistic of one model, higher when the model treats the example more like a training example:
the logit-scaled confidence for classifiers (:func:`expunge.metrics.logit_scaled_confidence`), the logit of the
length-normalised answer probability for language models (:func:`expunge.lm.evaluate.answer_logit`), minus the
denoising error (diffusion) or the discriminator's logit (GAN) for image generators
(:func:`expunge.gen.attacks.membership_scores`). Each task's audit computes φ of its models and calls
:func:`evidence`; the classification, language and generation audits share every score below.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .leakage import retain_leakage
from .swap import swap_scores
from .tier1 import reference_attack
from .tier2 import tier2
from .vulnerable import vulnerable_audit

GROUPS = ("unlearned", "oracle", "baseline", "original", "one_original")
SPLITS = ("forget", "retain", "test")


def evidence(phi: dict[str, dict[str, np.ndarray]], accuracy: dict[str, dict[str, np.ndarray]] | None,
             audited: dict[str, np.ndarray], *, seed: int, index: np.ndarray, labels: np.ndarray,
             top: int | None = None, swap: tuple[dict[str, np.ndarray], dict[str, np.ndarray]] | None = None
             ) -> dict[str, Any]:
    """The scores of an audit from φ.

    - ``phi[group][split]``: φ ``[K, N_split]`` for the groups of :data:`GROUPS` (``one_original``: one original
      unlearned K times, optional) on the splits of :data:`SPLITS` (``retain``: the retain examples scored, a sample
      of at most the test set's size; ``test``: the non-members of the forget set's kind), and optionally
      ``test_retained``: the retain leakage's non-members where they differ from ``test`` (an image generator's
      class-wise request: held-out images of the retained classes);
    - ``accuracy[group][split]``: per-model accuracy (%) ``[K]`` for the challenge score's retain and test ratios,
      or None where the task has no per-model accuracy (then the challenge's final score and ratios are left out);
    - ``audited[split]``: φ ``[N_split]`` of the one audited model;
    - ``index``, ``labels``: each forget example's position in train and its label (classifiers, generators) or
      group (language), for the per-example tables;
    - ``top``: the vulnerable-sample audit's number of examples (None: standard mode);
    - ``swap``: φ on the SWAP test's A and B (``(on_a, on_b)``, groups as :func:`expunge.audit.swap.swap_scores`
      takes them), or None where the test is not played.

    Returns the keywords ``tier2``, ``tier1``, ``leakage``, ``advantage``, ``examples``, ``accuracies`` and
    ``vulnerable`` of :class:`expunge.audit.AuditResult`.
    """
    t2 = tier2(phi, accuracy, seed=seed)
    both = lambda p: np.concatenate([p["forget"], p["test"]], axis=-1)
    n_forget, n_test = phi["oracle"]["forget"].shape[1], phi["oracle"]["test"].shape[1]
    is_forget = np.r_[np.ones(n_forget, bool), np.zeros(n_test, bool)]
    t1 = reference_attack(both(audited), both(phi["oracle"]), is_forget, heldout_phi=both(phi["baseline"]))
    trio = ("unlearned", "oracle", "baseline")
    leak = lambda p: p.get("test_retained", p["test"])
    leakage = retain_leakage({**{g: phi[g]["retain"] for g in trio}, "audited": audited["retain"]},
                             {**{g: leak(phi[g]) for g in trio}, "audited": leak(audited)}, seed=seed)
    advantage = swap_scores(*swap, seed=seed) if swap is not None else None
    examples = {"index": index, "label": labels, "epsilon": t2.challenge.epsilons,
                "klom": t2.klom["forget"].per_example, "ulira_accuracy": t2.ulira.per_example_accuracy,
                "phi_unlearned": np.median(phi["unlearned"]["forget"], 0),
                "phi_oracle": np.median(phi["oracle"]["forget"], 0)}
    vulnerable = (vulnerable_audit(phi, top, seed=seed, index=index, labels=labels) if top is not None else None)
    accuracies = ({f"{g}_{s}_acc": float(np.mean(a)) for g, by in accuracy.items() for s, a in by.items()}
                  if accuracy is not None else {})
    return {"tier2": t2, "tier1": t1, "leakage": leakage, "advantage": advantage, "examples": examples,
            "accuracies": accuracies, "vulnerable": vulnerable}
