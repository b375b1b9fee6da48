"""The audit's meta-evaluation: does each score rank do-nothing, fine-tuning, a relabelling method and retraining
correctly, flag doing nothing (power), and leave retraining inside its oracle-vs-oracle band (calibration)?

    python benchmarks/evidence.py digits  [--models 64] [--repeats 10]  # -> benchmarks/results/evidence_digits.json
    python benchmarks/evidence.py fashion [--models 32] [--repeats 5]   # -> benchmarks/results/evidence_fashion.json
    python benchmarks/evidence.py digits --repeats 5 --extend           # 5 more repetitions (the next audit seeds)
    python benchmarks/evidence.py --table                               # README's tables, from the committed JSON
    python benchmarks/evidence.py --rescore                             # recompute the scores from the stored rows

Known truth: four methods on one random 10% forget request, each audited ``expunge.audit.audit_methods`` (vulnerable
mode, SWAP test on) with the same K originals, oracles, baseline oracles and swapped originals:
``identity`` (do nothing: the original, which kept the forget set), ``finetune`` and ``random_label`` (approximate
methods, somewhere in between: their order is not known and is not scored) and ``retrain`` with no arguments
(exact retraining with the oracles' recipe, from a fresh initialisation of its own seed stream: in truth an oracle).
Each repetition uses another audit seed (seeds ``r * SEED_STRIDE``; no model is shared between repetitions); the
data and the forget request stay fixed. IAM (``expunge.audit.iam``) scores the audited model (original 0 unlearned
with the audit's seed, rebuilt by ``expunge.unlearn``: the audit's member 0 up to the batched ensemble's rounding)
and :data:`IAM_ORACLES` baseline oracles of the same repetition, whose spread is IAM's oracle band.

For every score (:data:`SCORES`), oriented so that higher means farther from retraining:
- value per method: the median over repetitions;
- the oracle band: what the audit compares the score with, from the retrain audits (median edges over
  repetitions): the audit's own band where it reports one (retain leakage, the vulnerable-sample games), the SWAP
  test's 95% bootstrap interval of the oracle-vs-oracle advantage (an interval for the baseline's own estimate, not
  a band for another model's: no rate), the verdict's margins around the oracle-vs-oracle baseline (U-LiRA and
  LiRA AUC: ``expunge.verdict.auc_margin``, max(0.05, 2 standard errors); forgetting quality F: ``AUDIT_MARGIN``;
  neither states a rate), for KLoM (no band in the audit) the baseline mean ± 1.96 Welch standard errors of a
  difference of two means over forget examples (:func:`klom_band`; the two sets are paired, the same examples
  against the same oracles, which the Welch error ignores, so its rate is not known; the stored rows hold no
  per-example values for a paired band), for IAM the 95% prediction band of :data:`IAM_ORACLES` oracles' values
  (``expunge.audit.leakage._prediction_band``: with 16 values their smallest and largest, which one more
  exchangeable value lies beyond with probability 1/17 on each side);
- ranking: correct when retraining scores lowest and doing nothing highest, on the medians (and the share of
  repetitions where it holds); ``retrain_closest``: retraining's median nearest the band's centre on either side
  (an overshooting method lies far below a one-sided score's band, where the ranking counts it as close);
- power: the share of repetitions in which doing nothing lies beyond the band's far edge (the side the audit
  flags); calibration: the shares in which retraining lies beyond the far edge and beyond the near edge, each to
  read against the band's nominal rate per side (:attr:`Score.nominal`; None where the rule states none). With R
  repetitions a share moves in steps of 1/R: a calibration of 0 or 1/R cannot tell a 2.5% rate from 10%; it
  catches only a band that retraining leaves often.

The rows keep every number the scores read, so ``--rescore`` recomputes the scores without training: it first
re-derives from stored numbers what depends on code that may change (IAM's band from the oracles' stored values;
the verdict from the stored summary by the current ``expunge.verdict.audit_verdict``, which judges rows without
the audit's newer permutation bands by its margins), then the meta-evaluation.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent
METHODS = ("identity", "finetune", "random_label", "retrain")
MIDDLE = ("finetune", "random_label")         # between doing nothing and retraining; their order is not scored
SEED_STRIDE = 10_000                           # audit seeds of repetition r: r * SEED_STRIDE + [0, 4K)
IAM_ORACLES = 16                               # baseline oracles scored by IAM for its band
Z95 = 1.959963984540054
PERMUTATION_RATE = 0.025                       # per side: the central 95% of a permutation distribution


def prediction_rate(m: float) -> float:
    """The rate, per side, at which one more exchangeable value lies beyond the 95% prediction band of ``m`` values
    (``expunge.audit.leakage._prediction_band``: the ⌈0.975 (m + 1)⌉-th smallest, at most the largest): 1/17 for
    16 values, 1/65 for 64, 3/129 for 128; NaN for no value."""
    if not (isinstance(m, (int, float)) and math.isfinite(m)) or m < 1:
        return math.nan
    m = int(m)
    return (m + 1 - min(math.ceil(0.975 * (m + 1)), m)) / (m + 1)


@dataclass(frozen=True)
class Score:
    """One score: ``read(row)`` gives ``(value, band_low, band_high)`` with higher values farther from retraining
    (scores where lower is worse are negated); ``nominal``: the rate, per side, at which an oracle falls beyond the
    band's edge by construction, a number or a function of the retrain row (a band whose rate depends on the
    number of models; the median over repetitions is reported), None where the rule states none."""

    key: str
    label: str
    read: Callable[[dict[str, float]], tuple[float, float, float]]
    nominal: float | Callable[[dict[str, float]], float] | None = None
    ranked: bool = True          # False for a yes/no score, whose ties say nothing about an order
    two_sided: bool = True       # False for a yes/no score: its band has no near edge to fall below


def _keys(value: str, low: str, high: str, sign: float = 1.0) -> Callable[[dict[str, float]], tuple]:
    if sign > 0:
        return lambda r: (r.get(value, math.nan), r.get(low, math.nan), r.get(high, math.nan))
    return lambda r: (-r.get(value, math.nan), -r.get(high, math.nan), -r.get(low, math.nan))


def _around(value: str, centre: str, margin: str, sign: float = 1.0) -> Callable[[dict[str, float]], tuple]:
    def read(r: dict[str, float]) -> tuple[float, float, float]:
        c, m = r.get(centre, math.nan), r.get(margin, math.nan)
        v = r.get(value, math.nan)
        return (v, c - m, c + m) if sign > 0 else (-v, -c - m, -c + m)
    return read


def _verdict(r: dict[str, float]) -> tuple[float, float, float]:
    return r.get("verdict_distinguishable", math.nan), 0.0, 0.5


SCORES: tuple[Score, ...] = (
    Score("ulira_auc", "U-LiRA AUC (tier 2)", _around("ulira_auc", "ulira_baseline_auc", "ulira_margin")),
    Score("challenge_f", "challenge F, across originals (−F)",
          _around("challenge_forget_quality", "challenge_baseline_forget_quality", "f_margin", -1.0), None),
    Score("challenge_f_neurips2023", "challenge F, NeurIPS 2023 protocol (−F)",
          _around("challenge_neurips2023_forget_quality", "challenge_baseline_forget_quality", "f_margin", -1.0),
          None),
    Score("klom_forget", "KLoM, forget mean", _keys("klom_forget_mean", "klom_band_low", "klom_band_high")),
    Score("lira_auc", "LiRA AUC of the audited model (tier 1)",
          _around("lira_auc", "lira_oracle_auc", "lira_margin")),
    Score("retain_leakage", "retain leakage, AUC difference (unlearned models)",
          _keys("retain_leakage_auc_difference", "retain_leakage_auc_band_low", "retain_leakage_auc_band_high"),
          PERMUTATION_RATE),
    Score("retain_leakage_audited", "retain leakage, AUC difference (audited model)",
          _keys("retain_leakage_audited_auc_difference", "retain_leakage_audited_auc_band_low",
                "retain_leakage_audited_auc_band_high"),
          lambda r: prediction_rate(2 * r.get("n_models", math.nan))),     # the 2K single oracles' band
    Score("swap_advantage", "SWAP-test advantage",
          _keys("swap_advantage", "swap_advantage_baseline_ci_low", "swap_advantage_baseline_ci_high")),
    Score("vulnerable_efficacy_auc", "vulnerable top-v: efficacy (U-LiRA) AUC",
          _keys("vulnerable_efficacy_auc", "vulnerable_efficacy_auc_band_low", "vulnerable_efficacy_auc_band_high"),
          PERMUTATION_RATE),
    Score("population_efficacy_auc", "whole forget set: efficacy (U-LiRA) AUC",
          _keys("vulnerable_population_efficacy_auc", "vulnerable_population_efficacy_auc_band_low",
                "vulnerable_population_efficacy_auc_band_high"), PERMUTATION_RATE),
    Score("vulnerable_privacy_auc", "vulnerable top-v: privacy (LiRA) AUC",
          _keys("vulnerable_privacy_auc", "vulnerable_privacy_auc_band_low", "vulnerable_privacy_auc_band_high"),
          PERMUTATION_RATE),
    Score("population_privacy_auc", "whole forget set: privacy (LiRA) AUC",
          _keys("vulnerable_population_privacy_auc", "vulnerable_population_privacy_auc_band_low",
                "vulnerable_population_privacy_auc_band_high"), PERMUTATION_RATE),
    Score("iam_completeness", "IAM completeness of the audited model (−completeness)",
          _keys("iam_completeness_mean", "iam_band_low", "iam_band_high", -1.0),
          lambda r: prediction_rate(r.get("iam_band_oracles", math.nan))),
    Score("verdict", "the audit's verdict (1 = distinguishable)", _verdict, None, ranked=False, two_sided=False),
)


# --- the meta-evaluation (pure: rows in, numbers out) -----------------------------------------------------------

def flagged(value: float, high: float) -> bool | None:
    """Beyond the band's far edge (values oriented: higher = farther from retraining); None when unknown."""
    if not (math.isfinite(value) and math.isfinite(high)):
        return None
    return bool(value > high)


