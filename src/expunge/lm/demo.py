"""``expunge demo --task lm``: the language-model demo on the fictitious authors.

The authors corpus (:func:`expunge.data.authors`, :data:`CORPUS`: 100 invented authors x 5 facts, each fact trained
in two phrasings, plus 50 world facts; 10 more authors held out), a ~0.9M-parameter Llama-configuration model
trained from scratch with ``expunge.train`` (:data:`MODEL`, :data:`RECIPE`: the recipe
``benchmarks/authors_recipe.py`` measured on this corpus), its oracle (retrained on the retain set under the
oracle's own seed stream) and a second oracle of another seed, the noise floor the verdicts read gaps against
(:mod:`expunge.verdict`). Forget request: 5% of the authors (TOFU's forget05), every row of theirs.

Every registered language method then unlearns the same original with the arguments in :data:`PRESETS`, chosen by
quick tuning on the corpus's own tuning forget set (as many other authors, never the demo's; see
:data:`PRESETS_SOURCE`); ``tune=True`` (``--tune``) runs that quick tuning instead (``expunge.tuning``), its budget
and rough time stated first. Methods made for another kind of model (UOE: a mixture of experts) are skipped with
the reason.

Each model is scored by ``expunge.evaluate`` against the oracle on the forget set, the retain set, the world facts
and the holdout authors (at most :data:`MAX_EXAMPLES` rows of each, the same seeded rows for every model): forget
quality, model utility, forget/retain answer probability and ROUGE-L, PrivLeak, Avg. Gap and seconds. The table has
the original (doing nothing), the oracle scored against itself (forget quality 1, PrivLeak 0, Avg. Gap 0), the
noise-floor oracle and the methods; report.md, report.html and results.json are written by
:func:`expunge.report.write_reports`. One seed took 5 min 6 s on one core (306 s of CPU time measured with
``/usr/bin/time``: 86 s for the original, 79 s for each oracle, the rest for the ten methods and the scoring).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Sequence

CORPUS: dict[str, Any] = {"n_authors": 100, "attributes": 5, "world_facts": 50, "seed": 0}
MODEL: dict[str, Any] = {"hidden": 128, "layers": 4, "heads": 4}
RECIPE: dict[str, Any] = {"epochs": 30, "lr": 3e-3, "batch_size": 32, "warmup": 0.05, "schedule": "cosine",
                          "weight_decay": 0.01, "optimizer": "adamw", "clip_grad_norm": 1.0}
FORGET = 0.05               # TOFU's forget05: 5% of the authors
MAX_EXAMPLES = 200          # rows scored per set (forget, retain, world, holdout)
MAX_SEEDS = 100

#: method -> arguments on the demo's corpus, model and recipe (see PRESETS_SOURCE); the comment gives the best
#: Avg. Gap the tuning reached on its own forget set
PRESETS: dict[str, dict[str, Any]] = {
    "flat": {"lr": 3e-4, "epochs": 5, "divergence": "pearson"},                                    # 26.77
    "grad_ascent": {"lr": 3e-4, "epochs": 10},                                                     # 17.41
    "grad_diff": {"lr": 3e-3, "epochs": 2, "alpha": 2.0, "retain_loss": "nll"},                    # 16.48
    "idk_dpo": {"lr": 3e-3, "epochs": 5, "beta": 0.05, "alpha": 0.5},                              # 15.69
    "idk_nll": {"lr": 3e-3, "epochs": 10},                                                         # 15.61
    "npo": {"lr": 3e-3, "epochs": 10, "beta": 0.5, "alpha": 0.5},                                  # 11.01
    "rmu": {"layer": 0, "steering_coefficient": 50.0, "alpha": 10.0, "lr": 3e-3, "epochs": 5},     # 17.15
    "simnpo": {"lr": 1e-3, "epochs": 10, "beta": 4.5, "forget_weight": 1.0, "gamma": 1.0},         # 3.40
    "undial": {"lr": 1e-3, "beta": 30.0, "epochs": 20, "alpha": 1.0},                              # 8.56
    "wagle": {"mask_ratio": 0.95, "lr": 3e-4, "epochs": 10, "alpha": 2.0, "objective": "grad_diff"},  # 8.19
}
PRESETS_SOURCE = ("chosen by quick tuning of seed 0's original (8 trials per method over its grid, its defaults "
                  "first; objective Avg.Gap, what expunge demo --task lm --tune runs) against the oracle of 5 other "
                  "authors, never the demo's")

#: methods made for another kind of model than the demo's dense Llama, and why they are skipped
OTHER_MODELS: dict[str, str] = {
    "uoe": "unlearns one expert of a mixture-of-experts model (expunge.lm.moe); the demo trains a dense Llama model",
}


def language_methods() -> list[str]:
    """Every registered method that unlearns language models (the oracle itself excluded)."""
    from ..methods import registered

    return [n for n, cls in registered().items() if n != "retrain" and "language" in cls.tasks]


def choose_methods(spec: str | Sequence[str] | None) -> list[str]:
    """``None`` or ``"all"`` -> every language method; else the names given (ValueError naming a bad one)."""
    from ..method_choice import choose_methods as pick

    return pick(spec, task="language", demo="language", every=language_methods(), refused=OTHER_MODELS)


def runnable(names: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """``(the methods the demo runs, {skipped method: why})``: methods made for another kind of model are skipped."""
    return [n for n in names if n not in OTHER_MODELS], {n: OTHER_MODELS[n] for n in names if n in OTHER_MODELS}


def check_options(*, seeds: int = 1, methods: str | Sequence[str] | None = None, epochs: int | None = None
                  ) -> list[str]:
    """Validate the demo's options (ValueError naming the bad one); return the chosen method names."""
    from ..training import MAX_EPOCHS

    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= MAX_SEEDS:
        raise ValueError(f"seeds must be an integer in 1..{MAX_SEEDS}; got {seeds!r}")
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int)
                               or not 1 <= epochs <= MAX_EPOCHS):
        raise ValueError(f"epochs must be an integer in 1..{MAX_EPOCHS} (or None for the recipe's "
                         f"{RECIPE['epochs']}); got {epochs!r}")
    return choose_methods(methods)


