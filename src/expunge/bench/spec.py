"""Benchmark configs: datasets/models × forget scenarios × methods × seeds, validated with key-path errors.

```yaml
name: digits
seeds: 3                                        # seeds 0, 1, 2; or a list such as [0, 5, 9]
data: {name: digits, test_fraction: 0.2}        # as in `expunge run`; or a list of such, each with a `label`
model: {name: mlp, args: {hidden: [128, 64]}}   # or a list; an entry may carry its own `train` and `label`
                                                # and `sparse: {sparsity: 0.95, rewind: auto}`: a sparse original
                                                # (expunge.sparsify: prune first, then unlearn)
train: {epochs: 30, lr: 0.05, schedule: cosine} # the original's recipe (fields of expunge.Recipe)
scenarios:
  - {name: random 10%, fraction: 0.1}           # a random fraction, drawn with the job's seed unless `seed` is set
  - {name: class 3, classes: [3]}               # class-wise
  - {name: worst-case 10%, worst_case: 0.1}     # or {fraction|size, method, args, select_epochs, ...}
  - {name: user 17, groups: [17]}               # identity predicate over the data's per-row groups
methods: all          # every method for the data's task (not retrain, not special originals); or [a, b]; or {a: {..}}
exclude: [ssd]        # with `all`
args: {finetune: {epochs: 5, lr: 0.02}}         # per-method argument overrides (ignored for methods not run)
tuning:               # optional: Optuna per method and tuning forget set (see expunge.tuning)
  trials: 20
  methods: all        # or a list
  seed: 0             # the seed of the original (and oracle) that tuning runs on
  forget_seed: 1000   # the seed of the random tuning forget sets
  space: {finetune: {lr: [0.01, 0.05]}}         # per-method search spaces (default: the method's grid)
out: bench-digits     # output directory: job store, model cache, reports (relative to the current directory)
summary: benchmarks/results/digits.json         # optional extra copy of results.json
device: cpu           # where jobs run: cpu (default), auto, cuda, cuda:N, mps (expunge.devices); not cpu: new job keys
scoring: {max_examples: 100}   # optional extra arguments of expunge.evaluate (language models: rows scored per set;
                               # image generators: samples_per_class, images drawn per class, and
                               # attack: false, no embedding-space attack; classifiers: evidence: iam, IAM of
                               # every row against one shadow per job, trained from the cell's original)
noise_floor: true     # a second oracle per cell (another seed), scored against the oracle: the noise floor
                      # (default: on the language and generation tasks only; elsewhere the oracles of different
                      # seeds are paired)
```

Image generators: ``data: {name: digits, generation: true}`` (or ``generation: {size: 16}``; labelled images
through ``expunge.data.for_generation``), ``model: {name: unet, args: {...}}`` (the default on generation data) or
``{name: gan}``, ``train`` filled with the model's own ``recipe_defaults`` (as ``expunge.train`` does), class-wise
scenarios, ``scoring: {samples_per_class: 20, attack: false}``. ``methods: all`` runs the generation methods that
unlearn the model's kind (a method's ``kinds``); a method named for a kind it does not unlearn is refused.

Language models: ``data: {name: authors, args: {...}}`` or ``{jsonl: f.jsonl, tokenizer: dir, group_key: author}``,
``model: {name: llama, args: {...}}`` (the default on text data) or ``{path: dir}``, ``train`` filled with the
language task's defaults, scenarios ``{group_fraction: 0.05}`` (a seeded share of the authors), and method
variants in a ``methods`` mapping: ``npo+lora: {lora: {r: 8}}`` runs ``npo`` with LoRA under its own row.

Tuning forget sets (``tune_on`` per scenario, overridable): a random fraction ``f`` for ``fraction: f`` and for
``worst_case: f`` (tune on a random set, reuse on the worst-case set: Fan et al., "Challenging Forgets", ECCV 2024),
drawn with ``tuning.forget_seed``; for ``group_fraction: f`` the same share of the groups, drawn from those that no
evaluated scenario and seed forgets (other authors); the scenario's own forget request otherwise (class-wise, groups,
indices).
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..devices import device_form
from ..config import (DEFAULT_MODELS, GENERATION_KINDS, ConfigError, _parse_data, _parse_model, _parse_train,
                      apply_overrides, check_model_for_data, model_recipe_defaults, parse_scoring, read_yaml)
from ..methods.base import registered
from ..models import CONV_MODELS
from ._checks import at, check_int, check_mapping
from .choices import Tuning, base_method, parse_methods, parse_tuning
from .scenarios import Scenario, parse_scenarios

TOP_KEYS = ("name", "seeds", "data", "model", "train", "scenarios", "methods", "exclude", "args", "tuning", "out",
            "summary", "device", "scoring", "noise_floor")


@dataclass(frozen=True)
class Setup:
    """One dataset with one model and its training recipe."""

    label: str
    data: dict[str, Any]
    model: dict[str, Any]
    recipe: dict[str, Any]
    task: str
    sparse: dict[str, Any] | None = None   # expunge.sparsify arguments: the original is made sparse before unlearning
    device: str = "cpu"                    # where every job of the setup runs (expunge.devices; part of the job keys)


@dataclass
class BenchSpec:
    name: str
    seeds: list[int]
    setups: list[Setup]
    scenarios: list[Scenario]
    methods: dict[str, dict[str, Any]]
    tuning: Tuning | None = None
    out: str = ""
    summary: str | None = None
    scoring: dict[str, Any] = dataclasses.field(default_factory=dict)   # extra evaluate arguments (max_examples)
    noise_floor: bool | None = None     # a second oracle per cell (None: on the language task only)

    def methods_for(self, setup: Setup) -> dict[str, dict[str, Any]]:
        """The methods that apply to ``setup``: its task (``methods: all`` may list methods of other tasks) and, for
        methods that need convolution layers, a convolutional model; for image generators, the model's kind."""
        known = registered()
        conv = setup.model.get("name") in CONV_MODELS
        kind = GENERATION_KINDS.get(setup.model.get("name"))
        return {m: a for m, a in self.methods.items()
                if setup.task in known[base_method(m)].tasks and (conv or not known[base_method(m)].requires_conv)
                and (kind is None or kind in getattr(known[base_method(m)], "kinds", (kind,)))}

    def floor_for(self, setup: Setup) -> bool:
        """Whether each cell of ``setup`` trains a second oracle (another seed) for the noise floor."""
        return setup.task in ("language", "generation") if self.noise_floor is None else self.noise_floor


