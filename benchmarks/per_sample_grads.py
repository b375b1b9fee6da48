"""Per-sample gradients on digits: the vectorised torch.func path against a batch-size-1 loop.

Run: ``python benchmarks/per_sample_grads.py`` (about a minute on one CPU thread). Writes
``benchmarks/results/per_sample_grads.json``.

Models: the built-in MLP (hidden [128, 64]) and the built-in CNN (width 16, with BatchNorm), each trained for a few
epochs on the 1437 digits training examples so the gradients are those of a fitted model. Two uses are timed:

- ``matrix``: the whole [N, P] matrix (one row per example, one column per parameter), as influence unlearning
  needs it: ``expunge.per_sample.per_sample_grads`` (``vmap(grad(...))`` over chunks, default chunk size) against
  ``per_sample_grads_loop`` (one forward and backward pass per example, each row written into a preallocated
  matrix). Both write a fresh N x P float32 matrix, whose first touch is part of both timings.
- ``streamed``: the sum over examples of squared per-example gradients (the empirical diagonal Fisher, as Fisher
  forgetting needs it), chunk by chunk with ``iter_per_sample_grads`` against a batch-size-1 loop that
  accumulates one example at a time; no N x P matrix is formed.

After one untimed call of each, the two are timed alternately (the order swapped every repeat so both see the
same machine state); speed-up = median loop time ÷ median vectorised time, in wall-clock seconds (CPU seconds are
recorded too). Agreement: the worst example's relative error ‖vectorised − loop‖ / ‖loop‖ (matrix) and the
relative error of the sums (streamed). The headline ``speedup`` and ``max_rel_diff`` are the MLP's matrix numbers.

The vectorised path is memory-bound: with glibc's default malloc settings, memory freed after each chunk is returned
to the operating system and faulted back in for the next one, which can cost it a third of its time. So
``per_sample_grads`` first asks glibc to keep freed memory (``expunge._memory.hold_freed_memory``, process-wide;
``hold_memory=False`` to opt out), as ensemble training does; the loop, which allocates little, runs under the same
settings. Whether they were in effect is recorded under ``environment.malloc_held``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import expunge
from expunge._memory import hold_freed_memory
from expunge.data import digits
from expunge.per_sample import (auto_chunk, eval_mode, iter_per_sample_grads, num_params, per_sample_grads,
                                per_sample_grads_loop, trainable)

MODELS = {"mlp": {"hidden": [128, 64]}, "cnn": {"width": 16}}
RECIPE = {"epochs": 3, "lr": 0.05, "batch_size": 64, "momentum": 0.9, "weight_decay": 5e-4, "schedule": "cosine"}


def timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def loop_sum_of_squares(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    params = list(trainable(model).values())
    total = torch.zeros(sum(p.numel() for p in params))
    with eval_mode(model):
        for i in range(len(x)):
            grads = torch.autograd.grad(F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]), params)
            total += torch.cat([g.reshape(-1) for g in grads]).pow(2)
    return total


def vectorised_sum_of_squares(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    total = torch.zeros(num_params(model))
    for _, grads in iter_per_sample_grads(model, x, y):
        total += torch.cat([g.square_().sum(0).reshape(-1) for g in grads.values()])
    return total


def race(vectorised, loop, repeats: int) -> dict:
    """Time the two alternately; return medians and the speed-up."""
    wall: dict[str, list[float]] = {"vectorised": [], "loop": []}
    cpu: dict[str, list[float]] = {"vectorised": [], "loop": []}
    for r in range(repeats):
        order = [("vectorised", vectorised), ("loop", loop)]
        for name, fn in (order if r % 2 == 0 else order[::-1]):
            w, c = timed(fn)
            wall[name].append(w)
            cpu[name].append(c)
    med = {k: statistics.median(v) for k, v in wall.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    return {"median_seconds_vectorised": med["vectorised"], "median_seconds_loop": med["loop"],
            "speedup": med["loop"] / med["vectorised"],
            "speedup_cpu_seconds": med_cpu["loop"] / med_cpu["vectorised"],
            "seconds_vectorised": wall["vectorised"], "seconds_loop": wall["loop"]}


def compare(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int) -> dict:
    fast, slow = per_sample_grads(model, x, y), per_sample_grads_loop(model, x, y)    # untimed warm-up
    matrix = race(lambda: per_sample_grads(model, x, y), lambda: per_sample_grads_loop(model, x, y), repeats)
    matrix["max_rel_diff"] = float(((fast - slow).norm(dim=1) / slow.norm(dim=1).clamp_min(1e-30)).max())
    sq_fast, sq_slow = vectorised_sum_of_squares(model, x, y), loop_sum_of_squares(model, x, y)
    streamed = race(lambda: vectorised_sum_of_squares(model, x, y), lambda: loop_sum_of_squares(model, x, y),
                    repeats)
    streamed["max_rel_diff"] = float((sq_fast - sq_slow).norm() / sq_slow.norm())
    return {"parameters": num_params(model), "n_samples": len(x), "repeats": repeats,
            "chunk_size": auto_chunk(model, len(x)), "matrix": matrix, "streamed": streamed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", default="mlp,cnn", help="comma-separated subset of: " + ", ".join(MODELS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "per_sample_grads.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train, _ = digits(seed=args.seed)
    start = time.perf_counter()
    rows = {}
    for name in args.models.split(","):
        model = expunge.train(expunge.model(name, train, seed=args.seed, **MODELS[name]), train, seed=args.seed,
                              **RECIPE)
        rows[name] = compare(model, train.x, train.y, args.repeats)
    headline = (rows.get("mlp") or next(iter(rows.values())))
    result = {
        "benchmark": "per_sample_grads", "data": f"digits ({len(train)} train examples, 1x8x8)",
        "speedup": headline["matrix"]["speedup"], "max_rel_diff": headline["matrix"]["max_rel_diff"],
        "n_samples": len(train), "parameters": headline["parameters"],
        "models": {k: {"architecture": k, "kwargs": MODELS[k], **v} for k, v in rows.items()},
        "recipe": RECIPE, "seed": args.seed, "wall_seconds": time.perf_counter() - start,
        "environment": {"torch": torch.__version__, "threads": torch.get_num_threads(),
                        "python": platform.python_version(), "machine": platform.machine(),
                        "cpus": os.cpu_count(),
                        "malloc_env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")},
                        "malloc_held": hold_freed_memory()},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    summary = {"threads": torch.get_num_threads(), "n_samples": len(train)}
    for k, v in rows.items():
        summary[k] = {"parameters": v["parameters"]}
        for use in ("matrix", "streamed"):
            r = v[use]
            summary[k][use] = {"loop_s": round(r["median_seconds_loop"], 3),
                               "vectorised_s": round(r["median_seconds_vectorised"], 3),
                               "speedup": round(r["speedup"], 1), "max_rel_diff": float(f"{r['max_rel_diff']:.1e}")}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
