"""Choosing the method for a deletion request: tuned against an oracle on a tuning forget set of the same kind and
size, never on the request's rows, and picked by Avg. Gap with a guard."""
from __future__ import annotations

import json

import numpy as np
import pytest

import expunge
import expunge.deletion.auto as auto
import expunge.tuning
from expunge.data import ArrayDataset
from expunge.data.datasets import resolve
from expunge.deletion.auto import check_budget, choose_method, tuning_rows
from expunge.deletion.request import parse_request

BUDGET = {"methods": ["finetune", "neggrad_plus", "random_label"], "trials": 2}


@pytest.fixture(scope="module")
def digits_model():
    train, test = expunge.data.digits()
    original = expunge.train(expunge.model("mlp", train, hidden=[32], seed=0), train, epochs=8, lr=0.05, seed=0)
    return train, test, original


def _rows_seen(monkeypatch) -> list[np.ndarray]:
    """Every set of training rows a model is trained, unlearned or scored on from now on."""
    seen: list[np.ndarray] = []

    def note(**kwargs):
        for key in ("forget", "retain"):
            if kwargs.get(key) is not None:
                seen.append(resolve(kwargs[key])[1].numpy())

    real_unlearn, real_tune_eval, real_auto_eval = expunge.api.unlearn, expunge.tuning.evaluate, auto.evaluate

    def unlearn(model, **kwargs):
        note(**kwargs)
        return real_unlearn(model, **kwargs)

    def scored(real):
        def evaluate(model, **kwargs):
            note(**kwargs)
            return real(model, **kwargs)
        return evaluate

    monkeypatch.setattr(expunge.api, "unlearn", unlearn)
    monkeypatch.setattr(expunge.tuning, "evaluate", scored(real_tune_eval))
    monkeypatch.setattr(auto, "evaluate", scored(real_auto_eval))
    return seen


def test_class_request_picks_a_method_closer_than_doing_nothing_without_reading_the_class(digits_model, monkeypatch):
    train, test, original = digits_model
    request = parse_request("class:3", train)
    seen = _rows_seen(monkeypatch)
    method, args, record = choose_method(original, train, request, budget=BUDGET, seed=0, test=test)
    assert seen, "nothing was trained or scored"
    assert all(not np.isin(rows, request.indices).any() for rows in seen), "a request row was read"
    labels = resolve(train)[0].y.numpy()
    assert record["tuning_set"]["description"] == "class-wise [4]"       # another class, the next one
    assert all(not (labels[rows] == 3).any() for rows in seen)
    assert method in BUDGET["methods"] and record["chosen"] == method and record["args"] == args
    chosen = next(t for t in record["tried"] if t["method"] == method)
    assert chosen["passed"] and chosen["objective"] <= min(t["objective"] for t in record["tried"])
    assert chosen["objective"] < record["do_nothing"]["objective"]
    assert record["do_nothing"]["scores"]["gap_ua"] > 50       # the original still knows class 4
    assert record["budget"] == {"methods": BUDGET["methods"], "trials": 2, "guard": 2.0,
                                "methods_tried": BUDGET["methods"]}
    assert all(t["trials"] <= 2 for t in record["tried"])
    assert sorted(record["skipped"]) == ["ct", "sisa"]          # what "all" would skip on this MLP, and why
    json.dumps(record)                                          # plain values, for the certificate


def test_rows_request_tunes_on_other_rows_of_the_same_size_and_is_deterministic(digits_model):
    train, test, original = digits_model
    request = np.random.default_rng(0).choice(len(train), 20, replace=False)
    rows, description, classes = tuning_rows(train, request, seed=5)
    assert len(rows) == 20 and classes is None and not np.isin(rows, request).any()
    budget = {"methods": ["finetune", "gradient_ascent"], "trials": 2}
    first = choose_method(original, train, request, budget=budget, seed=5, test=test)
    again = choose_method(original, train, request, budget=budget, seed=5, test=test)

    def timeless(record):
        out = json.loads(json.dumps(record))
        out.pop("seconds"), out.pop("estimated_seconds"), out["oracle"].pop("seconds")
        for t in out["tried"]:
            t.pop("seconds")
        return out

    assert first[:2] == again[:2] and timeless(first[2]) == timeless(again[2])
    record = first[2]
    assert record["tuning_set"]["rows"] == 20 and record["tuning_set"]["request_rows"] == 20
    assert record["tuning_set"]["rows_sha256"] == auto._digest(rows)
    if first[0] == "retrain":                   # the fallback only when no method beat doing nothing
        assert not any(t["passed"] for t in record["tried"])
    else:
        picked = next(t for t in record["tried"] if t["method"] == first[0])
        assert picked["objective"] < record["do_nothing"]["objective"]


