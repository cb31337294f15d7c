"""The benches' PostgreSQL database: made on the local server when it does not exist yet, or made afresh.

`BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/payql_bench make bench-webhooks` on a fresh machine
should measure, not stop with psycopg's "database … does not exist" traceback: the benches that take that URL
wipe what is in it anyway, so making it first asks nothing more of the user.
"""

from __future__ import annotations

from sqlalchemy import Connection, create_engine, make_url, text

from payql.db import normalise_url


def _as_admin(url: str, drop_first: bool) -> None:
    """On the server of `url`, connected to its `postgres` database: drop `url`'s database if asked, then create it
    if it is missing."""
    parsed = make_url(normalise_url(url))
    if parsed.get_backend_name() != "postgresql" or not parsed.database:
        raise SystemExit(f"BENCH_DATABASE_URL must name a PostgreSQL database, not {parsed!r}")
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            quoted = connection.dialect.identifier_preparer.quote(parsed.database)
            if drop_first:
                connection.execute(text(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
            if not _exists(connection, parsed.database):
                connection.execute(text(f"CREATE DATABASE {quoted}"))
    finally:
        admin.dispose()


def _exists(connection: Connection, name: str) -> bool:
    found = connection.execute(text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}).first()
    return found is not None


def ensure_database(url: str) -> None:
    """Create the database `url` names when its server does not have it."""
    _as_admin(url, drop_first=False)


def recreate_database(url: str) -> None:
    """Drop the database `url` names (its sessions ended) and create it empty."""
    _as_admin(url, drop_first=True)
