"""A forked child (a Celery pool process) opens its own database connections instead of sharing the
parent's pooled ones, whose socket the parent keeps using."""
from __future__ import annotations

import os
import sys

import pytest
from sqlalchemy import text

from app.db import get_engine


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_does_not_reuse_the_parents_connections(pg_database_url):
    engine = get_engine(pg_database_url)
    with engine.connect() as conn:  # back to the pool afterwards, as the worker's sweeper leaves it
        parent_backend = conn.execute(text("SELECT pg_backend_pid()")).scalar()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its backend, then leave without running the parent's clean-up
        try:
            with engine.connect() as conn:
                os.write(write, str(conn.execute(text("SELECT pg_backend_pid()")).scalar()).encode())
        finally:
            sys.stdout.flush()
            os._exit(0)
    os.close(write)
    child_backend = int(os.read(read, 32) or b"0")
    os.close(read)
    os.waitpid(pid, 0)
    assert child_backend and child_backend != parent_backend
    with engine.connect() as conn:  # the parent's pooled session is intact
        assert conn.execute(text("SELECT pg_backend_pid()")).scalar() == parent_backend
