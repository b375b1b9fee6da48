"""Named seed streams: one user seed, many independent random choices.

A run takes one ``seed``. Every fresh initialisation other than the original's draws its weights under a seed
derived from it for that purpose, so two networks built from the same user seed never start from the same
weights by accident. The original (``expunge.model(name, data, seed=s)``, ``ensemble.train(..., seeds=...)``) is
initialised under ``s`` itself; the oracle that ``retrain`` builds for it with the same ``s`` is initialised under
``derive(s, ORACLE_INIT)``, Bad Teacher's incompetent teacher under ``derive(s, INCOMPETENT_TEACHER_INIT)`` and
Blindspot's proxy under ``derive(s, BLINDSPOT_PROXY_INIT)``. The seed each model's initialisation was drawn under
is recorded in its provenance (``init_seed``; auxiliary networks in ``auxiliary_seeds``).

``derive`` is a stable hash (SHA-256 of the seed and the purpose), the same on every machine, Python version and
process (unlike Python's ``hash()``, which is salted per process):

>>> derive(0, ORACLE_INIT) == derive(0, ORACLE_INIT)
True
>>> derive(0, ORACLE_INIT) != derive(0, INCOMPETENT_TEACHER_INIT) != 0
True
>>> derive(0, "init", 3)   # several labels (e.g. a shard number) are allowed
1496117324
"""
from __future__ import annotations

import hashlib
from typing import Any

ORACLE_INIT = "oracle-init"                            # retrain's fresh initialisation (the oracle)
INCOMPETENT_TEACHER_INIT = "incompetent-teacher-init"  # Bad Teacher's randomly initialised teacher
BLINDSPOT_PROXY_INIT = "blindspot-proxy-init"          # Blindspot's proxy model
RANDOM_LABELS = "random-labels"                        # random_label / SalUn's wrong labels


def derive(seed: int, *purpose: Any) -> int:
    """A 31-bit seed for the random stream named ``purpose`` (one or more labels: strings, integers), derived
    from ``seed`` by SHA-256 of ``repr((seed, *purpose))``. Different purposes give unrelated seeds; the same
    seed and purpose always give the same one."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        try:
            seed = int(seed)
        except (TypeError, ValueError):
            raise TypeError(f"seed must be an integer; got {type(seed).__name__}") from None
    if not purpose:
        raise ValueError("derive needs a purpose naming the random stream (e.g. seeds.ORACLE_INIT)")
    digest = hashlib.sha256(repr((int(seed),) + purpose).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


__all__ = ["derive", "ORACLE_INIT", "INCOMPETENT_TEACHER_INIT", "BLINDSPOT_PROXY_INIT", "RANDOM_LABELS"]
