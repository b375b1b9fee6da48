"""The audit of language models and image generators through ``expunge.audit``: known answers (exact retraining sits
at its oracle-vs-oracle baseline, a model left as it was is told apart), the SWAP test formed for text and for a
class of images, the reports, bad input and the CLI."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

import expunge  # noqa: E402
from expunge.audit import audit, check_audit, write_audit_reports  # noqa: E402
from expunge.audit.report import text_summary  # noqa: E402
from expunge.audit.tasks import text_swap_request  # noqa: E402
from expunge.data.text import records_of  # noqa: E402
from expunge.cli import main  # noqa: E402

LM_RECIPE = dict(epochs=10, lr=1e-2, batch_size=24, warmup=0.05)
# one gradient-ascent step far too small to move any weight that matters: the originals as they were
LM_NOTHING = ("grad_ascent", {"epochs": 1, "lr": 1e-9})
GEN_NOTHING = ("gen_finetune", {"epochs": 1, "lr": 1e-12})
NO_ATTACK = {"attack": False, "samples_per_class": 2}
NAN = re.compile(r"\bnan\b", re.IGNORECASE)


@pytest.fixture(scope="module")
def qa():
    """The tiny question/answer task of tests/lm_helpers.py: 20 people x 3 facts trained, 3 people forgotten, 4
    held-out people (12 rows) as the non-members, and an untrained one-layer Llama-configuration model."""
    from expunge.lm import llama
    from tests.lm_helpers import qa_sets

    tok, data, holdout, forget, retain = qa_sets()
    return data, holdout, forget, retain, llama(tok, hidden=32, layers=1, heads=2, max_positions=64, seed=0)


def lm_audit(qa, method, args=None, k=4, **kw):
    data, holdout, forget, retain, template = qa
    return audit(template, data, holdout, forget=forget, retain=retain, method=method, method_args=args,
                 recipe=LM_RECIPE, n_models=k, **kw)


@pytest.fixture(scope="module")
def lm_audits(qa):
    return lm_audit(qa, "retrain", swap=False), lm_audit(qa, *LM_NOTHING)


def test_language_audit_known_answers(qa, lm_audits):
    exact, nothing = lm_audits
    e, n = exact.summary(), nothing.summary()
    assert exact.task == nothing.task == "language" and exact.tier == 0 and exact.n_models == 4
    # the originals learned the forget facts (answer-token accuracy), the oracles did not; the stand-in kept them
    assert n["original_forget_acc"] > n["oracle_forget_acc"] + 10
    assert abs(n["unlearned_forget_acc"] - n["original_forget_acc"]) < 0.5
    # exact retraining: every attack inside what its oracles give (the U-LiRA permutation band over models, the
    # held-out oracles' LiRA band); the challenge score is not below its baseline
    assert e["ulira_band_low"] <= e["ulira_auc"] <= e["ulira_band_high"] and e["ulira_auc"] < 0.8
    assert e["challenge_forget_quality"] > e["challenge_baseline_forget_quality"] - 0.1
    assert e["lira_auc"] <= e["lira_oracle_auc_high"] and e["lira_auc"] < e["lira_oracle_auc"] + 0.3
    assert "not distinguishable" in exact.verdict()
    # φ on retain is kept on a sample of the test set's size (the retain leakage's), accuracy on every row
    data, holdout, forget, retain, _ = qa
    assert exact.sizes["retain_sample"] == len(holdout) < len(retain)
    # the model left as it was: every attack sees it
    assert n["ulira_auc"] > 0.9 and n["ulira_accuracy"] > 0.85
    assert n["challenge_forget_quality"] < n["challenge_baseline_forget_quality"] - 0.1
    assert n["lira_auc"] > n["lira_oracle_auc"] + 0.3
    assert "DISTINGUISHABLE" in nothing.verdict()
    # the same originals, oracles and baseline oracles in both audits (same seeds): their numbers agree
    assert e["ulira_baseline_auc"] == n["ulira_baseline_auc"] and e["oracle_forget_acc"] == n["oracle_forget_acc"]


def test_per_model_accuracy_is_over_the_whole_split_and_phi_over_the_sample():
    from expunge.audit.tasks import _group_phi

    rows = np.arange(6.0)
    score = lambda model, data: (rows * model, np.array([1, 0, 0, 0, 0, 1]) * 100.0)
    phi, acc = _group_phi([1.0, 2.0], {"retain": None, "test": None}, score, {"retain": np.array([0, 5])})
    assert phi["retain"].tolist() == [[0.0, 5.0], [0.0, 10.0]] and phi["test"].shape == (2, 6)
    assert acc["retain"].tolist() == [100 / 3, 100 / 3]          # 2 of 6 rows right, not 2 of the 2 sampled


def test_language_swap_test_is_formed_from_held_out_people(qa, lm_audits):
    exact, nothing = lm_audits
    assert exact.advantage is None and "switched off" in exact.swap_note
    a = nothing.advantage
    assert nothing.swap_note is None and a.n_forget == nothing.sizes["swap_examples"] == 9
    assert a.kept.value > 0.5 and a.method.value > 0.5 and a.scaled.value > 0.7   # kept the data: near 1
    data, holdout, forget, retain, _ = qa
    request = text_swap_request(forget, retain, holdout, seed=0)
    b = [holdout.records[i] for i in request.test_positions]
    people = {r["author"] for r in b}
    assert len(b) == 9 and len(people) == 3                   # whole held-out people, as many as fit in |A| = 9
    assert all(sum(r["author"] == p for r in b) == 3 for p in people)
    assert len(request.forget_positions) == 9 and len(set(request.forget_positions.tolist())) == 9
    assert request.train.records == records_of(retain) + b
    assert len(request.retain) == len(retain) and len(request.forget) == 9


def test_language_reports(tmp_path, lm_audits):
    nothing = lm_audits[1]
    paths = write_audit_reports(nothing, tmp_path, title="t")
    md, page = paths["md"].read_text(), paths["html"].read_text()
    for text in (md, page, text_summary(nothing)):
        assert "Language models: φ is the logit" in text and not NAN.search(text)
    assert "answer-token accuracy" in md and "| group |" in md
    assert "PrivLeak" in md and "Calibrated advantage (SWAP test)" in md
    data = json.loads(paths["json"].read_text())
    assert data["task"] == "language" and data["sizes"]["test"] == 12 and data["iam"] is None


@pytest.fixture(scope="module")
def digits_small():
    """Digits 0-3 for generators, every sixth training image (96), class 1 forgotten; the held-out images of
    digits 0-3 as test."""
    pytest.importorskip("diffusers")
    from expunge.data import ArrayDataset, for_generation, split_forget

    train, test = expunge.data.digits()
    train, test = for_generation(train), for_generation(test)
    keep = np.flatnonzero(train.y.numpy() < 4)[::6]
    data = ArrayDataset(train.x[keep], train.y[keep], task="generation", name="digits-0-3-small")
    held = test.y < 4
    test = ArrayDataset(test.x[held], test.y[held], task="generation", name="digits-0-3 test")
    forget, retain = split_forget(data, classes=[1])
    return data, test, forget, retain


DIFFUSION_RECIPE = dict(epochs=2, lr=5e-3, batch_size=32, optimizer="adam", weight_decay=0.0, schedule="cosine",
                        warmup=0.0, clip_grad_norm=1.0)


def gen_audit(digits_small, template, method, args=None, recipe=DIFFUSION_RECIPE, k=4, **kw):
    data, test, forget, retain = digits_small
    return audit(template, data, test, forget=forget, retain=retain, method=method, method_args=args, recipe=recipe,
                 n_models=k, scoring=NO_ATTACK, **kw)


def test_diffusion_audit_known_answers(digits_small):
    """One audit of a model left as it was: its baseline rows are exact retraining's known answer (K further
    oracles scored against the K oracles, what ``retrain`` scores), and the stand-in is told apart from them."""
    from tests.gen_helpers import tiny_unet

    r = gen_audit(digits_small, tiny_unet(), *GEN_NOTHING, swap=False)
    n = r.summary()
    assert r.task == "generation" and r.accuracies == {}
    # class-wise request: the non-members are the held-out images of class 1; the leakage uses the others
    data, test, forget, retain = digits_small
    n_class = int((test.y == 1).sum())
    assert r.sizes["test"] == n_class and r.sizes["test_retained_classes"] == len(test) - n_class
    # oracles against oracles: U-LiRA near chance
    assert abs(n["ulira_baseline_auc"] - 0.5) < 0.2
    # kept the class: its training images' denoising errors are the originals', far from the oracles'
    assert n["ulira_auc"] > n["ulira_baseline_auc"] + 0.25 and n["ulira_auc"] > 0.85
    assert n["challenge_forget_quality"] < n["challenge_baseline_forget_quality"] - 0.1
    assert "challenge_final" not in n and "challenge_retain_ratio" not in n and "challenge_test_ratio" not in n
    assert "DISTINGUISHABLE" in r.verdict()
    # φ's direction (higher = more like a training example): models that kept the class denoise its training images
    # better than oracles that never saw it, on nearly every image
    assert np.mean(r.examples["phi_unlearned"] > r.examples["phi_oracle"]) > 0.9


def test_exact_retraining_of_a_class_is_not_distinguishable(digits_small):
    """Exact retraining of digit 1, K = 8: the forget images move together (one class), so an audit can swing far
    from its baseline by chance: at this seed the oracles' own U-LiRA AUC is 0.37 and retraining's 0.46, 0.1 apart,
    twice the margin a rule treating the model-example pairs as independent allows. The permutation band over models
    holds it (and the same audit of a model left as it was is flagged, test_diffusion_audit_known_answers)."""
    from expunge.verdict import auc_margin
    from tests.gen_helpers import tiny_unet

    r = gen_audit(digits_small, tiny_unet(), "retrain", k=8, seed=3, swap=False)
    s = r.summary()
    pairs_margin = auc_margin(8 * r.sizes["forget"] / 2, 8 * r.sizes["forget"] / 2)
    assert s["ulira_auc"] - s["ulira_baseline_auc"] > pairs_margin         # what the margin alone would flag
    assert s["ulira_auc"] < s["ulira_band_high"]
    assert "DISTINGUISHABLE" not in r.verdict() and "not distinguishable" in r.verdict()


def test_gan_audit_with_swap_and_vulnerable_mode_renders(tmp_path, digits_small):
    """A GAN left as it was (2 epochs on 96 images: it memorises), audited with the SWAP test in vulnerable mode."""
    from expunge.gen.gan import gan

    r = gen_audit(digits_small, gan(4, size=8, width=16, seed=0), *GEN_NOTHING, recipe=dict(epochs=2, lr=1e-3),
                  mode="vulnerable", top=5)
    data, test, forget, retain = digits_small
    assert r.swap_note is None and r.sizes["swap_examples"] == min(len(forget), int((test.y == 1).sum()))
    assert r.vulnerable is not None and r.vulnerable.top == 5
    assert np.all(r.examples["label"] == 1) and len(r.examples["epsilon"]) == len(forget)
    paths = write_audit_reports(r, tmp_path, title="gan")
    md = paths["md"].read_text()
    assert "Image generators: φ is minus the denoising error" in md and "one run each): final score" not in md
    assert "| class |" in md and "UA %" in md and not NAN.search(md)
    assert "Vulnerable-sample audit" in md and "Calibrated advantage (SWAP test)" in md
    data_json = json.loads(paths["json"].read_text())
    assert data_json["task"] == "generation" and data_json["accuracies"] == {}
    # φ's direction (the discriminator's logit, higher = more like a training example): the generators that kept
    # digit 1 rate its training images higher than the oracles do, and tier-1 LiRA tells the audited model's training
    # images of digit 1 from held-out ones beyond what held-out oracles reach
    s = r.summary()
    assert np.mean(r.examples["phi_unlearned"] > r.examples["phi_oracle"]) > 0.9
    assert s["lira_auc"] > 0.6 and s["lira_auc"] > s["lira_oracle_auc_high"] > s["lira_oracle_auc"]


@pytest.mark.parametrize("case, message", [
    ("classification method on text", "method 'finetune' supports classification, regression tasks; the data is "
                                      "language"),
    ("language method on images", "method 'npo' supports language tasks; the data is generation"),
    ("one-step generator", "method 'sfd' distils a one-step generator"),
    ("method for another generator", "method 'adapt_unlearn' unlearns gan models; this is a diffusion model"),
    ("one test row", "test has 1 example(s); the audit's attacks need at least 2"),
    ("no test image of the class", "test has 0 image(s) of the forgotten classes [1]"),
    ("test of another task", "every set of one task (train is language data); test is a classification dataset"),
    ("another tokenizer", "must be encoded with one tokenizer"),
    ("scoring on a classifier", "scoring= applies to the language and generation audits"),
    ("scoring sets the seed", "scoring cannot set 'seed': the audit gives evaluate its seed"),
    ("scoring sets the reference", "scoring cannot set 'reference'"),
    ("scoring value out of range", "scoring.samples_per_class: expected an integer >= 2; got 1"),
    ("scoring key of another task", "scoring: max_examples applies to language data; this is generation data"),
    ("scoring key unknown", "scoring.bogus: unknown key"),
    ("swapped rows cut to nothing", "the SWAP test's swapped training set cannot be encoded"),
])
def test_bad_input_is_refused_before_training(qa, digits_small, case, message):
    from expunge.data import ArrayDataset, TextDataset, generated_classification
    from tests.gen_helpers import tiny_unet
    from tests.lm_helpers import facts, tokenizer

    data, holdout, forget, retain, template = qa
    g_data, g_test, g_forget, g_retain = digits_small
    text = dict(train=data, test=holdout, forget=forget, retain=retain, template=template, method="retrain",
                scoring={"max_examples": 8})
    images = dict(train=g_data, test=g_test, forget=g_forget, retain=g_retain, template=tiny_unet(),
                  method="retrain", scoring=NO_ATTACK)
    # text data encoded to its longest row, and held-out rows whose questions alone are longer than that
    fit = TextDataset(records_of(data), data.tokenizer, max_length=data.x.shape[1], groups=data.groups)
    fit_forget, fit_retain = expunge.split_forget(fit, where=lambda person: np.isin(person, (0, 1, 2)))
    wordy = [dict(r, question=r["question"] + " Tell me" * 40) for r in holdout.records]
    kw = {"classification method on text": dict(text, method="finetune"),
          "language method on images": dict(images, method="npo"),
          "one-step generator": dict(images, method="sfd"),
          "method for another generator": dict(images, method="adapt_unlearn"),
          "one test row": dict(text, test=holdout.__class__(holdout.records[:1], holdout.tokenizer)),
          "no test image of the class": dict(images, test=ArrayDataset(g_test.x[g_test.y != 1], g_test.y[g_test.y != 1],
                                                                      task="generation")),
          "test of another task": dict(text, test=generated_classification(n=40, seed=0)[1]),
          "another tokenizer": dict(text, test=TextDataset(holdout.records, tokenizer(facts(seed=1)[:30]))),
          "scoring sets the seed": dict(text, scoring={"seed": 3}),
          "scoring sets the reference": dict(images, scoring={"reference": None}),
          "scoring value out of range": dict(images, scoring={"samples_per_class": 1}),
          "scoring key of another task": dict(images, scoring={"max_examples": 5}),
          "scoring key unknown": dict(text, scoring={"bogus": 1}),
          # B's rows fit their own encoding, not retain's max_length, which retain ∪ B is encoded with
          "swapped rows cut to nothing": dict(text, train=fit, forget=fit_forget, retain=fit_retain,
                                              test=TextDataset(wordy, holdout.tokenizer,
                                                               groups=[r["author"] for r in wordy])),
          }.get(case)
    if case == "scoring on a classifier":
        train, test = generated_classification(n=100, seed=0)
        f, r = expunge.split_forget(train, fraction=0.1, seed=0)
        kw = dict(train=train, test=test, forget=f, retain=r, template=expunge.model("mlp", train), method="retrain",
                  scoring={"max_examples": 3})
        # asking a classifier audit for IAM, which it always reports, is accepted
        check_audit(kw["template"], train, test, recipe={}, n_models=4, scoring={"evidence": "iam"},
                    **{k: v for k, v in kw.items() if k not in ("template", "train", "test", "scoring")})
    template, train, test = kw.pop("template"), kw.pop("train"), kw.pop("test")
    with pytest.raises((ValueError, TypeError)) as e:
        check_audit(template, train, test, recipe={}, n_models=4, **kw)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_second_load_of_the_same_tokenizer_is_accepted(qa):
    """Tokenizers are compared by vocabulary, not by object: the same tokenizer built twice is one tokenizer."""
    from expunge.data import TextDataset
    from tests.lm_helpers import facts, tokenizer

    data, holdout, forget, retain, template = qa
    again = TextDataset(holdout.records, tokenizer(facts()), groups=holdout.groups)
    assert again.tokenizer is not data.tokenizer
    args, _ = check_audit(template, data, again, forget=forget, retain=retain, method="retrain", recipe={},
                          n_models=4)
    assert args == {}


TINY_AUTHORS = ["data.args.n_authors=6", "data.args.attributes=2", "data.args.world_facts=4",
                "data.args.vocab_size=300", "data.args.holdout_fraction=0.5", "model.args.hidden=16",
                "model.args.layers=1", "model.args.heads=2",
                "train.epochs=2", "args.epochs=1", "audit.swap=false", "scoring.max_examples=8"]


def test_cli_audits_a_language_config(tmp_path, store, capsys):
    out = tmp_path / "audit"
    assert main(["audit", "examples/authors_audit.yaml", *TINY_AUTHORS, "--models", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Language models: φ is the logit" in printed and "U-LiRA accuracy" in printed
    assert "SWAP test not run: switched off" in printed and "Verdict (tier 0)" in printed
    data = json.loads((out / "audit.json").read_text())
    assert data["task"] == "language" and data["method"] == "npo" and data["n_models"] == 2
    assert data["sizes"]["test"] == 12 and (out / "audit.html").stat().st_size > 0
    run_id = printed.strip().split()[-1].rstrip(").")
    assert main(["runs", "show", run_id]) == 0
    assert "(audit, FINISHED)" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["examples/digits_gan_audit.yaml", "method=npo", "args={}"], "method 'npo' supports language tasks"),
    (["examples/digits_gan_audit.yaml", "method=sfd", "args={}"], "method 'sfd' distils a one-step generator"),
    (["examples/authors_audit.yaml", "method=finetune", "args={}"], "method 'finetune' supports classification"),
    (["examples/authors_audit.yaml", "audit.n_models=1"], "config error at audit.n_models"),
    (["examples/digits_gan_audit.yaml", "scoring.samples_per_class=1"], "scoring.samples_per_class"),
])
def test_cli_bad_task_input_is_one_line_and_exit_2(tmp_path, store, capsys, argv, message):
    from tests.test_audit import assert_cli_audit_refuses

    assert_cli_audit_refuses(argv, message, tmp_path, store, capsys)
