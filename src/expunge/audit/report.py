"""Audit reports: ``audit.md``, a self-contained ``audit.html`` (inline plots) and ``audit.json``; and the text
the CLI prints. Every number is shown beside its target: the oracle-vs-oracle baseline (tier 2) or a held-out
oracle (tier 1)."""
from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..evaluate import tier_statement
from ..modelio import atomic_write
from ..report import STYLE, format_table, png_data_uri, pyplot
from .result import TIER1_REFERENCES, TIER2_MODELS, AuditResult
from .vulnerable import TARGETS

Table = tuple[str, list[str], list[list[str]]]
Section = Table | str                    # a table, or a one-line note where a table could not be computed
DEFINITIONS = (
    "ε: the NeurIPS 2023 unlearning challenge's per-example privacy loss of the best threshold attack on the "
    "logit-scaled confidence φ (unlearned vs oracle models); F = mean of 2^(−⌊2ε⌋) over the forget set (0 from "
    "ε ≥ ⌈ln(K − 1)⌉), final = F × RA ratio × TA ratio; across originals: K originals each unlearned once; NeurIPS "
    "2023 protocol: one original unlearned K times with K seeds (the challenge's own). KLoM: KL divergence between "
    "the unlearned and oracle models' margin histograms per example. U-LiRA: per-example likelihood-ratio attack "
    "telling unlearned from oracle models, fitted on half the models and scored on the other half (accuracy 50% = "
    "indistinguishable). LiRA offline: per-example attack on one model with the oracles as reference models, forget "
    "vs test examples. "
    "Retain leakage: one threshold on φ telling retain from test examples, pooled over a group's models; leaks when "
    "the unlearned models' number exceeds the oracles' by more than the oracle-vs-oracle band (95% of the "
    "differences between two random groups of K among the 2K oracles); each of the six rows is judged on its own "
    "(no correction for testing six), so under exact retraining each row lies above its band about 1 time in 40 "
    "(the audited model's rows 1 in 2K + 1 below K = 20) and some row may be flagged by chance (at most about 1 "
    "audit in 7 from K = 20); read one flag alone as a prompt to look again, not as proof. SWAP-test advantage "
    "(Tu, Hu, Ma, NeurIPS 2025): a threshold adversary on the offline LiRA score guesses forget vs test examples, in the audit's game "
    "and in its swap (test examples of the same labels forgotten instead, by K more originals); ½ the sum of the "
    "two games' TPR − FPR, threshold chosen on half the model pairs and measured on the other half, 95% bootstrap "
    "interval over pairs and examples; 0 for retraining; scaled: divided by the originals' advantage (1 = kept the "
    "data). IAM (Wang et al., USENIX Security 2025): per-example completeness against one shadow model trained "
    "on half the retain set (a check of the tier-1 kind without its strength: one shadow gives no calibrated "
    "false-positive rate); its band: where one more oracle's value falls with 95% probability, from the oracles "
    "scored against the same shadow (smallest to largest up to 78 oracles, covering less than 95% below 39); the "
    "audited model is judged on its relative completeness. "
    "Baseline: the same score for K further oracles against the K oracles: what exact retraining scores.")


def _f(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{digits}f}" if isinstance(x, (float, np.floating)) else str(x)


CHALLENGE_ROWS = (("forgetting quality F", "forget_quality", "≈ baseline (never 1)"),
                  ("final score", "final", "≈ baseline"), ("median ε", "eps_median", "≈ baseline"),
                  ("mean ε", "eps_mean", "≈ baseline"))
CHALLENGE_LABELS = (("challenge_", "challenge, across originals (K originals, one run each)"),
                    ("challenge_neurips2023_", "challenge, NeurIPS 2023 protocol (one original, K runs)"))


