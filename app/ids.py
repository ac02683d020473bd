"""Public ids: a type prefix plus a time-ordered hex string, so sorting by id is sorting by
creation time (cursor pagination needs nothing else)."""
from __future__ import annotations

import os
import re
import threading
import time

PREFIXES = {"dataset": "ds_", "job": "job_", "model_version": "mv_", "event": "ev_", "checkpoint": "ckpt_", "api_key": "key_",
            "evaluation": "eval_", "webhook": "wh_", "webhook_delivery": "msg_", "transform_job": "tjob_",
            "sweep": "swp_"}
_lock = threading.Lock()
_last = 0


def new_id(kind: str) -> str:
    """prefix + 13 hex digits of microseconds (strictly increasing in this process) + 6 random hex."""
    global _last
    with _lock:
        now = max(time.time_ns() // 1000, _last + 1)
        _last = now
    return f"{PREFIXES[kind]}{now:013x}{os.urandom(3).hex()}"


_ID_BODY = re.compile(r"[0-9a-f]{19}")


def is_id(value: str, kind: str) -> bool:
    """Whether `value` has the shape of an id that new_id(kind) makes (list cursors must)."""
    prefix = PREFIXES[kind]
    return value.startswith(prefix) and _ID_BODY.fullmatch(value[len(prefix):]) is not None
