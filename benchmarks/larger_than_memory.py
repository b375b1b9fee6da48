"""Training on a dataset three times larger than the memory the process may use.

Writes CIFAR-shaped features (3x32x32 float32, 12 KiB an example) to ``.npy`` files: ``--budget-mib`` x 3 of
training data plus a test set, labelled by a fixed random linear teacher (so accuracy means something). A child
process imports expunge, warms up (a tiny train and unlearn, so torch's lazily loaded parts are in), measures its
address-space size, and limits itself (``RLIMIT_AS``, which counts every mapping, torch's own included) to that
size plus the budget. Under the limit it streams the data (``load_npy(..., in_memory=False, num_workers=2)``),
trains an MLP, unlearns 10% with finetune, and scores test accuracy; then it tries the in-memory path under the
same limit, which must fail. Peak RSS is the kernel's high-water mark (VmHWM) of the training process and of its
DataLoader workers; the OS page cache, which holds recently read file pages, is not the process's memory.

    python benchmarks/larger_than_memory.py [--budget-mib 256] [--epochs 2]

Writes ``benchmarks/results/larger_than_memory.json``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).parent / "results" / "larger_than_memory.json"
SHAPE = (3, 32, 32)
CLASSES = 10

CHILD = textwrap.dedent("""
    import json, resource, sys, time
    import torch, expunge
    from expunge.data import load_npy, split_forget
    from expunge.metrics import predict

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024

    folder, budget, epochs, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    warm = expunge.as_dataset(torch.randn(64, 3, 32, 32), torch.arange(64) % 2)
    f, r = split_forget(warm, fraction=0.25, seed=0)
    m = expunge.train(expunge.model("mlp", warm, seed=0, hidden=[64]), warm, epochs=1)
    expunge.unlearn(m, forget=f, retain=r, method="finetune", epochs=1)
    predict(m, warm)
    baseline = status("VmSize")
    limit = baseline + budget
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    out = {"baseline_address_space_bytes": baseline, "limit_bytes": limit,
           "baseline_rss_bytes": status("VmRSS")}
    start = time.perf_counter()
    train = load_npy(f"{folder}/x.npy", f"{folder}/y.npy", in_memory=False, num_workers=workers)
    test = load_npy(f"{folder}/test_x.npy", f"{folder}/test_y.npy", in_memory=False)
    out["load_and_check_seconds"] = round(time.perf_counter() - start, 2)
    start = time.perf_counter()
    model = expunge.train(expunge.model("mlp", train, seed=0, hidden=[64]), train, seed=0, epochs=epochs,
                          batch_size=256, lr=0.01)
    out["train_seconds"] = round(time.perf_counter() - start, 2)
    accuracy = lambda m: float((predict(m, test).argmax(1) == test.y).float().mean())
    out["test_accuracy"] = round(accuracy(model), 4)
    forget, retain = split_forget(train, fraction=0.1, seed=0)
    start = time.perf_counter()
    unlearned = expunge.unlearn(model, forget=forget, retain=retain, method="finetune", seed=0, epochs=1,
                                batch_size=256)
    out["finetune_seconds"] = round(time.perf_counter() - start, 2)
    out["test_accuracy_after_finetune"] = round(accuracy(unlearned), 4)
    out["peak_rss_bytes"] = status("VmHWM")
    out["peak_address_space_bytes"] = status("VmPeak")
    out["peak_rss_workers_bytes"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    try:
        load_npy(f"{folder}/x.npy", f"{folder}/y.npy", in_memory=True)
        out["in_memory_under_the_same_limit"] = "loaded"
    except (MemoryError, RuntimeError) as e:
        out["in_memory_under_the_same_limit"] = f"refused by the limit: {type(e).__name__}"
    print(json.dumps(out))
""")


def write_data(folder: Path, n: int, n_test: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    teacher = rng.standard_normal((int(np.prod(SHAPE)), CLASSES)).astype(np.float32)
    for prefix, rows in (("", n), ("test_", n_test)):
        x = np.lib.format.open_memmap(folder / f"{prefix}x.npy", mode="w+", dtype=np.float32, shape=(rows, *SHAPE))
        y = np.empty(rows, dtype=np.int64)
        for start in range(0, rows, 4096):
            chunk = rng.standard_normal((min(4096, rows - start), *SHAPE), dtype=np.float32)
            x[start:start + len(chunk)] = chunk
            y[start:start + len(chunk)] = (chunk.reshape(len(chunk), -1) @ teacher).argmax(1)
        x.flush()
        del x
        np.save(folder / f"{prefix}y.npy", y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-mib", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    budget = args.budget_mib << 20
    row = 4 * int(np.prod(SHAPE))
    n, n_test = 3 * budget // row, 8192
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        write_data(Path(tmp), n, n_test)
        written = time.perf_counter() - start
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", CHILD, tmp, str(budget), str(args.epochs), str(args.workers)],
                              capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
        wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"the limited run failed: {done.stderr[-3000:]}")
    child = json.loads(done.stdout.strip().splitlines()[-1])
    mib = lambda b: round(b / 2**20, 1)
    result = {
        "command": f"python benchmarks/larger_than_memory.py --budget-mib {args.budget_mib} --epochs {args.epochs} "
                   f"--workers {args.workers}",
        "examples": n, "example_shape": list(SHAPE), "data_mib": mib(n * row), "budget_mib": args.budget_mib,
        "data_over_budget": round(n * row / budget, 2), "num_workers": args.workers, "epochs": args.epochs,
        "baseline_address_space_mib": mib(child["baseline_address_space_bytes"]),
        "limit_address_space_mib": mib(child["limit_bytes"]),
        "peak_address_space_mib": mib(child["peak_address_space_bytes"]),
        "baseline_rss_mib": mib(child["baseline_rss_bytes"]), "peak_rss_mib": mib(child["peak_rss_bytes"]),
        "peak_rss_workers_mib": mib(child["peak_rss_workers_bytes"]),
        "write_data_seconds": round(written, 1), "limited_process_wall_seconds": round(wall, 1),
        **{k: child[k] for k in ("load_and_check_seconds", "train_seconds", "finetune_seconds", "test_accuracy",
                                 "test_accuracy_after_finetune", "in_memory_under_the_same_limit")},
        "chance_accuracy": round(1 / CLASSES, 2),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
