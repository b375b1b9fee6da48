"""Deletion requests served one after another (MUSE's sustainability): each step unlearns its own rows from the
previous step's model and is scored on everything forgotten so far against the oracle of that union."""
from __future__ import annotations

import numpy as np
import pytest

import expunge
from expunge.data import split_forget
from expunge.sequential import unlearn_sequence


def test_each_step_forgets_its_rows_and_is_scored_on_the_union(task):
    rng = np.random.default_rng(0)
    rows = rng.permutation(len(task.train))
    requests = [rows[:40], rows[40:80]]
    steps = unlearn_sequence(task.original, task.train, requests, method="finetune", seed=0,
                             evaluate_args={"test": task.test}, epochs=10, lr=0.1)
    assert [s.forgotten for s in steps] == [40, 80] and [s.request_size for s in steps] == [40, 40]
    union, union_retain = split_forget(task.train, indices=rows[:80])
    oracle = expunge.evaluate(steps[1].oracle, forget=union, retain=union_retain)
    original = expunge.evaluate(task.original, forget=union, retain=union_retain)
    assert oracle["forget_acc"] < original["forget_acc"] - 10   # the last oracle never saw either request
    assert expunge.provenance(steps[1].model).history[-2:] == ["unlearn:finetune", "unlearn:finetune"]
    for step in steps:                        # each step closes the do-nothing gap to that step's oracle
        forget, retain = split_forget(task.train, indices=rows[:step.forgotten])
        nothing = expunge.evaluate(task.original, forget=forget, retain=retain, test=task.test, reference=step.oracle)
        assert step.scores["gap_ua"] < nothing["gap_ua"] - 5 and step.scores["avg_gap"] < nothing["avg_gap"] - 4
    assert steps[-1].scores["gap_ua"] < 8.0


def test_bad_request_lists_are_refused_before_any_work(task):
    with pytest.raises(ValueError, match="request 2 repeats row 3"):
        unlearn_sequence(task.original, task.train, [[1, 2, 3], [3, 4]], method="finetune")
    with pytest.raises(ValueError, match="request 1 is empty"):
        unlearn_sequence(task.original, task.train, [[]], method="finetune")
    with pytest.raises(ValueError, match="outside the 600 rows"):
        unlearn_sequence(task.original, task.train, [[900]], method="finetune")
    with pytest.raises(ValueError, match="non-empty list"):
        unlearn_sequence(task.original, task.train, [], method="finetune")


def test_language_model_requests_in_sequence():
    pytest.importorskip("transformers")
    from tests.lm_helpers import answer_nll, tiny_qa_task

    t = tiny_qa_task()
    people = np.asarray(t.data.groups)
    requests = [np.flatnonzero(people == 0), np.flatnonzero(people == 1)]
    steps = unlearn_sequence(t.original, t.data, requests, method="grad_diff", seed=0, oracles=False,
                             lr=1e-3, epochs=12)
    union = split_forget(t.data, indices=np.concatenate(requests))[0]
    assert answer_nll(steps[-1].model, union) > answer_nll(t.original, union) + 0.5
    assert "forget_prob" in steps[-1].scores and "gap_forget_prob" not in steps[-1].scores