def tier2_table(r: AuditResult) -> Table:
    s = r.summary()
    body = [[f"{label}: {name}", _f(s.get(prefix + key)), _f(s.get("challenge_baseline_" + key)), target]
            for prefix, label in CHALLENGE_LABELS if prefix + "forget_quality" in s
            for name, key, target in CHALLENGE_ROWS if prefix + key in s]   # no final score without accuracies
    rows: list[tuple[str, str, str]] = []
    rows += [(f"KLoM {split} mean / p95", f"klom_{split}", "≈ baseline") for split in ("forget", "retain", "test")]
    band = s.get("ulira_band_high")
    auc_target = ("0.5" + (f"; permutation band {_f(s['ulira_band_low'])} to {_f(band)}"
                           if isinstance(band, float) and np.isfinite(band) else ""))
    rows += [("U-LiRA accuracy", "ulira_accuracy", "0.5"), ("U-LiRA AUC", "ulira_auc", auc_target),
             ("U-LiRA TPR at 1% FPR", "ulira_tpr_at_1pct", "0.01"),
             ("U-LiRA TPR at 0.1% FPR", "ulira_tpr_at_0_1pct", "0.001")]
    for label, key, target in rows:
        if key.startswith("klom_"):
            base = key.replace("klom_", "klom_baseline_")
            body.append([label, f"{_f(s[key + '_mean'])} / {_f(s[key + '_p95'])}",
                         f"{_f(s[base + '_mean'])} / {_f(s[base + '_p95'])}", target])
        else:
            base = key.replace("challenge_", "challenge_baseline_").replace("ulira_", "ulira_baseline_")
            body.append([label, _f(s[key]), _f(s[base]), target])
    title = (f"Tier 2: {r.n_models} models unlearned with {r.method} against {r.n_models} oracles"
             + ("" if r.n_models >= TIER2_MODELS else f" (tier 2 needs {TIER2_MODELS})"))
    return title, ["score", r.method, "oracles vs oracles (baseline)", "target"], body


def tier1_table(r: AuditResult) -> Table:
    t = r.tier1
    a = t.attack
    body = [["AUC", _f(a.auc), _f(t.oracle_auc)], ["TPR at 1% FPR", _f(a.tpr_at_1pct), _f(t.oracle_tpr_at_1pct)],
            ["TPR at 0.1% FPR", _f(a.tpr_at_0_1pct), _f(t.oracle_tpr_at_0_1pct)]]
    title = (f"Tier 1: offline LiRA on {r.audited}, {t.n_reference} oracles as reference models"
             + ("" if t.n_reference >= TIER1_REFERENCES else f" (tier 1 needs {TIER1_REFERENCES})"))
    return title, ["forget vs test", "audited model", f"held-out oracle (target, mean of {t.n_heldout})"], body


def tier0_table(r: AuditResult) -> Table:
    if r.task == "language":
        return _language_tier0(r)
    if r.task == "generation":
        return _generation_tier0(r)
    s, a = r.scores, r.accuracies
    body = [["audited model vs one oracle", _f(s.get("ua"), 2), _f(s.get("retain_acc"), 2), _f(s.get("test_acc"), 2),
             _f(s.get("mia_efficacy"), 2), _f(s.get("avg_gap"), 2)]]
    for group, name in (("unlearned", "unlearned models (mean)"), ("oracle", "oracles (mean)"),
                        ("original", "originals (mean)")):
        body.append([name, _f(100 - a[f"{group}_forget_acc"], 2), _f(a[f"{group}_retain_acc"], 2),
                     _f(a[f"{group}_test_acc"], 2), "–", "–"])
    return "Tier 0: accuracies and the population MIA", ["", "UA", "RA", "TA", "MIA", "Avg.Gap"], body


def _language_tier0(r: AuditResult) -> Table:
    s, a = r.scores, r.accuracies
    pct = lambda key: _f(100 * s[key], 2) if key in s else "–"
    body = [["audited model vs one oracle", pct("forget_token_accuracy"), pct("retain_token_accuracy"),
             pct("holdout_token_accuracy"), _f(s.get("forget_prob")), _f(s.get("forget_rouge")),
             _f(s.get("model_utility")), _f(s.get("privleak"), 1), _f(s.get("avg_gap"), 2)]]
    for group, name in (("unlearned", "unlearned models (mean)"), ("oracle", "oracles (mean)"),
                        ("original", "originals (mean)")):
        body.append([name, _f(a[f"{group}_forget_acc"], 2), _f(a[f"{group}_retain_acc"], 2),
                     _f(a[f"{group}_test_acc"], 2), "–", "–", "–", "–", "–"])
    return ("Tier 0: answer-token accuracy (%, teacher forcing) and the TOFU/MUSE scores of the audited model",
            ["", "forget acc.", "retain acc.", "holdout acc.", "forget prob.", "forget ROUGE-L", "model utility",
             "PrivLeak %", "Avg.Gap"], body)


