"""Experiment configs: one YAML file names the data, model, training recipe, forget request, method and seed.

```yaml
name: digits-finetune            # optional
seed: 0
data: {name: digits, test_fraction: 0.2}     # or {npz: f.npz} / {csv: f.csv, target: label} / {images: dir}
model: {name: mlp, args: {hidden: [128, 64]}}
train: {epochs: 30, lr: 0.05}                # fields of expunge.Recipe
forget: {fraction: 0.1}                      # or {classes: [3]} / {indices: [1, 2]} / {groups: [17]}
method: finetune
args: {epochs: 5, lr: 0.01}                  # the method's arguments
```

Errors name the key path (``config error at train.lr: ...``). ``key.sub=value`` overrides (values parsed as YAML)
are applied before validation.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .data.builtin import BUILTIN
from .models import MODELS
from .training import Recipe

DATA_SOURCES = ("name", "npz", "csv", "images")
FORGET_KINDS = ("fraction", "classes", "indices", "groups")
TOP_KEYS = ("name", "seed", "data", "model", "train", "forget", "method", "args", "out")


class ConfigError(ValueError):
    """A config value is missing, unknown or ill-typed; the message names its key path."""

    def __init__(self, path: str, message: str):
        super().__init__(f"config error at {path}: {message}")
        self.path = path


@dataclass
class ExperimentConfig:
    data: dict[str, Any]
    model: dict[str, Any]
    train: Recipe
    forget: dict[str, Any]
    method: str = "finetune"
    args: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    name: str = ""
    out: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["train"] = self.train.to_dict()
        return d


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Read, override and validate an experiment config file."""
    raw = read_yaml(path)
    return parse_config(apply_overrides(raw, overrides), base_dir=Path(path).parent)


