"""Reports: the comparison table as text, Markdown, self-contained HTML and JSON.

Rows are the original (doing nothing), the oracle (the target of every metric), a second oracle of another seed
when one was trained (the noise floor), then each method by Avg. Gap, lowest first, the best marked; values are
means over seeds, with ± std when there is more than one seed. Each table gives the Avg. Gap as a multiple of the
noise floor and each method's verdict (:mod:`expunge.verdict`: forgot, kept), and is followed by notes: a loud
warning when the original is degenerate, the floor, the marks for an unstable MIA, and every verdict with its
reasons. Reports state the forget-set size and caption their plots. Every table shows each row's evidence tier, and
every report states the tier its methods reach (the lowest among them) with what that tier can and cannot show: a
tier-0 report says that it cannot show indistinguishability from retraining. Language-model rows (scores from
:func:`expunge.lm.evaluate.evaluate_language`) get their own columns: forget quality, model utility, forget and
retain answer probability and ROUGE-L, PrivLeak, Avg. Gap, its multiple of the floor, RTE and seconds; image
generators' rows (:func:`expunge.gen.evaluate.evaluate_generation`) theirs: unlearning accuracy, retained-class
generation accuracy, Fréchet distances, membership AUC, attack success, Avg. Gap, its multiple of the floor, RTE
and seconds. Rows scored with ``scoring: {evidence: iam}`` add IAM's columns (:data:`IAM_COLUMNS`: forget
completeness, relative completeness, incomplete share; :mod:`expunge.audit.iam`) and a note saying what they mean.
``extra_md``/``extra_html`` append sections such as sample grids (:mod:`expunge.gen.report`).
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Any, Sequence

from .evaluate import tier_statement
from .experiment import Comparison
from .modelio import atomic_write
from .verdict import (FLOOR, FORGET_MARGIN, KEEP_MARGIN, ORACLE, ORIGINAL, REFERENCE_ROWS, NoiseFloor, Verdict,
                      degenerate_original, judge, noise_floor, oracle_pairs, task_of)

Rows = dict[str, list[dict[str, float]]]
COLUMNS = [("UA", "ua"), ("RA", "retain_acc"), ("TA", "test_acc"), ("MIA", "mia_efficacy"),
           ("Avg.Gap", "avg_gap"), ("x floor", "floors"), ("RTE %", "rte"), ("seconds", "seconds")]
REGRESSION_COLUMNS = [("forget MAE", "forget_mae"), ("retain MAE", "retain_mae"), ("test MAE", "test_mae"),
                      ("MIA", "mia_efficacy"), ("W1 to oracle", "w1_to_reference"), ("RTE %", "rte"),
                      ("seconds", "seconds")]
LANGUAGE_COLUMNS = [("FQ", "forget_quality"), ("MU", "model_utility"), ("forget prob", "forget_prob"),
                    ("retain prob", "retain_prob"), ("forget ROUGE", "forget_rouge"), ("retain ROUGE", "retain_rouge"),
                    ("PrivLeak", "privleak"), ("Avg.Gap", "avg_gap"), ("x floor", "floors"), ("RTE %", "rte"),
                    ("seconds", "seconds")]
GENERATION_COLUMNS = [("UA", "unlearning_accuracy"), ("retain gen acc", "retain_generation_accuracy"),
                      ("Frechet retain", "frechet_retain"), ("Frechet to oracle", "frechet_to_reference"),
                      ("MIA AUC", "mia_auc"), ("attack %", "attack_success"), ("Avg.Gap", "avg_gap"),
                      ("x floor", "floors"), ("RTE %", "rte"), ("seconds", "seconds")]
IAM_COLUMNS = [("IAM", "iam_completeness_mean"), ("IAM rel.", "iam_relative_completeness"),
               ("IAM incompl.", "iam_incomplete_share")]   # with scoring: {evidence: iam} (expunge.audit.iam)
IAM_NOTE = ("IAM (Wang et al., USENIX Security 2025; scoring: {evidence: iam}): every row scored against one shadow "
            "model, trained with the original's recipe on half the retain set; IAM = mean per-example completeness "
            "of the forget examples (1 = looks unseen, 0 = looks as fitted as the shadow's own training data); IAM "
            "rel. = that mean over the same mean for test examples, capped at 1; IAM incompl. "
            "= share of the forget examples with completeness below 0.5. A per-example check of the tier-1 kind "
            "without tier-1 strength (one shadow, no calibrated false-positive rate): the tier is unchanged. The "
            "target is the oracle's row, not 1: an oracle's own IAM rel. falls below 1 and varies from one oracle "
            "to another.")
FRACTION_KEYS = {"mia_auc", "model_utility", "forget_prob", "retain_prob", "forget_rouge",
                 "retain_rouge"}   # 3 decimals
TIER_COLUMN = ("tier", "evidence_tier")
VERDICT_COLUMN = ("verdict", "verdict")
BEST = " (best)"
REFERENCE_VERDICTS = {ORIGINAL: "do nothing", ORACLE: "target", FLOOR: "noise floor"}
MARKS = ("~ = the MIA was a coin flip for that row (its member draws disagreed by 50 points or more, or the "
         "attack could not tell members from non-members; see mia_efficacy_std); † = Avg.Gap over UA, RA and TA "
         "only: an unstable MIA is left out of every Avg.Gap of the table, so that the rows stay comparable.")
WITHOUT_MIA = ("ua", "retain_acc", "test_acc")
STYLE = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}"
         "table{border-collapse:collapse;margin:1em 0;font-size:85%}td,th{border:1px solid #ccc;padding:3px 6px;"
         "text-align:right;white-space:nowrap}td:first-child,th:first-child{text-align:left}"
         "td:last-child,th:last-child{text-align:left;white-space:normal;min-width:14em}"
         "tr.oracle{background:#eef6ee}tr.floor{background:#f3f7fb}tr.original{background:#f6f6f6}"
         "tr.best td:first-child{font-weight:bold}td.no{color:#b00}td.yes{color:#060}"
         ".caveat{background:#fff4e0;padding:.6em 1em;border-left:4px solid #e90}"
         ".warn{background:#fde8e8;padding:.6em 1em;border-left:4px solid #c00;font-weight:bold}"
         "figure{margin:1em 0}figure img{max-width:100%;height:auto}figcaption{font-size:90%;color:#444;"
         "max-width:60em}")


def columns_for(rows: Rows, *, tier: bool = False) -> list[tuple[str, str]]:
    """The table's columns for these rows (classification or regression), with the evidence tier if asked; the
    verdict is always the last column."""
    cols = {"regression": REGRESSION_COLUMNS, "language": LANGUAGE_COLUMNS,
            "generation": GENERATION_COLUMNS}.get(rows_task(rows), COLUMNS)
    if has_iam(rows):
        cols = cols + IAM_COLUMNS
    return cols + ([TIER_COLUMN] if tier else []) + [VERDICT_COLUMN]


def has_iam(rows: Rows) -> bool:
    """Whether any row carries IAM's numbers (a run or bench with ``scoring: {evidence: iam}``)."""
    return any("iam_completeness_mean" in s for runs in rows.values() for s in runs)


