"""``expunge demo --task diffusion``: a class-conditional diffusion model asked to forget a digit.

scikit-learn's bundled digits (1437 training images, 1x8x8, scaled to [-1, 1] by :func:`expunge.data.for_generation`;
the 360 test images are the held-out set of the membership attack and of the judge), the embedded default diffusion
model (:func:`expunge.gen.unet`: a ~0.7M-parameter class-conditional diffusers UNet, DDPM training, DDIM sampling
with classifier-free guidance) trained here with ``expunge.train`` for :data:`EPOCHS` epochs of the model's own
recipe, its oracle (retrained without class :data:`FORGET_CLASS` under the oracle's seed stream) and a second
oracle of another seed, the noise floor the verdicts read gaps against (:mod:`expunge.verdict`).

Every registered generation method that unlearns diffusion models then unlearns the same original with its paper
defaults (GAN-only methods are skipped with the reason). Each model is scored against the oracle by
:func:`expunge.gen.evaluate.evaluate_generation` (what ``expunge.evaluate`` runs on generation data) with
:data:`SAMPLES_PER_CLASS` samples per class: unlearning accuracy, retained-class generation accuracy, Fréchet
distances on the judge's features, membership AUC, the embedding attack's success, Avg. Gap. report.md,
report.html (self-contained, with the sample grids of the original, every method and the oracle) and results.json
are written by :func:`expunge.report.write_reports`; samples.png holds the grid. The result gives each phase's
seconds.

Budget: the whole demo is meant to finish within 10 minutes on 2 cores. The original's training length
(:data:`EPOCHS`, 20, half the model's default 40) comes from ``benchmarks/diffusion_recipe.py``
(``benchmarks/results/diffusion_recipe.json``): 20 epochs took 33 CPU-s and gave samples judged as their class
95.2% of the time, 40 epochs 56 CPU-s and 95.4%, so the demo trains 20 and spends the time on its three trainings
and seven methods instead.
Measured (``/usr/bin/time``, one seed, on 2 cores other work shared): 4 min 59 s wall, 275 s of CPU; wall seconds
per phase: the original 26 s, the oracle 49 s and the noise-floor oracle 26 s, the seven methods 116 s
(selective_amnesia 46 s, sfd 43 s, esd 10 s), scoring 66 s, the sample grids 10 s. The original's samples were
judged as their class 91.7% of the time on the retained classes and its digit-3 samples always (UA 0); the oracle's
digit-3 samples 10% of the time (UA 90).
"""
from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any, Callable, Sequence

FORGET_CLASS = 3
EPOCHS = 20                 # the original's (and each oracle's) training epochs; see the module docstring
MODEL: dict[str, Any] = {}  # expunge.gen.unet's defaults: widths (32, 64), 8x8, T = 200
SAMPLES_PER_CLASS = 20      # samples per class each model draws for the scores
GRID_PER_CLASS = 8          # samples per class in the report's grid
MAX_SEEDS = 100
KIND = "diffusion"


def generation_methods() -> list[str]:
    """Every registered method that unlearns image generators (the oracle itself excluded)."""
    from ..methods import registered

    return [n for n, cls in registered().items() if n != "retrain" and "generation" in cls.tasks]


def diffusion_methods() -> list[str]:
    """The generation methods that unlearn diffusion models."""
    from ..methods import registered

    known = registered()
    return [n for n in generation_methods() if KIND in getattr(known[n], "kinds", ())]


def choose_methods(spec: str | Sequence[str] | None) -> list[str]:
    """``None`` or ``"all"`` -> every generation method (those for other model kinds are skipped later, with the
    reason); else the names given (ValueError naming a bad one)."""
    from ..method_choice import choose_methods as pick

    return pick(spec, task="generation", demo="diffusion", every=generation_methods(), refused=_other_kinds())


def runnable(names: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """``(the methods the demo runs, {skipped method: why})``: methods for other model kinds are skipped."""
    other = _other_kinds()
    return [n for n in names if n not in other], {n: other[n] for n in names if n in other}


def _other_kinds() -> dict[str, str]:
    """The generation methods for other model kinds than the demo's, and why they do not run here."""
    from ..methods import registered

    known, usable = registered(), set(diffusion_methods())
    return {n: f"unlearns {' and '.join(getattr(known[n], 'kinds', ()))} models and this demo trains a diffusion model"
            for n in generation_methods() if n not in usable}


def check_options(*, seeds: int = 1, methods: str | Sequence[str] | None = None, epochs: int | None = None,
                  forget_class: int = FORGET_CLASS) -> list[str]:
    """Validate the demo's options (ValueError naming the bad one); return the chosen method names."""
    import importlib.util

    from ..training import MAX_EPOCHS

    if importlib.util.find_spec("diffusers") is None:
        raise ValueError("the diffusion demo needs the gen extra: pip install 'expunge[gen]' (diffusers)")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= MAX_SEEDS:
        raise ValueError(f"seeds must be an integer in 1..{MAX_SEEDS}; got {seeds!r}")
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int)
                               or not 1 <= epochs <= MAX_EPOCHS):
        raise ValueError(f"epochs must be an integer in 1..{MAX_EPOCHS} (or None for the demo's {EPOCHS}); "
                         f"got {epochs!r}")
    if isinstance(forget_class, bool) or not isinstance(forget_class, int) or not 0 <= forget_class <= 9:
        raise ValueError(f"forget_class must be a digit class in 0..9; got {forget_class!r}")
    return choose_methods(methods)


