"""A stream of deletion requests: served one after another or grouped, each step scored against the oracle
retrained without every request so far (MUSE's sustainability)."""
from __future__ import annotations

import numpy as np
import pytest
from torch.utils.data import Subset

import expunge
from expunge.data import ArrayDataset, split_forget
from expunge.data.datasets import groups_of, resolve
from expunge.deletion.stream import read_batch, request_rows, stream
from expunge.sequential import union_oracles, unlearn_sequence

ARGS = {"epochs": 2, "lr": 0.01}


@pytest.fixture(scope="module")
def users():
    """Digits with a user column (60 users), a small MLP trained on them, and the test set."""
    train, test = expunge.data.digits()
    base, idx = resolve(train)
    data = ArrayDataset(base.x[idx], base.y[idx], groups=np.arange(len(idx)) % 60)
    original = expunge.train(expunge.model("mlp", data, hidden=[32], seed=0), data, epochs=8, lr=0.05, seed=0)
    return data, test, original


def test_grouped_requests_are_scored_against_the_oracle_of_their_union(users):
    data, test, original = users
    exprs = ["group:3", "group:7", "group:11", "group:12", "group:20"]
    result = stream(original, data, exprs, method="finetune", args=ARGS, group_size=2, seed=0, test=test)
    groups = np.asarray(data.groups)
    sizes = [int((groups == g).sum()) for g in (3, 7, 11, 12, 20)]
    assert [s.step for s in result.steps] == [1, 2, 3]
    assert [s.requests for s in result.steps] == [exprs[:2], exprs[2:4], exprs[4:]]
    assert [s.rows for s in result.steps] == [sizes[0] + sizes[1], sizes[2] + sizes[3], sizes[4]]
    assert [s.forgotten for s in result.steps] == list(np.cumsum([sizes[0] + sizes[1], sizes[2] + sizes[3], sizes[4]]))
    assert result.model is result.steps[-1].model
    history = expunge.provenance(result.model).history
    assert history[-3:] == ["unlearn:finetune"] * 3
    # the last step against an oracle retrained here without all five users, on the same rows
    union = np.flatnonzero(np.isin(groups, [3, 7, 11, 12, 20]))
    forget, retain = split_forget(data, indices=union)
    oracle = expunge.unlearn(original, forget=forget, retain=retain, method="retrain", seed=0)
    expected = expunge.evaluate(result.model, forget=forget, retain=retain, test=test, reference=oracle)
    for key in ("retain_acc", "test_acc", "forget_acc", "gap_ua", "avg_gap"):
        assert result.steps[-1].scores[key] == pytest.approx(expected[key]), key
    row = result.table()[-1]
    assert row["forgotten"] == len(union) and {"retain_acc", "test_acc", "avg_gap"} <= set(row)
    assert result.to_dict()["steps"][0]["requests"] == exprs[:2]


def test_one_request_per_step_equals_the_sequence_and_shared_oracles_give_the_same_scores(users):
    data, test, original = users
    groups = np.asarray(data.groups)
    rows = [np.flatnonzero(groups == g) for g in (1, 2)]
    result = stream(original, data, rows, method="finetune", args=ARGS, seed=3, test=test)
    seq = unlearn_sequence(original, data, rows, method="finetune", seed=3, evaluate_args={"test": test}, **ARGS)
    assert [s.scores["avg_gap"] for s in result.steps] == [s.scores["avg_gap"] for s in seq]
    oracles = union_oracles(original, data, rows, seed=3)
    shared = stream(original, data, rows, method="finetune", args=ARGS, seed=3, test=test, oracles=oracles)
    timeless = lambda steps: [{k: v for k, v in s.scores.items() if k not in ("seconds", "rte")} for s in steps]
    assert timeless(shared.steps) == timeless(result.steps)
    bare = stream(original, data, rows, method="finetune", args=ARGS, seed=3, oracles=False)
    assert "avg_gap" not in bare.steps[0].scores and "retain_acc" in bare.steps[0].scores


