"""Shared fixtures: a small generated classification task on which an MLP memorises its training data, so the
original model's forget accuracy (~98%) sits far above the oracle's (~77%); and, for methods that need
convolutions, 300 scikit-learn digits with 20% of the labels flipped, which a small CNN memorises (forget accuracy
100%) and its oracle does not (~77%)."""
from __future__ import annotations

from dataclasses import dataclass

import os
import tempfile

import pytest
import torch

# judges of generated images (expunge.gen.judge) are cached on disk: keep the tests' cache out of the user's home
os.environ.setdefault("EXPUNGE_CACHE", tempfile.mkdtemp(prefix="expunge-test-cache-"))

import expunge  # noqa: E402
from expunge.data import ArrayDataset, digits, generated_classification  # noqa: E402

torch.set_num_threads(1)


@dataclass
class Task:
    train: object
    test: object
    forget: object
    retain: object
    original: torch.nn.Module
    oracle: torch.nn.Module


def make_task(**split) -> Task:
    train, test = generated_classification(n=800, seed=0)
    forget, retain = expunge.split_forget(train, **(split or {"fraction": 0.1}), seed=0)
    original = expunge.train(expunge.model("mlp", train, hidden=[128]), train, epochs=40, lr=0.05, seed=0)
    oracle = expunge.unlearn(original, forget=forget, retain=retain, method="retrain", seed=0)
    return Task(train, test, forget, retain, original, oracle)


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A run store of the test's own (``$EXPUNGE_STORE``), so CLI runs never touch the user's."""
    path = tmp_path / "runs.db"
    monkeypatch.setenv("EXPUNGE_STORE", str(path))
    return path


@pytest.fixture(scope="session")
def task() -> Task:
    """Random 10% forgetting on the generated task."""
    return make_task()


@pytest.fixture(scope="session")
def classwise_task() -> Task:
    """Forgetting class 0 of the generated task."""
    return make_task(classes=[0])


def make_cnn_task(n: int = 300, noise: float = 0.2) -> Task:
    """Random 10% forgetting on ``n`` digits (1x8x8) whose labels are flipped to another class with probability
    ``noise``, and a small CNN (width 16) trained on them long enough to memorise the flipped labels."""
    train, test = digits(seed=0)
    g = torch.Generator().manual_seed(0)
    y = train.y[:n].clone()
    flip = torch.rand(n, generator=g) < noise
    y[flip] = (y[flip] + torch.randint(1, 10, (int(flip.sum()),), generator=g)) % 10
    train = ArrayDataset(train.x[:n], y, task="classification", name="noisy-digits/train")
    forget, retain = expunge.split_forget(train, fraction=0.1, seed=0)
    original = expunge.train(expunge.model("cnn", train, width=16), train, epochs=100, lr=0.05, seed=0)
    oracle = expunge.unlearn(original, forget=forget, retain=retain, method="retrain", seed=0)
    return Task(train, test, forget, retain, original, oracle)


@pytest.fixture(scope="session")
def cnn_task() -> Task:
    """Random 10% forgetting on noisy digits with a small CNN (for methods that need convolution layers)."""
    return make_cnn_task()


def make_digits_classwise_task(forget_class: int = 0) -> Task:
    """Forgetting one digit of scikit-learn's digits with the default MLP (real data, class-wise)."""
    train, test = digits(seed=0)
    forget, retain = expunge.split_forget(train, classes=[forget_class])
    original = expunge.train(expunge.model("mlp", train), train, seed=0)
    oracle = expunge.unlearn(original, forget=forget, retain=retain, method="retrain", seed=0)
    return Task(train, test, forget, retain, original, oracle)


@pytest.fixture(scope="session")
def digits_classwise_task() -> Task:
    """Forgetting the digit 0 of scikit-learn's digits, default MLP."""
    return make_digits_classwise_task()
