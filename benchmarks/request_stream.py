"""Ten deletion requests one after another: how retain and test accuracy and the gap to the oracle evolve, per
method (MUSE's *sustainability*, Shi et al., ICLR 2025), on digits.

Run: ``OMP_NUM_THREADS=1 python benchmarks/request_stream.py`` (a few minutes on one CPU thread). Writes
``benchmarks/results/request_stream.json`` and the figure ``benchmarks/results/request_stream.svg``.

Setup, per seed: the digits MLP (hidden [128, 64]) trained with the digits demo's recipe (30 epochs of SGD, lr 0.05,
cosine); ``--requests`` requests (default 10), each a random ``--share`` (default 1%) of the training rows, disjoint,
drawn under the seed. Each method serves them one after another with :func:`expunge.stream`, each request from the
model the previous one left, with the rows never asked for as retain data. After request k the model is scored on
every row forgotten so far (the union of requests 1..k), on the rows kept and on the test set, against the oracle:
the original retrained (same recipe, the seed's oracle stream) without that union. The oracles are trained once per
seed and shared by the methods. References, scored the same way at every step: doing nothing (the original), and
the noise floor (a second oracle of another seed against the first).

Each method runs with the arguments the digits benchmark tuned for it on one random 10% forget set
(``expunge.presets``, scenario ``random``); they are used unchanged for every 1% request, which is what an owner
serving a stream would do. Reported per step: mean and standard deviation over the seeds of retain accuracy, test
accuracy, forget accuracy (on the union) and Avg. Gap to the union's oracle, and the method's seconds per request.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import expunge  # noqa: E402
from expunge.data import split_forget  # noqa: E402
from expunge.demo import RECIPE  # noqa: E402
from expunge.presets import method_args, setup_of  # noqa: E402
from expunge.sequential import union_oracles  # noqa: E402

METHODS = ["finetune", "neggrad_plus", "scrub", "salun", "random_label"]
HIDDEN = [128, 64]
KEYS = ("retain_acc", "test_acc", "forget_acc", "avg_gap")
NOTHING, FLOOR, ORACLE = "do nothing", "noise floor", "oracle"
FLOOR_SEED_OFFSET = 100      # the noise-floor oracles retrain under seed + this


def requests_for(n_rows: int, count: int, share: float, seed: int) -> list[np.ndarray]:
    """``count`` disjoint random requests of ``share`` of ``n_rows`` rows each, drawn under ``seed``."""
    size = max(1, int(n_rows * share))
    order = np.random.default_rng(seed).permutation(n_rows)
    return [np.sort(order[k * size:(k + 1) * size]) for k in range(count)]


def reference_steps(model, oracles, train, test, requests) -> list[dict[str, float]]:
    """``model`` (never changed) scored at every step on the union so far against that step's oracle."""
    out, forgotten = [], np.zeros(0, dtype=np.int64)
    for oracle, rows in zip(oracles, requests):
        forgotten = np.concatenate([forgotten, rows])
        forget, retain = split_forget(train, indices=forgotten)
        scores = expunge.evaluate(model, forget=forget, retain=retain, test=test, reference=oracle)
        out.append({k: float(scores[k]) for k in KEYS if k in scores})
    return out


def oracle_steps(oracles, train, test, requests) -> list[dict[str, float]]:
    """Each step's oracle scored on its own union, retain and test sets (no reference: its accuracies)."""
    out, forgotten = [], np.zeros(0, dtype=np.int64)
    for oracle, rows in zip(oracles, requests):
        forgotten = np.concatenate([forgotten, rows])
        forget, retain = split_forget(train, indices=forgotten)
        scores = expunge.evaluate(oracle, forget=forget, retain=retain, test=test)
        out.append({k: float(scores[k]) for k in KEYS if k in scores} | {"avg_gap": 0.0})
    return out


def one_seed(seed: int, args: argparse.Namespace, train, test, methods: list[str]) -> dict:
    start = time.perf_counter()
    original = expunge.train(expunge.model("mlp", train, hidden=HIDDEN, seed=seed), train, seed=seed, **RECIPE)
    requests = requests_for(len(train), args.requests, args.share, seed)
    t0 = time.perf_counter()
    oracles = union_oracles(original, train, requests, seed=seed)
    oracle_seconds = (time.perf_counter() - t0) / len(requests)
    floors = union_oracles(original, train, requests, seed=seed + FLOOR_SEED_OFFSET)
    runs = {NOTHING: reference_steps(original, oracles, train, test, requests),
            FLOOR: [{k: v for k, v in steps.items() if k == "avg_gap"}
                    for steps in reference_steps_floor(floors, oracles, train, test, requests)],
            ORACLE: oracle_steps(oracles, train, test, requests)}
    setup = setup_of(original, train, "random")
    used_args, notes = {}, []
    for name in methods:
        margs, note = method_args(setup, name)
        if note:
            notes.append(note)
        used_args[name] = margs
        result = expunge.stream(original, train, requests, method=name, args=margs, seed=seed, oracles=oracles,
                                test=test)
        runs[name] = [{**{k: float(s.scores[k]) for k in KEYS if k in s.scores}, "seconds": float(s.seconds or 0)}
                      for s in result.steps]
    print(f"seed {seed}: {time.perf_counter() - start:.1f} s", flush=True)
    return {"runs": runs, "args": used_args, "notes": notes, "request_rows": [len(r) for r in requests],
            "oracle_seconds_per_request": oracle_seconds}