def below(value: float, low: float) -> bool | None:
    """Beyond the band's near edge (closer to, or past, where retraining sits than the oracles); None when
    unknown."""
    if not (math.isfinite(value) and math.isfinite(low)):
        return None
    return bool(value < low)


def ranking_parts(values: dict[str, float]) -> tuple[bool, bool] | None:
    """``(retraining lowest, doing nothing highest)`` of the four oriented values (the middle two's order is not
    scored; a tie is not an order); None when a value is missing."""
    v = {m: values.get(m, math.nan) for m in METHODS}
    if not all(math.isfinite(x) for x in v.values()):
        return None
    return bool(v["retrain"] < min(v[m] for m in (*MIDDLE, "identity"))), \
        bool(v["identity"] > max(v[m] for m in (*MIDDLE, "retrain")))


def ranking_correct(values: dict[str, float]) -> bool | None:
    """Retraining lowest and doing nothing highest of the four (oriented values); None when a value is missing."""
    parts = ranking_parts(values)
    return None if parts is None else all(parts)


def retrain_closest(medians: dict[str, float | None], band: tuple[float | None, float | None]) -> bool | None:
    """Whether retraining's median is nearer the band's centre than every other method's, in either direction
    (a method that overshoots, e.g. pushes forget examples below the oracles' confidence, is far on the other side
    of a one-sided score); None when a value is missing."""
    if None in band or any(medians.get(m) is None for m in METHODS):
        return None
    centre = (band[0] + band[1]) / 2
    distance = {m: abs(medians[m] - centre) for m in METHODS}
    return bool(distance["retrain"] < min(distance[m] for m in METHODS if m != "retrain"))


