"""Experiment configs: parsing, overrides and errors naming the key path."""
from __future__ import annotations

import pytest

from expunge.config import ConfigError, apply_overrides, load_config, parse_config

BASE = {"data": {"name": "digits"}, "forget": {"fraction": 0.1}, "method": "finetune", "args": {"epochs": 2}}


def test_example_config_loads_with_overrides():
    cfg = load_config("examples/digits_finetune.yaml", ["args.lr=0.02", "train.epochs=3", "seed=4"])
    assert cfg.args["lr"] == 0.02 and cfg.train.epochs == 3 and cfg.seed == 4 and cfg.method == "finetune"


@pytest.mark.parametrize("change, path", [
    ({"data": {"name": "cifar100"}}, "data.name"),
    ({"data": {"name": "digits", "test_fraction": 2}}, "data.test_fraction"),
    ({"data": {"name": "digits", "colour": 1}}, "data.colour"),
    ({"data": {"npz": "missing.npz"}}, "data.npz"),
    ({"model": {"name": "vgg"}}, "model.name"),
    ({"train": {"lr": -1}}, "train.lr"),
    ({"train": {"learning_rate": 0.1}}, "train.learning_rate"),
    ({"forget": {"fraction": 1.5}}, "forget.fraction"),
    ({"forget": {"classes": "three"}}, "forget.classes"),
    ({"forget": {}}, "forget"),
    ({"method": "unknown_method"}, "method"),
    ({"args": {"epochs": "many"}}, "args.epochs"),
    ({"args": {"nope": 1}}, "args"),
    ({"seed": -1}, "seed"),
    ({"extra": 1}, "extra"),
])
def test_errors_name_the_key_path(change, path):
    raw = {**BASE, **change}
    with pytest.raises(ConfigError, match=f"config error at {path}:"):
        parse_config(raw)


def test_missing_sections():
    with pytest.raises(ConfigError, match="at data: is required"):
        parse_config({"forget": {"fraction": 0.1}})


def test_override_syntax():
    assert apply_overrides({"a": {"b": 1}}, ["a.c=[1, 2]"]) == {"a": {"b": 1, "c": [1, 2]}}
    with pytest.raises(ValueError, match="key=value"):
        apply_overrides({}, ["oops"])


def test_numbers_read_as_written_in_files_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: {name: digits}\nforget: {fraction: 1e-1}\ntrain: {lr: 5e-2, epochs: 3}\n"
                    "method: finetune\nargs: {lr: 1E-3, epochs: 2}\n")
    cfg = load_config(path, ["args.weight_decay=5e-4"])
    assert cfg.forget["fraction"] == 0.1 and cfg.train.lr == 0.05 and cfg.args["lr"] == 0.001
    assert cfg.args["weight_decay"] == 0.0005 and isinstance(cfg.args["weight_decay"], float)


def test_standardise_option_fits_on_the_training_split_only(tmp_path):
    import numpy as np

    from expunge.experiment import load_data

    rows = ["a,b,y"] + [f"{100 + 10 * i},{i % 3},{i * 0.5}" for i in range(40)]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    for how, feats, targ in (("features", True, False), ("both", True, True), ("targets", False, True)):
        cfg = parse_config({**BASE, "data": {"csv": "d.csv", "target": "y", "standardise": how}}, base_dir=tmp_path)
        train, test = load_data(cfg.data, seed=0)
        raw_train, raw_test = load_data({**cfg.data, "standardise": "none"}, seed=0)
        for part, wanted in (("x", feats), ("y", targ)):
            a, ra, rt = getattr(train, part).numpy(), getattr(raw_train, part).numpy(), getattr(raw_test, part).numpy()
            if not wanted:
                assert np.array_equal(a, ra)
                continue
            assert np.allclose(a.mean(0), 0, atol=1e-5) and np.allclose(a.std(0), 1, atol=1e-4)
            mean, std = ra.mean(0), ra.std(0)           # the test split uses the training split's statistics
            assert np.allclose(getattr(test, part).numpy(), (rt - mean) / std, atol=1e-4)
    assert parse_config({**BASE, "data": {"name": "digits", "standardise": True}}).data["standardise"] == "features"


@pytest.mark.parametrize("name", ["../outside", "a/b", "..", ".hidden", "x" * 200])
def test_run_names_cannot_leave_the_output_folder(name):
    with pytest.raises(ConfigError, match="config error at name"):
        parse_config({**BASE, "name": name})
    assert parse_config({**BASE, "name": "digits run 1.v2"}).name == "digits run 1.v2"


def test_scoring_evidence_iam_is_taken_for_classifiers_and_refused_elsewhere():
    assert parse_config({**BASE, "scoring": {"evidence": "iam"}}).scoring == {"evidence": "iam"}
    with pytest.raises(ConfigError, match=r"config error at scoring.evidence: expected iam \(IAM: .*got 'lira'"):
        parse_config({**BASE, "scoring": {"evidence": "lira"}})
    text = {"data": {"name": "authors"}, "forget": {"group_fraction": 0.05}, "method": "npo"}
    with pytest.raises(ConfigError, match=r"at scoring.evidence: IAM scores classifiers \(it reads the true-label "
                                          r"probability\); the data is language data"):
        parse_config({**text, "scoring": {"evidence": "iam"}})
    images = {"data": {"name": "digits", "generation": True}, "forget": {"classes": [3]}, "method": "retrain"}
    with pytest.raises(ConfigError, match="at scoring.evidence: IAM scores classifiers .*the data is generation data"):
        parse_config({**images, "scoring": {"evidence": "iam"}})


def test_a_method_override_must_bring_its_own_arguments():
    """``expunge run CONFIG method=retrain`` would keep finetune's epochs and lr: not the retraining it names."""
    with pytest.raises(ValueError, match=r"method=retrain replaces the config's method finetune but would keep its "
                                         r"args \{'epochs': 10, 'lr': 0.05\}"):
        load_config("examples/digits_finetune.yaml", ["method=retrain"])
    with pytest.raises(ValueError, match=r"keep its args \{'lr': 0.05\}"):
        load_config("examples/digits_finetune.yaml", ["method=retrain", "args.epochs=5"])
    assert load_config("examples/digits_finetune.yaml", ["method=retrain", "args={}"]).args == {}
    kept = load_config("examples/digits_finetune.yaml", ["method=finetune", "args.epochs=3"])
    assert kept.method == "finetune" and kept.args == {"epochs": 3, "lr": 0.05}
