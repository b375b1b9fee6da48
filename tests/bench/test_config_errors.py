"""Bench config and command-line errors: one line naming the key path (or the bad option), exit code 2."""
from __future__ import annotations

import sys

import pytest

from expunge.bench import parse_bench
from expunge.cli import main
from expunge.config import ConfigError
from expunge.store import RunStore

from .tiny import tiny, write_config


@pytest.mark.parametrize("changes, path", [
    ({"seeds": 0}, "seeds"),
    ({"seeds": [0, "a"]}, "seeds[1]"),
    ({"data": [{"name": "classification"}, {"name": "nope"}]}, "data[1].name"),
    ({"model": [{"name": "mlp"}, {"name": "mlp", "args": {}, "train": {"lr": -1}}]}, "model[1].train.lr"),
    ({"train": {"epochs": 4, "optimizer": "nadam"}}, "train.optimizer"),
    ({"scenarios": [{"fraction": 0.1}, {"fraction": 2}]}, "scenarios[1].fraction"),
    ({"scenarios": [{"classes": [0], "seed": 3}]}, "scenarios[0].seed"),
    ({"scenarios": [{"fraction": 0.1, "classes": [0]}]}, "scenarios[0]"),
    ({"scenarios": [{"fraction": 0.1, "colour": "red"}]}, "scenarios[0].colour"),
    ({"scenarios": [{"worst_case": {"fraction": 0.1, "method": "nope"}}]}, "scenarios[0].worst_case.method"),
    ({"methods": ["finetune", "nope"]}, "methods.nope"),
    ({"methods": {"finetune": {"lr": "fast"}}}, "methods.finetune.lr"),
    ({"methods": ["sisa"]}, "methods.sisa"),
    ({"args": {"finetune": {"momentum": "x"}}}, "args.finetune.momentum"),
    ({"args": {"nope": {}}}, "args.nope"),
    ({"tuning": {"space": {"finetune": {"colour": [1]}}}}, "tuning.space.finetune.colour"),
    ({"exclude": ["nope"]}, "exclude"),
    ({"tuning": {"bogus": 1}}, "tuning.bogus"),
    ({"colour": 1}, "colour"),
])
def test_errors_name_the_key_path(changes, path):
    with pytest.raises(ConfigError) as e:
        parse_bench(tiny(**changes))
    assert e.value.path == path
    assert str(e.value).startswith(f"config error at {path}: ")


@pytest.mark.parametrize("argv, message", [
    (["seeds=0"], "config error at seeds:"),
    (["methods.finetune.lr=fast"], "config error at methods.finetune.lr:"),
    (["--engine", "nope"], "unknown engine 'nope'"),
    (["--engine", "dask"], "needs the scheduler's address"),
    (["--workers", "0"], "workers must be an integer >= 1"),
    (["--address", "tcp://x:1"], "--address is for the dask and ray engines"),
])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, store, capsys, argv, message):
    cfg = write_config(tmp_path / "b.yaml", tiny())
    assert main(["bench", str(cfg), "--out", str(tmp_path / "o"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "o").exists()
    with RunStore(store) as db:
        assert db.runs() == []                  # nothing recorded either


def test_ray_engine_missing_says_how_to_install(tmp_path, store, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)   # import ray now raises ImportError, installed or not
    cfg = write_config(tmp_path / "b.yaml", tiny())
    assert main(["bench", str(cfg), "--out", str(tmp_path / "o"), "--engine", "ray"]) == 2
    assert "pip install 'expunge[ray]'" in capsys.readouterr().err


def test_report_and_compare_bad_targets(tmp_path, store, capsys):
    assert main(["report", "nosuchrun"]) == 2
    assert "no run with id" in capsys.readouterr().err
    (tmp_path / "plain").mkdir()
    assert main(["runs", "compare", str(tmp_path / "plain"), "x"]) == 2
    assert "not a bench directory" in capsys.readouterr().err