def _generation_tier0(r: AuditResult) -> Table:
    s = r.scores
    body = [["audited model vs one oracle", _f(s.get("unlearning_accuracy"), 1),
             _f(s.get("retain_generation_accuracy"), 1), _f(s.get("frechet_retain"), 2), _f(s.get("mia_auc")),
             _f(s.get("avg_gap"), 2)]]
    return ("Tier 0: the audited model's samples read by the judge (image generators have no per-model accuracy, "
            "so no rows for the groups)", ["", "UA %", "retained-class gen. acc. %", "Fréchet (retained)",
                                          "MIA AUC", "Avg.Gap"], body)


TASK_NOTES = {
    "language": "Language models: φ is the logit of the length-normalised answer probability (log p − log(1 − p), "
                "p = exp(−mean answer NLL)) of each row; test examples are held-out rows no model trained on; the "
                "models are trained one by one; per-model accuracy is the answer-token accuracy under teacher "
                "forcing, on every retain row; the SWAP test's B is drawn from the held-out rows, whole groups at a time.",
    "generation": "Image generators: φ is minus the denoising error at 10%, 30% and 50% of T, the same noise for "
                  "every model (diffusion), or the discriminator's logit (GAN); the models are trained one by one. "
                  "For a class-wise request the non-members are the held-out images of the forgotten classes (the "
                  "retain leakage uses those of the retained classes), and B of the SWAP test is drawn from them. "
                  "Generators have no per-model accuracy: the challenge score has no final score or ratios here. A "
                  "class-wise request's forget examples share one class and move together, so U-LiRA, ε and KLoM "
                  "swing far more between sets of K models than between examples: the verdict reads U-LiRA and F "
                  "against permutation bands over models, and a larger K narrows them."}


LEAKAGE_ROWS = (("AUC", "auc"), ("TPR at 1% FPR", "tpr_at_1pct"), ("TPR at 0.1% FPR", "tpr_at_0_1pct"))


def leakage_table(r: AuditResult) -> Table:
    g = r.leakage
    body = []
    for label, key in LEAKAGE_ROWS:
        lo, hi = g.band[key]
        body.append([f"{label}, {r.n_models} unlearned vs {r.n_models} oracles", _f(g.unlearned[key]),
                     _f(g.oracle[key]), _f(g.difference[key]), _band(lo, hi), _leaks(g, key, False)])
    for label, key in LEAKAGE_ROWS:
        lo, hi = g.audited_band[key]
        mean_single = g.audited[key] - g.audited_difference[key]
        body.append([f"{label}, audited model vs single oracles", _f(g.audited[key]), _f(mean_single),
                     _f(g.audited_difference[key]), _band(lo, hi), _leaks(g, key, True)])
    return (f"Retain leakage: retain ({g.n_members}) vs test ({g.n_nonmembers}) examples, one threshold on φ per "
            f"group (– where too few test examples resolve the FPR; each row is judged on its own band, so one "
            f"flag alone can be chance)",
            ["retain vs test", r.method, "oracles", "difference", "oracle-vs-oracle band (95%)",
             "beyond the band"], body)


def _band(lo: float, hi: float) -> str:
    return "–" if math.isnan(lo) or math.isnan(hi) else f"{_f(lo)} to {_f(hi)}"


def _leaks(g, key: str, audited: bool) -> str:
    d = (g.audited_difference if audited else g.difference)[key]
    return "–" if math.isnan(d) else ("LEAKS" if g.exceeds(key, audited=audited) else "no")


