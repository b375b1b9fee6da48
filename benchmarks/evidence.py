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
  test's oracle-vs-oracle interval, the verdict's margins around the oracle-vs-oracle baseline (U-LiRA and LiRA
  AUC: ``expunge.verdict.auc_margin``; forgetting quality F: ``AUDIT_MARGIN``), for KLoM (no band in the audit) the
  baseline mean ± 1.96 standard errors of the difference of two means over forget examples (:func:`klom_band`),
  for IAM the 2.5-97.5% quantiles of the oracles';
- ranking: correct when retraining scores lowest and doing nothing highest, on the medians (and the share of
  repetitions where it holds); ``retrain_closest``: retraining's median nearest the band's centre on either side
  (an overshooting method lies far below a one-sided score's band, where the ranking counts it as close);
- power: the share of repetitions in which doing nothing lies beyond the band's far edge; calibration: the share
  in which retraining does, to read against the band's nominal rate (:attr:`Score.nominal`; None where the rule
  has no stated rate). With R repetitions a share moves in steps of 1/R: a calibration of 0 or 1/R cannot tell a
  2.5% rate from 10%; it catches only a band that retraining leaves most of the time.
"""
from __future__ import annotations

import argparse
import json
import math
import os
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


@dataclass(frozen=True)
class Score:
    """One score: ``read(row)`` gives ``(value, band_low, band_high)`` with higher values farther from retraining
    (scores where lower is worse are negated); ``nominal``: the rate at which an oracle falls beyond the band's high
    edge by construction (None where the rule states none)."""

    key: str
    label: str
    read: Callable[[dict[str, float]], tuple[float, float, float]]
    nominal: float | None = 0.025
    ranked: bool = True          # False for a yes/no score, whose ties say nothing about an order


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
          _keys("retain_leakage_auc_difference", "retain_leakage_auc_band_low", "retain_leakage_auc_band_high")),
    Score("retain_leakage_audited", "retain leakage, AUC difference (audited model)",
          _keys("retain_leakage_audited_auc_difference", "retain_leakage_audited_auc_band_low",
                "retain_leakage_audited_auc_band_high")),
    Score("swap_advantage", "SWAP-test advantage",
          _keys("swap_advantage", "swap_advantage_baseline_ci_low", "swap_advantage_baseline_ci_high")),
    Score("vulnerable_efficacy_auc", "vulnerable top-v: efficacy (U-LiRA) AUC",
          _keys("vulnerable_efficacy_auc", "vulnerable_efficacy_auc_band_low", "vulnerable_efficacy_auc_band_high")),
    Score("population_efficacy_auc", "whole forget set: efficacy (U-LiRA) AUC",
          _keys("vulnerable_population_efficacy_auc", "vulnerable_population_efficacy_auc_band_low",
                "vulnerable_population_efficacy_auc_band_high")),
    Score("vulnerable_privacy_auc", "vulnerable top-v: privacy (LiRA) AUC",
          _keys("vulnerable_privacy_auc", "vulnerable_privacy_auc_band_low", "vulnerable_privacy_auc_band_high")),
    Score("population_privacy_auc", "whole forget set: privacy (LiRA) AUC",
          _keys("vulnerable_population_privacy_auc", "vulnerable_population_privacy_auc_band_low",
                "vulnerable_population_privacy_auc_band_high")),
    Score("iam_completeness", "IAM completeness of the audited model (−completeness)",
          _keys("iam_completeness_mean", "iam_band_low", "iam_band_high", -1.0)),
    Score("verdict", "the audit's verdict (1 = distinguishable)", _verdict, None, ranked=False),
)


# --- the meta-evaluation (pure: rows in, numbers out) -----------------------------------------------------------

def flagged(value: float, high: float) -> bool | None:
    """Beyond the band's far edge (values oriented: higher = farther from retraining); None when unknown."""
    if not (math.isfinite(value) and math.isfinite(high)):
        return None
    return bool(value > high)


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
    (``flagged``; power = identity's, calibration = retrain's) and the nominal rate. ``repetitions``: one dict per
    repetition, method → its flat row."""
    out: dict[str, dict[str, Any]] = {}
    for s in scores:
        read = {m: [s.read(rep[m]) for rep in repetitions if m in rep] for m in METHODS}
        medians = {m: _median([v for v, _, _ in read[m]]) for m in METHODS}
        band = (_median([lo for _, lo, _ in read["retrain"]]), _median([hi for _, _, hi in read["retrain"]]))
        per_rep = [ranking_correct({m: s.read(rep[m])[0] for m in METHODS if m in rep}) if s.ranked else None
                   for rep in repetitions]
        shares = {m: _share([flagged(v, hi) for v, _, hi in read[m]]) for m in METHODS}
        parts = ranking_parts({m: math.nan if v is None else v for m, v in medians.items()}) if s.ranked else None
        closest = retrain_closest(medians, band) if s.ranked else None
        out[s.key] = {"label": s.label, "values": medians, "band": list(band),
                      "ranking": None if parts is None else all(parts),
                      "retrain_lowest": None if parts is None else parts[0],
                      "identity_highest": None if parts is None else parts[1], "retrain_closest": closest,
                      "ranking_share": _share(per_rep), "flagged": shares, "power": shares["identity"],
                      "calibration": shares["retrain"], "nominal": s.nominal, "repetitions": len(repetitions)}
    return out


# --- the rows ---------------------------------------------------------------------------------------------------

def klom_band(baseline: np.ndarray, unlearned: np.ndarray) -> tuple[float, float]:
    """The band a mean KLoM is judged against: the oracle-vs-oracle mean ± 1.96 standard errors of the difference
    of the two means (Welch: √((s_b² + s_u²)/n) from both sets of per-example values), so that a method whose
    per-example KLoM is distributed as the oracles' lands above it 2.5% of the time. (With the baseline's spread
    alone, ± 1.96·√2·s_b/√n, skewed per-example values land above it far more often: 4% for exponential ones.)"""
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
    row["verdict_distinguishable"] = float("DISTINGUISHABLE" in result.verdict())
    return row


def iam_band(values: list[float]) -> tuple[float, float]:
    x = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    if len(x) < 2:
        return math.nan, math.nan
    return float(np.quantile(x, 0.025)), float(np.quantile(x, 0.975))


def repetition(setup: dict[str, Any], *, n_models: int, seed: int, iam_oracles: int = IAM_ORACLES,
               top: int | None = None, mode: str = "vulnerable") -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """One repetition: the four audits on shared models, IAM of each audited model and of ``iam_oracles`` baseline
    oracles, each against a shadow of its own seeded by ``seed`` (``iam``'s default; the audit's own ``iam_*``
    numbers, against a shadow of a baseline oracle, are replaced by these so that the value and its band are alike;
    its ``iam_oracle_*`` stay as the audit gave them); returns method → row, and timings."""
    from expunge.audit import audit_methods
    from expunge.audit.iam import iam

    data = {k: setup[k] for k in ("train", "test")}
    sets = {k: setup[k] for k in ("forget", "retain")}
    shared: dict[str, Any] = {}
    start = time.perf_counter()
    results = audit_methods(setup["template"], **data, **sets, methods=setup["methods"], shared=shared,
                            recipe=setup["recipe"], n_models=n_models, seed=seed, swap=True, mode=mode, top=top)
    audits = time.perf_counter() - start
    t0 = time.perf_counter()
    oracle_iam = [iam(shared["baseline"].member(i), **sets, test=data["test"], seed=seed).summary()
                  ["iam_completeness_mean"] for i in range(min(iam_oracles, n_models))]
    low, high = iam_band(oracle_iam)
    rows = {}
    for name, result in results.items():
        row = audit_row(result)
        model = _audited(result, shared, setup, name, seed)
        row.update(iam(model, **sets, test=data["test"], seed=seed).summary())
        row["iam_band_low"], row["iam_band_high"] = low, high
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
    setup = SETUPS[name]() if isinstance(name, str) else name
    reps, timings, first, before = [], [], 0, 0.0
    if previous is not None:
        if previous["n_models"] != n_models or previous["setup"] != setup["description"]:
            raise ValueError("--extend needs the same setup and K as the results it extends")
        reps = [{m: {k: math.nan if v is None else v for k, v in row.items()} for m, row in rep.items()}
                for rep in previous["rows"]]
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
               "iam_oracles": iam_oracles, "threads": int(os.environ.get("OMP_NUM_THREADS", "0") or 0),
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
    oracle band, the ranking, power and calibration."""
    n = summary["repetitions"]
    lines = ["| score (oriented: higher = farther from retraining) | identity | finetune | random_label | retrain "
             "| oracle band | ranking (reps) | power | calibration (nominal) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for key, s in summary["scores"].items():
        values = " | ".join(_cell(s["values"][m]) for m in METHODS)
        band = "–" if None in s["band"] else f"{s['band'][0]:.3f} to {s['band'][1]:.3f}"
        ranking = ranking_cell(s)
        nominal = "–" if s["nominal"] is None else f"{s['nominal']:.1%}"
        lines.append(f"| {s['label']} | {values} | {band} | {ranking} ({_share_cell(s['ranking_share'], n)}) "
                     f"| {_share_cell(s['power'], n)} | {_share_cell(s['calibration'], n)} ({nominal}) |")
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
        for name in SETUPS:
            path = RESULTS / f"evidence_{name}.json"
            summary = json.loads(path.read_text())
            rows = [{m: {k: math.nan if v is None else v for k, v in row.items()} for m, row in rep.items()}
                    for rep in summary["rows"]]
            summary["scores"] = meta_evaluate(rows)
            path.write_text(json.dumps(_clean(summary), indent=1) + "\n")
            print(f"rescored {path}")
        return 0
    if a.dataset is None:
        parser.error("name a dataset (digits or fashion) or give --table")
    k = a.models or {"digits": 64, "fashion": 32}[a.dataset]
    r = a.repeats or {"digits": 10, "fashion": 5}[a.dataset]
    if k < 4 or r < 1:
        parser.error("--models must be at least 4 (the vulnerable mode's games) and --repeats at least 1")
    from expunge.threads import set_threads

    set_threads(1)
    out = a.out or RESULTS / f"evidence_{a.dataset}.json"
    previous = json.loads(out.read_text()) if a.extend else None
    run(a.dataset, n_models=k, repeats=r, out=out, previous=previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
