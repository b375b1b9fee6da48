"""Identity forgetting in a bench: a CSV with a per-row user column, forgetting everything from some users; the
file's contents (not only its path) enter the job keys."""
from __future__ import annotations

import numpy as np

from expunge.bench import LocalEngine, expand, load_bench, run_bench
from expunge.store import RunStore

from .tiny import tiny, write_config


def write_csv(path, seed=0):
    rng = np.random.default_rng(seed)
    n = 160
    x = rng.normal(size=(n, 4))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    users = [f"u{i % 8}" for i in range(n)]
    lines = ["a,b,c,d,label,user"] + [",".join(f"{v:.4f}" for v in row) + f",{t},{u}"
                                       for row, t, u in zip(x, y, users)]
    path.write_text("\n".join(lines) + "\n")


def test_forgetting_users_by_predicate(tmp_path):
    write_csv(tmp_path / "rows.csv")
    cfg = tiny(seeds=1, data={"csv": "rows.csv", "target": "label", "groups": "user"},
               scenarios=[{"name": "users 3 and 5", "groups": ["u3", "u5"]}])
    spec = load_bench(write_config(tmp_path / "b.yaml", cfg))
    out = run_bench(spec, out=tmp_path / "o", engine=LocalEngine(1), report=False)
    assert out.ran == 4 and not out.failures
    with RunStore(tmp_path / "o" / "runs.db") as s:
        oracle = next(r for r in s.tagged("job_key").values() if r.kind == "oracle")
    from expunge.bench.jobs import load_data

    train, _ = load_data(spec.setups[0].data, 0)
    assert oracle.metrics["forget_size"] == np.isin(train.groups, ["u3", "u5"]).sum() > 0

    keys = set(expand(spec).jobs)
    write_csv(tmp_path / "rows.csv", seed=1)            # same path, new contents: new jobs
    assert keys.isdisjoint(expand(load_bench(tmp_path / "b.yaml")).jobs)
