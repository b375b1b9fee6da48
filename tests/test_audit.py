"""The audit: known answers (retraining is indistinguishable from the oracles, a method that does nothing is not),
U-LiRA on known distributions, tier thresholds, repeatability, bad input, reports and the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import expunge
from expunge.audit import TIER1_REFERENCES, TIER2_MODELS, AuditResult, audit, tier_for, write_audit_reports
from expunge.audit.report import text_summary
from expunge.audit.tier1 import reference_attack
from expunge.audit.tier2 import ulira
from expunge.cli import main
from expunge.data import generated_classification
from expunge.evaluate import TIER0_CAVEAT
from expunge.experiment import Comparison, MethodResult
from expunge.metrics import lira, roc_auc
from expunge.report import write_reports
from expunge.store import RunStore

RECIPE = dict(epochs=30, lr=0.05, batch_size=32)
NOTHING = dict(epochs=1, lr=1e-5)      # fine-tuning that changes nothing: the models still remember the forget set


@pytest.fixture(scope="module")
def setup():
    """300 training rows that an MLP memorises (forget accuracy 99% for the originals, about 64% for oracles)."""
    train, test = generated_classification(n=400, seed=0)
    forget, retain = expunge.split_forget(train, fraction=0.1, seed=0)
    return train, test, forget, retain, expunge.model("mlp", train, hidden=[64])


def run(setup, method, args=None, k=16, recipe=RECIPE, **kw) -> AuditResult:
    train, test, forget, retain, template = setup
    return audit(template, train, test, forget=forget, retain=retain, method=method, method_args=args,
                 recipe=recipe, n_models=k, **kw)


QUICK = dict(RECIPE, epochs=3)


@pytest.fixture(scope="module")
def audits(setup):
    return run(setup, "retrain"), run(setup, "finetune", NOTHING)


def test_retraining_is_indistinguishable_and_doing_nothing_is_not(audits):
    exact, nothing = (a.summary() for a in audits)
    # retraining vs oracles: U-LiRA at chance, challenge F at its oracle-vs-oracle baseline (about 0.16 here, not 1)
    assert abs(exact["ulira_accuracy"] - 0.5) < 0.06 and abs(exact["ulira_auc"] - 0.5) < 0.06
    assert abs(exact["challenge_forget_quality"] - exact["challenge_baseline_forget_quality"]) < 0.06
    assert 0.05 < exact["challenge_baseline_forget_quality"] < 0.5
    assert abs(exact["klom_forget_mean"] - exact["klom_baseline_forget_mean"]) < 0.5
    # a method that leaves the originals as they were: the attacks see it, F falls far below the baseline
    assert nothing["original_forget_acc"] > 95 and nothing["oracle_forget_acc"] < 80
    assert nothing["ulira_accuracy"] > 0.7 and nothing["ulira_auc"] > 0.8
    assert nothing["challenge_forget_quality"] < nothing["challenge_baseline_forget_quality"] - 0.07
    assert nothing["klom_forget_mean"] > nothing["klom_baseline_forget_mean"] + 1.0
    assert nothing["lira_auc"] > nothing["lira_oracle_auc"] + 0.2          # tier 1 sees it in one model too
    assert nothing["ulira_baseline_accuracy"] == exact["ulira_baseline_accuracy"]   # same oracles, same seeds
    assert audits[0].verdict().startswith("Verdict (tier 1): not distinguishable from retraining")
    assert audits[1].verdict().startswith("Verdict (tier 1): DISTINGUISHABLE from retraining (U-LiRA AUC")


def test_result_tables_and_json(audits):
    exact, nothing = audits
    assert exact.tier == nothing.tier == 1 and exact.summary()["evidence_tier"] == 1.0
    assert exact.sizes["forget"] == len(exact.examples["epsilon"]) == 30
    top = nothing.exposed(10)
    assert len(top) == 10 and [e["epsilon"] for e in top] == sorted((e["epsilon"] for e in top), reverse=True)
    assert top[0]["epsilon"] == nothing.examples["epsilon"].max()
    assert all(0 <= e["index"] < 300 and e["label"] in range(4) for e in top)
    data = json.loads(json.dumps(nothing.to_dict()))
    assert data["evidence_tier"] == 1 and len(data["most_exposed"]) == 10
    assert set(data["summary"]) >= {"challenge_forget_quality", "ulira_accuracy", "lira_auc", "avg_gap"}


def test_exposed_indices_point_into_train(setup, audits):
    train, _, forget, _, _ = setup
    ex = audits[1].examples
    x_train = expunge.data.datasets.features(train)
    x_forget = expunge.data.datasets.features(forget)
    assert torch.equal(x_train[torch.as_tensor(ex["index"])], x_forget)
    assert np.array_equal(ex["label"], expunge.data.datasets.targets(forget).numpy())


def test_ulira_known_distributions():
    rng = np.random.default_rng(0)
    same = ulira(rng.normal(0, 1, (32, 50)), rng.normal(0, 1, (32, 50)), seed=0)
    apart = ulira(rng.normal(3, 1, (32, 50)), rng.normal(0, 1, (32, 50)), seed=0)
    assert abs(same.accuracy - 0.5) < 0.05 and abs(same.attack.auc - 0.5) < 0.05
    # two unit Gaussians 3 apart: the likelihood-ratio test is right with probability Φ(1.5) = 0.933
    assert apart.accuracy == pytest.approx(0.933, abs=0.03) and apart.attack.auc > 0.97
    assert apart.per_example_accuracy.shape == (50,) and apart.n_fit == 16


def test_tier1_target_comes_from_the_same_attack_as_the_models_number():
    """With K = 64 oracles the model's attack uses per-example σ; the leave-one-out target (63 references each) must
    use it too, or the two numbers come from different attacks."""
    rng = np.random.default_rng(0)
    mu, sd = rng.normal(0, 3, 200), rng.uniform(0.2, 3.0, 200)    # spreads differ between examples
    ref = rng.normal(mu, sd, (64, 200))
    is_forget = np.arange(200) < 50

    def mean_auc(fixed):
        scores = (lira(ref[i], np.delete(ref, i, 0), None, online=False, fix_variance=fixed) for i in range(32))
        return np.mean([roc_auc(s[is_forget], s[~is_forget]) for s in scores])

    r = reference_attack(ref[0], ref, is_forget)
    assert r.n_heldout == 32 and r.n_reference == 64
    assert r.oracle_auc == pytest.approx(mean_auc(False), abs=1e-12)
    assert abs(mean_auc(True) - mean_auc(False)) > 1e-6                 # the two attacks differ here


def test_tier_thresholds():
    assert (TIER1_REFERENCES, TIER2_MODELS) == (16, 64)
    assert [tier_for(k) for k in (2, 15, 16, 63, 64, 512)] == [0, 0, 1, 1, 2, 2]


def test_repeatable_for_a_seed(setup):
    a, b = (run(setup, "finetune", NOTHING, k=4, recipe=QUICK) for _ in range(2))
    c = run(setup, "finetune", NOTHING, k=4, recipe=QUICK, seed=5)
    timeless = lambda r: {k: v for k, v in r.summary().items() if "seconds" not in k and k != "rte"}
    assert timeless(a) == timeless(b) and a.tier == 0
    assert np.array_equal(a.examples["epsilon"], b.examples["epsilon"])
    assert a.summary()["challenge_eps_mean"] != c.summary()["challenge_eps_mean"]


def test_given_original_is_the_audited_model(setup):
    train, test, forget, retain, template = setup
    original = expunge.train(template, train, seed=3, **QUICK)
    r = run(setup, "finetune", NOTHING, k=4, recipe=QUICK, original=original)
    assert "given original" in r.audited
    mine = expunge.unlearn(original, forget=forget, retain=retain, method="finetune", seed=0, **NOTHING)
    assert r.scores["forget_acc"] == expunge.evaluate(mine, forget=forget, retain=retain)["forget_acc"]


@pytest.mark.parametrize("kw, error, message", [
    ({"n_models": 1}, ValueError, "n_models=1"),
    ({"n_models": True}, ValueError, "n_models=True"),
    ({"method": "nope"}, ValueError, "nope"),
    ({"method_args": {"epochs": -1}}, ValueError, "epochs"),
    ({"recipe": {"lr": 0.1, "bogus": 1}}, ValueError, "bogus"),
    ({"seed": -1}, ValueError, "seed=-1"),
    ({"swap": "yes"}, TypeError, "swap must be True or False"),
])
def test_bad_input(setup, kw, error, message):
    train, test, forget, retain, template = setup
    args = dict(forget=forget, retain=retain, method="finetune", recipe=RECIPE, n_models=4)
    with pytest.raises(error, match=message):
        audit(template, train, test, **{**args, **kw})


def test_forget_must_come_from_train(setup):
    train, test, _, retain, template = setup
    forget, _ = expunge.split_forget(test, fraction=0.5, seed=0)
    with pytest.raises(ValueError, match="forget must be a subset of train"):
        audit(template, train, test, forget=forget, retain=retain, method="finetune", recipe=RECIPE, n_models=4)


def test_test_must_be_unseen(setup):
    train, test, forget, retain, template = setup
    with pytest.raises(ValueError, match="test shares examples with train"):
        audit(template, train, retain, forget=forget, retain=retain, method="finetune", recipe=RECIPE, n_models=4)


def test_regression_is_refused():
    train, test = expunge.data.friedman(n=200)
    forget, retain = expunge.split_forget(train, fraction=0.1, seed=0)
    with pytest.raises(ValueError, match="classifiers"):
        audit(expunge.model("mlp", train), train, test, forget=forget, retain=retain, method="finetune",
              recipe=RECIPE, n_models=4)


def test_audit_reports(tmp_path, audits):
    paths = write_audit_reports(audits[1], tmp_path, title="t")
    md = paths["md"].read_text()
    assert "Evidence tier 1" in md and "oracles vs oracles (baseline)" in md and "most exposed" in md
    assert f"**{audits[1].verdict()}**" in md and text_summary(audits[1]).endswith(audits[1].verdict())
    html = paths["html"].read_text()
    assert "data:image/png;base64" in html and "http" not in html.split("<body>")[1]
    assert json.loads(paths["json"].read_text())["evidence_tier"] == 1


def test_comparison_reports_state_the_tier(tmp_path):
    def comp(tier):
        scores = {"ua": 1.0, "retain_acc": 99.0, "test_acc": 90.0, "mia_efficacy": 5.0, "evidence_tier": tier}
        return {"s": [Comparison("s", dict(scores, evidence_tier=0.0), dict(scores, evidence_tier=0.0),
                                 [MethodResult("m", scores)])]}
    low = write_reports(tmp_path / "a", "t", comp(0.0), {})
    assert TIER0_CAVEAT in low["md"].read_text() and "cannot show" in low["html"].read_text()
    assert "| tier |" in low["md"].read_text()
    high = write_reports(tmp_path / "b", "t", comp(1.0), {})
    assert "Evidence tier 1" in high["md"].read_text() and TIER0_CAVEAT not in high["md"].read_text()
    assert json.loads(high["json"].read_text())["evidence_tier"] == 1


def test_cli_audit_writes_reports_and_records_the_run(tmp_path, store, capsys):
    out = tmp_path / "audit"
    # scoring: {evidence: iam} asks for what every classifier audit reports anyway: accepted
    assert main(["audit", "examples/digits_audit.yaml", "train.epochs=2", "args.epochs=1", "audit.swap=false",
                 "scoring={evidence: iam}", "--models", "4", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert TIER0_CAVEAT in printed and "most exposed" in printed and "U-LiRA accuracy" in printed
    assert "SWAP test not run: switched off" in printed and "swap_advantage" not in printed
    assert "Tier 1: offline LiRA" in printed and "(tier 1 needs 16)" in printed
    for name in ("audit.md", "audit.html", "audit.json"):
        assert (out / name).stat().st_size > 0
    data = json.loads((out / "audit.json").read_text())
    assert data["n_models"] == 4 and data["evidence_tier"] == 0 and data["method"] == "finetune"
    assert "iam_completeness_mean" in data["iam"]
    run_id = printed.strip().split()[-1].rstrip(").")
    assert main(["runs", "show", run_id]) == 0
    shown = capsys.readouterr().out
    assert "(audit, FINISHED)" in shown and "ulira_accuracy" in shown and "audit.n_models = 4" in shown
    assert "audit.swap = False" in shown and "swap_advantage" not in shown


@pytest.mark.parametrize("argv, message", [
    (["examples/digits_audit.yaml", "audit.bogus=1"], "config error at audit.bogus"),
    (["examples/digits_audit.yaml", "audit.n_models=1"], "config error at audit.n_models"),
    (["examples/digits_audit.yaml", "audit.swap=maybe"], "config error at audit.swap"),
    (["examples/digits_audit.yaml", "train.nope=1"], "config error at train.nope"),
    (["examples/digits_audit.yaml", "--models", "1"], "--models 1 is not allowed"),
    (["missing.yaml"], "config file not found"),
    (["examples/digits_audit.yaml", "--threads", "0"], "--threads 0 is not allowed"),
    (["examples/digits_audit.yaml", "data.name=friedman"], "the audit scores classifiers"),
])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, store, capsys, argv, message):
    assert_cli_audit_refuses(argv, message, tmp_path, store, capsys)


def assert_cli_audit_refuses(argv, message, tmp_path, store, capsys):
    """``expunge audit ARGV`` exits 2 with one line containing ``message``, writes nothing and records no run."""
    out = tmp_path / "a"
    assert main(["audit", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()
    with RunStore(store) as db:
        assert db.runs() == []                  # nothing recorded either
