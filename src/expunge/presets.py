"""Per-method arguments tuned by a benchmark, keyed by what they were tuned on, and the lookup that finds them.

Paper defaults are set for CIFAR-scale data and often do nothing on small data, so ``expunge demo`` runs each method
with the arguments the digits benchmark chose by tuning it against the oracle. Arguments tuned for one setup can be
far off on another (on a wider MLP than the one they were tuned on, the digits arguments made neggrad_plus ten times
worse on class-wise forgetting), so a preset is used only where everything it was tuned on matches:

- ``data``: the training set's name and its number of rows (``digits/train``, 1437 rows);
- ``architecture``: the model's layers in order, each with its parameter shapes (so widths and depth count);
- ``scenario``: ``random``, ``class`` (class-wise) or ``worst_case`` forgetting;
- ``recipe``: the original's training recipe, every field of :class:`expunge.training.Recipe`.

:func:`method_args` returns a method's arguments and one line saying where they came from: the preset, or, when none
fits, which key differs from the nearest preset and that the method's paper defaults are used instead (``--tune`` on
``expunge demo`` / ``expunge run``, or ``args: auto`` in a config, runs a quick tuning instead; see
:func:`expunge.tuning.quick_tune`).

The table is ``expunge.presets_data.PRESETS``, written by ``python benchmarks/presets_from_digits.py`` from the
digits benchmark's results; do not edit it by hand.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn
from torch.utils.data import Dataset

SCENARIOS = ("random", "class", "worst_case")
SCENARIO_WORDS = {"random": "random forgetting", "class": "class-wise forgetting",
                  "worst_case": "worst-case forgetting"}
FORGET_KIND_SCENARIOS = {"fraction": "random", "classes": "class", "worst_case": "worst_case"}
TUNE_HINT = "--tune or args: auto runs a quick tuning"


@dataclass(frozen=True)
class Setup:
    """What a preset was tuned on, and what a lookup asks for."""

    data: str
    rows: int
    architecture: str
    scenario: str
    recipe: dict[str, Any] = field(hash=False)

    def differences(self, other: "Setup") -> list[str]:
        """The keys in which ``other`` differs from this setup, each with both values where they are short."""
        out = []
        if (self.data, self.rows) != (other.data, other.rows):
            out.append(f"data {other.data} ({other.rows} rows) instead of {self.data} ({self.rows} rows)")
        if self.architecture != other.architecture:
            out.append(_layer_difference(self.architecture, other.architecture))
        if self.scenario != other.scenario:
            out.append(f"{SCENARIO_WORDS.get(other.scenario, other.scenario)} instead of "
                       f"{SCENARIO_WORDS[self.scenario]}")
        changed = sorted(k for k in set(self.recipe) | set(other.recipe) if self.recipe.get(k) != other.recipe.get(k))
        if changed:
            out.append("recipe " + ", ".join(f"{k}={other.recipe.get(k)!r} instead of {self.recipe.get(k)!r}"
                                             for k in changed))
        return out


def _layer_difference(mine: str, theirs: str) -> str:
    a, b = mine.split(" > "), theirs.split(" > ")
    i = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    if i >= min(len(a), len(b)):
        return f"architecture with {len(b)} layers instead of {len(a)}"
    return f"architecture layer {i + 1} {b[i]} instead of {a[i]}"


@dataclass(frozen=True)
class Preset:
    """Arguments per method, tuned on ``setup``; ``label`` names the setup for people, ``tuned_on`` says how."""

    setup: Setup
    label: str
    tuned_on: str
    source: str
    args: dict[str, dict[str, Any]] = field(hash=False)


def architecture(model: nn.Module) -> str:
    """The model's leaf modules in order, each with the shapes of its own parameters: ``Linear(128x64, 128)``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch nn.Module; got {type(model).__name__}")
    parts = []
    for _, module in model.named_modules():
        if next(module.children(), None) is not None:
            continue
        shapes = ", ".join("x".join(str(s) for s in p.shape) for p in module.parameters(recurse=False))
        parts.append(f"{type(module).__name__}({shapes})" if shapes else type(module).__name__)
    return " > ".join(parts)


