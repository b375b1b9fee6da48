"""Reports: the comparison table as text, Markdown, self-contained HTML and JSON.

Rows are the original, the oracle (the target of every metric) and each method; values are means over seeds,
with ± std when there is more than one seed. Every table shows each row's evidence tier, and every report states
the tier its methods reach (the lowest among them) with what that tier can and cannot show: a tier-0 report says
that it cannot show indistinguishability from retraining.
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

COLUMNS = [("UA", "ua"), ("RA", "retain_acc"), ("TA", "test_acc"), ("MIA", "mia_efficacy"),
           ("Avg.Gap", "avg_gap"), ("RTE %", "rte"), ("seconds", "seconds")]
REGRESSION_COLUMNS = [("forget MAE", "forget_mae"), ("retain MAE", "retain_mae"), ("test MAE", "test_mae"),
                      ("MIA", "mia_efficacy"), ("W1 to oracle", "w1_to_reference"), ("RTE %", "rte"),
                      ("seconds", "seconds")]
TIER_COLUMN = ("tier", "evidence_tier")
STYLE = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}"
         "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
         "text-align:right}td:first-child,th:first-child{text-align:left}"
         "tr.oracle{background:#eef6ee}.caveat{background:#fff4e0;padding:.6em 1em;border-left:4px solid #e90}")


def columns_for(rows: dict[str, list[dict[str, float]]], *, tier: bool = False) -> list[tuple[str, str]]:
    """The table's columns for these rows (classification or regression), with the evidence tier if asked."""
    sample = next((s for runs in rows.values() for s in runs if s), {})
    cols = REGRESSION_COLUMNS if "forget_mae" in sample else COLUMNS
    return cols + [TIER_COLUMN] if tier else cols


def aggregate(comparisons: Sequence[Comparison]) -> dict[str, list[dict[str, float]]]:
    """Row name -> the scores of each seed, in the order original, oracle, methods."""
    rows: dict[str, list[dict[str, float]]] = {"original": [], "oracle (target)": []}
    for c in comparisons:
        rows["original"].append(c.original)
        rows["oracle (target)"].append(c.oracle)
        for r in c.results:
            rows.setdefault(r.method, []).append(r.scores)
    return rows


def summarise(runs: list[dict[str, float]], key: str) -> tuple[float, float, int]:
    vals = [s[key] for s in runs if key in s and not math.isnan(s[key])]
    if not vals:
        return float("nan"), float("nan"), 0
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return mean, std, len(vals)


def cell(runs: list[dict[str, float]], key: str) -> str:
    mean, std, n = summarise(runs, key)
    if n == 0:
        if runs and all(not r or r.get("failed") for r in runs):
            return "diverged" if not any(runs) else "failed"
        return "–"
    if key == "evidence_tier":
        return f"{mean:.0f}"
    digits = 3 if key.endswith("mae") or key.startswith("w1") else 2
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if n > 1 else "")


def table_rows(rows: dict[str, list[dict[str, float]]], *,
               tier: bool = False) -> tuple[list[str], list[list[str]]]:
    cols = columns_for(rows, tier=tier)
    header = ["Method"] + [c for c, _ in cols]
    body = [[name] + [cell(runs, key) for _, key in cols] for name, runs in rows.items()]
    return header, body


def format_table(header: list[str], body: list[list[str]]) -> str:
    """Fixed-width text columns: the first left-aligned, the others right-aligned, a rule under the header."""
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    fmt = lambda r: "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths)))
    return "\n".join([fmt(header), "  ".join("-" * w for w in widths)] + [fmt(r) for r in body])


def text_table(rows: dict[str, list[dict[str, float]]], *, tier: bool = False) -> str:
    return format_table(*table_rows(rows, tier=tier))


def markdown_table(rows: dict[str, list[dict[str, float]]], *, tier: bool = False) -> str:
    header, body = table_rows(rows, tier=tier)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


def definitions() -> str:
    return ("UA = 100 − forget accuracy; RA = retain accuracy; TA = test accuracy (remaining classes for class-wise "
            "forgetting); MIA = MIA-efficacy, % of the forget set an SVC on true-class confidence calls "
            "non-member; Avg.Gap = mean |method − oracle| over UA, RA, TA, MIA; RTE % = method time as % of the "
            "oracle's retraining time. Every metric's target is the oracle's value.")


