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
ledger_app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                         help="The deletion ledger: list, show or verify its certificates; keygen makes a signing key.")
app.add_typer(ledger_app, name="ledger")

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
                                                  "(n_models, seed, swap, mode, top)."),
          overrides: Optional[List[str]] = typer.Argument(None, help="key=value overrides, e.g. audit.n_models=16"),
          out: Path = typer.Option(Path("expunge-audit"), "--out", help="Directory for audit.md, audit.html, "
                                                                        "audit.json."),
          models: Optional[int] = typer.Option(None, "--models", help="K: models of each kind (originals, oracles, "
                                                                      "baseline oracles, unlearned); tier 2 from 64."),
          mode: Optional[str] = typer.Option(None, "--mode", help="standard, or vulnerable: also select the top-v "
                                                                  "vulnerable forget examples (LiRA) and play the "
                                                                  "efficacy and privacy games on them."),
          top: Optional[int] = typer.Option(None, "--top", help="Vulnerable forget examples to select (--mode "
                                                                "vulnerable; default min(20, forget size))."),
          threads: Optional[int] = ThreadsOption,
          device: str = DeviceOption,
          store: Optional[Path] = StoreOption) -> None:
    """Audit a method on a forget request with K unlearned models against K oracles (evidence tiers 0-2); classifiers,
    language models and image generators."""
    _use_threads(threads)
    _use_device(device)
    from .audit import audit as run_audit
    from .audit import check_audit
    from .audit.config import load_audit_config
    from .audit.report import text_summary, write_audit_reports
    from .experiment import prepare

    cfg, settings = load_audit_config(config, overrides or [], models=models, mode=mode, top=top)
    k = settings.n_models
    prepared = prepare(cfg)
    from .audit.tasks import task_of

    # language and generation: tier 0's extras; a classifier's scoring (evidence: iam) is what its audit always does
    scoring = {**prepared.scoring, **cfg.scoring} or None if task_of(prepared.train) else None
    request = dict(forget=prepared.forget, retain=prepared.retain, method=cfg.method, method_args=cfg.args,
                   recipe=cfg.train.to_dict(), n_models=k, seed=settings.seed, swap=settings.swap,
                   mode=settings.mode, top=settings.top, scoring=scoring)
    check_audit(prepared.template, prepared.train, prepared.test, **request)   # bad input: nothing recorded
    _writable_dir(out, "--out")
    _check_store(store)
    typer.echo(f"expunge audit {cfg.name}: method {cfg.method} {cfg.args or ''}; {k} originals, {2 * k} oracles "
               f"and {k} unlearned models", err=True)
    vulnerable = {"mode": settings.mode, "top": settings.top} if settings.mode == "vulnerable" else {}
    params = {**cfg.to_dict(), "audit": {"n_models": k, "seed": settings.seed, "swap": settings.swap, **vulnerable},
              "out": str(out.resolve())}
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
        from .gen.report import run_grid

        sections, dest = run_sections(value), out or Path(f"expunge-report-{value.run_id}")
        paths = write_reports(dest, f"expunge run {value.name}", sections, {"run": value.run_id, **value.params},
                              **run_grid(value, dest))     # an image generator's run: its sample grid
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