def reference_steps_floor(floors, oracles, train, test, requests) -> list[dict[str, float]]:
    """The noise floor: each step's second oracle (another seed) against its first."""
    out, forgotten = [], np.zeros(0, dtype=np.int64)
    for floor, oracle, rows in zip(floors, oracles, requests):
        forgotten = np.concatenate([forgotten, rows])
        forget, retain = split_forget(train, indices=forgotten)
        scores = expunge.evaluate(floor, forget=forget, retain=retain, test=test, reference=oracle)
        out.append({k: float(scores[k]) for k in KEYS if k in scores})
    return out


def summary(per_seed: list[dict], name: str, steps: int) -> list[dict[str, float]]:
    """Per step: mean and standard deviation over the seeds of every score the runs of ``name`` hold."""
    out = []
    for k in range(steps):
        row: dict[str, float] = {"step": k + 1}
        for key in (*KEYS, "seconds"):
            values = [s["runs"][name][k][key] for s in per_seed if key in s["runs"][name][k]]
            if values:
                row[key] = statistics.fmean(values)
                row[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        out.append(row)
    return out


def figure(result: dict, path: Path) -> None:
    """Avg. Gap to the union's oracle, retain and test accuracy against the requests served (mean over seeds,
    shaded ±1 std for the gap), one line per method; doing nothing dashed, the oracle and the noise floor grey."""
    from expunge.report import pyplot

    plt = pyplot()
    plt.rcParams["svg.hashsalt"] = "request-stream"
    plt.rcParams["svg.fonttype"] = "none"
    steps = list(range(1, result["setup"]["requests"] + 1))
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.6), dpi=100)
    panels = [("avg_gap", "Avg. Gap to the union's oracle (lower is better)"), ("retain_acc", "retain accuracy (%)"),
              ("test_acc", "test accuracy (%)")]
    colours = plt.get_cmap("tab10")
    for ax, (key, label) in zip(axes, panels):
        for i, name in enumerate(result["methods"]):
            rows = result["steps"][name]
            mean = [r[key] for r in rows]
            ax.plot(steps, mean, marker="os^Dv"[i % 5], ms=3, lw=1.3, color=colours(i), label=name)
            if key == "avg_gap":
                std = [r[f"{key}_std"] for r in rows]
                ax.fill_between(steps, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                                color=colours(i), alpha=0.08, lw=0)
        nothing = [r[key] for r in result["steps"][NOTHING]]
        ax.plot(steps, nothing, color="0.3", ls="--", lw=1.2, label="do nothing (original)")
        if key == "avg_gap":
            ax.plot(steps, [r[key] for r in result["steps"][FLOOR]], color="tab:green", ls=":", lw=1.5,
                    label="noise floor (oracle vs oracle)")
            ax.set_ylim(bottom=0)
        else:
            ax.plot(steps, [r[key] for r in result["steps"][ORACLE]], color="k", lw=1.8, alpha=0.6,
                    label="oracle (retrained on what is left)")
        ax.set_xlabel("requests served (1% of the rows each)")
        ax.set_title(label, fontsize=9)
        ax.set_xticks(steps)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    extra = axes[1].get_legend_handles_labels()
    handles.append(extra[0][-1])
    labels.append(extra[1][-1])
    fig.legend(handles, labels, loc="lower center", ncol=5, fontsize=8, frameon=False)
    fig.suptitle(f"{result['setup']['data']}: {result['setup']['requests']} requests served one after another, "
                 f"mean over {len(result['setup']['seeds'])} seeds", fontsize=10)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--share", type=float, default=0.01, help="share of the training rows per request")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--out", default="benchmarks/results/request_stream.json")
    parser.add_argument("--figure", default="benchmarks/results/request_stream.svg")
    args = parser.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    train, test = expunge.data.digits()
    start = time.perf_counter()
    per_seed = [one_seed(seed, args, train, test, methods) for seed in range(args.seeds)]
    names = [*methods, NOTHING, FLOOR, ORACLE]
    result = {
        "setup": {"data": "digits", "train_rows": len(train), "test_rows": len(test), "model": f"mlp {HIDDEN}",
                  "recipe": RECIPE, "requests": args.requests, "share": args.share,
                  "request_rows": per_seed[0]["request_rows"], "seeds": list(range(args.seeds)),
                  "floor_seed_offset": FLOOR_SEED_OFFSET,
                  "args": per_seed[0]["args"], "args_source": "expunge.presets (digits benchmark, random 10%)",
                  "notes": sorted({n for s in per_seed for n in s["notes"]})},
        "methods": methods,
        "steps": {name: summary(per_seed, name, args.requests) for name in names},
        "oracle_seconds_per_request": statistics.fmean(s["oracle_seconds_per_request"] for s in per_seed),
        "per_seed": [s["runs"] for s in per_seed],
        "seconds": time.perf_counter() - start,
        "machine": {"python": platform.python_version(), "torch": __import__("torch").__version__,
                    "threads": expunge.threads.get_threads() if hasattr(expunge.threads, "get_threads") else None},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    figure(result, Path(args.figure))
    last = {name: result["steps"][name][-1] for name in names}
    for name, row in last.items():
        print(f"{name:>14}: after {args.requests} requests  Avg.Gap {row['avg_gap']:.2f} ± {row['avg_gap_std']:.2f}"
              + (f"  retain {row['retain_acc']:.2f}  test {row['test_acc']:.2f}" if "retain_acc" in row else ""))
    print(f"wrote {out} and {args.figure} in {result['seconds']:.0f} s")


if __name__ == "__main__":
    main()