def _share(flags: list[bool | None]) -> float | None:
    known = [f for f in flags if f is not None]
    return sum(known) / len(known) if known else None


def _median(xs: list[float]) -> float | None:
    xs = [x for x in xs if math.isfinite(x)]
    return float(np.median(xs)) if xs else None


def meta_evaluate(repetitions: list[dict[str, dict[str, float]]],
                  scores: tuple[Score, ...] = SCORES) -> dict[str, dict[str, Any]]:
    """Per score: oriented median value per method, the oracle band (median edges over the retrain audits), the
    ranking on the medians and its share over repetitions, the share of repetitions each method is flagged in
    (``flagged``: beyond the far edge; power = identity's, calibration = retrain's), the share each lies beyond the
    near edge (``below``; retrain's is ``calibration_below``, None for a one-sided score) and the nominal rate per
    side. ``repetitions``: one dict per repetition, method → its flat row."""
    out: dict[str, dict[str, Any]] = {}
    for s in scores:
        read = {m: [s.read(rep[m]) for rep in repetitions if m in rep] for m in METHODS}
        medians = {m: _median([v for v, _, _ in read[m]]) for m in METHODS}
        band = (_median([lo for _, lo, _ in read["retrain"]]), _median([hi for _, _, hi in read["retrain"]]))
        per_rep = [ranking_correct({m: s.read(rep[m])[0] for m in METHODS if m in rep}) if s.ranked else None
                   for rep in repetitions]
        shares = {m: _share([flagged(v, hi) for v, _, hi in read[m]]) for m in METHODS}
        under = {m: _share([below(v, lo) for v, lo, _ in read[m]]) if s.two_sided else None for m in METHODS}
        nominal = s.nominal
        if callable(nominal):
            nominal = _median([nominal(rep["retrain"]) for rep in repetitions if "retrain" in rep])
        parts = ranking_parts({m: math.nan if v is None else v for m, v in medians.items()}) if s.ranked else None
        closest = retrain_closest(medians, band) if s.ranked else None
        out[s.key] = {"label": s.label, "values": medians, "band": list(band),
                      "ranking": None if parts is None else all(parts),
                      "retrain_lowest": None if parts is None else parts[0],
                      "identity_highest": None if parts is None else parts[1], "retrain_closest": closest,
                      "ranking_share": _share(per_rep), "flagged": shares, "below": under,
                      "power": shares["identity"], "calibration": shares["retrain"],
                      "calibration_below": under["retrain"], "nominal": nominal, "repetitions": len(repetitions)}
    return out


