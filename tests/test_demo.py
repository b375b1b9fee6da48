"""The demo's choice of model, its per-method arguments and the methods it skips."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from expunge.demo import classification_methods, run_demo
from expunge.presets import DIGITS, digits_args

ROOT = Path(__file__).resolve().parents[1]


def test_presets_are_the_digits_benchmarks_tuned_arguments():
    """The demo's arguments are exactly those the committed digits benchmark chose (no hand-set numbers)."""
    results = json.loads((ROOT / "benchmarks" / "results" / "digits.json").read_text())
    scenarios = {"random 10%": "random", "class 3": "class"}
    seen = 0
    for row in results["rows"]:
        kind = scenarios.get(row["scenario"])
        if kind and row.get("args"):
            assert digits_args(row["setup"].split("/")[-1], kind, row["method"]) == row["args"]
            seen += 1
    assert seen == sum(len(methods) for scenarios_ in DIGITS.values() for methods in scenarios_.values())
    assert set(DIGITS["cnn"]["random"]) == set(classification_methods())


def test_conv_only_methods_are_skipped_on_the_mlp_and_run_on_the_cnn(tmp_path):
    mlp = run_demo(tmp_path / "mlp", methods="ct,finetune", epochs=2)
    assert mlp["methods"] == ["finetune"] and "ct" in mlp["skipped"]
    cnn = run_demo(tmp_path / "cnn", methods="ct", model="cnn", epochs=2)
    assert cnn["methods"] == ["ct"] and not cnn["skipped"]
    rows = [r for comps in cnn["sections"].values() for c in comps for r in c.results]
    assert all(r.method == "ct" and r.scores for r in rows)


def test_unknown_model_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown demo model 'vit'"):
        run_demo(tmp_path, model="vit")