def setup_of(model: nn.Module, train: Dataset, scenario: str, recipe: dict[str, Any] | None = None) -> Setup:
    """The setup of ``model`` trained on ``train`` with ``recipe`` (default: the recipe recorded on ``model`` by
    ``expunge.train``), for ``scenario`` in SCENARIOS."""
    from .data.datasets import resolve
    from .provenance import provenance
    from .training import Recipe

    if scenario not in SCENARIOS:
        raise ValueError(f"scenario {scenario!r} is not allowed; expected one of {', '.join(SCENARIOS)}")
    if recipe is None:
        recipe = provenance(model).recipe
        if recipe is None:
            raise ValueError("the model carries no training recipe (train it with expunge.train, or pass recipe=)")
    full = Recipe.from_dict(dict(recipe)).to_dict()
    base, idx = resolve(train)
    return Setup(str(getattr(base, "name", None) or type(base).__name__), len(idx), architecture(model), scenario,
                 full)


def scenario_of(forget: dict[str, Any]) -> str | None:
    """The preset scenario of a config's forget request (``{fraction: ...}`` -> random, ``{classes: ...}`` ->
    class, ``{worst_case: ...}`` -> worst_case); None for given rows or groups, which no preset covers."""
    return next((FORGET_KIND_SCENARIOS[k] for k in forget if k in FORGET_KIND_SCENARIOS), None)


def find(setup: Setup, presets: tuple[Preset, ...] | None = None) -> Preset | None:
    """The preset tuned on exactly ``setup``, or None."""
    table = _table() if presets is None else presets
    return next((p for p in table if not p.setup.differences(setup)), None)


def nearest(setup: Setup, presets: tuple[Preset, ...] | None = None) -> Preset | None:
    """The preset that differs from ``setup`` in the fewest keys (the first such one), or None for an empty table."""
    table = _table() if presets is None else presets
    return min(table, key=lambda p: len(p.setup.differences(setup)), default=None)


def method_args(setup: Setup, method: str,
                presets: tuple[Preset, ...] | None = None) -> tuple[dict[str, Any], str | None]:
    """``(arguments, note)`` for ``method`` on ``setup``: the preset's arguments and None, or ``{}`` (the method's
    paper defaults) and a one-line note saying why (no preset fits, or the preset that fits lacks the method)."""
    preset = find(setup, presets)
    if preset is None:
        return {}, f"{method}: {no_preset_note(setup, presets)}"
    if method not in preset.args:
        return {}, (f"{method}: the preset for {preset.label} has no arguments for it; using its paper defaults "
                    f"({TUNE_HINT})")
    return dict(preset.args[method]), None


def describe(setup: Setup, presets: tuple[Preset, ...] | None = None) -> str:
    """One line saying where the methods' arguments on ``setup`` come from."""
    preset = find(setup, presets)
    if preset is None:
        return no_preset_note(setup, presets)
    return f"method arguments: the preset for {preset.label} ({preset.tuned_on}; from {preset.source})"


def no_preset_note(setup: Setup, presets: tuple[Preset, ...] | None = None) -> str:
    """One line: no preset fits ``setup``, how the nearest one differs, and that paper defaults are used."""
    near = nearest(setup, presets)
    why = "" if near is None else f" (nearest: {near.label}; here {'; '.join(near.setup.differences(setup))})"
    return f"no preset fits{why}; the methods run with their paper defaults ({TUNE_HINT})"


def _table() -> tuple[Preset, ...]:
    from .presets_data import PRESETS

    return PRESETS


__all__ = ["Setup", "Preset", "SCENARIOS", "architecture", "setup_of", "scenario_of", "find", "nearest",
           "method_args", "describe", "no_preset_note"]
