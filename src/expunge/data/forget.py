"""Forget requests: which training examples to forget, as index-preserving forget/retain subsets."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from .datasets import LABELLED, groups_of, resolve, targets, task_of


@dataclass(frozen=True)
class ForgetRequest:
    """What was asked to be forgotten. ``kind`` is one of fraction, classes, indices, where."""

    kind: str
    fraction: float | None = None
    classes: tuple[int, ...] | None = None
    seed: int | None = None
    description: str = ""

    @property
    def is_classwise(self) -> bool:
        return self.kind == "classes"


class Split(Subset):
    """A ``Subset`` whose ``indices`` are positions in the dataset it was split from, plus the request behind it."""

    def __init__(self, dataset: Dataset, indices, *, role: str, request: ForgetRequest):
        super().__init__(dataset, [int(i) for i in indices])
        self.role = role
        self.request = request

    def __repr__(self) -> str:
        return f"Split({self.role}, n={len(self)}, {self.request.description})"


def split_forget(dataset: Dataset, *, fraction: float | None = None, classes: Any = None, indices: Any = None,
                 where: Callable[[Any], Any] | Any = None, groups: Any = None,
                 seed: int = 0) -> tuple[Split, Split]:
    """Split ``dataset`` into ``(forget, retain)`` subsets that keep the dataset's indices.

    Give exactly one of:

    - ``fraction``: a seeded random fraction in (0, 1) of the examples;
    - ``classes``: every example of these class labels (class-wise forgetting);
    - ``indices``: these positions in ``dataset``;
    - ``where``: a predicate applied to the per-example ``groups`` array (``groups=`` or the dataset's own), e.g.
      ``split_forget(train, where=lambda user: user == 17, groups=user_ids)``; or a boolean mask.

    >>> from expunge.data import as_dataset
    >>> data = as_dataset([[0.], [1.], [2.], [3.]], [0, 1, 0, 1])
    >>> forget, retain = split_forget(data, classes=[1])
    >>> forget.indices, retain.indices
    ([1, 3], [0, 2])
    """
    given = {k: v for k, v in dict(fraction=fraction, classes=classes, indices=indices, where=where).items()
             if v is not None}
    if len(given) != 1:
        raise ValueError("give exactly one of fraction=, classes=, indices=, where= to split_forget; "
                         f"got {', '.join(given) or 'none'}")
    n = len(dataset)  # type: ignore[arg-type]
    if fraction is not None:
        chosen, request = _by_fraction(n, fraction, seed)
    elif classes is not None:
        chosen, request = _by_classes(dataset, classes)
    elif indices is not None:
        chosen, request = _by_indices(n, indices)
    else:
        chosen, request = _by_predicate(dataset, where, groups)
    if len(chosen) == 0:
        raise ValueError(f"the forget set is empty ({request.description}); nothing would be forgotten")
    if len(chosen) >= n:
        raise ValueError(f"the forget set is the whole training set ({n} examples, {request.description}); "
                         "nothing would be left to retain")
    mask = np.zeros(n, dtype=bool)
    mask[chosen] = True
    return (Split(dataset, np.flatnonzero(mask), role="forget", request=request),
            Split(dataset, np.flatnonzero(~mask), role="retain", request=request))


def _by_fraction(n: int, fraction: float, seed: int) -> tuple[np.ndarray, ForgetRequest]:
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise ValueError(f"fraction must be a number strictly between 0 and 1; got {fraction!r}")
    k = max(1, int(round(fraction * n)))
    g = torch.Generator().manual_seed(int(seed))
    chosen = torch.randperm(n, generator=g)[:k].numpy()
    return np.sort(chosen), ForgetRequest("fraction", fraction=float(fraction), seed=int(seed),
                                          description=f"random {fraction:.0%} (seed {seed})")


def _by_classes(dataset: Dataset, classes: Any) -> tuple[np.ndarray, ForgetRequest]:
    if task_of(dataset) not in LABELLED:
        raise ValueError(f"classes= needs class labels (a classification or generation dataset); this one is "
                         f"{task_of(dataset)}")
    wanted = np.atleast_1d(np.asarray(classes))
    if wanted.size == 0 or not np.issubdtype(wanted.dtype, np.integer):
        raise ValueError(f"classes must be a non-empty list of integer labels; got {classes!r}")
    y = targets(dataset).numpy()
    present = set(np.unique(y).tolist())
    absent = sorted(set(wanted.tolist()) - present)
    if absent:
        raise ValueError(f"class(es) {absent} do not occur in the data; present classes: {sorted(present)}")
    chosen = np.flatnonzero(np.isin(y, wanted))
    cls = tuple(sorted(set(int(c) for c in wanted)))
    return chosen, ForgetRequest("classes", classes=cls, description=f"class-wise {list(cls)}")


def _by_indices(n: int, indices: Any) -> tuple[np.ndarray, ForgetRequest]:
    idx = np.asarray(indices)
    if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
        raise ValueError(f"indices must be a flat list of integers; got {indices!r:.80}")
    bad = idx[(idx < 0) | (idx >= n)]
    if bad.size:
        raise ValueError(f"indices out of range for a dataset of {n} examples (allowed 0..{n - 1}): "
                         f"{bad[:5].tolist()}{' ...' if bad.size > 5 else ''}")
    uniq, counts = np.unique(idx, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"duplicate indices in the forget request: {uniq[counts > 1][:5].tolist()}")
    return np.sort(idx), ForgetRequest("indices", description=f"{idx.size} given indices")


def _by_predicate(dataset: Dataset, where: Any, groups: Any) -> tuple[np.ndarray, ForgetRequest]:
    n = len(dataset)  # type: ignore[arg-type]
    if callable(where):
        g = np.asarray(groups) if groups is not None else groups_of(dataset)
        if g is None:
            raise ValueError("where= needs a per-example groups array: pass groups=... or build the dataset with "
                             "ArrayDataset(x, y, groups=...)")
        if len(g) != n:
            raise ValueError(f"groups has {len(g)} entries but the dataset has {n} examples")
        mask = np.asarray(where(g))
        if mask.shape != (n,):
            mask = np.array([bool(where(v)) for v in g])
    else:
        mask = np.asarray(where)
    if mask.dtype != bool or mask.shape != (n,):
        raise ValueError(f"where= must be a predicate over groups or a boolean mask of length {n}; "
                         f"got an array of dtype {mask.dtype} and shape {mask.shape}")
    return np.flatnonzero(mask), ForgetRequest("where", description=f"predicate ({int(mask.sum())} examples)")


def train_test_split(dataset: Dataset, *, test_fraction: float = 0.2, seed: int = 0,
                     stratify: bool = True) -> tuple[Subset, Subset]:
    """Seeded train/test split (stratified by class for classification) as index-preserving subsets."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be strictly between 0 and 1; got {test_fraction!r}")
    from sklearn.model_selection import train_test_split as sk_split

    base, _ = resolve(dataset)
    n = len(dataset)  # type: ignore[arg-type]
    strat = targets(dataset).numpy() if stratify and base.task in LABELLED else None
    tr, te = sk_split(np.arange(n), test_size=test_fraction, random_state=seed, stratify=strat)
    return Subset(dataset, np.sort(tr).tolist()), Subset(dataset, np.sort(te).tolist())