def _check_knobs(n_images: Any, samples_per_class: Any, grid_per_class: Any) -> None:
    from .report import MAX_PER_CLASS

    if n_images is not None and (isinstance(n_images, bool) or not isinstance(n_images, int) or n_images < 20):
        raise ValueError(f"n_images must be an integer >= 20 or None (every training image); got {n_images!r}")
    if isinstance(samples_per_class, bool) or not isinstance(samples_per_class, int) or samples_per_class < 2:
        raise ValueError(f"samples_per_class must be an integer >= 2; got {samples_per_class!r}")
    if isinstance(grid_per_class, bool) or not isinstance(grid_per_class, int) or \
            not 1 <= grid_per_class <= MAX_PER_CLASS:
        raise ValueError(f"grid_per_class must be an integer in 1..{MAX_PER_CLASS}; got {grid_per_class!r}")


def build_data(n_images: int | None = None, seed: int = 0):
    """``(train, held_out)``: the digits as generation data; ``n_images`` keeps a seeded random subset of the
    training images (a ``Subset`` of the full set, so the judge still reads every real image)."""
    import torch
    from torch.utils.data import Subset

    from ..data import digits, for_generation

    train, test = digits()
    data, held = for_generation(train), for_generation(test)
    if n_images is not None and n_images < len(data):
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(data), generator=g, device="cpu")[:n_images].sort().values.tolist()
        data = Subset(data, idx)
    return data, held