@app.command("forget")
def forget_cmd(
        model: Path = typer.Argument(..., help="The deployed model: a .safetensors file with its .json sidecar (a "
                                               "built-in architecture, or your class with --arch), or a language-"
                                               "model directory."),
        data: Path = typer.Option(..., "--data", help="The model's training set: .npz, .npy (+ --labels), .csv, "
                                                      "IDX (+ --labels), .jsonl (language models) or a folder of "
                                                      "images by class. Checked against the sidecar's fingerprint."),
        request: Optional[str] = typer.Option(None, "--request", help="Rows to forget: ids:FILE (one id, or row "
                                                                      "index, per line), group:VALUE, class:K or "
                                                                      "where:PREDICATE (over CSV columns: == != < <= "
                                                                      "> >= in, and/or/not)."),
        batch: Optional[Path] = typer.Option(None, "--batch", help="Instead of --request: a file of requests, one "
                                                                   "per line, served one after another into "
                                                                   "--out/01, --out/02, ... (each certified and "
                                                                   "chained) with --out/batch.json."),
        method: str = typer.Option(..., "--method", help="A registered method (expunge methods) or auto."),
        arg: Optional[List[str]] = typer.Option(None, "--arg", help="A method argument k=v (repeatable; values "
                                                                    "read as YAML: 3, 0.01, [64, 64], true). With "
                                                                    "--method auto: the tuning budget."),
        out: Path = typer.Option(..., "--out", help="New or empty directory for model.safetensors, report.md/.json "
                                                    "and certificate.json/.md."),
        arch: Optional[str] = typer.Option(None, "--arch", help="Your model class as module:Class, imported from "
                                                                "PYTHONPATH or, searched last, the current "
                                                                "directory, or as path/to/file.py:Class."),
        arch_args: Optional[str] = typer.Option(None, "--arch-args", help="JSON object of the class's constructor "
                                                                          "arguments (default: the sidecar's "
                                                                          "extra.arch.kwargs)."),
        recipe: Optional[Path] = typer.Option(None, "--recipe", help="YAML/JSON recipe that trained the model "
                                                                     "(default: the sidecar's)."),
        evidence: str = typer.Option("none", "--evidence", help="none (no oracle), oracle (retrain one: gaps, "
                                                                "Avg. Gap) or tier1 (K oracles, LiRA; needs "
                                                                "--test with at least 100 rows)."),
        oracles: Optional[int] = typer.Option(None, "--oracles", help="K oracles for --evidence tier1 (default 16,"
                                                                      " what tier 1 needs)."),
        test: Optional[Path] = typer.Option(None, "--test", help="Held-out data in the format of --data (test "
                                                                 "scores; the attack's non-members)."),
        test_labels: Optional[Path] = typer.Option(None, "--test-labels", help="Labels of .npy / IDX --test."),
        target: Optional[str] = typer.Option(None, "--target", help="CSV target column (default: label, target, "
                                                                    "y or class)."),
        group: Optional[str] = typer.Option(None, "--group", help="CSV column (or .npz array, JSONL key) of "
                                                                  "groups, e.g. user ids, for group:VALUE."),
        id_column: Optional[str] = typer.Option(None, "--id-column", help="CSV column of row ids for ids:FILE "
                                                                          "(not a feature)."),
        labels: Optional[Path] = typer.Option(None, "--labels", help="Labels file of .npy or IDX --data."),
        data_args: Optional[str] = typer.Option(None, "--data-args", help="JSON object of loader settings: x_key, "
                                                                          "y_key, task, size, grayscale, "
                                                                          "delimiter, max_length."),
        skip_data_check: bool = typer.Option(False, "--skip-data-check", help="Serve even when --data's "
                                                                              "fingerprint differs from the "
                                                                              "sidecar's."),
        seed: int = typer.Option(0, "--seed", help="Seed of the method and the oracles."),
        ledger: Optional[Path] = typer.Option(None, "--ledger", help="SQLite ledger to append the certificate to, "
                                                                     "in an existing directory (default: "
                                                                     "$EXPUNGE_LEDGER, else ~/.expunge/ledger.db, as "
                                                                     "expunge ledger; its directory is made)."),
        no_ledger: bool = typer.Option(False, "--no-ledger", help="Append to no ledger."),
        key: Optional[Path] = typer.Option(None, "--key", help="Ed25519 private key (PEM) signing the ledger "
                                                               "entry."),
        threads: Optional[int] = ThreadsOption,
        device: str = DeviceOption) -> None:
    """Serve a deletion request on a trained model: the unlearned model, an evidence report in plain words and a
    certificate, appended to a hash-chained ledger. Everything is checked before any work; nothing is written on
    failure."""
    from .deletion.forget import DataOptions, default_ledger, serve

    def as_json(text: Optional[str], flag: str) -> Optional[dict]:
        if text is None:
            return None
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{flag} is not valid JSON ({e.msg} at character {e.pos + 1})") from None
        if not isinstance(value, dict):
            raise ValueError(f"{flag} must be a JSON object; got {text[:60]!r}")
        return value

    if no_ledger and (ledger is not None or key is not None):
        raise ValueError("--no-ledger cannot be combined with --ledger or --key")
    if (request is None) == (batch is None):
        raise ValueError("give exactly one of --request REQUEST and --batch FILE")
    _use_threads(threads)
    _use_device(device)
    settings = as_json(data_args, "--data-args") or {}
    options = DataOptions(target=target, group=group, id_column=id_column, labels=labels, extra=settings)
    test_options = DataOptions(target=target, group=group, id_column=id_column, labels=test_labels, extra=settings)
    settings = dict(method=method, args=_method_arguments(arg or []), seed=seed, evidence=evidence, out_dir=out,
                    recipe=recipe, arch=arch, arch_args=as_json(arch_args, "--arch-args"), test=test,
                    oracles=oracles, ledger=None if no_ledger else (ledger or default_ledger()), key=key,
                    check_data=not skip_data_check, data_options=options, test_options=test_options,
                    on_message=lambda m: typer.echo(f"  {m}", err=True))
    if batch is not None:
        from .deletion.forget import serve_batch
        from .deletion.stream import read_batch

        done = serve_batch(model, data, read_batch(batch), **settings)
        for k, step in enumerate(done.steps, 1):
            _echo(f"{k:2d}. {step.headline}")
        _echo(f"Wrote {len(done.steps)} steps under {out} and {done.summary_path}.")
        return
    result = serve(model, data, request, **settings)
    _echo(result.headline)
    _echo(f"Wrote {result.model_path}, {result.report_path}, {result.certificate_json} (request {result.request_id}"
          + (f", follows {result.previous_request}" if result.previous_request else "") + ").")
    if result.entry is not None:
        _echo(f"Ledger {ledger or default_ledger()}: entry {result.entry.seq} ({result.entry.entry_hash[:16]}...).")