def advantage_table(r: AuditResult) -> Section:
    """The SWAP-test table, or the one-line note saying why the test was not played."""
    a = r.advantage
    if a is None:
        return r.swap_note or "SWAP test not run."

    def row(name: str, adv) -> list[str]:
        if adv is None:
            return [name, "–", "–", "0"]
        return [name, _f(adv.value), _band(adv.ci_low, adv.ci_high), str(adv.n_pairs)]

    body = [row(f"{r.method} (target 0)", a.method), row("originals, never unlearned (kept the data)", a.kept),
            row("oracles vs oracles (baseline)", a.oracle),
            [f"{r.method}, scaled: 0 = retraining, 1 = kept the data", _f(a.scaled.value),
             _band(a.scaled.ci_low, a.scaled.ci_high), str(a.n_pairs)]]
    n_forget = r.sizes.get("forget", a.n_forget)
    fewer = (f" (test is short of some labels: the swapped request forgets {a.n_forget} test examples, the audited "
             f"one all {n_forget} forget examples, scored on {a.n_forget} of them)" if a.n_forget < n_forget else "")
    return (f"Calibrated advantage (SWAP test): forget vs test, {a.n_forget} examples each, the game and its swap"
            f"{fewer}", ["models", "advantage", "95% interval", "model pairs"], body)


def iam_table(r: AuditResult) -> Section:
    """IAM of the audited model beside a held-out oracle's and the band of the 2K oracles' values, all against one
    shadow model, with the audited model judged against the band (classifiers; a one-line note elsewhere)."""
    s = r.iam
    if s is None:
        return "IAM: not computed (it scores classifiers: it reads the true-label probability)."
    from .iam import JUDGED_KEY

    rows = (("forget: mean completeness (1 = looks unseen, 0 = looks fitted)", "completeness_mean", False),
            ("test (never trained on): mean completeness", "test_completeness_mean", False),
            ("relative completeness: forget mean / test mean, capped at 1", "relative_completeness", False),
            ("forget judged incomplete (below 0.5)", "incomplete_share", True),
            ("test judged incomplete", "test_incomplete_share", True))
    number = lambda key, share: ("–" if math.isnan(s.get(key, math.nan)) else
                                 (f"{100 * s[key]:.1f}%" if share else _f(s[key])))
    band = lambda key, share: ("–" if any(math.isnan(s.get(f"iam_oracle_{key}_{end}", math.nan))
                                          for end in ("low", "high")) else
                               f"{number(f'iam_oracle_{key}_low', share)} to {number(f'iam_oracle_{key}_high', share)}")
    body = [[label, number(f"iam_{key}", share), number(f"iam_oracle_{key}", share), band(key, share),
             _iam_judgement(s) if key == JUDGED_KEY else ""] for label, key, share in rows]
    body.append(["forget measured (a path between the shadow's ends)",
                 f"{s['iam_n_measured']:.0f} of {s['iam_n_forget']:.0f}",
                 f"{s.get('iam_oracle_n_measured', math.nan):.0f} of {s.get('iam_oracle_n_forget', math.nan):.0f}",
                 "", ""])
    n = s.get("iam_oracle_band_models", math.nan)
    oracles = "oracles" if math.isnan(n) else f"{n:.0f} oracles"
    return (f"IAM: per-example completeness against one shadow model, beside the band of {oracles}",
            ["IAM", "audited", "held-out oracle", f"band ({oracles})", "audited vs band"], body)


def _iam_judgement(s: dict[str, float]) -> str:
    """Inside the oracles' band of relative completeness, or below it (the forget examples look more fitted than
    under retraining), or above it; – without a band."""
    from .iam import JUDGED_KEY

    value, low = s.get(f"iam_{JUDGED_KEY}", math.nan), s.get(f"iam_oracle_{JUDGED_KEY}_low", math.nan)
    inside = s.get("iam_inside_oracle_band", math.nan)
    if math.isnan(inside):
        return "–"
    if inside:
        return "inside: as complete as retraining"
    return ("BELOW: more fitted than retraining" if value < low else "above: less fitted than retraining")


def task_note(r: AuditResult) -> list[str]:
    """The one-line note on what φ and the test examples are, for language models and image generators."""
    return [TASK_NOTES[r.task]] if r.task in TASK_NOTES else []


def _label_header(r: AuditResult) -> str:
    return {"language": "group", "generation": "class"}.get(r.task, "label")


