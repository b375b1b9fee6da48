"""Running experiments: config -> data and splits -> original -> oracle -> method -> scores.

``prepare`` turns a config into data and an untrained model; ``run_experiment`` runs one method and records it in
the run store; ``compare_methods`` trains the original and the oracle once and runs several methods against them
(the demo and the report tables use it).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from torch import nn
from torch.utils.data import Dataset

from . import api
from .config import ExperimentConfig
from .data import load_builtin, load_csv, load_image_folder, load_npz, split_forget
from .data.datasets import ArrayDataset, groups_of
from .evaluate import evaluate
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


def load_data(spec: dict[str, Any], seed: int) -> tuple[Dataset, Dataset]:
    """``(train, test)`` for a config's data section."""
    tf = spec.get("test_fraction", 0.2)
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


def _split_file_data(full: ArrayDataset, test_fraction: float, seed: int) -> tuple[ArrayDataset, ArrayDataset]:
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(full))
    strat = full.y.numpy() if full.task == "classification" and _stratifiable(full.y.numpy()) else None
    tr, te = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=strat)
    pick = lambda ix: ArrayDataset(full.x[ix], full.y[ix], task=full.task, class_names=full.class_names,
                                   groups=None if full.groups is None else full.groups[ix], name=full.name)
    return pick(np.sort(tr)), pick(np.sort(te))


def _stratifiable(y: np.ndarray) -> bool:
    return bool(np.unique(y, return_counts=True)[1].min() >= 2)


def make_split(train: Dataset, spec: dict[str, Any], seed: int):
    """``(forget, retain)`` for a config's forget section."""
    s = spec.get("seed", seed)
    if "fraction" in spec:
        return split_forget(train, fraction=spec["fraction"], seed=s)
    if "classes" in spec:
        return split_forget(train, classes=spec["classes"])
    if "indices" in spec:
        return split_forget(train, indices=spec["indices"])
    groups = groups_of(train)
    if groups is None:
        raise ValueError("forget.groups needs per-row groups in the data (data.groups: <CSV column>)")
    wanted = [str(g) for g in spec["groups"]]
    return split_forget(train, where=lambda g: np.isin(g.astype(str), wanted))


def prepare(cfg: ExperimentConfig) -> Prepared:
    train, test = load_data(cfg.data, cfg.seed)
    forget, retain = make_split(train, cfg.forget, cfg.seed)
    template = api.model(cfg.model["name"], train, **cfg.model.get("args", {}))
    return Prepared(train, test, forget, retain, template)


def compare_methods(prepared: Prepared, methods: dict[str, dict[str, Any]], *, recipe: dict[str, Any],
                    seed: int = 0, scenario: str = "", original: nn.Module | None = None,
                    on_result: Callable[[MethodResult], None] | None = None) -> Comparison:
    """Train the original (unless given) and the oracle once; run and score every method against the oracle.

    A method that diverges or fails is reported with its error and no scores; the others still run.
    """
    p = prepared
    if original is None:
        original = api.train(p.template, p.train, seed=seed, **recipe)
    oracle = api.unlearn(original, forget=p.forget, retain=p.retain, method="retrain", seed=seed)
    score = lambda m, ref=oracle: evaluate(m, forget=p.forget, retain=p.retain, test=p.test, reference=ref,
                                           seed=seed)
    original_scores = score(original)
    original_scores.pop("rte", None)   # the original's training time is not an unlearning cost
    comp = Comparison(scenario, original_scores, score(oracle, None))
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


def run_experiment(cfg: ExperimentConfig, *, store: RunStore | None = None,
                   out: str | Path | None = None) -> tuple[str | None, Comparison]:
    """Run one config end to end; record params, metrics and the saved model in ``store``."""
    prepared = prepare(cfg)
    out_dir = Path(out or cfg.out or Path("expunge-runs") / cfg.name)
    run_id = None
    ctx = store.run(cfg.name, "run", params=cfg.to_dict()) if store else _null_run()
    with ctx as run_id:
        start = time.perf_counter()
        comp = compare_methods(prepared, {cfg.method: cfg.args}, recipe=cfg.train.to_dict(), seed=cfg.seed,
                               scenario=str(cfg.forget))
        result = comp.results[0]
        if result.error:
            raise DivergenceError(result.error)
        model_path = save_model(result.model, out_dir / f"{cfg.method}.safetensors")
        if store and run_id:
            store.log_metrics(run_id, {**result.scores, **{f"oracle_{k}": v for k, v in comp.oracle.items()},
                                       **{f"original_{k}": v for k, v in comp.original.items()},
                                       "wall_seconds": time.perf_counter() - start})
            store.log_artifact(run_id, model_path.resolve(), "model")
    return run_id, comp


class _null_run:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None
