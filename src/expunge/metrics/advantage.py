"""The calibrated advantage of the unlearning sample inference game, estimated by the SWAP test.

Tu, Hu and Ma, "A Reliable Cryptographic Framework for Empirical Machine Unlearning Evaluation" (NeurIPS 2025;
arXiv 2404.11577, earlier "Towards Reliable Empirical Machine Unlearning Evaluation: A Game-Theoretic View"). The
game: the data are split into retain, forget and test sets; a model is trained on retain ∪ forget and the forget
set unlearned; the adversary receives the model and an example drawn from either the forget or the test set and
guesses which. Its advantage is |P(guess "forget" | forget) − P(guess "forget" |
test)|, averaged over the splits. Splits are drawn so that swapping the forget and the test set gives a split as
likely as the first, which makes the advantage of retraining exactly 0: a model retrained on the retain set alone
cannot tell the two sets apart once both roles are played. The **SWAP test** is the paper's practical estimate: one
split (forget set A, test set B) and its swap (forget B, test A), each played by its own unlearned model:

    advantage = ½ [(P(1 | A; m₁) − P(1 | B; m₁)) + (P(1 | B; m₂) − P(1 | A; m₂))]

with m₁ trained on retain ∪ A and unlearned A, m₂ trained on retain ∪ B and unlearned B. Retraining scores 0; a
model that kept its forget set scores 1 against an adversary that tells its members perfectly.

Here (:func:`swap_advantage`) the adversary thresholds a per-example membership score (higher = "forget"), in the
direction and at the threshold that maximise the advantage; K model pairs (m₁ₖ, m₂ₖ) are split into two folds, the
direction and threshold chosen on one fold and the advantage measured on the other (two-fold cross-fitting, so a
retrained model's estimate is not pushed above 0 by the choice). The estimate is the mean over pairs of the held-out
per-pair advantage, with a percentile bootstrap interval (:data:`RESAMPLES` resamples, 95%) that resamples both
sources of chance: the model pairs, and the examples of A and of B (each example resampled in both games at once,
the thresholds kept). :func:`scaled_advantage` divides it by the same advantage of models that kept the data (the
originals, trained on retain ∪ forget, never unlearned), so that retraining scores 0 and keeping the data scores 1;
its interval resamples the pairs and examples of both games jointly.

Deviations: the advantage is reported signed (the paper's is its absolute value) so that retraining's estimate is
centred on 0 and its interval can cover 0; the adversary class is one threshold on the given score (the paper takes
the supremum over adversaries and instantiates it with membership-inference attacks); the paper's split pairs are
drawn uniformly at random, while an audit's forget set is the request's own and its swap partner is drawn from the
test data (see :mod:`expunge.audit.swap`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .scores import as_numpy

RESAMPLES = 1000
CONFIDENCE = 0.95
MAX_THRESHOLDS = 512


@dataclass
class Advantage:
    """The SWAP-test advantage: mean held-out advantage over model pairs, its bootstrap interval, and per pair."""

    value: float
    ci_low: float
    ci_high: float
    per_pair: np.ndarray = field(repr=False)
    thresholds: tuple[float, float]          # per fold: the threshold chosen on the other fold
    directions: tuple[int, int]              # per fold: +1 says "forget" above the threshold, −1 below
    confidence: float = CONFIDENCE
    hits: tuple[np.ndarray, ...] = field(repr=False, default=())   # the 4 games' "forget" guesses [K, n] (0/1)
    signs: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))   # per pair: its fold's direction

    @property
    def n_pairs(self) -> int:
        return len(self.per_pair)

    def summary(self, prefix: str = "swap_advantage") -> dict[str, float]:
        return {prefix: self.value, f"{prefix}_ci_low": self.ci_low, f"{prefix}_ci_high": self.ci_high,
                f"{prefix}_n_pairs": float(self.n_pairs)}


@dataclass
class ScaledAdvantage:
    """An advantage divided by that of models that kept the data, with its joint bootstrap interval."""

    value: float
    ci_low: float
    ci_high: float
    confidence: float = CONFIDENCE

    def summary(self, prefix: str = "swap_advantage_scaled") -> dict[str, float]:
        return {prefix: self.value, f"{prefix}_ci_low": self.ci_low, f"{prefix}_ci_high": self.ci_high}


def _scores(x, what: str) -> np.ndarray:
    a = as_numpy(x, what)
    if a.ndim != 2 or a.shape[1] == 0:
        raise ValueError(f"{what} must be [pairs, examples] scores with at least one example; got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{what} must be finite")
    return a


def _rates(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """[pairs, thresholds]: the share of each row's scores ≥ each threshold."""
    s = np.sort(scores, axis=1)
    return np.stack([1.0 - np.searchsorted(row, thresholds, side="left") / len(row) for row in s])


def pair_advantages(games: tuple[np.ndarray, ...], thresholds: np.ndarray) -> np.ndarray:
    """[pairs, thresholds]: per pair, ½ of the two games' (P(≥ t | forget) − P(≥ t | test)) at each threshold.
    ``games`` = (first_forget, first_test, second_forget, second_test)."""
    ff, ft, sf, st = games
    return 0.5 * ((_rates(ff, thresholds) - _rates(ft, thresholds)) + (_rates(sf, thresholds) - _rates(st, thresholds)))