# --- the rows ---------------------------------------------------------------------------------------------------

def klom_band(baseline: np.ndarray, unlearned: np.ndarray) -> tuple[float, float]:
    """The band a mean KLoM is judged against: the oracle-vs-oracle mean ± 1.96 standard errors of the difference
    of the two means (Welch: √((s_b² + s_u²)/n) from both sets of per-example values), so that a mean over
    per-example values drawn independently of the baseline's, distributed as they are, lands above it 2.5% of the
    time. (With the baseline's spread alone, ± 1.96·√2·s_b/√n, skewed per-example values land above it far more
    often: 4% for exponential ones.) In the audit the two sets are paired (the same forget examples against the
    same oracles), which this band ignores: its rate there is not known, and the KLoM score states none."""
    b, u = (np.asarray(x, dtype=float) for x in (baseline, unlearned))
    b, u = b[np.isfinite(b)], u[np.isfinite(u)]
    if len(b) < 2 or len(u) < 2:
        return math.nan, math.nan
    half = Z95 * math.sqrt(float(b.var(ddof=1)) / len(b) + float(u.var(ddof=1)) / len(u))
    return float(b.mean()) - half, float(b.mean()) + half


def audit_row(result: Any) -> dict[str, float]:
    """The flat numbers of one audit that :data:`SCORES` read, with the margins and bands it adds."""
    from expunge.verdict import AUDIT_MARGIN, auc_margin

    row = {k: float(v) for k, v in result.summary().items()}
    n_f, n_t, k = result.sizes["forget"], result.sizes["test"], result.n_models
    row["ulira_margin"] = auc_margin(k * n_f / 2, k * n_f / 2)       # as expunge.verdict.audit_verdict
    row["lira_margin"] = auc_margin(n_f, n_t)
    row["f_margin"] = AUDIT_MARGIN
    row["klom_band_low"], row["klom_band_high"] = klom_band(result.tier2.klom_baseline["forget"].per_example,
                                                            result.tier2.klom["forget"].per_example)
    row["n_forget"], row["n_test"] = float(n_f), float(n_t)
    row["verdict_distinguishable"] = verdict_flag(row)
    return row


