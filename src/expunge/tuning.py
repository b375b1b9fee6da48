"""Fair hyperparameter tuning of an unlearning method against the oracle, with Optuna.

Unlearning methods are sensitive to their hyperparameters, so comparing them at their paper defaults mostly
compares how well those defaults transfer. :func:`tune` gives every method the same budget: ``trials`` runs,
chosen by Optuna's TPE sampler (seeded), each scored by its Avg. Gap to the oracle (``expunge.evaluate(model,
forget=..., retain=..., test=..., reference=oracle)["avg_gap"]``, lower is better) or another gap. On language
models the Avg. Gap is :func:`expunge.lm.evaluate.evaluate_language`'s: the mean gap to the oracle over TOFU's
forget and retain probability, ROUGE-L and truth ratio.

- The search space is the method's declared tuning grid (``expunge.methods()[name].grid``), each argument
  categorical over the listed values. ``space`` replaces it: ``{"lr": [1e-3, 1e-2], ...}`` (categorical) or
  ``{"lr": {"low": 1e-4, "high": 1e-1, "log": True}}`` (a range; integers when both ends are integers).
  ``fixed`` pins arguments for every trial (pinned arguments leave the default grid).
- The first trial runs the method's defaults when they lie in the space, so the result is never worse than the
  defaults. A combination the sampler proposes again is not re-run (runs are deterministic under ``seed``); the
  study stops early once every combination of an all-categorical space has been run.
- A run that diverges (:class:`expunge.training.DivergenceError`), raises ValueError for its combination of
  arguments, or scores a non-finite objective is recorded as failed and pruned; the study goes on. If every trial
  fails, :class:`TuningError` says why.
- Every trial unlearns with the same ``seed``, so trials differ only by their arguments.

The rule for worst-case forget sets (Fan et al., "Challenging Forgets: Unveiling the Worst-Case Forget Sets in
Machine Unlearning", ECCV 2024; https://github.com/OPTML-Group/Unlearn-WorstCase): tune each method on a
*random* forget set of the same size, then reuse the chosen arguments unchanged on the worst-case set
(``expunge.worst_case.select_worst_case``). Tuning on the worst-case set itself would let the method adapt to
the very examples chosen to be hard for it.

Quick tuning (``expunge demo --tune``, ``expunge run --tune``, ``args: auto`` in an experiment config) follows the
same rule with a small budget (:data:`QUICK_TRIALS` trials per method unless told otherwise, at most
:data:`MAX_TRIALS`): :func:`tuning_set` draws another forget set of the same kind and size, never the one to be
forgotten (class-wise: the next classes in label order that are not forgotten; text data with groups, such as
authors: as many other groups; otherwise a random set of the same size from the rows that are kept),
:func:`train_oracle` retrains an oracle for it once and :func:`quick_tune` tunes each method against that oracle.
:func:`estimate_seconds` gives the rough cost of the trials, stated before they start: per trial, the method's
epochs (the mean over its grid) at the oracle's time per epoch, plus one scoring.

Optuna's own logging is silenced while :func:`tune` runs (warnings still show); progress is logged at INFO level
under ``expunge.tuning``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

from torch import nn
from torch.utils.data import Dataset

from .data.datasets import groups_of, task_of
from .evaluate import CLASSIFICATION_GAPS, REGRESSION_GAPS, evaluate
from .methods import base as registry
from .progress import Phase
from .training import DivergenceError

log = logging.getLogger(__name__)


QUICK_TRIALS = 8          # trials per method of a quick tuning (--tune, args: auto) unless told otherwise
MAX_TRIALS = 200          # the most trials a quick tuning accepts
TUNING_SEED_OFFSET = 1000  # the random tuning forget set is drawn with seed + this, as the digits benchmark does


class TuningError(RuntimeError):
    """Every trial of a tuning study failed; the message lists the distinct errors."""


@dataclass
class TuneResult:
    """The outcome of :func:`tune`. ``best_args`` holds the sampled and the fixed arguments (pass them to
    ``expunge.unlearn``); ``trials`` has one dict per trial: ``number``, ``args``, ``value``, ``scores`` (the full
    ``evaluate`` dict) and ``error`` (None for a completed trial), plus ``repeat`` when a combination came back."""

    best_args: dict[str, Any]
    best_value: float
    trials: list[dict[str, Any]] = field(default_factory=list)
    method: str = ""
    objective: str = "avg_gap"


def tune(method: str, original: nn.Module, *, forget: Dataset, retain: Dataset, test: Dataset | None,
         oracle: nn.Module, trials: int = 20, seed: int = 0, space: dict | None = None, fixed: dict | None = None,
         objective: str = "avg_gap", scoring: dict | None = None) -> TuneResult:
    """Search ``method``'s arguments for the smallest ``objective`` (a gap to ``oracle``) in ``trials`` runs.
    ``scoring``: extra arguments of ``expunge.evaluate`` for every trial (the language task's ``world`` set,
    ``max_examples``)."""
    import optuna

    cls = registry.get(method)
    for name, model in (("original", original), ("oracle", oracle)):
        if not isinstance(model, nn.Module):
            raise TypeError(f"{name} must be a torch nn.Module; got {type(model).__name__}")
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ValueError(f"trials={trials!r} is not allowed; expected an integer >= 1")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an integer; got {seed!r}")
    _check_objective(objective, task_of(forget), test is not None)
    fixed = dict(fixed or {})
    dims = _search_space(cls, space, fixed)
    records: list[dict[str, Any]] = []
    seen: dict[str, dict[str, Any]] = {}
    combos = math.prod(len(d.choices) for d in dims) if all(d.choices is not None for d in dims) else None

    def run_trial(trial: "optuna.Trial") -> float:
        args = {**fixed, **{d.name: d.suggest(trial) for d in dims}}
        key = repr(sorted(args.items()))
        if key in seen:
            record = {**seen[key], "number": trial.number, "repeat": True}
        else:
            record = seen[key] = _evaluate(method, original, args, forget, retain, test, oracle, seed, objective,
                                           trial.number, scoring or {})
        records.append(record)
        if record["error"] is not None:
            raise optuna.TrialPruned(record["error"])
        return record["value"]

    def stop_when_exhausted(study: "optuna.Study", trial: "optuna.trial.FrozenTrial") -> None:
        if combos is not None and len(seen) >= combos:
            study.stop()

    with _quiet_optuna():
        study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
        start = _default_point(cls, dims)
        if start is not None:
            study.enqueue_trial(start)
        with Phase(f"tune {method}", trials if dims else 1, "trial") as phase:
            study.optimize(run_trial, n_trials=trials if dims else 1,
                           callbacks=[stop_when_exhausted, lambda study, trial: phase.advance()])
    done = [r for r in records if r["error"] is None]
    if not done:
        errors = sorted({r["error"] for r in records})
        raise TuningError(f"all {len(records)} trial(s) of method {method!r} failed: " + "; ".join(errors))
    best = min(done, key=lambda r: (r["value"], r["number"]))
    log.info("tuned %s: best %s = %.4f with %s", method, objective, best["value"], best["args"])
    return TuneResult(dict(best["args"]), float(best["value"]), records, method, objective)


# --- quick tuning on a forget set of its own --------------------------------------------------------------------

@dataclass
class TuningSet:
    """A forget set of the same kind and size as the one to be forgotten, its retain set and its oracle."""

    forget: Dataset
    retain: Dataset
    oracle: nn.Module | None
    description: str
    oracle_seconds: float | None = None
    score_seconds: float | None = None


def check_trials(trials: Any, where: str = "trials") -> int:
    """``trials`` if it is an allowed quick-tuning budget; ValueError naming ``where`` otherwise."""
    if isinstance(trials, bool) or not isinstance(trials, int) or not 1 <= trials <= MAX_TRIALS:
        raise ValueError(f"{where}={trials!r} is not allowed; expected an integer in 1..{MAX_TRIALS}")
    return trials


def quick_budget(tune: bool, trials: int | None) -> int | None:
    """The trials of a quick tuning (``tune`` with ``trials``, default QUICK_TRIALS), or None without tuning;
    ValueError for a bad budget or for trials without tuning."""
    if not isinstance(tune, bool):
        raise TypeError(f"tune must be True or False; got {tune!r}")
    if not tune:
        if trials is not None:
            raise ValueError("trials sets the budget of a quick tuning; give it together with tune (--tune)")
        return None
    return check_trials(QUICK_TRIALS if trials is None else trials)


def tuning_set(train: Dataset, forget: Dataset, *, seed: int = 0) -> TuningSet:
    """The forget set a quick tuning uses for ``forget`` (a ``split_forget`` result from ``train``): for a
    class-wise request, as many other classes, the next ones in label order that are not forgotten; on text data
    with groups (authors), as many groups the forget set does not touch; otherwise a random set of the same size
    from the kept rows (seed ``seed + TUNING_SEED_OFFSET``). No oracle yet."""
    import numpy as np
    import torch

    from .data import split_forget
    from .data.datasets import targets
    from .data.forget import Split

    if not isinstance(forget, Split) or forget.dataset is not train:
        raise ValueError("quick tuning needs the forget set made by split_forget from the training data")
    request = forget.request
    if task_of(train) == "language" and groups_of(train) is not None:
        return _other_groups(train, forget, seed)
    if request.is_classwise:
        present = sorted(set(targets(train).tolist()))
        gone = set(request.classes or ())
        after = [c for c in present if c > max(gone)] + [c for c in present if c < max(gone)]
        others = [c for c in after if c not in gone][:len(gone)]
        if len(others) < len(gone):
            raise ValueError(f"quick tuning of class-wise forgetting needs {len(gone)} other class(es) to tune on; "
                             f"the data has only {len(present)} classes")
        f, r = split_forget(train, classes=others)
        return TuningSet(f, r, None, f"class-wise {others}")
    kept = np.asarray(sorted(set(range(len(train))) - set(forget.indices)))
    if len(kept) <= len(forget):
        raise ValueError(f"quick tuning needs {len(forget)} rows outside the forget set to tune on; "
                         f"only {len(kept)} are kept")
    g = torch.Generator().manual_seed(int(seed) + TUNING_SEED_OFFSET)
    chosen = kept[torch.randperm(len(kept), generator=g)[:len(forget)].numpy()]
    f, r = split_forget(train, indices=sorted(chosen.tolist()))
    return TuningSet(f, r, None, f"{len(forget)} random kept rows (seed {int(seed) + TUNING_SEED_OFFSET})")


def _other_groups(train: Dataset, forget: Dataset, seed: int) -> TuningSet:
    """As many other groups (authors) as ``forget`` covers, drawn from the groups it leaves untouched (numeric groups
    below 0, the authors corpus's world facts, never drawn), with seed ``seed + TUNING_SEED_OFFSET``."""
    import numpy as np
    import torch

    from .data import split_forget

    groups = np.asarray(groups_of(train))
    gone = np.unique(groups[np.asarray(forget.indices)])
    values = np.unique(groups)
    if np.issubdtype(values.dtype, np.number):
        values = values[values >= 0]
    others = values[~np.isin(values, gone)]
    if len(others) <= len(gone):
        raise ValueError(f"quick tuning needs {len(gone)} other group(s) to tune on and one to keep; the data has "
                         f"{len(others)} outside the forget set")
    g = torch.Generator().manual_seed(int(seed) + TUNING_SEED_OFFSET)
    chosen = np.sort(others[torch.randperm(len(others), generator=g)[:len(gone)].numpy()])
    f, r = split_forget(train, where=lambda v: np.isin(v, chosen))
    return TuningSet(f, r, None, f"{len(chosen)} other group(s) (seed {int(seed) + TUNING_SEED_OFFSET})")


def train_oracle(original: nn.Module, tset: TuningSet, *, test: Dataset | None = None, seed: int = 0,
                 scoring: dict | None = None) -> float:
    """Retrain the oracle of ``tset`` (once) and time one scoring of ``original`` against it (what each trial
    adds to its method's run); return the seconds the oracle took. ``scoring``: as in :func:`tune`."""
    from .api import unlearn

    if tset.oracle is None:
        start = time.perf_counter()
        tset.oracle = unlearn(original, forget=tset.forget, retain=tset.retain, method="retrain", seed=seed)
        tset.oracle_seconds = time.perf_counter() - start
        start = time.perf_counter()
        evaluate(original, forget=tset.forget, retain=tset.retain, test=test, reference=tset.oracle, seed=seed,
                 **(scoring or {}))
        tset.score_seconds = time.perf_counter() - start
    return tset.oracle_seconds or 0.0


def estimate_seconds(methods: list[str], tset: TuningSet, trials: int, fixed: dict | None = None) -> float | None:
    """A rough wall time for ``trials`` trials of each of ``methods`` on ``tset``: per trial, the method's epochs
    (the mean over its grid, or as fixed) at the time per epoch its oracle took, plus one scoring; None before the
    oracle is trained or when its recipe is unknown."""
    from .provenance import provenance

    recipe = provenance(tset.oracle).recipe if tset.oracle is not None else None
    if not tset.oracle_seconds or not recipe or not recipe.get("epochs"):
        return None
    per_epoch = tset.oracle_seconds / recipe["epochs"]
    total = 0.0
    for method in methods:
        cls = registry.get(method)
        default = registry.defaults(cls.Args).get("epochs", 1)
        given = (fixed or {}).get("epochs")
        epochs = [given] if given is not None else list(cls.grid.get("epochs") or [default])
        total += trials * (per_epoch * sum(epochs) / len(epochs) + (tset.score_seconds or 0.0))
    return total


def quick_tune(method: str, original: nn.Module, tset: TuningSet, *, test: Dataset | None, trials: int = QUICK_TRIALS,
               seed: int = 0, fixed: dict | None = None, scoring: dict | None = None) -> TuneResult:
    """Tune ``method`` in ``trials`` runs on ``tset`` (its oracle is trained here once when missing), by Avg. Gap
    for classification and language models and by the Wasserstein distance to the oracle's outputs for
    regression. ``scoring``: as in :func:`tune`."""
    check_trials(trials)
    train_oracle(original, tset, test=test, seed=seed, scoring=scoring)
    objective = "w1_to_reference" if task_of(tset.forget) == "regression" else "avg_gap"
    return tune(method, original, forget=tset.forget, retain=tset.retain, test=test, oracle=tset.oracle,
                trials=trials, seed=seed, fixed=fixed, objective=objective, scoring=scoring)


# --- one trial -------------------------------------------------------------------------------------------------

def _evaluate(method: str, original: nn.Module, args: dict[str, Any], forget: Dataset, retain: Dataset,
              test: Dataset | None, oracle: nn.Module, seed: int, objective: str, number: int,
              scoring: dict[str, Any]) -> dict[str, Any]:
    from .api import unlearn

    record: dict[str, Any] = {"number": number, "args": dict(args), "value": None, "scores": None, "error": None}
    start = time.perf_counter()
    try:
        model = unlearn(original, forget=forget, retain=retain, method=method, seed=seed, **args)
        scores = evaluate(model, forget=forget, retain=retain, test=test, reference=oracle, seed=seed, **scoring)
    except (DivergenceError, ValueError) as e:
        record["error"] = f"{type(e).__name__}: {e}"
        log.info("trial %d of %s with %s failed: %s", number, method, args, record["error"])
        return record
    value = scores.get(objective)
    record["scores"] = scores
    if value is None or not math.isfinite(value):
        record["error"] = f"objective {objective} is {value!r}, not a finite number"
    else:
        record["value"] = float(value)
    log.info("trial %d of %s with %s: %s = %s (%.1f s)", number, method, args, objective, value,
             time.perf_counter() - start)
    return record


# --- the search space ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Dimension:
    """One searched argument: categorical over ``choices`` or a range ``low``..``high``."""

    name: str
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False

    def suggest(self, trial: Any) -> Any:
        if self.choices is not None:      # by position, so any value (None, tuples) can be a choice
            return self.choices[trial.suggest_categorical(self.name, list(range(len(self.choices))))]
        if isinstance(self.low, int) and isinstance(self.high, int):
            return trial.suggest_int(self.name, self.low, self.high, log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)

    def position(self, value: Any) -> Any:
        """How ``value`` is written in a trial's parameters, or None when it lies outside this dimension."""
        if self.choices is not None:
            return next((i for i, c in enumerate(self.choices)
                         if isinstance(c, bool) == isinstance(value, bool) and c == value), None)
        return value if isinstance(value, (int, float)) and self.low <= value <= self.high else None


def _search_space(cls: type, space: dict | None, fixed: dict[str, Any]) -> list[Dimension]:
    where = f"tuning {cls.name!r}"
    names = [f.name for f in dataclasses.fields(cls.Args)]
    for label, given in (("fixed", fixed), ("space", space or {})):
        if not isinstance(given, dict):
            raise TypeError(f"{where}: {label} must be a dict of argument -> value(s); "
                            f"got {type(given).__name__}")
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise ValueError(f"{where}: unknown argument(s) {unknown} in {label}; "
                             f"allowed: {', '.join(names) or 'none'}")
    registry.parse_args(cls.Args, fixed, where=f"{where}: fixed")
    if space is None:
        space = {k: v for k, v in cls.grid.items() if k not in fixed}
    else:
        both = sorted(set(space) & set(fixed))
        if both:
            raise ValueError(f"{where}: argument(s) {both} are both searched (space) and pinned (fixed); "
                             "give each once")
    return [_dimension(cls, name, spec, fixed, where) for name, spec in space.items()]


def _dimension(cls: type, name: str, spec: Any, fixed: dict[str, Any], where: str) -> Dimension:
    if isinstance(spec, dict):
        extra = sorted(set(spec) - {"low", "high", "log"})
        low, high, log_scale = spec.get("low"), spec.get("high"), spec.get("log", False)
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (low, high))
        if extra or not numbers or not low < high or not isinstance(log_scale, bool) or (log_scale and low <= 0):
            raise ValueError(f"{where}: space[{name!r}]={spec!r} is not a valid range; expected "
                             "{'low': number, 'high': larger number, 'log': bool} (low > 0 with log)")
        for v in (low, high):
            registry.parse_args(cls.Args, {**fixed, name: v}, where=where)
        return Dimension(name, low=low, high=high, log=log_scale)
    if not isinstance(spec, (list, tuple)) or len(spec) == 0:
        raise ValueError(f"{where}: space[{name!r}]={spec!r} is not allowed; expected a non-empty list of values "
                         "or a range {'low': ..., 'high': ..., 'log': ...}")
    for v in spec:
        registry.parse_args(cls.Args, {**fixed, name: v}, where=where)
    return Dimension(name, choices=tuple(spec))


