"""The PostgreSQL connection pool is sized by DB_POOL_SIZE and DB_MAX_OVERFLOW (payql.settings, payql.db)."""

from __future__ import annotations

import pytest
from sqlalchemy.pool import QueuePool

from payql.bootstrap import bootstrap
from payql.db import Database
from payql.settings import ConfigError, load_settings

PG_URL = "postgresql://payql@127.0.0.1:1/never-connected"  # the engine connects lazily: nothing is dialled here


def _pool(db: Database) -> QueuePool:
    pool = db.engine.pool
    assert isinstance(pool, QueuePool)
    return pool


def test_defaults_keep_twenty_open_and_ten_more_under_a_burst(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DB_POOL_SIZE", raising=False)
    monkeypatch.delenv("DB_MAX_OVERFLOW", raising=False)
    settings = load_settings()
    db = Database(PG_URL, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow)
    try:
        assert (_pool(db).size(), _pool(db)._max_overflow) == (20, 10)
    finally:
        db.dispose()


def test_the_environment_sizes_the_servers_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_POOL_SIZE", "32")
    monkeypatch.setenv("DB_MAX_OVERFLOW", "0")
    monkeypatch.setenv("DATABASE_URL", PG_URL)
    monkeypatch.setenv("JWT_SECRET", "a-test-secret-that-is-long-enough-0123456789")
    services = bootstrap(load_settings())  # what `payql serve` and every command build
    try:
        assert (_pool(services.db).size(), _pool(services.db)._max_overflow) == (32, 0)
    finally:
        services.close()


def test_a_pool_of_no_connections_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_POOL_SIZE", "0")
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert "DB_POOL_SIZE" in str(error.value)