def verdict_flag(row: dict[str, float]) -> float:
    """1.0 when ``expunge.verdict.audit_verdict`` of the stored summary says distinguishable, else 0.0 (also when
    inconclusive); the sizes from ``n_forget``/``n_test``, or, in rows written before those were kept, from IAM's
    forget count and retain leakage's non-members (the test set)."""
    from expunge.verdict import audit_verdict

    n_f = row.get("n_forget", row.get("iam_n_forget", math.nan))
    n_t = row.get("n_test", row.get("retain_leakage_n_nonmembers", math.nan))
    summary = {k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))}
    line = audit_verdict(summary, int(row.get("evidence_tier", 0)), {"forget": n_f, "test": n_t})
    return float("DISTINGUISHABLE" in line)


def iam_band(values: list[float]) -> tuple[float, float]:
    """The 95% prediction band of the oracles' IAM values (``expunge.audit.leakage._prediction_band``; its rate per
    side :func:`prediction_rate` of their number)."""
    from expunge.audit.leakage import _prediction_band

    x = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    if len(x) < 2:
        return math.nan, math.nan
    return _prediction_band(x)


def rederive(summary: dict[str, Any]) -> list[dict[str, dict[str, float]]]:
    """The stored rows (None read as NaN) with what depends on changeable code re-derived from stored numbers:
    IAM's band and its number of oracles from each repetition's stored oracle values, the verdict by
    :func:`verdict_flag`."""
    reps = [{m: {k: math.nan if v is None else v for k, v in row.items()} for m, row in rep.items()}
            for rep in summary["rows"]]
    for rep, timing in zip(reps, summary.get("timings", [])):
        oracle = [math.nan if v is None else v for v in timing.get("oracle_iam") or []]
        low, high = iam_band(oracle)
        for row in rep.values():
            if oracle:
                row["iam_band_low"], row["iam_band_high"] = low, high
                row["iam_band_oracles"] = float(sum(math.isfinite(v) for v in oracle))
            row["verdict_distinguishable"] = verdict_flag(row)
    return reps


def repetition(setup: dict[str, Any], *, n_models: int, seed: int, iam_oracles: int = IAM_ORACLES,
               top: int | None = None, mode: str = "vulnerable") -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """One repetition: the four audits on shared models, IAM of each audited model and of ``iam_oracles`` baseline
    oracles, all against one shadow seeded by ``seed`` (``expunge.audit.iam.train_shadow``, trained once from
    original 0's architecture and recipe; the audit's own ``iam_*`` numbers are replaced by these so that the value
    and its band are alike; its ``iam_oracle_*`` stay as the audit gave them); returns method → row, and timings."""
    from expunge.audit import audit_methods
    from expunge.audit.iam import iam, train_shadow

    data = {k: setup[k] for k in ("train", "test")}
    sets = {k: setup[k] for k in ("forget", "retain")}
    shared: dict[str, Any] = {}
    start = time.perf_counter()
    results = audit_methods(setup["template"], **data, **sets, methods=setup["methods"], shared=shared,
                            recipe=setup["recipe"], n_models=n_models, seed=seed, swap=True, mode=mode, top=top)
    audits = time.perf_counter() - start
    t0 = time.perf_counter()
    shadow = train_shadow(shared["original"].member(0), **sets, seed=seed)
    oracle_iam = [iam(shared["baseline"].member(i), **sets, test=data["test"], shadow=shadow).summary()
                  ["iam_completeness_mean"] for i in range(min(iam_oracles, n_models))]
    low, high = iam_band(oracle_iam)
    rows = {}
    for name, result in results.items():
        row = audit_row(result)
        model = _audited(result, shared, setup, name, seed)
        row.update(iam(model, **sets, test=data["test"], shadow=shadow).summary())
        row["iam_band_low"], row["iam_band_high"] = low, high
        row["iam_band_oracles"] = float(sum(math.isfinite(v) for v in oracle_iam))
        rows[name] = row
    timing = {"audits_seconds": audits, "iam_seconds": time.perf_counter() - t0,
              "stage_seconds": {n: r.seconds for n, r in results.items()}, "oracle_iam": oracle_iam}
    return rows, timing


def _audited(result: Any, shared: dict[str, Any], setup: dict[str, Any], name: str, seed: int) -> Any:
    """The audited model: member 0 of the method's unlearned models, i.e. original 0 unlearned with seed ``seed``
    (rebuilt the way the audit builds it; the audit keeps no model)."""
    import expunge

    return expunge.unlearn(shared["original"].member(0), forget=setup["forget"], retain=setup["retain"],
                           method=name, seed=seed, **(setup["methods"][name] or {}))


