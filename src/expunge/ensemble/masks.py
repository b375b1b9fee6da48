"""Inclusion masks for shadow models: which examples each of K members trains on.

LiRA (Carlini et al., "Membership Inference Attacks From First Principles", IEEE S&P 2022; reference
https://github.com/tensorflow/privacy, ``research/mi_lira_2021/train.py``) trains every shadow model on a random
half of the data so that each example is IN for about half of the models. The reference draws each example's IN
set independently, so members' training sets differ in size. Here both margins are exact, because an ensemble
trains members in lock-step and needs equal subset sizes (each member then takes the same number of steps as a
model trained alone on a half):

- every member holds exactly ⌊N/2⌋ examples;
- every example is IN for exactly K/2 members when K and N are even (otherwise the counts differ by at most one:
  for even K and odd N, K/2 examples are IN for K/2 − 1 members and all others for K/2).

Construction: a matrix with these margins is laid out cyclically (columns in random order), then randomised by
global curveball rounds (Carstens et al., "Switching edges to randomize networks: what goes wrong and how to fix
it", J. Complex Networks 2017): members are paired at random and each pair re-deals, uniformly at random, the
examples that exactly one of the two holds. Every round keeps both margins; the chain's stationary distribution
is uniform over all matrices with these margins.
"""
from __future__ import annotations

import torch


def half_masks(members: int, n: int, *, seed: int = 0, rounds: int | None = None) -> torch.Tensor:
    """A boolean ``[members, n]`` inclusion mask: row k marks the examples member k trains on (see module doc).

    ``rounds``: curveball rounds (default 16; starting from the cyclic layout, 8 rounds already bring the
    correlations between examples' and between members' masks to those of independent draws, for K = 64 and 512).

    >>> m = half_masks(4, 6, seed=0)
    >>> m.sum(1).tolist(), m.sum(0).tolist()
    ([3, 3, 3, 3], [2, 2, 2, 2, 2, 2])
    """
    for name, value, least in (("members", members, 1), ("n", n, 2)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"half_masks: {name}={value!r} is not allowed; expected an integer >= {least}")
    rounds = 16 if rounds is None else rounds
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
        raise ValueError(f"half_masks: rounds={rounds!r} is not allowed; expected an integer >= 0")
    g = torch.Generator().manual_seed(int(seed))
    mask = _cyclic(members, n, n // 2, g)
    for _ in range(rounds if members > 1 else 0):
        _curveball_round(mask, g)
    return mask


def _cyclic(k: int, n: int, per_row: int, g: torch.Generator) -> torch.Tensor:
    """Rows with ``per_row`` ones each, column sums as even as possible, laid out cyclically over rows."""
    total = k * per_row
    counts = torch.full((n,), total // n, dtype=torch.long)
    counts[torch.randperm(n, generator=g)[:total % n]] += 1
    ends = counts.cumsum(0)
    flat = torch.arange(total)
    column = torch.searchsorted(ends, flat, right=True)    # the i-th one goes to this column ...
    row = flat % k                                          # ... and this row: consecutive, so distinct per column
    column = torch.randperm(n, generator=g)[column]         # columns in random order
    mask = torch.zeros(k, n, dtype=torch.bool)
    mask[row, column] = True
    return mask


def _curveball_round(mask: torch.Tensor, g: torch.Generator) -> None:
    """Pair the rows at random; each pair re-deals the columns exactly one of them holds (margins are kept)."""
    k, n = mask.shape
    order = torch.randperm(k, generator=g)
    a, b = order[: k // 2], order[k // 2: 2 * (k // 2)]
    ra, rb = mask[a], mask[b]
    differ = ra ^ rb
    keep_a = (ra & differ).sum(1, keepdim=True)              # a holds as many of the differing columns as before
    keys = torch.randint(0, 2 ** 62, (len(a), n), generator=g).masked_fill_(~differ, 2 ** 62)
    ranked = keys.argsort(1)                                 # differing columns first, in random order
    to_a = torch.zeros_like(differ)
    to_a.scatter_(1, ranked, torch.arange(n).expand(len(a), n) < keep_a)
    mask[a] = (ra & ~differ) | to_a
    mask[b] = (rb & ~differ) | (differ & ~to_a)
