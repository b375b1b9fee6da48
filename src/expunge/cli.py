"""The ``expunge`` command line. Thin: parses, calls the library, prints.

Exit codes: 0 success; 2 bad input (one line, ``error: ...``, printed before anything is trained, written or
recorded: arguments, configs, data, output directories and the run store are all checked first); 1 a failure while
working (a diverging run, a bench with failed jobs, a disk that fills up); 130 interrupted (Ctrl-C).
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import List, Optional

import typer

try:  # typer >= 0.26 vendors click
    from typer.exceptions import TyperException as _UsageError
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException as _UsageError

from .evaluate import TIER0_CAVEAT, tier_statement
from .store import RunStore, default_path

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Make a trained PyTorch model forget chosen training data, and prove it against the oracle.")
runs_app = typer.Typer(add_completion=False, invoke_without_command=True, pretty_exceptions_enable=False,
                       help="List recorded runs (or show one with 'runs show ID').")
app.add_typer(runs_app, name="runs")

StoreOption = typer.Option(None, "--store", help=f"Run store database (default: $EXPUNGE_STORE or {default_path()}).")
ThreadsOption = typer.Option(None, "--threads", help="CPU threads for torch, per process or bench job (default: "
                                                     "$EXPUNGE_THREADS or 1, which suits small models on a shared "
                                                     "CPU; seeded results are repeatable at a given count).")

DeviceOption = typer.Option("cpu", "--device", help="Where models train and run: cpu (default), auto (CUDA, then "
                                                    "Apple MPS, then CPU), cuda, cuda:N or mps.")


def _use_device(device: str) -> None:
    """Train and run on ``device`` for the rest of this command; a device that is not here: one line, exit 2."""
    from .devices import set_default

    set_default(device)


def _use_threads(threads: Optional[int]) -> None:
    """Compute with ``threads`` intra-op threads in this process and the workers it starts (checked first)."""
    import torch

    from .threads import check, get_threads, set_threads

    n = get_threads() if threads is None else check(threads, "--threads")
    set_threads(n)
    torch.set_num_threads(n)


MIN_FREE_BYTES = 50 * 2**20     # an output directory's disk must have this much free before any work starts
SQLITE_MAGIC = b"SQLite format 3\x00"


def _echo(msg: str = "") -> None:
    typer.echo(msg)


def _writable_dir(path: Path, what: str) -> Path:
    """Check, without creating anything, that directory ``path`` exists or can be created, can be written and has
    disk space; ValueError naming ``what`` otherwise."""
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise ValueError(f"{what} {p} is a file; expected a directory (created if missing)")
    ancestor = p
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ValueError(f"{what} {p} cannot be created: {ancestor} is a file")
    try:
        fd, probe = tempfile.mkstemp(dir=ancestor, prefix=".expunge-write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ValueError(f"{what} {p} is not writable ({ancestor}: {e.strerror})") from None
    free = shutil.disk_usage(ancestor).free
    if free < MIN_FREE_BYTES:
        raise ValueError(f"{what} {p}: only {free / 2**20:.1f} MiB free on its disk; at least "
                         f"{MIN_FREE_BYTES // 2**20} MiB are needed")
    return p


def _check_store(path: Path | None) -> None:
    """Check, without creating it, that the run store can be opened or created."""
    p = Path(path).expanduser() if path is not None else default_path()
    if p.is_dir():
        raise ValueError(f"run store {p} is a directory; expected a SQLite file (--store or $EXPUNGE_STORE)")
    if p.exists():
        try:
            with open(p, "rb") as fh:
                head = fh.read(len(SQLITE_MAGIC))
        except OSError as e:
            raise ValueError(f"run store {p} cannot be read ({e.strerror})") from None
        if head and head != SQLITE_MAGIC:
            raise ValueError(f"run store {p} is not a SQLite database; give a new path or an expunge run store")
    else:
        _writable_dir(p.parent, "run store directory")


@app.command()
def demo(out: Optional[Path] = typer.Option(None, "--out", help="Directory for report.md, report.html, results.json "
                                                             "(default expunge-demo, or expunge-demo-lm / "
                                                             "expunge-demo-diffusion with --task lm / diffusion)."),
         task: str = typer.Option("digits", "--task", help="digits (default: classifiers on scikit-learn's digits), "
                                                          "lm (a language model on the fictitious authors) or "
                                                          "diffusion (a diffusion model on the digits)."),
         seeds: int = typer.Option(1, "--seeds", help="Number of seeds (mean ± std over seeds)."),
         methods: Optional[str] = typer.Option(None, "--methods", help="Comma-separated method names, or 'all'."),
         model: Optional[str] = typer.Option(None, "--model", help="mlp (default) or cnn (runs the methods that need "
                                                                   "convolution layers too); digits only."),
         epochs: Optional[int] = typer.Option(None, "--epochs", help="Override the original's training epochs."),
         tune: bool = typer.Option(False, "--tune", help="Tune each method first (quick, against the oracle of "
                                                        "another forget set) instead of using presets."),
         trials: Optional[int] = typer.Option(None, "--trials", help="Trials per method with --tune (default 8)."),
         threads: Optional[int] = ThreadsOption,
         device: str = DeviceOption,
         store: Optional[Path] = StoreOption) -> None:
    """Digits: original -> oracle -> every method, random-10% and class-wise forgetting; prints the table. With
    --task lm: a language model on the fictitious authors, forgetting 5% of them. With --task diffusion: a
    class-conditional diffusion model on the digits, forgetting digit 3."""
    if task not in ("digits", "lm", "diffusion"):
        raise ValueError(f"--task {task!r} is not allowed; expected digits, lm or diffusion")
    if task == "lm" and model is not None:
        raise ValueError("--model applies to the digits demo; the language demo trains its own Llama model")
    if task == "diffusion" and model is not None:
        raise ValueError("--model applies to the digits demo; the diffusion demo trains expunge.gen.unet()")
    if task == "diffusion" and (tune or trials is not None):
        raise ValueError("--tune and --trials apply to the digits and lm demos; the diffusion demo runs each method "
                         "with its defaults")
    _use_threads(threads)
    _use_device(device)
    from .report import aggregate, report_tier, text_table
    from .tuning import quick_budget

    if task == "lm":
        from .lm.demo import check_options as check_lm, run_demo as run_lm

        check_lm(seeds=seeds, methods=methods, epochs=epochs)       # bad options: nothing recorded
        model = "lm"
    elif task == "diffusion":
        from .gen.demo import check_options as check_diffusion, run_demo as run_diffusion

        check_diffusion(seeds=seeds, methods=methods, epochs=epochs)
        model = "unet"
    else:
        from .demo import check_options, run_demo

        model = model or "mlp"
        check_options(seeds=seeds, methods=methods, model=model, epochs=epochs)
    quick_budget(tune, trials)
    out = out if out is not None else Path({"lm": "expunge-demo-lm", "diffusion": "expunge-demo-diffusion"}
                                           .get(task, "expunge-demo"))
    _writable_dir(out, "--out")
    _check_store(store)
    if task == "lm":
        _echo("expunge demo: fictitious authors, a Llama model trained here; original -> oracle (retrain) -> methods")
    elif task == "diffusion":
        _echo("expunge demo: digits, a class-conditional diffusion model trained here; original -> oracle (retrain) "
              "-> methods")
    else:
        _echo(f"expunge demo: scikit-learn digits, {model.upper()}; original -> oracle (retrain) -> methods")
    with RunStore(store) as db, db.run("demo", "demo", params={"out": str(out), "seeds": seeds,
                                                               "methods": methods or "default",
                                                               "model": model, "task": task}) as run_id:
        def progress(title, seed, r):
            gap = r.scores.get("avg_gap", float("nan"))
            _echo(f"  [{title}, seed {seed}] {r.method}: "
                  + (r.error or f"Avg.Gap {gap:.2f} in {r.scores.get('seconds', 0):.2f}s"))

        if task == "lm":
            result = run_lm(out, seeds=seeds, methods=methods, epochs=epochs, on_result=progress, tune=tune,
                            trials=trials, on_message=_echo)
        elif task == "diffusion":
            result = run_diffusion(out, seeds=seeds, methods=methods, epochs=epochs, on_result=progress,
                                   on_message=_echo)
            _echo("  seconds per phase: " + ", ".join(f"{k} {v:.0f}" for k, v in result["phases"].items()))
        else:
            result = run_demo(out, seeds=seeds, methods=methods, model=model, epochs=epochs, on_result=progress,
                              tune=tune, trials=trials, on_message=_echo)
        for name, why in result["skipped"].items():
            _echo(f"  skipped {name}: {why}")
        for title, comps in result["sections"].items():
            _echo(f"\n{title}\n" + text_table(aggregate(comps)))
        for kind, path in result["paths"].items():
            db.log_artifact(run_id, path.resolve(), kind)
        db.log_metrics(run_id, {"wall_seconds": result["wall_seconds"]})
    _echo(f"\n{tier_statement(report_tier(result['sections']))}")
    _echo(f"Wrote {', '.join(str(p) for p in result['paths'].values())} in {result['wall_seconds']:.0f}s "
          f"(run {run_id}).")


@app.command()
def run(config: Path = typer.Argument(..., help="Experiment YAML file."),
        overrides: Optional[List[str]] = typer.Argument(None, help="key=value overrides, e.g. args.lr=0.01"),
        out: Optional[Path] = typer.Option(None, "--out", help="Directory for the unlearned model."),
        tune: bool = typer.Option(False, "--tune", help="Tune the method's other arguments first (as args: auto)."),
        trials: Optional[int] = typer.Option(None, "--trials", help="Trials with --tune or args: auto (default 8)."),
        threads: Optional[int] = ThreadsOption,
        device: str = DeviceOption,
        store: Optional[Path] = StoreOption) -> None:
    """Run one experiment from a YAML config: data, model, forget request, method + args, seed."""
    _use_threads(threads)
    _use_device(device)
    from .config import load_config
    from .experiment import check_experiment, output_dir, prepare, run_experiment
    from .report import aggregate, text_table
    from .tuning import quick_budget

    cfg = load_config(config, overrides or [])
    if tune or trials is not None:
        cfg.tune_trials = quick_budget(tune or cfg.tune_trials is not None,
                                       trials if trials is not None else cfg.tune_trials)
    out_dir = _writable_dir(output_dir(cfg, out), "--out" if out else "output directory")
    _check_store(store)
    prepared = prepare(cfg)                   # data, split and model; bad input: nothing recorded
    check_experiment(cfg, prepared)
    tuned = f"quick tuning, {cfg.tune_trials} trials" + (f", fixed {cfg.args}" if cfg.args else "")
    _echo(f"expunge run {cfg.name}: method {cfg.method} {f'({tuned})' if cfg.tune_trials else cfg.args or ''}")
    with RunStore(store) as db:
        run_id, comp = run_experiment(cfg, store=db, out=out_dir, prepared=prepared, on_message=_echo)
    _echo(text_table(aggregate([comp])))
    _echo(f"Recorded as run {run_id}.")


@app.command()
def audit(config: Path = typer.Argument(..., help="Experiment YAML file, with an optional audit: section "
                                                  "(n_models, seed)."),
          overrides: Optional[List[str]] = typer.Argument(None, help="key=value overrides, e.g. audit.n_models=16"),
          out: Path = typer.Option(Path("expunge-audit"), "--out", help="Directory for audit.md, audit.html, "
                                                                        "audit.json."),
          models: Optional[int] = typer.Option(None, "--models", help="K: models of each kind (originals, oracles, "
                                                                      "baseline oracles, unlearned); tier 2 from 64."),
          threads: Optional[int] = ThreadsOption,
          device: str = DeviceOption,
          store: Optional[Path] = StoreOption) -> None:
    """Audit a method on a forget request with K unlearned models against K oracles (evidence tiers 0-2)."""
    _use_threads(threads)
    _use_device(device)
    from .audit import audit as run_audit
    from .audit import check_audit
    from .audit.config import load_audit_config
    from .audit.report import text_summary, write_audit_reports
    from .experiment import prepare

    cfg, settings = load_audit_config(config, overrides or [], models=models)
    k = settings.n_models
    prepared = prepare(cfg)
    request = dict(forget=prepared.forget, retain=prepared.retain, method=cfg.method, method_args=cfg.args,
                   recipe=cfg.train.to_dict(), n_models=k, seed=settings.seed)
    check_audit(prepared.template, prepared.train, prepared.test, **request)   # bad input: nothing recorded
    _writable_dir(out, "--out")
    _check_store(store)
    typer.echo(f"expunge audit {cfg.name}: method {cfg.method} {cfg.args or ''}; {k} originals, {2 * k} oracles "
               f"and {k} unlearned models", err=True)
    params = {**cfg.to_dict(), "audit": {"n_models": k, "seed": settings.seed}, "out": str(out.resolve())}
    with RunStore(store) as db, db.run(cfg.name, "audit", params=params) as run_id:
        result = run_audit(prepared.template, prepared.train, prepared.test, **request)
        paths = write_audit_reports(result, out, title=f"expunge audit: {cfg.name}",
                                    meta={"config": str(config), "run": run_id})
        db.log_metrics(run_id, result.summary())
        for kind, path in paths.items():
            db.log_artifact(run_id, path.resolve(), kind)
    _echo(text_summary(result))
    _echo(f"\nWrote {', '.join(str(p) for p in paths.values())} in {result.seconds['wall']:.0f}s (run {run_id}).")


@app.command()
def bench(config: Path = typer.Argument(..., help="Benchmark YAML file (see examples/bench_small.yaml)."),
          overrides: Optional[List[str]] = typer.Argument(None, help="key=value overrides, e.g. seeds=1"),
          out: Optional[Path] = typer.Option(None, "--out", help="Output directory (default: the config's out)."),
          engine: str = typer.Option("local", "--engine", help="local (joblib), dask or ray."),
          address: Optional[str] = typer.Option(None, "--address", help="Scheduler address for dask or ray."),
          workers: Optional[int] = typer.Option(None, "--workers", help="Parallel jobs (local, ray); default: "
                                                                          "one per core."),
          report: bool = typer.Option(True, "--report/--no-report", help="Write the reports at the end."),
          retry_failed: bool = typer.Option(False, "--retry-failed", help="Also run again the jobs recorded as "
                                                                          "failed permanently."),
          threads: Optional[int] = ThreadsOption,
          device: Optional[str] = typer.Option(None, "--device", help="Where jobs run (overrides the config's "
                                                                      "device): cpu, auto, cuda, cuda:N or mps."),
          store: Optional[Path] = StoreOption) -> None:
    """Run a benchmark grid: data/models x forget scenarios x methods x seeds; resumable (rerun to continue)."""
    _use_threads(threads)
    from .bench import expand, load_bench, make_engine, run_bench
    from .bench.report import collect
    from .report import text_table

    if device is not None:
        from .devices import device_form

        overrides = [*(overrides or []), f"device={device_form(device)}"]
    spec = load_bench(config, overrides or [])
    if engine == "local":      # jobs run here: the device must be here, and jobs are keyed by the one it resolves to
        from .devices import resolve_device

        wanted = spec.setups[0].device
        here = "cpu" if resolve_device(wanted).type == "cpu" else str(resolve_device(wanted))
        if here != wanted:
            overrides = [*(overrides or []), f"device={here}"]
            spec = load_bench(config, overrides)
    out_dir = _writable_dir(Path(out or spec.out), "--out" if out else "output directory")
    _check_store(store)
    grid = expand(spec)
    counts = ", ".join(f"{n} {k}" for k, n in _stage_counts(grid).items())
    runner = make_engine(engine, address=address, workers=workers)
    try:
        typer.echo(f"expunge bench {spec.name}: {len(grid.jobs)} jobs ({counts}) on {runner.describe()}; "
                   f"output in {out_dir}", err=True)
        with RunStore(store) as db:
            with db.run(spec.name, "bench", params={"config": str(config), "overrides": overrides or [],
                                                    "out": str(out_dir.resolve()), "engine": engine}) as run_id:
                outcome = run_bench(spec, out=out_dir, engine=runner, progress=True, report=report,
                                    retry_failed=retry_failed)
                permanent = list(outcome.permanent)      # failures that a rerun would repeat
                failed = outcome.failures + permanent
                db.log_metrics(run_id, {"wall_seconds": outcome.wall_seconds, "jobs_run": outcome.ran,
                                        "jobs_reused": outcome.reused, "jobs_failed": len(failed)})
                for kind, path in outcome.paths.items():
                    db.log_artifact(run_id, path.resolve(), kind)
                if failed:
                    db.end_run(run_id, "FAILED", f"{len(failed)} job(s) failed")
    finally:
        runner.close()
    typer.echo(f"ran {outcome.ran} jobs, reused {outcome.reused}, blocked {outcome.blocked}, failed "
               f"{len(failed)} in {outcome.wall_seconds:.1f}s (run {run_id})", err=True)
    if report:
        for sec in collect(out_dir).sections:
            _echo(f"\n{sec.title}\n" + text_table(sec.rows, tier=True))
        _echo(f"\n{TIER0_CAVEAT}\nWrote {', '.join(str(p) for p in outcome.paths.values())}.")
    if failed:                                     # exit code 1: the bench ran, some of its jobs failed
        label, error = failed[0]
        retry = "; ".join(part for part in (
            f"{len(outcome.failures)} transient: rerun to retry" if outcome.failures else "",
            f"{len(permanent)} permanent: recorded, not retried; --retry-failed runs them again" if permanent else "")
            if part)
        typer.echo(f"error: {len(failed)} job(s) failed ({retry}); first: {label}: {' '.join(error.split())}",
                   err=True)
        raise typer.Exit(1)


def _stage_counts(grid) -> dict[str, int]:
    counts: dict[str, int] = {}
    for job in grid.jobs.values():
        counts[job.kind] = counts.get(job.kind, 0) + 1
    return counts


@app.command("report")
def report_cmd(target: str = typer.Argument(..., help="A bench directory, or a run id (prefix) in the run store."),
               out: Optional[Path] = typer.Option(None, "--out", help="Report directory (default: the bench "
                                                                       "directory; expunge-report-ID for a run)."),
               mlflow: bool = typer.Option(False, "--mlflow", help="Also export a bench's jobs to MLflow."),
               mlflow_uri: Optional[str] = typer.Option(None, "--mlflow-uri", help="MLflow tracking URI."),
               store: Optional[Path] = StoreOption) -> None:
    """Write report.md, report.html (self-contained) and results.json for a bench or a run."""
    from .bench.compare import resolve
    from .report import aggregate, report_tier, run_sections, text_table, write_reports

    _check_report_target(target, store)
    if out is not None:
        _writable_dir(out, "--out")
    kind, value = resolve(target, store)
    if mlflow:
        from .bench.export import require_mlflow

        require_mlflow()
    if kind == "bench":
        from .bench.report import collect, write_bench_report

        paths = write_bench_report(value, dest=out)
        for sec in collect(value).sections:
            _echo(f"\n{sec.title}\n" + text_table(sec.rows, tier=True))
        _echo(f"\n{TIER0_CAVEAT}")
        if mlflow:
            from .bench.export import to_mlflow

            _echo(f"Exported {to_mlflow(value, tracking_uri=mlflow_uri)} new run(s) to MLflow.")
    elif mlflow:
        raise ValueError("--mlflow exports benches; give a bench directory or a bench run id")
    elif value.kind == "run":
        sections = run_sections(value)
        paths = write_reports(out or Path(f"expunge-report-{value.run_id}"), f"expunge run {value.name}", sections,
                              {"run": value.run_id, **value.params})
        for title, comps in sections.items():
            _echo(f"\n{title}\n" + text_table(aggregate(comps)))
        _echo(f"\n{tier_statement(report_tier(sections))}")
    else:
        written = [p for p, k in value.artifacts.items() if k in ("md", "html", "json")]
        if not written:
            raise ValueError(f"run {value.run_id} is a {value.kind} run with no results to report")
        _echo(f"run {value.run_id} ({value.kind}) wrote its reports when it ran:")
        for p in written:
            _echo(f"  {p}")
        return
    _echo(f"\nWrote {', '.join(str(p) for p in paths.values())}.")


def _check_report_target(target: str, store: Optional[Path]) -> None:
    """A missing directory is named as such, not looked up as a run id (and no run store is created for it)."""
    p = Path(target)
    if p.exists():
        if not p.is_dir():
            raise ValueError(f"{target} is a file; expected a bench directory or a run id")
        return
    if os.sep in target or "/" in target or target.startswith(".") or target.endswith((".json", ".yaml", ".md")):
        raise ValueError(f"{target}: no such directory; expected a bench directory or a run id")
    db = Path(store).expanduser() if store is not None else default_path()
    if not db.is_file():
        raise ValueError(f"no run with id {target!r} and no such directory: there is no run store at {db}; "
                         "expected a bench directory or a run id")


@app.command("methods")
def methods_cmd(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """List the registered methods with their paper, needs and defaults."""
    from .api import methods

    infos = methods()
    deviations = {name: method_deviations(name) for name in infos}
    if as_json:
        _echo(json.dumps({n: {**i.__dict__, "deviations": deviations[n]} for n, i in infos.items()}, indent=2,
                         default=str))
        return
    for name, info in infos.items():
        needs = ", ".join(k for k, v in info.needs.items() if v) or "forget features only"
        _echo(f"{name:18s} {info.summary}")
        _echo(f"{'':18s} paper: {info.paper or 'none (the exact baseline)'}")
        _echo(f"{'':18s} reference: {info.reference or 'none'}")
        _echo(f"{'':18s} needs: {needs}; tasks: {', '.join(info.tasks)}")
        _echo(f"{'':18s} defaults: {info.defaults}")
        _echo(f"{'':18s} grid: {info.grid or 'none (no hyperparameters to tune)'}")
        _echo(textwrap.fill(f"deviations: {deviations[name]}", width=118, initial_indent=" " * 19,
                            subsequent_indent=" " * 19))


def method_deviations(name: str) -> str:
    """What a method's module docstring says about its deviations from the reference code, as one line."""
    import re

    from .methods import get

    doc = sys.modules[get(name).__module__].__doc__ or ""
    found, taking = [], False
    for line in doc.splitlines():
        if re.match(r"(Other )?[Dd]eviations?\b", line):
            taking = True
            line = re.sub(r"^(Other )?[Dd]eviations?( from the reference( code)?)?\s*:\s*", "", line)
        elif not line.strip() or re.match(r"(Needs|Defaults|Grid|Paper|Papers|Reference|Behaviour)\b", line):
            taking = False
        if taking:
            found.append(line.strip())
    return " ".join(found) if found else "none stated in its docstring"


