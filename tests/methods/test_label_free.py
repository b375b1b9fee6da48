"""Methods that declare they read no labels are run on data whose labels raise when read."""
from __future__ import annotations

import pytest

import expunge
from expunge.methods import registered

from tests.conformance.test_methods import CASES
from tests.helpers import LabelReadError, label_guarded

LABEL_FREE = [n for n, cls in registered().items() if not cls.needs.labels and "classification" in cls.tasks
              and not cls.needs_special_original]


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
