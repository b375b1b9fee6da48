"""The ``expunge`` command line. Thin: parses, calls the library, prints.

Bad input prints one line (``error: ...``) and exits with code 2; a diverging run exits with code 1.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import List, Optional

import typer

try:  # typer >= 0.26 vendors click
    from typer.exceptions import TyperException as _UsageError
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException as _UsageError

from .store import RunStore, default_path

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Make a trained PyTorch model forget chosen training data, and prove it against the oracle.")
runs_app = typer.Typer(add_completion=False, invoke_without_command=True, pretty_exceptions_enable=False,
                       help="List recorded runs (or show one with 'runs show ID').")
app.add_typer(runs_app, name="runs")

StoreOption = typer.Option(None, "--store", help=f"Run store database (default: $EXPUNGE_STORE or {default_path()}).")


def _echo(msg: str = "") -> None:
    typer.echo(msg)


@app.command()
def demo(out: Path = typer.Option(Path("expunge-demo"), "--out", help="Directory for report.md, report.html, results.json."),
         seeds: int = typer.Option(1, "--seeds", help="Number of seeds (mean ± std over seeds)."),
         methods: Optional[str] = typer.Option(None, "--methods", help="Comma-separated method names, or 'all'."),
         epochs: Optional[int] = typer.Option(None, "--epochs", help="Override the original's training epochs."),
         store: Optional[Path] = StoreOption) -> None:
    """Digits: original -> oracle -> every method, random-10% and class-wise forgetting; prints the table."""
    from .demo import run_demo
    from .report import aggregate, text_table

    _echo("expunge demo: scikit-learn digits, MLP; original -> oracle (retrain) -> methods")
    with RunStore(store) as db, db.run("demo", "demo", params={"out": str(out), "seeds": seeds,
                                                               "methods": methods or "default"}) as run_id:
        progress = lambda title, seed, r: _echo(f"  [{title}, seed {seed}] {r.method}: "
                                                + (r.error or f"Avg.Gap {r.scores.get('avg_gap', float('nan')):.2f}"
                                                   f" in {r.scores.get('seconds', 0):.2f}s"))
        result = run_demo(out, seeds=seeds, methods=methods, epochs=epochs, on_result=progress)
        for title, comps in result["sections"].items():
            _echo(f"\n{title}\n" + text_table(aggregate(comps)))
        for kind, path in result["paths"].items():
            db.log_artifact(run_id, path.resolve(), kind)
        db.log_metrics(run_id, {"wall_seconds": result["wall_seconds"]})
    _echo(f"\nEvidence tier 0: accuracies and a population MIA cannot show indistinguishability from retraining.")
    _echo(f"Wrote {', '.join(str(p) for p in result['paths'].values())} in {result['wall_seconds']:.0f}s "
          f"(run {run_id}).")


@app.command()
def run(config: Path = typer.Argument(..., help="Experiment YAML file."),
        overrides: Optional[List[str]] = typer.Argument(None, help="key=value overrides, e.g. args.lr=0.01"),
        out: Optional[Path] = typer.Option(None, "--out", help="Directory for the unlearned model."),
        store: Optional[Path] = StoreOption) -> None:
    """Run one experiment from a YAML config: data, model, forget request, method + args, seed."""
    from .config import load_config
    from .experiment import run_experiment
    from .report import aggregate, text_table

    cfg = load_config(config, overrides or [])
    _echo(f"expunge run {cfg.name}: method {cfg.method} {cfg.args or ''}")
    with RunStore(store) as db:
        run_id, comp = run_experiment(cfg, store=db, out=out)
    _echo(text_table(aggregate([comp])))
    _echo(f"Recorded as run {run_id}.")


@app.command("methods")
def methods_cmd(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """List the registered methods with their paper, needs and defaults."""
    from .api import methods

    infos = methods()
    if as_json:
        _echo(json.dumps({n: i.__dict__ for n, i in infos.items()}, indent=2, default=str))
        return
    for name, info in infos.items():
        needs = ", ".join(k for k, v in info.needs.items() if v) or "forget features only"
        _echo(f"{name:18s} {info.summary}")
        _echo(f"{'':18s} paper: {info.paper}")
        _echo(f"{'':18s} needs: {needs}; tasks: {', '.join(info.tasks)}")
        _echo(f"{'':18s} defaults: {info.defaults}")


@runs_app.callback()
def runs_list(ctx: typer.Context, limit: int = typer.Option(20, "--limit"), store: Optional[Path] = StoreOption) -> None:
    """List recent runs."""
    if ctx.invoked_subcommand is not None:
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


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app; turn bad input into one line and exit code 2."""
    from .training import DivergenceError

    try:
        app(args=argv, standalone_mode=False)
    except typer.Exit as e:
        return int(getattr(e, "exit_code", 0) or 0)
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 130
    except _UsageError as e:
        message = e.format_message() if hasattr(e, "format_message") else str(e)
        typer.echo(f"error: {message}", err=True)
        return 2
    except DivergenceError as e:
        typer.echo(f"error: {e}", err=True)
        return 1
    except (ValueError, TypeError) as e:
        typer.echo(f"error: {e}", err=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