@runs_app.callback()
def runs_list(ctx: typer.Context, limit: int = typer.Option(20, "--limit"), store: Optional[Path] = StoreOption) -> None:
    """List recent runs."""
    if ctx.invoked_subcommand is not None:
        return
    if limit < 1:
        raise ValueError(f"--limit {limit} is not allowed; expected an integer >= 1")
    _check_store(store)
    path = Path(store).expanduser() if store is not None else default_path()
    if not path.exists():                          # reading creates nothing
        _echo(f"No runs recorded in {path}.")
        return
    with RunStore(store) as db:
        records = db.runs(limit=limit)
        if not records:
            _echo(f"No runs recorded in {db.path}.")
            return
        _echo(f"{'run':12s}  {'kind':6s}  {'status':8s}  {'started':19s}  {'seconds':>8s}  name")
        for r in records:
            started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.start_time))
            secs = f"{r.seconds:.1f}" if r.seconds is not None else "-"
            _echo(f"{r.run_id:12s}  {r.kind:6s}  {r.status:8s}  {started}  {secs:>8s}  {r.name}")


@runs_app.command("show")
def runs_show(run_id: str = typer.Argument(..., help="Run id or a unique prefix."),
              store: Optional[Path] = StoreOption) -> None:
    """Show one run: status, params, metrics, artifacts."""
    _check_store(store)
    path = Path(store).expanduser() if store is not None else default_path()
    if not path.exists():                          # reading creates nothing
        raise ValueError(f"no run with id {run_id!r}: there is no run store at {path} (--store or $EXPUNGE_STORE)")
    with RunStore(store) as db:
        r = db.get(run_id)
    _echo(f"run {r.run_id}  {r.name}  ({r.kind}, {r.status})")
    if r.error:
        _echo(f"error: {r.error}")
    for title, items in (("params", r.params), ("metrics", r.metrics), ("artifacts", r.artifacts)):
        if items:
            _echo(f"{title}:")
            for k, v in items.items():
                _echo(f"  {k} = {v:.4g}" if isinstance(v, float) else f"  {k} = {v}")