def write_reports(out: str | Path, title: str, sections: dict[str, Sequence[Comparison]],
                  meta: dict[str, Any]) -> dict[str, Path]:
    """Write report.md, report.html and results.json under ``out``; return their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    aggregated = {name: aggregate(comps) for name, comps in sections.items()}
    tier = report_tier(sections)
    md = [f"# {title}", "", f"> {tier_statement(tier)}", "", definitions(), ""]
    md += [f"- {k}: {v}" for k, v in meta.items()] + [""]
    for name, rows in aggregated.items():
        md += [f"## {name}", "", markdown_table(rows, tier=True), ""]
        md += [f"- {r.method}: {r.error}" for c in sections[name] for r in c.results if r.error]
    paths = {"md": out / "report.md", "html": out / "report.html", "json": out / "results.json"}
    atomic_write(paths["md"], "\n".join(md).encode())
    atomic_write(paths["html"], _html(title, aggregated, meta, tier).encode())
    results = {"title": title, "meta": meta, "evidence_tier": tier, "caveat": tier_statement(tier),
               "scenarios": {name: {"seeds": [_comparison_json(c) for c in comps],
                                    "mean": {row: {k: summarise(runs, k)[0] for k in _keys(runs)}
                                             for row, runs in aggregated[name].items()}}
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
    scores = {k: v for k, v in m.items() if not k.startswith(("original_", "oracle_")) and k != "wall_seconds"}
    forget = ", ".join(f"{k.split('.', 1)[1]}={v}" for k, v in record.params.items() if k.startswith("forget."))
    title = f"forget {forget}" if forget else record.name
    method = str(record.params.get("method", record.name))
    return {title: [Comparison(title, original, oracle, [MethodResult(method, scores)])]}


def _keys(runs: list[dict[str, float]]) -> list[str]:
    return sorted({k for s in runs for k in s})


def _comparison_json(c: Comparison) -> dict[str, Any]:
    return {"original": c.original, "oracle": c.oracle,
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


def _plot(rows: dict[str, list[dict[str, float]]]) -> str:
    """Avg.Gap against seconds for each method, as an inline PNG data URI ('' when not applicable)."""
    points = [(name, summarise(runs, "seconds")[0], summarise(runs, "avg_gap")[0]) for name, runs in rows.items()
              if name not in ("original", "oracle (target)")]
    points = [p for p in points if not (math.isnan(p[1]) or math.isnan(p[2]))]
    if not points:
        return ""
    fig, ax = pyplot().subplots(figsize=(5, 3.2), dpi=110)
    for name, x, y in points:
        ax.scatter(x, y)
        ax.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("seconds")
    ax.set_ylabel("Avg.Gap to oracle (lower is better)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return png_data_uri(fig)


def _html(title: str, aggregated: dict[str, dict[str, list[dict[str, float]]]], meta: dict[str, Any],
          tier: int = 0) -> str:
    esc = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title><style>{STYLE}"
             "</style></head><body>", f"<h1>{esc(title)}</h1>", f"<p class='caveat'>{esc(tier_statement(tier))}</p>",
             f"<p>{esc(definitions())}</p>", "<ul>"]
    parts += [f"<li>{esc(str(k))}: {esc(str(v))}</li>" for k, v in meta.items()]
    parts.append("</ul>")
    for name, rows in aggregated.items():
        header, body = table_rows(rows, tier=True)
        parts.append(f"<h2>{esc(name)}</h2><table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
        for r in body:
            cls = " class='oracle'" if r[0].startswith("oracle") else ""
            parts.append(f"<tr{cls}>" + "".join(f"<td>{esc(v)}</td>" for v in r) + "</tr>")
        parts.append("</table>")
        img = _plot(rows)
        if img:
            parts.append(f"<img alt='Avg.Gap against seconds, {esc(name)}' src='{img}'>")
    parts.append("</body></html>")
    return "\n".join(parts)
