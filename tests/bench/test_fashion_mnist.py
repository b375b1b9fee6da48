"""Fashion-MNIST as the built-in dataset ``fashion_mnist`` in configs and bench grids: it runs end to end (on a small
folder of IDX files the test writes, standing in for Debian's package), its config errors name the key path, a
missing package is a one-line error naming the package and the command, and the Fashion-MNIST benchmark config
expands to its grid."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from expunge.bench import expand, load_bench, parse_bench
from expunge.bench import jobs
from expunge.cli import main
from expunge.config import ConfigError
from expunge.data import images

from ..test_image_loaders import REAL, write_fashion_folder
from .test_engines import outcomes
from .tiny import tiny, write_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """A folder of 200 training and 50 test images where the package puts its files; no cached data either side."""
    write_fashion_folder(tmp_path / "fm", n_train=200, n_test=50)
    monkeypatch.setattr(images, "FASHION_MNIST_ROOT", tmp_path / "fm")
    jobs._cached_data.cache_clear()
    yield tmp_path / "fm"
    jobs._cached_data.cache_clear()


def test_fashion_mnist_runs_as_a_builtin_bench_dataset(fake_package, tmp_path, store):
    cfg = write_config(tmp_path / "b.yaml", tiny(
        seeds=1, data={"name": "fashion_mnist", "args": {"subset": 150}},
        model={"name": "mlp", "args": {"hidden": [8]}},
        train={"epochs": 2, "lr": 0.05, "batch_size": 32},
        scenarios=[{"name": "random 10%", "fraction": 0.1}, {"name": "class 6", "classes": [6]}],
        methods={"finetune": {"epochs": 1, "lr": 0.05}}))
    spec = load_bench(cfg)
    assert spec.setups[0].data == {"name": "fashion_mnist", "args": {"subset": 150}}
    train, test = jobs.load_data(spec.setups[0].data, 0)
    assert (len(train), len(test)) == (150, 50)   # the package's own test set, whatever test_fraction says
    assert train.x.shape[1:] == (1, 28, 28) and train.class_names[6] == "Shirt"
    # one worker: the jobs run in this process, which sees the written folder in place of the package
    assert main(["bench", str(cfg), "--out", str(tmp_path / "o"), "--no-report", "--workers", "1"]) == 0
    oracles = {m["forget_size"] for kind, m, _ in outcomes(tmp_path / "o").values() if kind == "oracle"}
    assert oracles == {15.0, float((train.y == 6).sum())}


@pytest.mark.parametrize("data, path, message", [
    ({"name": "fashion_mnist", "test_fraction": 0.3}, "data.test_fraction", "comes with its own test set"),
    ({"name": "fashion_mnist", "args": {"subset": 70_000}}, "data.args.subset", "1..60,000"),
    ({"name": "fashion_mnist", "args": {"flat": True}}, "data.args.flat", "allowed: subset (default 60000)"),
])
def test_fashion_mnist_config_errors_name_the_key_path(data, path, message):
    with pytest.raises(ConfigError) as e:
        parse_bench(tiny(data=data))
    assert e.value.path == path and message in str(e.value)


def test_a_missing_package_names_the_package_and_the_command(tmp_path, monkeypatch, store, capsys):
    monkeypatch.setattr(images, "FASHION_MNIST_ROOT", tmp_path / "nowhere")
    jobs._cached_data.cache_clear()
    cfg = write_config(tmp_path / "b.yaml", tiny(data={"name": "fashion_mnist"}))
    assert main(["bench", str(cfg), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "config error at data:" in err
    assert "dataset-fashion-mnist" in err and "apt-get install -y dataset-fashion-mnist" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(not REAL, reason=f"Fashion-MNIST absent from {images.FASHION_MNIST_ROOT} "
                                     "(apt-get install -y dataset-fashion-mnist)")
def test_the_fashion_mnist_benchmark_expands_to_its_grid():
    jobs._cached_data.cache_clear()
    path = ROOT / "benchmarks" / "fashion_mnist.yaml"
    full = expand(load_bench(path))
    methods = {j.labels["method"] for j in full.jobs.values() if j.kind == "unlearn"}
    assert len(methods) >= 14 and "retrain" not in methods and "ct" not in methods
    counts = Counter(j.kind for j in full.jobs.values())
    assert counts["original"] == 3 and counts["select"] == 3
    assert counts["unlearn"] == len(methods) * 3 * 3 and counts["tune"] == len(methods) * 2
    quick = expand(load_bench(path, ["seeds=1", "tuning.trials=1", "summary=null"]))
    assert Counter(j.kind for j in quick.jobs.values())["unlearn"] == len(methods) * 3
    jobs._cached_data.cache_clear()