def _method_arguments(items: List[str]) -> dict:
    """``--arg k=v`` pairs as a dict, each value read as a YAML scalar or list."""
    from .config import load_yaml

    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip().isidentifier():
            raise ValueError(f"--arg {item!r}: expected name=value, e.g. --arg epochs=5")
        if name.strip() in out:
            raise ValueError(f"--arg {name.strip()} is given twice")
        out[name.strip()] = load_yaml(value, where=f"--arg {name.strip()}") if value.strip() else ""
    return out


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
        if not info.forgets:
            _echo(f"{'':18s} does not forget: the do-nothing baseline (audits must flag it; never a competitor)")
        _echo(f"{'':18s} paper: {info.paper or 'none (the exact baseline)'}")
        _echo(f"{'':18s} reference: {info.reference or 'none'}")
        _echo(f"{'':18s} needs: {needs}; tasks: {', '.join(info.tasks)}")
        _echo(f"{'':18s} defaults: {info.defaults}")
        _echo(f"{'':18s} grid: {info.grid or 'none (no hyperparameters to tune)'}")
        _echo(textwrap.fill(f"deviations: {deviations[name]}", width=118, initial_indent=" " * 19,
                            subsequent_indent=" " * 19))


@app.command("ui")
def ui_cmd(paths: Optional[List[Path]] = typer.Argument(None, help="Bench or audit output directories, run stores "
                                                                    "(*.db), or directories holding them (default: "
                                                                    "the current directory)."),
           host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; anything but a loopback "
                                                               "address needs --token."),
           port: int = typer.Option(8765, "--port", help="Port to listen on (1-65535)."),
           store: Optional[Path] = typer.Option(None, "--store", help="Run store that runs built from the page are "
                                                                      "recorded in (default: ui-runs.db in the first "
                                                                      "path)."),
           token: Optional[str] = typer.Option(None, "--token", envvar="EXPUNGE_UI_TOKEN",
                                               help="Require this token on every request (Authorization: Bearer T, "
                                                    "or open /?token=T); 16+ characters."),
           export: Optional[Path] = typer.Option(None, "--export", help="Write the views as a static HTML bundle "
                                                                        "to this directory and exit."),
           build: bool = typer.Option(True, "--build/--no-build", help="Allow starting runs from the page."),
           export_images: bool = typer.Option(False, "--export-images", help="With --export: include thumbnails of "
                                                                            "the forget examples (training images; "
                                                                            "off by default).")) -> None:
    """The comparator: a local web app to screen, contrast, attack and build unlearned models."""
    from .ui import check_options, export_bundle, require, serve

    require()
    if export_images and export is None:
        raise ValueError("--export-images applies to --export DIR only")
    options = check_options(paths or [Path(".")], host=host, port=port, store=store, token=token, export=export)
    if export is not None:
        written = export_bundle(options.paths, export, store=options.store if options.store.exists() else None,
                                images=export_images)
        _echo(f"Wrote {written['experiments']} experiments and {written['views']} views"
              f"{' with ' + str(written['images']) + ' forget-set images' if export_images else ''} to "
              f"{written['path']} (open {written['path'] / 'index.html'}).")
        if written["problems"]:
            _echo(f"{len(written['problems'])} view(s) could not be computed and are left out; first: "
                  f"{written['problems'][0]}")
        return
    if build:
        _check_store(options.store)
    serve(options, build=build, echo=_echo)


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