def build_corpus(corpus: dict[str, Any] | None = None):
    """The authors corpus of the demo (``corpus`` replaces :data:`CORPUS`'s arguments)."""
    from ..data import authors

    return authors(**(CORPUS if corpus is None else corpus))


def run_demo(out: str | Path = "expunge-demo-lm", *, seeds: int = 1, methods: str | Sequence[str] | None = None,
             epochs: int | None = None, tune: bool = False, trials: int | None = None,
             on_result: Callable[[str, int, Any], None] | None = None,
             on_message: Callable[[str], None] | None = None, corpus: dict[str, Any] | None = None,
             model: dict[str, Any] | None = None, recipe: dict[str, Any] | None = None,
             max_examples: int | None = MAX_EXAMPLES, presets: dict[str, dict[str, Any]] | None = None
             ) -> dict[str, Any]:
    """Run the language demo; return the comparisons (one section), the paths of the written reports, the methods
    run and skipped (with the reason), each method's arguments and the wall time. ``corpus``, ``model``,
    ``recipe`` and ``presets`` replace :data:`CORPUS`, :data:`MODEL`, :data:`RECIPE` and :data:`PRESETS` (smaller
    settings for tests); ``on_message`` gets one-line notes (phases, where the arguments come from)."""
    from .. import api
    from ..report import write_reports
    from ..tuning import quick_budget
    from .models import llama

    budget = quick_budget(tune, trials)
    names = check_options(seeds=seeds, methods=methods, epochs=epochs)
    if max_examples is not None and (isinstance(max_examples, bool) or not isinstance(max_examples, int)
                                     or max_examples < 1):
        raise ValueError(f"max_examples must be an integer >= 1 or None; got {max_examples!r}")
    names, skipped = runnable(names)
    say = on_message or (lambda line: None)
    recipe = dict(RECIPE if recipe is None else recipe, **({"epochs": epochs} if epochs is not None else {}))
    model_args = dict(MODEL if model is None else model)
    presets = PRESETS if presets is None else presets
    start = time.perf_counter()
    data = build_corpus(corpus)
    title = f"forget {FORGET:.0%} of the authors"
    comps, arguments = [], {}
    for seed in range(seeds):
        template = llama(data.tokenizer, seed=seed, **model_args)
        say(f"  [seed {seed}] training the original ({sum(p.numel() for p in template.parameters()):,} parameters, "
            f"{recipe['epochs']} epochs on {len(data.train):,} rows)")
        original = api.train(template, data.train, seed=seed, **recipe)
        forget, retain = data.split(forget=FORGET, seed=seed)
        scoring = {"world": data.world, "max_examples": max_examples}
        if budget is None:
            args = {n: dict(presets.get(n, {})) for n in names}
            note = (f"method arguments {PRESETS_SOURCE}" if presets is PRESETS else "method arguments as given")
            missing = [n for n in names if n not in presets]
            if missing:
                note += f"; no preset for {', '.join(missing)}: paper defaults"
        else:
            args, note = _quick_tuned(names, original, forget, data, seed, budget, scoring, say)
        if seed == 0 and budget is None:
            say(f"  {note}")
        arguments[seed] = {"note": note, "args": args}
        callback = (lambda r, s=seed: on_result(title, s, r)) if on_result else None
        comps.append(compare_language(original, forget, retain, data.holdout, args, seed=seed, scoring=scoring,
                                      scenario=title, on_result=callback, say=say))
    wall = time.perf_counter() - start
    n_params = sum(p.numel() for p in original.parameters())
    meta = {"data": (f"fictitious authors: {len(data.authors)} authors x {len(data.attributes)} facts, each in two "
                     f"phrasings, + {len(data.world):,} world-fact rows ({len(data.train):,} rows); "
                     f"{len(data.holdout_authors)} holdout authors; BPE vocabulary {len(data.tokenizer)}"),
            "model": f"Llama configuration {model_args}, {n_params:,} parameters, trained from scratch",
            "recipe": recipe, "forget": f"{FORGET:.0%} of the authors (every row of theirs), drawn with the seed",
            "scored rows": f"at most {max_examples} per set (forget, retain, world facts, holdout)"
            if max_examples else "every row", "seeds": seeds, "methods": names,
            "method arguments": arguments[0]["note"].removeprefix("method arguments ") + "; " + "; ".join(
                f"{n}: {a or 'defaults'}" for n, a in arguments[0]["args"].items()),
            **({"skipped": skipped} if skipped else {}), "wall seconds": round(wall, 1)}
    paths = write_reports(out, "expunge demo: fictitious authors (language model)", {title: comps}, meta)
    return {"sections": {title: comps}, "paths": paths, "wall_seconds": wall, "methods": names, "skipped": skipped,
            "arguments": arguments}