def rows_task(rows: Rows) -> str:
    """``classification``, ``regression``, ``language`` or ``generation``: the task the rows' scores are of."""
    return task_of(next((s for runs in rows.values() for s in runs if s), {}))


def aggregate(comparisons: Sequence[Comparison]) -> Rows:
    """Row name -> the scores of each seed: the original (doing nothing), the oracle, the noise-floor oracle when
    measured, then the methods."""
    rows: Rows = {ORIGINAL: [], ORACLE: []}
    for c in comparisons:
        rows[ORIGINAL].append(c.original)
        rows[ORACLE].append(c.oracle)
        if getattr(c, "floor", None):
            rows.setdefault(FLOOR, []).append(c.floor)
    for c in comparisons:
        for r in c.results:
            rows.setdefault(r.method, []).append(r.scores)
    return comparable(rows)


def comparable(rows: Rows) -> Rows:
    """``rows`` with every Avg. Gap computed the same way: when the MIA was left out of any row's Avg. Gap (it was
    unstable there or for the oracle), it is left out of all of them (marked ``avg_gap_without_mia``)."""
    if not any(s.get("avg_gap_without_mia") for runs in rows.values() for s in runs):
        return rows
    out: Rows = {}
    for name, runs in rows.items():
        out[name] = []
        for s in runs:
            gaps = [s[f"gap_{k}"] for k in WITHOUT_MIA if isinstance(s.get(f"gap_{k}"), float)
                    and math.isfinite(s[f"gap_{k}"])]
            out[name].append(dict(s, avg_gap=sum(gaps) / len(gaps), avg_gap_without_mia=1.0) if gaps and
                             "avg_gap" in s else s)
    return out


