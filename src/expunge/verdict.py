"""Plain verdicts: did a method forget, did it keep, read against the noise of retraining itself.

Two oracles trained with different seeds are both exact unlearning, yet they differ: their gap to each other is
the **noise floor**, the smallest gap any method can be asked to reach. The rule, per method (on its scores'
means over seeds; every ``gap_*`` is the method's absolute difference to the oracle):

- **floor.** For each metric, the mean over oracle pairs of ``|oracle_a − oracle_b|``, at least
  :data:`MIN_FLOOR` points (regression: at least :data:`MIN_RELATIVE_FLOOR` of the oracle's value), so that two
  oracles that happen to agree do not make every difference look significant (for the shares of generated samples
  an image generator is scored on, at least their sampling noise: :func:`sampling_floor`). The Avg. Gap floor
  likewise.
  Without a second oracle the minimum floors are used and the verdict says that the floor was not measured.
- **forget gap.** The mean of the forget-side gaps: ``gap_ua`` and ``gap_mia_efficacy`` (regression:
  ``gap_forget_mae`` and ``gap_mia_efficacy``); the MIA is left out when it is unstable for the method or the
  original (:mod:`expunge.metrics.mia`), or when the method's Avg. Gap leaves it out (a report leaves it out of
  every row of a table when it is unstable for any). The do-nothing row is the original evaluated against the
  oracle. Forgetting is read on this forget side rather than on the whole Avg. Gap so that a model that broke
  itself (a large Avg. Gap) is told "forgot, did not keep", not "did not forget".
- **forgot** when the method's forget gap is at least :data:`FORGET_MARGIN` floors below the original's and
  within :data:`FORGET_MARGIN` floors of zero (as close to the oracle as another oracle); **partly forgot** when it
  is clearly below the original's but not that close (the share of the original's gap closed is stated).
  **did not forget** otherwise (and always when the forget accuracy is exactly the original's). **nothing to
  forget** when the original's own forget gap is within :data:`FORGET_MARGIN` floors: retraining would not change
  these numbers beyond its own noise, so no method can show forgetting on them.
- **kept** when retain and test accuracy (regression: MAE) are each within :data:`KEEP_MARGIN` floors of the
  oracle's; **did not keep** otherwise, naming the metric.
- **language models** (:mod:`expunge.lm.evaluate`): the forget side is the answer probability, ROUGE-L and truth
  ratio on the forget set; kept reads the retain answer probability, retain ROUGE-L and the model utility; their
  gaps are in percentage points of these fractions, so the same minimum floor applies.
- **image generators** (:mod:`expunge.gen.evaluate`): the forget side is the unlearning accuracy and the
  embedding attack's success on the forgotten class; kept reads the retained classes' generation accuracy (all in
  percent).
- Reports also give each Avg. Gap as a multiple of the Avg. Gap floor (1× = as close as another oracle).

The original model itself is checked first (:func:`degenerate_original`): accuracy within a point of always
predicting the most common class, or one class predicted for at least :data:`ONE_CLASS_SHARE` % of the test
inputs while no class holds 80 % of the labels, means every gap to the oracle is meaningless. Reports check the
oracle the same way.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations
from typing import Sequence

ORIGINAL = "original"
ORACLE = "oracle (target)"
FLOOR = "oracle, other seed (floor)"
REFERENCE_ROWS = (ORIGINAL, ORACLE, FLOOR)

MIN_FLOOR = 0.5              # percentage points, for every classification metric and the Avg. Gap
MIN_RELATIVE_FLOOR = 0.01    # regression: a fraction of the oracle's MAE
FORGET_MARGIN = 2.0          # floors by which the forget gap must shrink below the original's
KEEP_MARGIN = 2.0            # floors within which retain and test must stay of the oracle's
ONE_CLASS_SHARE = 90.0       # % of test predictions in one class that marks a degenerate original

FORGET_KEYS = {"classification": ("ua", "mia_efficacy"), "regression": ("forget_mae", "mia_efficacy"),
               "language": ("forget_prob", "forget_rouge", "forget_truth_ratio"),
               "generation": ("unlearning_accuracy", "attack_success")}
KEEP_KEYS = {"classification": ("retain_acc", "test_acc"), "regression": ("retain_mae", "test_mae"),
             "language": ("retain_prob", "retain_rouge", "model_utility"),
             "generation": ("retain_generation_accuracy",)}
KEEP_NAMES = {"retain_acc": "retain accuracy", "test_acc": "test accuracy", "retain_mae": "retain MAE",
              "test_mae": "test MAE", "retain_prob": "retain answer probability", "retain_rouge": "retain ROUGE-L",
              "model_utility": "model utility", "retain_generation_accuracy": "retained-class generation accuracy"}
LANGUAGE_SCALE = 100.0       # language scores are fractions; their gaps (and floors) are in percentage points
# what a language model's Avg. Gap averages (as expunge.lm.evaluate.AVG_GAP_KEYS)
LANGUAGE_AVG_GAP = ("forget_prob", "forget_rouge", "forget_truth_ratio", "retain_prob", "retain_rouge",
                    "retain_truth_ratio")


@dataclass(frozen=True)
class NoiseFloor:
    """Oracle-vs-oracle gaps: ``gaps`` per metric name (``ua``, ``retain_acc``, ...) and ``avg_gap``, each at least
    the minimum floor; ``pairs`` = oracle pairs measured (0: the minimum floors only)."""

    gaps: dict[str, float]
    avg_gap: float
    pairs: int

    @property
    def measured(self) -> bool:
        return self.pairs > 0

    def of(self, key: str) -> float:
        return self.gaps.get(key, MIN_FLOOR)


def task_of(scores: dict[str, float]) -> str:
    if "forget_mae" in scores:
        return "regression"
    if "unlearning_accuracy" in scores or "gap_unlearning_accuracy" in scores:
        return "generation"
    return "language" if "forget_prob" in scores or "gap_forget_prob" in scores else "classification"


def noise_floor(oracle_gaps: Sequence[dict[str, float]], oracle: dict[str, float] | None = None) -> NoiseFloor:
    """The floor from score dicts of one oracle evaluated against another (``gap_*`` and ``avg_gap`` keys, as
    ``evaluate(oracle_b, reference=oracle_a)`` returns them); ``oracle`` (its scores) sets regression minimums."""
    oracle = oracle or {}
    sample = next(iter(oracle_gaps), oracle)
    task = task_of(sample) if sample else "classification"
    gaps = {}
    for k in FORGET_KEYS[task] + KEEP_KEYS[task]:
        values = [g[f"gap_{k}"] for g in oracle_gaps if _finite(g.get(f"gap_{k}"))]
        gaps[k] = max(_mean(values) if values else 0.0, _minimum(k, oracle, task))
    avg = [g["avg_gap"] for g in oracle_gaps if _finite(g.get("avg_gap"))]
    return NoiseFloor(gaps, max(_mean(avg) if avg else 0.0, MIN_FLOOR), len(oracle_gaps))


def oracle_pairs(oracles: Sequence[dict[str, float]]) -> list[dict[str, float]]:
    """Gap dicts between every pair of per-seed oracle score dicts (as a bench records them): ``gap_<metric>`` =
    the absolute difference, and for classification ``avg_gap`` = their mean over UA, RA, TA and the MIA (left out
    when unstable in either)."""
    out = []
    for a, b in combinations([o for o in oracles if o], 2):
        task = task_of(a)
        extra = LANGUAGE_AVG_GAP if task == "language" else ()
        keys = [k for k in dict.fromkeys(FORGET_KEYS[task] + KEEP_KEYS[task] + extra) if _finite(a.get(k)) and
                _finite(b.get(k))]
        scale = LANGUAGE_SCALE if task == "language" else 1.0
        gaps = {f"gap_{k}": scale * abs(a[k] - b[k]) for k in keys}
        if task == "language":
            averaged = [f"gap_{k}" for k in LANGUAGE_AVG_GAP if f"gap_{k}" in gaps]
            if averaged:
                gaps["avg_gap"] = _mean([gaps[k] for k in averaged])
        if task == "classification":
            use = [k for k in keys if k != "mia_efficacy" or not (a.get("mia_unstable") or b.get("mia_unstable"))]
            if use:
                gaps["avg_gap"] = _mean([gaps[f"gap_{k}"] for k in use])
            if "mia_efficacy" in keys and "mia_efficacy" not in use:
                gaps["avg_gap_without_mia"] = 1.0
        out.append(gaps)
    return out


@dataclass(frozen=True)
class Verdict:
    """``forgot`` (clearly closer to the oracle than doing nothing; None: nothing to forget), ``complete`` (and
    within the floor of the oracle), ``kept`` (None: no retain/test numbers), the forget gaps of the method and of
    the original, ``floors`` = Avg. Gap as a multiple of the Avg. Gap floor, and the reasons."""

    forgot: bool | None
    complete: bool
    kept: bool | None
    forget_gap: float
    original_forget_gap: float
    floors: float
    reasons: tuple[str, ...] = field(default=())

    @property
    def short(self) -> str:
        """For a table cell: ``forgot, kept``, ``did not forget, kept``, ``forgot, did not keep``, ..."""
        f = {True: "forgot" if self.complete else "partly forgot", False: "did not forget",
             None: "nothing to forget"}[self.forgot]
        k = {True: "kept", False: "did not keep", None: "keeping not measured"}[self.kept]
        return f"{f}, {k}"

    @property
    def text(self) -> str:
        """The verdict with its reasons, one line."""
        return self.short + (f" ({'; '.join(self.reasons)})" if self.reasons else "")


def judge(method: dict[str, float], original: dict[str, float], floor: NoiseFloor) -> Verdict:
    """The verdict on one method's scores (means over seeds, with ``gap_*`` to the oracle) against the do-nothing
    row ``original`` (the original's scores against the same oracle), given the noise ``floor``."""
    task = task_of(original or method)
    mia_ok = not (method.get("mia_unstable") or original.get("mia_unstable") or method.get("avg_gap_without_mia"))
    keys = [k for k in FORGET_KEYS[task] if (k != "mia_efficacy" or mia_ok) and _finite(method.get(f"gap_{k}"))
            and _finite(original.get(f"gap_{k}"))]
    reasons = [] if floor.measured else ["noise floor not measured: one oracle, minimum floors used"]
    if method.get("mia_unstable") or original.get("mia_unstable"):
        reasons.append("MIA unstable, left out")
    elif not mia_ok:
        reasons.append("MIA left out, as in every row of this table")
    gap = _mean([method[f"gap_{k}"] for k in keys]) if keys else math.nan
    base = _mean([original[f"gap_{k}"] for k in keys]) if keys else math.nan
    unit = _mean([floor.of(k) for k in keys]) if keys else MIN_FLOOR
    unchanged = task == "classification" and _finite(method.get("forget_acc")) and \
        method.get("forget_acc") == original.get("forget_acc")
    complete = False
    if not keys:
        forgot = None
        reasons.append("no forget-side scores")
    elif base <= FORGET_MARGIN * unit:
        forgot = None
        reasons.append(f"the original is already within {FORGET_MARGIN:g} floors of the oracle on the forget set")
    elif unchanged:
        forgot = False
        reasons.append("forget accuracy exactly the original's")
    else:
        forgot = gap <= base - FORGET_MARGIN * unit
        complete = forgot and gap <= FORGET_MARGIN * unit
        closed = 100.0 * (base - gap) / base
        reasons.append(f"closed {closed:.0f}% of the original's forget gap")
    kept = None
    off = []
    for k in KEEP_KEYS[task]:
        g = method.get(f"gap_{k}")
        if _finite(g):
            kept = True if kept is None else kept
            if g > KEEP_MARGIN * floor.of(k):
                kept = False
                off.append(f"{KEEP_NAMES[k]} {g:.3g} from the oracle's, {g / floor.of(k):.1f} floors")
    reasons += off
    avg = method.get("avg_gap", method.get("w1_to_reference"))
    floors = avg / floor.avg_gap if _finite(avg) and task != "regression" else math.nan
    return Verdict(forgot, complete, kept, gap, base, floors, tuple(reasons))


def degenerate_original(original: dict[str, float], who: str = "original model") -> str | None:
    """A one-line warning when the original model (or ``who``, e.g. the oracle) is degenerate (see the module
    docstring); None when it is not."""
    acc, majority, share = (original.get(k) for k in ("test_acc", "majority_acc", "top_class_share"))
    if not _finite(acc):
        acc = original.get("retain_acc")
    problems = []
    if _finite(acc) and _finite(majority) and acc <= majority + 1.0:
        problems.append(f"its accuracy {acc:.1f}% is no better than always predicting the most common class "
                        f"({majority:.1f}%)")
    if _finite(share) and _finite(majority) and share >= ONE_CLASS_SHARE and majority < 80.0:
        problems.append(f"it predicts one class for {share:.0f}% of the test inputs")
    if not problems:
        return None
    return (f"WARNING: the {who} is degenerate: " + " and ".join(problems) + "; every gap to the oracle is "
            "meaningless. Check the recipe and the features' scaling (standardise tabular features).")


def _minimum(key: str, oracle: dict[str, float], task: str) -> float:
    if task == "regression" and key != "mia_efficacy":
        v = oracle.get(key)
        return MIN_RELATIVE_FLOOR * abs(v) if _finite(v) and v else 1e-6
    if task == "generation" and key in SAMPLED_SHARES:
        return max(MIN_FLOOR, sampling_floor(key, oracle))
    return MIN_FLOOR


#: generation scores that are shares of a model's samples (percent), and which classes' samples they count
SAMPLED_SHARES = {"unlearning_accuracy": "forgotten", "retain_generation_accuracy": "retained"}


def sampling_floor(key: str, oracle: dict[str, float]) -> float:
    """The sampling noise of a share of generated samples: the standard error, in percentage points, of the
    difference between two independent estimates of the oracle's share p from n samples each, 100·√(2p(1−p)/n)
    (p kept within [0.02, 0.98]). Two oracles that happen to agree on 20 samples per class would otherwise make
    a few samples' difference look like many floors. n: the samples the share counts (``n_samples`` over the
    ``gen_acc_class_k`` classes; one class for the forgotten share, the rest for the retained one)."""
    classes = sum(1 for k in oracle if k.startswith("gen_acc_class_"))
    total, p = oracle.get("n_samples"), oracle.get(key)
    if not classes or not _finite(total) or not _finite(p):
        return 0.0
    per_class = total / classes
    n = per_class if SAMPLED_SHARES[key] == "forgotten" else per_class * max(classes - 1, 1)
    p = min(max(p / 100.0, 0.02), 0.98)
    return 100.0 * math.sqrt(2 * p * (1 - p) / n)


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


AUDIT_MARGIN = 0.05   # AUC (or forgetting quality) beyond the oracle-vs-oracle baseline that counts as distinguishable


def auc_margin(n_positive: float, n_negative: float) -> float:
    """The margin an AUC must exceed its baseline by: :data:`AUDIT_MARGIN`, or twice the AUC's standard error
    under no difference (Mann-Whitney, sqrt((n1 + n2 + 1) / (12 n1 n2))) when that is larger."""
    if not (_finite(n_positive) and _finite(n_negative)) or min(n_positive, n_negative) < 1:
        return AUDIT_MARGIN
    return max(AUDIT_MARGIN, 2.0 * math.sqrt((n_positive + n_negative + 1) / (12.0 * n_positive * n_negative)))


def audit_verdict(summary: dict[str, float], tier: int, sizes: dict[str, int] | None = None) -> str:
    """The one-line verdict of an audit (``AuditResult.summary()`` and ``sizes``): distinguishable from retraining
    when an attack does better against the unlearned models than against oracles beyond both its margin and its
    band: the U-LiRA AUC over its oracle-vs-oracle baseline by :func:`auc_margin` and over its permutation band's
    upper edge (``ulira_band_high``); the challenge forgetting quality F under its baseline by :data:`AUDIT_MARGIN`
    and under its permutation band's low edge (``challenge_band_low``); the audited model's LiRA AUC (forget vs test
    examples) over the held-out oracles' mean by :func:`auc_margin` and over their prediction band's upper edge
    (``lira_oracle_auc_high``). The margins alone treat every model-example pair as independent; the bands come from
    the spread between models, which is what matters when the forget examples move together (a class-wise request;
    :mod:`expunge.audit.tier2`). A record without the bands (written before they existed) is judged by the margins,
    and is **inconclusive** when its oracle-vs-oracle U-LiRA AUC lies outside 0.5 ± its own margin: then the
    examples move together and the margins cannot be trusted. Below tier 1 the line says the models are too few for
    evidence."""
    sizes = sizes or {}
    n_f, n_t, k = sizes.get("forget", 0), sizes.get("test", 0), summary.get("n_models", 0)
    ulira_margin = auc_margin(k * n_f / 2, k * n_f / 2)
    checks = [("U-LiRA AUC", summary.get("ulira_auc"), summary.get("ulira_baseline_auc"), 1.0, ulira_margin,
               summary.get("ulira_band_high")),
              ("challenge forgetting quality F", summary.get("challenge_forget_quality"),
               summary.get("challenge_baseline_forget_quality"), -1.0, AUDIT_MARGIN,
               summary.get("challenge_band_low")),
              ("LiRA AUC of the audited model", summary.get("lira_auc"), summary.get("lira_oracle_auc"), 1.0,
               auc_margin(n_f, n_t), summary.get("lira_oracle_auc_high"))]
    checks = [c for c in checks if _finite(c[1]) and _finite(c[2])]
    if not checks:
        return f"Verdict (tier {tier}): no attack numbers to judge."
    tail = "; tier 0: too few models for this to be evidence" if tier < 1 else ""
    banded = "ulira_band_high" in summary
    base = summary.get("ulira_baseline_auc")
    if not banded and _finite(base) and abs(base - 0.5) > ulira_margin:
        return (f"Verdict (tier {tier}): inconclusive: U-LiRA told oracles from oracles with AUC {base:.3f} (0.5 "
                f"expected, margin {ulira_margin:.2f}), so the forget examples move together across models and the "
                f"margins, which treat them as independent, do not hold; this record has no permutation bands "
                f"(audit again){tail}.")

    def beyond(value: float, baseline: float, sign: float, margin: float, band: float | None) -> bool:
        over = sign * (value - baseline) > margin
        return over and (not _finite(band) or sign * (value - band) > 0)

    def numbers(name: str, v: float, b: float, sign: float, m: float, band: float | None) -> str:
        edge = f", band {'to' if sign > 0 else 'from'} {band:.3f}" if _finite(band) else ""
        return f"{name} {v:.3f} vs {b:.3f} for oracles (margin {m:.2f}{edge})"

    worse = [c for c in checks if beyond(*c[1:])]
    shown = "; ".join(numbers(*c) for c in worse or checks)
    outputs = "" if worse else _outputs_note(summary)
    return (f"Verdict (tier {tier}): {'DISTINGUISHABLE' if worse else 'not distinguishable'} from retraining "
            f"({shown}){outputs}{tail}.")


def _outputs_note(summary: dict[str, float]) -> str:
    """For a generator the attacks read a membership score, not what it draws: when they find no difference, the
    tier-0 unlearning accuracy (the share of samples conditioned on the forgotten class that the judge does not read
    as it) is put beside the held-out oracle's, so a model that still draws the class is not read as having forgotten
    it."""
    mine, oracle = summary.get("unlearning_accuracy"), summary.get("reference_unlearning_accuracy")
    if not (_finite(mine) and _finite(oracle)):
        return ""
    return (f"; its samples are another matter: unlearning accuracy {mine:.1f}% against {oracle:.1f}% for one "
            f"held-out oracle (tier 0), which these attacks do not read")
