"""A pooled connection is pinged before use only after it sat idle (payql/db.py): a dead one is then replaced."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from payql import db


def test_a_connection_that_died_while_idle_is_replaced_before_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'ping.db'}", pool_size=1, max_overflow=0)
    db._ping_after_idle(engine)
    with engine.connect() as connection:
        first = connection.connection.dbapi_connection
        assert first is not None
    first.close()  # the server closed it while it sat in the pool

    # in steady use the connection is handed out unchecked (no round trip per checkout) ...
    with engine.connect() as connection:
        assert connection.connection.dbapi_connection is first
    # ... and once it has been idle long enough, the ping finds it dead and the pool opens another
    monkeypatch.setattr(db, "IDLE_PING_SECONDS", 0.0)
    with engine.connect() as connection:
        assert connection.connection.dbapi_connection is not first
        assert connection.execute(text("SELECT 1")).scalar() == 1
    engine.dispose()
