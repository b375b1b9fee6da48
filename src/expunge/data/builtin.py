"""Data that needs no download: scikit-learn's bundled sets, small generated tasks, and Fashion-MNIST from Debian's
``dataset-fashion-mnist`` package."""
from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from .datasets import ArrayDataset

BUILTIN = ("digits", "breast_cancer", "wine", "iris", "diabetes", "classification", "friedman", "fashion_mnist")
#: built-in sets that come with their own test split (``test_fraction`` does not apply)
FIXED_TEST_SPLIT = ("fashion_mnist",)
MAX_GENERATED = 1_000_000      # rows (or features, classes) a generated dataset may have


def load_builtin(name: str, *, test_fraction: float = 0.2, seed: int = 0, **kwargs) -> tuple[ArrayDataset, ArrayDataset]:
    """``(train, test)`` for a built-in dataset by name; ``kwargs`` go to the generator for generated sets."""
    loaders = {"digits": digits, "breast_cancer": _sklearn_table("load_breast_cancer"),
               "wine": _sklearn_table("load_wine"), "iris": _sklearn_table("load_iris"),
               "diabetes": diabetes, "classification": generated_classification, "friedman": friedman,
               "fashion_mnist": fashion_mnist_builtin}
    if name not in loaders:
        raise ValueError(f"unknown built-in dataset {name!r}; allowed: {', '.join(BUILTIN)}")
    check_builtin_args(name, kwargs, loaders[name])
    return loaders[name](test_fraction=test_fraction, seed=seed, **kwargs)


def builtin_args(name: str) -> dict[str, Any]:
    """The arguments a built-in dataset's generator takes (besides ``test_fraction`` and ``seed``), with defaults."""
    loaders = {"digits": digits, "diabetes": diabetes, "classification": generated_classification,
               "friedman": friedman, "fashion_mnist": fashion_mnist_builtin}
    if name not in loaders:
        return {}
    return {k: p.default for k, p in inspect.signature(loaders[name]).parameters.items()
            if k not in ("test_fraction", "seed")}


def check_builtin_args(name: str, kwargs: dict[str, Any], loader: Any = None) -> None:
    """Refuse unknown arguments, and values of another type than the default's, naming what is allowed."""
    allowed = builtin_args(name)
    for key, value in kwargs.items():
        if key not in allowed:
            listed = ", ".join(f"{k} (default {v!r})" for k, v in allowed.items()) or "none"
            raise ValueError(f"built-in dataset {name!r} takes no argument {key!r}; allowed: {listed}")
        default = allowed[key]
        numeric = (int, float) if isinstance(default, float) else type(default)
        if isinstance(value, bool) != isinstance(default, bool) or not isinstance(value, numeric):
            raise ValueError(f"built-in dataset {name!r}: {key}={value!r} is not allowed; expected "
                             f"{type(default).__name__} like the default {default!r}")
        if isinstance(default, int) and not isinstance(default, bool) and not 1 <= value <= MAX_GENERATED:
            raise ValueError(f"built-in dataset {name!r}: {key}={value!r} is not allowed; expected an integer "
                             f"in 1..{MAX_GENERATED:,}")
    if name == "fashion_mnist" and kwargs.get("subset", 0) > 60_000:
        raise ValueError(f"built-in dataset {name!r}: subset={kwargs['subset']!r} is not allowed; expected an integer "
                         f"in 1..60,000 (the training images there are)")
    if "n" in allowed and "features" in allowed:
        cells = kwargs.get("n", allowed["n"]) * kwargs.get("features", allowed["features"])
        if cells > 50 * MAX_GENERATED:
            raise ValueError(f"built-in dataset {name!r}: n x features = {cells:,} values; at most "
                             f"{50 * MAX_GENERATED:,} are allowed")


