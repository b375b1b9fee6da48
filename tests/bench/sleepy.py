"""A job that only sleeps: stands in for a long job in tests of worker processes (imports nothing heavy)."""
from __future__ import annotations

import os
import time


def sleepy_job(tag, payload):
    """Write this process's pid to ``payload["started"]/<tag>`` (to say the job runs), then sleep
    ``payload["seconds"]``."""
    with open(os.path.join(payload["started"], str(tag)), "w") as fh:
        fh.write(str(os.getpid()))
    time.sleep(payload["seconds"])
    return tag, {}
