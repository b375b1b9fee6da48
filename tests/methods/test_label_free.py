"""Methods that declare they read no labels (or no forget-set labels) are run on data whose labels raise when
read."""
from __future__ import annotations

import pytest

import expunge
from expunge.data import ArrayDataset
from expunge.data.datasets import features, targets
from expunge.methods import registered

from tests.conformance.test_methods import CASES, task_for
from tests.helpers import LabelReadError, label_guarded

LABEL_FREE = [n for n, cls in registered().items() if not cls.needs.labels and "classification" in cls.tasks
              and not cls.needs_special_original]
FORGET_LABEL_FREE = [n for n, cls in registered().items() if cls.needs.labels and not cls.needs.forget_labels
                     and "classification" in cls.tasks and not cls.needs_special_original]


def guarded_forget(forget):
    """The forget set as a dataset of its own whose labels raise when read."""
    return label_guarded(ArrayDataset(features(forget), targets(forget), task="classification"))


def test_guard_catches_a_label_reader(task):
    guarded = label_guarded(task.train)
    forget, retain = expunge.split_forget(guarded, indices=task.forget.indices)
    with pytest.raises(LabelReadError):
        expunge.unlearn(task.original, forget=forget, retain=retain, method="finetune", epochs=1)


@pytest.mark.parametrize("name", LABEL_FREE)
def test_never_reads_a_label(task, name):
    guarded = label_guarded(task.train)
    forget, retain = expunge.split_forget(guarded, indices=task.forget.indices)
    out = expunge.unlearn(task.original, forget=forget, retain=retain, method=name, seed=0, **CASES[name])
    assert out is not task.original


def test_label_free_methods_exist():
    assert "bad_teacher" in LABEL_FREE


def test_forget_guard_catches_a_forget_label_reader(task):
    with pytest.raises(LabelReadError):
        expunge.unlearn(task.original, forget=guarded_forget(task.forget), retain=task.retain,
                        method="random_label", epochs=1)


@pytest.mark.parametrize("name", FORGET_LABEL_FREE)
def test_never_reads_a_forget_label(request, name):
    t = task_for(request, name)
    out = expunge.unlearn(t.original, forget=guarded_forget(t.forget), retain=t.retain, method=name, seed=0,
                          **CASES[name])
    assert out is not t.original


def test_forget_label_free_methods_exist():
    assert {"scrub", "l1_sparse", "ct", "fisher"} <= set(FORGET_LABEL_FREE)
