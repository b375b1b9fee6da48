"""Bench plots (matplotlib, Agg backend) as PNG bytes: the Avg.Gap–time Pareto front and per-metric bars
(for regression: W1 to the oracle against time, and the MAEs).

Rows are ``name -> per-seed score dicts`` as in :mod:`expunge.report`; the oracle row is the target of every
metric and is drawn as a reference (a star on the Pareto plot, a dashed line on the bars).
"""
from __future__ import annotations

import math

from ..report import png_bytes, pyplot, summarise

ORACLE = "oracle (target)"
BAR_METRICS = [("UA", "ua"), ("RA", "retain_acc"), ("TA", "test_acc"), ("MIA", "mia_efficacy"),
               ("Avg.Gap", "avg_gap")]
REGRESSION_BAR_METRICS = [("forget MAE", "forget_mae"), ("retain MAE", "retain_mae"), ("test MAE", "test_mae"),
                          ("MIA", "mia_efficacy"), ("W1 to oracle", "w1_to_reference")]


def gap_key(rows: dict[str, list[dict[str, float]]]) -> str:
    """The distance to the oracle that summarises a method: Avg.Gap (classification) or W1 (regression)."""
    regression = any("forget_mae" in s for runs in rows.values() for s in runs)
    return "w1_to_reference" if regression else "avg_gap"


def pareto_front(points: list[tuple[str, float, float]]) -> list[tuple[str, float, float]]:
    """The points no other point beats on both time and Avg.Gap (lower is better on both), by time."""
    front, best = [], math.inf
    for p in sorted(points, key=lambda q: (q[1], q[2])):
        if p[2] < best:
            front.append(p)
            best = p[2]
    return front


def method_points(rows: dict[str, list[dict[str, float]]]) -> list[tuple[str, float, float]]:
    """``(method, mean seconds, mean gap to the oracle)`` for every method row with both."""
    key = gap_key(rows)
    pts = [(name, summarise(runs, "seconds")[0], summarise(runs, key)[0]) for name, runs in rows.items()
           if name not in ("original", ORACLE)]
    return [p for p in pts if not (math.isnan(p[1]) or math.isnan(p[2]))]


def pareto_plot(rows: dict[str, list[dict[str, float]]], title: str) -> bytes | None:
    """Avg.Gap (W1 for regression) to the oracle against the method's wall time; the Pareto front joined; the
    oracle at (its time, 0)."""
    points = method_points(rows)
    if not points:
        return None
    key = gap_key(rows)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.8), dpi=110)
    for name, x, y in points:
        ax.errorbar(x, y, yerr=summarise(rows[name], key)[1] or None, fmt="o", ms=5, capsize=2)
        ax.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    front = pareto_front(points)
    ax.step([p[1] for p in front], [p[2] for p in front], where="post", color="k", lw=0.8, alpha=0.6,
            label="Pareto front")
    oracle_s = summarise(rows.get(ORACLE, []), "seconds")[0]
    if not math.isnan(oracle_s):
        ax.scatter([oracle_s], [0.0], marker="*", s=120, color="tab:green", label="oracle (retrain)", zorder=3)
    xs = [p[1] for p in points] + ([] if math.isnan(oracle_s) else [oracle_s])
    if min(xs) > 0 and max(xs) / min(xs) > 20:
        ax.set_xscale("log")
    ax.set_xlabel("method wall time (s)")
    ax.set_ylabel(f"{'Avg.Gap' if key == 'avg_gap' else 'W1'} to oracle (lower is better)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return png_bytes(fig)


def metric_bars(rows: dict[str, list[dict[str, float]]], title: str) -> bytes | None:
    """One panel per metric: mean ± std over seeds per method, the oracle's mean as a dashed line."""
    methods = [n for n in rows if n not in ("original", ORACLE) and any(rows[n])]
    choices = BAR_METRICS if gap_key(rows) == "avg_gap" else REGRESSION_BAR_METRICS
    metrics = [(label, key) for label, key in choices if any(key in s for n in methods for s in rows[n])]
    if not methods or not metrics:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(2.6 * len(metrics), 3.2), dpi=110, squeeze=False)
    for ax, (label, key) in zip(axes[0], metrics):
        stats = [summarise(rows[n], key) for n in methods]
        ax.bar(range(len(methods)), [s[0] for s in stats], yerr=[s[1] for s in stats], capsize=2,
               color="tab:blue", alpha=0.8)
        target = summarise(rows.get(ORACLE, []), key)[0]
        if key not in ("avg_gap", "w1_to_reference") and not math.isnan(target):
            ax.axhline(target, color="tab:green", ls="--", lw=1, label="oracle")
            ax.legend(fontsize=6)
        ax.set_xticks(range(len(methods)))
        ax.set_xticklabels(methods, rotation=70, fontsize=6)
        ax.set_title(label, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return png_bytes(fig)
