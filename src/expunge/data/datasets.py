"""Datasets, task inference and fast tensor access for any torch Dataset.

Two kinds of data. **In memory** (the default, and the fast path for small data): any ``torch.utils.data.Dataset``
yielding ``(x, y)`` is read once into tensors (cached per dataset object), so training and evaluation index
tensors directly instead of collating one sample at a time. **Streamed** (:class:`StreamedDataset`): features stay
where they are (a ``.npy`` file read by position, a memory-mapped or other array, a dataset's items) and only the
rows a batch needs are read, through a DataLoader with ``num_workers`` worker processes during training. Labels
(one number per example) are held in memory in both cases. Data is streamed when the dataset says
``in_memory = False`` (``load_npy(..., in_memory=False)``, ``load_image_folder(..., lazy=True)``, :func:`streamed`,
or an attribute of the user's own Dataset), or when ``in_memory`` is not said and its features would take more
than ``STREAM_ABOVE_BYTES`` (1 GiB). ``Subset`` chains resolve to index tensors over either kind.

Labels are read lazily: :func:`features` never touches targets, which is what label-free methods rely on.
"""
from __future__ import annotations

import hashlib
import weakref
from typing import Any, Callable, Literal

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

Task = Literal["classification", "regression", "language", "generation"]
TASKS = ("classification", "regression", "generation")   # of ArrayDataset; TextDataset (data/text.py) is "language"
LABELLED = ("classification", "generation")   # tasks whose targets are class labels (generation: class-conditional
                                               # image generators, expunge.gen; data from data.for_generation)


class ArrayDataset(Dataset):
    """Features ``x`` and targets ``y`` held as tensors, with an optional per-row ``groups`` array.

    ``task`` is inferred from ``y`` when not given: integer or boolean targets mean classification, floating
    targets mean regression. ``groups`` (e.g. a user id per row) lets ``split_forget(where=...)`` forget an
    identity in one call. ``class_names`` maps label ``i`` to a readable name.
    """

    standardisation: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None   # set by standardise()
    in_memory = True                   # features held as one tensor (StreamedDataset: read row by row)
    num_workers = 0

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
        if task in LABELLED:
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
        if self.task not in LABELLED:
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
    if isinstance(dataset, (tuple, list)) or (not isinstance(dataset, Dataset) and not hasattr(dataset, "__getitem__")):
        raise TypeError(f"expected a torch Dataset yielding (x, y); got a {type(dataset).__name__}"
                        + (" (loaders return (train, test): pass one of them)" if isinstance(dataset, tuple) else ""))
    base = _materialised.get(dataset)
    if base is None:
        n = _length(dataset)
        base = _stream_items(dataset, n) if _wants_streaming(dataset, n) else _read_all(dataset)
        _materialised[dataset] = base
    return base, torch.arange(len(base))


def _length(dataset: Dataset) -> int:
    try:
        n = len(dataset)  # type: ignore[arg-type]
    except TypeError as e:
        raise TypeError(f"dataset {type(dataset).__name__} has no len(); expunge needs a map-style Dataset") from e
    if n == 0:
        raise ValueError("the dataset is empty")
    return n


def _read_all(dataset: Dataset) -> ArrayDataset:
    n = _length(dataset)
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


# --- streamed data: rows read on demand ------------------------------------------------------------------------

STREAM_ABOVE_BYTES = 1 << 30   # a Dataset that does not say in_memory is streamed when its features exceed this
CHUNK_BYTES = 2 << 20         # bytes per read when a streamed dataset is checked or fingerprinted


class Rows:
    """The features of a streamed dataset: ``rows[idx]`` reads only rows ``idx`` (any shape of index tensor) and
    returns them as one float32 tensor; ``shape``, ``dtype`` and ``len`` work as on a tensor."""

    def __init__(self, fetch: Callable[[np.ndarray], Any], n: int, row_shape: tuple[int, ...]):
        self._fetch, self._n, self.row_shape = fetch, int(n), tuple(int(d) for d in row_shape)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((self._n, *self.row_shape))

    @property
    def ndim(self) -> int:
        return 1 + len(self.row_shape)

    dtype = torch.float32

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, idx: Any) -> torch.Tensor:
        if isinstance(idx, slice):
            idx = torch.arange(self._n)[idx]
        t = torch.as_tensor(idx)
        if t.dtype == torch.bool:
            t = t.nonzero().reshape(-1)
        if t.ndim == 0:
            return self[t.reshape(1)][0]
        flat = t.reshape(-1).to(torch.int64).numpy()
        if len(flat) and (flat.min() < 0 or flat.max() >= self._n):
            raise IndexError(f"row index out of range for {self._n} streamed rows")
        if len(flat) == 0:
            return torch.zeros((*t.shape, *self.row_shape), dtype=torch.float32)
        out = self._fetch(flat)
        out = (out if torch.is_tensor(out) else torch.as_tensor(np.asarray(out))).to(torch.float32)
        return out.reshape(*t.shape, *self.row_shape)

    def __repr__(self) -> str:
        return f"Rows(n={self._n}, row_shape={self.row_shape}, streamed)"