def summarise(runs: list[dict[str, float]], key: str) -> tuple[float, float, int]:
    vals = [s[key] for s in runs if key in s and not math.isnan(s[key])]
    if not vals:
        return float("nan"), float("nan"), 0
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return mean, std, len(vals)


def means(runs: list[dict[str, float]]) -> dict[str, float]:
    """The mean over seeds of every score in ``runs`` (NaNs ignored)."""
    return {k: summarise(runs, k)[0] for k in {k for s in runs for k in s}}


def floor_of(rows: Rows) -> NoiseFloor:
    """The noise floor of a table: from the noise-floor oracle row when there is one, else from the oracle row's
    seeds taken in pairs (a bench: oracles of different seeds, so also of different forget sets where the forget
    set depends on the seed), else the minimum floors (not measured)."""
    oracle = means(rows.get(ORACLE, []))
    if rows.get(FLOOR):
        return noise_floor([s for s in rows[FLOOR] if s], oracle)
    return noise_floor(oracle_pairs(rows.get(ORACLE, [])), oracle)


def method_names(rows: Rows) -> list[str]:
    """The method rows, by mean Avg. Gap (W1 for regression), lowest first; rows without one last."""
    key = "w1_to_reference" if any("forget_mae" in s for runs in rows.values() for s in runs) else "avg_gap"
    names = [n for n in rows if n not in REFERENCE_ROWS]
    gap = lambda n: summarise(rows[n], key)[0]
    return sorted(names, key=lambda n: (math.isnan(gap(n)), gap(n) if not math.isnan(gap(n)) else 0.0))


def best_method(rows: Rows) -> str | None:
    """The method with the lowest mean Avg. Gap (W1 for regression), if any has one."""
    names = method_names(rows)
    key = "w1_to_reference" if any("forget_mae" in s for runs in rows.values() for s in runs) else "avg_gap"
    return names[0] if names and summarise(rows[names[0]], key)[2] else None


def verdicts(rows: Rows) -> dict[str, Verdict]:
    """:func:`expunge.verdict.judge` for every method row with scores, against the original and the floor."""
    floor, original = floor_of(rows), means(rows.get(ORIGINAL, []))
    return {n: judge(means(rows[n]), original, floor) for n in method_names(rows)
            if any(s and not s.get("failed") for s in rows[n])}


def cell(runs: list[dict[str, float]], key: str) -> str:
    mean, std, n = summarise(runs, key)
    if n == 0:
        if runs and all(not r or r.get("failed") for r in runs):
            return "diverged" if not any(runs) else "failed"
        return "–"
    if key == "evidence_tier":
        return f"{mean:.0f}"
    if key == "forget_quality":       # a p-value: small values matter (TOFU plots it on a log scale)
        return f"{mean:.2g}" + (f" ± {std:.1g}" if n > 1 else "")
    digits = 3 if key.endswith("mae") or key.startswith("w1") or key in FRACTION_KEYS else 2
    mark = ""
    if key == "mia_efficacy" and any(s.get("mia_unstable") for s in runs):
        mark = "~"
    if key == "avg_gap" and any(s.get("avg_gap_without_mia") for s in runs):
        mark = "†"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if n > 1 else "") + mark


def table_rows(rows: Rows, *, tier: bool = False) -> tuple[list[str], list[list[str]]]:
    """Header and body: the reference rows, then the methods by Avg. Gap with the best marked; ``x floor`` is the
    Avg. Gap as a multiple of the noise floor's; the verdict last."""
    cols = columns_for(rows, tier=tier)
    floor, judged, best = floor_of(rows), verdicts(rows), best_method(rows)
    body = []
    for name in [n for n in REFERENCE_ROWS if n in rows] + method_names(rows):
        runs, line = rows[name], [name + (BEST if name == best else "")]
        for _, key in cols:
            if key == "floors":
                gap = summarise(runs, "avg_gap")[0]
                line.append("–" if math.isnan(gap) or name == ORACLE else f"{gap / floor.avg_gap:.1f}x")
            elif key == "verdict":
                line.append(REFERENCE_VERDICTS.get(name) or (judged[name].short if name in judged else "–"))
            else:
                line.append(cell(runs, key))
        body.append(line)
    return ["Method"] + [c for c, _ in cols], body


