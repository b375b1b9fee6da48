"""The audit's meta-evaluation (benchmarks/evidence.py): ranking, power and calibration computed right on inputs with
known answers; the do-nothing method it audits; several methods audited on shared models exactly as one by one;
``method=`` on the audit's command line refusing to keep another method's arguments, and retrain inside the audit
being exact retraining with the oracles' recipe."""
from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

import expunge
import expunge.ensemble as E
from expunge.audit import audit, audit_methods
from expunge.audit.config import load_audit_config
from expunge.data import generated_classification
from expunge.methods import registered
from expunge.training import Recipe
from tests.helpers import state_equal

ROOT = Path(__file__).resolve().parents[2]
QUICK = dict(epochs=3, lr=0.05, batch_size=32)


def _evidence():
    spec = importlib.util.spec_from_file_location("benchmarks_evidence", ROOT / "benchmarks" / "evidence.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module          # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


ev = _evidence()


# --- the meta-evaluation's logic on synthetic rows ---------------------------------------------------------------

def rows(values: dict[str, float], low: float = 0.4, high: float = 0.6) -> dict[str, dict[str, float]]:
    return {m: {"s": v, "s_low": low, "s_high": high} for m, v in values.items()}


HIGHER = ev.Score("s", "a score, higher = worse", ev._keys("s", "s_low", "s_high"))
LOWER = ev.Score("s", "a score, lower = worse", ev._keys("s", "s_low", "s_high", -1.0))
RIGHT = {"identity": 0.9, "finetune": 0.7, "random_label": 0.8, "retrain": 0.5}


def test_a_score_that_ranks_right_flags_do_nothing_and_not_retraining():
    meta = ev.meta_evaluate([rows(RIGHT)] * 4, (HIGHER,))["s"]
    assert meta["ranking"] is True and meta["ranking_share"] == 1.0
    assert meta["power"] == 1.0 and meta["calibration"] == 0.0
    assert meta["values"] == RIGHT and meta["band"] == [0.4, 0.6]
    assert meta["flagged"] == {"identity": 1.0, "finetune": 1.0, "random_label": 1.0, "retrain": 0.0}


def test_the_order_of_the_two_middle_methods_is_not_scored():
    swapped = {**RIGHT, "finetune": 0.8, "random_label": 0.7}
    assert ev.meta_evaluate([rows(swapped)], (HIGHER,))["s"]["ranking"] is True


def test_a_score_that_ranks_wrong_is_reported_wrong_and_says_which_end():
    overshoot = {**RIGHT, "random_label": 0.95}              # a method beyond doing nothing
    meta = ev.meta_evaluate([rows(overshoot)], (HIGHER,))["s"]
    assert meta["ranking"] is False and meta["retrain_lowest"] is True and meta["identity_highest"] is False
    assert ev.ranking_cell(meta) == "✗ identity not highest"
    closer = {**RIGHT, "finetune": 0.45}                     # a method closer to the oracles than retraining
    meta = ev.meta_evaluate([rows(closer)], (HIGHER,))["s"]
    assert (meta["retrain_lowest"], meta["identity_highest"]) == (False, True)
    assert ev.ranking_cell(meta) == "✗ retrain not lowest"
    tie = {**RIGHT, "finetune": 0.5}                         # a tie is not an order
    assert ev.ranking_correct(tie) is False


def test_lower_is_worse_scores_are_oriented_before_ranking_and_flagging():
    # F-like: retraining high, doing nothing low; the band's low edge is what doing nothing falls below
    f = {"identity": 0.0, "finetune": 0.2, "random_label": 0.1, "retrain": 0.5}
    meta = ev.meta_evaluate([rows(f)], (LOWER,))["s"]
    assert meta["ranking"] is True and meta["power"] == 1.0 and meta["calibration"] == 0.0
    assert meta["values"]["identity"] == -0.0 and meta["band"] == [-0.6, -0.4]


def test_power_and_calibration_are_shares_of_repetitions():
    reps = [rows({**RIGHT, "identity": v, "retrain": w}) for v, w in ((0.9, 0.5), (0.55, 0.65), (0.95, 0.5),
                                                                      (0.58, 0.5))]
    meta = ev.meta_evaluate(reps, (HIGHER,))["s"]
    assert meta["power"] == 0.5                              # flagged in repetitions 1 and 3
    assert meta["calibration"] == 0.25                       # retraining beyond the band once
    assert meta["ranking_share"] == 0.5
    assert meta["values"]["identity"] == pytest.approx(np.median([0.9, 0.55, 0.95, 0.58]))


def test_a_yes_no_score_is_not_ranked():
    flags = {"identity": 1.0, "finetune": 1.0, "random_label": 1.0, "retrain": 0.0}
    meta = ev.meta_evaluate([{m: {"verdict_distinguishable": v} for m, v in flags.items()}],
                            (next(s for s in ev.SCORES if s.key == "verdict"),))["verdict"]
    assert meta["ranking"] is None and meta["ranking_share"] is None and ev.ranking_cell(meta) == "–"
    assert meta["power"] == 1.0 and meta["calibration"] == 0.0


def test_missing_values_count_as_unknown_not_as_unflagged():
    reps = [rows(RIGHT), {**rows(RIGHT), "identity": {"s_low": 0.4, "s_high": 0.6}}]
    meta = ev.meta_evaluate(reps, (HIGHER,))["s"]
    assert meta["power"] == 1.0 and meta["ranking_share"] == 1.0
    assert ev.flagged(math.nan, 0.6) is None and ev.ranking_correct({"identity": 1.0}) is None


def test_klom_band_has_its_stated_rate_for_independent_skewed_values():
    rng = np.random.default_rng(0)
    n, trials, hits = 144, 4000, 0
    for _ in range(trials):
        baseline, other = rng.exponential(1.0, n), rng.exponential(1.0, n)   # KLoM per example is right-skewed
        hits += other.mean() > ev.klom_band(baseline, other)[1]
    assert abs(hits / trials - 0.025) < 0.008                                  # 3.2 binomial standard errors
    low, high = ev.klom_band(np.array([1.0, 3.0]), np.array([0.0, 2.0]))
    assert (low + high) / 2 == 2.0 and high - low == pytest.approx(2 * 1.959964 * math.sqrt(2 / 2 + 2 / 2))


def test_retrain_closest_reads_distance_on_both_sides_of_the_band():
    band = (0.4, 0.6)
    assert ev.retrain_closest({**RIGHT, "random_label": 0.05}, band) is True          # far below: far all the same
    assert ev.retrain_closest({**RIGHT, "retrain": 0.3, "finetune": 0.55}, band) is False
    assert ev.retrain_closest({**RIGHT, "finetune": None}, band) is None


def test_extending_keeps_the_earlier_repetitions_and_rescores_them_all():
    previous = {"setup": "synthetic", "n_models": 4, "seconds": 7.0, "timings": [{"seed": 0}],
                "methods": dict.fromkeys(ev.METHODS), "iam_oracles": ev.IAM_ORACLES,     # no mode, top: the defaults
                "rows": [{m: {"ulira_auc": v, "ulira_baseline_auc": 0.5, "ulira_margin": 0.05, "lira_auc": None}
                          for m, v in RIGHT.items()}]}
    setup = {"name": "synthetic", "description": "synthetic", "methods": dict.fromkeys(ev.METHODS)}
    out = ev.run(setup, n_models=4, repeats=0, previous=previous, echo=lambda _: None)
    assert out["repetitions"] == 1 and out["seeds"] == [0] and out["seconds"] >= 7.0
    assert out["scores"]["ulira_auc"]["power"] == 1.0 and out["scores"]["ulira_auc"]["calibration"] == 0.0
    assert out["scores"]["lira_auc"]["power"] is None                                 # None read back as unknown
    assert (out["mode"], out["top"]) == ("vulnerable", None)
    for change, differs in ((dict(n_models=8), "n_models"), (dict(mode="standard"), "mode"),
                            (dict(top=5), "top"), (dict(iam_oracles=4), "iam_oracles"),
                            (dict(name={**setup, "methods": {**setup["methods"], "finetune": {"epochs": 1}}}),
                             "methods")):
        settings = {"name": setup, "n_models": 4, **change}
        with pytest.raises(ValueError, match=f"same setup and K.*differ: {differs}$"):
            ev.run(**settings, repeats=0, previous=previous, echo=lambda _: None)


def test_rescore_without_results_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(ev, "RESULTS", tmp_path)
    assert ev.main(["--rescore"]) == 2 and "no results to rescore" in capsys.readouterr().err
    with pytest.raises(SystemExit):                                   # argparse's one line, exit 2
        ev.main(["digits", "--extend", "--out", str(tmp_path / "none.json")])
    assert "does not exist" in capsys.readouterr().err


def test_prediction_band_rates_are_what_one_more_exchangeable_value_does():
    assert ev.prediction_rate(16) == pytest.approx(1 / 17) and ev.prediction_rate(64) == pytest.approx(1 / 65)
    assert ev.prediction_rate(128) == pytest.approx(3 / 129) and math.isnan(ev.prediction_rate(math.nan))
    rng = np.random.default_rng(1)
    trials = 20000
    values = rng.normal(size=(trials, 17))            # 16 oracles and one more exchangeable value
    hits = [values[t, 16] > ev.iam_band(list(values[t, :16]))[1] for t in range(trials)]
    assert abs(np.mean(hits) - 1 / 17) < 0.006        # 3.4 binomial standard errors; 2.5% would fail
    lows = [values[t, 16] < ev.iam_band(list(values[t, :16]))[0] for t in range(trials)]
    assert abs(np.mean(lows) - 1 / 17) < 0.006


def test_calibration_counts_both_edges_and_a_nominal_may_depend_on_the_row():
    sided = ev.Score("s", "two-sided", ev._keys("s", "s_low", "s_high"), lambda r: r["rate"])
    reps = [rows({**RIGHT, "retrain": w}) for w in (0.35, 0.5, 0.65, 0.3)]
    for rep in reps:
        rep["retrain"]["rate"] = 0.05
    meta = ev.meta_evaluate(reps, (sided,))["s"]
    assert meta["calibration"] == 0.25 and meta["calibration_below"] == 0.5 and meta["nominal"] == 0.05
    assert meta["below"]["identity"] == 0.0
    verdict = next(s for s in ev.SCORES if s.key == "verdict")
    assert ev.meta_evaluate([rows(RIGHT)], (verdict,))["verdict"]["calibration_below"] is None
    assert {s.key for s in ev.SCORES if s.nominal is None} == {
        "ulira_auc", "challenge_f", "challenge_f_neurips2023", "klom_forget", "lira_auc", "swap_advantage", "verdict"}


def test_rescoring_rederives_the_iam_band_and_the_verdict_from_stored_numbers():
    row = {"ulira_auc": 0.9, "ulira_baseline_auc": 0.5, "n_models": 16.0, "evidence_tier": 1.0,
           "iam_n_forget": 40.0, "retain_leakage_n_nonmembers": 100.0, "verdict_distinguishable": 0.0,
           "iam_band_low": 0.0, "iam_band_high": 1.0}
    summary = {"rows": [{"identity": row, "retrain": {**row, "ulira_auc": 0.5, "verdict_distinguishable": 1.0}}],
               "timings": [{"oracle_iam": [0.3, 0.5, None, 0.4]}]}
    (rep,) = ev.rederive(summary)
    assert rep["identity"]["verdict_distinguishable"] == 1.0 and rep["retrain"]["verdict_distinguishable"] == 0.0
    assert (rep["identity"]["iam_band_low"], rep["identity"]["iam_band_high"]) == (0.3, 0.5)
    assert rep["retrain"]["iam_band_oracles"] == 3.0
    assert summary["rows"][0]["identity"]["verdict_distinguishable"] == 0.0        # the stored rows untouched


def test_the_table_has_a_row_per_score_and_shares_out_of_the_repetitions():
    summary = {"repetitions": 4, "scores": ev.meta_evaluate([rows(RIGHT)] * 4, (HIGHER,))}
    lines = ev.table(summary)
    assert len(lines) == 3
    assert lines[2] == ("| a score, higher = worse | 0.900 | 0.700 | 0.800 | 0.500 | 0.400 to 0.600 | ✓ (4/4) | ✓ "
                        "| 4/4 | 0/4 · 0/4 (–) |")


# --- identity: the do-nothing baseline ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small():
    train, test = generated_classification(n=400, seed=0)
    forget, retain = expunge.split_forget(train, fraction=0.1, seed=0)
    template = expunge.model("mlp", train, hidden=[16])
    return train, test, forget, retain, template


def test_identity_returns_an_unchanged_copy_and_forgets_nothing(small):
    train, test, forget, retain, template = small
    original = expunge.train(template, train, seed=0, **QUICK)
    out = expunge.unlearn(original, forget=forget, retain=None, method="identity", seed=3)
    assert out is not original and state_equal(out, original)
    assert not any(p.data_ptr() == q.data_ptr() for p, q in zip(out.parameters(), original.parameters()))
    assert expunge.provenance(out).method == "identity"
    assert expunge.provenance(out).recipe == expunge.provenance(original).recipe
    assert registered()["identity"].forgets is False


def test_identity_is_no_competitor_where_methods_are_listed_but_can_be_named():
    from expunge.bench.choices import parse_methods
    from expunge.deletion.forget import _check_method_name
    from expunge.demo import choose_methods, classification_methods

    assert "identity" not in classification_methods() and "finetune" in classification_methods()
    assert "identity" not in parse_methods({"methods": "all"}, {"classification"})
    assert choose_methods("identity") == ["identity"]
    assert list(parse_methods({"methods": ["identity"]}, {"classification"})) == ["identity"]
    with pytest.raises(ValueError, match="forgets nothing"):       # no deletion certificate for doing nothing
        _check_method_name("identity", {})


def test_identity_is_not_offered_by_the_comparator_and_is_marked_in_the_method_list(capsys):
    from expunge.cli import main

    assert main(["methods"]) == 0
    listing = capsys.readouterr().out
    block = listing[listing.index("\nidentity "):].split("\n")[1:3]
    assert any("does not forget: the do-nothing baseline" in line for line in block)
    assert listing.count("does not forget") == sum(not cls.forgets for cls in registered().values())
    pytest.importorskip("fastapi")
    from expunge.ui.app import methods_payload

    offered = {m["name"] for m in methods_payload()}
    assert "identity" not in offered and "finetune" in offered


def test_auto_never_chooses_identity(small):
    from expunge.deletion.auto import candidates

    train, test, forget, retain, template = small
    usable, skipped = candidates(template, train)
    assert "identity" not in usable and "identity" not in skipped and "finetune" in usable


# --- several methods on shared models; retrain inside the audit ---------------------------------------------------

def test_audit_methods_equals_separate_audits_bitwise_and_trains_the_shared_models_once(small, monkeypatch):
    train, test, forget, retain, template = small
    methods = {"identity": None, "finetune": {"epochs": 1, "lr": 0.01}}
    settings = dict(recipe=QUICK, n_models=4, seed=5, mode="vulnerable", top=5)    # every score, the games too
    calls = {"train": 0}
    real = E.train

    def counted(*a, **kw):
        calls["train"] += 1
        return real(*a, **kw)
    monkeypatch.setattr(E, "train", counted)
    shared: dict = {}
    together = audit_methods(template, train, test, forget=forget, retain=retain, methods=methods, shared=shared,
                             **settings)
    assert calls["train"] == 4 and sorted(shared) == ["baseline", "oracle", "original", "swap_original"]
    name = "finetune"                  # audited second: on the models the first audit trained and shared
    alone = audit(template, train, test, forget=forget, retain=retain, method=name, method_args=methods[name],
                  **settings)
    assert timeless(together[name]) == timeless(alone)
    assert together[name].verdict() == alone.verdict() and alone.summary()["vulnerable_top"] == 5.0


def timeless(result) -> str:
    """Every number of an audit but wall times (and RTE, a ratio of wall times)."""
    out = {k: v for k, v in result.to_dict().items() if k not in ("seconds", "summary", "verdict")}
    out["scores"] = {k: v for k, v in out["scores"].items() if k not in ("seconds", "rte")}
    out["summary"] = {k: v for k, v in result.summary().items() if "seconds" not in k and k != "rte"}
    return json.dumps(out)


def test_audit_methods_checks_every_method_before_training(small, monkeypatch):
    train, test, forget, retain, template = small
    monkeypatch.setattr(E, "train", lambda *a, **kw: pytest.fail("trained before checking"))
    with pytest.raises(ValueError, match="unknown argument"):
        audit_methods(template, train, test, forget=forget, retain=retain, recipe=QUICK, n_models=4,
                      methods={"identity": None, "finetune": {"not_an_argument": 1}})
    with pytest.raises(ValueError, match="empty dict"):
        audit_methods(template, train, test, forget=forget, retain=retain, recipe=QUICK, n_models=4,
                      methods={"identity": None}, shared={"original": None})


def test_audit_methods_refuses_shared_for_models_it_trains_one_by_one(monkeypatch):
    import torch

    from expunge.data import ArrayDataset

    images = ArrayDataset(torch.zeros(8, 1, 4, 4), torch.arange(8) % 2, task="generation")
    forget, retain = expunge.split_forget(images, classes=[1])
    monkeypatch.setattr(E, "train", lambda *a, **kw: pytest.fail("trained before checking"))
    with pytest.raises(ValueError, match="shared= applies to classifiers"):
        audit_methods(None, images, images, forget=forget, retain=retain, recipe=QUICK, n_models=4,
                      methods={"identity": None}, shared={})


def test_retrain_with_no_arguments_is_the_oracles_recipe(small):
    """In the audit, retrain runs from each original with that original's recorded recipe, which is the recipe the
    oracles are trained with, from a fresh initialisation of its own seed stream."""
    from expunge.methods.retrain import Retrain

    train, test, forget, retain, template = small
    originals = E.train(template, train, seeds=[0, 1], **QUICK)
    assert Retrain().recipe_for(originals.member(0)) == Recipe.from_dict(QUICK)
    retrained = E.unlearn(originals.members(), forget=forget, retain=retain, method="retrain", seeds=[0, 1])
    assert expunge.provenance(retrained.member(0)).recipe == expunge.provenance(originals.member(0)).recipe
    assert Retrain(epochs=1).recipe_for(originals.member(0)) != Recipe.from_dict(QUICK)


AUDIT_CONFIG = ROOT / "examples" / "digits_audit.yaml"


def test_method_override_must_bring_its_arguments():
    with pytest.raises(ValueError, match=r"method=retrain replaces the config's method finetune but would keep its "
                                         r"args .*args=\{\} for its defaults"):
        load_audit_config(AUDIT_CONFIG, ["method=retrain"])
    for given in (["method=retrain", "args={}"], ["method=retrain", "args=null"]):
        cfg, _ = load_audit_config(AUDIT_CONFIG, given)
        assert cfg.method == "retrain" and cfg.args == {}
    # one argument of its own would still keep finetune's learning rate, schedule and batch size
    with pytest.raises(ValueError, match=r"would keep its args \{'lr': 0.05, 'schedule': 'cosine', 'batch_size': 64\}"):
        load_audit_config(AUDIT_CONFIG, ["method=retrain", "args.epochs=5"])
    every = [f"args.{k}={v}" for k, v in (("epochs", 5), ("lr", 0.05), ("schedule", "cosine"), ("batch_size", 64))]
    cfg, _ = load_audit_config(AUDIT_CONFIG, ["method=retrain", *every])          # every key replaced: allowed
    assert cfg.args["epochs"] == 5
    cfg, _ = load_audit_config(AUDIT_CONFIG, ["method=retrain", "args={epochs: 5}"])   # its own arguments, whole
    assert cfg.args == {"epochs": 5}
    cfg, _ = load_audit_config(AUDIT_CONFIG, ["method=finetune"])                    # the file's own method
    assert cfg.args["epochs"] == 10
    cfg, _ = load_audit_config(AUDIT_CONFIG, ["method=identity", "args={}"])
    assert cfg.method == "identity"


def test_cli_refuses_method_override_without_arguments_in_one_line(tmp_path, capsys):
    from expunge.cli import main

    code = main(["audit", str(AUDIT_CONFIG), "method=retrain", "--out", str(tmp_path / "a"),
                 "--store", str(tmp_path / "s.db")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "args={}" in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "s.db").exists()


# --- the benchmark's core end to end, tiny ------------------------------------------------------------------------

def test_evidence_core_end_to_end_tiny():
    train, test = generated_classification(n=160, seed=0)
    forget, retain = expunge.split_forget(train, fraction=0.1, seed=0)
    template = expunge.model("mlp", train, hidden=[8])
    setup = {"name": "tiny", "description": "generated", "template": template, "train": train, "test": test,
             "forget": forget, "retain": retain, "recipe": dict(QUICK, epochs=2),
             "methods": {"identity": None, "finetune": {"epochs": 1, "lr": 0.01},
                         "random_label": {"epochs": 1, "lr": 0.01}, "retrain": None}}
    summary = ev.run(setup, n_models=4, repeats=1, iam_oracles=2, mode="standard", echo=lambda _: None)
    (row,) = summary["rows"]
    assert row["identity"]["unlearned_forget_acc"] == row["identity"]["original_forget_acc"]   # did nothing
    assert row["retrain"]["oracle_forget_acc"] == row["identity"]["oracle_forget_acc"]          # the same oracles
    assert set(summary["scores"]) == {s.key for s in ev.SCORES}
    for key, s in summary["scores"].items():
        assert set(s["values"]) == set(ev.METHODS)
        if "_efficacy_" in key or "_privacy_" in key:          # the vulnerable-sample games: not in the standard mode
            assert set(s["values"].values()) == {None} and s["power"] is None, key
            continue
        assert all(v is not None and math.isfinite(v) for v in s["values"].values()), key
        assert s["power"] in (0.0, 1.0) and s["calibration"] in (0.0, 1.0)
    band = row["retrain"]
    assert band["iam_band_oracles"] == 2.0 and band["iam_band_low"] <= band["iam_band_high"]
    assert summary["sharing"]["separate_over_shared"] > 1          # the shared trainings were trained once