class StreamedDataset(ArrayDataset):
    """A dataset whose features are read row by row when a batch needs them (see the module docstring); labels
    and groups are held in memory. ``num_workers`` worker processes read the rows of the next training batches
    while the current one trains (0: read in the training process).

    Build one with :func:`streamed`, ``load_npy(..., in_memory=False)`` or ``load_image_folder(..., lazy=True)``;
    any Dataset with ``in_memory = False`` is wrapped in one by :func:`resolve`."""

    in_memory = False

    def __init__(self, x: Rows, y: Any, *, groups: Any = None, task: Task | None = None,
                 class_names: list[str] | None = None, name: str | None = None, num_workers: int = 0):
        if not isinstance(x, Rows):
            raise TypeError(f"StreamedDataset features must be Rows; got {type(x).__name__} (use streamed(x, y))")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers={num_workers!r} is not allowed; expected an integer >= 0")
        holder = ArrayDataset(torch.zeros(len(x), 0), y, groups=groups, task=task, class_names=class_names)
        if len(x) == 0:
            raise ValueError("features must be a non-empty array with one row per example; got 0 rows")
        self.x, self.y, self.groups, self.task = x, holder.y, holder.groups, holder.task
        self.class_names, self.name, self.num_workers = holder.class_names, name, num_workers

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        return (f"StreamedDataset{label}(n={len(self)}, x={self.x.row_shape}, task={self.task}, "
                f"num_workers={self.num_workers})")


def streamed(x: Any, y: Any, *, groups: Any = None, task: Task | None = None, class_names: list[str] | None = None,
             name: str | None = None, num_workers: int = 0, check: bool = True) -> StreamedDataset:
    """Stream the rows of ``x``, any array indexable by an integer array (``np.memmap``, ``np.load(...,
    mmap_mode='r')``, an HDF5 or zarr array), with targets ``y`` held in memory. ``check`` reads ``x`` once, a
    chunk at a time, to refuse NaN or Inf (skipped for integer arrays, which cannot hold them)."""
    shape = tuple(getattr(x, "shape", ()))
    if len(shape) < 1 or shape[0] == 0:
        raise ValueError(f"features must be a non-empty array with one row per example; got shape {shape}")
    rows = Rows(lambda ix: torch.from_numpy(np.ascontiguousarray(x[ix], dtype=np.float32)), shape[0], shape[1:])
    if check and np.dtype(getattr(x, "dtype", np.float32)).kind == "f":
        check_finite_rows(rows)
    return StreamedDataset(rows, y, groups=groups, task=task, class_names=class_names, name=name,
                           num_workers=num_workers)


def check_finite_rows(rows: Rows) -> None:
    """Refuse NaN or Inf in streamed features, reading them a chunk at a time."""
    bad = 0
    for chunk in torch.arange(len(rows)).split(chunk_rows(rows)):
        part = rows[chunk]
        bad += int((~torch.isfinite(part)).reshape(len(part), -1).any(1).sum())
    if bad:
        raise ValueError(f"features contain NaN or Inf in {bad} row(s); clean or drop them first")


