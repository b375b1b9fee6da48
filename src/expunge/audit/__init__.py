"""The audit: strong evidence that an unlearning method's output is indistinguishable from retraining, at low cost.

``audit(template, train, test, forget=..., retain=..., method=..., recipe=..., n_models=K)`` trains, as batched
ensembles (:mod:`expunge.ensemble`), K originals on all of ``train``, K oracles and K baseline oracles on
``retain`` (three disjoint seed blocks), runs ``method`` once from each original and K times from original 0,
trains K originals of the swapped request (:mod:`.swap`) and runs ``method`` on each, and scores three tiers:

- **tier 2** (:mod:`.tier2`; K >= :data:`TIER2_MODELS`): the NeurIPS 2023 Machine Unlearning challenge's
  per-example ε and forgetting quality F (Triantafillou et al., "Are we making progress in unlearning? Findings
  from the first NeurIPS unlearning competition", 2024; google-deepmind/unlearning_evaluation), KLoM (Georgiev et
  al., "Attribute-to-Delete: Machine Unlearning via Datamodel Matching", ICLR 2025; RoyRin/data-unlearning-bench)
  and U-LiRA (Hayes et al., "Inexact Unlearning Needs More Careful Evaluations to Avoid a False Sense of Privacy",
  SaTML 2025), each beside the same score of oracles against oracles. F is never compared with 1: exact
  retraining itself scores F ≈ 0.16 on digits at K = 64, so the target is the baseline F. The challenge score comes
  in two variants: across originals (K originals, one run each: ``challenge_*``) and the NeurIPS 2023 protocol (one
  original, K runs: ``challenge_neurips2023_*``);
- **tier 1** (:mod:`.tier1`; K >= :data:`TIER1_REFERENCES`): offline LiRA (Carlini et al., IEEE S&P 2022) of the
  audited model with the K oracles as reference models, beside the same attack on held-out oracles;
- **tier 0**: ``expunge.evaluate`` of the audited model against an oracle;
- with every tier, **retain leakage** (:mod:`.leakage`; TC-UMIA, Euro S&P 2026): a membership attack on retain vs
  test examples, unlearned models vs oracles and the audited model vs single oracles, each difference beside its
  oracle-vs-oracle band; and the **calibrated advantage** of the SWAP test (:mod:`expunge.metrics.advantage`; Tu,
  Hu, Ma, NeurIPS 2025) with its bootstrap interval, raw and scaled so that retraining scores 0 and the originals,
  which kept the data, score 1.

Language models (text data) and image generators (images for generation) go through the same ``audit``
(:mod:`.tasks`): the same models, seeds and scores, the models trained one by one rather than as ensembles, φ the
answer logit of each row or the generator's membership score of each image; every score is computed from φ arrays
by :func:`.scoring.evidence`, whatever the task.

The result (:class:`AuditResult`) gives the tier reached, flat numbers (``summary()``), the forget examples most
exposed (``exposed()``) and JSON (``to_dict()``); :func:`write_audit_reports` writes ``audit.md``,
a self-contained ``audit.html`` and ``audit.json``. ``expunge audit CONFIG.yaml`` runs it from an experiment
config with an optional ``audit:`` section (:mod:`.config`).

Cost: 7K trainings of the model (4K full trainings and 3K runs of the method: K from the K originals, K from
original 0 for the NeurIPS 2023 protocol, K for the swapped request): the NeurIPS 2023 protocol costs K runs of the
method, the SWAP test K full trainings and K runs, the retain leakage no model at all. ``swap=False`` (``audit:
{swap: false}`` in a config) leaves the SWAP test out (5K: 3K trainings, 2K runs); it is left out too, with a
one-line note in the result and the reports (``AuditResult.swap_note``), where the test set holds no example of the
forget set's labels, since its swapped forget set is drawn from those.
On digits with the demo's MLP (K = 64) the audit takes about a minute on one core; the models are trained in
lock-step, so a model that takes T seconds alone costs far less than 7K·T.
"""
from .result import EXAMPLE_COLUMNS, TIER1_REFERENCES, TIER2_MODELS, AuditResult, tier_for
from .run import audit, audit_methods, check_audit

__all__ = ["audit", "audit_methods", "check_audit", "AuditResult", "tier_for", "TIER1_REFERENCES", "TIER2_MODELS", "EXAMPLE_COLUMNS",
           "write_audit_reports"]


def write_audit_reports(*args, **kwargs):
    """See :func:`expunge.audit.report.write_audit_reports` (imported lazily: it loads matplotlib)."""
    from .report import write_audit_reports as write

    return write(*args, **kwargs)
