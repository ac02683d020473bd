"""Public ids: a type prefix plus a time-ordered hex string, so sorting by id is sorting by
creation time (cursor pagination needs nothing else)."""
from __future__ import annotations

import os
import threading
import time

PREFIXES = {"dataset": "ds_", "job": "job_", "model_version": "mv_", "event": "ev_", "checkpoint": "ckpt_", "api_key": "key_"}
_lock = threading.Lock()
_last = 0


def new_id(kind: str) -> str:
    """prefix + 13 hex digits of microseconds (strictly increasing in this process) + 6 random hex."""
    global _last
    with _lock:
        now = max(time.time_ns() // 1000, _last + 1)
        _last = now
    return f"{PREFIXES[kind]}{now:013x}{os.urandom(3).hex()}"
