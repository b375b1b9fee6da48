"""Bench reports: mean ± std over seeds per method and scenario, as Markdown, self-contained HTML and JSON.

``write_bench_report(out)`` reads a bench directory (``grid.json`` + the job store) and writes ``report.md``
(plots linked from ``plots/``), ``report.html`` (plots inline as base64, nothing fetched) and ``results.json``:
``wall_seconds``, ``compute_seconds``, job counts, and one row per setup × scenario × method (the original and
the oracle included) with ``mean`` and ``std`` over seeds of every metric, the arguments used and, when tuned,
the chosen hyperparameters; and ``verdicts``, per setup × scenario: the noise floor, the best method, each
method's verdict and any warning about the original. The noise floor is a second oracle per seed, retrained under
another seed and scored against the first, where the bench trains one (the language task; its row is in
``rows`` too); otherwise the oracles of different seeds against each other, so of different forget sets too where
the forget set depends on the seed: a conservative floor.

Generation benches (image generators): the HTML report splits each section's table in two
(:data:`GENERATION_TABLES`: forgetting, then retained classes and cost; the Markdown keeps one table), and each
section gets a sample grid (:func:`sample_grid_plot`): the first seed's original, each method's model (best Avg. Gap
first) and the oracle, read from the bench's model cache, drawing :data:`GRID_PER_CLASS` samples of each class
from the same noise (:func:`expunge.gen.report.sample_grid`), the forgotten classes first.
"""
from __future__ import annotations

import base64
import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..evaluate import TIER0_CAVEAT
from ..modelio import atomic_write
from ..report import (STYLE, comparable, definitions, rows_task, figure_html, format_sizes, markdown_notes, markdown_table,
                      method_names, notes_html, summarise, table_html, verdict_json)
from ..store import RunRecord, RunStore
from ..verdict import FLOOR, ORACLE, oracle_pairs
from .grid import Grid
from .plots import metric_bars, metric_caption, pareto_caption, pareto_plot
from .runner import STORE_NAME, ModelCache, load_grid

Rows = dict[str, list[dict[str, float]]]
GENERATION_TABLES = (("Forgetting", ("UA", "attack %", "MIA AUC", "Avg.Gap", "x floor", "verdict")),
                     ("Retained classes and cost", ("retain gen acc", "Frechet retain", "Frechet to oracle", "RTE %",
                                                    "seconds", "tier", "verdict")))
GRID_PER_CLASS = 6        # samples per class in a generation section's grid


@dataclass
class Section:
    """One setup × scenario: per-seed scores of the original, the oracle and each method."""

    setup: str
    scenario: str
    rows: Rows = field(default_factory=dict)
    args: dict[str, dict[str, Any]] = field(default_factory=dict)
    tuned: dict[str, dict[str, Any]] = field(default_factory=dict)   # method -> best_args, best_value
    notes: list[str] = field(default_factory=list)
    sizes: list[dict[str, float]] = field(default_factory=list)   # per seed: forget and retain sizes
    floor_oracles: bool = False    # the floor row holds second oracles' scores (not pairs of the oracle row)

    @property
    def title(self) -> str:
        return f"{self.setup}: {self.scenario}"


@dataclass
class BenchResults:
    grid: Grid
    records: dict[str, RunRecord]
    sections: list[Section]
    invocations: list[RunRecord]

    @property
    def wall_seconds(self) -> float:
        return float(sum(r.seconds or 0.0 for r in self.invocations))

    @property
    def compute_seconds(self) -> float:
        return float(sum(float(r.tags.get("job_seconds", 0.0)) for r in self.records.values()))


