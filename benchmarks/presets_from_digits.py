"""Write ``src/expunge/presets.py``: the per-method arguments ``expunge demo`` uses, taken from the tuned
arguments of the digits benchmark (``benchmarks/results/digits.json``, made by ``expunge bench
benchmarks/digits.yaml``). Each method's arguments for random forgetting are those tuned on another random 10% of
the training set; for class-wise forgetting, those tuned on another class.

Run: ``python benchmarks/presets_from_digits.py`` after re-running the digits benchmark.
"""
from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = {"random 10%": "random", "class 3": "class"}

HEADER = '''"""Per-method arguments for scikit-learn's digits, used by ``expunge demo``.

Paper defaults are set for CIFAR-scale data and often do nothing on 1,437 small images. These arguments are the
ones the digits benchmark chose by tuning each method against the oracle (Optuna, the same trial budget for every
method): for random forgetting, tuned on another random 10% of the training set; for class-wise forgetting, tuned on
another class than the one forgotten. Written by ``python benchmarks/presets_from_digits.py`` from
``benchmarks/results/digits.json`` (``expunge bench benchmarks/digits.yaml``); do not edit by hand.
"""
from __future__ import annotations

from typing import Any

'''

FOOTER = '''

def digits_args(model: str, scenario: str, method: str) -> dict[str, Any]:
    """The arguments for ``method`` on digits with ``model`` ("mlp" or "cnn") and ``scenario`` ("random" or
    "class"); empty (the method's defaults) when the benchmark has none."""
    return dict(DIGITS.get(model, {}).get(scenario, {}).get(method, {}))
'''


def presets(results: dict) -> dict[str, dict[str, dict[str, dict]]]:
    out: dict[str, dict[str, dict[str, dict]]] = {}
    for row in results["rows"]:
        model = row["setup"].split("/")[-1]
        scenario = SCENARIOS.get(row["scenario"])
        if scenario is None or not row.get("args") or row["method"] in ("original", "oracle (target)"):
            continue
        out.setdefault(model, {}).setdefault(scenario, {})[row["method"]] = dict(row["args"])
    return out


def literal(value: dict, indent: int = 0) -> str:
    """A Python literal of nested dicts: one key per line down to the method level, arguments inline."""
    if not any(isinstance(v, dict) for v in value.values()):
        return "{" + ", ".join(f"{k!r}: {v!r}" for k, v in sorted(value.items())) + "}"
    pad = " " * (indent + 4)
    items = [f"{pad}{k!r}: {literal(v, indent + 4)}," for k, v in sorted(value.items())]
    return "{\n" + "\n".join(items) + "\n" + " " * indent + "}"


def main() -> None:
    results = json.loads((ROOT / "benchmarks" / "results" / "digits.json").read_text())
    body = "DIGITS: dict[str, dict[str, dict[str, dict[str, Any]]]] = " + literal(presets(results))
    (ROOT / "src" / "expunge" / "presets.py").write_text(HEADER + body + "\n" + FOOTER)


if __name__ == "__main__":
    main()
