"""``expunge demo``: the main job on the embedded default.

scikit-learn's bundled digits (real handwritten 8x8 images, no download), an MLP (or a small CNN), the original
model, the oracle (retrain) and the methods, on two forget scenarios: a random 10% of the training rows and a whole
class. Each method runs with the arguments the digits benchmark tuned for exactly this data, architecture, kind of
scenario and recipe (``expunge.presets``); where no preset fits (``--epochs`` changes the recipe), one line says so and
the methods run with their paper defaults. ``tune=True`` (``--tune``) runs a quick tuning against an oracle of another
forget set instead (``expunge.tuning.quick_tune``), its budget and rough time stated first. A second oracle of
another seed gives the noise floor that the verdicts read gaps against (``expunge.verdict``). Prints the table, the
verdicts and any warning about the original, and writes report.md, report.html and results.json.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Sequence

from . import api
from .data import digits, split_forget
from .experiment import Comparison, MethodResult, Prepared, compare_methods
from .method_choice import choose_methods as pick
from .methods import registered
from .models import CONV_MODELS
from . import presets
from .tuning import TuningError, estimate_seconds, quick_budget, quick_tune, train_oracle, tuning_set
from .report import write_reports
from .training import MAX_EPOCHS

RECIPE = {"epochs": 30, "lr": 0.05, "batch_size": 64, "momentum": 0.9, "weight_decay": 5e-4, "schedule": "cosine"}
MODELS = {"mlp": {"name": "mlp", "args": {"hidden": [128, 64]}, "label": "MLP hidden [128, 64]"},
          "cnn": {"name": "cnn", "args": {"width": 16}, "label": "small CNN (width 16)"}}
FORGET_CLASS = 3
MAX_SEEDS = 100


def classification_methods() -> list[str]:
    """Every registered method that unlearns an ordinary classifier (the oracle itself and methods that forget
    nothing, such as the do-nothing ``identity``, excluded: the report's "do nothing" row is the original)."""
    return [n for n, cls in registered().items() if n != "retrain" and "classification" in cls.tasks
            and not cls.needs_special_original and cls.forgets]


def choose_methods(spec: str | Sequence[str] | None) -> list[str]:
    """``None`` or ``"all"`` -> every classification method; else the names given (ValueError naming a bad one)."""
    special = {n: "needs a specially trained original (see its documentation), which the demo does not train"
               for n, cls in registered().items() if cls.needs_special_original}
    return pick(spec, task="classification", demo="classification", every=classification_methods(), refused=special)


def check_options(*, seeds: int = 1, methods: str | Sequence[str] | None = None, model: str = "mlp",
                  epochs: int | None = None) -> list[str]:
    """Validate the demo's options (ValueError naming the bad one); return the chosen method names."""
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be an integer >= 1; got {seeds!r}")
    if model not in MODELS:
        raise ValueError(f"unknown demo model {model!r}; allowed: {', '.join(MODELS)}")
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int)
                               or not 1 <= epochs <= MAX_EPOCHS):
        raise ValueError(f"epochs must be an integer in 1..{MAX_EPOCHS} (or None for the recipe's "
                         f"{RECIPE['epochs']}); got {epochs!r}")
    if seeds > MAX_SEEDS:
        raise ValueError(f"seeds must be an integer in 1..{MAX_SEEDS}; got {seeds!r}")
    names = choose_methods(methods)
    if methods not in (None, "all", ["all"]):     # named explicitly: refuse what this model cannot run
        for n in names:
            if registered()[n].requires_conv and MODELS[model]["name"] not in CONV_MODELS:
                raise ValueError(f"method {n!r} needs convolution layers; run it with --model cnn")
    return names


