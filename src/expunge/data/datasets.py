"""In-memory datasets, task inference and fast tensor access for any torch Dataset.

expunge works on datasets that fit in memory. Any ``torch.utils.data.Dataset`` yielding ``(x, y)`` is accepted;
it is read once into tensors (cached per dataset object) so training and evaluation index tensors directly
instead of collating one sample at a time. ``Subset`` chains over an :class:`ArrayDataset` are resolved to index
tensors without copying the base data.

Labels are read lazily: :func:`features` never touches targets, which is what label-free methods rely on.
"""
from __future__ import annotations

import hashlib
import weakref
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

Task = Literal["classification", "regression"]
TASKS = ("classification", "regression")


class ArrayDataset(Dataset):
    """Features ``x`` and targets ``y`` held as tensors, with an optional per-row ``groups`` array.

    ``task`` is inferred from ``y`` when not given: integer or boolean targets mean classification, floating
    targets mean regression. ``groups`` (e.g. a user id per row) lets ``split_forget(where=...)`` forget an
    identity in one call. ``class_names`` maps label ``i`` to a readable name.
    """

    standardisation: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None   # set by standardise()

    def __init__(self, x: Any, y: Any, *, groups: Any = None, task: Task | None = None,
                 class_names: list[str] | None = None, name: str | None = None):
        x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
        y = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y)
        if x.ndim == 0 or len(x) == 0:
            raise ValueError(f"features must be a non-empty array with one row per example; got shape {tuple(x.shape)}")
        if len(y) != len(x):
            raise ValueError(f"features and targets differ in length: {len(x)} rows of x but {len(y)} of y")
        task = infer_task(y) if task is None else _check_task(task)
        x = x.float() if not torch.is_floating_point(x) else x.to(torch.float32)
        if task == "classification":
            if torch.is_floating_point(y):
                _check_finite(y, "targets")
                if not torch.equal(y, y.round()):
                    raise ValueError("classification targets must be whole numbers (class indices); "
                                     "got fractional values. Pass task='regression' for continuous targets")
            y = y.long()
            if len(y) and int(y.min()) < 0:
                raise ValueError(f"class labels must be >= 0; got {int(y.min())}")
        else:
            y = y.to(torch.float32)
        _check_finite(x, "features")
        _check_finite(y, "targets")
        if groups is not None:
            groups = np.asarray(groups)
            if len(groups) != len(x):
                raise ValueError(f"groups has {len(groups)} entries but the data has {len(x)} rows")
        self.x, self.y, self.groups, self.task = x, y, groups, task
        self.class_names = list(class_names) if class_names is not None else None
        self.name = name

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]

    @property
    def num_classes(self) -> int | None:
        if self.task != "classification":
            return None
        if self.class_names is not None:
            return len(self.class_names)
        return int(self.y.max()) + 1

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        return f"ArrayDataset{label}(n={len(self)}, x={tuple(self.x.shape[1:])}, task={self.task})"


def as_dataset(x: Any, y: Any, **kwargs) -> ArrayDataset:
    """Wrap arrays (numpy, lists or tensors) as a dataset; see :class:`ArrayDataset` for the keywords."""
    return ArrayDataset(x, y, **kwargs)


def infer_task(y: Any) -> Task:
    """Classification for integer/boolean targets, regression for floating-point ones."""
    y = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y)
    if y.dtype == torch.bool or not (torch.is_floating_point(y) or torch.is_complex(y)):
        return "classification"
    return "regression"


def _check_task(task: str) -> Task:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; allowed: {', '.join(TASKS)}")
    return task  # type: ignore[return-value]


def _check_finite(t: torch.Tensor, what: str) -> None:
    if torch.is_floating_point(t) and not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).flatten(1).any(1).sum()) if t.ndim > 1 else int((~torch.isfinite(t)).sum())
        raise ValueError(f"{what} contain NaN or Inf in {bad} row(s); clean or drop them first")


# --- resolving any dataset to tensors ------------------------------------------------------------------------

_materialised: "weakref.WeakKeyDictionary[Dataset, ArrayDataset]" = weakref.WeakKeyDictionary()


def resolve(dataset: Dataset) -> tuple[ArrayDataset, torch.Tensor]:
    """Return ``(base, indices)`` such that ``dataset[i] == base[indices[i]]``.

    Chains of ``Subset`` are followed down to an :class:`ArrayDataset`; any other dataset is read once into one
    (cached while the dataset object lives).
    """
    if isinstance(dataset, ArrayDataset):
        return dataset, torch.arange(len(dataset))
    if isinstance(dataset, Subset):
        base, idx = resolve(dataset.dataset)
        sub = torch.as_tensor(np.asarray(dataset.indices, dtype=np.int64))
        return base, idx[sub] if len(sub) else idx[:0]
    if not isinstance(dataset, Dataset) and not hasattr(dataset, "__getitem__"):
        raise TypeError(f"expected a torch Dataset yielding (x, y); got {type(dataset).__name__}")
    base = _materialised.get(dataset)
    if base is None:
        base = _read_all(dataset)
        _materialised[dataset] = base
    return base, torch.arange(len(base))


