"""The swapped request of the SWAP test (:mod:`expunge.metrics.advantage`) inside an audit, and its advantage.

The audit's game is the request itself: forget set A = the forget set, test set B = test examples. Its swap
partner B is drawn from the test data with the forget set's label counts (per label, as many as both sets have:
n_c = min(|A_c|, |test_c|), the forget examples used drawn at random among A_c), so that the swap is a request of the
same kind (a class-wise request swaps with test examples of the same class). The swapped game's models are K more
originals trained on retain ∪ B (with the audit's recipe) and the method run on each with B as the forget set.

The two requests can differ in size: the first game's models forget all of A (the audited request), while the
swapped ones forget B, of Σ_c n_c examples; both games are scored on the same number of examples (B, and the
n_c examples drawn from each A_c). Where test holds fewer examples of a label than the forget set (a class-wise
request on a small test set), the swapped request is the smaller one, so the swap cancels the difference between
the two sets only as far as forgetting fewer examples leaves the method's behaviour unchanged. Where test holds no
example of any forget label the swap cannot be formed (:func:`swap_note` says why) and the audit skips the SWAP test.

Both games are played against one adversary score: offline LiRA with the K oracles as reference models (the
per-example z of :func:`expunge.audit.tier1.offline_scores`; the oracles are OUT for both A and B), so that
example difficulty is calibrated away. Three advantages are reported: the method's (first game: the K unlearned
models; swapped: the K swapped unlearned models), the originals' (the models that kept the data: originals and
swapped originals, never unlearned) and the oracles' (the K baseline oracles split into two halves, one per game:
its expectation is exactly 0), and the method's advantage scaled by the originals'.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from ..data.datasets import ArrayDataset, concatenated, features, is_streamed, resolve, targets
from ..metrics.advantage import Advantage, ScaledAdvantage, scaled_advantage, swap_advantage
from .tier1 import offline_scores


@dataclass
class SwapRequest:
    """The swapped request: ``train`` = retain ∪ B, its ``forget`` (B) and ``retain`` subsets; which forget examples
    (``forget_positions``, into the forget set) and test examples (``test_positions``, into test) the games use."""

    train: ArrayDataset
    forget: Dataset
    retain: Dataset
    forget_positions: np.ndarray
    test_positions: np.ndarray


SWITCHED_OFF = "SWAP test not run: switched off (swap=False, or audit: {swap: false} in a config)"
NO_SWAP_PARTNER = ("SWAP test skipped: test has no example of any label in the forget set, and the swapped forget "
                   "set is drawn from test examples of those labels")


def swap_note(forget: Dataset, test: Dataset, swap: bool = True) -> str | None:
    """None when the audit plays the SWAP test; else the one line that says why not (switched off, or ``test``
    holds no example of any of ``forget``'s labels, where B would be drawn)."""
    if not swap:
        return SWITCHED_OFF
    if not np.isin(targets(test).numpy(), targets(forget).numpy()).any():
        return NO_SWAP_PARTNER
    return None


def swap_request(forget: Dataset, retain: Dataset, test: Dataset, seed: int) -> SwapRequest:
    """Draw B from ``test`` with ``forget``'s label counts and build retain ∪ B (held in memory, or streamed when
    either part is). Per label c, B has n_c = min(|A_c|, |test_c|) examples, so B is smaller than the forget set A
    where test is short of a label, while the audited request forgets all of A (its game is scored on the n_c
    examples drawn from each A_c; see the module docstring). Raises ValueError where :func:`swap_note` gives a
    reason not to play."""
    note = swap_note(forget, test)
    if note is not None:
        raise ValueError(note)
    yf, yt = targets(forget).numpy(), targets(test).numpy()
    g = np.random.default_rng(seed)
    fpos, tpos = [], []
    for c in np.unique(yf):
        in_f, in_t = np.flatnonzero(yf == c), np.flatnonzero(yt == c)
        n = min(len(in_f), len(in_t))
        fpos.append(np.sort(g.choice(in_f, n, replace=False)))
        tpos.append(np.sort(g.choice(in_t, n, replace=False)))
    fpos, tpos = np.concatenate(fpos).astype(np.int64), np.concatenate(tpos).astype(np.int64)
    b = Subset(test, tpos.tolist())
    y = torch.cat([targets(retain), targets(b)])
    if is_streamed(retain) or is_streamed(b):
        data: ArrayDataset = concatenated([retain, b], y)
    else:
        data = ArrayDataset(torch.cat([features(retain), features(b)]), y, task=resolve(retain)[0].task)
    n_r = len(retain)
    return SwapRequest(data, Subset(data, range(n_r, len(data))), Subset(data, range(n_r)), fpos, tpos)


@dataclass
class SwapResult:
    """The SWAP test in an audit: the method's, the originals' and the oracles' advantage, and the scaled one."""

    method: Advantage
    kept: Advantage
    oracle: Advantage | None            # None below 4 baseline oracles (two pairs)
    scaled: ScaledAdvantage
    n_forget: int                       # |A| = |B| used by the games
    n_pairs: int

    def summary(self) -> dict[str, float]:
        """Flat floats; the baseline (below 4 baseline oracles) and the scaled advantage (when the originals show
        none) are left out where they cannot be computed."""
        out = {**self.method.summary("swap_advantage"), **self.kept.summary("swap_advantage_original"),
               **self.scaled.summary("swap_advantage_scaled"), "swap_n_examples": float(self.n_forget)}
        if self.oracle is not None:
            out.update(self.oracle.summary("swap_advantage_baseline"))
        return {k: v for k, v in out.items() if np.isfinite(v)}

    def to_dict(self) -> dict[str, Any]:
        def one(a: Advantage | None) -> dict[str, Any] | None:
            if a is None:
                return None
            return {"value": a.value, "ci_low": a.ci_low, "ci_high": a.ci_high, "confidence": a.confidence,
                    "per_pair": a.per_pair, "thresholds": list(a.thresholds), "directions": list(a.directions)}
        return {"test": "SWAP test (Tu, Hu, Ma, NeurIPS 2025), adversary: offline LiRA z against the oracles",
                "method": one(self.method), "original": one(self.kept), "baseline": one(self.oracle),
                "scaled": {"value": self.scaled.value, "ci_low": self.scaled.ci_low, "ci_high": self.scaled.ci_high},
                "n_examples": self.n_forget, "n_pairs": self.n_pairs}


def swap_scores(phi_a: dict[str, np.ndarray], phi_b: dict[str, np.ndarray], *, seed: int = 0) -> SwapResult:
    """The three advantages from φ on A ``[K, n]`` and on B ``[K, n]`` of the groups ``unlearned``,
    ``swap_unlearned``, ``original``, ``swap_original``, ``oracle`` (the references) and ``baseline``."""
    ref = np.concatenate([phi_a["oracle"], phi_b["oracle"]], axis=1)
    n = phi_a["oracle"].shape[1]

    def z(group: str) -> tuple[np.ndarray, np.ndarray]:
        s = offline_scores(np.concatenate([phi_a[group], phi_b[group]], axis=1), ref)
        return s[:, :n], s[:, n:]                                    # on A, on B

    def game(first: str, second: str, rows: tuple[slice, slice] = (slice(None), slice(None))) -> Advantage:
        fa, fb = z(first)
        sa, sb = z(second)
        return swap_advantage(fa[rows[0]], fb[rows[0]], sb[rows[1]], sa[rows[1]], seed=seed)

    method = game("unlearned", "swap_unlearned")
    kept = game("original", "swap_original")
    half = phi_a["baseline"].shape[0] // 2
    oracle = game("baseline", "baseline", (slice(0, half), slice(half, 2 * half))) if half >= 2 else None
    return SwapResult(method, kept, oracle, scaled_advantage(method, kept, seed=seed), n, method.n_pairs)