def run_demo(out: str | Path = "expunge-demo-diffusion", *, seeds: int = 1,
             methods: str | Sequence[str] | None = None, epochs: int | None = None,
             forget_class: int = FORGET_CLASS, on_result: Callable[[str, int, Any], None] | None = None,
             on_message: Callable[[str], None] | None = None, model: dict[str, Any] | None = None,
             recipe: dict[str, Any] | None = None, n_images: int | None = None,
             samples_per_class: int = SAMPLES_PER_CLASS, grid_per_class: int = GRID_PER_CLASS,
             attack: bool = True, sample_steps: int | None = None,
             method_args: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Run the diffusion demo; return the comparisons (one section), the paths of the written reports, the methods
    run and skipped (with the reason), the wall time and each phase's seconds (``phases``).

    ``model`` replaces :data:`MODEL` (keyword arguments of :func:`expunge.gen.unet`), ``recipe`` the training
    settings given to ``expunge.train`` over the model's own (default: ``{"epochs": EPOCHS}``), ``n_images`` keeps
    that many training images, ``samples_per_class`` and ``attack`` go to ``evaluate_generation``,
    ``grid_per_class`` sets the grid's columns, ``sample_steps`` the DDIM steps of every model's sampling (default:
    the model's own, 25) and ``method_args`` gives arguments per method (default: each
    method's defaults); smaller settings are for tests. ``on_message`` gets one-line notes (phases)."""
    from .. import api
    from ..data import split_forget
    from ..experiment import FLOOR_SEED_OFFSET, Comparison, MethodResult
    from ..modelio import atomic_write
    from ..report import figure_html, write_reports
    from ..training import DivergenceError
    from .evaluate import evaluate_generation
    from .report import sample_grid
    from . import unet

    names = check_options(seeds=seeds, methods=methods, epochs=epochs, forget_class=forget_class)
    _check_knobs(n_images, samples_per_class, grid_per_class)
    if sample_steps is not None and (isinstance(sample_steps, bool) or not isinstance(sample_steps, int)
                                     or sample_steps < 1):
        raise ValueError(f"sample_steps must be an integer >= 1 or None (the model's own); got {sample_steps!r}")
    names, skipped = runnable(names)
    method_args = dict(method_args or {})
    unknown = [n for n in method_args if n not in names]
    if unknown:
        raise ValueError(f"method_args names {unknown[0]!r}, which the demo does not run; it runs {', '.join(names)}")
    say = on_message or (lambda line: None)
    recipe = dict({"epochs": EPOCHS} if recipe is None else recipe, **({"epochs": epochs} if epochs else {}))
    model_args = dict(MODEL if model is None else model)
    phases: dict[str, float] = {}

    def timed(phase: str, fn: Callable[[], Any]) -> Any:
        t = time.perf_counter()
        try:
            return fn()
        finally:
            phases[phase] = phases.get(phase, 0.0) + time.perf_counter() - t

    start = time.perf_counter()
    data, held = timed("data", lambda: build_data(n_images))
    title = f"forget digit {forget_class}"
    comps, grid_models = [], {}
    for seed in range(seeds):
        template = unet(**model_args, seed=seed)
        if sample_steps is not None:
            template.sample_steps = sample_steps      # kept by every copy (methods) and fresh copy (oracles)
        n_params = sum(p.numel() for p in template.parameters())
        say(f"  [seed {seed}] training the original ({n_params:,} parameters, {recipe.get('epochs', '?')} epochs on "
            f"{len(data):,} images)")
        original = timed("original", lambda: api.train(template, data, seed=seed, **recipe))
        forget, retain = split_forget(data, classes=[forget_class])
        say(f"  [seed {seed}] retraining the oracle on {len(retain):,} retain images")
        oracle = timed("oracle", lambda: api.unlearn(original, forget=forget, retain=retain, method="retrain",
                                                      seed=seed))
        say(f"  [seed {seed}] retraining a second oracle (seed {seed + FLOOR_SEED_OFFSET}) for the noise floor")
        second = timed("noise-floor oracle", lambda: api.unlearn(original, forget=forget, retain=retain,
                                                                  method="retrain", seed=seed + FLOOR_SEED_OFFSET))
        score = lambda m: timed("scoring", lambda: evaluate_generation(
            m, forget=forget, retain=retain, test=held, reference=oracle, seed=seed,
            samples_per_class=samples_per_class, attack=attack))
        say(f"  [seed {seed}] scoring the original, the oracle and the noise-floor oracle")
        original_scores = score(original)
        original_scores.pop("rte", None)   # the original's training time is not an unlearning cost
        comp = Comparison(title, original_scores, score(oracle),
                          sizes={"train": len(forget) + len(retain), "forget": len(forget), "retain": len(retain),
                                 "test": len(held)})
        comp.floor = score(second)
        for name in names:
            say(f"  [seed {seed}] {name}")
            try:
                unlearned = timed(f"method {name}", lambda: api.unlearn(original, forget=forget, retain=retain,
                                                                         method=name, seed=seed,
                                                                         **method_args.get(name, {})))
                result = MethodResult(name, score(unlearned), unlearned)
            except DivergenceError as e:
                result = MethodResult(name, {}, None, f"diverged: {e}")
            comp.results.append(result)
            if on_result:
                on_result(title, seed, result)
        comps.append(comp)
        if seed == 0:
            grid_models = {"original": original, **{r.method: r.model for r in comp.results if r.model is not None},
                           "oracle (retrained)": oracle}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    class_names = {c: f"{c} (forgotten)" if c == forget_class else str(c) for c in range(10)}
    say(f"  drawing the sample grids ({len(grid_models)} models x 10 classes x {grid_per_class})")
    png = timed("sample grids", lambda: sample_grid(grid_models, list(range(10)), per_class=grid_per_class, seed=0,
                                                     class_names=class_names))
    grid_path = out / "samples.png"
    atomic_write(grid_path, png)
    caption = (f"Samples of seed 0's models, the original first and the oracle (retrained without digit "
               f"{forget_class}) last: rows = digit classes, columns = {grid_per_class} samples per class, drawn "
               f"from the same noise (seed 0) for every model. A method that forgot draws no {forget_class}s in the "
               f"'{class_names[forget_class]}' row and keeps the other rows like the oracle's.")
    extra_html = "<h2>Samples</h2>\n" + figure_html("data:image/png;base64," + base64.b64encode(png).decode(),
                                                      "sample grids of the original, each method and the oracle",
                                                      caption)
    extra_md = f"## Samples\n\n![sample grids](samples.png)\n\n{caption}"
    wall = time.perf_counter() - start      # recorded in the reports; the result's wall time includes writing them
    model_line = (f"expunge.gen.unet({', '.join(f'{k}={v!r}' for k, v in model_args.items())}): class-conditional "
                  f"diffusers UNet2DModel, {n_params:,} parameters, DDPM training, DDIM sampling with "
                  "classifier-free guidance")
    meta = {"data": f"scikit-learn digits as generation data (1x8x8 in [-1, 1]): {len(data):,} training images, "
                    f"{len(held):,} held-out images",
            "model": model_line, "recipe": f"{recipe} over the model's own recipe {dict(template.recipe_defaults)}",
            "forget": f"every training image of digit {forget_class}",
            "scoring": f"expunge.gen.evaluate.evaluate_generation, {samples_per_class} samples per class, "
                       f"embedding attack {'on' if attack else 'off'}",
            "seeds": seeds, "methods": names,
            "method arguments": "; ".join(f"{n}: {method_args.get(n) or 'defaults'}" for n in names),
            **({"skipped": skipped} if skipped else {}),
            "phase seconds": {k: round(v, 1) for k, v in phases.items()}, "wall seconds": round(wall, 1)}
    paths = timed("reports", lambda: write_reports(out, "expunge demo: digits diffusion model", {title: comps}, meta,
                                                    extra_md=extra_md, extra_html=extra_html))
    paths["png"] = grid_path
    wall = time.perf_counter() - start
    return {"sections": {title: comps}, "paths": paths, "wall_seconds": wall, "phases": phases, "methods": names,
            "skipped": skipped}
