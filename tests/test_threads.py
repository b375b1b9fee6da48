"""Thread count: expunge computes with its own fixed intra-op thread count (1 unless asked) and restores the
caller's setting, so results do not depend on how the caller set torch; ``--threads`` on every command that
computes."""
from __future__ import annotations

import hashlib

import pytest
import torch
from torch.utils.data import Subset

import expunge
from expunge import threads
from expunge.cli import main
from expunge.data import digits, split_forget
from expunge.training import Recipe, batches, fit

def weights_hash(model: torch.nn.Module) -> str:
    return hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in model.parameters())).hexdigest()


def seeded_runs() -> dict:
    train, test = digits()
    train = Subset(train, range(400))
    forget, retain = split_forget(train, fraction=0.1, seed=0)
    original = expunge.train(expunge.model("mlp", train, seed=0), train, seed=0, epochs=2)
    out = {"original": weights_hash(original)}
    for method, args in (("laf", dict(epochs=2, vae_epochs=2)), ("neggrad_plus", dict(epochs=2)),
                         ("scrub", dict(epochs=2)), ("finetune", dict(epochs=2))):
        model = expunge.unlearn(original, forget=forget, retain=retain, method=method, seed=0, **args)
        out[method] = weights_hash(model)
        scores = expunge.evaluate(model, forget=forget, retain=retain, test=test)
        out[method + " scores"] = {k: v for k, v in scores.items() if k not in ("seconds", "rte")}
    return out


def test_results_do_not_depend_on_the_callers_thread_count(monkeypatch):
    """expunge computes with its own fixed count (1 unless asked), so the caller's torch setting (here 1, then 2)
    cannot change a seeded result. (With MKL, matrix products of some small shapes, e.g. a batch of 2-9 rows
    times a 64x10 weight, round differently with 2 threads than with 1 even in MKL's strict mode, so two
    *expunge* thread counts are not claimed to agree bitwise.)"""
    monkeypatch.delenv(threads.ENV, raising=False)
    monkeypatch.setattr(threads, "_chosen", None)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = seeded_runs()
        torch.set_num_threads(2)
        two = seeded_runs()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert one == two
    assert len({v for k, v in one.items() if not k.endswith("scores")}) == 5   # five different models


def test_fit_uses_expunges_count_and_restores_the_callers(monkeypatch):
    monkeypatch.delenv(threads.ENV, raising=False)
    monkeypatch.setattr(threads, "_chosen", None)
    seen = []
    data = expunge.as_dataset(torch.randn(32, 4), torch.arange(32) % 2)
    model = torch.nn.Linear(4, 2)

    def loss(m, batch, ctx):
        seen.append(torch.get_num_threads())
        return torch.nn.functional.cross_entropy(m(batch["data"].x), batch["data"].y)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        fit(model, batches(data, 16), recipe=Recipe(epochs=1), loss_fn=loss)
        assert seen == [1, 1] and torch.get_num_threads() == 2
        threads.set_threads(2)
        torch.set_num_threads(1)
        fit(model, batches(data, 16), recipe=Recipe(epochs=1), loss_fn=loss)
        assert seen[2:] == [2, 2] and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_thread_counts_are_checked(monkeypatch):
    with pytest.raises(ValueError, match="threads=0 is not allowed"):
        threads.set_threads(0)
    with pytest.raises(ValueError, match="threads=True is not allowed"):
        threads.set_threads(True)
    monkeypatch.setattr(threads, "_chosen", None)
    monkeypatch.setenv(threads.ENV, "many")
    with pytest.raises(ValueError, match="EXPUNGE_THREADS='many' is not allowed"):
        threads.get_threads()


@pytest.mark.parametrize("command", [["demo"], ["run", "examples/digits_finetune.yaml"],
                                     ["audit", "examples/digits_audit.yaml"], ["bench", "examples/bench_small.yaml"]])
def test_every_computing_command_takes_threads(command, capsys, tmp_path):
    code = main([*command, "--threads", "0", "--store", str(tmp_path / "runs.db")])
    assert code == 2
    assert capsys.readouterr().err.strip() == "error: --threads 0 is not allowed; expected an integer >= 1"
    assert not (tmp_path / "runs.db").exists()


def test_readme_quotes_the_committed_thread_measurement():
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    r = json.loads((root / "benchmarks" / "results" / "threads.json").read_text())
    readme = (root / "README.md").read_text()
    text = (f"{r['default_threads']['wall_seconds']:.1f} s vs {r['one_thread']['wall_seconds']:.1f} s: "
            f"{r['ratio_default_over_one']:.1f}× slower with the default; {r['score_differences']} of the reports' "
            "scores differ")
    assert text in readme, f"README disagrees with benchmarks/results/threads.json: {text}"