# --- the two setups ---------------------------------------------------------------------------------------------

def digits_setup() -> dict[str, Any]:
    """``examples/digits_audit.yaml``'s data, model, recipe, forget request and finetune arguments; random_label with
    the arguments the digits benchmark tuned for this recipe (``expunge.presets``)."""
    from expunge.audit.config import load_audit_config
    from expunge.experiment import prepare

    cfg, _ = load_audit_config(ROOT / "examples" / "digits_audit.yaml")
    p = prepare(cfg)
    methods = {"identity": None, "finetune": dict(cfg.args),
               "random_label": {"epochs": 10, "lr": 0.01, "batch_size": 64}, "retrain": None}
    return {"name": "digits", "template": p.template, "train": p.train, "test": p.test, "forget": p.forget,
            "retain": p.retain, "recipe": cfg.train.to_dict(), "methods": methods,
            "description": "examples/digits_audit.yaml: scikit-learn digits (1,437 train, 360 test), MLP [128, 64], "
                           "30 epochs SGD lr 0.05 cosine; random 10% forget (144 rows)"}


FASHION_TRAIN, FASHION_TEST = 2000, 1000
FASHION_RECIPE = {"epochs": 20, "lr": 0.05, "batch_size": 64, "momentum": 0.9, "weight_decay": 0.0,
                  "schedule": "cosine"}


def fashion_setup() -> dict[str, Any]:
    """Fashion-MNIST (Debian's dataset-fashion-mnist): a seeded draw of :data:`FASHION_TRAIN` training and
    :data:`FASHION_TEST` test images, an MLP [128, 64], the Fashion-MNIST benchmark's recipe (no weight decay, so the
    original fits its training set), a random 10% forget request."""
    import torch
    from torch.utils.data import Subset

    import expunge
    from expunge.data.images import fashion_mnist

    train, test = fashion_mnist(subset=FASHION_TRAIN, seed=0)
    keep = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[:FASHION_TEST].sort().values
    test = Subset(test, keep.tolist())
    forget, retain = expunge.split_forget(train, fraction=0.1, seed=0)
    template = expunge.model("mlp", train, hidden=[128, 64], seed=0)
    args = {"epochs": 5, "lr": 0.05, "batch_size": 64, "schedule": "cosine"}
    methods = {"identity": None, "finetune": args, "random_label": {"epochs": 5, "lr": 0.01, "batch_size": 64},
               "retrain": None}
    return {"name": "fashion", "template": template, "train": train, "test": test, "forget": forget,
            "retain": retain, "recipe": dict(FASHION_RECIPE), "methods": methods,
            "description": f"Fashion-MNIST: {FASHION_TRAIN:,} training images drawn from the 60,000 (seed 0), "
                           f"{FASHION_TEST:,} of the 10,000 test images, MLP [128, 64], 20 epochs SGD lr 0.05 "
                           f"cosine, no weight decay; random 10% forget ({FASHION_TRAIN // 10} rows)"}


SETUPS = {"digits": digits_setup, "fashion": fashion_setup}


