"""``expunge runs compare A B``: what differs between two benches, or between two recorded runs.

A reference is a bench directory, the id of a bench run in the run store (its output directory is recorded), or
the id of any other run. Benches are compared row by row (setup × scenario × method: mean over seeds of the main
metrics, B − A); other runs by their differing parameters and their metrics.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..report import format_table
from ..store import RunRecord, RunStore

METRICS = [("UA", "ua"), ("RA", "retain_acc"), ("TA", "test_acc"), ("MIA", "mia_efficacy"),
           ("Avg.Gap", "avg_gap"), ("seconds", "seconds")]


def resolve(ref: str, store: str | Path | None = None) -> tuple[str, Any]:
    """``("bench", directory)`` or ``("run", RunRecord)`` for a directory or a run id (prefix)."""
    p = Path(ref)
    if (p / "grid.json").is_file():
        return "bench", p
    if p.is_dir():
        raise ValueError(f"{ref} is a directory but not a bench directory (no grid.json)")
    with RunStore(store) as db:
        rec = db.get(ref)
    out = rec.params.get("out")
    if rec.kind == "bench" and out and (Path(out) / "grid.json").is_file():
        return "bench", Path(out)
    return "run", rec


def compare(a: str, b: str, store: str | Path | None = None) -> str:
    """A text report of what differs between ``a`` and ``b``."""
    (ka, va), (kb, vb) = resolve(a, store), resolve(b, store)
    if ka != kb:
        raise ValueError(f"cannot compare a {ka} with a {kb}: give two bench directories (or bench run ids) or "
                         "two run ids")
    return compare_benches(va, vb) if ka == "bench" else compare_runs(va, vb)


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def _delta(x: Any, y: Any) -> str:
    if not isinstance(x, (int, float)) or not isinstance(y, (int, float)) or math.isnan(x) or math.isnan(y):
        return "–"
    return f"{y - x:+.2f}"


def compare_benches(a: Path, b: Path) -> str:
    from .report import collect, summary_rows

    rows_a = {(r["setup"], r["scenario"], r["method"]): r for r in summary_rows(collect(a))}
    rows_b = {(r["setup"], r["scenario"], r["method"]): r for r in summary_rows(collect(b))}
    header = ["setup | scenario | method"] + [f"{label} A / B / Δ" for label, _ in METRICS]
    body, lines = [], [f"A = {a}", f"B = {b}", ""]
    for key in list(rows_a) + [k for k in rows_b if k not in rows_a]:
        ra, rb = rows_a.get(key), rows_b.get(key)
        if ra is None or rb is None:
            lines.append(f"only in {'A' if rb is None else 'B'}: {' | '.join(key)}")
            continue
        cells = []
        for _, m in METRICS:
            x, y = ra["mean"].get(m), rb["mean"].get(m)
            cells.append(f"{_fmt(x)} / {_fmt(y)} / {_delta(x, y)}")
        body.append([" | ".join(key)] + cells)
        if ra.get("args") != rb.get("args"):
            lines.append(f"arguments differ for {' | '.join(key)}: {ra.get('args')} vs {rb.get('args')}")
    return "\n".join(lines[:2] + [""] + ([format_table(header, body)] if body else ["no rows in common"]) + lines[2:])


def compare_runs(a: RunRecord, b: RunRecord) -> str:
    lines = [f"A = run {a.run_id} ({a.name}, {a.kind}, {a.status})", f"B = run {b.run_id} ({b.name}, {b.kind}, "
                                                                       f"{b.status})", ""]
    keys = sorted(set(a.params) | set(b.params))
    diff = [[k, str(a.params.get(k, "–")), str(b.params.get(k, "–"))] for k in keys
            if a.params.get(k) != b.params.get(k)]
    lines += ["parameters that differ:", format_table(["param", "A", "B"], diff) if diff else "  none", ""]
    mkeys = sorted(set(a.metrics) | set(b.metrics))
    body = [[k, _fmt(a.metrics.get(k)), _fmt(b.metrics.get(k)), _delta(a.metrics.get(k), b.metrics.get(k))]
            for k in mkeys]
    lines += ["metrics:", format_table(["metric", "A", "B", "B - A"], body) if body else "  none"]
    return "\n".join(lines)
