"""Tier-2 evidence: the K unlearned models against K oracles, per forget example, each beside its baseline.

- **Challenge forgetting quality** (NeurIPS 2023 Machine Unlearning challenge; :func:`expunge.metrics.
  forgetting_quality`): per-example ε from φ under the unlearned vs the oracle models, F = mean H(ε), final =
  F × RA ratio × TA ratio. F is far below 1 even for exact retraining at realistic model counts (two samples of one
  Gaussian give median ε ≈ 1.6, F ≈ 0.19 with 64 models per side; digits' oracles against oracles, F ≈ 0.16), so F
  is reported beside its **baseline**: the same score of K further oracles (other seeds) against the K oracles,
  computed the same way with the same K. Two variants (:data:`CHALLENGE_VARIANTS`), which differ in where the
  unlearned models come from: **across originals** (keys ``challenge_*``): K originals, each unlearned once, so
  the score also sees how the originals vary; **NeurIPS 2023 protocol** (keys ``challenge_neurips2023_*``): the
  challenge's own, one original unlearned K times with K seeds, so it sees only the method's own randomness (a
  method that ignores its seed gives K equal models, and ε at its cap on every example the oracles vary on). Both
  use the same K oracles and the same baseline.
- **KLoM** (Georgiev et al., "Attribute-to-Delete", ICLR 2025; :func:`expunge.metrics.klom`) on forget, retain and
  test examples, mean and 95th percentile, beside the same oracle-vs-oracle baseline.
- **U-LiRA** (Hayes et al., "Inexact Unlearning Needs More Careful Evaluations to Avoid a False Sense of Privacy",
  SaTML 2025) with the audit's fixed forget set: the unlearned and the oracle models are each split at random into
  two halves; per forget example, Gaussians are fitted to φ under the fit half's "trained then unlearned" models and
  its "never trained" oracles (:func:`expunge.metrics.lira`, online), and every model of the other half is scored
  by the likelihood ratio; then the halves swap roles (two-fold cross-fitting, so each model is scored once, by
  Gaussians fitted without it). The attack says "unlearned" when the log ratio is > 0. Reported: accuracy over
  held-out (model, example) pairs, balanced between unlearned and oracle models (50% = indistinguishable), AUC
  (0.5), TPR at 1% and 0.1% FPR, and the accuracy per example. The same attack on baseline oracles vs oracles
  gives the noise level (its expectation is exactly 50%). Per-example σ is used from
  :data:`ULIRA_PER_EXAMPLE_VARIANCE_MIN` fit models per side on, a pooled σ below (as LiRA does with few models).

**Permutation bands over models.** The baselines above are one draw each, and how far a figure may lie from its
baseline by chance depends on how the forget examples move together across models: independent examples (a random
forget set) barely move the pooled numbers, while examples that share what a model learned (a class-wise request:
every forget image of a generator shares the forgotten class's conditioning) move together, so that a whole set of K
models can swing U-LiRA or F far from its expectation (oracles against oracles gave U-LiRA AUC 0.28 on the digits
GAN). A margin that treats the model-example pairs as independent is then far too narrow. So each of U-LiRA and F
has a band from permutations over models, as the vulnerable-sample games have (:mod:`.vulnerable`): the K unlearned
models and the K oracles are pooled and split at random into a "method" group and an "oracle" group of the original
sizes, and the score is recomputed on each split. Under exact retraining every split is as likely as the real one,
whatever the dependence between examples, so the real figure lies beyond the band's edge with the band's nominal
probability. U-LiRA: :data:`ULIRA_PERMUTATIONS` splits, the central 95% (``ulira_band_low``/``_high``). F (0.7 s per
split at K = 64): a Monte Carlo permutation test with :data:`CHALLENGE_PERMUTATIONS` splits, whose lowest figure is
the band's low edge (the real F lies below all 39 with probability 1/40 under retraining;
``challenge_band_low``), computed only where F lies below its baseline by more than
:data:`expunge.verdict.AUDIT_MARGIN` (the only case in which the band decides the verdict; absent otherwise).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..metrics import AttackResult, ForgettingQuality, KLoMResult, forgetting_quality, klom, lira
from .leakage import band_quantiles

ULIRA_PER_EXAMPLE_VARIANCE_MIN = 32
ULIRA_PERMUTATIONS = 200
CHALLENGE_PERMUTATIONS = 39
KLOM_SPLITS = ("forget", "retain", "test")
CHALLENGE_VARIANTS = {
    "across_originals": "K originals, each unlearned once with its own seed, against K oracles (keys challenge_*)",
    "neurips2023": "the NeurIPS 2023 challenge's protocol: one original unlearned K times with K seeds, against "
                   "K oracles (keys challenge_neurips2023_*)"}


@dataclass
class ULiRAResult:
    """U-LiRA over held-out models: pooled attack, accuracy at log ratio 0, and accuracy per example."""

    attack: AttackResult
    accuracy: float
    per_example_accuracy: np.ndarray
    n_fit: int                   # unlearned (= oracle) models per fit half, the smaller of the two folds

    def summary(self, prefix: str = "ulira") -> dict[str, float]:
        a = self.attack
        return {f"{prefix}_accuracy": self.accuracy, f"{prefix}_auc": a.auc, f"{prefix}_tpr_at_1pct": a.tpr_at_1pct,
                f"{prefix}_tpr_at_0_1pct": a.tpr_at_0_1pct, f"{prefix}_n_fit": float(self.n_fit)}


def ulira(unlearned_phi: np.ndarray, oracle_phi: np.ndarray, *, seed: int = 0) -> ULiRAResult:
    """U-LiRA from φ of the forget examples under unlearned ``[K_U, S]`` and oracle ``[K_R, S]`` models (each
    K >= 2); see the module docstring."""
    u, o = np.asarray(unlearned_phi, float), np.asarray(oracle_phi, float)
    if u.ndim != 2 or o.ndim != 2 or u.shape[1] != o.shape[1] or min(u.shape[0], o.shape[0]) < 2:
        raise ValueError(f"U-LiRA needs [models, examples] scores with >= 2 unlearned and >= 2 oracle models; got "
                         f"{u.shape} and {o.shape}")
    folds = cross_fitted_lira(u, o, seed=seed)
    scores = [np.concatenate([s_u, s_o]) for s_u, s_o in folds]
    is_unlearned = [np.repeat([True, False], [len(s_u), len(s_o)]) for s_u, s_o in folds]
    smallest = min(min(len(s_u), len(s_o)) for s_u, s_o in folds)
    s = np.concatenate(scores)                                    # [K_U + K_R, S], each model scored once
    member = np.concatenate(is_unlearned)
    correct = (s > 0) == member[:, None]
    per_example = 0.5 * (correct[member].mean(0) + correct[~member].mean(0))
    attack = AttackResult.from_scores("ulira", s.ravel(), np.broadcast_to(member[:, None], s.shape).ravel(),
                                      n_reference=2 * smallest)
    return ULiRAResult(attack, float(per_example.mean()), per_example, smallest)


def cross_fitted_lira(a: np.ndarray, b: np.ndarray, *, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Two-fold cross-fitted online LiRA of group ``a`` (IN) against group ``b`` (OUT), φ ``[K, S]`` each: both
    groups are split in seeded halves; per fold, Gaussians fitted on one half of each group score the other halves
    (so no model is scored by Gaussians fitted on it; a variance pooled over examples below
    ``ULIRA_PER_EXAMPLE_VARIANCE_MIN`` models a side). One ``(scores of a's held-out models, scores of b's
    held-out models)`` pair per fold, each model scored once over the two folds."""
    rng = np.random.default_rng(seed)
    halves_a = np.array_split(rng.permutation(a.shape[0]), 2)
    halves_b = np.array_split(rng.permutation(b.shape[0]), 2)
    folds = []
    for fit, held in ((0, 1), (1, 0)):
        fa, fb = halves_a[fit], halves_b[fit]
        shadow = np.concatenate([a[fa], b[fb]])
        shadow_in = np.zeros(shadow.shape, bool)
        shadow_in[:len(fa)] = True
        fixed = min(len(fa), len(fb)) < ULIRA_PER_EXAMPLE_VARIANCE_MIN
        target = np.concatenate([a[halves_a[held]], b[halves_b[held]]])
        z = lira(target, shadow, shadow_in, online=True, fix_variance=fixed)
        folds.append((z[:len(halves_a[held])], z[len(halves_a[held]):]))
    return folds


