"""``expunge demo``: the main job on the embedded default.

scikit-learn's bundled digits (real handwritten 8x8 images, no download), an MLP (or a small CNN), the original
model, the oracle (retrain) and the methods, on two forget scenarios: a random 10% of the training rows and a whole
class. Each method runs with the arguments the digits benchmark tuned for that model and kind of scenario
(``expunge.presets``). Prints the table and writes report.md, report.html and results.json.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Sequence

from . import api
from .data import digits, split_forget
from .experiment import Comparison, MethodResult, Prepared, compare_methods
from .methods import registered
from .models import CONV_MODELS
from .presets import digits_args
from .report import write_reports

RECIPE = {"epochs": 30, "lr": 0.05, "batch_size": 64, "momentum": 0.9, "weight_decay": 5e-4, "schedule": "cosine"}
MODELS = {"mlp": {"name": "mlp", "args": {"hidden": [128, 64]}, "label": "MLP hidden [128, 64]"},
          "cnn": {"name": "cnn", "args": {"width": 16}, "label": "small CNN (width 16)"}}
FORGET_CLASS = 3


def classification_methods() -> list[str]:
    """Every registered method that unlearns an ordinary classifier (the oracle itself excluded)."""
    return [n for n, cls in registered().items() if n != "retrain" and "classification" in cls.tasks
            and not cls.needs_special_original]


def choose_methods(spec: str | Sequence[str] | None) -> list[str]:
    """``None`` or ``"all"`` -> every classification method; else the names given."""
    if spec is None:
        return classification_methods()
    names = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    if names == ["all"]:
        return classification_methods()
    known = registered()
    for n in names:
        if n not in known:
            raise ValueError(f"unknown method {n!r}; allowed: all, {', '.join(known)}")
    return names


def check_options(*, seeds: int = 1, methods: str | Sequence[str] | None = None, model: str = "mlp",
                  epochs: int | None = None) -> list[str]:
    """Validate the demo's options (ValueError naming the bad one); return the chosen method names."""
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be an integer >= 1; got {seeds!r}")
    if model not in MODELS:
        raise ValueError(f"unknown demo model {model!r}; allowed: {', '.join(MODELS)}")
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise ValueError(f"epochs must be an integer >= 1 (or None for the recipe's {RECIPE['epochs']}); "
                         f"got {epochs!r}")
    return choose_methods(methods)


def run_demo(out: str | Path = "expunge-demo", *, seeds: int = 1, methods: str | Sequence[str] | None = None,
             model: str = "mlp", fraction: float = 0.1, forget_class: int = FORGET_CLASS, epochs: int | None = None,
             on_result: Callable[[str, int, MethodResult], None] | None = None) -> dict[str, Any]:
    """Run the demo; return the comparisons per scenario, the paths of the written reports and the methods skipped
    (with the reason)."""
    names = check_options(seeds=seeds, methods=methods, model=model, epochs=epochs)
    spec = MODELS[model]
    skipped = {n: "needs convolution layers; run with --model cnn" for n in names
               if registered()[n].requires_conv and spec["name"] not in CONV_MODELS}
    names = [n for n in names if n not in skipped]
    recipe = dict(RECIPE, **({"epochs": epochs} if epochs is not None else {}))
    start = time.perf_counter()
    sections: dict[str, list[Comparison]] = {f"random {fraction:.0%} forgetting": [],
                                             f"class-wise forgetting (class {forget_class})": []}
    for seed in range(seeds):
        train, test = digits(seed=seed)
        template = api.model(spec["name"], train, **spec["args"])
        original = api.train(template, train, seed=seed, **recipe)
        splits = [split_forget(train, fraction=fraction, seed=seed), split_forget(train, classes=[forget_class])]
        for (title, comps), (forget, retain), kind in zip(sections.items(), splits, ("random", "class")):
            callback = (lambda r, t=title, s=seed: on_result(t, s, r)) if on_result else None
            args = {n: digits_args(model, kind, n) for n in names}
            comps.append(compare_methods(Prepared(train, test, forget, retain, template), args,
                                         recipe=recipe, seed=seed, scenario=title, original=original,
                                         on_result=callback))
    wall = time.perf_counter() - start
    meta = {"data": "scikit-learn digits (1437 train / 360 test, 1x8x8)", "model": spec["label"],
            "recipe": recipe, "seeds": seeds, "methods": names,
            "method arguments": "tuned on digits by the digits benchmark (expunge.presets)",
            **({"skipped": skipped} if skipped else {}), "wall seconds": round(wall, 1)}
    paths = write_reports(out, "expunge demo: digits", sections, meta)
    return {"sections": sections, "paths": paths, "wall_seconds": wall, "methods": names, "skipped": skipped}
