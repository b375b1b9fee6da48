"""The vulnerable-sample audit: the forget examples a membership attack separates best, and two games on them.

RULI (Naderloui et al., "Rectifying Privacy and Efficacy Measurements in Machine Unlearning: A New Inference Attack
Perspective", USENIX Security 2025; reference datasec-lab/Ruli, ``core/recall_main.py`` and
``core/attack/unlearn_attack.py``) shows that averages over a random forget set hide the examples that leak: most
examples are barely memorised, so any method looks like retraining on them. It first selects the *vulnerable*
examples, those a LiRA attack with many shadow models separates best, then plays two games on them.

**Selection** (:func:`vulnerability`, :func:`select_vulnerable`): the audit already holds K originals (trained
with every forget example) and K baseline oracles (trained without any). Per forget example, LiRA (Carlini et al.,
IEEE S&P 2022; :func:`expunge.metrics.lira`, online, pooled σ below 32 fit models per side) fits Gaussians to the
logit-scaled confidence φ under half of the originals (IN) and half of the baseline oracles (OUT) and scores the
other halves; the halves then swap (two-fold cross-fitting, so no model is scored by Gaussians fitted on it). An
example's vulnerability is the mean held-out score of the originals minus that of the baseline oracles: how far
the attack's log likelihood ratio sets models trained with it apart from models trained without it. The ``top``
(v) examples with the highest vulnerability are selected (ties: the earlier forget position). Only the originals
of the unlearned models the games do not score take part (see below).

**Games** on the v selected examples, each beside the same game on the whole forget set (the population figure)
and beside its oracle-vs-oracle baseline:

- **efficacy** (unlearned vs retrained; RULI's ``TestEvaluator``): can an attacker who knows how the method's
  outputs and retraining's outputs look per example (shadow models that include the unlearning step: the
  unlearned models themselves) tell an unlearned model from a retrained one? U-LiRA
  (:func:`expunge.audit.tier2.ulira`: Gaussians per example for "trained then unlearned" and "retrained" models,
  cross-fitted) between unlearned models and oracles; accuracy over held-out (model, example) pairs (0.5 =
  indistinguishable), AUC and TPR at 1% FPR;
- **privacy** (unlearned vs never trained; RULI's ``TargetModelEvaluator``): on the unlearned models themselves, can
  a membership attack tell the forget examples (trained on, then unlearned) from examples the models never
  trained on (the test examples)? Offline LiRA (:func:`expunge.audit.tier1.offline_scores`: z = (φ − μ_out) /
  σ_out) with the oracles as the "never trained" reference: the oracles never saw any forget example, so for the
  forget examples "never trained" is exactly the oracles (RULI instead trains shadow models in which each example
  is left out and other examples are unlearned); members: the selected forget examples, non-members: every test
  example, pooled over the models; AUC and TPR at 1% and 0.1% FPR (0.5 and the FPR for a model that never
  trained on them).

**Oracle-vs-oracle baseline and band.** The selection uses the originals and the baseline oracles, so the games
use the K oracles only, which the selection never saw (otherwise the oracles' chance lows on the selected
examples would make retraining itself look distinguishable); likewise the games score a seeded half of the
unlearned models, and the selection uses only the other half's originals (unlearned model i comes from original
i), so a method that keeps some of its original's chance fit is not scored on the examples chosen for it. Each game is played at half size: the method's
figure with K/2 unlearned models (a seeded random half) against K/2 oracles (a seeded random half). Its
**baseline** is the median of the same game with K/2 oracles in the unlearned models' place and K/2 other oracles
as the reference (:data:`BASELINE_DRAWS` random splits of the oracles): what exact retraining scores. Its **band**
is a permutation band: the K oracles and the K/2 unlearned models are pooled, split at random into a target group
of K/2 and a reference group of K/2 :data:`PERMUTATIONS` times, and the game is played on each split; the band is
the central 95% of those figures. Under exact retraining the unlearned models are fresh oracles, every split is as
likely as the method's own, and the method's figure lies above the band's upper end about 1 time in 40 (a band
from the oracles alone would be too narrow: its splits all share the same K oracles). Where the method differs
from retraining the pooled band widens, as in any permutation test, while the method's own split stays the
extreme one. A figure above the band is flagged: on those examples the method is distinguishable from retraining.
Each number is judged on its own band, with no correction for testing several.

Deviations from RULI: LiRA with Gaussians (as the rest of expunge) instead of RULI's kernel density estimates;
the audit's forget set is fixed, so the shadow models are the audit's own ensembles (every original trained on
every forget example, every oracle on none) rather than models with random halves of a target pool; the
vulnerable examples are the top v by vulnerability rather than those above a threshold at a fixed FPR; the
privacy game's "never trained" models are the oracles (see above).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..metrics import lira
from ..metrics.roc import roc_numbers
from .leakage import BAND, band_quantiles
from .tier1 import offline_scores
from .tier2 import cross_fitted_lira, ulira

MODES = ("standard", "vulnerable")
DEFAULT_TOP = 20
MIN_MODELS = 4                 # the games need K/2 >= 2 unlearned models and oracles per side
PERMUTATIONS = 200
BASELINE_DRAWS = 50
GAMES = {"efficacy": "unlearned vs retrained: U-LiRA between the unlearned models and the oracles",
         "privacy": "unlearned vs never trained: offline LiRA on the unlearned models, the forget examples against "
                    "the test examples, the oracles as the never-trained reference (they never saw a forget example)"}
GAME_NUMBERS = {"efficacy": ("accuracy", "auc", "tpr_at_1pct"), "privacy": ("auc", "tpr_at_1pct", "tpr_at_0_1pct")}
TARGETS = {"accuracy": 0.5, "auc": 0.5, "tpr_at_1pct": 0.01, "tpr_at_0_1pct": 0.001}


def check_mode(mode: Any, top: Any, n_forget: int, n_models: int) -> tuple[str, int | None]:
    """The audit mode and, in the vulnerable mode, the number of vulnerable examples (default
    ``min(DEFAULT_TOP, n_forget)``); ValueError/TypeError naming the bad value."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not allowed; allowed: {', '.join(MODES)}")
    if mode == "standard":
        if top is not None:
            raise ValueError(f"top={top!r} applies only to mode 'vulnerable' (the top-v vulnerable forget examples)")
        return mode, None
    if n_models < MIN_MODELS:
        raise ValueError(f"the vulnerable mode needs n_models >= {MIN_MODELS} (its games use two halves of the "
                         f"oracles); got {n_models}")
    if top is None:
        return mode, min(DEFAULT_TOP, n_forget)
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)):
        raise TypeError(f"top must be an integer from 1 to the forget set's size {n_forget}; got {top!r}")
    if not 1 <= int(top) <= n_forget:
        raise ValueError(f"top={top!r} is not allowed; expected an integer from 1 to the forget set's size {n_forget}")
    return mode, int(top)