def run_demo(out: str | Path = "expunge-demo", *, seeds: int = 1, methods: str | Sequence[str] | None = None,
             model: str = "mlp", fraction: float = 0.1, forget_class: int = FORGET_CLASS, epochs: int | None = None,
             on_result: Callable[[str, int, MethodResult], None] | None = None, tune: bool = False,
             trials: int | None = None, on_message: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the demo; return the comparisons per scenario, the paths of the written reports, the methods skipped
    (with the reason) and where each scenario's method arguments came from (``arguments``). ``on_message`` gets
    one-line notes: which preset is used or why none fits, and a quick tuning's budget before it starts."""
    budget = quick_budget(tune, trials)
    names = check_options(seeds=seeds, methods=methods, model=model, epochs=epochs)
    spec = MODELS[model]
    skipped = {n: "needs convolution layers; run with --model cnn" for n in names
               if registered()[n].requires_conv and spec["name"] not in CONV_MODELS}
    names = [n for n in names if n not in skipped]
    recipe = dict(RECIPE, **({"epochs": epochs} if epochs is not None else {}))
    start = time.perf_counter()
    notes: dict[str, list[str]] = {}
    sections: dict[str, list[Comparison]] = {f"random {fraction:.0%} forgetting": [],
                                             f"class-wise forgetting (class {forget_class})": []}
    for seed in range(seeds):
        train, test = digits(seed=seed)
        template = api.model(spec["name"], train, **spec["args"])
        original = api.train(template, train, seed=seed, **recipe)
        splits = [split_forget(train, fraction=fraction, seed=seed), split_forget(train, classes=[forget_class])]
        for (title, comps), (forget, retain), kind in zip(sections.items(), splits, ("random", "class")):
            callback = (lambda r, t=title, s=seed: on_result(t, s, r)) if on_result else None
            args = _method_args(names, original, train, test, forget, kind, f"[{title}, seed {seed}]", budget,
                                seed, notes.setdefault(title, []), on_message or (lambda line: None))
            comps.append(compare_methods(Prepared(train, test, forget, retain, template), args,
                                         recipe=recipe, seed=seed, scenario=title, original=original,
                                         on_result=callback, noise_floor=True))
    wall = time.perf_counter() - start
    meta = {"data": "scikit-learn digits (1437 train / 360 test, 1x8x8)", "model": spec["label"],
            "recipe": recipe, "seeds": seeds, "methods": names,
            "method arguments": "; ".join(f"{title}: {' '.join(lines)}" for title, lines in notes.items()),
            **({"skipped": skipped} if skipped else {}), "wall seconds": round(wall, 1)}
    paths = write_reports(out, "expunge demo: digits", sections, meta)
    return {"sections": sections, "paths": paths, "wall_seconds": wall, "methods": names, "skipped": skipped,
            "arguments": notes}


def _method_args(names: list[str], original, train, test, forget, kind: str, where: str, trials: int | None,
                 seed: int, notes: list[str], say: Callable[[str], None]) -> dict[str, dict[str, Any]]:
    """Each method's arguments: the preset that fits (or paper defaults, saying why), or a quick tuning's."""
    if trials is None:
        setup = presets.setup_of(original, train, kind)
        found = [presets.method_args(setup, n) for n in names]
        lines = [presets.describe(setup)] + [note for _, note in found if note and presets.find(setup)]
        for line in lines if seed == 0 else ():
            say(f"  {where} {line}")
            notes.append(line)
        return {n: a for n, (a, _) in zip(names, found)}
    start, out = time.perf_counter(), {}
    tset = tuning_set(train, forget, seed=seed)
    train_oracle(original, tset, test=test, seed=seed)
    est = estimate_seconds(names, tset, trials)
    line = (f"quick tuning: {trials} trial(s) per method for {len(names)} method(s) against the oracle of another "
            f"forget set ({tset.description}, retrained in {tset.oracle_seconds:.1f}s); about "
            f"{'?' if est is None else f'{est:.0f}'}s more (rough estimate)")
    say(f"  {where} {line}")
    notes.append(line)
    for n in names:
        try:
            result = quick_tune(n, original, tset, test=test, trials=trials, seed=seed)
            out[n] = result.best_args
            say(f"  {where} {n}: tuned {result.best_args} ({result.objective} {result.best_value:.2f} on the "
                "tuning set)")
        except TuningError as e:
            out[n] = {}
            say(f"  {where} {n}: {e}; it runs with its paper defaults")
    say(f"  {where} quick tuning took {time.perf_counter() - start:.0f}s")
    return out