def _best(games: tuple[np.ndarray, ...]) -> tuple[float, int]:
    pooled = np.concatenate([g.ravel() for g in games])
    grid = np.unique(np.quantile(pooled, np.linspace(0, 1, MAX_THRESHOLDS + 1)))
    grid = np.r_[grid, np.inf]                # "forget" for no example: advantage 0, always available
    mean = pair_advantages(games, grid).mean(0)
    i = int(np.argmax(np.abs(mean)))          # ties: the first, i.e. the lowest threshold
    return float(grid[i]), (1 if mean[i] >= 0 else -1)


def swap_advantage(first_forget, first_test, second_forget, second_test, *, seed: int = 0,
                   resamples: int = RESAMPLES, confidence: float = CONFIDENCE) -> Advantage:
    """The SWAP-test advantage from membership scores (higher = "forget") of K model pairs.

    ``first_forget`` ``[K, n_A]`` and ``first_test`` ``[K, n_B]``: the first game's models (forget set A, test set
    B) on A and on B; ``second_forget`` ``[K, n_B]`` and ``second_test`` ``[K, n_A]``: the swapped game's models on
    B (their forget set) and on A. Needs K >= 2 pairs (one per fold). See the module docstring.
    """
    games = tuple(_scores(x, name) for x, name in ((first_forget, "first_forget"), (first_test, "first_test"),
                                                  (second_forget, "second_forget"), (second_test, "second_test")))
    k = games[0].shape[0]
    if any(g.shape[0] != k for g in games) or k < 2:
        raise ValueError(f"the SWAP test needs the same number (>= 2) of model pairs in every score array; got "
                         f"{[g.shape[0] for g in games]}")
    if games[0].shape[1] != games[3].shape[1] or games[1].shape[1] != games[2].shape[1]:
        raise ValueError("the swapped game must score the same two sets: second_test like first_forget and "
                         "second_forget like first_test")
    if not 0 < confidence < 1 or resamples < 1:
        raise ValueError(f"confidence must lie in (0, 1) and resamples be >= 1; got {confidence}, {resamples}")
    rng = np.random.default_rng(seed)
    folds = np.array_split(rng.permutation(k), 2)
    cut, signs = np.empty(k), np.empty(k)
    thresholds, directions = [], []
    for fit, held in ((folds[1], folds[0]), (folds[0], folds[1])):
        t, d = _best(tuple(g[fit] for g in games))
        cut[held], signs[held] = t, d
        thresholds.append(t)
        directions.append(d)
    hits = tuple((g >= cut[:, None]).astype(float) for g in games)
    per_pair = _per_pair(hits, signs)
    a = Advantage(float(per_pair.mean()), np.nan, np.nan, per_pair, tuple(thresholds), tuple(directions), confidence,
                  hits, signs)
    values = _resampled([a], _draws(rng, a, resamples))[0]
    a.ci_low, a.ci_high = _percentiles(values, confidence)
    return a


def scaled_advantage(advantage: Advantage, kept: Advantage, *, seed: int = 0, resamples: int = RESAMPLES
                     ) -> ScaledAdvantage:
    """``advantage`` ÷ ``kept`` (the same game played by models that kept the data; same pairs, in order): 0 for
    retraining, 1 for keeping the data. NaN when the models that kept the data show no advantage (≤ 0)."""
    shapes = lambda a: [h.shape for h in a.hits]
    if shapes(advantage) != shapes(kept):
        raise ValueError(f"scaling needs the same model pairs and examples; got {shapes(advantage)} and "
                         f"{shapes(kept)}")
    if not kept.value > 0:
        nan = float("nan")
        return ScaledAdvantage(nan, nan, nan, advantage.confidence)
    rng = np.random.default_rng(seed)
    mine, theirs = _resampled([advantage, kept], _draws(rng, advantage, resamples))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(theirs > 0, mine / theirs, np.nan)
    low, high = _percentiles(ratio, advantage.confidence)
    return ScaledAdvantage(advantage.value / kept.value, low, high, advantage.confidence)


def _per_pair(hits: tuple[np.ndarray, ...], signs: np.ndarray) -> np.ndarray:
    ff, ft, sf, st = (h.mean(1) for h in hits)
    return signs * 0.5 * ((ff - ft) + (sf - st))


def _draws(rng: np.random.Generator, a: Advantage, resamples: int) -> list[tuple[np.ndarray, ...]]:
    """Resampled (pairs, examples of A, examples of B), each with replacement."""
    k, n_a, n_b = a.hits[0].shape[0], a.hits[0].shape[1], a.hits[1].shape[1]
    return [(rng.integers(0, k, k), rng.integers(0, n_a, n_a), rng.integers(0, n_b, n_b)) for _ in range(resamples)]


def _resampled(advantages: list[Advantage], draws: list[tuple[np.ndarray, ...]]) -> list[np.ndarray]:
    """Each advantage recomputed on every draw (games 1 and 4 score A, games 2 and 3 score B)."""
    out = []
    for a in advantages:
        ff, ft, sf, st = a.hits
        out.append(np.array([_per_pair((ff[p][:, ia], ft[p][:, ib], sf[p][:, ib], st[p][:, ia]), a.signs[p]).mean()
                             for p, ia, ib in draws]))
    return out


def _percentiles(values: np.ndarray, confidence: float) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return float("nan"), float("nan")
    tail = 100 * (1 - confidence) / 2
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))
