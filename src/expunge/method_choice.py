"""The ``--methods`` choice of the demos: ``all`` or named methods, each checked against the demo's task."""
from __future__ import annotations

from typing import Sequence


def choose_methods(spec: str | Sequence[str] | None, *, task: str, demo: str, every: Sequence[str],
                   refused: dict[str, str] | None = None) -> list[str]:
    """``None`` or ``"all"`` -> ``every``; else the names given, in order. ValueError naming the first bad name:
    unknown, the oracle itself, a method of another task, one in ``refused`` (its reason: e.g. it needs another
    kind of model than the demo trains), or a name given twice. ``demo`` names the demo in messages."""
    from .methods import registered

    refused = refused or {}
    usable = ", ".join(["all", *(n for n in every if n not in refused)])
    if spec is None:
        return list(every)
    names = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    if names == ["all"]:
        return list(every)
    known = registered()
    for n in names:
        if n not in known:
            raise ValueError(f"unknown method {n!r}; allowed: {usable}")
        if n == "retrain":
            raise ValueError("retrain is the oracle every method is measured against (the 'oracle (target)' row); "
                             f"choose among: {usable}")
        if n in refused:
            raise ValueError(f"method {n!r} {refused[n]}; choose among: {usable}")
        if task not in known[n].tasks:
            raise ValueError(f"method {n!r} unlearns {' and '.join(known[n].tasks)} models and this demo is the "
                             f"{demo} one; choose among: {usable}")
    if len(set(names)) != len(names):
        raise ValueError(f"--methods names {next(n for n in names if names.count(n) > 1)!r} twice; name each once")
    return names