def vulnerability(in_phi: np.ndarray, out_phi: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """Per example (column), the cross-fitted LiRA separation of models trained with it (φ ``[K_in, N]``) from
    models trained without it (φ ``[K_out, N]``): mean held-out online LiRA score of the IN models minus that of
    the OUT models, averaged over the two folds (see the module docstring)."""
    a, b = np.asarray(in_phi, float), np.asarray(out_phi, float)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(a.shape[0], b.shape[0]) < 2:
        raise ValueError(f"vulnerability needs [models, examples] φ with >= 2 IN and >= 2 OUT models over the same "
                         f"examples; got {a.shape} and {b.shape}")
    folds = cross_fitted_lira(a, b, seed=seed)
    return sum(s_in.mean(0) - s_out.mean(0) for s_in, s_out in folds) / 2


def select_vulnerable(in_phi: np.ndarray, out_phi: np.ndarray, top: int, *, seed: int = 0
                      ) -> tuple[np.ndarray, np.ndarray]:
    """The positions of the ``top`` most vulnerable examples, most vulnerable first, and every example's
    vulnerability (:func:`vulnerability`)."""
    v = vulnerability(in_phi, out_phi, seed=seed)
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or not 1 <= top <= len(v):
        raise ValueError(f"top={top!r} is not allowed; expected an integer from 1 to the number of examples {len(v)}")
    order = np.argsort(-v, kind="stable")
    return order[:int(top)], v


def efficacy_numbers(target_phi: np.ndarray, reference_phi: np.ndarray, *, seed: int = 0) -> dict[str, float]:
    """U-LiRA between target models ``[K, n]`` and retrained reference models ``[K', n]``."""
    r = ulira(target_phi, reference_phi, seed=seed)
    return {"accuracy": r.accuracy, "auc": r.attack.auc, "tpr_at_1pct": r.attack.tpr_at_1pct}


def privacy_numbers(target_forget: np.ndarray, target_test: np.ndarray, reference_forget: np.ndarray,
                    reference_test: np.ndarray) -> dict[str, float]:
    """Offline LiRA of target models on forget (members) vs test (non-members) examples, never-trained reference
    models' φ as OUT; pooled over the target models (NaN for an FPR the test examples cannot resolve)."""
    n = target_forget.shape[1]
    z = offline_scores(np.concatenate([target_forget, target_test], 1),
                       np.concatenate([reference_forget, reference_test], 1))
    auc, tprs = roc_numbers(z[:, :n].ravel(), z[:, n:].ravel())
    return dict(zip(GAME_NUMBERS["privacy"], [auc, *tprs]))


@dataclass
class Game:
    """One game on one set of examples: the method's figure, the oracle-vs-oracle baseline (median) and band."""

    name: str
    examples: str                                   # "vulnerable" or "population"
    method: dict[str, float]
    baseline: dict[str, float]
    band: dict[str, tuple[float, float]]

    def exceeds(self, key: str) -> bool:
        """The method's figure lies above the band: distinguishable from retraining."""
        x, hi = self.method[key], self.band[key][1]
        return bool(np.isfinite(x) and np.isfinite(hi) and x > hi)

    def summary(self, prefix: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for key in GAME_NUMBERS[self.name]:
            p = f"{prefix}_{self.name}_{key}"
            out[p], out[f"{p}_baseline"] = self.method[key], self.baseline[key]
            out[f"{p}_band_low"], out[f"{p}_band_high"] = self.band[key]
            out[f"{p}_exceeds"] = float(self.exceeds(key))
        return {k: v for k, v in out.items() if np.isfinite(v)}

    def to_dict(self) -> dict[str, Any]:
        return {"game": GAMES[self.name], "examples": self.examples, "method": self.method,
                "baseline": self.baseline, "band": {k: list(v) for k, v in self.band.items()},
                "exceeds": {k: self.exceeds(k) for k in GAME_NUMBERS[self.name]}}


@dataclass
class VulnerableAudit:
    """The vulnerable examples and the efficacy and privacy games on them and on the whole forget set."""

    top: int
    positions: np.ndarray                           # in the forget set, most vulnerable first
    vulnerability: np.ndarray                       # every forget example's
    games: dict[str, Game]                          # efficacy, privacy, efficacy_population, privacy_population
    n_target: int                                   # unlearned models (= oracles) per side of each game
    n_test: int
    permutations: int
    examples: dict[str, np.ndarray] = field(default_factory=dict)   # per selected example, most vulnerable first

    def flagged(self) -> list[str]:
        """The vulnerable-example games whose figure lies above the band, as ``game number`` strings."""
        return [f"{name} {key}" for name in ("efficacy", "privacy") for key in GAME_NUMBERS[name]
                if self.games[name].exceeds(key)]

    def summary(self, prefix: str = "vulnerable") -> dict[str, float]:
        out = {f"{prefix}_top": float(self.top), f"{prefix}_n_models_per_side": float(self.n_target),
               f"{prefix}_vulnerability_min": float(self.vulnerability[self.positions].min())}
        for name, game in self.games.items():
            out.update(game.summary(prefix if game.examples == "vulnerable" else f"{prefix}_population"))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"top": self.top, "n_models_per_side": self.n_target, "n_test": self.n_test,
                "permutations": self.permutations, "band_coverage": BAND, "positions": self.positions.tolist(),
                "vulnerability": self.vulnerability.tolist(),
                "games": {k: g.to_dict() for k, g in self.games.items()},
                "examples": {k: np.asarray(v).tolist() for k, v in self.examples.items()}}


def vulnerable_audit(phi: dict[str, dict[str, np.ndarray]], top: int, *, seed: int = 0,
                     permutations: int = PERMUTATIONS, index: np.ndarray | None = None,
                     labels: np.ndarray | None = None) -> VulnerableAudit:
    """Select the ``top`` vulnerable forget examples and play both games (see the module docstring).

    ``phi[group][split]``: φ ``[K, N]`` for groups ``original``, ``baseline`` (selection), ``unlearned`` and
    ``oracle`` (games) on splits ``forget`` and ``test``. ``index``/``labels``: each forget example's position
    in train and label, for the per-example table."""
    o_f, o_t = np.asarray(phi["oracle"]["forget"], float), np.asarray(phi["oracle"]["test"], float)
    u_f, u_t = np.asarray(phi["unlearned"]["forget"], float), np.asarray(phi["unlearned"]["test"], float)
    k = o_f.shape[0]
    if k < MIN_MODELS or u_f.shape[0] < k // 2:
        raise ValueError(f"the vulnerable mode needs >= {MIN_MODELS} oracles and K/2 unlearned models; got "
                         f"{k} and {u_f.shape[0]}")
    half = k // 2
    rng = np.random.default_rng(seed)
    mine = np.sort(rng.permutation(u_f.shape[0])[:half])
    # unlearned model i comes from original i: select on the originals whose unlearned models the games do not
    # score, so that a method keeping some of its original's chance fit is not scored on the highs chosen from it
    originals = np.asarray(phi["original"]["forget"], float)
    unseen = np.setdiff1d(np.arange(originals.shape[0]), mine)
    positions, vul = select_vulnerable(originals[unseen], phi["baseline"]["forget"], top, seed=seed)
    reference = rng.permutation(k)[:half]
    pool_f, pool_t = np.concatenate([o_f, u_f[mine]]), np.concatenate([o_t, u_t[mine]])
    pooled = [rng.permutation(k + half) for _ in range(permutations)]
    oracle_only = [rng.permutation(k) for _ in range(BASELINE_DRAWS)]
    sets = {"vulnerable": positions, "population": np.arange(o_f.shape[1])}

    def play(name: str, f: np.ndarray, t: np.ndarray, target: np.ndarray, ref: np.ndarray, cols: np.ndarray
             ) -> dict[str, float]:
        if name == "efficacy":
            return efficacy_numbers(f[np.ix_(target, cols)], f[np.ix_(ref, cols)], seed=seed)
        return privacy_numbers(f[np.ix_(target, cols)], t[target], f[np.ix_(ref, cols)], t[ref])

    games: dict[str, Game] = {}
    for examples, cols in sets.items():
        for name in GAMES:
            keys = GAME_NUMBERS[name]
            method = play(name, pool_f, pool_t, np.arange(k, k + half), reference, cols)
            band = [play(name, pool_f, pool_t, s[:half], s[half:2 * half], cols) for s in pooled]
            base = [play(name, o_f, o_t, s[:half], s[half:2 * half], cols) for s in oracle_only]
            games[name if examples == "vulnerable" else f"{name}_population"] = Game(
                name, examples, method, {key: _median([d[key] for d in base]) for key in keys},
                {key: band_quantiles([d[key] for d in band]) for key in keys})
    table = {"position": positions, "vulnerability": vul[positions],
             "phi_original": np.median(phi["original"]["forget"][:, positions], 0),
             "phi_oracle": np.median(o_f[:, positions], 0), "phi_unlearned": np.median(u_f[:, positions], 0)}
    if index is not None:
        table["index"] = np.asarray(index)[positions]
    if labels is not None:
        table["label"] = np.asarray(labels)[positions]
    return VulnerableAudit(top=int(top), positions=positions, vulnerability=vul, games=games, n_target=half,
                           n_test=o_t.shape[1], permutations=permutations, examples=table)


def _median(values: list[float]) -> float:
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    return float(np.median(v)) if len(v) else float("nan")


