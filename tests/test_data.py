"""Datasets, task inference and forget requests."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset, Subset

import expunge
from expunge.data import as_dataset, features, fingerprint, infer_task, split_forget, targets


def small(n=20, classes=4):
    x = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    return as_dataset(x, np.arange(n) % classes, groups=np.arange(n) // 5)


def test_task_inference():
    assert infer_task(np.array([0, 1, 2])) == "classification"
    assert infer_task(np.array([True, False])) == "classification"
    assert infer_task(np.array([0.5, 1.0])) == "regression"
    assert as_dataset([[1.0]], [2.5]).task == "regression"
    assert as_dataset([[1.0]], [2.0], task="classification").y.dtype == torch.long


def test_fraction_split_is_seeded_disjoint_and_index_preserving():
    data = small(100)
    f1, r1 = split_forget(data, fraction=0.1, seed=0)
    f2, _ = split_forget(data, fraction=0.1, seed=0)
    f3, _ = split_forget(data, fraction=0.1, seed=1)
    assert len(f1) == 10 and len(r1) == 90
    assert f1.indices == f2.indices and f1.indices != f3.indices
    assert not set(f1.indices) & set(r1.indices)
    for i, j in enumerate(f1.indices):
        assert torch.equal(f1[i][0], data[j][0])


def test_class_indices_and_group_splits():
    data = small(20, classes=4)
    forget, retain = split_forget(data, classes=[1, 3])
    assert set(targets(forget).tolist()) == {1, 3} and set(targets(retain).tolist()) == {0, 2}
    assert forget.request.is_classwise and forget.request.classes == (1, 3)
    forget, _ = split_forget(data, indices=[4, 2])
    assert forget.indices == [2, 4]
    forget, _ = split_forget(data, where=lambda user: user == 2)   # "forget everything from user 2"
    assert forget.indices == [10, 11, 12, 13, 14]
    forget, _ = split_forget(data, where=lambda g: g == "b", groups=np.array(["a", "b"] * 10))
    assert forget.indices == list(range(1, 20, 2))


def test_splits_of_subsets_resolve_to_the_base_data():
    data = small(20)
    sub = Subset(data, list(range(10, 20)))
    forget, retain = split_forget(sub, indices=[0, 1])
    assert torch.equal(features(forget), data.x[10:12])


@pytest.mark.parametrize("kwargs, message", [
    ({"indices": []}, "empty"),
    ({"indices": [0, 50]}, "out of range"),
    ({"indices": [-1]}, "out of range"),
    ({"indices": [1, 1]}, "duplicate"),
    ({"indices": list(range(20))}, "whole training set"),
    ({"fraction": 0.0}, "strictly between 0 and 1"),
    ({"fraction": 1.0}, "strictly between 0 and 1"),
    ({"fraction": 1.5}, "strictly between 0 and 1"),
    ({"classes": [9]}, "do not occur"),
    ({"classes": [0, 1, 2, 3]}, "whole training set"),
    ({"where": lambda g: g == 99}, "empty"),
    ({}, "exactly one"),
    ({"fraction": 0.1, "classes": [1]}, "exactly one"),
])
def test_bad_forget_requests(kwargs, message):
    with pytest.raises(ValueError, match=message):
        split_forget(small(20), **kwargs)


def test_non_finite_data_is_refused():
    with pytest.raises(ValueError, match="NaN or Inf"):
        as_dataset([[1.0], [float("nan")]], [0, 1])
    with pytest.raises(ValueError, match="NaN or Inf"):
        as_dataset([[1.0], [2.0]], [0.5, float("inf")])


def test_generic_dataset_is_read_once_into_tensors():
    class Plain(Dataset):
        def __len__(self):
            return 6

        def __getitem__(self, i):
            return torch.full((2,), float(i)), i % 2

    d = Plain()
    assert features(d).shape == (6, 2) and targets(d).tolist() == [0, 1, 0, 1, 0, 1]
    forget, retain = split_forget(d, classes=[1])
    assert forget.indices == [1, 3, 5]


def test_fingerprint_tracks_content():
    a, b = small(10), small(10)
    assert fingerprint(a) == fingerprint(b)
    b.x[0, 0] += 1
    assert fingerprint(a) != fingerprint(b)


def test_builtin_digits_are_real_images():
    train, test = expunge.data.digits()
    assert train.x.shape[1:] == (1, 8, 8) and len(train) + len(test) == 1797
    assert 0 <= float(train.x.min()) and float(train.x.max()) <= 1
    assert sorted(set(train.y.tolist())) == list(range(10))
