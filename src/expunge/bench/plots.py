"""Report plots (matplotlib, Agg backend) as PNG bytes: Avg.Gap against time and per-metric panels (for regression:
W1 to the oracle against time, and the MAEs), each with a caption.

Rows are ``name -> per-seed score dicts`` as in :mod:`expunge.report`. The original (doing nothing), the oracle
(the target of every metric) and the noise floor (oracle against oracle) are drawn as references, not as methods.
Methods appear in the table's order (by Avg.Gap, the best marked). Every figure fits a page width (9 inches at
100 dpi); error bars are clipped to the metric's range; time is on a log axis; method names go in a legend or on
the axis, never on top of each other.
"""
from __future__ import annotations

import math

from ..report import BEST, best_method, floor_of, method_names, png_bytes, pyplot, summarise
from ..verdict import ORACLE, ORIGINAL

BAR_METRICS = [("UA", "ua"), ("RA", "retain_acc"), ("TA", "test_acc"), ("MIA", "mia_efficacy"),
               ("Avg.Gap", "avg_gap")]
REGRESSION_BAR_METRICS = [("forget MAE", "forget_mae"), ("retain MAE", "retain_mae"), ("test MAE", "test_mae"),
                          ("MIA", "mia_efficacy"), ("W1 to oracle", "w1_to_reference")]
LANGUAGE_BAR_METRICS = [("forget quality", "forget_quality"), ("model utility", "model_utility"),
                        ("forget prob", "forget_prob"), ("forget ROUGE", "forget_rouge"), ("PrivLeak", "privleak"),
                        ("Avg.Gap", "avg_gap")]
PERCENT = {"ua", "retain_acc", "test_acc", "mia_efficacy"}
FRACTIONS = {"forget_quality", "model_utility", "forget_prob", "forget_rouge"}     # language scores in [0, 1]
WIDTH, DPI = 9.0, 100
MARKERS = "osD^vP*Xh<>p"


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
    """``(method, mean seconds, mean gap to the oracle)`` for every method row with both, by gap."""
    key = gap_key(rows)
    pts = [(name, summarise(rows[name], "seconds")[0], summarise(rows[name], key)[0]) for name in method_names(rows)]
    return [p for p in pts if not (math.isnan(p[1]) or math.isnan(p[2]))]


def clipped_err(mean: float, std: float, lo: float = 0.0, hi: float = math.inf) -> tuple[float, float]:
    """The (below, above) lengths of a ±std error bar around ``mean`` clipped to ``[lo, hi]``."""
    if math.isnan(std):
        return 0.0, 0.0
    return max(0.0, min(std, mean - lo)), max(0.0, min(std, hi - mean))


def _style(i: int) -> dict:
    return {"color": pyplot().get_cmap("tab20")(i % 20), "marker": MARKERS[i % len(MARKERS)]}


def _seeds(rows) -> int:
    return max((len(runs) for name, runs in rows.items() if name not in (ORIGINAL, ORACLE)), default=0)


