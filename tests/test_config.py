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