@dataclass
class Tier2:
    """The tier-2 scores of one audit: method against oracles, and oracles against oracles (baseline)."""

    challenge: ForgettingQuality
    challenge_baseline: ForgettingQuality
    klom: dict[str, KLoMResult]
    klom_baseline: dict[str, KLoMResult]
    ulira: ULiRAResult
    ulira_baseline: ULiRAResult
    challenge_neurips2023: ForgettingQuality | None = None   # one original unlearned K times (absent: not run)
    ulira_band: tuple[float, float] = (float("nan"), float("nan"))    # permutation band of the U-LiRA AUC
    challenge_band_low: float = float("nan")      # lowest F over the permutation splits (NaN: not computed)

    def challenge_variants(self) -> dict[str, ForgettingQuality]:
        """The challenge score by variant name (:data:`CHALLENGE_VARIANTS`)."""
        out = {"across_originals": self.challenge}
        if self.challenge_neurips2023 is not None:
            out["neurips2023"] = self.challenge_neurips2023
        return out

    def summary(self) -> dict[str, float]:
        out: dict[str, float] = {}
        variants = [("challenge", self.challenge), ("challenge_baseline", self.challenge_baseline)]
        if self.challenge_neurips2023 is not None:
            variants.append(("challenge_neurips2023", self.challenge_neurips2023))
        for prefix, fq in variants:
            out.update(fq.summary(prefix))
            out[f"{prefix}_eps_median"] = float(np.median(fq.epsilons))
            if fq.retain_ratio is not None:          # None: models without an accuracy (image generators)
                out[f"{prefix}_retain_ratio"] = float(fq.retain_ratio)
                out[f"{prefix}_test_ratio"] = _nan(fq.test_ratio)
        for prefix, results in (("klom", self.klom), ("klom_baseline", self.klom_baseline)):
            for split, r in results.items():
                out[f"{prefix}_{split}_mean"] = r.mean
                out[f"{prefix}_{split}_p95"] = r.percentile
        out.update(self.ulira.summary("ulira"))
        out.update(self.ulira_baseline.summary("ulira_baseline"))
        out["ulira_band_low"], out["ulira_band_high"] = self.ulira_band
        if np.isfinite(self.challenge_band_low):        # computed only where it can decide the verdict
            out["challenge_band_low"] = self.challenge_band_low
        return out


