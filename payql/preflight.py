"""Before a command touches the database: is it there, and is it migrated? One line for the operator, never a
traceback and never the password (`payql migrate`, `payql reconcile`, …, `payql serve`).

`check(url, migrated=True)` raises `DatabaseProblem` whose message is that line:

- unreachable: `the database at postgresql://app:***@db:5432/payql (password hidden) is unreachable: connection
  refused` (a bad host or port, wrong credentials, a SQLite file whose directory does not exist);
- not migrated: `the database at … is not migrated (at 0007, head is 0009): run payql migrate`, or `(no tables)`.

A SQLite file that does not exist yet is not created by the check (only `payql migrate` creates it).
`describe_failure(exc)` turns a database exception raised later, mid-command, into the same kind of line.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from payql.db import normalise_url
from payql.migrate import alembic_config

CONNECT_TIMEOUT_SECONDS = 10
_LONGEST_REASON = 200


class DatabaseProblem(Exception):
    """The database cannot serve a command; `str()` is the one line to print."""


def shown_url(url: str) -> str:
    """The URL with its password replaced by `***` (and a note that it was), for messages."""
    try:
        parsed = normalise_url(url)
    except ArgumentError:
        return "(an unparseable DATABASE_URL)"
    shown = parsed.set(drivername=parsed.drivername.split("+")[0]).render_as_string(hide_password=True)
    return f"{shown} (password hidden)" if parsed.password else shown


@functools.cache
def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    if head is None:  # pragma: no cover - the package ships its migrations
        msg = "no migrations found"
        raise RuntimeError(msg)
    return head


def _known_revisions() -> set[str]:
    return {script.revision for script in ScriptDirectory.from_config(alembic_config("sqlite://")).walk_revisions()}


def _reason(exc: BaseException, password: str | None) -> str:
    """The driver's first line, lower-cased at the start, without the password or SQLAlchemy's links."""
    original = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    lines = [line.strip() for line in str(original).splitlines() if line.strip()]
    line = lines[0] if lines else type(original).__name__
    if "Connection refused" in line:
        line = "connection refused"
    elif "password authentication failed" in line:
        line = line[line.index("password authentication failed") :]
    elif "could not translate host name" in line or "Name or service not known" in line:
        line = "unknown host"
    elif "timeout expired" in line:
        line = "connection timed out"
    else:
        line = re.sub(r'^connection failed: connection to server at "[^"]*"(, port \d+)? failed: ', "", line)
    if password:
        line = line.replace(password, "***")
    return line[:_LONGEST_REASON]


def _sqlite_file(url: URL) -> Path | None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def unreachable(url: str, reason: str) -> DatabaseProblem:
    return DatabaseProblem(f"the database at {shown_url(url)} is unreachable: {reason}")


def describe_failure(url: str, exc: SQLAlchemyError) -> str:
    """One line for a database error raised while a command ran."""
    try:
        password = normalise_url(url).password
    except ArgumentError:
        password = None
    reason = _reason(exc, password)
    if re.search(r"no such table|relation \S+ does not exist|UndefinedTable", str(exc)):
        return f"the database at {shown_url(url)} is not migrated ({reason}): run payql migrate"
    if (isinstance(exc, DBAPIError) and exc.connection_invalidated) or "connect" in reason or "refused" in reason:
        return str(unreachable(url, reason))
    return f"database error on {shown_url(url)}: {reason}"


def _no_sqlite_file(url: str, parsed: URL, *, migrated: bool) -> bool:
    """For a SQLite file: raise when its directory is missing; True when the file is (nothing to connect to)."""
    path = _sqlite_file(parsed)
    if path is None:
        return False
    if not path.parent.exists():
        raise unreachable(url, f"its directory {path.parent} does not exist")
    if path.exists():
        return False
    if migrated:
        raise DatabaseProblem(f"the database at {shown_url(url)} is not migrated (no tables): run payql migrate")
    return True  # `payql migrate` creates it


def _revision_problem(url: str, tables: set[str], current: str | None) -> DatabaseProblem | None:
    head = head_revision()
    if current == head:
        return None
    if current is None:
        what = "no tables" if not tables - {"alembic_version"} else "no migration recorded"
        return DatabaseProblem(f"the database at {shown_url(url)} is not migrated ({what}): run payql migrate")
    if current not in _known_revisions():
        return DatabaseProblem(
            f"the database at {shown_url(url)} is at revision {current}, which this payql does not know "
            f"(its head is {head}): run a newer payql"
        )
    return DatabaseProblem(
        f"the database at {shown_url(url)} is not migrated (at {current}, head is {head}): run payql migrate"
    )


def check(url: str, *, migrated: bool = True) -> None:
    """Raise `DatabaseProblem` when the database does not answer or (with `migrated`) is not at the head revision."""
    try:
        parsed = normalise_url(url)
    except ArgumentError as exc:
        raise DatabaseProblem(f"DATABASE_URL is not a database URL: {exc}") from None
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite and _no_sqlite_file(url, parsed, migrated=migrated):
        return
    connect_args = {} if sqlite else {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
    try:
        engine = create_engine(parsed, poolclass=NullPool, connect_args=connect_args)
    except (ArgumentError, ImportError) as exc:
        raise DatabaseProblem(f"DATABASE_URL cannot be used: {exc}") from None
    tables: set[str] = set()
    current = None
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            if not migrated:
                return
            tables = set(inspect(connection).get_table_names())
            if "alembic_version" in tables:
                current = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError as exc:
        raise unreachable(url, _reason(exc, parsed.password)) from None
    finally:
        engine.dispose()
    if (problem := _revision_problem(url, tables, current)) is not None:
        raise problem