def exposed_table(r: AuditResult, n: int = 10) -> Table:
    body = [[str(i + 1), str(e["index"]), str(e["label"]), _f(e["epsilon"], 2), _f(e["klom"], 2),
             _f(e["ulira_accuracy"], 2), _f(e["phi_unlearned"], 2), _f(e["phi_oracle"], 2)]
            for i, e in enumerate(r.exposed(n))]
    return (f"The {len(body)} most exposed forget examples (highest ε)",
            ["rank", "index in train", _label_header(r), "ε", "KLoM", "U-LiRA acc.", "median φ unlearned",
             "median φ oracle"],
            body)


VULNERABLE_ROWS = (("efficacy", "accuracy", "unlearned vs retrained: U-LiRA accuracy"),
                   ("efficacy", "auc", "unlearned vs retrained: U-LiRA AUC"),
                   ("efficacy", "tpr_at_1pct", "unlearned vs retrained: U-LiRA TPR at 1% FPR"),
                   ("privacy", "auc", "unlearned vs never trained: LiRA AUC"),
                   ("privacy", "tpr_at_1pct", "unlearned vs never trained: LiRA TPR at 1% FPR"),
                   ("privacy", "tpr_at_0_1pct", "unlearned vs never trained: LiRA TPR at 0.1% FPR"))
VULNERABLE_NOTE = (
    "Vulnerable-sample audit (RULI, USENIX Security 2025): the forget examples a LiRA attack separates best between "
    "the originals and the baseline oracles, then two games on them and on the whole forget set: efficacy, "
    "unlearned vs retrained (U-LiRA between the unlearned models and the oracles); privacy, unlearned vs never "
    "trained (offline LiRA on the unlearned models, forget vs test examples; the oracles never saw a forget "
    "example, so they are the never-trained models). Each game with K/2 models a side; baseline: the same game "
    "with oracles in the unlearned models' place (median); band: 95% of the game over random splits of the oracles "
    "and unlearned models pooled, where it falls when the unlearned models are in truth oracles. Above the band: "
    "distinguishable from retraining on those examples.")


def vulnerable_tables(r: AuditResult) -> list[Section]:
    """The vulnerable-sample games beside the whole forget set, and the vulnerable examples (vulnerable mode)."""
    v = r.vulnerable
    if v is None:
        return []
    body = []
    for name, key, label in VULNERABLE_ROWS:
        for games, where in ((name, f"top {v.top}"), (f"{name}_population", "all forget")):
            g = v.games[games]
            body.append([f"{label}, {where}", _f(g.method[key]), _f(g.baseline[key]), _band(*g.band[key]),
                         _f(TARGETS[key]), "–" if not math.isfinite(g.method[key]) else
                         ("DISTINGUISHABLE" if g.exceeds(key) else "no")])
    games = (f"Vulnerable-sample audit: the {v.top} most vulnerable forget examples against the whole forget set, "
             f"{v.n_target} unlearned models and {v.n_target} oracles a side",
             ["game", r.method, "oracles vs oracles (baseline)", "band (95%)", "target", "beyond the band"], body)
    e = v.examples
    rows = [[str(i + 1), str(e["index"][i]) if "index" in e else str(e["position"][i]),
             str(e["label"][i]) if "label" in e else "–", _f(float(e["vulnerability"][i]), 2),
             _f(float(e["phi_original"][i]), 2), _f(float(e["phi_oracle"][i]), 2), _f(float(e["phi_unlearned"][i]), 2)]
            for i in range(len(e["position"]))]
    examples = (f"The {v.top} vulnerable forget examples (LiRA separation of originals from oracles)",
                ["rank", "index in train", "label", "vulnerability", "median φ original", "median φ oracle",
                 "median φ unlearned"], rows)
    return [VULNERABLE_NOTE, games, examples]


def tables(r: AuditResult) -> list[Section]:
    return [*task_note(r), tier2_table(r), tier1_table(r), leakage_table(r), advantage_table(r), iam_table(r),
            tier0_table(r),
            exposed_table(r), *vulnerable_tables(r)]


def text_table(table: Section) -> str:
    if isinstance(table, str):
        return table
    title, header, body = table
    return f"{title}\n{format_table(header, body)}"


def text_summary(r: AuditResult) -> str:
    """The tier statement, the tier-2 and tier-1 tables, retain leakage, the calibrated advantage, IAM, the most
    exposed examples and the one-line verdict, as the CLI prints them."""
    return "\n\n".join([tier_statement(r.tier), *task_note(r), text_table(tier2_table(r)),
                        text_table(tier1_table(r)),
                        text_table(leakage_table(r)), text_table(advantage_table(r)), text_table(iam_table(r)),
                        text_table(exposed_table(r)),
                        *[text_table(t) for t in vulnerable_tables(r)], r.verdict()])


