"""Small experiments for the comparator's tests, built once per test process: a bench directory, a run store with
one run (its model file beside it) and an audit of the same request, each written by the CLI command that writes
it in real use (``expunge bench``, ``expunge run``, ``expunge audit``).

``small_workspace()`` returns the paths (cached per process, in a temporary directory removed at exit);
``build_small(root)`` builds them under ``root``. About 10 s on one core.
"""
from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

BENCH_YAML = """name: ui-small
seeds: 1
data: {name: digits, test_fraction: 0.2}
model: {name: mlp, args: {hidden: [32]}}
train: {epochs: 3, lr: 0.05, batch_size: 64}
scenarios:
  - {name: random 10%, fraction: 0.1}
  - {name: class 3, classes: [3]}
methods:
  finetune: {epochs: 1, lr: 0.05}
  gradient_ascent: {epochs: 1, lr: 0.01}
"""
RUN_YAML = """name: ui-run
seed: 1
data: {name: digits, test_fraction: 0.2}
model: {name: mlp, args: {hidden: [32]}}
train: {epochs: 3, lr: 0.05, batch_size: 64}
forget: {fraction: 0.1}
method: finetune
args: {epochs: 1, lr: 0.05}
"""
AUDIT_MODELS = 2
BENCH_METHODS = ("finetune", "gradient_ascent")
BENCH_SCENARIOS = ("random 10%", "class 3")


@dataclass(frozen=True)
class Small:
    """Where the small experiments are: ``root`` holds the bench directory ``bench``, the run store ``store`` (the
    bench's invocation, the run and the audit are recorded there), the run's model directory ``run_out`` and the
    audit directory ``audit``."""

    root: Path
    bench: Path
    store: Path
    run_out: Path
    audit: Path
    run_config: Path
    bench_config: Path


def build_small(root: Path) -> Small:
    """Write the small bench, run and audit under ``root`` (a fresh directory) with the CLI; AssertionError if a
    command fails."""
    from expunge.cli import main

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    small = Small(root, root / "bench", root / "runs.db", root / "run", root / "audit", root / "run.yaml",
                  root / "bench.yaml")
    small.bench_config.write_text(BENCH_YAML)
    small.run_config.write_text(RUN_YAML)
    audit_config = root / "audit.yaml"
    audit_config.write_text(RUN_YAML + f"audit: {{n_models: {AUDIT_MODELS}, seed: 0}}\n")
    store = ["--store", str(small.store)]
    for argv in (["bench", str(small.bench_config), "--out", str(small.bench), "--workers", "1", *store],
                 ["run", str(small.run_config), "--out", str(small.run_out), *store],
                 ["audit", str(audit_config), "--out", str(small.audit), *store]):
        code = main(argv)
        assert code == 0, f"expunge {' '.join(argv)} exited with {code}"
    return small


_lock = threading.Lock()
_built: dict[str, Small] = {}


def small_workspace() -> Small:
    """The small experiments, built on first use in this process and reused after."""
    with _lock:
        if "small" not in _built:
            root = Path(tempfile.mkdtemp(prefix="expunge-ui-small-"))
            atexit.register(shutil.rmtree, root, True)
            _built["small"] = build_small(root / "experiments")
        return _built["small"]