def format_table(header: list[str], body: list[list[str]]) -> str:
    """Fixed-width text columns: the first left-aligned, the others right-aligned, a rule under the header."""
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    fmt = lambda r: "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths)))
    return "\n".join([fmt(header), "  ".join("-" * w for w in widths)] + [fmt(r) for r in body])


def notes(rows: Rows) -> list[str]:
    """What to read beside a table: a loud warning when the original is degenerate, the noise floor, the marks
    used, and each method's verdict with its reasons."""
    out = [w for w in (degenerate_original(means(rows.get(ORIGINAL, []))),
                       degenerate_original(means(rows.get(ORACLE, [])), "oracle (retrained model)")) if w]
    floor = floor_of(rows)
    if "forget_mae" not in next((s for runs in rows.values() for s in runs if s), {}):
        out.append(f"Noise floor (Avg.Gap between oracles of different seeds): {floor.avg_gap:.2f}"
                   + ("" if floor.measured else " (not measured: one oracle; the minimum floor is used)"))
    if any(s.get("mia_unstable") or s.get("avg_gap_without_mia") for runs in rows.values() for s in runs):
        out.append(MARKS)
    if has_iam(rows):
        counted = means([s for runs in rows.values() for s in runs if "iam_n_measured" in s])
        out.append(IAM_NOTE + f" Measured on {counted['iam_n_measured']:.0f} of {counted['iam_n_forget']:.0f} "
                   "forget examples (mean over seeds); the others the shadow already predicts as confidently as it "
                   "fits its own training data, so no score can place them.")
    out += [f"{name}: {v.text}" for name, v in verdicts(rows).items()]
    return out


def text_table(rows: Rows, *, tier: bool = False) -> str:
    """The table as fixed-width text, followed by :func:`notes` (warnings, floor, verdicts)."""
    return "\n".join([format_table(*table_rows(rows, tier=tier))] + notes(rows))


def markdown_table(rows: Rows, *, tier: bool = False) -> str:
    header, body = table_rows(rows, tier=tier)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


def markdown_notes(rows: Rows) -> list[str]:
    """:func:`notes` as Markdown lines (a warning as a bold quote)."""
    return [f"> **{n}**" if n.startswith("WARNING") else f"- {n}" for n in notes(rows)]


def definitions(task: str = "classification") -> str:
    """What the table's columns and verdicts mean (the language task has its own columns)."""
    if task == "language":
        return language_definitions()
    if task == "generation":
        return generation_definitions()
    return ("UA = 100 − forget accuracy; RA = retain accuracy; TA = test accuracy (remaining classes for class-wise "
            "forgetting); MIA = MIA-efficacy, % of the forget set an SVC on the logit-scaled confidence calls "
            "non-member (mean of 5 seeded member draws); Avg.Gap = mean |method − oracle| over UA, RA, TA, MIA; "
            "x floor = Avg.Gap as a multiple of the noise floor, the Avg.Gap between two oracles of different "
            "seeds (1x: as close as retraining gets to itself); RTE % = method time as % of the oracle's retraining "
            "time. Every metric's target is the oracle's value. The original row is doing nothing. Verdict "
            f"(expunge.verdict): forgot = its gap on UA and MIA at least {FORGET_MARGIN:g} floors below the "
            f"original's and within {FORGET_MARGIN:g} floors of the oracle (partly forgot: only the first); "
            f"kept = RA and TA each within {KEEP_MARGIN:g} floors of the oracle's; nothing to forget = "
            "the original is already that close. Methods are sorted by Avg.Gap, the lowest marked (best).")


