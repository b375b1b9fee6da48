"""Progress when standard error is not a terminal: timed lines naming the phase, position and time left."""
from __future__ import annotations

import pytest

import expunge
from expunge import progress
from expunge.data import generated_classification
from expunge.progress import Phase
from tests.helpers import state_equal


class FakeClock:
    def __init__(self, step: float = 0.0):
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


@pytest.fixture
def lines_mode(monkeypatch):
    """Progress as in a log file or CI job: not a terminal."""
    monkeypatch.setattr(progress, "on_terminal", lambda: False)
    return monkeypatch


def err_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("expunge:")]


def test_nested_phases_print_one_timed_line_with_position_and_eta(lines_mode, capsys):
    clock = FakeClock()
    lines_mode.setattr(progress, "clock", clock)
    lines_mode.setattr(progress, "INTERVAL", 3.0)
    with Phase("tune finetune", 4, "trial") as outer:
        with Phase("finetune", 10, "epoch") as inner:
            clock.now = 2.0
            inner.update(1)                          # 2 s since the start: not yet due
            assert err_lines(capsys) == []
            clock.now = 4.0
            inner.update(2, loss=0.123456)
            clock.now = 5.0
            inner.update(3)                          # 1 s after the last line: not due
        outer.advance()
        clock.now = 8.0
        outer.advance()
    assert err_lines(capsys) == [
        "expunge: tune finetune: 0/4 trials (4s, ETA ?) > finetune: 2/10 epochs (4s, ETA 16s) loss 0.1235",
        "expunge: tune finetune: 2/4 trials (8s, ETA 8s)",
        "expunge: tune finetune stopped after 2 trials in 8s",
    ]


def test_training_prints_epochs_and_eta_when_not_on_a_terminal(lines_mode, capsys):
    lines_mode.setattr(progress, "clock", FakeClock(step=0.5))    # half a second per reading
    lines_mode.setattr(progress, "INTERVAL", 3.0)
    train, _ = generated_classification(n=200, seed=0)
    expunge.train(expunge.model("mlp", train, hidden=[16]), train, epochs=6, batch_size=64, seed=0)
    lines = err_lines(capsys)
    assert len(lines) >= 3 and lines[-1].startswith("expunge: train done: 6 epochs in ")
    assert all(line.startswith("expunge: train: ") and "/6 epochs (" in line and "ETA " in line
               for line in lines[:-1])
    assert "loss " in lines[-2]


def test_lines_are_throttled_by_time_so_short_runs_print_nothing(lines_mode, capsys):
    lines_mode.setattr(progress, "clock", FakeClock(step=0.1))    # a tenth of a second per reading
    train, _ = generated_classification(n=200, seed=0)
    template = expunge.model("mlp", train, hidden=[16])
    expunge.train(template, train, epochs=2, seed=0)              # 3 steps an epoch: about a second
    assert err_lines(capsys) == []
    expunge.train(template, train, epochs=60, seed=0)             # about 25 s: a line every 5 s
    lines = err_lines(capsys)
    assert 3 <= len(lines) <= 7 and lines[-1].startswith("expunge: train done: 60 epochs in ")
    lines_mode.setattr(progress, "INTERVAL", 0.0)
    with Phase("quiet", 3, show=False) as phase:
        phase.advance()
    assert err_lines(capsys) == []


def test_progress_does_not_change_results(lines_mode, capsys):
    train, _ = generated_classification(n=200, seed=0)
    template = expunge.model("mlp", train, hidden=[16])
    run = lambda: expunge.train(template, train, epochs=3, batch_size=32, seed=3)
    lines_mode.setattr(progress, "INTERVAL", 0.0)                 # a line at every step
    with_lines = run()
    assert len(err_lines(capsys)) >= 15                           # 5 steps x 3 epochs
    lines_mode.setattr(progress, "on_terminal", lambda: True)     # a tqdm bar
    with_bar = run()
    lines_mode.setattr(progress, "ENABLED", False)
    silent = run()
    assert state_equal(with_lines, silent) and state_equal(with_bar, silent)


def test_tuning_reports_its_trials_around_each_methods_epochs(lines_mode, capsys):
    from expunge.tuning import tune

    train, test = generated_classification(n=200, seed=0)
    forget, retain = expunge.split_forget(train, fraction=0.1, seed=0)
    original = expunge.train(expunge.model("mlp", train, hidden=[16]), train, epochs=2, seed=0)
    oracle = expunge.unlearn(original, forget=forget, retain=retain, method="retrain", seed=0)
    lines_mode.setattr(progress, "INTERVAL", 0.0)
    tune("finetune", original, forget=forget, retain=retain, test=test, oracle=oracle, trials=2,
         space={"epochs": [1, 2]}, fixed={"lr": 0.01})
    lines = err_lines(capsys)
    assert any(line.startswith("expunge: tune finetune: 0/2 trials (") and "> finetune: 1/" in line
               for line in lines)
    assert "expunge: tune finetune: 1/2 trials" in "\n".join(lines)
    assert lines[-1].startswith("expunge: tune finetune done: 2 trials in ")
