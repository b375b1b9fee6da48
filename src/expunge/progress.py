"""Progress of long phases: training, retraining, each method's training, tuning, bench jobs, audit stages.

On a terminal each phase shows a tqdm bar. Elsewhere (a log file, a CI job, a pipe, a notebook) one line goes to
standard error at most every :data:`INTERVAL` seconds, naming the phases in progress, outermost first, each with its
position, the time it has run and the estimated time left::

    expunge: tune scrub: 3/8 trials (41s, ETA 1m20s) > scrub: 4.5/10 epochs (2s, ETA 3s) loss 0.8123

The first line comes only after :data:`INTERVAL` seconds, so short runs print nothing; when lines were printed
during a phase that has no enclosing phase, its end is reported too (``expunge: train done: 30 epochs in 52s``).

Progress reads the clock and nothing else: it never touches a random number generator, a model or the data, so a
run gives the same results with or without it. Set ``expunge.progress.INTERVAL`` (seconds) to change the interval,
``expunge.progress.ENABLED = False`` to silence both bars and lines.

Use: ``with Phase("train", total=30, unit="epoch") as phase: ... phase.update(epoch + 1, loss=...)`` (or
``phase = Phase(...).__enter__()`` ... ``phase.close()`` in a ``finally``).
"""
from __future__ import annotations

import sys
import threading
import time
from typing import Any, Callable

INTERVAL = 5.0
ENABLED = True
clock: Callable[[], float] = time.monotonic

_local = threading.local()


def on_terminal() -> bool:
    """Whether standard error is a terminal (bars) rather than a file or pipe (lines)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _stack() -> list["Phase"]:
    if not hasattr(_local, "stack"):
        _local.stack, _local.last = [], 0.0
    return _local.stack


class Phase:
    """One long phase of ``total`` units (epochs, trials, jobs, stages); a context manager. ``show=False`` keeps
    it silent (its enclosing phases still report)."""

    def __init__(self, name: str, total: int, unit: str = "epoch", *, show: bool = True):
        self.name, self.total, self.unit, self.show = str(name), max(int(total), 0), unit, show
        self.done = 0.0
        self.info: dict[str, Any] = {}
        self.start = 0.0
        self.bar: Any = None
        self.printed = False

    def __enter__(self) -> "Phase":
        stack = _stack()
        self.start = clock()
        if not stack:
            _local.last = self.start       # the first line of an outermost phase waits a whole interval
        stack.append(self)
        if self.show and ENABLED and on_terminal():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, desc=self.name, unit=self.unit, leave=False, file=sys.stderr,
                            dynamic_ncols=True)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """End the phase (again is harmless); after printed lines, an outermost phase reports how it ended."""
        stack = _stack()
        if self not in stack:
            return
        stack.remove(self)
        if self.bar is not None:
            self.bar.close()
        elif self.printed and not stack and self.show and ENABLED:
            how = "done:" if self.done >= self.total else "stopped after"
            _write(f"expunge: {self.name} {how} {_count(self.done, self.unit)} in {_duration(clock() - self.start)}")

    def update(self, done: float, **info: Any) -> None:
        """Set the position to ``done`` units (a fraction of a unit counts) and the extra ``info`` shown (e.g.
        ``loss=0.12``); print a line when one is due."""
        self.done = min(max(float(done), 0.0), float(self.total))
        if info:
            self.info.update(info)
        if self.bar is not None:
            whole = int(self.done)
            if whole > self.bar.n:
                self.bar.update(whole - self.bar.n)
            if info:
                self.bar.set_postfix(self.info, refresh=False)
        elif self.show and ENABLED:
            _maybe_write()

    def advance(self, n: float = 1, **info: Any) -> None:
        """Move ``n`` units on."""
        self.update(self.done + n, **info)

    def describe(self, now: float) -> str:
        elapsed = now - self.start
        eta = "?" if self.done <= 0 else _duration(elapsed * (self.total - self.done) / self.done)
        extra = "".join(f" {k} {v:.4g}" if isinstance(v, float) else f" {k} {v}" for k, v in self.info.items())
        where = f"{_number(self.done)}/{_count(self.total, self.unit)}"
        return f"{self.name}: {where} ({_duration(elapsed)}, ETA {eta}){extra}"


def _maybe_write() -> None:
    stack = _stack()
    now = clock()
    if not stack or now - _local.last < INTERVAL:
        return
    _local.last = now
    for phase in stack:
        phase.printed = True
    _write("expunge: " + " > ".join(p.describe(now) for p in stack))


def _write(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.1f}"


def _count(n: float, unit: str) -> str:
    return f"{_number(n)} {unit}{'' if n == 1 else 's'}"


def _duration(seconds: float) -> str:
    s = max(int(round(seconds)), 0)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


__all__ = ["Phase", "INTERVAL", "ENABLED", "on_terminal"]
