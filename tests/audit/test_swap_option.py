"""The SWAP test inside an audit is optional: switched off it costs no models and leaves no swap numbers (every other
number unchanged); where the test set holds no example of the forget set's labels the audit runs without it and
says so; the swapped forget set has min(|A_c|, |test_c|) examples per label."""
from __future__ import annotations

import json

import numpy as np
import pytest
from torch.utils.data import Subset

import expunge
import expunge.ensemble as ensemble
from expunge.audit import audit, check_audit, write_audit_reports
from expunge.audit.config import parse_audit
from expunge.audit.report import text_summary
from expunge.audit.swap import NO_SWAP_PARTNER, SWITCHED_OFF, swap_request
from expunge.config import ConfigError
from expunge.data import generated_classification
from expunge.data.datasets import targets

QUICK = dict(epochs=3, lr=0.05, batch_size=32)
NOTHING = dict(epochs=1, lr=1e-5)


@pytest.fixture(scope="module")
def data():
    train, test = generated_classification(n=400, seed=0)
    return train, test, expunge.model("mlp", train, hidden=[32])


def counted(monkeypatch):
    """Count the ensemble trainings and unlearning runs an audit asks for."""
    calls = {"train": 0, "unlearn": 0}
    for name in calls:
        real = getattr(ensemble, name)

        def wrapper(*a, _real=real, _name=name, **kw):
            calls[_name] += 1
            return _real(*a, **kw)
        monkeypatch.setattr(ensemble, name, wrapper)
    return calls


def test_switched_off_trains_nothing_for_it_and_changes_nothing_else(data, monkeypatch, tmp_path):
    train, test, template = data
    forget, retain = expunge.split_forget(train, fraction=0.1, seed=0)
    run = lambda swap: audit(template, train, test, forget=forget, retain=retain, method="finetune",
                             method_args=NOTHING, recipe=QUICK, n_models=4, swap=swap)
    calls = counted(monkeypatch)
    on = run(True)
    assert calls == {"train": 4, "unlearn": 3}               # originals, oracles, baseline, swapped originals
    off = run(False)
    assert calls == {"train": 4 + 3, "unlearn": 3 + 2}       # the swapped originals and their unlearning left out
    assert on.swap_note is None and "swap_advantage" in on.summary() and "swap originals" in on.seconds
    assert off.advantage is None and off.swap_note == SWITCHED_OFF
    assert not [k for k in off.summary() if k.startswith("swap")] and "swap_examples" not in off.sizes
    assert "swap originals" not in off.seconds and "swap unlearn" not in off.seconds
    timeless = lambda r: {k: v for k, v in r.summary().items()
                          if "seconds" not in k and k != "rte" and not k.startswith("swap")}
    assert timeless(on) == timeless(off)                     # the SWAP test's models touch no other number
    paths = write_audit_reports(off, tmp_path, title="t")
    for text in (paths["md"].read_text(), paths["html"].read_text(), text_summary(off)):
        assert SWITCHED_OFF in text and "Calibrated advantage (SWAP test)" not in text
    saved = json.loads(paths["json"].read_text())
    assert saved["advantage"] is None and saved["swap_note"] == SWITCHED_OFF


def test_a_test_set_without_the_forget_sets_labels_runs_and_notes_the_skip(data, monkeypatch):
    train, test, template = data
    forget, retain = expunge.split_forget(train, classes=[1], seed=0)
    others = Subset(test, np.flatnonzero(targets(test).numpy() != 1).tolist())
    request = dict(forget=forget, retain=retain, method="finetune", method_args=NOTHING, recipe=QUICK, n_models=4)
    check_audit(template, train, others, **request)           # no longer refused
    calls = counted(monkeypatch)
    r = audit(template, train, others, **request)
    assert calls == {"train": 3, "unlearn": 2}
    assert r.advantage is None and r.swap_note == NO_SWAP_PARTNER
    assert "test has no example of any label in the forget set" in r.swap_note and len(r.swap_note.splitlines()) == 1
    assert NO_SWAP_PARTNER in text_summary(r) and not [k for k in r.summary() if k.startswith("swap")]
    assert np.isfinite(r.summary()["ulira_auc"])               # the rest of the audit is there
    with pytest.raises(ValueError, match="test has no example of any label in the forget set"):
        swap_request(forget, retain, others, 0)


def test_the_swapped_forget_set_has_min_of_both_counts_per_label(data):
    train, test, template = data
    forget, retain = expunge.split_forget(train, classes=[1, 2], seed=0)
    y_test = targets(test).numpy()
    few = np.r_[np.flatnonzero(y_test == 1)[:5], np.flatnonzero(y_test != 1)]      # 5 test examples of label 1
    short = Subset(test, np.sort(few).tolist())
    s = swap_request(forget, retain, short, seed=0)
    y_f, y_t = targets(forget).numpy(), targets(short).numpy()
    n_f2, n_t2 = int((y_f == 2).sum()), int((y_t == 2).sum())
    assert int((y_f == 1).sum()) > 5
    assert np.array_equal(np.bincount(targets(s.forget).numpy(), minlength=3)[1:3], [5, min(n_f2, n_t2)])
    assert len(s.forget_positions) == len(s.test_positions) == len(s.forget) == 5 + min(n_f2, n_t2)
    assert np.array_equal(y_f[s.forget_positions], y_t[s.test_positions])          # same labels in both games
    assert len(s.retain) == len(retain) and len(s.train) == len(retain) + len(s.forget)
    r = audit(template, train, short, forget=forget, retain=retain, method="finetune", method_args=NOTHING,
              recipe=QUICK, n_models=4)
    n = len(s.forget)
    assert r.advantage.n_forget == r.sizes["swap_examples"] == n < len(forget)
    assert (f"the swapped request forgets {n} test examples, the audited one all {len(forget)} forget examples"
            in text_summary(r))


@pytest.mark.parametrize("section, swap", [(None, True), ({}, True), ({"swap": False}, False),
                                           ({"swap": True, "n_models": 4}, True)])
def test_config_switch(section, swap):
    assert parse_audit(section).swap is swap


@pytest.mark.parametrize("value", ["no", 0, 1, None, [True]])
def test_config_switch_must_be_a_boolean(value):
    with pytest.raises(ConfigError, match=r"config error at audit\.swap: expected true or false"):
        parse_audit({"swap": value})
