"""The benches' PostgreSQL database: made on the local server when it does not exist yet.

`BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/payql_bench make bench-webhooks` on a fresh machine
should measure, not stop with psycopg's "database … does not exist" traceback: the benches that take that URL
wipe what is in it anyway, so making it first asks nothing more of the user.
"""

from __future__ import annotations

from sqlalchemy import create_engine, make_url, text

from payql.db import normalise_url


def ensure_database(url: str) -> None:
    """Create the database `url` names, on its server, when it is missing (connecting to `postgres` to do so)."""
    parsed = make_url(normalise_url(url))
    if parsed.get_backend_name() != "postgresql" or not parsed.database:
        return
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            exists = connection.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": parsed.database}
            ).first()
            if exists is None:
                quoted = connection.dialect.identifier_preparer.quote(parsed.database)
                connection.execute(text(f"CREATE DATABASE {quoted}"))
    finally:
        admin.dispose()
