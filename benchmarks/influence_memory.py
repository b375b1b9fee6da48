"""Influence unlearning on a million-parameter model over all of a 5,400-example retain set: peak memory and time.

Run: ``python benchmarks/influence_memory.py`` (a few minutes on two CPU threads; Linux, since the peak resident
size is read from ``/proc/self/status`` after resetting it through ``/proc/self/clear_refs``). Writes
``benchmarks/results/influence_memory.json``.

Setup: 10 overlapping Gaussian classes in 512 dimensions (6,000 rows), the built-in MLP with hidden [1024, 512] (1.05M
parameters) trained for 2 epochs, with 30% of the labels random so the fit is not yet exact and the retain
gradients are not negligible; forget a random 10%. The per-sample gradient matrix G of the retain set would
take 4·m·P bytes (about 22 GB), so the method streams: conjugate gradients on F_λ s = v with Fisher-vector products
computed ``chunk_size`` examples at a time (``expunge.per_sample.fisher_vector_product``). Recorded for
damping 1 (the default) and 0.1: iterations to the default tolerance, final relative residual, wall and CPU
seconds, and the peak resident memory above what was resident before the solve. A check on a 200-example subset
(G of 0.8 GB, held in memory) compares the streamed step with the closed form.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import time
from pathlib import Path

import torch

import expunge
from expunge.data import ArrayDataset
from expunge.data.datasets import features, targets
from expunge.methods.influence import influence_direction, retain_sample, woodfisher_inverse_vp, woodfisher_solve
from expunge.per_sample import fisher_vector_product, num_params, per_sample_grads


def rss_kib(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def reset_peak() -> int:
    Path("/proc/self/clear_refs").write_text("5")
    return rss_kib("VmRSS")


def problem(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(10, 512, generator=g) / 4
    y = torch.arange(6000) % 10
    x = centres[y] + torch.randn(6000, 512, generator=g)
    noisy = torch.rand(6000, generator=g) < 0.3
    y = torch.where(noisy, torch.randint(0, 10, (6000,), generator=g), y)   # 30% random labels: not memorised yet
    data = ArrayDataset(x, y, task="classification")
    model = expunge.train(expunge.model("mlp", data, hidden=[1024, 512], seed=seed), data, seed=seed, epochs=2)
    forget, retain = expunge.split_forget(data, fraction=0.1, seed=seed)
    return model, forget, retain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "influence_memory.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, forget, retain = problem()
    x, y = features(retain), targets(retain)
    p, m = num_params(model), len(x)
    v = influence_direction(model, forget, retain)
    fisher_vector_product(model, x[:2], y[:2], torch.zeros(p))      # one-time set-up of forward-mode AD
    runs = []
    for damping in (1.0, 0.1):
        before = reset_peak()
        wall, cpu = time.perf_counter(), time.process_time()
        step, iterations, residual = woodfisher_solve(model, x, y, v, damping, task="classification")
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        runs.append({"damping": damping, "iterations": iterations, "relative_residual": residual,
                     "wall_seconds": round(wall, 2), "cpu_seconds": round(cpu, 2),
                     "peak_mib_above_start": round((rss_kib("VmHWM") - before) / 1024, 1),
                     "step_norm": float(step.norm())})
        print(json.dumps(runs[-1]))
    xs, ys = retain_sample(retain, 200, seed=0)
    closed = woodfisher_inverse_vp(per_sample_grads(model, xs, ys), v, 1.0).double()
    streamed = woodfisher_solve(model, xs, ys, v, 1.0, task="classification")[0].double()
    result = {
        "parameters": p, "retain_examples": m, "gradient_matrix_gib": round(4 * m * p / 2 ** 30, 1),
        "chunk_size": 256, "runs": runs,
        "subset_check": {"examples": 200, "relative_difference": float((streamed - closed).norm() / closed.norm())},
        "environment": {"torch": torch.__version__, "python": platform.python_version(), "threads": args.threads,
                        "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count()},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("parameters", "retain_examples", "gradient_matrix_gib",
                                             "subset_check")}))


if __name__ == "__main__":
    main()