LedgerOption = typer.Option(None, "--ledger", help="Ledger database (default: $EXPUNGE_LEDGER or "
                                                   "~/.expunge/ledger.db).")


def _existing_ledger(path: Optional[Path]):
    """The ledger at ``path`` (or the default), which must exist: reading commands create nothing."""
    from .deletion.ledger import Ledger, default_path as default_ledger

    p = Path(path).expanduser() if path is not None else default_ledger()
    if not p.is_file():
        raise ValueError(f"no ledger at {p} (--ledger or $EXPUNGE_LEDGER)")
    return Ledger(p)


@ledger_app.command("list")
def ledger_list(ledger: Optional[Path] = LedgerOption) -> None:
    """List the ledger's entries: number, time, request id, request, method, rows removed, exact, signed."""
    entries = _existing_ledger(ledger).entries()
    if not entries:
        _echo("The ledger holds no entries.")
        return
    _echo(f"{'#':>4s}  {'time (UTC)':20s}  {'request id':24s}  {'method':14s}  {'rows':>6s}  exact  signed  request")
    for e in entries:
        c = e.certificate
        _echo(f"{e.seq:>4d}  {str(c.get('time', '-')):20s}  {e.request_id:24s}  {str(c.get('method', '-')):14s}  "
              f"{str(c.get('removed_rows', '-')):>6s}  {'yes' if c.get('exact') else 'no':5s}  "
              f"{'yes' if e.signed else 'no':6s}  {' '.join(str(c.get('request', '')).split())}")


@ledger_app.command("show")
def ledger_show(entry: str = typer.Argument(..., help="Entry number, request id, or a unique prefix of one."),
                ledger: Optional[Path] = LedgerOption,
                as_json: bool = typer.Option(False, "--json", help="Print the certificate as JSON.")) -> None:
    """Show one entry: its certificate, its hash, the previous hash and its signature."""
    from .deletion.certificate import certificate_markdown

    e = _existing_ledger(ledger).get(entry)
    if as_json:
        _echo(json.dumps(e.certificate, indent=2, ensure_ascii=False))
        return
    _echo(certificate_markdown(e.certificate))
    _echo(f"Ledger entry {e.seq}: hash {e.entry_hash}, previous {e.previous_hash}, "
          + (f"signed with key {e.key_id}" if e.signed else "not signed") + ".")


@ledger_app.command("verify")
def ledger_verify(ledger: Optional[Path] = LedgerOption,
                  models: Optional[Path] = typer.Option(None, "--models", help="Directory holding every entry's output "
                                                        "model (each beside its certificate.json, or directly in it, "
                                                        "matched by content) to check against its certificate."),
                  key: Optional[Path] = typer.Option(None, "--key", help="PEM Ed25519 public key the entries were "
                                                     "signed with."),
                  head: Optional[str] = typer.Option(None, "--head", help="A head hash kept elsewhere (printed by "
                                                     "an earlier verify): the ledger must still hold that entry."),
                  expect_entries: Optional[int] = typer.Option(None, "--expect-entries", help="The ledger must hold at "
                                                               "least this many entries."),
                  show_all: bool = typer.Option(False, "--all", help="Print every problem, not only the first.")) -> None:
    """Recompute the hash chain, the signatures and (with --models) the model hashes: 'ledger ok' and exit 0, or
    the first problem in one line and exit 1."""
    book = _existing_ledger(ledger)
    problems = book.verify(models=models, public_key=key, head=head, expect_entries=expect_entries)
    if problems:
        more = f" ({len(problems)} problems; --all lists them)" if len(problems) > 1 and not show_all else ""
        for line in problems if show_all else problems[:1]:
            _echo(f"ledger verification failed: {line}{more}")
        raise typer.Exit(1)
    n = len(book.entries())
    checked = f"; {len(book.model_paths(models))} output models checked" if models is not None else ""
    signed = "; signatures verified" if key is not None and n else ""
    kept = "; the kept head is in it" if head is not None else ""
    _echo(f"ledger ok: {n} entries{signed}{kept}{checked} (head {book.head()})")


@ledger_app.command("keygen")
def ledger_keygen(private: Path = typer.Argument(..., help="New file for the PEM private key (kept private: 0600)."),
                  public: Path = typer.Argument(..., help="New file for the PEM public key.")) -> None:
    """Make an Ed25519 key pair for signing ledger entries (expunge forget --key PRIVATE; verify --key PUBLIC)."""
    from .deletion.ledger import generate_keypair

    kid = generate_keypair(private, public)
    _echo(f"Wrote private key {private} and public key {public} (key id {kid}).")


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
