"""SISA on digits: what a deletion costs against a full retrain, and what sharding costs in accuracy.

Run: ``python benchmarks/sisa.py`` (about a minute on one CPU thread). Writes ``benchmarks/results/sisa.json``.

- Deletion cost (S=5 shards, R=4 slices): single training examples, chosen at random, are deleted one at a time
  from the trained ensemble; each deletion is timed, and so is retraining one unsliced model from scratch on the
  remaining data with the same recipe, alternating the two so they see the same machine state. Speed-up = mean
  full-retrain time ÷ mean deletion time, next to the paper's cost model (``SISAEnsemble.predicted_speedup``:
  example-epochs of a full retrain ÷ the expected example-epochs of one deletion, ≈ 3SR/(2R+1)).
- Accuracy: test accuracy of the single model and of SISA ensembles with S in {1, 5, 10, 20} (R=4) under the
  same per-model budget of 30 epochs: each shard sees 1/S of the data, so accuracy falls as S grows.
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from pathlib import Path

import torch

import expunge
from expunge.data import digits
from expunge.exact.sisa import SISA
from expunge.metrics import predict

RECIPE = {"epochs": 30, "lr": 0.05, "batch_size": 64, "momentum": 0.9, "weight_decay": 5e-4, "schedule": "cosine"}
HIDDEN = [128, 64]


def accuracy(model, test) -> float:
    return float((predict(model, test).argmax(-1) == test.y).float().mean())


def deletion_cost(train, template, *, shards: int, slices: int, deletions: int, seed: int) -> dict:
    ens = SISA(shards=shards, slices=slices, seed=seed, **RECIPE).fit(template, train)
    g = torch.Generator().manual_seed(seed)
    picks = torch.randperm(len(train), generator=g)[:deletions].tolist()
    delete_s, retrain_s, example_epochs = [], [], []
    for p in picks:
        work = copy.deepcopy(ens)                  # an independent copy; the deletion below is what is timed
        start = time.perf_counter()
        report = work.delete_([p])
        delete_s.append(time.perf_counter() - start)
        example_epochs.append(report.example_epochs)
        remaining = torch.utils.data.Subset(train, [i for i in range(len(train)) if i != p])
        start = time.perf_counter()
        expunge.train(template, remaining, seed=seed, **RECIPE)
        retrain_s.append(time.perf_counter() - start)
    full_example_epochs = RECIPE["epochs"] * (len(train) - 1)
    return {
        "shards": shards, "slices": slices, "deletions": deletions,
        "slice_epochs": ens.config.slice_epochs(),
        "mean_deletion_seconds": statistics.mean(delete_s),
        "mean_full_retrain_seconds": statistics.mean(retrain_s),
        "speedup_measured": statistics.mean(retrain_s) / statistics.mean(delete_s),
        "speedup_predicted": ens.predicted_speedup(),
        "speedup_in_example_epochs": full_example_epochs / statistics.mean(example_epochs),
        "ensemble_fit_seconds": expunge.provenance(ens).seconds,
    }


def accuracy_table(train, test, template, *, shard_counts, slices: int, seed: int) -> dict:
    single = expunge.train(template, train, seed=seed, **RECIPE)
    rows = []
    for s in shard_counts:
        start = time.perf_counter()
        ens = SISA(shards=s, slices=slices, seed=seed, **RECIPE).fit(template, train)
        rows.append({"shards": s, "slices": slices, "test_accuracy": accuracy(ens, test),
                     "fit_seconds": time.perf_counter() - start})
    return {"single_model_test_accuracy": accuracy(single, test), "sisa": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deletions", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "sisa.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    train, test = digits(seed=args.seed)
    template = expunge.model("mlp", train, hidden=HIDDEN, seed=args.seed)
    start = time.perf_counter()
    cost = deletion_cost(train, template, shards=5, slices=4, deletions=args.deletions, seed=args.seed)
    acc = accuracy_table(train, test, template, shard_counts=[1, 5, 10, 20], slices=4, seed=args.seed)
    result = {
        "benchmark": "sisa", "data": f"digits ({len(train)} train / {len(test)} test)",
        "model": f"MLP hidden {HIDDEN}", "recipe": RECIPE, "seed": args.seed,
        "deletion": cost, "accuracy": acc, "wall_seconds": time.perf_counter() - start,
        "environment": {"torch": torch.__version__, "threads": torch.get_num_threads(),
                        "python": platform.python_version(), "machine": platform.machine()},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"speedup_measured": round(cost["speedup_measured"], 2),
                      "speedup_predicted": round(cost["speedup_predicted"], 2),
                      "single": round(acc["single_model_test_accuracy"], 3),
                      "sisa": {r["shards"]: round(r["test_accuracy"], 3) for r in acc["sisa"]}}))


if __name__ == "__main__":
    main()