def _nan(x: float | None) -> float:
    return float("nan") if x is None else float(x)


def tier2(phi: dict[str, dict[str, np.ndarray]], accuracy: dict[str, dict[str, np.ndarray]] | None, *,
          seed: int = 0) -> Tier2:
    """All tier-2 scores. ``phi[group][split]`` is ``[K, N]`` φ (= KLoM margin) for group in unlearned, oracle,
    baseline (and, for the NeurIPS 2023 variant of the challenge score, one_original: one original unlearned K
    times) and split in forget, retain, test; ``accuracy[group][split]`` the per-model accuracies ``[K]``, or None
    where the models have none (the challenge score then has no final score and no ratios)."""
    u, o, b = phi["unlearned"], phi["oracle"], phi["baseline"]

    def challenge(group: str, scores: dict[str, np.ndarray]) -> ForgettingQuality:
        if accuracy is None:
            return forgetting_quality(scores["forget"], o["forget"])
        return forgetting_quality(scores["forget"], o["forget"],
                                  retain_acc=(accuracy[group]["retain"], accuracy["oracle"]["retain"]),
                                  test_acc=(accuracy[group]["test"], accuracy["oracle"]["test"]))

    from ..verdict import AUDIT_MARGIN

    found, base = challenge("unlearned", u), challenge("baseline", b)
    band_low = float("nan")
    if found.forget_quality < base.forget_quality - AUDIT_MARGIN:
        band_low = min(forgetting_quality(x, y).forget_quality
                       for x, y in permuted(u["forget"], o["forget"], CHALLENGE_PERMUTATIONS, seed))
    band = ulira_band(u["forget"], o["forget"], seed=seed)
    return Tier2(challenge=found, challenge_baseline=base,
                 klom={s: klom(u[s], o[s]) for s in KLOM_SPLITS},
                 klom_baseline={s: klom(b[s], o[s]) for s in KLOM_SPLITS},
                 ulira=ulira(u["forget"], o["forget"], seed=seed),
                 ulira_baseline=ulira(b["forget"], o["forget"], seed=seed),
                 challenge_neurips2023=challenge("one_original", phi["one_original"]) if "one_original" in phi
                 else None, ulira_band=band, challenge_band_low=band_low)


def ulira_band(method_phi: np.ndarray, oracle_phi: np.ndarray, *, seed: int = 0) -> tuple[float, float]:
    """The central 95% of the U-LiRA AUC over :data:`ULIRA_PERMUTATIONS` re-splits of the pooled models (module
    docstring): where the AUC of exact retraining falls, whatever the dependence between forget examples."""
    def auc(x: np.ndarray, y: np.ndarray) -> float:
        try:
            return ulira(x, y, seed=seed).attack.auc
        except ValueError:          # a split whose fit halves have no spread (copies of one model): no figure
            return float("nan")

    return band_quantiles([auc(x, y) for x, y in permuted(method_phi, oracle_phi, ULIRA_PERMUTATIONS, seed)])


def permuted(method_phi: np.ndarray, oracle_phi: np.ndarray, n: int, seed: int):
    """``n`` seeded random re-splits of the pooled models (``[K_M, S]`` and ``[K_O, S]`` φ) into groups of the
    original sizes: pairs (method-sized group, oracle-sized group) for the permutation bands (module docstring)."""
    pooled = np.concatenate([np.asarray(method_phi, float), np.asarray(oracle_phi, float)])
    k = len(method_phi)
    rng = np.random.default_rng([seed, 0x9E12])
    for _ in range(n):
        order = rng.permutation(len(pooled))
        yield pooled[order[:k]], pooled[order[k:]]
