"""Forget scenarios of a bench: random fractions, classes, given rows, identity groups, worst-case sets; and the
forget set each is tuned on (``tune_on``)."""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

from ..config import ConfigError
from ._checks import check_fraction, check_int, check_mapping

FORGET_KINDS = ("fraction", "classes", "indices", "groups", "group_fraction", "worst_case")
WORST_CASE_KEYS = ("fraction", "size", "method", "args", "select_epochs", "unlearn_steps", "lr_w", "gamma")


@dataclass(frozen=True)
class Scenario:
    """A named forget request; ``tune_on`` is the forget request its methods are tuned on (None: not tunable)."""

    name: str
    forget: dict[str, Any]
    tune_on: dict[str, Any] | None


def parse_scenarios(value: Any, tasks: set[str]) -> list[Scenario]:
    if not isinstance(value, list) or not value:
        raise ConfigError("scenarios", "expected a non-empty list of forget scenarios, e.g. [{fraction: 0.1}]")
    out = [_scenario(dict(check_mapping(v, f"scenarios[{i}]")), f"scenarios[{i}]", tasks)
           for i, v in enumerate(value)]
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        raise ConfigError("scenarios", f"scenario names repeat: {names}; give each a distinct name")
    return out


def _scenario(s: dict[str, Any], path: str, tasks: set[str]) -> Scenario:
    allowed = set(FORGET_KINDS) | {"name", "seed", "tune_on"}
    extra = sorted(set(s) - allowed)
    if extra:
        raise ConfigError(f"{path}.{extra[0]}", f"unknown key; allowed: {', '.join(sorted(allowed))}")
    forget = _forget({k: v for k, v in s.items() if k in FORGET_KINDS or k == "seed"}, path, tasks)
    kind = next(iter(forget))
    tune_on = s.get("tune_on")
    if tune_on is not None:
        tune_on = _forget(dict(check_mapping(tune_on, f"{path}.tune_on")), f"{path}.tune_on", tasks)
        if "worst_case" in tune_on:
            raise ConfigError(f"{path}.tune_on",
                              "tune on a random, class-wise or given forget set, not a worst-case one")
    elif kind == "worst_case":
        wc = forget["worst_case"]
        if "fraction" not in wc:
            tune_on = None   # checked in _tuning: a worst-case set given by size needs tune_on
        else:
            tune_on = {"fraction": wc["fraction"]}
    elif kind in ("fraction", "group_fraction"):
        tune_on = {kind: forget[kind]}     # another draw; a group share avoids every evaluated group (grid.py)
    else:
        tune_on = dict(forget)
    name = s.get("name") or _default_name(forget)
    return Scenario(str(name), forget, tune_on)


def _default_name(forget: dict[str, Any]) -> str:
    kind, value = next(iter(forget.items()))
    if kind == "fraction":
        return f"random {value:.0%}"
    if kind == "group_fraction":
        return f"{value:.0%} of groups"
    if kind == "worst_case":
        return f"worst-case {value['fraction']:.0%}" if "fraction" in value else f"worst-case {value['size']}"
    if kind == "indices":
        return f"{len(value)} given rows"
    return f"{'class-wise' if kind == 'classes' else 'groups'} {value}"


def _forget(s: dict[str, Any], path: str, tasks: set[str]) -> dict[str, Any]:
    given = [k for k in FORGET_KINDS if k in s]
    if len(given) != 1:
        raise ConfigError(path, f"give exactly one of {', '.join(FORGET_KINDS)}; got {given or 'none'}")
    kind, value = given[0], s[given[0]]
    if "seed" in s and kind not in ("fraction", "group_fraction"):
        raise ConfigError(f"{path}.seed", "only a random fraction (of rows or of groups) takes a seed")
    if kind in ("fraction", "group_fraction"):
        check_fraction(value, f"{path}.{kind}")
        return {kind: float(value), **({"seed": check_int(s["seed"], f"{path}.seed")} if "seed" in s else {})}
    if kind in ("classes", "indices"):
        if not isinstance(value, list) or not value or not all(isinstance(v, int) and not isinstance(v, bool)
                                                               for v in value):
            raise ConfigError(f"{path}.{kind}", f"expected a non-empty list of integers; got {value!r}")
        if kind == "classes" and not tasks & {"classification", "generation"}:
            raise ConfigError(f"{path}.classes", "class-wise forgetting needs classification or generation data")
        return {kind: list(value)}
    if kind == "groups":
        return {"groups": value if isinstance(value, list) else [value]}
    return {"worst_case": _worst_case(value, f"{path}.worst_case")}


def _worst_case(value: Any, path: str) -> dict[str, Any]:
    if importlib.util.find_spec("expunge.worst_case") is None:
        raise ConfigError(path, "worst-case scenarios need expunge.worst_case, which this installation lacks")
    wc = {"fraction": value} if not isinstance(value, dict) else dict(value)
    extra = sorted(set(wc) - set(WORST_CASE_KEYS))
    if extra:
        raise ConfigError(f"{path}.{extra[0]}", f"unknown key; allowed: {', '.join(WORST_CASE_KEYS)}")
    if ("fraction" in wc) == ("size" in wc):
        raise ConfigError(path, "give exactly one of fraction, size")
    if "fraction" in wc:
        check_fraction(wc["fraction"], f"{path}.fraction")
        wc["fraction"] = float(wc["fraction"])
    else:
        check_int(wc["size"], f"{path}.size", 1)
    from ..worst_case import METHODS

    wc.setdefault("method", "finetune")
    if wc["method"] not in METHODS:
        raise ConfigError(f"{path}.method", f"unknown selector {wc['method']!r}; allowed: {', '.join(METHODS)}")
    wc["args"] = dict(check_mapping(wc.get("args") or {}, f"{path}.args"))
    return wc
