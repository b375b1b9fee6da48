"""Running experiments: config -> data and splits -> original -> oracle -> method -> scores.

``prepare`` turns a config into data and an untrained model; ``run_experiment`` runs one method and records it in
the run store; ``compare_methods`` trains the original and the oracle once and runs several methods against them
(the demo and the report tables use it).
"""
from __future__ import annotations

import functools
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from . import api
from .config import ConfigError, ExperimentConfig
from .data import load_builtin, load_csv, load_image_folder, load_npz, split_forget
from .data.datasets import ArrayDataset, groups_of, standardise
from .evaluate import evaluate
from .gen.base import is_generative
from .modelio import save_model
from .store import RunStore
from .training import DivergenceError

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    train: Dataset
    test: Dataset
    forget: Dataset
    retain: Dataset
    template: nn.Module
    world: Dataset | None = None        # language task: the world-facts utility set (scored, always retained)

    @property
    def scoring(self) -> dict[str, Any]:
        """Extra arguments of ``evaluate`` for this data (the language task's ``world`` set)."""
        return scoring_sets(self.train, self.world)


@dataclass
class MethodResult:
    method: str
    scores: dict[str, float]
    model: nn.Module | None = None
    error: str | None = None


@dataclass
class Comparison:
    """Scores of the original, the oracle and each method on one forget scenario."""

    scenario: str
    original: dict[str, float]
    oracle: dict[str, float]
    results: list[MethodResult] = field(default_factory=list)
    floor: dict[str, float] | None = None     # a second oracle (another seed) scored against the oracle
    sizes: dict[str, int] = field(default_factory=dict)   # train, forget, retain and test sizes
    models: dict[str, nn.Module] = field(default_factory=dict, repr=False,
                                         compare=False)   # image generators: the original and oracle (sample grids)
    iam_shadow_seconds: float | None = field(default=None, compare=False)   # scoring: {evidence: iam}: its training


FLOOR_SEED_OFFSET = 10_000   # the noise-floor oracle retrains under seed + this


def _load_split(spec: dict[str, Any], seed: int) -> tuple[Dataset, Dataset]:
    tf = spec.get("test_fraction", 0.2)
    if spec.get("name") == "authors":
        corpus = _authors_corpus(json.dumps(spec.get("args", {}), sort_keys=True))
        return corpus.train, corpus.holdout
    if "jsonl" in spec:
        return _load_jsonl(spec, tf, seed)
    if "name" in spec:
        return load_builtin(spec["name"], test_fraction=tf, seed=seed, **spec.get("args", {}))
    if "npz" in spec:
        full = load_npz(spec["npz"], task=spec.get("task"))
    elif "csv" in spec:
        full = load_csv(spec["csv"], target=spec["target"], groups=spec.get("groups"), task=spec.get("task"))
    else:
        size = spec.get("size")
        full = load_image_folder(spec["images"], size=tuple(size) if size else None,
                                 grayscale=bool(spec.get("grayscale", False)))
    return _split_file_data(full, tf, seed)


def load_data(spec: dict[str, Any], seed: int) -> tuple[Dataset, Dataset]:
    """``(train, test)`` for a config's data section, standardised as ``standardise`` asks (features, targets or
    both; mean and standard deviation fitted on the training split only)."""
    train, test = _load_split(spec, seed)
    how = spec.get("standardise", "none")
    if how in ("features", "targets", "both"):
        train, test = standardise(train, test, features=how in ("features", "both"),
                                  targets=how in ("targets", "both"))
    if spec.get("generation") not in (None, False):   # labelled images for image generators, in [-1, 1]
        from .data import for_generation

        size = (spec["generation"] if isinstance(spec["generation"], dict) else {}).get("size")
        train, test = for_generation(train, size=size), for_generation(test, size=size)
    return train, test


def _split_file_data(full: ArrayDataset, test_fraction: float, seed: int) -> tuple[ArrayDataset, ArrayDataset]:
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(full))
    strat = full.y.numpy() if full.task == "classification" and _stratifiable(full.y.numpy()) else None
    tr, te = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=strat)
    pick = lambda ix: ArrayDataset(full.x[ix], full.y[ix], task=full.task, class_names=full.class_names,
                                   groups=None if full.groups is None else full.groups[ix], name=full.name)
    return pick(np.sort(tr)), pick(np.sort(te))


@functools.lru_cache(maxsize=2)
def _authors_corpus(args_json: str):
    """The fictitious-authors corpus for these arguments (its own ``seed`` argument fixes it, not the run's seed)."""
    from .data import authors

    return authors(**json.loads(args_json))


