"""IAM where users look: one shadow shared by every row of a run scores each model exactly as a fresh shadow would;
``expunge run`` with ``scoring: {evidence: iam}`` trains one shadow, records every row's IAM and the shadow's
training time in the run store and shows it in the reports and the comparator's rows; a bench scores it in its
oracle and unlearning jobs and tunes without it; an audit reports the audited model's IAM beside a held-out oracle's
and judges it against the band of its 2K oracles; bad requests are one line, exit 2, worded alike in runs and
benches."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import expunge
from expunge.audit import audit, write_audit_reports
from expunge.audit import iam as iam_module
from expunge.audit.iam import Shadow, iam, train_shadow
from expunge.audit.report import text_summary
from expunge.cli import main
from expunge.data import ArrayDataset
from expunge.data.builtin import digits
from expunge.store import RunStore

RECIPE = dict(epochs=20, lr=0.05, batch_size=32)    # enough for the MLP to memorise its training data
REGRESSION_REFUSAL = ("config error at scoring.evidence: IAM scores classifiers (it reads the true-label "
                      "probability); the data is regression data")
NOTHING = dict(epochs=1, lr=1e-5)          # fine-tuning that changes nothing: the original as it was


@pytest.fixture(scope="module")
def small():
    """300 digits, a random 10% to forget, 200 test digits, an MLP trained on all 300 and its oracle."""
    train, test = digits(flat=True)
    data, held = ArrayDataset(train.x[:300], train.y[:300]), ArrayDataset(test.x[:200], test.y[:200])
    forget, retain = expunge.split_forget(data, fraction=0.1, seed=0)
    original = expunge.train(expunge.model("mlp", data, hidden=[64]), data, seed=0, **RECIPE)
    oracle = expunge.unlearn(original, forget=forget, retain=retain, method="retrain", seed=0)
    return data, held, forget, retain, original, oracle


def test_a_shared_shadow_scores_each_model_as_its_own_shadow_would(small):
    data, test, forget, retain, original, oracle = small
    tuned = expunge.unlearn(original, forget=forget, retain=retain, method="finetune", seed=0, epochs=2, lr=0.01)
    shadow = train_shadow(original, forget=forget, retain=retain, seed=5)
    for model in (original, oracle, tuned):
        shared = iam(model, forget=forget, retain=retain, test=test, shadow=shadow).summary()
        own = iam(model, forget=forget, retain=retain, test=test, seed=5).summary()   # a shadow from the model
        assert shared == own                      # the shadow depends on the request, recipe and seed only: bitwise
    # a model scored against a shared shadow needs no recorded recipe of its own
    bare = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    assert iam(bare, forget=forget, retain=retain, shadow=shadow).summary()["iam_n_forget"] == len(forget)


def test_a_shadow_of_another_request_is_refused(small):
    data, test, forget, retain, original, _ = small
    shadow = train_shadow(original, forget=forget, retain=retain, seed=0)
    other_forget, other_retain = expunge.split_forget(data, fraction=0.1, seed=1)
    with pytest.raises(ValueError, match=r"the IAM shadow was trained for another forget set \(the same size, 30 "
                                         r"examples, but other ones\)"):
        iam(original, forget=other_forget, retain=other_retain, shadow=shadow)
    copy = ArrayDataset(data.x.clone(), data.y.clone())           # equal values, another data object
    same_rows = expunge.split_forget(copy, fraction=0.1, seed=0)
    with pytest.raises(ValueError, match="trained for a forget set of another data object than this one"):
        iam(original, forget=same_rows[0], retain=same_rows[1], shadow=shadow)
    with pytest.raises(TypeError, match="shadow must be an expunge.audit.iam.Shadow"):
        iam(original, forget=forget, retain=retain, shadow=original)
    assert isinstance(shadow, Shadow) and shadow.seconds > 0


@pytest.fixture(scope="module")
def iam_run(tmp_path_factory):
    """``expunge run`` of the digits example with ``scoring.evidence=iam`` (reduced epochs), counting the shadows
    trained; then ``expunge report`` of it."""
    tmp = tmp_path_factory.mktemp("iam-run")
    trained = []
    real = iam_module.train_shadow
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EXPUNGE_STORE", str(tmp / "runs.db"))
        mp.setattr(iam_module, "train_shadow", lambda *a, **k: trained.append(1) or real(*a, **k))
        assert main(["run", "examples/digits_finetune.yaml", "train.epochs=15", "args.epochs=2",
                     "scoring.evidence=iam", "--out", str(tmp / "o")]) == 0
        with RunStore(tmp / "runs.db") as db:
            record = db.get(db.runs()[0].run_id)
        assert main(["report", record.run_id, "--out", str(tmp / "report")]) == 0
    return tmp, record, len(trained)


def test_run_scores_every_row_against_one_shadow_and_stores_it(iam_run):
    _, record, shadows = iam_run
    assert shadows == 1                                      # original, oracle and the method share one shadow
    m = record.metrics
    for prefix in ("", "oracle_", "original_"):
        assert {f"{prefix}iam_completeness_mean", f"{prefix}iam_relative_completeness",
                f"{prefix}iam_incomplete_share", f"{prefix}iam_n_measured"} <= set(m)
    # the same shadow: the same examples are measurable under every row
    assert m["iam_n_measured"] == m["oracle_iam_n_measured"] == m["original_iam_n_measured"]
    # the original kept its forget set: it looks less complete than the oracle, which never saw it
    assert m["original_iam_completeness_mean"] < m["oracle_iam_completeness_mean"]
    assert m["original_iam_relative_completeness"] < m["oracle_iam_relative_completeness"]
    assert m["evidence_tier"] == 0.0                         # IAM leaves the tier alone
    assert record.params["scoring.evidence"] == "iam"
    assert 0 < m["iam_shadow_seconds"] < m["wall_seconds"]   # the shadow's training time, recorded once
    assert not {"oracle_iam_shadow_seconds", "original_iam_shadow_seconds"} & set(m)


def test_run_reports_show_the_iam_columns_and_what_they_mean(iam_run, capsys):
    tmp, record, _ = iam_run
    md = (tmp / "report" / "report.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| Method"))
    assert "| IAM | IAM rel. | IAM incompl. |" in header
    assert "IAM (Wang et al., USENIX Security 2025; scoring: {evidence: iam})" in md
    assert f"Measured on {record.metrics['iam_n_measured']:.0f} of" in md
    html = (tmp / "report" / "report.html").read_text()
    assert "<th>IAM rel.</th>" in html
    results = json.loads((tmp / "report" / "results.json").read_text())
    means = next(iter(results["scenarios"].values()))["mean"]
    assert means["finetune"]["iam_completeness_mean"] == pytest.approx(record.metrics["iam_completeness_mean"])
    assert means["original"]["iam_completeness_mean"] == pytest.approx(
        record.metrics["original_iam_completeness_mean"])


def test_comparator_rows_carry_the_iam_columns(iam_run):
    pytest.importorskip("fastapi")
    from expunge.ui.app import experiments_payload
    from expunge.ui.sources import Workspace

    tmp, record, _ = iam_run
    payload = experiments_payload(Workspace([tmp / "runs.db"]))
    row = next(r for r in payload["experiments"] if r["kind"] == "run")
    assert row["scores"]["iam_relative_completeness"] == pytest.approx(record.metrics["iam_relative_completeness"])
    labels = {c["key"]: c["label"] for c in payload["columns"]}
    assert labels["iam_completeness_mean"] == "IAM" and labels["iam_relative_completeness"] == "IAM rel."
    keys = [c["key"] for c in payload["columns"] if c["key"].startswith("iam_")]
    assert keys == ["iam_completeness_mean", "iam_relative_completeness", "iam_incomplete_share"]   # as reported


@pytest.mark.parametrize("argv, message", [
    (["examples/digits_finetune.yaml", "scoring.evidence=lira"],
     "config error at scoring.evidence: expected iam"),
    (["examples/digits_finetune.yaml", "data.name=diabetes", "model.name=mlp", "method=retrain", "args={}",
      "scoring.evidence=iam"], REGRESSION_REFUSAL),
])
def test_bad_iam_scoring_is_one_line_and_exit_2(tmp_path, store, capsys, argv, message):
    assert main(["run", *argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not store.exists() or not RunStore(store).runs()            # nothing recorded


def test_bench_scores_iam_in_its_cells_and_tunes_without_it():
    from expunge.bench import expand, parse_bench
    from expunge.config import ConfigError

    raw = {"name": "b", "seeds": 1, "data": {"name": "digits"}, "model": {"name": "mlp", "args": {"hidden": [16]}},
           "train": {"epochs": 2}, "scenarios": [{"name": "random", "fraction": 0.1}],
           "methods": {"finetune": {"epochs": 1}}, "tuning": {"trials": 1, "methods": ["finetune"]},
           "scoring": {"evidence": "iam"}}
    grid = expand(parse_bench(raw))
    scored = {(job.kind, "tuning" in str(job.labels.get("scenario"))): (job.spec.get("scoring") or {})
              for job in grid.jobs.values() if job.kind in ("oracle", "tune", "unlearn")}
    assert scored[("oracle", False)] == {"evidence": "iam"} and scored[("unlearn", False)] == {"evidence": "iam"}
    assert scored[("oracle", True)] == {} and scored[("tune", True)] == {}      # tuning trials score no IAM
    with pytest.raises(ConfigError) as refused:
        parse_bench({**raw, "data": {"name": "diabetes"}, "tuning": None})
    assert str(refused.value) == REGRESSION_REFUSAL               # worded as a run's refusal


def test_bench_jobs_add_iam_from_one_shadow_of_the_cells_original(small, monkeypatch):
    from expunge.bench.jobs import _with_iam

    data, test, forget, retain, original, oracle = small
    trained = []
    real = iam_module.train_shadow
    monkeypatch.setattr(iam_module, "train_shadow", lambda *a, **k: trained.append(1) or real(*a, **k))
    rows = [({}, oracle), ({}, original)]
    _with_iam({"scoring": {"evidence": "iam"}, "original": original, "seed": 0}, rows, forget, retain, test)
    assert len(trained) == 1                                  # the oracle job's two rows share one shadow
    untouched = ({}, oracle)
    _with_iam({"scoring": {"max_examples": 3}, "original": original, "seed": 0}, [untouched], forget, retain, test)
    assert untouched[0] == {} and len(trained) == 1           # without evidence: iam, nothing is trained
    want = iam(oracle, forget=forget, retain=retain, test=test, seed=0).summary()   # what evaluate's IAM gives
    assert rows[0][0] == want and rows[1][0]["iam_completeness_mean"] < want["iam_completeness_mean"]


def test_a_bench_run_records_iam_in_its_oracle_and_unlearning_jobs(tmp_path):
    from expunge.bench import LocalEngine, parse_bench, run_bench
    from tests.bench.tiny import tiny

    spec = parse_bench(tiny(seeds=1, scenarios=[{"name": "random", "fraction": 0.1}],
                            methods={"finetune": {"epochs": 2, "lr": 0.05}}, scoring={"evidence": "iam"}))
    outcome = run_bench(spec, out=tmp_path / "o", engine=LocalEngine(1), report=False)
    assert outcome.ran == 3 and not outcome.failures
    with RunStore(tmp_path / "o" / "runs.db") as db:
        jobs = {r.kind: r.metrics for r in db.tagged("job_key").values()}
    oracle, unlearned = jobs["oracle"], jobs["unlearn"]
    keys = {"iam_completeness_mean", "iam_relative_completeness", "iam_incomplete_share", "iam_n_measured"}
    assert keys <= set(oracle) and {f"original_{k}" for k in keys} <= set(oracle) and keys <= set(unlearned)
    assert oracle["iam_shadow_seconds"] > 0 and unlearned["iam_shadow_seconds"] > 0
    assert "iam_shadow_seconds" not in jobs["original"]
    # each job trains the cell's shadow anew, the same one: the same examples are measurable under every row
    assert oracle["iam_n_measured"] == oracle["original_iam_n_measured"] == unlearned["iam_n_measured"]


@pytest.fixture(scope="module")
def audits(small):
    """Tiny audits (K = 16, no SWAP test: 32 oracles for IAM's band) of doing nothing and of retraining on the small
    digits request."""
    data, test, forget, retain, original, _ = small
    run = lambda method, args: audit(expunge.model("mlp", data, hidden=[64]), data, test, forget=forget,
                                     retain=retain, method=method, method_args=args, recipe=RECIPE, n_models=16,
                                     swap=False)
    return run("finetune", NOTHING), run("retrain", None)


def test_the_oracle_band_is_a_prediction_interval_from_the_oracles_order_statistics():
    from expunge.audit.iam import oracle_band

    oracles = [{"iam_relative_completeness": v, "iam_completeness_mean": v / 2} for v in np.linspace(0.1, 0.9, 9)]
    band = oracle_band({"iam_relative_completeness": 0.5}, oracles)
    assert band["iam_oracle_band_models"] == 9
    assert (band["iam_oracle_relative_completeness_low"], band["iam_oracle_relative_completeness_high"]) == (0.1, 0.9)
    assert band["iam_oracle_completeness_mean_high"] == 0.45      # each number's own band; below 39: smallest, largest
    assert band["iam_inside_oracle_band"] == 1.0
    assert oracle_band({"iam_relative_completeness": 0.05}, oracles)["iam_inside_oracle_band"] == 0.0
    assert np.isnan(oracle_band({"iam_relative_completeness": float("nan")}, oracles)["iam_inside_oracle_band"])
    many = [{"iam_relative_completeness": float(v)} for v in range(79)]      # 79 oracles: the 2nd and 78th smallest
    wide = oracle_band({"iam_relative_completeness": 0.5}, many)
    assert (wide["iam_oracle_relative_completeness_low"], wide["iam_oracle_relative_completeness_high"]) == (1.0, 77.0)


def test_oracle_members_are_scored_as_each_alone_against_the_same_shadow(small):
    from expunge import ensemble as E
    from expunge.audit.iam import iam_of_members

    data, test, forget, retain, original, _ = small
    oracles = E.train(expunge.model("mlp", data, hidden=[64]), retain, seeds=[7, 8], epochs=3, lr=0.05)
    shadow = train_shadow(original, forget=forget, retain=retain, seed=0)
    batched = [r.summary() for r in iam_of_members(oracles, forget=forget, retain=retain, test=test, shadow=shadow)]
    alone = [iam(oracles.member(k), forget=forget, retain=retain, test=test, shadow=shadow).summary() for k in (0, 1)]
    assert batched[0] != batched[1]
    for b, a in zip(batched, alone):                               # the batched forward pass, up to its rounding
        assert b.keys() == a.keys() and all(b[k] == pytest.approx(a[k], abs=1e-6, nan_ok=True) for k in a)


def test_audit_judges_iam_of_the_audited_model_against_the_oracles_band(audits, tmp_path):
    kept, retrained = audits
    for r in audits:
        assert r.iam["iam_n_forget"] == r.sizes["forget"]
        assert r.iam["iam_n_measured"] == r.iam["iam_oracle_n_measured"]          # one shadow for both
        assert {k: v for k, v in r.iam.items() if k.startswith("iam_")} == {k: v for k, v in r.summary().items()
                                                                            if k.startswith("iam_")}
        assert r.iam["iam_oracle_band_models"] == 2 * r.n_models                  # oracles and baseline oracles
        low, high = r.iam["iam_oracle_relative_completeness_low"], r.iam["iam_oracle_relative_completeness_high"]
        assert low <= r.iam["iam_oracle_relative_completeness"] <= high           # the held-out oracle is one of them
        assert high - low > 0.1                                                   # one oracle alone is no target
    # retraining is one more oracle: inside the band (under exact retraining it falls outside 32 oracles' smallest to
    # largest with probability 2/33); doing nothing leaves the forget examples looking fitted, well below it
    assert retrained.iam["iam_inside_oracle_band"] == 1.0
    assert kept.iam["iam_inside_oracle_band"] == 0.0
    assert kept.iam["iam_relative_completeness"] < kept.iam["iam_oracle_relative_completeness_low"] - 0.1
    assert kept.iam["iam_relative_completeness"] < retrained.iam["iam_relative_completeness"]
    assert kept.iam["iam_oracle_relative_completeness_low"] == retrained.iam["iam_oracle_relative_completeness_low"]
    text = text_summary(kept)
    assert "IAM: per-example completeness against one shadow model, beside the band of 32 oracles" in text
    assert "band (32 oracles)" in text
    assert "BELOW: more fitted than retraining" in text
    assert "inside: as complete as retraining" in text_summary(retrained)
    paths = write_audit_reports(kept, tmp_path)
    assert "relative completeness: forget mean / test mean" in paths["md"].read_text()
    saved = json.loads(paths["json"].read_text())
    assert saved["iam"]["iam_relative_completeness"] == pytest.approx(kept.iam["iam_relative_completeness"])
    assert saved["iam"]["iam_inside_oracle_band"] == 0.0
    assert saved["summary"]["iam_oracle_relative_completeness_high"] == pytest.approx(
        kept.iam["iam_oracle_relative_completeness_high"])
    assert "<td>relative completeness: forget mean / test mean, capped at 1</td>" in paths["html"].read_text()
