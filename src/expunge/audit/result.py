"""The record of one audit: the evidence tier reached, flat numbers, per-example tables, JSON."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .leakage import RetainLeakage
from .swap import SwapResult
from .tier1 import ReferenceAttack
from .tier2 import CHALLENGE_VARIANTS, Tier2
from .vulnerable import VulnerableAudit

TIER2_MODELS = 64       # unlearned models and oracles each, for tier 2 (distributional tests per example)
TIER1_REFERENCES = 16   # oracle reference models, for tier 1 (per-example attacks on one model)
EXAMPLE_COLUMNS = ("index", "label", "epsilon", "klom", "ulira_accuracy", "phi_unlearned", "phi_oracle")


def tier_for(n_models: int) -> int:
    """The evidence tier that ``n_models`` unlearned models and as many oracles reach: 2 from
    :data:`TIER2_MODELS`, 1 from :data:`TIER1_REFERENCES` (the oracles as reference models), else 0."""
    if n_models >= TIER2_MODELS:
        return 2
    return 1 if n_models >= TIER1_REFERENCES else 0


@dataclass
class AuditResult:
    """What :func:`expunge.audit` found.

    - ``tier``: the evidence tier reached (:func:`tier_for`);
    - ``tier2``: challenge score (both variants: across originals and the NeurIPS 2023 protocol), KLoM and U-LiRA
      with their oracle-vs-oracle baselines;
    - ``tier1``: offline LiRA of the audited model with the oracles as references, beside held-out oracles;
    - ``leakage``: the retain-vs-test membership attack on the unlearned models and the audited model against the
      oracles, with the oracle-vs-oracle bands (:mod:`.leakage`);
    - ``advantage``: the SWAP-test advantage of the method, of the originals and of oracles, and the scaled one
      (0 = retraining, 1 = kept the data; :mod:`.swap`); None where the SWAP test was not played, and then
      ``swap_note`` says why in one line (switched off, or no test example of the forget set's labels);
    - ``scores``: ``expunge.evaluate`` of the audited model against an oracle (tier 0);
    - ``examples``: per forget example (columns :data:`EXAMPLE_COLUMNS`: position in ``train``, label, challenge
      ε, KLoM, U-LiRA accuracy, median φ under the unlearned models and under the oracles);
    - ``accuracies``: mean accuracies (%) of the unlearned models, the oracles and the originals (language models:
      answer-token accuracy; empty for image generators, which have none);
    - ``seconds``: wall time of each stage;
    - ``vulnerable``: the vulnerable-sample audit (``mode="vulnerable"``; :mod:`.vulnerable`): the top-v forget
      examples LiRA separates best and the efficacy and privacy games on them, beside the whole forget set and the
      oracle-vs-oracle baseline; None in the standard mode;
    - ``task``: what was audited: ``classification``, ``language`` or ``generation`` (:mod:`.tasks`); the
      examples' ``label`` is a language row's group (e.g. its author; -1 without groups);
    - ``iam``: IAM of the audited model (:mod:`.iam`: per-example completeness against one shadow model trained on
      half the retain set; ``iam_*`` numbers as :meth:`expunge.audit.iam.IamResult.summary` gives them), a
      held-out oracle's (``iam_oracle_*``) and the band of the 2K oracles' values against the same shadow
      (``iam_oracle_<number>_low`` / ``_high``, ``iam_oracle_band_models``; :func:`expunge.audit.iam.oracle_band`)
      with the audited model's relative completeness judged against it (``iam_inside_oracle_band`` 1.0 or 0.0);
      classifiers only (None for language models and image generators).
    """

    tier: int
    n_models: int
    method: str
    method_args: dict[str, Any]
    seed: int
    tier2: Tier2
    tier1: ReferenceAttack
    leakage: RetainLeakage
    advantage: SwapResult | None
    scores: dict[str, float]
    examples: dict[str, np.ndarray]
    accuracies: dict[str, float]
    sizes: dict[str, int]
    seconds: dict[str, float]
    forget_base_index: np.ndarray = field(repr=False)
    audited: str = "member 0 of the unlearned models"
    swap_note: str | None = None
    vulnerable: VulnerableAudit | None = None
    task: str = "classification"
    iam: dict[str, float] | None = None

    def evidence(self) -> dict[str, float]:
        """The tier-1 and tier-2 numbers, the tier, model counts and timings (no tier-0 scores)."""
        out = {"evidence_tier": float(self.tier), "n_models": float(self.n_models)}
        out.update(self.tier2.summary())
        out.update(self.tier1.summary())
        out.update(self.leakage.summary())
        if self.advantage is not None:
            out.update(self.advantage.summary())
        if self.vulnerable is not None:
            out.update(self.vulnerable.summary())
        if self.iam is not None:
            out.update(self.iam)
        out.update(self.accuracies)
        out.update({f"{k}_seconds": v for k, v in self.seconds.items()})
        return out

    def summary(self) -> dict[str, float]:
        """One flat dict of floats: the audited model's tier-0 scores, then :meth:`evidence` (its tier wins)."""
        return {**self.scores, **self.evidence()}

    def verdict(self) -> str:
        """One line: distinguishable from retraining or not, given the oracle-vs-oracle baselines
        (:func:`expunge.verdict.audit_verdict`)."""
        from ..verdict import audit_verdict

        return audit_verdict(self.summary(), self.tier, self.sizes)

    def exposed(self, n: int = 10) -> list[dict[str, float]]:
        """The ``n`` forget examples with the highest ε (ties: highest KLoM), one dict per example."""
        e = self.examples
        order = np.lexsort((-e["klom"], -e["epsilon"]))[:n]
        return [{c: _plain(e[c][i]) for c in EXAMPLE_COLUMNS} for i in order]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN written as None)."""
        t2 = self.tier2
        return _clean({
            "evidence_tier": self.tier, "task": self.task, "n_models": self.n_models, "method": self.method,
            "method_args": self.method_args, "seed": self.seed, "audited": self.audited, "sizes": self.sizes,
            "summary": self.summary(), "verdict": self.verdict(),
            "scores": self.scores, "accuracies": self.accuracies, "seconds": self.seconds,
            "challenge": {"epsilons": t2.challenge.epsilons, "h": t2.challenge.h,
                          "baseline_epsilons": t2.challenge_baseline.epsilons},
            "challenge_variants": {name: {"protocol": CHALLENGE_VARIANTS[name], **fq.summary("challenge"),
                                          "eps_median": float(np.median(fq.epsilons)), "epsilons": fq.epsilons}
                                   for name, fq in t2.challenge_variants().items()},
            "retain_leakage": self.leakage.to_dict(),
            "advantage": self.advantage.to_dict() if self.advantage is not None else None,
            "swap_note": self.swap_note,
            **({"vulnerable": self.vulnerable.to_dict()} if self.vulnerable is not None else {}),
            "iam": self.iam,
            "klom": {s: r.per_example for s, r in t2.klom.items()},
            "klom_baseline": {s: r.per_example for s, r in t2.klom_baseline.items()},
            "ulira": {"per_example_accuracy": t2.ulira.per_example_accuracy, "roc_fpr": t2.ulira.attack.roc_fpr,
                      "roc_tpr": t2.ulira.attack.roc_tpr},
            "lira": _lira_json(self.tier1),
            "examples": {c: self.examples[c] for c in EXAMPLE_COLUMNS},
            "most_exposed": self.exposed(10)})


def _lira_json(ref: ReferenceAttack) -> dict[str, Any]:
    a = ref.attack
    return {**ref.summary(), "roc_fpr": a.roc_fpr, "roc_tpr": a.roc_tpr}


def _plain(x: Any) -> float | int:
    return int(x) if isinstance(x, (np.integer, int)) else float(x)


def _clean(o: Any) -> Any:
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, np.ndarray):
        return _clean(o.tolist())
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (float, np.floating)):
        return None if math.isnan(o) else (float(o) if math.isfinite(o) else str(float(o)))
    return o