def compare_language(original, forget, retain, holdout, methods: dict[str, dict[str, Any]], *, seed: int = 0,
                     scoring: dict[str, Any] | None = None, scenario: str = "",
                     on_result: Callable[[Any], None] | None = None, noise_floor: bool = True,
                     say: Callable[[str], None] | None = None, oracle=None, floor_oracle=None):
    """Retrain the oracle (and a second one of another seed for the noise floor), run every method on
    ``original``, and score each model against the oracle: an :class:`expunge.experiment.Comparison` whose oracle
    row is the oracle scored against itself. A method that diverges is reported with its error. ``oracle`` and
    ``floor_oracle``: those oracles when already retrained (under ``seed`` and ``seed + FLOOR_SEED_OFFSET``)."""
    from .. import api
    from ..evaluate import evaluate
    from ..experiment import FLOOR_SEED_OFFSET, Comparison, MethodResult
    from ..training import DivergenceError

    say = say or (lambda line: None)
    scoring = dict(scoring or {})
    if oracle is None:
        say(f"  [seed {seed}] retraining the oracle on {len(retain):,} retain rows")
        oracle = api.unlearn(original, forget=forget, retain=retain, method="retrain", seed=seed)
    score = lambda m: evaluate(m, forget=forget, retain=retain, test=holdout, reference=oracle, seed=seed, **scoring)
    original_scores = score(original)
    original_scores.pop("rte", None)   # the original's training time is not an unlearning cost
    comp = Comparison(scenario, original_scores, score(oracle),
                      sizes={"train": len(forget) + len(retain), "forget": len(forget), "retain": len(retain),
                             "test": len(holdout)})
    if noise_floor:
        second = floor_oracle
        if second is None:
            say(f"  [seed {seed}] retraining a second oracle (seed {seed + FLOOR_SEED_OFFSET}) for the noise floor")
            second = api.unlearn(original, forget=forget, retain=retain, method="retrain",
                                 seed=seed + FLOOR_SEED_OFFSET)
        comp.floor = score(second)
    for name, args in methods.items():
        try:
            model = api.unlearn(original, forget=forget, retain=retain, method=name, seed=seed, **args)
            result = MethodResult(name, score(model), model)
        except DivergenceError as e:
            result = MethodResult(name, {}, None, f"diverged: {e}")
        comp.results.append(result)
        if on_result:
            on_result(result)
    return comp


def _quick_tuned(names: list[str], original, forget, data, seed: int, trials: int, scoring: dict[str, Any],
                 say: Callable[[str], None]) -> tuple[dict[str, dict[str, Any]], str]:
    """Each method's arguments from a quick tuning against the oracle of as many other authors."""
    from ..tuning import TuningError, estimate_seconds, quick_tune, train_oracle, tuning_set

    start = time.perf_counter()
    tset = tuning_set(data.train, forget, seed=seed)
    train_oracle(original, tset, test=data.holdout, seed=seed, scoring=scoring)
    est = estimate_seconds(names, tset, trials)
    note = (f"quick tuning: {trials} trial(s) per method for {len(names)} method(s) against the oracle of another "
            f"forget set ({tset.description}, retrained in {tset.oracle_seconds:.1f}s)")
    say(f"  [seed {seed}] {note}; about {'?' if est is None else f'{est:.0f}'}s more (rough estimate)")
    out = {}
    for n in names:
        try:
            result = quick_tune(n, original, tset, test=data.holdout, trials=trials, seed=seed, scoring=scoring)
            out[n] = result.best_args
            say(f"  [seed {seed}] {n}: tuned {result.best_args} (Avg.Gap {result.best_value:.2f} on the tuning set)")
        except TuningError as e:
            out[n] = {}
            say(f"  [seed {seed}] {n}: {e}; it runs with its paper defaults")
    say(f"  [seed {seed}] quick tuning took {time.perf_counter() - start:.0f}s")
    return out, note