def collect(out: str | Path) -> BenchResults:
    """Everything recorded for the bench in ``out``, grouped into report sections."""
    grid = load_grid(out)
    db_path = Path(out) / STORE_NAME
    if not db_path.is_file():
        raise ValueError(f"{out} has no job store ({STORE_NAME}); the bench has not run there yet")
    with RunStore(db_path) as store:
        records = {k: r for k, r in store.tagged("job_key").items() if k in grid.jobs}
        invocations = [r for r in store.runs(limit=10_000, kind="bench") if r.end_time is not None]
    sections: dict[tuple[str, str], Section] = {}
    for cell in grid.cells:
        sec = sections.setdefault((cell.setup, cell.scenario), Section(cell.setup, cell.scenario))
        oracle = records.get(cell.oracle)
        if oracle is not None and oracle.status == "FINISHED":
            m = oracle.metrics
            sec.rows.setdefault("original", []).append(
                {k[len("original_"):]: v for k, v in m.items() if k.startswith("original_")})
            sec.rows.setdefault(ORACLE, []).append(
                {k: v for k, v in m.items() if not k.startswith("original_") and not k.endswith("_size")})
            sec.sizes.append({k[:-len("_size")]: v for k, v in m.items() if k.endswith("_size")})
        floor = records.get(cell.floor) if cell.floor else None
        if floor is not None and floor.status == "FINISHED":    # a second oracle, scored against the oracle
            sec.rows.setdefault(FLOOR, []).append(dict(floor.metrics))
            sec.floor_oracles = True
        for method, key in cell.unlearn.items():
            sec.args.setdefault(method, grid.args.get(method, {}))
            rec = records.get(key)
            if rec is None:
                sec.rows.setdefault(method, [])
                continue
            failed = {} if (rec.error or "").startswith("diverged") else {"failed": 1.0}
            sec.rows.setdefault(method, []).append(failed if rec.status != "FINISHED" else dict(rec.metrics))
            if rec.error:
                sec.notes.append(f"{method}, seed {cell.seed}: {rec.error}")
            used = json.loads(rec.tags.get("result") or "{}").get("args")
            if used is not None:
                sec.args[method] = used
        for method, key in cell.tune.items():
            rec = records.get(key)
            if rec is not None and rec.status == "FINISHED":
                res = json.loads(rec.tags.get("result") or "{}")
                sec.tuned[method] = {"best_args": res.get("best_args", {}), "best_value": res.get("best_value")}
    for sec in sections.values():
        if len(sec.rows.get(ORACLE, [])) > 1 and not sec.floor_oracles:
            sec.rows[FLOOR] = oracle_pairs(sec.rows[ORACLE])   # the noise floor: oracles of different seeds
        sec.rows = comparable(sec.rows)
        missing = [m for m, runs in sec.rows.items() if m not in ("original", ORACLE, FLOOR)
                   and len(runs) < sum(1 for c in grid.cells if (c.setup, c.scenario) == (sec.setup, sec.scenario))]
        if missing:
            sec.notes.append(f"not (yet) recorded for every seed: {', '.join(missing)}")
    return BenchResults(grid, records, list(sections.values()), invocations)


def summary_rows(results: BenchResults) -> list[dict[str, Any]]:
    """One row per setup × scenario × method (original and oracle included): mean and std over seeds."""
    out = []
    for sec in results.sections:
        for name, runs in sec.rows.items():
            if name == FLOOR and not sec.floor_oracles:   # derived from the oracle rows; given under "verdicts"
                continue
            keys = sorted({k for s in runs for k in s} - {"failed"})   # "failed" marks a failed seed's entry
            stats = {k: summarise(runs, k) for k in keys}
            out.append({"setup": sec.setup, "scenario": sec.scenario,
                        "method": "oracle" if name == ORACLE else name, "seeds": len(runs),
                        "finished": sum(1 for s in runs if s and not s.get("failed")), "args": sec.args.get(name),
                        "tuned": sec.tuned.get(name), "mean": {k: _num(v[0]) for k, v in stats.items()},
                        "std": {k: _num(v[1]) for k, v in stats.items()}})
    return out


def section_verdicts(results: BenchResults) -> list[dict[str, Any]]:
    """Per setup × scenario: the noise floor, the best method, the verdicts and any warning (JSON-ready)."""
    return [{"setup": sec.setup, "scenario": sec.scenario, "sizes": format_sizes(sec.sizes),
             **_clean(verdict_json(sec.rows))} for sec in results.sections]


def _clean(o: Any) -> Any:
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    return _num(o) if isinstance(o, float) else o


def _num(v: float) -> float | None:
    """NaN (no finished seed) as null, so results.json stays strict JSON."""
    return None if v != v else v