def generation_definitions() -> str:
    return ("Image generators, scored by expunge.gen.evaluate on samples read by a judge (a classifier trained on the "
            "real images): UA = unlearning accuracy, % of the samples conditioned on the forgotten class that the "
            "judge does not assign to it; retain gen acc = mean over the retained classes of the % of samples "
            "judged as their class; Frechet retain = Frechet distance between generated and real images on the "
            "judge's penultimate features (not FID: no Inception weights), mean over retained classes; Frechet to "
            "oracle = the same between the model's and the oracle's samples; MIA AUC = membership attack on the "
            "forget images against held-out ones (denoising error); attack % = share of samples judged as the "
            "forgotten class after an embedding-space search near its conditioning; Avg.Gap = mean |method - "
            "oracle| in percentage points over UA, retain gen acc, MIA AUC and attack %; x floor = Avg.Gap as a "
            "multiple of the noise floor, the Avg.Gap between two oracles of different seeds; RTE % = method time "
            "as % of the oracle's retraining time. Every metric's target is the oracle's value. The original row "
            "is doing nothing. Verdict (expunge.verdict): forgot = its gap on UA and attack % at least "
            f"{FORGET_MARGIN:g} floors below the original's and within {FORGET_MARGIN:g} floors of the oracle "
            f"(partly forgot: only the first); kept = retain gen acc within {KEEP_MARGIN:g} floors of the oracle's. "
            "Methods are sorted by Avg.Gap, the lowest marked (best).")


def language_definitions() -> str:
    return ("FQ = forget quality (TOFU): the KS-test p-value between the model's and the oracle's truth ratios on the "
            "forget set (1 = the same distribution; the oracle's own row is 1); MU = model utility: the harmonic mean "
            "of answer probability, ROUGE-L recall and truth score on the retain set and the world facts; forget/"
            "retain prob = mean probability of the true answer (length-normalised, teacher-forced); forget/retain "
            "ROUGE = ROUGE-L recall of the greedy answer against the true one; PrivLeak (MUSE) = (AUC − AUC_oracle) "
            "/ AUC_oracle × 100 with MUSE's AUC of the Min-40% membership attack (holdout authors never trained on "
            "against the forget set; near 0 = like the oracle; negative = under-unlearned: the forget set still "
            "stands out; positive = over-unlearned); Avg.Gap = mean |method − oracle| in percentage points over "
            "forget and retain probability, ROUGE-L and truth ratio; x floor = Avg.Gap as a multiple of the noise "
            "floor, the Avg.Gap between two oracles of different seeds; RTE % = method time as % of the oracle's "
            "retraining time. Every metric's target is the oracle's value. The original row is doing nothing. "
            "Verdict (expunge.verdict): forgot = its gap on forget probability, ROUGE-L and truth ratio at least "
            f"{FORGET_MARGIN:g} floors below the original's and within {FORGET_MARGIN:g} floors of the oracle "
            f"(partly forgot: only the first); kept = retain probability, retain ROUGE-L and model utility each "
            f"within {KEEP_MARGIN:g} floors of the oracle's. Methods are sorted by Avg.Gap, the lowest marked "
            "(best).")


def sizes_line(comparisons: Sequence[Comparison]) -> str:
    """The forget-set size (and retain, test, train) of a section, e.g. ``forget set: 144 of 1437 training
    examples (10.0%); retain 1293; test 360``; '' when unknown."""
    sizes = [c.sizes for c in comparisons if getattr(c, "sizes", None)]
    return format_sizes(sizes)


def format_sizes(sizes: Sequence[dict[str, float]]) -> str:
    if not sizes or not all("forget" in s for s in sizes):
        return ""
    span = lambda k: (lambda lo, hi: f"{lo:.0f}" if lo == hi else f"{lo:.0f}–{hi:.0f}")(
        min(s[k] for s in sizes), max(s[k] for s in sizes))
    sizes = [dict(s, train=s["forget"] + s["retain"]) if "train" not in s and "retain" in s else s for s in sizes]
    line = f"forget set: {span('forget')}"
    if all("train" in s for s in sizes):
        frac = sum(s["forget"] / s["train"] for s in sizes) / len(sizes)
        line += f" of {span('train')} training examples ({frac:.1%})"
    else:
        line += " examples"
    line += "".join(f"; {k} {span(k)}" for k in ("retain", "test") if all(k in s for s in sizes))
    return line