def _default_point(cls: type, dims: list[Dimension]) -> dict[str, Any] | None:
    """The method's defaults as trial parameters, when every searched argument's default lies in the space."""
    defaults = registry.defaults(cls.Args)
    point = {d.name: d.position(defaults.get(d.name)) for d in dims}
    return point if dims and all(v is not None for v in point.values()) else None


def _check_objective(objective: str, task: str, has_test: bool) -> None:
    if task == "language":
        from .lm.evaluate import GAP_KEYS

        gaps, first = GAP_KEYS, ["avg_gap"]
    elif task == "generation":
        from .gen.evaluate import AVG_GAP_KEYS

        gaps, first = AVG_GAP_KEYS, ["avg_gap"]
    else:
        gaps = CLASSIFICATION_GAPS if task == "classification" else REGRESSION_GAPS
        first = ["avg_gap"] if task == "classification" else ["w1_to_reference"]
    allowed = first + [f"gap_{g}" for g in gaps]
    if objective not in allowed:
        raise ValueError(f"objective {objective!r} is not allowed for {task}; allowed (lower is better): "
                         f"{', '.join(allowed)}")
    needs_test = objective.endswith(("test_acc", "test_mae", "mia_efficacy"))
    if needs_test and not has_test:
        raise ValueError(f"objective {objective!r} needs test data; pass test=...")


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    import optuna

    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


__all__ = ["tune", "TuneResult", "TuningError", "TuningSet", "tuning_set", "train_oracle", "quick_tune",
           "estimate_seconds",
           "check_trials", "quick_budget", "QUICK_TRIALS", "MAX_TRIALS"]