def read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"config file not found: {p}")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ValueError(f"{p} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise ConfigError("<top>", f"expected a mapping of settings; got {type(raw).__name__}")
    return raw


def apply_overrides(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Apply ``a.b=value`` overrides to a copy of ``raw``."""
    out = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key=value (e.g. train.lr=0.01)")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ValueError(f"override {item!r} has an empty key part")
        node = out
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(".".join(parts[:i + 1]), f"is a {type(child).__name__}, cannot set {key}")
            node = child
        try:
            node[parts[-1]] = yaml.safe_load(value)
        except yaml.YAMLError:
            node[parts[-1]] = value
    return out


def parse_config(raw: dict[str, Any], *, base_dir: Path = Path(".")) -> ExperimentConfig:
    unknown = sorted(set(raw) - set(TOP_KEYS))
    if unknown:
        raise ConfigError(unknown[0], f"unknown key; allowed: {', '.join(TOP_KEYS)}")
    data = _section(raw, "data", required=True)
    _parse_data(data, base_dir)
    model = _section(raw, "model", default={"name": "mlp"})
    _parse_model(model)
    train = _parse_train(_section(raw, "train", default={}))
    forget = _section(raw, "forget", required=True)
    _parse_forget(forget)
    method = raw.get("method", "finetune")
    if not isinstance(method, str):
        raise ConfigError("method", f"expected a method name; got {method!r}")
    args = _section(raw, "args", default={})
    _check_method(method, args)
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError("seed", f"expected an integer >= 0; got {seed!r}")
    name = raw.get("name") or f"{data.get('name') or Path(str(_source(data)[1])).stem}-{method}"
    out = raw.get("out")
    return ExperimentConfig(data=data, model=model, train=train, forget=forget, method=method, args=args,
                            seed=seed, name=str(name), out=None if out is None else str(out))


def _section(raw: dict[str, Any], key: str, *, required: bool = False, default: Any = None) -> dict[str, Any]:
    if key not in raw or raw[key] is None:
        if required:
            raise ConfigError(key, "is required")
        return copy.deepcopy(default)
    value = raw[key]
    if not isinstance(value, dict):
        raise ConfigError(key, f"expected a mapping; got {type(value).__name__} {value!r}")
    return value


def _source(data: dict[str, Any]) -> tuple[str, Any]:
    given = [k for k in DATA_SOURCES if k in data]
    if len(given) != 1:
        raise ConfigError("data", f"give exactly one of {', '.join(DATA_SOURCES)}; got {given or 'none'}")
    return given[0], data[given[0]]


def _parse_data(data: dict[str, Any], base_dir: Path) -> None:
    allowed = set(DATA_SOURCES) | {"test_fraction", "args", "target", "groups", "size", "grayscale", "task"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"data.{unknown[0]}", f"unknown key; allowed: {', '.join(sorted(allowed))}")
    kind, value = _source(data)
    if kind == "name":
        if value not in BUILTIN:
            raise ConfigError("data.name", f"unknown built-in dataset {value!r}; allowed: {', '.join(BUILTIN)}")
    else:
        p = Path(str(value))
        p = p if p.is_absolute() else base_dir / p
        if not p.exists():
            raise ConfigError(f"data.{kind}", f"file not found: {p}")
        data[kind] = str(p)
        if kind == "csv" and not isinstance(data.get("target"), str):
            raise ConfigError("data.target", "a CSV source needs the name of its target column")
    tf = data.get("test_fraction", 0.2)
    if isinstance(tf, bool) or not isinstance(tf, (int, float)) or not 0 < tf < 1:
        raise ConfigError("data.test_fraction", f"expected a number strictly between 0 and 1; got {tf!r}")
    if not isinstance(data.get("args", {}), dict):
        raise ConfigError("data.args", "expected a mapping")


def _parse_model(model: dict[str, Any]) -> None:
    unknown = sorted(set(model) - {"name", "args"})
    if unknown:
        raise ConfigError(f"model.{unknown[0]}", "unknown key; allowed: name, args")
    if model.get("name") not in MODELS:
        raise ConfigError("model.name", f"unknown model {model.get('name')!r}; allowed: {', '.join(MODELS)}")
    if not isinstance(model.setdefault("args", {}), dict):
        raise ConfigError("model.args", "expected a mapping")


def _parse_train(train: dict[str, Any]) -> Recipe:
    names = [f.name for f in dataclasses.fields(Recipe)]
    for key, value in train.items():
        if key not in names:
            raise ConfigError(f"train.{key}", f"unknown setting; allowed: {', '.join(names)}")
    try:
        return Recipe(**train)
    except (ValueError, TypeError) as e:
        bad = next((k for k in train if f" {k}=" in f" {e}"), None)
        raise ConfigError(f"train.{bad}" if bad else "train", str(e)) from None


def _parse_forget(forget: dict[str, Any]) -> None:
    given = [k for k in FORGET_KINDS if k in forget]
    extra = sorted(set(forget) - set(FORGET_KINDS) - {"seed"})
    if extra:
        raise ConfigError(f"forget.{extra[0]}", f"unknown key; allowed: {', '.join(FORGET_KINDS)}, seed")
    if len(given) != 1:
        raise ConfigError("forget", f"give exactly one of {', '.join(FORGET_KINDS)}; got {given or 'none'}")
    kind, value = given[0], forget[given[0]]
    if kind == "fraction" and (isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1):
        raise ConfigError("forget.fraction", f"expected a number strictly between 0 and 1; got {value!r}")
    if kind in ("classes", "indices") and (not isinstance(value, list) or not value
                                           or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        raise ConfigError(f"forget.{kind}", f"expected a non-empty list of integers; got {value!r}")
    if kind == "groups" and not isinstance(value, list):
        forget["groups"] = [value]


def _check_method(method: str, args: dict[str, Any]) -> None:
    from .methods import get

    try:
        cls = get(method)
    except ValueError as e:
        raise ConfigError("method", str(e)) from None
    try:
        cls(**args)
    except (ValueError, TypeError) as e:
        bad = next((k for k in args if f"argument {k}" in str(e) or f"{k}=" in str(e)), None)
        raise ConfigError(f"args.{bad}" if bad else "args", str(e)) from None
