"""How many CPU threads expunge computes with, and why its results do not depend on the machine or the caller.

Default: one intra-op thread. Small models gain little from more threads, and when other processes share the
CPU, torch's default (one thread per core) makes every thread wait for the slowest: on a 2-core machine shared
with other processes, the digits demo took 169.6 s with torch's default of 2 threads and 15.9 s with one
(``benchmarks/threads.py``, side by side in one run; ``benchmarks/results/threads.json``). Ask for more with :func:`set_threads`, the ``--threads``
option of every CLI command that computes, or the environment variable ``EXPUNGE_THREADS``.

Scope: ``training.fit``, ``Method.unlearn`` and ``evaluate`` run under :func:`scope`, which sets torch's
intra-op thread count to expunge's and restores the caller's count afterwards, so a program that calls
``torch.set_num_threads`` keeps its own setting outside expunge. The CLI sets the count for its whole process, and
bench jobs take it from ``EXPUNGE_THREADS``.

Results and the thread count. Seeded runs of train, retrain, finetune, NegGrad+, SCRUB and LAF gave different
weights with torch at 1 and at 2 threads, the original already; in the digits demo the visible change was LAF's
class-wise forget accuracy, 0.68% with one thread and 0% with two (one example of 146 near the boundary, after 60
epochs of Adam on batches of 16 that carry rounding differences forward). Nothing in LAF is order-dependent: Intel MKL
splits some matrix products over threads, which changes the order of floating-point sums (the digits MLP's
head's weight gradient, a 10×64 product summed over a batch of 64, is one), and torch's own parallel reductions
(a single sum over more than 32,768 elements) split their work by thread too. Importing expunge sets
``MKL_CBWR=AUTO,STRICT`` (unless the variable is set; MKL reads it at its first matrix product, so it takes effect
when expunge is imported before the process multiplies matrices, as in the CLI): MKL's strict reproducibility mode
makes most products independent of the thread count, but not all (a batch of 2-9 rows times a 64×10 weight still
rounds differently with 2 threads), so it cannot guarantee equal results. The guarantee comes from the design
instead: expunge computes with its own fixed count, 1 unless asked, whatever the caller or the machine set, so
a seeded run gives bitwise the same result on any machine and under any caller's torch setting
(``tests/test_threads.py``). Asking for another count (``set_threads``, ``--threads``) is for speed on larger
models; results at that count are repeatable, and may differ from one-thread results in the last bits.
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from functools import wraps
from typing import Any, Callable, Iterator, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

ENV = "EXPUNGE_THREADS"
DEFAULT = 1

# strict mode is in effect if the process started with it, or if it is set here before torch is loaded
_STRICT_IN_TIME = ("STRICT" in os.environ["MKL_CBWR"].upper() if "MKL_CBWR" in os.environ
                   else "torch" not in sys.modules)
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

_chosen: int | None = None


def check(n: object, what: str = "threads") -> int:
    """``n`` as a thread count, or ValueError naming what is allowed."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{what}{' ' if what.startswith('--') else '='}{n!r} is not allowed; "
                         "expected an integer >= 1")
    return n


def set_threads(n: int) -> None:
    """Use ``n`` intra-op threads for expunge's computations from now on (also in worker processes started
    later, through ``EXPUNGE_THREADS``)."""
    global _chosen
    _chosen = check(n)
    os.environ[ENV] = str(n)


def get_threads() -> int:
    """The thread count expunge computes with: :func:`set_threads`'s, else ``EXPUNGE_THREADS``, else 1."""
    if _chosen is not None:
        return _chosen
    raw = os.environ.get(ENV)
    if raw is None or raw == "":
        return DEFAULT
    try:
        return check(int(raw), ENV)
    except ValueError:
        raise ValueError(f"{ENV}={raw!r} is not allowed; expected an integer >= 1") from None


@contextmanager
def scope(n: int | None = None) -> Iterator[int]:
    """Run the block with ``n`` (default :func:`get_threads`) intra-op threads; restore the caller's count."""
    import torch

    n = get_threads() if n is None else check(n)
    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        yield n
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)



def scoped(fn: F) -> F:
    """Decorate a function to run under :func:`scope`."""
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with scope():
            return fn(*args, **kwargs)
    return wrapper  # type: ignore[return-value]

def reproducible_across_threads() -> bool:
    """Whether MKL's matrix products are independent of the thread count in this process: ``MKL_CBWR`` asked for
    strict mode from the process's start or from before torch was loaded (or torch does not use MKL)."""
    import torch

    return _STRICT_IN_TIME or not torch.backends.mkl.is_available()