@runs_app.command("compare")
def runs_compare(a: str = typer.Argument(..., help="A bench directory or run id."),
                 b: str = typer.Argument(..., help="Another bench directory or run id."),
                 store: Optional[Path] = StoreOption) -> None:
    """Diff two runs (parameters, metrics) or two benches (per method and scenario: A, B and B - A)."""
    from .bench.compare import compare

    _echo(compare(a, b, store))


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app; turn bad input into one line and exit code 2."""
    from .training import DivergenceError

    def fail(message: str, code: int) -> int:
        typer.echo(f"error: {' '.join(str(message).split())}", err=True)   # always one line
        return code

    try:
        code = app(args=argv, standalone_mode=False)   # Typer returns a command's exit code; Ctrl-C becomes 130
    except typer.Exit as e:
        code = int(getattr(e, "exit_code", 0) or 0)
    except (typer.Abort, KeyboardInterrupt):
        code = 130
    except _UsageError as e:
        return fail(e.format_message() if hasattr(e, "format_message") else str(e), 2)
    except DivergenceError as e:
        return fail(str(e), 1)
    except (ValueError, TypeError) as e:
        return fail(str(e), 2)
    except OSError as e:                 # the disk filled up or a file vanished while working
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        return fail(f"{e.strerror or e}{where}", 1)
    except Exception as e:  # noqa: BLE001 - one line instead of a traceback; EXPUNGE_DEBUG=1 shows it
        if os.environ.get("EXPUNGE_DEBUG"):
            raise
        return fail(f"{type(e).__name__}: {e} (set EXPUNGE_DEBUG=1 for the traceback)", 1)
    code = code if isinstance(code, int) and not isinstance(code, bool) else 0
    if code == 130:
        typer.echo("interrupted (Ctrl-C); exit code 130", err=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
