"""The methods of a bench (``methods``, ``exclude``, ``args``) and their tuning (``tuning``).

A ``methods`` mapping may also hold **variants** of a method: ``<method>+<label>`` (e.g. ``npo+lora: {lora: {r:
8}}``) runs ``<method>`` with the entry's arguments under its own row, tuned on its own."""
from __future__ import annotations

import dataclasses
import importlib.util
import re
from dataclasses import dataclass, field
from typing import Any

from ..config import ConfigError
from ..methods.base import registered
from ._checks import check_int, check_mapping
from .scenarios import Scenario

TUNING_KEYS = ("trials", "methods", "seed", "forget_seed", "space", "objective")
VARIANT = re.compile(r"[A-Za-z0-9_]+\+[A-Za-z0-9_.-]+")


def base_method(name: str) -> str:
    """The registered method an entry runs: ``npo`` for the variant ``npo+lora``, the name itself otherwise."""
    return name.split("+", 1)[0]


@dataclass(frozen=True)
class Tuning:
    """The ``tuning`` section: trial budget, tuned methods, seeds and search spaces (see ``expunge.tuning.tune``)."""

    trials: int = 20
    methods: tuple[str, ...] = ()
    seed: int = 0
    forget_seed: int = 1000
    space: dict[str, Any] = field(default_factory=dict)
    objective: str = "avg_gap"


def parse_methods(raw: dict[str, Any], tasks: set[str]) -> dict[str, dict[str, Any]]:
    known = registered()
    value = raw.get("methods", "all")
    exclude = raw.get("exclude") or []
    if not isinstance(exclude, list) or any(e not in known for e in exclude):
        raise ConfigError("exclude", f"expected a list of method names from {', '.join(known)}; got {exclude!r}")
    if value == "all":
        chosen = {n: {} for n, cls in known.items() if n != "retrain" and not cls.needs_special_original
                  and cls.forgets and tasks & set(cls.tasks) and n not in exclude}
    elif isinstance(value, list):
        chosen = {n: {} for n in value}
    elif isinstance(value, dict):
        chosen = {n: dict(check_mapping(a or {}, f"methods.{n}")) for n, a in value.items()}
    else:
        raise ConfigError("methods", f"expected 'all', a list of method names or a mapping; got {value!r}")
    overrides = check_mapping(raw.get("args") or {}, "args")
    for n, a in overrides.items():   # overrides of known methods left out of this bench are ignored
        if n not in known and n not in chosen:
            raise ConfigError(f"args.{n}", f"unknown method; allowed: {', '.join(known)}")
        if n in chosen:
            chosen[n] = {**chosen[n], **check_mapping(a or {}, f"args.{n}")}
    if not chosen:
        raise ConfigError("methods", "no method left to run")
    for n, a in chosen.items():
        _check_method(n, a, "args" if n in overrides else "methods", tasks)
    return chosen


def _check_method(name: str, args: dict[str, Any], section: str, tasks: set[str]) -> None:
    known = registered()
    if "+" in name and not VARIANT.fullmatch(name):
        raise ConfigError(f"methods.{name}", "a variant is named <method>+<label> (letters, digits, _ . -), e.g. "
                                             "npo+lora")
    if base_method(name) not in known:
        raise ConfigError(f"methods.{name}", f"unknown method; allowed: {', '.join(known)}"
                                             + (", or a variant <method>+<label>" if "+" not in name else ""))
    cls = known[base_method(name)]
    if cls.needs_special_original:
        raise ConfigError(f"methods.{name}", "needs a specially trained original, which a bench does not build")
    if not tasks & set(cls.tasks):
        raise ConfigError(f"methods.{name}", f"supports {', '.join(cls.tasks)} tasks; the data is "
                                             f"{', '.join(sorted(tasks))}")
    try:
        cls(**args)
    except (ValueError, TypeError) as e:
        bad = next((k for k in args if f"argument {k}" in str(e) or f"{k}=" in str(e)
                    or f": {k} " in str(e)), None)
        raise ConfigError(f"{section}.{name}" + (f".{bad}" if bad else ""), str(e)) from None


def parse_tuning(value: Any, methods: dict[str, dict[str, Any]], scenarios: list[Scenario]) -> Tuning | None:
    if value is None or value is False:
        return None
    t = check_mapping(value, "tuning")
    extra = sorted(set(t) - set(TUNING_KEYS))
    if extra:
        raise ConfigError(f"tuning.{extra[0]}", f"unknown key; allowed: {', '.join(TUNING_KEYS)}")
    if importlib.util.find_spec("expunge.tuning") is None:
        raise ConfigError("tuning", "tuning needs expunge.tuning, which this installation lacks")
    space = dict(check_mapping(t.get("space") or {}, "tuning.space"))
    which = t.get("methods", "all")
    known = registered()
    if which == "all":
        names = tuple(m for m in methods if known[base_method(m)].grid or space.get(m))
    elif isinstance(which, list) and all(m in methods for m in which):
        names = tuple(which)
    else:
        raise ConfigError("tuning.methods", f"expected 'all' or a list of this bench's methods "
                                            f"({', '.join(methods)}); got {which!r}")
    for m, sp in space.items():   # spaces of known methods left out of this bench are ignored
        if base_method(m) not in known or ("+" in m and m not in methods):
            raise ConfigError(f"tuning.space.{m}", f"unknown method; allowed: {', '.join(known)} and this bench's "
                                                   "variants")
        allowed = [f.name for f in dataclasses.fields(known[base_method(m)].Args)]
        for arg in check_mapping(sp, f"tuning.space.{m}"):
            if arg not in allowed:
                raise ConfigError(f"tuning.space.{m}.{arg}", f"not an argument of {m}; allowed: {', '.join(allowed)}")
    objective = t.get("objective", "avg_gap")
    if not isinstance(objective, str):
        raise ConfigError("tuning.objective", f"expected a metric name; got {objective!r}")
    for i, s in enumerate(scenarios):
        if s.tune_on is None:
            raise ConfigError(f"scenarios[{i}].tune_on", "a worst-case set given by size needs tune_on when tuning "
                                                         "(e.g. {fraction: 0.1})")
    return Tuning(trials=check_int(t.get("trials", 20), "tuning.trials", 1), methods=names,
                  seed=check_int(t.get("seed", 0), "tuning.seed"), forget_seed=check_int(t.get("forget_seed", 1000),
                                                                                "tuning.forget_seed"),
                  space=space, objective=objective)
