"""The evidence for one served deletion request, and its report in plain words next to the numbers.

Evidence kinds (``expunge forget --evidence``):

- ``none``: no oracle is trained. The original's and the unlearned model's scores on the removed rows, the rows
  kept and the test rows (when given) are reported; nothing is claimed beyond the method's own guarantee.
- ``oracle``: one oracle (the original's recipe retrained from a fresh initialisation on the rows kept,
  ``expunge.unlearn(..., method="retrain")``); the gaps to it and their mean, the Avg. Gap
  (:func:`expunge.evaluate`). One oracle measures the distance to one retraining; it cannot show that the model is
  indistinguishable from retraining.
- ``tier1``: K oracles trained together as a batched ensemble (:func:`expunge.ensemble.unlearn`, seeds derived
  from the request's seed) and offline LiRA with them as reference models (:mod:`expunge.audit.tier1`): the
  removed rows are the attack's members, the test rows its non-members, both unseen by every oracle. The same
  attack is run on each oracle in turn with the other K − 1 as references (leave one out): their TPRs at 1% FPR are
  what models retrained without the rows show. The model is called *indistinguishable from retraining on this
  test at 1% FPR* when its TPR at 1% FPR is at most the upper end of the band those oracles span, widened to the
  95% Wilson upper bound of their mean TPR over the number of removed rows (with few rows a TPR is coarse, and the
  band says so); otherwise *distinguishable*. Taking the largest held-out TPR makes this a rank test: were the
  model one more retrained model, it would exceed all H held-out ones with probability at most 1/(H + 1) (the
  report gives the rank p-value, (1 + #{held-out TPR >= the model's}) / (H + 1)). Where even retrained models are
  flagged often (rows unlike the test rows, whose confidence varies much between oracles), the band is wide and the
  headline says that the test tells little. The attack is one-sided (it flags rows that look *more* like
  training rows than under retraining). The same attack on the untouched original says whether the test can tell
  anything here: when the original, too, lies inside the band, the headline is *inconclusive* (the test cannot tell
  even the untouched model from retraining on these rows, e.g. rows a model that generalises does not memorise),
  not indistinguishable. Both the indistinguishable and the distinguishable headline give the rank p-value and,
  where the band is wide, say the test tells little. 1% FPR needs at least :data:`MIN_TEST_ROWS` (100) test rows
  (one false alarm in 100; with fewer, the TPR would be the TPR at 0% FPR): ``expunge forget`` refuses fewer before
  any work. Tier 1 in expunge's sense needs at least 16 oracles
  (:data:`expunge.audit.result.TIER1_REFERENCES`); with fewer the report says the evidence stays at tier 0.

A SISA ensemble served exactly needs no oracle: the report says so and why.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn
from torch.utils.data import Dataset

ORACLE_STREAM = "deletion-oracle"
FPR = 0.01
Z95 = 1.959963984540054
LEAVE_ONE_OUT_MAX = 32
MIN_TEST_ROWS = 100      # non-members --evidence tier1 needs: at 1% FPR, one false alarm in 100
EXACT_STATEMENT = ("Exact deletion (SISA): the model is, by construction, the ensemble whose shards that held the "
                   "rows were retrained without them from the same partition and seeds; the scores below are for "
                   "information.")
WIDE_BAND = 0.5          # a band reaching this TPR makes the headline say the test tells little
HEADLINE_KEYS = ("forget_acc", "retain_acc", "test_acc", "ua", "mia_efficacy", "forget_mae", "retain_mae",
                 "test_mae", "forget_prob", "retain_prob", "forget_rouge", "retain_rouge", "unlearning_accuracy",
                 "retain_generation_accuracy", "avg_gap")


def wilson_upper(p: float, n: int, z: float = Z95) -> float:
    """The upper end of the Wilson score interval of a proportion ``p`` observed over ``n`` trials."""
    if n <= 0:
        return 1.0
    denom = 1 + z * z / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(max(p * (1 - p), 0.0) / n + z * z / (4 * n * n))
    return min(1.0, (centre + spread) / denom)


def lira_band(model_phi: np.ndarray, oracle_phi: np.ndarray, is_forget: np.ndarray) -> dict[str, Any]:
    """Offline LiRA of the model against the oracles (φ ``[N]`` and ``[K, N]``, ``is_forget`` marking members) and
    the same attack on each oracle against the others; the TPRs at 1% FPR and the band (see the module
    docstring)."""
    from ..audit.tier1 import PER_EXAMPLE_VARIANCE_MIN, offline_scores
    from ..metrics import AttackResult

    ref = np.asarray(oracle_phi, float)
    member = np.asarray(is_forget, bool)
    k = ref.shape[0]
    if k < 3:
        raise ValueError(f"the tier-1 band needs at least 3 oracles (leave one out); got {k}")
    fixed = k < PER_EXAMPLE_VARIANCE_MIN
    attack = AttackResult.from_scores("lira_offline", offline_scores(np.asarray(model_phi, float), ref, fixed=fixed),
                                      member, n_reference=k)
    held = [AttackResult.from_scores("lira_offline_oracle",
                                     offline_scores(ref[i], np.delete(ref, i, axis=0), fixed=fixed), member,
                                     n_reference=k - 1) for i in range(min(k, LEAVE_ONE_OUT_MAX))]
    tprs = np.array([h.tpr_at_1pct for h in held])
    n_forget = int(member.sum())
    upper = max(float(tprs.max()), wilson_upper(float(tprs.mean()), n_forget))
    return {"lira_auc": attack.auc, "lira_tpr_at_1pct": attack.tpr_at_1pct,
            "lira_tpr_at_0_1pct": attack.tpr_at_0_1pct, "oracle_auc": float(np.mean([h.auc for h in held])),
            "oracle_tpr_at_1pct": float(tprs.mean()), "oracle_tpr_at_1pct_min": float(tprs.min()),
            "oracle_tpr_at_1pct_max": float(tprs.max()), "band_low": float(tprs.min()), "band_high": upper,
            "rank_p": float((1 + np.sum(tprs >= attack.tpr_at_1pct)) / (len(tprs) + 1)),
            "n_oracles": k, "n_heldout": len(held), "n_forget": n_forget, "n_test": int((~member).sum()),
            "indistinguishable": bool(attack.tpr_at_1pct <= upper + 1e-12)}


def gather_evidence(kind: str, *, original: nn.Module, unlearned: nn.Module, forget: Dataset, retain: Dataset,
                    test: Dataset | None, seed: int, oracles: int, exact: dict[str, Any] | None = None
                    ) -> dict[str, Any]:
    """Train what ``kind`` needs, score, and word it: a dict with ``headline`` (plain words), ``statement`` (what
    the evidence can and cannot show), ``kind``, ``tier``, ``numbers`` (the figures the headline quotes) and
    ``scores`` (original / unlearned / oracle score dicts of :func:`expunge.evaluate`)."""
    from .. import api
    from ..data.datasets import task_of
    from ..evaluate import evaluate

    task = task_of(forget)
    scored = lambda m, ref=None: _finite(evaluate(m, forget=forget, retain=retain, test=test, reference=ref,
                                                  seed=seed))
    scores: dict[str, dict[str, float]] = {}
    numbers: dict[str, Any] = {}
    tier = 0
    note = None
    if kind == "none":
        try:        # informative only: a model whose scores cannot be computed here is still served
            scores = {"original": scored(original), "unlearned": scored(unlearned)}
        except ValueError as e:
            note = f"no scores: {' '.join(str(e).split())}"
    elif kind == "oracle":
        oracle = api.unlearn(original, forget=forget, retain=retain, method="retrain", seed=seed)
        scores = {"original": scored(original, oracle), "unlearned": scored(unlearned, oracle),
                  "oracle": scored(oracle)}
    elif kind == "tier1":
        from ..audit.result import TIER1_REFERENCES
        from ..data.datasets import targets
        from ..ensemble import unlearn as ensemble_unlearn
        from ..metrics import logit_scaled_confidence, predict
        from ..seeds import derive

        seeds = [derive(seed, ORACLE_STREAM, i) for i in range(oracles)]
        ens = ensemble_unlearn(original, forget=forget, retain=retain, method="retrain", seeds=seeds)
        oracle = ens.member(0)
        scores = {"original": scored(original, oracle), "unlearned": scored(unlearned, oracle),
                  "oracle": scored(oracle)}
        phi = lambda out_f, out_t: np.concatenate([logit_scaled_confidence(out_f, targets(forget)),
                                                   logit_scaled_confidence(out_t, targets(test))], axis=-1)
        is_forget = np.r_[np.ones(len(forget), bool), np.zeros(len(test), bool)]  # type: ignore[arg-type]
        reference = phi(ens.predict(forget), ens.predict(test))
        numbers["lira"] = lira_band(phi(predict(unlearned, forget), predict(unlearned, test)), reference, is_forget)
        numbers["lira_original"] = lira_band(phi(predict(original, forget), predict(original, test)), reference,
                                             is_forget)
        tier = 1 if oracles >= TIER1_REFERENCES else 0
    else:
        raise ValueError(f"evidence {kind!r} is not allowed; expected none, oracle or tier1")
    for role, s in scores.items():
        numbers[role] = {k: s[k] for k in HEADLINE_KEYS if k in s}
    from ..evaluate import tier_statement

    if note is not None:
        numbers["note"] = note
    statement = EXACT_STATEMENT if exact else tier_statement(tier)
    return {"headline": headline(kind, task, numbers, oracles=oracles, exact=exact), "kind": kind,
            "tier": tier, "statement": statement, "oracles": oracles if kind == "tier1" else
            (1 if kind == "oracle" else 0), "exact": bool(exact), "numbers": numbers, "scores": scores}


def _finite(scores: dict[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in scores.items() if isinstance(v, (int, float)) and math.isfinite(float(v))}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def headline(kind: str, task: str, numbers: dict[str, Any], *, oracles: int = 0,
             exact: dict[str, Any] | None = None) -> str:
    """What was shown, in plain words, with the numbers it rests on."""
    forget_key, unit, what = {"classification": ("forget_acc", "%", "accuracy"),
                              "regression": ("forget_mae", "", "mean absolute error"),
                              "language": ("forget_prob", "", "answer probability"),
                              "generation": ("unlearning_accuracy", "%", "unlearning accuracy (samples of the "
                                             "forgotten class the judge does not see as it)")
                              }.get(task, ("", "", ""))
    fmt = lambda v: f"{v:.1f}{unit}" if unit else f"{v:.3g}"
    get = lambda role, k: numbers.get(role, {}).get(k)
    parts = []
    if exact:
        parts.append(f"exact: the removed rows were taken out of the SISA ensemble and the "
                     f"{len(exact.get('retrained_shards', []))} of {exact.get('shards', '?')} shard(s) that held "
                     "them were retrained from before they saw them, so the model is the one training without them "
                     "gives; no oracle is needed for this claim")
    o, u = get("original", forget_key), get("unlearned", forget_key)
    whose = "the" if task == "generation" else "the removed rows'"
    moved = f"{whose} {what} went from {fmt(o)} (original) to {fmt(u)} (unlearned)" if o is not None and \
        u is not None else ""
    if kind == "none":
        if not exact:
            parts.append("no oracle was trained (--evidence none): nothing is claimed beyond the method's own "
                         "guarantee")
        if moved:
            parts.append(moved + "; without an oracle this cannot say whether retraining would give the same")
        if numbers.get("note"):
            parts.append(numbers["note"])
    elif kind == "oracle":
        gap, r = get("unlearned", "avg_gap"), get("oracle", forget_key)
        parts.append(f"compared with one model retrained without the rows (--evidence oracle): Avg. Gap "
                     f"{gap:.1f} points; {whose} {what} is {fmt(u)} against the oracle's {fmt(r)} "
                     f"(original {fmt(o)}); one oracle shows the distance to one retraining, not whether the model "
                     "is indistinguishable from retraining (--evidence tier1 tests that)"
                     if gap is not None and r is not None else "one oracle was trained (--evidence oracle)")
    else:
        parts += _tier1_words(numbers["lira"], numbers.get("lira_original"), oracles)
        from ..audit.result import TIER1_REFERENCES

        if oracles < TIER1_REFERENCES:
            parts.append(f"{oracles} oracles are fewer than the {TIER1_REFERENCES} tier-1 evidence needs, so this "
                         "counts as tier 0")
    return "; ".join(p for p in parts if p) + "."


def _rank_words(lira: dict[str, Any]) -> str:
    """The rank p-value as a fraction, (1 + #{held-out oracle TPR >= the model's}) / (H + 1), and what it means."""
    h = int(lira.get("n_heldout", 0))
    if h <= 0:
        return ""
    above = int(round(float(lira["rank_p"]) * (h + 1)))
    return f"rank p-value {above}/{h + 1}, how often a model retrained without the rows would score this high"


def _tier1_words(lira: dict[str, Any], original: dict[str, Any] | None, oracles: int) -> list[str]:
    """The tier-1 headline: inconclusive when even the untouched original lies inside the band, else
    indistinguishable or distinguishable, each with the rank p-value and, where the band is wide, that the test
    tells little."""
    band = f"{_pct(lira['band_low'])}-{_pct(lira['band_high'])}"
    rows = f"the {lira['n_forget']} removed rows"
    rank = _rank_words(lira)
    inside_too = original is not None and bool(original.get("indistinguishable"))
    if lira["indistinguishable"] and inside_too:
        parts = [f"inconclusive: this test cannot tell even the untouched model from retraining on these rows "
                 f"(LiRA against {oracles} oracles, TPR at 1% FPR on {rows}: {_pct(lira['lira_tpr_at_1pct'])} "
                 f"unlearned, {_pct(original['lira_tpr_at_1pct'])} original, band {band} for models retrained "
                 "without them); it says nothing about whether the rows were forgotten"]
    elif lira["indistinguishable"]:
        said = (f"indistinguishable from retraining on this test at 1% FPR (LiRA against {oracles} oracles: TPR "
                f"{_pct(lira['lira_tpr_at_1pct'])} at 1% FPR on {rows}, band {band} for models retrained without them")
        if original is not None:
            said += f"; the untouched original: {_pct(original['lira_tpr_at_1pct'])}"
        parts = [said + (f"; {rank})" if rank else ")")]
    else:
        parts = [f"distinguishable: LiRA against {oracles} oracles flags {_pct(lira['lira_tpr_at_1pct'])} of {rows} "
                 f"at 1% FPR, above the band {band} that models retrained without them show"
                 + (f" ({rank})" if rank else "") + "; the model may still carry a trace of those rows"]
        if inside_too:
            parts.append(f"the untouched original is inside the band ({_pct(original['lira_tpr_at_1pct'])})")
    if lira["band_high"] >= WIDE_BAND:
        parts.append(f"the band is wide (models retrained without the rows are themselves flagged up to "
                     f"{_pct(lira['band_high'])}), so on these rows this test tells little")
    return parts


# ---------------------------------------------------------------------------------------------- writing
def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1 else f"{v:.2f}"
    return str(v)


def report_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: the plain-words result and what such evidence can show first, then the numbers."""
    ev = report["evidence"]
    lines = [ev["headline"], "", ev["statement"], "", f"# Deletion report: {report['request']}", "",
             f"- request id: `{report['request_id']}`" + (f" (follows `{report['previous_request']}`)"
                                                          if report.get("previous_request") else ""),
             f"- rows removed: {report['rows']}",
             f"- method: `{report['method']}` {json.dumps(report['args'], default=str) if report['args'] else ''}",
             f"- seed: {report['seed']}; wall time {report['wall_seconds']:.1f} s",
             f"- data: {report['data_check']}",
             f"- input model SHA-256: `{report['input_model_sha256']}`",
             f"- output model SHA-256: `{report['output_model_sha256']}`", ""]
    if report.get("choice"):
        lines += ["## Method choice (--method auto)", "", "```json",
                  json.dumps(report["choice"], indent=2, default=str)[:20000], "```", ""]
    if report.get("exact"):
        x = report["exact"]
        lines += ["## Exact service (SISA)", "",
                  f"{len(x.get('retrained_shards', []))} of {x.get('shards')} shards retrained; cost "
                  f"{x.get('example_epochs')} example-epochs against {x.get('full_retrain_example_epochs')} for a "
                  "full retraining.", ""]
    scores = ev.get("scores", {})
    if scores:
        roles = [r for r in ("original", "unlearned", "oracle") if r in scores]
        keys = [k for k in dict.fromkeys(k for r in roles for k in scores[r])
                if not k.startswith(("lira_", "n_reference")) and k != "evidence_tier"]
        lines += ["## Scores", "", "| score | " + " | ".join(roles) + " |", "|---|" + "---|" * len(roles)]
        lines += [f"| {k} | " + " | ".join(_fmt(scores[r][k]) if k in scores[r] else "" for r in roles) + " |"
                  for k in keys]
        lines.append("")
    lira = ev.get("numbers", {}).get("lira")
    if lira:
        orig = ev["numbers"].get("lira_original", {})
        lines += ["## Tier-1 attack (offline LiRA, the oracles as reference models)", "",
                  "| | unlearned | original | oracles (leave one out) |", "|---|---|---|---|",
                  f"| AUC | {_fmt(lira['lira_auc'])} | {_fmt(orig.get('lira_auc', float('nan')))} | "
                  f"{_fmt(lira['oracle_auc'])} |",
                  f"| TPR at 1% FPR | {_pct(lira['lira_tpr_at_1pct'])} | "
                  f"{_pct(orig.get('lira_tpr_at_1pct', float('nan')))} | {_pct(lira['oracle_tpr_at_1pct'])} "
                  f"(min {_pct(lira['oracle_tpr_at_1pct_min'])}, max {_pct(lira['oracle_tpr_at_1pct_max'])}) |",
                  "", f"Band for models retrained without the rows: {_pct(lira['band_low'])}-"
                  f"{_pct(lira['band_high'])} (the oracles' range, widened to the 95% Wilson bound over "
                  f"{lira['n_forget']} removed rows); rank p-value {lira['rank_p']:.3f}; {lira['n_oracles']} "
                  f"oracles, {lira['n_test']} test rows as non-members.", ""]
    return "\n".join(lines)


def write_report(report: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """``report.md`` and ``report.json`` in ``out_dir`` (atomic writes); the JSON's first keys are the headline
    and the statement."""
    from ..modelio import atomic_write

    out = Path(out_dir)
    ev = report["evidence"]
    ordered = {"headline": ev["headline"], "statement": ev["statement"], **report}
    md, js = out / "report.md", out / "report.json"
    atomic_write(md, report_markdown(report).encode())
    atomic_write(js, json.dumps(ordered, indent=2, default=_json_default).encode())
    return md, js


def _json_default(v: Any) -> Any:
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


__all__ = ["gather_evidence", "headline", "lira_band", "wilson_upper", "report_markdown", "write_report"]
