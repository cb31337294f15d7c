"""Jobs that run from cron on every replica: a PostgreSQL advisory lock lets one of them work at a time."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text

from payql.db import Database


def _lock_id(name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"payql:{name}".encode()).digest()[:8], "big", signed=True)


@contextmanager
def exclusive(db: Database, name: str) -> Iterator[bool]:
    """Yields whether this process holds the job's lock (always True on SQLite, which has one writer anyway)."""
    if db.is_sqlite:
        yield True
        return
    with db.engine.connect() as connection:
        acquired = bool(connection.execute(text("SELECT pg_try_advisory_lock(:id)"), {"id": _lock_id(name)}).scalar())
        connection.commit()
        try:
            yield acquired
        finally:
            if acquired:
                connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": _lock_id(name)})
                connection.commit()
