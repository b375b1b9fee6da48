"""Presets keyed by what they were tuned on, the line saying when none fits, and quick tuning (--tune, args: auto)."""
from __future__ import annotations

import ast
import importlib.util
import json
from pathlib import Path

import pytest
import yaml

import expunge
from expunge import presets
from expunge.cli import main
from expunge.config import ConfigError, load_config, parse_config
from expunge.data import digits, generated_classification
from expunge.demo import RECIPE, _method_args, classification_methods
from expunge.experiment import run_experiment
from expunge.presets_data import PRESETS
from expunge.provenance import provenance
from expunge.store import RunStore
from expunge.tuning import MAX_TRIALS, QUICK_TRIALS, quick_budget, tuning_set

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = {"random 10%": "random", "class 3": "class", "worst-case 10%": "worst_case"}


@pytest.fixture(scope="module")
def digits_train():
    return digits(seed=0)[0]


def digits_setup(train, scenario: str, hidden=(128, 64), **recipe):
    model = expunge.model("mlp", train, hidden=list(hidden))
    return presets.setup_of(model, train, scenario, dict(RECIPE, **recipe))


def test_the_digits_mlp_finds_the_digits_benchmarks_arguments(digits_train):
    """Every preset argument is what the committed digits benchmark chose for that setup and scenario."""
    results = json.loads((ROOT / "benchmarks" / "results" / "digits.json").read_text())
    seen = 0
    for row in results["rows"]:
        kind = SCENARIOS.get(row["scenario"])
        if kind and row.get("tuned") and row["setup"] == "digits/mlp":
            args, note = presets.method_args(digits_setup(digits_train, kind), row["method"])
            assert args == row["args"] and note is None
            seen += 1
    assert seen == sum(len(p.args) for p in PRESETS if "mlp" in p.label) > 30
    cnn = presets.setup_of(expunge.model("cnn", digits_train, width=16), digits_train, "random", RECIPE)
    assert set(presets.find(cnn).args) == set(classification_methods())


def test_a_wider_mlp_finds_no_preset_and_says_so_in_one_line(digits_train):
    setup = digits_setup(digits_train, "class", hidden=(512, 256))
    assert presets.find(setup) is None
    args, note = presets.method_args(setup, "neggrad_plus")
    assert args == {}
    assert "\n" not in note and note.startswith("neggrad_plus: no preset fits")
    assert "Linear(512x64, 512) instead of Linear(128x64, 128)" in note and "paper defaults" in note
    deeper = digits_setup(digits_train, "class", hidden=(128, 64, 32))
    assert presets.find(deeper) is None and "architecture" in presets.describe(deeper)


def test_another_recipe_or_dataset_finds_no_preset(digits_train):
    shorter = digits_setup(digits_train, "random", epochs=2)
    assert presets.find(shorter) is None
    assert "recipe epochs=2 instead of 30" in presets.describe(shorter)
    other, _ = generated_classification(n=300, seed=0)
    setup = presets.setup_of(expunge.model("mlp", other, hidden=[128, 64]), other, "random", RECIPE)
    assert presets.find(setup) is None and "data classification/train (225 rows)" in presets.describe(setup)
    with pytest.raises(ValueError, match="scenario 'classwise' is not allowed"):
        presets.setup_of(expunge.model("mlp", other), other, "classwise", RECIPE)


