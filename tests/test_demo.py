"""The demo's choice of model, its per-method arguments and the methods it skips."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from expunge.demo import classification_methods, run_demo

ROOT = Path(__file__).resolve().parents[1]


def test_conv_only_methods_are_skipped_on_the_mlp_and_run_on_the_cnn(tmp_path):
    with pytest.raises(ValueError, match="method 'ct' needs convolution layers; run it with --model cnn"):
        run_demo(tmp_path / "mlp", methods="ct,finetune", epochs=2)     # named on the MLP: refused before work
    assert not (tmp_path / "mlp").exists()
    cnn = run_demo(tmp_path / "cnn", methods="ct", model="cnn", epochs=2)
    assert cnn["methods"] == ["ct"] and not cnn["skipped"]
    rows = [r for comps in cnn["sections"].values() for c in comps for r in c.results]
    assert all(r.method == "ct" and r.scores for r in rows)


def test_unknown_model_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown demo model 'vit'"):
        run_demo(tmp_path, model="vit")
