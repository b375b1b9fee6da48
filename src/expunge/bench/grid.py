"""The job graph of a benchmark: stages, jobs and their content keys.

Stages run in this order, each job depending only on jobs of earlier stages:

- ``original``: train the model on the data with the recipe, under a seed;
- ``select``: pick a worst-case forget set for an original (``expunge.worst_case``);
- ``oracle``: retrain on the retain set of a forget request, and score the original and the oracle;
- ``tune``: search a method's hyperparameters against an oracle on a tuning forget set (``expunge.tuning``): the
  arguments in its search space (``tuning.space``, default: the method's grid) are searched, its other configured
  arguments stay fixed; the unlearn jobs then use the configured arguments updated with the best found;
- ``unlearn``: run a method on an original and score it against the oracle; where the bench measures the noise
  floor (the language and generation tasks by default), also a second oracle per cell, retrained under another seed
  (``unlearn_seed`` = seed + ``FLOOR_SEED_OFFSET``) and scored against the first, like a method.

Language scenarios forgetting a share of the groups (``group_fraction``: authors) are tuned on a share of the
same size drawn from the groups that no evaluated scenario and seed forgets (``avoid``), so tuning never sees the
authors a method is scored on.

A job's key hashes everything that determines its result: its own settings, the keys of the jobs it depends on
(so, transitively, the data, model, recipe, forget request, method and arguments, seeds) and the package
version. Identical jobs collapse into one, so an original is trained once per setup and seed, and an oracle once
per original and forget set, however many methods and scenarios use them.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from .. import __version__
from ..experiment import FLOOR_SEED_OFFSET
from ..methods.base import registered
from .choices import base_method
from .spec import BenchSpec, Scenario, Setup

STAGES = ("original", "select", "oracle", "tune", "unlearn")
MODEL_STAGES = ("original", "oracle")


@dataclass(frozen=True)
class Job:
    key: str
    kind: str
    spec: dict[str, Any]                 # the job's own settings (hashed)
    deps: dict[str, str]                 # role -> key of the job it depends on (hashed)
    labels: dict[str, Any] = field(default_factory=dict)   # setup, scenario, method, seed (for people; not hashed)


@dataclass
class Cell:
    """One (setup, scenario, seed): its original, oracle, and the unlearn (and tune) job of each method."""

    setup: str
    scenario: str
    seed: int
    original: str
    oracle: str
    unlearn: dict[str, str] = field(default_factory=dict)
    tune: dict[str, str] = field(default_factory=dict)
    floor: str | None = None             # a second oracle (another seed) scored against the oracle


@dataclass
class Grid:
    name: str
    version: str
    jobs: dict[str, Job]
    cells: list[Cell]
    args: dict[str, dict[str, Any]]

    def by_stage(self, stage: str) -> list[Job]:
        return [j for j in self.jobs.values() if j.kind == stage]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "args": self.args,
                "jobs": [asdict(j) for j in self.jobs.values()], "cells": [asdict(c) for c in self.cells]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Grid":
        jobs = {j["key"]: Job(**j) for j in d["jobs"]}
        return cls(d["name"], d["version"], jobs, [Cell(**c) for c in d["cells"]], d.get("args", {}))


def job_key(kind: str, spec: dict[str, Any], deps: dict[str, str], version: str = __version__) -> str:
    """The content key of a job: a hash of its kind, settings, dependencies' keys and the package version."""
    blob = json.dumps({"kind": kind, "spec": spec, "deps": deps, "version": version}, sort_keys=True,
                      separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


class _Builder:
    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}

    def add(self, kind: str, spec: dict[str, Any], deps: dict[str, str], labels: dict[str, Any]) -> str:
        key = job_key(kind, spec, deps)
        self.jobs.setdefault(key, Job(key, kind, spec, deps, labels))
        return key