def _read_all(dataset: Dataset) -> ArrayDataset:
    try:
        n = len(dataset)  # type: ignore[arg-type]
    except TypeError as e:
        raise TypeError(f"dataset {type(dataset).__name__} has no len(); expunge needs a map-style Dataset") from e
    if n == 0:
        raise ValueError("the dataset is empty")
    xs, ys = [], []
    for i in range(n):
        item = dataset[i]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise TypeError(f"dataset items must be (x, y) pairs; item {i} is {type(item).__name__}")
        xs.append(torch.as_tensor(np.asarray(item[0]) if not isinstance(item[0], torch.Tensor) else item[0]))
        ys.append(torch.as_tensor(item[1]))
    try:
        x = torch.stack(xs)
    except RuntimeError as e:
        raise ValueError(f"dataset features have differing shapes and cannot be stacked: {e}") from e
    targets = getattr(dataset, "targets", None)
    task = getattr(dataset, "task", None)
    return ArrayDataset(x, torch.stack(ys), task=task, class_names=getattr(dataset, "classes", None)
                        if isinstance(getattr(dataset, "classes", None), (list, tuple)) else None,
                        name=type(dataset).__name__ if targets is None else None)


def features(dataset: Dataset) -> torch.Tensor:
    """All features of ``dataset`` as one tensor, in dataset order (never reads targets of an ArrayDataset)."""
    base, idx = resolve(dataset)
    return base.x[idx]


def targets(dataset: Dataset) -> torch.Tensor:
    """All targets of ``dataset`` as one tensor, in dataset order."""
    base, idx = resolve(dataset)
    return base.y[idx]


def task_of(dataset: Dataset) -> Task:
    return resolve(dataset)[0].task


def groups_of(dataset: Dataset) -> np.ndarray | None:
    base, idx = resolve(dataset)
    return None if base.groups is None else base.groups[idx.numpy()]


def standardise(train: Dataset, *others: Dataset, features: bool = True,
                targets: bool = False) -> tuple[ArrayDataset, ...]:
    """Standardise features (and, for regression, targets) to mean 0 and standard deviation 1, with the mean and
    standard deviation fitted on ``train`` only and applied unchanged to ``others`` (test or validation splits).

    Returns new datasets ``(train, *others)``; each carries ``standardisation = {"features": (mean, std),
    "targets": (mean, std)}`` (the parts standardised) so predictions can be mapped back. Constant features keep a
    standard deviation of 1.
    """
    if not features and not targets:
        raise ValueError("standardise: nothing to do; pass features=True and/or targets=True")
    base, idx = resolve(train)
    if targets and base.task != "regression":
        raise ValueError(f"standardise(targets=True) applies to regression targets; the data is {base.task}")
    stats: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for part, wanted in (("features", features), ("targets", targets)):
        if wanted:
            values = (base.x if part == "features" else base.y)[idx].to(torch.float64)
            mean, std = values.mean(0), values.std(0, unbiased=False) if len(values) > 1 else torch.ones(())
            stats[part] = (mean.float(), torch.where(std > 0, std, torch.ones_like(std)).float())
    out = []
    for data in (train, *others):
        b, ix = resolve(data)
        if "features" in stats and tuple(b.x.shape[1:]) != tuple(base.x.shape[1:]):
            raise ValueError(f"standardise: examples of shape {tuple(b.x.shape[1:])} cannot take statistics "
                             f"fitted on examples of shape {tuple(base.x.shape[1:])}")
        x, y = b.x[ix], b.y[ix]
        if "features" in stats:
            x = (x - stats["features"][0]) / stats["features"][1]
        if "targets" in stats:
            y = (y - stats["targets"][0]) / stats["targets"][1]
        d = ArrayDataset(x, y, task=b.task, class_names=b.class_names, name=b.name,
                         groups=None if b.groups is None else b.groups[ix.numpy()])
        d.standardisation = stats
        out.append(d)
    return tuple(out)


def fingerprint(dataset: Dataset) -> str:
    """A short content hash of features and targets (order-sensitive): names data in sidecars and caches."""
    x, y = features(dataset), targets(dataset)
    h = hashlib.sha256()
    h.update(str((tuple(x.shape), str(x.dtype), tuple(y.shape), str(y.dtype))).encode())
    h.update(x.contiguous().numpy().tobytes())
    h.update(y.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