def run(name: str | dict[str, Any], *, n_models: int, repeats: int, out: Path | None = None, top: int | None = None,
        iam_oracles: int = IAM_ORACLES, mode: str = "vulnerable", echo: Callable[[str], None] = print,
        previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """The meta-evaluation of one setup (a name in :data:`SETUPS`, or a setup dict as they return):
    ``repeats`` repetitions of the four audits at K = ``n_models`` (``mode="standard"`` leaves the vulnerable-sample
    games out). ``previous``: an earlier run's summary of the same setup and K, extended by ``repeats`` more
    repetitions (the next audit seeds)."""
    from expunge.threads import get_threads

    setup = SETUPS[name]() if isinstance(name, str) else name
    reps, timings, first, before = [], [], 0, 0.0
    if previous is not None:
        check_extends(previous, setup, n_models=n_models, iam_oracles=iam_oracles, mode=mode, top=top)
        reps = rederive(previous)
        timings, first, before = list(previous["timings"]), len(previous["rows"]), previous["seconds"]
    start = time.perf_counter()
    for r in range(first, first + repeats):
        seed = r * SEED_STRIDE
        rows, timing = repetition(setup, n_models=n_models, seed=seed, iam_oracles=iam_oracles, top=top, mode=mode)
        reps.append(rows)
        timings.append({"seed": seed, **timing})
        shared = sum(timing["stage_seconds"]["identity"].get(s, 0.0) for s in SHARED_STAGES)
        echo(f"{setup['name']} repetition {r + 1}/{first + repeats} (audit seed {seed}): four audits in "
             f"{timing['audits_seconds']:.0f}s (shared trainings {shared:.0f}s, trained once instead of "
             f"{len(METHODS)} times), IAM {timing['iam_seconds']:.0f}s")
    meta = meta_evaluate(reps)
    summary = {"setup": setup["description"], "dataset": setup["name"], "n_models": n_models,
               "repetitions": len(reps), "seeds": [t["seed"] for t in timings], "methods": setup["methods"],
               "iam_oracles": iam_oracles, "mode": mode, "top": top, "threads": get_threads(),
               "seconds": before + time.perf_counter() - start,
               "scores": meta, "rows": reps, "timings": timings}
    summary["sharing"] = sharing(timings)
    echo(f"{setup['name']}: {len(reps)} repetitions, four audits each in {summary['sharing']['audits_seconds']:.0f}s "
         f"in all; four separate audits would take about {summary['sharing']['separate_over_shared']:.2f} times as "
         f"long (shared trainings {summary['sharing']['shared_seconds']:.0f}s, trained once instead of four times)")
    if out is not None:
        out.write_text(json.dumps(_clean(summary), indent=1) + "\n")
        echo(f"wrote {out} in {summary['seconds']:.0f}s")
    return summary


def check_extends(previous: dict[str, Any], setup: dict[str, Any], **settings: Any) -> None:
    """Refuse, in one line, extending results of another setup, K, methods, IAM oracle count, mode or top (results
    written before mode and top were kept ran the vulnerable mode with the default top)."""
    ours = {"setup": setup["description"], "n_models": settings["n_models"],
            "methods": json.loads(json.dumps(_clean(setup["methods"]))), "iam_oracles": settings["iam_oracles"],
            "mode": settings["mode"], "top": settings["top"]}
    theirs = {**{"mode": "vulnerable", "top": None}, **{k: previous.get(k) for k in ours if k in previous}}
    differ = [k for k in ours if theirs.get(k) != ours[k]]
    if differ:
        raise ValueError(f"--extend needs the same setup and K, methods, IAM oracles, mode and top as the results it "
                         f"extends; these differ: {', '.join(differ)}")


SHARED_STAGES = ("originals", "oracles", "baseline", "swap originals")


def sharing(timings: list[dict[str, Any]]) -> dict[str, float]:
    """What training the method-independent ensembles once saved, as measured: the four audits' seconds, the shared
    trainings' seconds (the first audit of each repetition trained them) and the ratio of four separate audits
    (which would train them four times) to the shared ones."""
    timings = [t for t in timings if t.get("stage_seconds")]
    audits = sum(t["audits_seconds"] for t in timings)
    shared = sum(t["stage_seconds"][next(iter(t["stage_seconds"]))].get(s, 0.0) for t in timings
                 for s in SHARED_STAGES)
    return {"audits_seconds": audits, "shared_seconds": shared,
            "separate_over_shared": (audits + (len(METHODS) - 1) * shared) / audits if audits else math.nan}


def _clean(o: Any) -> Any:
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, (np.floating, float)):
        return None if not math.isfinite(float(o)) else float(o)
    if isinstance(o, np.integer):
        return int(o)
    return o


# --- README's table ---------------------------------------------------------------------------------------------