def expand(bench: BenchSpec) -> Grid:
    """Every job of the bench, deduplicated by key, and the cells that reports read."""
    b = _Builder()
    cells: list[Cell] = []
    scoring = {"scoring": dict(bench.scoring)} if bench.scoring else {}   # only then: other benches keep their keys
    without_iam = {k: v for k, v in bench.scoring.items() if k != "evidence"}   # tuning goes without IAM
    tuning_scoring = {"scoring": without_iam} if without_iam else {}
    for setup in bench.setups:
        methods = bench.methods_for(setup)
        originals = {seed: _original(b, setup, seed) for seed in bench.seeds}
        for scenario in bench.scenarios:
            tunes = {}
            if bench.tuning:
                t = bench.tuning
                to = _original(b, setup, t.seed)
                tforget, tdeps = _forget(b, _tuning_request(bench, scenario), t.forget_seed, to, {})
                tlabels = {"setup": setup.label, "scenario": f"tuning for {scenario.name}", "seed": t.seed}
                tor = b.add("oracle", {"forget": tforget, "seed": t.seed, **tuning_scoring}, {"original": to, **tdeps},
                            tlabels)
                for m in (m for m in t.methods if m in methods):
                    searched = set(t.space.get(m) or registered()[base_method(m)].grid)
                    fixed = {k: v for k, v in methods[m].items() if k not in searched}
                    spec = {"forget": tforget, "method": base_method(m), "fixed": fixed, "trials": t.trials,
                            "space": t.space.get(m), "objective": t.objective, "seed": t.seed, **tuning_scoring}
                    tunes[m] = b.add("tune", spec, {"original": to, "oracle": tor}, {**tlabels, "method": m})
            for seed in bench.seeds:
                o = originals[seed]
                labels = {"setup": setup.label, "scenario": scenario.name, "seed": seed}
                forget, fdeps = _forget(b, scenario.forget, seed, o, labels)
                oracle = b.add("oracle", {"forget": forget, "seed": seed, **scoring}, {"original": o, **fdeps},
                               labels)
                cell = Cell(setup.label, scenario.name, seed, o, oracle, tune=dict(tunes))
                for m, args in methods.items():
                    deps = {"original": o, "oracle": oracle, **fdeps, **({"tune": tunes[m]} if m in tunes else {})}
                    spec = {"forget": forget, "method": base_method(m), "args": args, "seed": seed, **scoring}
                    cell.unlearn[m] = b.add("unlearn", spec, deps, {**labels, "method": m})
                if bench.floor_for(setup):
                    spec = {"forget": forget, "method": "retrain", "args": {}, "seed": seed,
                            "unlearn_seed": seed + FLOOR_SEED_OFFSET, **scoring}
                    cell.floor = b.add("unlearn", spec, {"original": o, "oracle": oracle, **fdeps},
                                       {**labels, "method": "oracle, other seed (floor)"})
                cells.append(cell)
    return Grid(bench.name, __version__, _ordered(b.jobs), cells, dict(bench.methods))


def _original(b: _Builder, setup: Setup, seed: int) -> str:
    spec = {"data": setup.data, "model": setup.model, "recipe": setup.recipe, "seed": seed}
    if setup.sparse:   # only then: dense setups keep their job keys
        spec["sparse"] = setup.sparse
    if setup.device != "cpu":   # only then: CPU setups keep their job keys
        spec["device"] = setup.device
    return b.add("original", spec, {}, {"setup": setup.label, "seed": seed})


def _tuning_request(bench: BenchSpec, scenario: Scenario) -> dict[str, Any]:
    """The forget request ``scenario`` is tuned on; a share of groups avoids every group an evaluated scenario and
    seed of the bench forgets."""
    request = dict(scenario.tune_on or {})
    if "group_fraction" in request:
        request["avoid"] = sorted({(s.forget["group_fraction"], s.forget.get("seed", seed))
                                   for s in bench.scenarios if "group_fraction" in s.forget for seed in bench.seeds})
        request["avoid"] = [list(pair) for pair in request["avoid"]]
    return request


def _forget(b: _Builder, forget: dict[str, Any], seed: int, original: str,
            labels: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The forget request a job sees (random fractions get their split seed) and the jobs it depends on."""
    if "fraction" in forget:
        return {"fraction": forget["fraction"], "seed": forget.get("seed", seed)}, {}
    if "group_fraction" in forget:
        return {**forget, "seed": forget.get("seed", seed)}, {}
    if "worst_case" in forget:
        wc = dict(forget["worst_case"])
        select = b.add("select", {**wc, "seed": seed}, {"original": original}, labels)
        return {"worst_case": True}, {"select": select}
    return dict(forget), {}


def _ordered(jobs: dict[str, Job]) -> dict[str, Job]:
    """Jobs by stage, in the order they were first asked for within a stage."""
    return {j.key: j for stage in STAGES for j in jobs.values() if j.kind == stage}


def is_timing(metric: str) -> bool:
    """Wall-time metrics, which differ between runs of the same job."""
    return metric in ("seconds", "rte", "job_seconds") or metric.endswith(("_seconds", "_rte"))


__all__ = ["STAGES", "Job", "Cell", "Grid", "job_key", "expand", "is_timing", "Scenario"]