def chunk_rows(rows: Rows) -> int:
    """Rows per chunk when streamed features are read in chunks of about ``CHUNK_BYTES``."""
    return max(1, CHUNK_BYTES // max(1, 4 * int(np.prod(rows.row_shape, dtype=np.int64))))


def is_streamed(dataset: Dataset) -> bool:
    """Whether ``dataset``'s features are streamed (read by row) rather than held in memory."""
    return not resolve(dataset)[0].in_memory


def first_rows(dataset: Dataset, n: int = 1) -> torch.Tensor:
    """The features of the first ``n`` examples (reads only those rows of streamed data)."""
    base, idx = resolve(dataset)
    return base.x[idx[:n]]


def concatenated(parts: list[Dataset], y: Any) -> StreamedDataset:
    """A streamed dataset of the rows of ``parts`` one after another (each in memory or streamed), with new
    targets ``y`` (one per row, held in memory)."""
    resolved = [resolve(d) for d in parts]
    shapes = {tuple(b.x.shape[1:]) for b, _ in resolved}
    if len(shapes) != 1:
        raise ValueError(f"cannot join datasets whose examples differ in shape: {sorted(shapes)}")
    ends = np.cumsum([len(ix) for _, ix in resolved])
    starts = ends - np.array([len(ix) for _, ix in resolved])

    def fetch(ix: np.ndarray) -> torch.Tensor:
        out = torch.empty((len(ix), *shapes.copy().pop()), dtype=torch.float32)
        for (b, rows), lo, hi in zip(resolved, starts, ends):
            sel = np.nonzero((ix >= lo) & (ix < hi))[0]
            if len(sel):
                out[torch.from_numpy(sel)] = b.x[rows[torch.from_numpy(ix[sel] - lo)]].to(torch.float32)
        return out

    first = resolved[0][0]
    return StreamedDataset(Rows(fetch, int(ends[-1]), next(iter(shapes))), y, task=first.task,
                           class_names=first.class_names,
                           num_workers=max(int(getattr(b, "num_workers", 0)) for b, _ in resolved))

def _wants_streaming(dataset: Dataset, n: int) -> bool:
    flag = getattr(dataset, "in_memory", None)
    if flag is not None:
        return not flag
    x0 = dataset[0][0] if n else None
    size = torch.as_tensor(np.asarray(x0) if not isinstance(x0, torch.Tensor) else x0).numel() * 4 if n else 0
    return n * size > STREAM_ABOVE_BYTES


def _stream_items(dataset: Dataset, n: int) -> StreamedDataset:
    """A StreamedDataset over a map-style Dataset's items (labels from its ``targets`` if it has them, else read
    once from its items)."""
    def feature(i: int) -> torch.Tensor:
        item = dataset[i]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise TypeError(f"dataset items must be (x, y) pairs; item {i} is {type(item).__name__}")
        return torch.as_tensor(np.asarray(item[0]) if not isinstance(item[0], torch.Tensor) else item[0])

    x0 = feature(0)

    def fetch(ix: np.ndarray) -> torch.Tensor:
        xs = [feature(int(i)) for i in ix]
        for i, x in zip(ix, xs):
            if x.shape != x0.shape:
                raise ValueError(f"dataset features have differing shapes: item {int(i)} has {tuple(x.shape)}, "
                                 f"item 0 has {tuple(x0.shape)}")
        return torch.stack(xs).to(torch.float32)

    y = getattr(dataset, "targets", None)
    if y is None:
        y = torch.stack([torch.as_tensor(dataset[i][1]) for i in range(n)])
    classes = getattr(dataset, "classes", None)
    return StreamedDataset(Rows(fetch, n, tuple(x0.shape)), y, task=getattr(dataset, "task", None),
                           class_names=list(classes) if isinstance(classes, (list, tuple)) else None,
                           name=type(dataset).__name__, num_workers=int(getattr(dataset, "num_workers", 0) or 0))


def features(dataset: Dataset) -> torch.Tensor:
    """All features of ``dataset`` as one tensor, in dataset order (never reads targets of an ArrayDataset).
    Refused for streamed data, whose features are not meant to be held whole (see ``first_rows``)."""
    base, idx = resolve(dataset)
    if not base.in_memory:
        raise ValueError(f"this step needs all {len(idx)} examples' features in memory, and the data is streamed "
                         "(in_memory=False); load it in memory, or use a step that streams (see expunge.data)")
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
    if not all(resolve(d)[0].in_memory for d in (train, *others)):
        raise ValueError("standardise makes new in-memory datasets, and some data is streamed (in_memory=False); "
                         "standardise the arrays before streaming them")
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
    base, idx = resolve(dataset)
    y = base.y[idx]
    h = hashlib.sha256()
    h.update(str(((len(idx), *base.x.shape[1:]), str(base.x.dtype), tuple(y.shape), str(y.dtype))).encode())
    for chunk in ([idx] if base.in_memory else idx.split(chunk_rows(base.x))):   # streamed: a chunk at a time
        h.update(base.x[chunk].contiguous().numpy().tobytes())
    h.update(y.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