def test_batch_file_lines_are_the_requests(tmp_path, users):
    data, _, original = users
    batch = tmp_path / "requests.txt"
    batch.write_text("# users who asked this week\ngroup:4\n\n  group:5  \n")
    assert read_batch(batch) == ["group:4", "group:5"]
    result = stream(original, data, read_batch(batch), method="finetune", args=ARGS, oracles=False)
    assert [s.requests for s in result.steps] == [["group:4"], ["group:5"]]
    subset = Subset(data, list(range(100, len(data))))           # rows of a subset are positions in the subset
    label, rows = request_rows(subset, "group:4", 0)
    assert label == "group:4" and list(rows) == list(np.flatnonzero(groups_of(subset) == 4))
    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    with pytest.raises(ValueError, match="holds no request"):
        read_batch(tmp_path / "empty.txt")
    with pytest.raises(ValueError, match="does not exist"):
        read_batch(tmp_path / "missing.txt")


def test_bad_streams_are_refused_before_any_work(tmp_path, users, monkeypatch):
    data, _, original = users
    calls = []
    monkeypatch.setattr(expunge.api, "unlearn", lambda *a, **k: calls.append(1))
    ids = tmp_path / "ids.txt"
    ids.write_text(f"{int(np.flatnonzero(np.asarray(data.groups) == 3)[0])}\n")
    with pytest.raises(ValueError, match="request 2 repeats row .* of request 1"):
        stream(original, data, ["group:3", f"ids:{ids}"], method="finetune")
    with pytest.raises(ValueError, match="request 2: group 999 does not occur"):
        stream(original, data, ["group:3", "group:999"], method="finetune")
    with pytest.raises(ValueError, match="group_size=0"):
        stream(original, data, ["group:3"], method="finetune", group_size=0)
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        stream(original, data, ["group:3"], method="nope")
    with pytest.raises(ValueError, match="retrain is the oracle"):
        stream(original, data, ["group:3"], method="retrain")
    with pytest.raises(ValueError, match="unknown argument"):
        stream(original, data, ["group:3"], method="finetune", args={"rate": 0.1})
    with pytest.raises(ValueError, match="non-empty list"):
        stream(original, data, [], method="finetune")
    with pytest.raises(ValueError, match="list of 2 models"):
        stream(original, data, ["group:3", "group:4"], method="finetune", oracles=[original])
    assert calls == []
    assert expunge.stream is stream


def test_readme_request_stream_numbers_are_the_committed_result():
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    result = json.loads((root / "benchmarks" / "results" / "request_stream.json").read_text())
    last = {name: rows[-1] for name, rows in result["steps"].items()}
    gap = lambda name: f"{last[name]['avg_gap']:.2f} ± {last[name]['avg_gap_std']:.2f}"
    expected = [f"doing nothing (Avg. Gap {gap('do nothing')})", f"first: {gap('noise floor')})",
                f"{sum(result['setup']['request_rows'])} in all", f"over {len(result['setup']['seeds'])} seeds",
                f"the oracle's: {last['oracle']['forget_acc']:.1f}%",
                f"the original's: {last['do nothing']['forget_acc']:.1f}%",
                f"({last['salun']['retain_acc']:.2f}% and {last['random_label']['retain_acc']:.2f}% against "
                f"{last['oracle']['retain_acc']:.2f}%)"]
    expected += [f"{name} {gap(name)}" if name in ("neggrad_plus", "scrub", "finetune") else f"{name} ({gap(name)})"
                 for name in result["methods"]]
    accs = [last[name]["forget_acc"] for name in result["methods"]]
    expected.append(f"{min(accs):.1f}–{max(accs):.1f}%")
    for text in expected:
        assert text in readme, f"README's request-stream paragraph disagrees with the committed result: {text}"
    assert (root / "benchmarks" / "results" / "request_stream.svg").read_text().lstrip().startswith("<?xml")