def _md_table(table: Section) -> list[str]:
    if isinstance(table, str):
        return [f"> {table}", ""]
    title, header, body = table
    return [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + \
        ["| " + " | ".join(row) + " |" for row in body] + [""]


def _meta(r: AuditResult, meta: dict[str, Any]) -> dict[str, Any]:
    return {**meta, "method": r.method, "method args": r.method_args or "defaults", "models of each kind": r.n_models,
            "sizes": r.sizes, "seed": r.seed, "wall seconds": round(r.seconds.get("wall", float("nan")), 1)}


def write_audit_reports(result: AuditResult, out: str | Path, *, title: str = "expunge audit",
                        meta: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write ``audit.md``, ``audit.html`` and ``audit.json`` under ``out``; return their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    info = _meta(result, meta or {})
    statement = tier_statement(result.tier)
    md = [f"# {title}", "", f"> {statement}", ""] + [f"- {k}: {v}" for k, v in info.items()] + [""]
    for t in tables(result):
        md += _md_table(t)
    md += [f"**{result.verdict()}**", "", DEFINITIONS, ""]
    paths = {"md": out / "audit.md", "html": out / "audit.html", "json": out / "audit.json"}
    atomic_write(paths["md"], "\n".join(md).encode())
    atomic_write(paths["html"], _html(result, title, statement, info).encode())
    data = {"title": title, "meta": info, "caveat": tier_statement(result.tier), **result.to_dict()}
    atomic_write(paths["json"], json.dumps(data, indent=2, default=str).encode())
    return paths


def _html(r: AuditResult, title: str, statement: str, info: dict[str, Any]) -> str:
    esc = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title><style>{STYLE}</style>"
             f"</head><body><h1>{esc(title)}</h1><p class='caveat'>{esc(statement)}</p><ul>"]
    parts += [f"<li>{esc(str(k))}: {esc(str(v))}</li>" for k, v in info.items()] + ["</ul>"]
    for section in tables(r):
        if isinstance(section, str):
            parts.append(f"<p class='caveat'>{esc(section)}</p>")
            continue
        t_title, header, body = section
        parts.append(f"<h2>{esc(t_title)}</h2><table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{esc(v)}</td>" for v in row) + "</tr>" for row in body]
        parts.append("</table>")
    img = _plots(r)
    parts.append(f"<img alt='per-example ε and the U-LiRA ROC' src='{img}'>")
    parts.append(f"<p class='caveat'><b>{esc(r.verdict())}</b></p><p>{esc(DEFINITIONS)}</p></body></html>")
    return "\n".join(parts)


def _plots(r: AuditResult) -> str:
    """Per-example ε (method vs baseline) and the U-LiRA ROC on log axes, as one inline PNG data URI."""
    t2 = r.tier2
    fig, (left, right) = pyplot().subplots(1, 2, figsize=(9, 3.4), dpi=100)
    eps = [np.minimum(t2.challenge.epsilons, 8), np.minimum(t2.challenge_baseline.epsilons, 8)]
    left.hist(eps, bins=np.linspace(0, 8, 33), label=[r.method, "oracles vs oracles"])
    left.set_xlabel("per-example ε (capped at 8 for display)")
    left.set_ylabel("forget examples")
    left.legend(fontsize=8)
    for res, name in ((t2.ulira, r.method), (t2.ulira_baseline, "oracles vs oracles")):
        fpr, tpr = res.attack.roc_fpr, res.attack.roc_tpr
        keep = fpr > 0
        right.plot(fpr[keep], np.maximum(tpr[keep], 1e-5), label=f"{name} (AUC {res.attack.auc:.2f})")
    right.plot([1e-5, 1], [1e-5, 1], "k:", lw=0.8)
    right.set(xscale="log", yscale="log", xlabel="FPR", ylabel="TPR", title="U-LiRA")
    right.legend(fontsize=8)
    fig.tight_layout()
    return png_data_uri(fig)