def write_bench_report(out: str | Path, *, dest: str | Path | None = None,
                       summary: str | Path | None = None) -> dict[str, Path]:
    """Write report.md, report.html, results.json and plots/ for the bench in ``out`` (into ``dest``, default
    ``out``); also copy results.json to ``summary`` when given. Returns the paths written."""
    results = collect(out)
    dest = Path(dest or out)
    plots: list[tuple[Section, str, Path, bytes, str]] = []
    for i, sec in enumerate(results.sections):
        slug = f"{i:02d}-" + re.sub(r"[^a-z0-9]+", "-", sec.title.lower()).strip("-")
        for kind, png, caption in (("pareto", pareto_plot(sec.rows, sec.title), pareto_caption(sec.rows)),
                                   ("metrics", metric_bars(sec.rows, sec.title), metric_caption(sec.rows))):
            if png:
                plots.append((sec, kind, dest / "plots" / f"{slug}-{kind}.png", png, caption))
        grid = sample_grid_plot(results, sec, Path(out)) if rows_task(sec.rows) == "generation" else None
        if grid is not None:
            plots.append((sec, "samples", dest / "plots" / f"{slug}-samples.png", *grid))
    for _, _, path, png, _ in plots:
        atomic_write(path, png)
    meta = _meta(results)
    paths = {"md": dest / "report.md", "html": dest / "report.html", "json": dest / "results.json"}
    atomic_write(paths["md"], _markdown(results, meta, plots, dest).encode())
    atomic_write(paths["html"], _html(results, meta, plots).encode())
    data = json.dumps({**meta, "evidence_tier": 0, "caveat": TIER0_CAVEAT, "rows": summary_rows(results),
                       "verdicts": section_verdicts(results)},
                      indent=2, default=_json_default).encode()
    atomic_write(paths["json"], data)
    if summary:
        paths["summary"] = Path(summary)
        atomic_write(paths["summary"], data)
    return paths


def _json_default(o: Any) -> Any:
    return o.item() if hasattr(o, "item") else str(o)


def _meta(results: BenchResults) -> dict[str, Any]:
    g = results.grid
    counts = {stage: sum(1 for j in g.jobs.values() if j.kind == stage) for stage in
              dict.fromkeys(j.kind for j in g.jobs.values())}
    finished = sum(1 for r in results.records.values() if r.status == "FINISHED")
    return {"name": g.name, "version": g.version, "wall_seconds": round(results.wall_seconds, 2),
            "compute_seconds": round(results.compute_seconds, 2), "invocations": len(results.invocations),
            "seeds": sorted({c.seed for c in g.cells}), "jobs": {"total": len(g.jobs), "finished": finished,
                                                                  "failed": len(results.records) - finished,
                                                                  **counts}}


def _args_lines(sec: Section) -> list[str]:
    lines = []
    for m, args in sec.args.items():
        tuned = sec.tuned.get(m)
        extra = (f"; tuned: {json.dumps(tuned['best_args'], sort_keys=True)} (tuning objective "
                 f"{tuned['best_value']:.2f})") if tuned and tuned.get("best_value") is not None else ""
        lines.append(f"{m}: {json.dumps(args, sort_keys=True) if args else 'defaults'}{extra}")
    return lines


def _task(results: BenchResults) -> str:
    """The task the bench's rows are of (their columns and definitions follow it)."""
    return rows_task(results.sections[0].rows) if results.sections else "classification"


def _markdown(results: BenchResults, meta: dict[str, Any], plots: list, dest: Path) -> str:
    md = [f"# expunge bench: {meta['name']}", "", f"> {TIER0_CAVEAT}", "", definitions(_task(results)), ""]
    md += [f"- {k}: {v}" for k, v in meta.items() if k != "name"] + [""]
    for sec in results.sections:
        size = format_sizes(sec.sizes)
        md += [f"## {sec.title}", ""] + ([size, ""] if size else []) + [markdown_table(sec.rows, tier=True), ""]
        md += markdown_notes(sec.rows) + [""]
        md += ["Arguments:", ""] + [f"- {line}" for line in _args_lines(sec)] + [""]
        md += [f"- {n}" for n in sec.notes] + ([""] if sec.notes else [])
        for s, kind, path, _, caption in plots:
            if s is sec:
                md += [f"![{kind}: {sec.title}]({path.relative_to(dest).as_posix()})", "", f"*{caption}*", ""]
    return "\n".join(md)