def pareto_plot(rows: dict[str, list[dict[str, float]]], title: str) -> bytes | None:
    """Avg.Gap (W1 for regression) to the oracle against the method's wall time on a log axis; each method its own
    colour and marker, named in a legend beside the axes (lowest gap first); the Pareto front joined; the noise
    floor as a band, doing nothing as a dashed line and the oracle as a star at (its time, 0)."""
    points = method_points(rows)
    if not points:
        return None
    key = gap_key(rows)
    best = best_method(rows)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(WIDTH, 4.2), dpi=DPI)
    for i, (name, x, y) in enumerate(points):
        err = clipped_err(y, summarise(rows[name], key)[1])
        ax.errorbar([x], [y], yerr=[[err[0]], [err[1]]], fmt=_style(i)["marker"], color=_style(i)["color"], ms=6,
                    capsize=2, label=f"{name}{BEST if name == best else ''}: {y:.2f}")
    front = pareto_front(points)
    ax.step([p[1] for p in front], [p[2] for p in front], where="post", color="k", lw=0.8, alpha=0.5,
            label="Pareto front")
    if key == "avg_gap":
        floor = floor_of(rows)
        ax.axhspan(0, floor.avg_gap, color="tab:green", alpha=0.15,
                   label=f"noise floor{'' if floor.measured else ' (minimum)'}: {floor.avg_gap:.2f}")
    nothing = summarise(rows.get(ORIGINAL, []), key)[0]
    if not math.isnan(nothing):
        ax.axhline(nothing, color="0.4", ls="--", lw=1, label=f"do nothing (original): {nothing:.2f}")
    oracle_s = summarise(rows.get(ORACLE, []), "seconds")[0]
    if not math.isnan(oracle_s):
        ax.scatter([oracle_s], [0.0], marker="*", s=140, color="tab:green", label="oracle (retrain)", zorder=3,
                   clip_on=False)
    xs = [p[1] for p in points] + ([] if math.isnan(oracle_s) else [oracle_s])
    if min(xs) > 0:
        ax.set_xscale("log")
        ax.set_xlim(min(xs) / 1.6, max(xs) * 1.6)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("method wall time (s, log scale)")
    ax.set_ylabel(f"{'Avg.Gap' if key == 'avg_gap' else 'W1'} to oracle (lower is better)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, frameon=False)
    fig.tight_layout()
    return png_bytes(fig)


def pareto_caption(rows: dict[str, list[dict[str, float]]]) -> str:
    """What :func:`pareto_plot` shows, in words."""
    key = gap_key(rows)
    name = "Avg.Gap" if key == "avg_gap" else "W1"
    floor = floor_of(rows)
    text = (f"{name} to the oracle (lower is better) against each method's wall time (log scale); mean over "
            f"{_seeds(rows)} seed(s), error bars ±1 std clipped at 0. The legend lists the methods by {name}, "
            "lowest first. Dashed: doing nothing (the original); star: the oracle at its own retraining time; "
            "black steps: the Pareto front (no method is both faster and closer).")
    if key == "avg_gap":
        text += (f" Green band: the noise floor, the Avg.Gap between oracles of different seeds ({floor.avg_gap:.2f}"
                 f"{'' if floor.measured else ', not measured: the minimum'}); a method inside it is as close to "
                 "the oracle as retraining is to itself.")
    return text


def metric_bars(rows: dict[str, list[dict[str, float]]], title: str) -> bytes | None:
    """One panel per metric, three to a row: each method's mean ± std over seeds (clipped to the metric's range)
    as a point, methods by Avg.Gap (best at the top), the oracle's value dashed and the original's dotted; each
    axis spans the values shown, so differences of a point or two stay visible."""
    methods = [n for n in method_names(rows) if any(s and not s.get("failed") for s in rows[n])]
    choices = BAR_METRICS if gap_key(rows) == "avg_gap" else REGRESSION_BAR_METRICS
    if any("model_utility" in s for runs in rows.values() for s in runs):
        choices = LANGUAGE_BAR_METRICS
    metrics = [(label, key) for label, key in choices if any(key in s for n in methods for s in rows[n])]
    if not methods or not metrics:
        return None
    best = best_method(rows)
    plt = pyplot()
    ncols = min(3, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    height = max(2.0, 0.55 + 0.2 * len(methods))
    fig, axes = plt.subplots(nrows, ncols, figsize=(WIDTH, height * nrows + 0.4), dpi=DPI, squeeze=False,
                             sharey=True)
    ys = list(range(len(methods)))[::-1]
    for i, ax in enumerate(axes.flat):
        if i >= len(metrics):
            ax.axis("off")
            continue
        label, key = metrics[i]
        hi = 100.0 if key in PERCENT else 1.0 if key in FRACTIONS else math.inf
        lo = -math.inf if key == "privleak" else 0.0
        values = []
        for y, (j, n) in zip(ys, enumerate(methods)):
            mean, std, count = summarise(rows[n], key)
            if not count:
                continue
            err = clipped_err(mean, std, lo, hi)
            ax.errorbar([mean], [y], xerr=[[err[0]], [err[1]]], fmt="o", ms=4, capsize=2, color=_style(j)["color"])
            values += [mean - err[0], mean + err[1]]
        refs = [] if key in ("avg_gap", "w1_to_reference") else [(ORACLE, "tab:green", "--", "oracle")]
        for ref, color, ls, name in refs + [(ORIGINAL, "0.4", ":", "original")]:
            v = summarise(rows.get(ref, []), key)[0]
            if not math.isnan(v):
                ax.axvline(v, lw=1.2, color=color, ls=ls, label=name)
                values.append(v)
        if key == "avg_gap":
            ax.axvspan(0, floor_of(rows).avg_gap, color="tab:green", alpha=0.15, label="noise floor")
            values.append(floor_of(rows).avg_gap)
        if values:
            lo_v, hi_v = min(values), max(values)
            pad = max((hi_v - lo_v) * 0.05, 0.3 if key in PERCENT or key == "avg_gap" else
                      0.01 if key in FRACTIONS else 1e-3)
            # the axis may pass the metric's range by a little so that a value at 0 or 100 stays visible
            ax.set_xlim(lo_v - pad if lo_v - pad >= lo else lo - pad / 4,
                        hi_v + pad if hi_v + pad <= hi else hi + pad / 4)
        ax.set_title(label, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(axis="x", labelsize=7)
        if i == 0 or key == "avg_gap":
            ax.legend(fontsize=6, loc="lower right")
    axes[0][0].set_yticks(ys)
    axes[0][0].set_yticklabels([n + (BEST if n == best else "") for n in methods], fontsize=7)
    for row in axes:
        row[0].tick_params(axis="y", labelsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return png_bytes(fig)


def metric_caption(rows: dict[str, list[dict[str, float]]]) -> str:
    """What :func:`metric_bars` shows, in words."""
    return (f"Each panel: one metric, each method's mean over {_seeds(rows)} seed(s) with ±1 std clipped to the "
            "metric's range, methods sorted by Avg.Gap (best at the top). Dashed green: the oracle's value (the "
            "target); dotted grey: the original's (doing nothing); green band on Avg.Gap: the noise floor. Each "
            "axis spans only the values shown, so "
            "small differences in retain and test accuracy are visible; read the numbers in the table.")