def _cell(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _share_cell(x: float | None, n: int) -> str:
    return "–" if x is None else f"{round(x * n)}/{n}"


def table(summary: dict[str, Any]) -> list[str]:
    """One Markdown table: a row per score, oriented values (higher = farther from retraining) per method, the
    oracle band, the ranking, whether retraining is nearest the band's centre, power, and calibration: retraining
    beyond the far edge and beyond the near edge, with the nominal rate per side."""
    n = summary["repetitions"]
    lines = ["| score (oriented: higher = farther from retraining) | identity | finetune | random_label | retrain "
             "| oracle band | ranking (reps) | retrain closest | power | calibration: above · below (nominal each) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for key, s in summary["scores"].items():
        values = " | ".join(_cell(s["values"][m]) for m in METHODS)
        band = "–" if None in s["band"] else f"{s['band'][0]:.3f} to {s['band'][1]:.3f}"
        ranking = ranking_cell(s)
        closest = {True: "✓", False: "✗", None: "–"}[s.get("retrain_closest")]
        nominal = "–" if s["nominal"] is None else f"{s['nominal']:.1%}"
        calibration = f"{_share_cell(s['calibration'], n)} · {_share_cell(s.get('calibration_below'), n)}"
        lines.append(f"| {s['label']} | {values} | {band} | {ranking} ({_share_cell(s['ranking_share'], n)}) "
                     f"| {closest} | {_share_cell(s['power'], n)} | {calibration} ({nominal}) |")
    return lines


def ranking_cell(s: dict[str, Any]) -> str:
    """✓, or ✗ saying which end is out of place (retraining not lowest, doing nothing not highest)."""
    if s["ranking"] is None:
        return "–"
    if s["ranking"]:
        return "✓"
    wrong = [w for w, ok in (("retrain not lowest", s["retrain_lowest"]), ("identity not highest",
                                                                           s["identity_highest"])) if not ok]
    return "✗ " + ", ".join(wrong)


def tables() -> list[str]:
    out = []
    for name in SETUPS:
        path = RESULTS / f"evidence_{name}.json"
        if not path.exists():
            continue
        summary = json.loads(path.read_text())
        out += [f"{summary['setup']}; K = {summary['n_models']}, {summary['repetitions']} repetitions:", ""]
        out += table(summary) + [""]
    return out[:-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", nargs="?", choices=sorted(SETUPS))
    parser.add_argument("--models", type=int, default=None, help="K (default: 64 on digits, 32 on fashion)")
    parser.add_argument("--repeats", type=int, default=None, help="repetitions (default: 10 on digits, 5 on fashion)")
    parser.add_argument("--out", type=Path, default=None, help="JSON (default benchmarks/results/evidence_<name>.json)")
    parser.add_argument("--table", action="store_true", help="print README's tables from the committed JSON")
    parser.add_argument("--extend", action="store_true", help="add --repeats repetitions to the results in --out")
    parser.add_argument("--rescore", action="store_true", help="recompute the scores of the committed JSON from its "
                                                              "rows (after a change to the meta-evaluation)")
    a = parser.parse_args(argv)
    if a.table:
        print("\n".join(tables()))
        return 0
    if a.rescore:
        paths = [p for p in (RESULTS / f"evidence_{name}.json" for name in SETUPS) if p.exists()]
        if not paths:
            print(f"no results to rescore: none of {', '.join(f'evidence_{n}.json' for n in SETUPS)} in {RESULTS}",
                  file=sys.stderr)
            return 2
        for path in paths:
            summary = json.loads(path.read_text())
            summary["rows"] = rederive(summary)
            summary["scores"] = meta_evaluate(summary["rows"])
            path.write_text(json.dumps(_clean(summary), indent=1) + "\n")
            print(f"rescored {path}")
        return 0
    if a.dataset is None:
        parser.error("name a dataset (digits or fashion) or give --table")
    k = a.models or {"digits": 64, "fashion": 32}[a.dataset]
    r = a.repeats or {"digits": 10, "fashion": 5}[a.dataset]
    if k < 4 or r < 1:
        parser.error("--models must be at least 4 (the vulnerable mode's games) and --repeats at least 1")
    out = a.out or RESULTS / f"evidence_{a.dataset}.json"
    if a.extend and not out.exists():
        parser.error(f"--extend adds repetitions to {out}, which does not exist; run without --extend first")
    from expunge.threads import set_threads

    set_threads(1)
    previous = json.loads(out.read_text()) if a.extend else None
    run(a.dataset, n_models=k, repeats=r, out=out, previous=previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