def _html(results: BenchResults, meta: dict[str, Any], plots: list) -> str:
    esc = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(meta['name'])}</title>"
             f"<style>{STYLE}</style></head><body>", f"<h1>expunge bench: {esc(meta['name'])}</h1>",
             f"<p class='caveat'>{esc(TIER0_CAVEAT)}</p>", f"<p>{esc(definitions(_task(results)))}</p>", "<ul>"]
    parts += [f"<li>{esc(k)}: {esc(str(v))}</li>" for k, v in meta.items() if k != "name"] + ["</ul>"]
    for sec in results.sections:
        size = format_sizes(sec.sizes)
        parts.append(f"<h2>{esc(sec.title)}</h2>" + (f"<p>{esc(size)}</p>" if size else ""))
        if rows_task(sec.rows) == "generation":      # too wide as one table: forgetting, then the rest
            for title, columns in GENERATION_TABLES:
                parts += [f"<h3>{esc(title)}</h3>", table_html(sec.rows, keep=columns)]
            parts.append(notes_html(sec.rows))
        else:
            parts += [table_html(sec.rows), notes_html(sec.rows)]
        parts.append("<p>Arguments:</p><ul>" + "".join(f"<li>{esc(x)}</li>" for x in _args_lines(sec)) + "</ul>")
        parts += [f"<p>{esc(n)}</p>" for n in sec.notes]
        for s, kind, _, png, caption in plots:
            if s is sec:
                uri = "data:image/png;base64," + base64.b64encode(png).decode()
                parts.append(figure_html(uri, f"{kind}: {sec.title}", caption))
    parts.append("</body></html>")
    return "\n".join(parts)


def sample_grid_plot(results: BenchResults, sec: Section, out: Path) -> tuple[bytes, str] | None:
    """The sample grid of a generation section and its caption: the first seed's original, each method's model
    (best Avg. Gap first) and the oracle, from the model cache in ``out``, all drawing :data:`GRID_PER_CLASS`
    samples per class from the same seed; rows as :func:`expunge.gen.report.grid_rows` gives them (the forgotten
    classes first, marked ``*``). None when the cache holds none of the models (a missing one is named in the
    caption)."""
    from ..gen.base import is_generative
    from ..gen.report import grid_rows, sample_grid

    cells = [c for c in results.grid.cells if (c.setup, c.scenario) == (sec.setup, sec.scenario)]
    if not cells:
        return None
    cell = min(cells, key=lambda c: c.seed)
    jobs, cache = results.grid.jobs, ModelCache(out / "cache")
    wanted = [("original", cell.original)] + [(m, cell.unlearn[m]) for m in method_names(sec.rows)
                                              if m in cell.unlearn] + [("oracle", cell.oracle)]
    models, missing = {}, []
    for name, key in wanted:
        job = jobs.get(key)
        if job is not None and cache.has(job):
            model = cache.load(job)
            if is_generative(model):
                models[name] = model
                continue
        missing.append(name)
    if not models:
        return None
    forgotten = (jobs[cell.oracle].spec.get("forget") or {}).get("classes", [])
    classes, labels = grid_rows(min(m.n_classes for m in models.values()), forgotten,
                                _class_names(jobs[cell.original].spec.get("data"), cell.seed))
    png = sample_grid(models, classes, per_class=GRID_PER_CLASS, seed=cell.seed, class_names=labels)
    caption = (f"Samples, seed {cell.seed}: one block per model (the original, each method by Avg.Gap, the oracle), "
               f"rows = classes (* = forgotten), {GRID_PER_CLASS} samples per class from the same starting noise "
               "for every model.") + (f" Not in the model cache: {', '.join(missing)}." if missing else "")
    return png, caption


def _class_names(data: Any, seed: int) -> list[str] | None:
    """The data's class names for the grid's rows, or None where the data cannot be read here."""
    from .jobs import load_data

    if not isinstance(data, dict):
        return None
    try:
        names = load_data(data, seed)[0].class_names
    except (OSError, ValueError):
        return None
    return [str(n) for n in names] if names else None
