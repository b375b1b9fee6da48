"""Write ``src/expunge/presets_data.py``: the presets ``expunge demo`` uses, taken from the tuned arguments of the
digits benchmark (``benchmarks/results/digits.json``, made by ``expunge bench benchmarks/digits.yaml``).

Each preset is keyed by what its arguments were tuned on (see ``expunge.presets``): the training data (name and
rows), the model's architecture (layers with parameter shapes), the scenario kind (random, class-wise, worst-case)
and the original's full training recipe, all read from ``benchmarks/digits.yaml`` as the benchmark reads it. The
arguments of a scenario are those its rows in digits.json report; for random forgetting they were tuned on another
random set, for class-wise forgetting on another class, for worst-case forgetting on a random set of the same size
(the benchmark's ``tune_on``).

Run: ``python benchmarks/presets_from_digits.py`` right after re-running the digits benchmark with the same code.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from expunge.api import model as build
from expunge.bench.jobs import load_data
from expunge.bench.spec import load_bench
from expunge.presets import Preset, Setup, architecture, scenario_of

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "benchmarks" / "digits.yaml"
RESULTS = ROOT / "benchmarks" / "results" / "digits.json"
TARGET = ROOT / "src" / "expunge" / "presets_data.py"
NOT_METHODS = ("original", "oracle (target)")

HEADER = '''"""The presets table: per-method arguments the digits benchmark tuned against the oracle, keyed by what
they were tuned on (see ``expunge.presets``). Written by ``python benchmarks/presets_from_digits.py`` from
``benchmarks/results/digits.json`` and ``benchmarks/digits.yaml``; do not edit by hand.
"""
from __future__ import annotations

from .presets import Preset, Setup

'''


def describe_forget(forget: dict[str, Any]) -> str:
    kind, value = next(iter(forget.items()))
    if kind == "fraction":
        return f"a random {value:.0%} of the training rows"
    if kind == "classes":
        return f"class {', '.join(map(str, value))}"
    return f"{kind} {value}"


def presets(spec, results: dict[str, Any]) -> list[Preset]:
    """One preset per (setup, scenario) of the benchmark that has tuned rows."""
    tuning = spec.tuning
    if tuning is None:
        raise SystemExit(f"{CONFIG} has no tuning section; its arguments were not tuned")
    out = []
    for s in spec.setups:
        train, _ = load_data(s.data, spec.seeds[0])
        template = build(s.model["name"], train, **s.model.get("args", {}))
        for scenario in spec.scenarios:
            kind = scenario_of(scenario.forget)
            rows = [r for r in results["rows"] if r["setup"] == s.label
                    and r["scenario"] == scenario.name and r["method"] not in NOT_METHODS and r.get("tuned")]
            if kind is None or not rows:
                continue
            tune_on = dict(scenario.tune_on or {})
            if "fraction" in tune_on:
                tune_on.setdefault("seed", tuning.forget_seed)
            how = (f"tuning forget set: {describe_forget(tune_on)}"
                   + (f" (forget seed {tune_on['seed']})" if "seed" in tune_on else "")
                   + f"; {tuning.trials} Optuna trials per method against the oracle, objective "
                   + tuning.objective)
            model = " ".join([s.model["name"], *(f"{k}={v}" for k, v in s.model.get("args", {}).items())])
            label = f"{s.data.get('name', s.label)}, {model}, {scenario.name}"
            args = {r["method"]: dict(r["args"]) for r in rows}
            out.append(Preset(Setup(train.name, len(train), architecture(template), kind, dict(s.recipe)),
                              label, how, str(RESULTS.relative_to(ROOT)), args))
    return out


def literal(p: Preset) -> str:
    s = p.setup
    args = "".join(f"\n            {m!r}: {{{', '.join(f'{k!r}: {v!r}' for k, v in sorted(a.items()))}}},"
                   for m, a in sorted(p.args.items()))
    recipe = ", ".join(f"{k!r}: {v!r}" for k, v in s.recipe.items())
    return (f"    Preset(\n"
            f"        Setup({s.data!r}, {s.rows!r},\n"
            f"              {s.architecture!r},\n"
            f"              {s.scenario!r},\n"
            f"              {{{recipe}}}),\n"
            f"        label={p.label!r},\n"
            f"        tuned_on={p.tuned_on!r},\n"
            f"        source={p.source!r},\n"
            f"        args={{{args}\n        }},\n"
            f"    ),\n")


def main() -> None:
    spec = load_bench(CONFIG)
    results = json.loads(RESULTS.read_text())
    table = presets(spec, results)
    TARGET.write_text(HEADER + "PRESETS: tuple[Preset, ...] = (\n" + "".join(literal(p) for p in table) + ")\n")
    print(f"wrote {len(table)} presets to {TARGET.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
