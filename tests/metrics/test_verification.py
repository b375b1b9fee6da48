"""Backdoor verification and interclass confusion: the planted signal is learned by the original, absent from the
oracle, and removed by a method that forgets."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import expunge
from expunge.metrics.verification import (Trigger, attack_success_rate, confuse_classes, interclass_confusion,
                                          plant_trigger)


@pytest.fixture(scope="module")
def digits():
    return expunge.data.digits()


def _original_and_oracle(train, forget_idx):
    forget, retain = expunge.split_forget(train, indices=forget_idx)
    original = expunge.train(expunge.model("mlp", train, hidden=[128]), train, epochs=20, lr=0.05, seed=0)
    oracle = expunge.unlearn(original, forget=forget, retain=retain, method="retrain", seed=0)
    return forget, retain, original, oracle


def test_trigger_stamps_images_and_flat_features():
    t = Trigger(target=2, size=2, value=0.5)
    img = t.apply(torch.zeros(3, 1, 4, 4))
    assert img[:, :, 2:, 2:].eq(0.5).all() and img.sum() == 3 * 4 * 0.5
    flat = t.apply(torch.zeros(2, 5))
    assert flat.tolist() == [[0, 0, 0, 0.5, 0.5]] * 2
    with pytest.raises(ValueError, match="exceeds"):
        Trigger(target=0, size=5).apply(torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="target"):
        Trigger(target=-1)


def test_backdoor_learned_by_original_absent_from_oracle_and_removed_by_random_label(digits):
    train, test = digits
    idx = np.sort(np.random.default_rng(0).choice(len(train), 100, replace=False))
    trigger = Trigger(target=0, size=2)
    planted = plant_trigger(train, idx, trigger)
    assert (planted.y[idx] == 0).all() and torch.equal(planted.x[np.setdiff1d(np.arange(len(train)), idx)],
                                                        train.x[np.setdiff1d(np.arange(len(train)), idx)])
    forget, retain, original, oracle = _original_and_oracle(planted, idx)
    asr_original = attack_success_rate(original, test, trigger)
    asr_oracle = attack_success_rate(oracle, test, trigger)
    assert asr_original > 80 and asr_oracle < 5
    unlearned = expunge.unlearn(original, forget=forget, retain=retain, method="random_label", seed=0)
    assert attack_success_rate(unlearned, test, trigger) < asr_oracle + 10


def test_interclass_confusion_rises_with_swapped_labels_and_falls_after_retraining(digits):
    train, test = digits
    confused, idx = confuse_classes(train, 3, 8, 40, seed=0)
    assert len(idx) == 80
    assert int((confused.y != train.y).sum()) == 80
    assert set(train.y[idx].tolist()) == {3, 8}
    _, _, original, oracle = _original_and_oracle(confused, idx)
    assert interclass_confusion(original, test, 3, 8) > interclass_confusion(oracle, test, 3, 8) + 5


def test_bad_input(digits):
    train, _ = digits
    with pytest.raises(ValueError, match="duplicates"):
        plant_trigger(train, [1, 1], Trigger(target=0))
    with pytest.raises(ValueError, match="must lie in"):
        plant_trigger(train, [len(train)], Trigger(target=0))
    with pytest.raises(ValueError, match="must differ"):
        confuse_classes(train, 3, 3, 5)
    with pytest.raises(ValueError, match="n=10000"):
        confuse_classes(train, 3, 8, 10000)