def _load_jsonl(spec: dict[str, Any], test_fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """``(train, test)`` TextDatasets from a JSONL file: a seeded ``test_fraction`` of its groups (``group_key``),
    or of its rows without one, held out as the test set (the non-members of the membership attacks)."""
    from .data.text import TextDataset, load_jsonl
    from .lm.models import _transformers

    tokenizer = _transformers().AutoTokenizer.from_pretrained(spec["tokenizer"], local_files_only=True)
    full = load_jsonl(spec["jsonl"], tokenizer, group_key=spec.get("group_key"), max_length=spec.get("max_length"))
    rng = np.random.default_rng(seed)
    if full.groups is not None:
        values = np.unique(full.groups.astype(str))
        held = rng.permutation(values)[:max(1, int(round(test_fraction * len(values))))]
        test_rows = np.isin(full.groups.astype(str), held)
        what = f"{len(values)} groups ({spec['group_key']})"
    else:
        test_rows = np.zeros(len(full), dtype=bool)
        test_rows[rng.permutation(len(full))[:max(1, int(round(test_fraction * len(full))))]] = True
        what = f"{len(full)} records"
    if test_rows.all() or not test_rows.any():
        raise ValueError(f"{spec['jsonl']}: test_fraction={test_fraction} of {what} leaves no data to train on")

    def pick(rows: np.ndarray, name: str) -> TextDataset:
        chosen = np.flatnonzero(rows)
        return TextDataset([full.records[i] for i in chosen], tokenizer, max_length=spec.get("max_length"),
                           groups=None if full.groups is None else full.groups[chosen], name=name)

    return pick(~test_rows, full.name), pick(test_rows, f"{full.name} (held out)")


def scoring_sets(train: Dataset, world: Dataset | None = None) -> dict[str, Any]:
    """Extra ``evaluate`` arguments: on text data the world-facts set, given or found as ``train``'s rows of group
    -1 (the authors corpus marks its world facts so); nothing on other data."""
    from .data.datasets import resolve

    base, _ = resolve(train)
    if base.task != "language":
        return {}
    if world is None:
        world = world_facts(train)
    return {"world": world} if world is not None else {}


def world_facts(train: Dataset) -> Dataset | None:
    """The rows of ``train`` whose group is -1 (the world facts of the authors corpus), or None."""
    groups = groups_of(train)
    if groups is None or not np.issubdtype(np.asarray(groups).dtype, np.number):
        return None
    rows = np.flatnonzero(np.asarray(groups) == -1)
    return Subset(train, rows.tolist()) if len(rows) else None


def build_template(spec: dict[str, Any], train: Dataset, *, seed: int = 0) -> nn.Module:
    """The untrained model of a config's ``model`` section: a built-in architecture sized for ``train``, a language
    model configuration (``llama``, ``moe``) for its tokenizer, a local transformers model directory (``path``), or
    an image generator (``unet``, ``gan``) for the classes, size and channels of ``train``'s images."""
    from .config import GENERATION_MODELS, LANGUAGE_MODELS

    if "path" in spec:
        from .lm import CausalLM
        from .modelio import check_language_model_files

        check_language_model_files(spec["path"])     # safetensors weights only: a pickle file is never read
        return CausalLM.from_pretrained(spec["path"])
    if spec["name"] in LANGUAGE_MODELS:
        from . import lm
        from .data.text import text_base

        base, _ = text_base(train)
        return getattr(lm, spec["name"])(base.tokenizer, seed=seed, **spec.get("args", {}))
    if spec["name"] in GENERATION_MODELS:
        from . import gen
        from .data.datasets import resolve

        base, _ = resolve(train)
        channels, height, width = (int(v) for v in base.x.shape[1:])
        if height != width:
            raise ValueError(f"model.name {spec['name']} generates square images; the data's images are "
                             f"{height}x{width} (set data.generation.size)")
        return getattr(gen, spec["name"])(base.num_classes, size=height, channels=channels, seed=seed,
                                          **spec.get("args", {}))
    return api.model(spec["name"], train, seed=seed, **spec.get("args", {}))


def _stratifiable(y: np.ndarray) -> bool:
    return bool(np.unique(y, return_counts=True)[1].min() >= 2)


def make_split(train: Dataset, spec: dict[str, Any], seed: int):
    """``(forget, retain)`` for a config's forget section."""
    s = spec.get("seed", seed)
    if "fraction" in spec:
        return split_forget(train, fraction=spec["fraction"], seed=s)
    if "group_fraction" in spec:
        chosen = draw_groups(train, spec["group_fraction"], s, avoid=spec.get("avoid", ()))
        return split_forget(train, where=lambda g: np.isin(g, chosen))
    if "classes" in spec:
        return split_forget(train, classes=spec["classes"])
    if "indices" in spec:
        return split_forget(train, indices=spec["indices"])
    groups = groups_of(train)
    if groups is None:
        raise ValueError("forget.groups needs per-row groups in the data (data.groups: <CSV column>)")
    return split_forget(train, where=_group_matcher(groups, list(spec["groups"])))


def draw_groups(train: Dataset, fraction: float, seed: int, *, avoid: Any = ()) -> np.ndarray:
    """A seeded share ``fraction`` of ``train``'s groups (``max(1, round(fraction * n))`` of the ``n`` groups; numeric
    groups below 0, such as the authors corpus's world facts, are never drawn). ``avoid``: ``[fraction, seed]``
    pairs whose draws are left out of the candidates (a tuning forget set of other authors than the evaluated ones)."""
    groups = groups_of(train)
    if groups is None:
        raise ValueError("forget.group_fraction needs per-row groups in the data (e.g. data.group_key: author)")
    groups = np.asarray(groups)
    values = np.unique(groups)
    if np.issubdtype(values.dtype, np.number):
        values = values[values >= 0]
    n = len(values)
    k = max(1, int(round(fraction * n)))
    excluded = set()
    for f, s in avoid:
        excluded.update(draw_groups(train, f, s).tolist())
    candidates = np.array([v for v in values if v not in excluded], dtype=values.dtype)
    if k >= n:
        raise ValueError(f"forget.group_fraction={fraction} would forget all {n} groups; allowed: a fraction that "
                         "leaves at least one group to retain")
    if k > len(candidates):
        raise ValueError(f"forget.group_fraction={fraction} asks {k} groups, but only {len(candidates)} of {n} are "
                         "left outside the evaluated forget sets to tune on")
    g = torch.Generator().manual_seed(int(seed))
    order = torch.randperm(len(candidates), generator=g).numpy()
    return np.sort(candidates[order[:k]])


def _group_matcher(groups: np.ndarray, wanted: list[Any]) -> Callable[[np.ndarray], np.ndarray]:
    """A predicate over the data's groups selecting ``wanted``; numbers match numbers, text matches text. Every
    wanted group must exist (a typo would otherwise forget nothing)."""
    numeric = np.issubdtype(groups.dtype, np.number)
    values = []
    for w in wanted:
        if numeric:
            try:
                values.append(float(w))
            except (TypeError, ValueError):
                raise ValueError(f"forget.groups: {w!r} is not a number, but the data's groups are numbers "
                                 f"(e.g. {', '.join(map(str, np.unique(groups)[:5]))})") from None
        else:
            values.append(str(w))
    present = set(np.unique(groups.astype(np.float64) if numeric else groups.astype(str)).tolist())
    missing = [w for w, v in zip(wanted, values) if v not in present]
    if missing:
        sample = sorted(present)[:5]
        raise ValueError(f"forget.groups: no rows with group {missing[0]!r}; the data's groups include "
                         f"{', '.join(str(int(g)) if numeric and float(g).is_integer() else str(g) for g in sample)}")
    if numeric:
        return lambda g: np.isin(g.astype(np.float64), values)
    return lambda g: np.isin(g.astype(str), values)


def prepare(cfg: ExperimentConfig) -> Prepared:
    train, test = load_data(cfg.data, cfg.seed)
    forget, retain = make_split(train, cfg.forget, cfg.seed)
    template = build_template(cfg.model, train)
    return Prepared(train, test, forget, retain, template, world_facts(train))


def check_experiment(cfg: ExperimentConfig, prepared: Prepared) -> None:
    """Check that the method can run on this data, model and forget request, before anything is trained."""
    from .methods import get
    from .methods.base import check_request

    cls = get(cfg.method)
    if cls.needs_special_original:
        raise ValueError(f"method {cfg.method!r} needs a specially trained original (see its documentation); "
                         "experiment configs train one ordinary model; choose another method")
    if cls.requires_conv and not any(isinstance(m, nn.Conv2d) for m in prepared.template.modules()):
        raise ValueError(f"method {cfg.method!r} needs convolution layers and model "
                         f"{cfg.model.get('name', cfg.model.get('path'))!r} has none; "
                         "use model.name cnn or resnet18 on image data, or another method")
    api.check_outputs(prepared.template, prepared.train)
    check_tokenizer(prepared.template, prepared.train)
    check_request(prepared.template, prepared.forget, prepared.retain, cls(**cfg.args))
    if cfg.scoring.get("evidence") == "iam":
        from .audit.iam import check_iam_request

        try:
            check_iam_request(prepared.forget, prepared.retain)
        except ValueError as e:                       # worded as a bench's parse of the same section
            raise ConfigError("scoring.evidence", str(e)) from None


def check_tokenizer(model: nn.Module, train: Dataset) -> None:
    """A language model read from a directory must come with the tokenizer its text data was encoded with."""
    from .data.datasets import resolve

    base, _ = resolve(train)
    own = getattr(model, "tokenizer", None)
    data = getattr(base, "tokenizer", None)
    if own is not None and data is not None and own is not data and own.get_vocab() != data.get_vocab():
        raise ValueError("the data was encoded with another tokenizer than the model's; give data.tokenizer the "
                         "model's directory")


def compare_methods(prepared: Prepared, methods: dict[str, dict[str, Any]], *, recipe: dict[str, Any],
                    seed: int = 0, scenario: str = "", original: nn.Module | None = None,
                    on_result: Callable[[MethodResult], None] | None = None,
                    noise_floor: bool = False, scoring: dict[str, Any] | None = None) -> Comparison:
    """Train the original (unless given) and the oracle once; run and score every method against the oracle.

    A method that diverges or fails is reported with its error and no scores; the others still run. With
    ``noise_floor`` a second oracle (seed + :data:`FLOOR_SEED_OFFSET`) is scored against the first
    (``Comparison.floor``): the gap of exact retraining to itself, which ``expunge.verdict`` reads gaps against.
    ``scoring``: extra ``evaluate`` arguments for every score (a config's ``scoring`` section); with ``evidence:
    "iam"`` one IAM shadow model is trained from the original (after the oracle) and every row, the original's,
    the oracle's, the noise floor's and each method's, is scored against it (:mod:`expunge.audit.iam`); its
    training time is ``Comparison.iam_shadow_seconds`` (a run records it as the metric ``iam_shadow_seconds``).
    """
    p = prepared
    scoring = dict(scoring or {})
    evidence = scoring.pop("evidence", None)
    if evidence not in (None, "iam"):
        raise ValueError(f"scoring evidence must be 'iam'; got {evidence!r}")
    if original is None:
        original = api.train(p.template, p.train, seed=seed, **recipe)
    oracle = api.unlearn(original, forget=p.forget, retain=p.retain, method="retrain", seed=seed)
    shadow = None
    if evidence == "iam":
        from .audit.iam import train_shadow

        shadow = train_shadow(original, forget=p.forget, retain=p.retain, seed=seed)

    def score(m: nn.Module, ref: nn.Module | None = oracle) -> dict[str, float]:
        scores = evaluate(m, forget=p.forget, retain=p.retain, test=p.test, reference=ref, seed=seed, **p.scoring,
                          **scoring)
        if shadow is not None:
            from .audit.iam import iam

            scores.update(iam(m, forget=p.forget, retain=p.retain, test=p.test, shadow=shadow).summary())
        return scores

    original_scores = score(original)
    original_scores.pop("rte", None)   # the original's training time is not an unlearning cost
    comp = Comparison(scenario, original_scores, score(oracle, None),
                      sizes={k: len(getattr(p, k)) for k in ("train", "forget", "retain", "test")},
                      iam_shadow_seconds=None if shadow is None else shadow.seconds)
    if is_generative(original):
        comp.models = {"original": original, "oracle": oracle}
    if noise_floor:
        second = api.unlearn(original, forget=p.forget, retain=p.retain, method="retrain",
                             seed=seed + FLOOR_SEED_OFFSET)
        comp.floor = score(second)
    for name, args in methods.items():
        try:
            model = api.unlearn(original, forget=p.forget, retain=p.retain, method=name, seed=seed, **args)
            result = MethodResult(name, score(model), model)
        except DivergenceError as e:
            result = MethodResult(name, {}, None, f"diverged: {e}")
        comp.results.append(result)
        if on_result:
            on_result(result)
    return comp


def output_dir(cfg: ExperimentConfig, out: str | Path | None = None) -> Path:
    """Where a run saves its model: ``out``, else the config's ``out``, else ``expunge-runs/<name>``."""
    return Path(out or cfg.out or Path("expunge-runs") / cfg.name)


def run_experiment(cfg: ExperimentConfig, *, store: RunStore | None = None, out: str | Path | None = None,
                   prepared: Prepared | None = None,
                   on_message: Callable[[str], None] | None = None) -> tuple[str | None, Comparison]:
    """Run one config end to end; record params, metrics and the saved model in ``store``. Everything about the
    data, model and method is checked before the run is recorded or anything is trained. With ``args: auto``
    (``cfg.tune_trials``) the method's arguments come from a quick tuning (``expunge.tuning.quick_tune``); its
    budget and rough time go to ``on_message`` before it starts, and the tuned arguments are recorded."""
    from .tuning import tuning_set

    prepared = prepared or prepare(cfg)
    check_experiment(cfg, prepared)
    tset = tuning_set(prepared.train, prepared.forget, seed=cfg.seed) if cfg.tune_trials else None
    out_dir = output_dir(cfg, out)
    run_id = None
    ctx = store.run(cfg.name, "run", params=cfg.to_dict()) if store else _null_run()
    with ctx as run_id:
        start = time.perf_counter()
        args, original = cfg.args, None
        if tset is not None:
            args, original = _quick_tuned(cfg, prepared, tset, on_message or (lambda line: None))
            if store and run_id:
                store.log_params(run_id, {"tuned_args": args})
        comp = compare_methods(prepared, {cfg.method: args}, recipe=cfg.train.to_dict(), seed=cfg.seed,
                               scenario=str(cfg.forget), original=original, scoring=cfg.scoring)
        result = comp.results[0]
        if result.error:
            raise DivergenceError(result.error)
        language = getattr(result.model, "tokenizer", None) is not None    # saved as a transformers directory
        model_path = save_model(result.model, out_dir / (cfg.method if language else f"{cfg.method}.safetensors"))
        references = {kind: save_model(m, out_dir / f"{kind}.safetensors") for kind, m in comp.models.items()
                      if kind != cfg.method}     # an image generator's original and oracle: the report's grids
        if store and run_id:
            store.log_metrics(run_id, {**result.scores, **{f"oracle_{k}": v for k, v in comp.oracle.items()},
                                       **{f"original_{k}": v for k, v in comp.original.items()},
                                       **({} if comp.iam_shadow_seconds is None else
                                          {"iam_shadow_seconds": comp.iam_shadow_seconds}),
                                       "wall_seconds": time.perf_counter() - start})
            store.log_artifact(run_id, model_path.resolve(), "model")
            for kind, path in references.items():
                store.log_artifact(run_id, path.resolve(), kind)
    return run_id, comp


def _quick_tuned(cfg: ExperimentConfig, p: Prepared, tset, say: Callable[[str], None]) -> tuple[dict, nn.Module]:
    """Train the original, then tune the method on ``tset``; return the tuned arguments and the original."""
    from .tuning import TuningError, estimate_seconds, quick_tune, train_oracle

    from .methods import get

    original = api.train(p.template, p.train, seed=cfg.seed, **cfg.train.to_dict())
    grid = list(get(cfg.method).grid)
    if not set(grid) - set(cfg.args):
        say(f"nothing to tune: the config sets every argument of {cfg.method}'s grid ({', '.join(grid) or 'none'}); "
            "running with them")
        return dict(cfg.args), original
    start = time.perf_counter()
    scoring = {k: v for k, v in {**p.scoring, **cfg.scoring}.items() if k != "evidence"}   # trials need no IAM
    train_oracle(original, tset, test=p.test, seed=cfg.seed, scoring=scoring)
    est = estimate_seconds([cfg.method], tset, cfg.tune_trials, cfg.args)
    say(f"quick tuning of {cfg.method}: {cfg.tune_trials} trial(s) against the oracle of another forget set "
        f"({tset.description}, retrained in {tset.oracle_seconds:.1f}s); about "
        f"{'?' if est is None else f'{est:.0f}'}s more (rough estimate)")
    try:
        result = quick_tune(cfg.method, original, tset, test=p.test, trials=cfg.tune_trials, seed=cfg.seed,
                            fixed=cfg.args, scoring=scoring)
    except TuningError as e:
        raise DivergenceError(f"quick tuning found no working arguments: {e}") from None
    say(f"tuned {cfg.method}: {result.best_args} ({result.objective} {result.best_value:.2f} on the tuning set) in "
        f"{time.perf_counter() - start:.0f}s")
    return result.best_args, original


class _null_run:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None