def test_group_request_tunes_on_the_untouched_group_closest_in_size():
    x = np.zeros((60, 2), dtype=np.float32)
    groups = np.array([0] * 10 + [1] * 4 + [2] * 9 + [3] * 20 + [4] * 11 + [5] * 6)
    data = ArrayDataset(x, np.arange(60) % 3, groups=groups)
    request = parse_request("group:0", data)
    rows, description, _ = tuning_rows(data, request, seed=0)
    assert sorted(set(groups[rows].tolist())) in ([2], [4])    # 9 or 11 rows, as close as 10 is
    assert description.startswith("group(s) 2 (9 rows)") or description.startswith("group(s) 4 (11 rows)")
    assert len(rows) in (9, 11) and not np.isin(rows, request.indices).any()
    picks = {tuple(tuning_rows(data, request, seed=s)[0]) for s in range(6)}
    assert len(picks) == 2                                      # the tie is broken by the seed
    big = tuning_rows(data, parse_request("group:3", data), seed=0)[0]
    assert set(groups[big].tolist()) == {4}                     # the largest other group for the largest


def test_guard_refuses_a_method_that_costs_accuracy_and_one_no_closer_than_doing_nothing():
    oracle = {"retain_acc": 95.0, "test_acc": 93.0}
    nothing = {"avg_gap": 10.0}
    ok = {"retain_acc": 94.0, "test_acc": 92.0, "avg_gap": 3.0}
    assert auto._guard(ok, oracle, nothing, "classification", 2.0, "avg_gap") is None
    lost = {**ok, "test_acc": 90.0}
    assert "test acc 90.00% is more than 2 points below" in auto._guard(lost, oracle, nothing, "classification",
                                                                         2.0, "avg_gap")
    idle = {**ok, "avg_gap": 10.0}
    assert "no closer to the oracle than doing nothing" in auto._guard(idle, oracle, nothing, "classification",
                                                                       2.0, "avg_gap")


def test_bad_budgets_and_requests_are_refused_before_any_work(digits_model, monkeypatch):
    train, test, original = digits_model
    seen = _rows_seen(monkeypatch)
    request = parse_request("class:3", train)
    for budget, message in [({"trails": 2}, "unknown key 'trails'"), ({"trials": 0}, "budget trials=0"),
                            ({"methods": ["nope"]}, "unknown method 'nope'"),
                            ({"methods": ["npo"]}, "'npo', which unlearns language"),
                            ({"methods": ["sisa"]}, "needs a specially trained original"),
                            ({"methods": ["ct"]}, "needs convolution layers"),
                            ({"guard": -1}, "guard=-1")]:
        with pytest.raises(ValueError, match=message):
            choose_method(original, train, request, budget=budget, seed=0)
    with pytest.raises(ValueError, match="outside the 1437 rows"):
        choose_method(original, train, [5000], budget=BUDGET, seed=0)
    with pytest.raises(TypeError, match="budget must be a dict"):
        check_budget(["finetune"])
    assert seen == []


def test_candidates_skip_what_the_model_or_data_lacks(digits_model):
    train, _, original = digits_model
    usable, skipped = auto.candidates(original, train)
    assert {"finetune", "neggrad_plus", "scrub", "salun", "random_label"} <= set(usable)
    assert "retrain" not in usable and "npo" not in usable and "blindspot" not in usable    # oracle, other tasks
    assert skipped == {"ct": "needs convolution layers; the model has none",
                       "sisa": "needs a specially trained original (a SISA ensemble)"}
    cnn = expunge.model("cnn", train, width=4, seed=0)
    assert "ct" in auto.candidates(cnn, train)[0]


def test_regression_is_chosen_by_the_distance_to_the_oracle_outputs_with_an_error_guard():
    from expunge.data.builtin import diabetes

    train, test = diabetes()
    original = expunge.train(expunge.model("mlp", train, hidden=[32], seed=0), train, epochs=30, seed=0)
    method, args, record = choose_method(original, train, np.arange(15), seed=0, test=test,
                                         budget={"methods": ["finetune", "neggrad_plus"], "trials": 2})
    assert record["objective"] == "w1_to_reference"
    oracle = record["oracle"]["scores"]
    for t in record["tried"]:
        too_far = t["scores"]["retain_mae"] > oracle["retain_mae"] * 1.02 or t["scores"]["test_mae"] > \
            oracle["test_mae"] * 1.02 or t["objective"] >= record["do_nothing"]["objective"]
        assert t["passed"] == (not too_far)
    passing = [t for t in record["tried"] if t["passed"]]
    if passing:
        assert method == min(passing, key=lambda t: t["objective"])["method"] and args == record["args"]
    else:
        assert method == "retrain" and args == {}
