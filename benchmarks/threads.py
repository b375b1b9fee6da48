"""The digits demo with torch's default thread count (one per core) and with one thread, side by side.

Runs ``expunge demo`` twice in fresh processes, one after the other on the same machine: ``--threads N`` with N
torch's default (``torch.get_num_threads()`` in a fresh process, one per core), then ``--threads 1`` (expunge's
default). Writes ``benchmarks/results/threads.json`` with both wall times, their ratio, the machine's load
averages before each run, and which of the two reports' scores differ (torch's default and one thread are
different thread counts, whose sums may round differently; see ``src/expunge/threads.py``).

    python benchmarks/threads.py [--seeds 1]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OUT = Path(__file__).parent / "results" / "threads.json"


def run_demo(threads: int, seeds: int, folder: Path) -> dict:
    out = folder / f"demo-{threads}"
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "EXPUNGE_THREADS")}
    load = os.getloadavg()
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "expunge.cli", "demo", "--out", str(out), "--seeds", str(seeds),
                           "--threads", str(threads), "--store", str(folder / "runs.db")],
                          capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"demo with --threads {threads} failed: {done.stderr[-2000:]}")
    results = json.loads((out / "results.json").read_text())
    return {"threads": threads, "wall_seconds": round(wall, 2), "load_average_before": [round(x, 2) for x in load],
            "results": results}


def scores(results: dict) -> dict:
    """The score numbers of a demo's results.json, without timing entries."""
    timing = ("seconds", "rte", "wall")
    if isinstance(results, dict):
        return {k: scores(v) for k, v in results.items() if not any(t in k for t in timing)}
    if isinstance(results, list):
        return [scores(v) for v in results]
    return results


def differences(a, b, path: str = "") -> list:
    """``[path, a, b]`` for each number that differs between two score trees."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in differences(a.get(k), b.get(k), f"{path}/{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [[path, a, b]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1)
    args = parser.parse_args()
    default = int(subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                                 capture_output=True, text=True, check=True).stdout)
    with tempfile.TemporaryDirectory() as tmp:
        many = run_demo(default, args.seeds, Path(tmp))
        one = run_demo(1, args.seeds, Path(tmp))
    diffs = differences(scores(many.pop("results")), scores(one.pop("results")))
    result = {"command": f"python benchmarks/threads.py --seeds {args.seeds}", "cpu_count": os.cpu_count(),
              "torch_default_threads": default, "default_threads": many, "one_thread": one,
              "ratio_default_over_one": round(many["wall_seconds"] / one["wall_seconds"], 2),
              "scores_equal": not diffs, "score_differences": len(diffs), "first_differences": diffs[:5]}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