def write_reports(out: str | Path, title: str, sections: dict[str, Sequence[Comparison]],
                  meta: dict[str, Any], *, extra_md: str = "", extra_html: str = "") -> dict[str, Path]:
    """Write report.md, report.html and results.json under ``out``; return their paths. ``extra_md`` and
    ``extra_html`` are appended to the Markdown and HTML reports (e.g. sample grids)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    aggregated = {name: aggregate(comps) for name, comps in sections.items()}
    tier = report_tier(sections)
    task = next((rows_task(rows) for rows in aggregated.values()), "classification")
    md = [f"# {title}", "", f"> {tier_statement(tier)}", "", definitions(task), ""]
    md += [f"- {k}: {v}" for k, v in meta.items()] + [""]
    for name, rows in aggregated.items():
        size = sizes_line(sections[name])
        md += [f"## {name}", ""] + ([size, ""] if size else []) + [markdown_table(rows, tier=True), ""]
        md += markdown_notes(rows) + [""]
        md += [f"- {r.method}: {r.error}" for c in sections[name] for r in c.results if r.error]
    if extra_md:
        md += [extra_md, ""]
    paths = {"md": out / "report.md", "html": out / "report.html", "json": out / "results.json"}
    atomic_write(paths["md"], "\n".join(md).encode())
    atomic_write(paths["html"], _html(title, aggregated, meta, tier,
                                      {name: sizes_line(comps) for name, comps in sections.items()},
                                      extra_html).encode())
    results = {"title": title, "meta": meta, "evidence_tier": tier, "caveat": tier_statement(tier),
               "scenarios": {name: {"seeds": [_comparison_json(c) for c in comps],
                                    "mean": {row: {k: summarise(runs, k)[0] for k in _keys(runs)}
                                             for row, runs in aggregated[name].items()},
                                    **verdict_json(aggregated[name])}
                             for name, comps in sections.items()}}
    atomic_write(paths["json"], json.dumps(results, indent=2, default=_json_default).encode())
    return paths


def report_tier(sections: dict[str, Sequence[Comparison]]) -> int:
    """The evidence tier a report reaches: the lowest tier among its methods' scores (0 when none has one)."""
    tiers = [r.scores.get("evidence_tier", 0.0) for comps in sections.values() for c in comps for r in c.results
             if r.scores]
    tiers = [t for t in tiers if not math.isnan(t)]
    return int(min(tiers)) if tiers else 0


def run_sections(record: Any) -> dict[str, list[Comparison]]:
    """The comparison recorded by ``expunge run`` (a :class:`expunge.store.RunRecord` of kind ``run``), rebuilt
    from its metrics (``original_*``, ``oracle_*`` and the method's own) for :func:`write_reports`."""
    from .experiment import MethodResult

    m = record.metrics
    original = {k[len("original_"):]: v for k, v in m.items() if k.startswith("original_")}
    oracle = {k[len("oracle_"):]: v for k, v in m.items() if k.startswith("oracle_")}
    scores = {k: v for k, v in m.items() if not k.startswith(("original_", "oracle_"))
              and k not in ("wall_seconds", "iam_shadow_seconds")}
    forget = ", ".join(f"{k.split('.', 1)[1]}={v}" for k, v in record.params.items() if k.startswith("forget."))
    title = f"forget {forget}" if forget else record.name
    method = str(record.params.get("method", record.name))
    return {title: [Comparison(title, original, oracle, [MethodResult(method, scores)],
                               iam_shadow_seconds=m.get("iam_shadow_seconds"))]}


def verdict_json(rows: Rows) -> dict[str, Any]:
    """The noise floor, the best method, each method's verdict and any warning about the original, for JSON."""
    floor = floor_of(rows)
    return {"noise_floor": {"avg_gap": floor.avg_gap, "per_metric": floor.gaps, "oracle_pairs": floor.pairs},
            "best": best_method(rows), "warning": degenerate_original(means(rows.get(ORIGINAL, []))),
            "verdicts": {n: {"forgot": v.forgot, "kept": v.kept, "verdict": v.text, "forget_gap": v.forget_gap,
                             "original_forget_gap": v.original_forget_gap,
                             "avg_gap_in_floors": None if math.isnan(v.floors) else v.floors}
                         for n, v in verdicts(rows).items()}}


def _keys(runs: list[dict[str, float]]) -> list[str]:
    return sorted({k for s in runs for k in s})


