"""Shared fixtures: a small generated classification task on which an MLP memorises its training data, so the
original model's forget accuracy (~98%) sits far above the oracle's (~77%)."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

import expunge
from expunge.data import generated_classification

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


@pytest.fixture(scope="session")
def task() -> Task:
    """Random 10% forgetting on the generated task."""
    return make_task()


@pytest.fixture(scope="session")
def classwise_task() -> Task:
    """Forgetting class 0 of the generated task."""
    return make_task(classes=[0])