def load_bench(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> BenchSpec:
    """Read, override and validate a benchmark config file."""
    raw = read_yaml(path)
    return parse_bench(apply_overrides(raw, overrides), base_dir=Path(path).parent)


def parse_bench(raw: dict[str, Any], *, base_dir: Path = Path(".")) -> BenchSpec:
    unknown = sorted(set(raw) - set(TOP_KEYS))
    if unknown:
        raise ConfigError(unknown[0], f"unknown key; allowed: {', '.join(TOP_KEYS)}")
    name = str(raw.get("name") or "bench")
    seeds = _seeds(raw.get("seeds", 1))
    setups = _setups(raw, base_dir, seeds[0])
    if raw.get("device") is not None:
        try:
            device = device_form(raw["device"])
        except ValueError as e:
            raise ConfigError("device", str(e)) from None
        setups = [dataclasses.replace(s, device=device) for s in setups]
    scenarios = parse_scenarios(raw.get("scenarios"), {s.task for s in setups})
    methods = parse_methods(raw, {s.task for s in setups})
    if raw.get("methods", "all") != "all":
        _check_kinds(methods, setups)
    tuning = parse_tuning(raw.get("tuning"), methods, scenarios)
    out = raw.get("out") or f"bench-{name}"
    summary = raw.get("summary")
    for key, value in (("out", out), ("summary", summary)):
        if value is not None and not isinstance(value, str):
            raise ConfigError(key, f"expected a path; got {value!r}")
    scoring = _scoring(raw.get("scoring"), {setup.task for setup in setups})
    floor = raw.get("noise_floor")
    if floor is not None and not isinstance(floor, bool):
        raise ConfigError("noise_floor", f"expected true or false; got {floor!r}")
    return BenchSpec(name, seeds, setups, scenarios, methods, tuning, out, summary, scoring, floor)


def _scoring(value: Any, tasks: set[str]) -> dict[str, Any]:
    """The ``scoring`` section: extra arguments of ``expunge.evaluate`` for every score (``max_examples``: score at
    most this many rows of each set, a seeded sample; language models. ``samples_per_class``: images drawn per
    class; image generators). Every setup must be of the task a key applies to."""
    if value is None:
        return {}
    spec: dict[str, Any] = {}
    for task in sorted(tasks):
        spec = parse_scoring(value, task)
    return spec


def _check_kinds(methods: dict[str, dict[str, Any]], setups: list[Setup]) -> None:
    """A generation method named in ``methods`` must unlearn the kind of every image generator it would run on (a
    method without ``kinds``, such as ``retrain``, takes every kind)."""
    known = registered()
    for setup in setups:
        kind = GENERATION_KINDS.get(setup.model.get("name"))
        for m in methods:
            cls = known[base_method(m)]
            if kind is not None and setup.task in cls.tasks and kind not in getattr(cls, "kinds", (kind,)):
                raise ConfigError(f"methods.{m}", f"unlearns {' and '.join(getattr(cls, 'kinds', ()))} models; "
                                                  f"model.name {setup.model['name']} is a {kind} model (remove it "
                                                  f"or use methods: all)")


def _seeds(value: Any) -> list[int]:
    if isinstance(value, list):
        if not value:
            raise ConfigError("seeds", "expected a non-empty list of integers >= 0")
        seeds = [check_int(v, f"seeds[{i}]") for i, v in enumerate(value)]
        if len(set(seeds)) != len(seeds):
            raise ConfigError("seeds", f"seeds repeat: {seeds}")
        return seeds
    return list(range(check_int(value, "seeds", 1)))


def _entries(raw: dict[str, Any], key: str, default: Any) -> list[tuple[str, dict[str, Any]]]:
    value = raw.get(key, default)
    if isinstance(value, list):
        if not value:
            raise ConfigError(key, "expected a mapping or a non-empty list of mappings")
        return [(f"{key}[{i}]", dict(check_mapping(v, f"{key}[{i}]"))) for i, v in enumerate(value)]
    return [(key, dict(check_mapping(value, key)))]


def _setups(raw: dict[str, Any], base_dir: Path, seed: int) -> list[Setup]:
    if raw.get("data") is None:
        raise ConfigError("data", "is required")
    given = dict(check_mapping(raw.get("train") or {}, "train"))
    with at("train"):
        recipe = _parse_train(given).to_dict()
    datas = []
    for path, data in _entries(raw, "data", None):
        label = str(data.pop("label", "") or data.get("name") or Path(str(next(
            (data[k] for k in ("npz", "csv", "images", "jsonl") if k in data), "data"))).stem)
        with at(path):
            _parse_data(data, base_dir)
        datas.append((label, _with_content_hash(data), _task(data, seed, path)))
    tasks = {task for _, _, task in datas}
    default = DEFAULT_MODELS.get(next(iter(tasks)), "mlp") if len(tasks) == 1 else "mlp"
    models = []
    for path, model in _entries(raw, "model", {"name": default}):
        label = str(model.pop("label", "") or model.get("name") or Path(str(model.get("path", "model"))).name)
        train = model.pop("train", None)
        sparse = model.pop("sparse", None)
        with at(path):
            _parse_model(model, base_dir)
        own_given = {**given, **check_mapping(train or {}, f"{path}.train")}
        with at(f"{path}.train"):
            own = _parse_train(own_given).to_dict()
        models.append((label, _with_content_hash(model), own, own_given,
                       _sparse(sparse, f"{path}.sparse", own["epochs"]), path))
    setups = []
    for dl, d, task in datas:
        for ml, m, r, own_given, sp, path in models:
            try:
                check_model_for_data(m, task)
            except ConfigError as e:
                raise ConfigError(f"{path}.{e.path.partition('.')[2]}", str(e).split(": ", 1)[1]) from None
            if task in ("language", "generation"):   # what the config leaves out takes the task's defaults (and
                with at(f"{path}.train"):              # an image generator's own recipe_defaults)
                    r = _parse_train(own_given, task, model_recipe_defaults(m)).to_dict()
            setups.append(Setup(f"{dl}/{ml}" if len(datas) * len(models) > 1 else dl, d, m, r, task, sp))
    labels = [s.label for s in setups]
    if len(set(labels)) != len(labels):
        raise ConfigError("data", f"setups need distinct labels (give each data/model entry a label); got {labels}")
    return setups


def _sparse(value: Any, path: str, epochs: int) -> dict[str, Any] | None:
    """A model entry's ``sparse`` section as ``expunge.sparsify`` arguments (None when absent)."""
    if value is None:
        return None
    from ..sparsity import check_sparsity, rewind_epoch

    spec = dict(check_mapping(value, path))
    unknown = sorted(set(spec) - {"sparsity", "rewind"})
    if unknown:
        raise ConfigError(f"{path}.{unknown[0]}", "unknown key; allowed: sparsity, rewind")
    spec.setdefault("sparsity", 0.95)
    spec.setdefault("rewind", "auto")
    for key, check in (("sparsity", lambda: check_sparsity(spec["sparsity"])),
                       ("rewind", lambda: rewind_epoch(spec["rewind"], epochs))):
        try:
            check()
        except ValueError as e:
            raise ConfigError(f"{path}.{key}", str(e)) from None
    return {"sparsity": spec["sparsity"], "rewind": spec["rewind"]}


def _with_content_hash(data: dict[str, Any]) -> dict[str, Any]:
    """File sources (and model directories, tokenizers) carry a hash of their contents, so an edited file gives new
    job keys."""
    kinds = [k for k in ("npz", "csv", "images", "jsonl", "tokenizer", "path") if k in data]
    if not kinds:
        return data
    h = hashlib.sha256()
    for kind in kinds:
        p = Path(data[kind])
        files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
        for q in files:
            h.update(str(q.relative_to(p) if p.is_dir() else q.name).encode())
            h.update(q.read_bytes())
    return {**data, "sha256": h.hexdigest()[:16]}


def _task(data: dict[str, Any], seed: int, path: str) -> str:
    from .jobs import load_data

    try:
        train, _ = load_data(data, seed)
    except (ValueError, TypeError) as e:
        raise ConfigError(path, f"cannot be loaded: {e}") from None
    return train.task