def test_the_generator_script_reproduces_the_committed_table():
    """``benchmarks/presets_from_digits.py`` writes the keyed table from digits.json; the committed one is its
    output."""
    spec = importlib.util.spec_from_file_location("presets_from_digits", ROOT / "benchmarks" / "presets_from_digits.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    table = script.presets(script.load_bench(script.CONFIG), json.loads(script.RESULTS.read_text()))
    assert tuple(table) == PRESETS
    namespace: dict = {}
    exec(compile(script.HEADER.replace("from .presets", "from expunge.presets")
                 + "PRESETS = (\n" + "".join(script.literal(p) for p in table) + ")\n", "generated", "exec"),
         namespace)
    assert namespace["PRESETS"] == PRESETS


def test_the_demo_says_when_no_preset_fits(digits_train):
    """``--epochs 1`` changes the recipe: one line per scenario says so, and the methods get their paper defaults."""
    original = expunge.train(expunge.model("mlp", digits_train, hidden=[128, 64]), digits_train,
                             **dict(RECIPE, epochs=1))
    forget, _ = expunge.split_forget(digits_train, classes=[3])
    lines: list[str] = []
    args = _method_args(["finetune", "neggrad_plus"], original, digits_train, None, forget, "class", "[class 3]",
                        None, 0, [], lines.append)
    assert args == {"finetune": {}, "neggrad_plus": {}}
    assert lines == [f"  [class 3] {presets.no_preset_note(presets.setup_of(original, digits_train, 'class'))}"]
    assert "epochs=1 instead of 30" in lines[0]
    full = expunge.train(expunge.model("mlp", digits_train, hidden=[128, 64]), digits_train, **dict(RECIPE, epochs=0))
    assert "epochs=0 instead of 30" in presets.describe(presets.setup_of(full, digits_train, "class"))
    fitting = presets.setup_of(full, digits_train, "class", RECIPE)     # the demo's own recipe: the preset is used
    assert presets.describe(fitting).startswith("method arguments: the preset for digits, mlp hidden=[128, 64]")


# --- quick tuning ----------------------------------------------------------------------------------------------

def test_tuning_sets_never_touch_the_rows_to_forget(digits_train):
    forget, _ = expunge.split_forget(digits_train, fraction=0.1, seed=0)
    tset = tuning_set(digits_train, forget, seed=0)
    assert len(tset.forget) == len(forget) and not set(tset.forget.indices) & set(forget.indices)
    by_class, _ = expunge.split_forget(digits_train, classes=[3])
    assert tuning_set(digits_train, by_class).forget.request.classes == (4,)


def experiment_config(tmp_path, **extra):
    raw = {"data": {"name": "digits"}, "model": {"name": "mlp", "args": {"hidden": [32]}},
           "train": {"epochs": 3}, "forget": {"fraction": 0.1}, "method": "finetune", **extra}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_args_auto_runs_a_small_tuning_and_uses_its_result(tmp_path):
    cfg = load_config(experiment_config(tmp_path, args="auto", tuning={"trials": 2}))
    assert cfg.args == {} and cfg.tune_trials == 2
    lines: list[str] = []
    with RunStore(tmp_path / "runs.db") as db:
        run_id, comp = run_experiment(cfg, store=db, out=tmp_path / "out", on_message=lines.append)
        params = db.get(run_id).params
    tuned = {k.removeprefix("tuned_args."): v for k, v in params.items() if k.startswith("tuned_args.")}
    assert lines[0].startswith("quick tuning of finetune: 2 trial(s)") and "rough estimate" in lines[0]
    assert ast.literal_eval(lines[1].removeprefix("tuned finetune: ").split(" (")[0]) == tuned
    assert set(tuned) == {"lr", "epochs"}
    assert tuned.items() <= provenance(comp.results[0].model).method_args.items()   # the run used them
    assert parse_config(yaml.safe_load(experiment_config(tmp_path, args="auto").read_text())).tune_trials \
        == QUICK_TRIALS


@pytest.mark.parametrize("extra, path", [
    ({"args": "autoo"}, "args"),
    ({"args": 5}, "args"),
    ({"args": "auto", "tuning": {"trials": 0}}, "tuning.trials"),
    ({"args": "auto", "tuning": {"trials": 1.5}}, "tuning.trials"),
    ({"args": "auto", "tuning": {"trials": True}}, "tuning.trials"),
    ({"args": "auto", "tuning": {"trials": MAX_TRIALS + 1}}, "tuning.trials"),
    ({"args": "auto", "tuning": {"budget": 3}}, "tuning.budget"),
    ({"args": "auto", "tuning": 3}, "tuning"),
    ({"args": {"lr": 0.01}, "tuning": {"trials": 3}}, "tuning"),
])
def test_bad_tuning_settings_are_refused(tmp_path, extra, path):
    with pytest.raises(ConfigError, match=f"config error at {path}: "):
        load_config(experiment_config(tmp_path, **extra))


def test_bad_budgets_are_refused_before_any_work(tmp_path, store, capsys):
    for bad in (0, -1, MAX_TRIALS + 1, True):
        with pytest.raises(ValueError, match=f"trials={bad!r} is not allowed; expected an integer in 1..{MAX_TRIALS}"):
            quick_budget(True, bad)
    with pytest.raises(ValueError, match="give it together with tune"):
        quick_budget(False, 3)
    assert main(["demo", "--out", str(tmp_path / "d"), "--trials", "3"]) == 2
    assert main(["demo", "--out", str(tmp_path / "d"), "--tune", "--trials", "0"]) == 2
    assert main(["run", str(experiment_config(tmp_path)), "--tune", "--trials", str(MAX_TRIALS + 1)]) == 2
    err = capsys.readouterr().err
    assert err.count("error: ") == 3 and "Traceback" not in err
    assert not (tmp_path / "d").exists()
    with RunStore() as db:
        assert db.runs() == []


def test_the_demos_tune_option_uses_the_tuned_arguments(digits_train):
    original = expunge.train(expunge.model("mlp", digits_train, hidden=[32]), digits_train, epochs=2, seed=0)
    forget, _ = expunge.split_forget(digits_train, classes=[3])
    lines: list[str] = []
    args = _method_args(["finetune"], original, digits_train, None, forget, "class", "[class 3]", 2, 0, [],
                        lines.append)
    assert lines[0].startswith("  [class 3] quick tuning: 2 trial(s) per method for 1 method(s)")
    assert "class-wise [4]" in lines[0] and "rough estimate" in lines[0]
    assert lines[1].startswith(f"  [class 3] finetune: tuned {args['finetune']} (avg_gap ")   # what it then uses
    assert set(args["finetune"]) == {"lr", "epochs"}


def test_an_audit_refuses_args_auto(tmp_path):
    from expunge.audit.config import load_audit_config

    with pytest.raises(ConfigError, match="config error at args: auto .* applies to expunge run"):
        load_audit_config(experiment_config(tmp_path, args="auto"))