def _split(x, y, *, test_fraction: float, seed: int, classify: bool, name: str, **kw) -> tuple[ArrayDataset, ArrayDataset]:
    from sklearn.model_selection import train_test_split

    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be strictly between 0 and 1; got {test_fraction!r}")
    idx = np.arange(len(x))
    tr, te = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=y if classify else None)
    task = "classification" if classify else "regression"
    return (ArrayDataset(x[tr], y[tr], task=task, name=f"{name}/train", **kw),
            ArrayDataset(x[te], y[te], task=task, name=f"{name}/test", **kw))


def digits(*, test_fraction: float = 0.2, seed: int = 0, flat: bool = False) -> tuple[ArrayDataset, ArrayDataset]:
    """scikit-learn's 1797 real handwritten digits as 1x8x8 images in [0, 1] (or 64 features with ``flat``)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)
    x = x.reshape(len(x), -1) if flat else x[:, None]
    return _split(x, d.target.astype(np.int64), test_fraction=test_fraction, seed=seed, classify=True,
                  name="digits", class_names=[str(c) for c in d.target_names])


def fashion_mnist_builtin(*, test_fraction: float = 0.2, seed: int = 0, subset: int = 60_000):
    """Fashion-MNIST as the built-in ``fashion_mnist``: 1x28x28 images in [0, 1] from Debian's
    ``dataset-fashion-mnist`` package, with its own 10,000-image test set (``test_fraction`` does not apply).
    ``subset`` keeps a random draw of that many of the 60,000 training images (seeded by ``seed``)."""
    from .images import fashion_mnist

    del test_fraction   # the official test set
    return fashion_mnist(subset=None if subset == 60_000 else subset, seed=seed)


def _sklearn_table(loader: str):
    def load(*, test_fraction: float = 0.2, seed: int = 0) -> tuple[ArrayDataset, ArrayDataset]:
        import sklearn.datasets

        d = getattr(sklearn.datasets, loader)()
        x = _standardise(d.data.astype(np.float32))
        return _split(x, d.target.astype(np.int64), test_fraction=test_fraction, seed=seed, classify=True,
                      name=loader.removeprefix("load_"), class_names=[str(c) for c in d.target_names])
    return load


def diabetes(*, test_fraction: float = 0.3, seed: int = 0) -> tuple[ArrayDataset, ArrayDataset]:
    """scikit-learn's diabetes regression (442 patients, 10 features); targets standardised."""
    from sklearn.datasets import load_diabetes

    d = load_diabetes()
    return _split(_standardise(d.data.astype(np.float32)), _standardise(d.target.astype(np.float32)),
                  test_fraction=test_fraction, seed=seed, classify=False, name="diabetes")


def generated_classification(*, n: int = 800, features: int = 20, classes: int = 4, informative: int = 8,
                             flip: float = 0.05, test_fraction: float = 0.25, seed: int = 0):
    """A small ``make_classification`` task, hard enough that a model memorises what it is trained on."""
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=n, n_features=features, n_informative=informative, n_redundant=2,
                               n_classes=classes, n_clusters_per_class=2, flip_y=flip, class_sep=1.0,
                               random_state=seed)
    return _split(_standardise(x.astype(np.float32)), y.astype(np.int64), test_fraction=test_fraction, seed=seed,
                  classify=True, name="classification")


def friedman(*, n: int = 6000, noise: float = 1.0, test_fraction: float = 0.2, seed: int = 0):
    """Friedman-1 regression (``make_friedman1``): 10 features, 5 informative."""
    from sklearn.datasets import make_friedman1

    x, y = make_friedman1(n_samples=n, n_features=10, noise=noise, random_state=seed)
    return _split(x.astype(np.float32), y.astype(np.float32), test_fraction=test_fraction, seed=seed,
                  classify=False, name="friedman")


def _standardise(a: np.ndarray) -> np.ndarray:
    sd = a.std(axis=0)
    return ((a - a.mean(axis=0)) / np.where(sd > 0, sd, 1)).astype(np.float32)