def _comparison_json(c: Comparison) -> dict[str, Any]:
    return {"original": c.original, "oracle": c.oracle, "noise_floor_oracle": c.floor, "sizes": c.sizes,
            "methods": {r.method: ({"error": r.error} if r.error else r.scores) for r in c.results}}


def _json_default(o: Any) -> Any:
    return float(o) if isinstance(o, (int, float)) else str(o)


def pyplot():
    """matplotlib's pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_bytes(fig) -> bytes:
    """``fig`` as PNG bytes; the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    pyplot().close(fig)
    return buf.getvalue()


def png_data_uri(fig) -> str:
    """``fig`` as an inline ``data:image/png;base64,...`` URI; the figure is closed."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(fig)).decode()


def figure_html(uri: str, alt: str, caption: str) -> str:
    """An inline figure with its caption."""
    esc = html.escape
    return f"<figure><img alt='{esc(alt)}' src='{uri}'><figcaption>{esc(caption)}</figcaption></figure>"


def table_html(rows: Rows, *, tier: bool = True, keep: Sequence[str] | None = None) -> str:
    """The table as HTML: reference rows shaded, the best method in bold, verdicts coloured. ``keep``: only the
    columns with these header labels (the method's name always first; a wide table split in two)."""
    esc = html.escape
    header, body = table_rows(rows, tier=tier)
    shown = [0] + [i for i in range(1, len(header)) if keep is None or header[i] in keep]
    header, body = [header[i] for i in shown], [[r[i] for i in shown] for r in body]
    best = best_method(rows)
    parts = ["<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>"]
    classes = {ORIGINAL: "original", ORACLE: "oracle", FLOOR: "floor"}
    for r in body:
        name = r[0][:-len(BEST)] if r[0].endswith(BEST) else r[0]
        cls = classes.get(name) or ("best" if name == best else "")
        verdict = r[-1] if header[-1] == VERDICT_COLUMN[0] else ""
        vcls = "no" if "did not" in verdict else ("yes" if verdict == "forgot, kept" else "")
        cells = [f"<td>{esc(v)}</td>" for v in r[:-1]] + [f"<td class='{vcls}'>{esc(r[-1])}</td>"]
        parts.append(f"<tr class='{cls}'>" + "".join(cells) + "</tr>")
    parts.append("</table>")
    return "\n".join(parts)


def notes_html(rows: Rows) -> str:
    esc = html.escape
    lines = notes(rows)
    warn = [f"<p class='warn'>{esc(n)}</p>" for n in lines if n.startswith("WARNING")]
    rest = [f"<li>{esc(n)}</li>" for n in lines if not n.startswith("WARNING")]
    return "\n".join(warn + (["<ul>"] + rest + ["</ul>"] if rest else []))


def plots_html(rows: Rows, title: str) -> str:
    """The Avg.Gap-against-time plot and the per-metric panels of one section, inline, with captions."""
    from .bench.plots import metric_bars, metric_caption, pareto_caption, pareto_plot

    parts = []
    for png, caption, alt in ((pareto_plot(rows, title), pareto_caption(rows), f"Avg.Gap against time, {title}"),
                              (metric_bars(rows, title), metric_caption(rows), f"per-metric scores, {title}")):
        if png:
            parts.append(figure_html("data:image/png;base64," + base64.b64encode(png).decode(), alt, caption))
    return "\n".join(parts)


def _html(title: str, aggregated: dict[str, Rows], meta: dict[str, Any], tier: int = 0,
          sizes: dict[str, str] | None = None, extra: str = "") -> str:
    esc = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title><style>{STYLE}"
             "</style></head><body>", f"<h1>{esc(title)}</h1>", f"<p class='caveat'>{esc(tier_statement(tier))}</p>",
             f"<p>{esc(definitions(next((rows_task(r) for r in aggregated.values()), 'classification')))}</p>",
             "<ul>"]
    parts += [f"<li>{esc(str(k))}: {esc(str(v))}</li>" for k, v in meta.items()]
    parts.append("</ul>")
    for name, rows in aggregated.items():
        parts.append(f"<h2>{esc(name)}</h2>")
        if sizes and sizes.get(name):
            parts.append(f"<p>{esc(sizes[name])}</p>")
        parts += [table_html(rows), notes_html(rows), plots_html(rows, name)]
    if extra:
        parts.append(extra)
    parts.append("</body></html>")
    return "\n".join(parts)
