"""Engine, session factory and the unit of work.

SQLite runs in WAL mode with `synchronous=FULL` (a payment commit survives power loss) and foreign keys on. Its
write transactions start with `BEGIN IMMEDIATE` so that two writers queue on the busy timeout instead of failing
when a read lock is upgraded; read-only units of work use a plain `BEGIN`. PostgreSQL goes through psycopg 3.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final, Literal, Self

from sqlalchemy import Connection, Engine, Table, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.dml import Insert

SQLITE_BUSY_TIMEOUT_MS = 30_000
_WRITE = "payql_write"


def normalise_url(url: str) -> URL:
    """`postgresql://` (and `postgres://`) mean psycopg 3 here; other URLs pass unchanged."""
    parsed = make_url(url)
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the driver: we emit BEGIN ourselves below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        immediate = connection.get_execution_options().get(_WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def make_engine(url: str, *, echo: bool = False, pool_size: int = 20, max_overflow: int = 10) -> Engine:
    """An engine for `url`. On SQLite the pool is fixed (its writers are serialised anyway); elsewhere it keeps
    `pool_size` connections open and opens up to `max_overflow` more under a burst (settings DB_POOL_SIZE,
    DB_MAX_OVERFLOW)."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            parsed,
            echo=echo,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            pool_size=8,
            max_overflow=16,
            pool_pre_ping=False,
        )
        _configure_sqlite(engine)
        return engine
    engine = create_engine(parsed, echo=echo, pool_size=pool_size, max_overflow=max_overflow)
    _ping_after_idle(engine)
    if engine.dialect.name == "postgresql":
        event.listen(engine, "do_executemany", _update_many)
    return engine


# A pooled connection that has sat idle this long is pinged before use: the server may have closed it meanwhile
# (a restart, a failover, an idle timeout). One in steady use is not: `pool_pre_ping` cost a round trip on every
# checkout, two per webhook, and a connection that breaks in use is still detected (SQLAlchemy invalidates the
# pool on a disconnect error, and the request fails as any database error does).
IDLE_PING_SECONDS = 10.0
_IDLE_SINCE = "payql_idle_since"


def _ping_after_idle(engine: Engine) -> None:
    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get(_IDLE_SINCE)
        if idle_since is None or time.monotonic() - idle_since < IDLE_PING_SECONDS:
            return  # new, or in steady use
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            # The pool discards this connection and checks out another (a new one if need be).
            raise DisconnectionError(str(exc)) from exc


# Row locks are FOR NO KEY UPDATE on PostgreSQL (nothing on SQLite, whose writers are serialised): they exclude each
# other, so they serialise the writers of a row, but not the FOR KEY SHARE lock that PostgreSQL's foreign-key check
# takes on a row when another transaction updates a row that references it. With FOR UPDATE, a refund updating its
# payment (which references the enroll) deadlocked against `confirmEnroll` holding the enroll and waiting for the
# payment. No key column is ever updated, so nothing needs the stronger lock.
ROW_LOCK: Final[dict[str, Any]] = {"key_share": True}


# Inside `Database.dry_run()`, a unit of work's commit flushes, records what it would change here and rolls back.
_DRY_RUN: ContextVar[list[str] | None] = ContextVar("payql_dry_run", default=None)
# Columns that say nothing about money or state: a dry run does not report them.
_QUIET = frozenset({"created_at", "updated_at", "client_secret", "confirmation_url", "checkout_url", "expires_at"})
_SUMMARY = ("status", "kind", "amount_minor", "currency", "cause_type", "cause_id", "provider_refund_id")


def describe_changes(session: Session) -> list[str]:
    """What a session is about to write, one line per row: `refunds ref_1: status SUCCEEDED -> FAILED`."""
    lines: list[str] = []
    for obj in session.new:
        table = obj.__table__.name
        if table in {"ledger_entries", "webhook_events"}:
            continue  # an entry belongs to its transaction, which is described
        fields = " ".join(f"{name}={getattr(obj, name)}" for name in _SUMMARY if getattr(obj, name, None) is not None)
        lines.append(f"{table} (new): {fields}")
    for obj in session.dirty:
        state = inspect(obj)
        for attr in state.mapper.column_attrs:
            if attr.key in _QUIET:
                continue
            history = state.attrs[attr.key].history
            if history.added and list(history.deleted) != list(history.added):
                before = history.deleted[0] if history.deleted else None
                where = f"{obj.__table__.name} {getattr(obj, 'id', '?')}"
                lines.append(f"{where}: {attr.key} {before} -> {history.added[0]}")
    return sorted(lines)


def dry_running() -> bool:
    return _DRY_RUN.get() is not None


def note_change(line: str) -> None:
    """Record a write made outside the ORM's unit of work (the ledger's statements) when in a dry run."""
    dry = _DRY_RUN.get()
    if dry is not None and line not in dry:
        dry.append(line)


class ManyRows:
    """An INSERT of many rows in one statement whose text does not depend on how many there are.

    On PostgreSQL the rows go in as one array per column (`INSERT INTO t (…) SELECT * FROM unnest(…)`, then
    `suffix`, an ON CONFLICT clause, say): one short statement, which psycopg converts once and PostgreSQL prepares
    once. SQLAlchemy's multi-row VALUES is a new, long text for every number of rows, which psycopg parses again on
    every execution (it caches no statement of more than 50 parameters). The arrays go in binary (`%(c0)b`): psycopg
    writes a text array in Python, escaping each quote of each value with a regular expression, which for a group's
    JSON payloads cost 15 times the binary array. Each value is first processed as SQLAlchemy would bind it (an enum
    to its name, a datetime checked and made UTC). Elsewhere, and for a single row, `statement` runs with the rows
    as given.

    Every row carries a value for each of `columns`; a column left out gets its default in the database."""

    def __init__(self, statement: Insert, columns: list[str], suffix: str = "") -> None:
        self._statement = statement
        self._table = statement.table
        self._columns = columns
        self._suffix = suffix
        self._prepared: dict[str, tuple[str, list[Callable[[Any], Any] | None]]] = {}

    def execute(self, connection: Connection, rows: list[dict[str, Any]]) -> None:
        dialect = connection.dialect
        if dialect.name != "postgresql" or len(rows) < 2:  # noqa: PLR2004 - one row: the plain statement
            connection.execute(self._statement, rows)
            return
        prepared = self._prepared.get(dialect.name)
        if prepared is None:
            prepared = self._prepared[dialect.name] = self._prepare(connection)
        sql, processors = prepared
        params = {
            f"c{i}": [row[name] for row in rows] if process is None else [process(row[name]) for row in rows]
            for i, (name, process) in enumerate(zip(self._columns, processors, strict=True))
        }
        connection.exec_driver_sql(sql, params)

    def _prepare(self, connection: Connection) -> tuple[str, list[Callable[[Any], Any] | None]]:
        dialect = connection.dialect
        assert isinstance(self._table, Table)  # noqa: S101 - an insert into a table, by construction
        columns = [self._table.c[name] for name in self._columns]
        arrays = ", ".join(f"%(c{i})b::{column.type.compile(dialect=dialect)}[]" for i, column in enumerate(columns))
        names = ", ".join(dialect.identifier_preparer.quote(name) for name in self._columns)
        table = dialect.identifier_preparer.format_table(self._table)
        sql = f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays}) {self._suffix}".rstrip()  # noqa: S608 - names from the table, no input
        return sql, [column.type.dialect_impl(dialect).bind_processor(dialect) for column in columns]


# -- many rows of one UPDATE in one statement (PostgreSQL) ---------------------------------------------------------

# Execution option (`rows_locked`): the tables whose rows this transaction updates are locked already.
_LOCKED_TABLES = "payql_locked_tables"


def rows_locked(session: Session, *tables: str) -> None:
    """Say that this session's transaction holds the lock of every row it will update in `tables` (the caller took
    them, in one order, as `SELECT … ORDER BY id FOR NO KEY UPDATE` does). On PostgreSQL the flush may then write
    many rows of such a table in one statement (`_update_many`) instead of one statement per row: a statement
    that updates many rows takes their locks in an order of the planner's choosing, harmless only when they are
    held already."""
    session.connection().execution_options(**{_LOCKED_TABLES: frozenset(tables)})


# What the ORM's flush sends to update rows by their primary key (SQLAlchemy's compiled text on PostgreSQL):
# `UPDATE payments SET status=%(status)s, paid_at=%(paid_at)s::TIMESTAMP WITH TIME ZONE WHERE payments.id =
# %(payments_id)s::VARCHAR`. Anything else, a quoted name or an expression, is left to the driver.
_CAST = r"(?:::[A-Z][A-Z0-9 ()]*)?"
_UPDATE_BY_KEY = re.compile(  # a pattern that reads SQL, not SQL:
    rf"UPDATE (?P<table>[a-z_][a-z0-9_]*) SET (?P<set>.+) WHERE (?P=table)\.(?P<key>[a-z_][a-z0-9_]*) = "  # noqa: S608
    rf"%\((?P<param>[a-z_][a-z0-9_]*)\)s{_CAST}"
)
_SET_ITEM = re.compile(rf"(?P<column>[a-z_][a-z0-9_]*)=%\((?P<param>[a-z_][a-z0-9_]*)\)s{_CAST}")


@dataclass(frozen=True, slots=True)
class _UpdatePlan:
    table: str
    sql: str
    params: tuple[str, ...]  # the ORM's parameter names, in the order of the arrays p0, p1, …


_UPDATE_PLANS: dict[str, _UpdatePlan | None] = {}


def _update_many(cursor: Any, statement: str, parameters: Sequence[Any], context: Any) -> Literal[True] | None:
    """`do_executemany` on PostgreSQL: the rows of an ORM update by primary key, when their table's rows are
    locked already (`rows_locked`), go in as one statement, `UPDATE t SET c = v.p0, … FROM unnest(%(p0)b::type[],
    …) AS v(p0, …) WHERE t.id = v.pN`: one array per column, in binary, as `ManyRows` sends them. The values are the
    ones SQLAlchemy bound for the driver, and the ORM still checks that as many rows were updated as it sent."""
    locked: frozenset[str] | None = context.execution_options.get(_LOCKED_TABLES)
    if not locked or len(parameters) < 2 or not context.isupdate:  # noqa: PLR2004 - one row: one statement anyway
        return None
    if statement not in _UPDATE_PLANS:
        _UPDATE_PLANS[statement] = _plan_update(statement, context)
    plan = _UPDATE_PLANS[statement]
    if plan is None or plan.table not in locked:
        return None
    cursor.execute(plan.sql, {f"p{i}": [row[name] for row in parameters] for i, name in enumerate(plan.params)})
    return True


def _plan_update(statement: str, context: Any) -> _UpdatePlan | None:
    """The one-statement form of an UPDATE by primary key, or None when `statement` is not exactly one."""
    match = _UPDATE_BY_KEY.fullmatch(statement)
    table = getattr(context.compiled, "statement", None)
    table = getattr(table, "table", None)
    if match is None or not isinstance(table, Table) or table.name != match["table"]:
        return None
    items = [_SET_ITEM.fullmatch(item) for item in match["set"].split(", ")]
    keys = [column.name for column in table.primary_key.columns]
    if any(item is None for item in items) or keys != [match["key"]]:
        return None
    pairs = [(item["column"], item["param"]) for item in items if item is not None]
    pairs.append((match["key"], match["param"]))
    if any(column not in table.c for column, _ in pairs):
        return None
    dialect = context.dialect
    arrays = ", ".join(
        f"%(p{i})b::{table.c[column].type.compile(dialect=dialect)}[]" for i, (column, _) in enumerate(pairs)
    )
    names = ", ".join(f"p{i}" for i in range(len(pairs)))
    last = len(pairs) - 1
    sets = ", ".join(f"{column} = v.p{i}" for i, (column, _) in enumerate(pairs[:last]))
    sql = (
        f"UPDATE {table.name} SET {sets} FROM unnest({arrays}) AS v({names})"  # noqa: S608 - names from the table
        f" WHERE {table.name}.{match['key']} = v.p{last}"
    )
    return _UpdatePlan(table.name, sql, tuple(param for _, param in pairs))


# Reads end their transaction with COMMIT rather than ROLLBACK (`UnitOfWork`, and payql's Core reads). To the
# server the two are the same for a transaction that wrote nothing, but psycopg forgets every statement it has
# prepared on a ROLLBACK (it cannot tell which the rollback undid) and sends DEALLOCATE ALL: when each request's read
# rolled back, no statement stayed prepared long enough to be used, so PostgreSQL parsed and planned every statement
# afresh and payql paid a round trip more per read (bench/README.md, "Fourth pass", prepared statements).


class UnitOfWork:
    """One database transaction that rolls back unless `commit()` is called.

    `with db.uow(write=True) as uow: ...; uow.commit()`. Services own their units of work (DESIGN.md rule 2).
    """

    def __init__(self, factory: sessionmaker[Session], *, write: bool = True) -> None:
        self._factory = factory
        self._write = write
        self.session: Session
        self._committed = False
        self._flushed = False

    def __enter__(self) -> Self:
        self.session = self._factory()
        self._flushed = False
        if self._write:
            event.listen(self.session, "after_flush", self._on_flush)
            if _DRY_RUN.get() is not None:
                event.listen(self.session, "before_flush", self._record)
        return self

    def _record(self, session: Session, *_args: object) -> None:
        dry = _DRY_RUN.get()
        if dry is not None:
            dry.extend(line for line in describe_changes(session) if line not in dry)

    def _on_flush(self, *_args: object) -> None:
        self._flushed = True

    def __exit__(self, exc_type: type[BaseException] | None, *_exc: object) -> None:
        try:
            # A unit of work that wrote and did not commit rolls back and expires what it loaded, so nothing
            # half-written is used; one that only read just closes, and its rows stay readable (detached). A read
            # unit of work that ended well ends its transaction with COMMIT (see above the class).
            session = self.session
            if not self._committed and (self._flushed or session.new or session.dirty or session.deleted):
                session.rollback()
            elif not self._write and exc_type is None and _DRY_RUN.get() is None:
                session.commit()
        finally:
            self.session.close()

    def commit(self) -> None:
        if _DRY_RUN.get() is not None:
            # `Database.dry_run()`: record what this commit would write, then let `__exit__` roll it back
            self.session.flush()
            return
        self.session.commit()
        self._committed = True


class Database:
    def __init__(self, url: str, *, echo: bool = False, pool_size: int = 20, max_overflow: int = 10) -> None:
        self.url = url
        self.engine = make_engine(url, echo=echo, pool_size=pool_size, max_overflow=max_overflow)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._read = sessionmaker(self.engine, expire_on_commit=False, autoflush=True)
        self._write = sessionmaker(
            self.engine.execution_options(**{_WRITE: True}), expire_on_commit=False, autoflush=True
        )
        self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")

    @contextmanager
    def single_reads(self) -> Iterator[Connection]:
        """A Core connection for reads that each stand alone (no two need one snapshot): on PostgreSQL each
        statement runs in its own implicit transaction (psycopg's autocommit), which spares the BEGIN and COMMIT
        round trips; on SQLite (whose BEGIN payql emits itself) a read transaction committed at the end."""
        if self.is_sqlite:
            with self.engine.connect() as connection:
                yield connection
                connection.commit()  # a read ends with COMMIT, not ROLLBACK: see above UnitOfWork
            return
        with self._autocommit.connect() as connection:
            yield connection

    def uow(self, *, write: bool = True) -> UnitOfWork:
        return UnitOfWork(self._write if write else self._read, write=write)

    @contextmanager
    def dry_run(self) -> Iterator[list[str]]:
        """Units of work begun inside never commit: each rolls back, and the list gets what it would have written
        (`payql reconcile --report`). For the calling thread (a context variable) only."""
        changes: list[str] = []
        token = _DRY_RUN.set(changes)
        try:
            yield changes
        finally:
            _DRY_RUN.reset(token)

    def session_on(self, connection: Connection) -> Session:
        """A read session on `connection`, joining the transaction it is in: closing the session leaves that
        transaction to the connection's owner (the GraphQL context)."""
        return self._read(bind=connection)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only session for queries: committed at the end when the block ended well, else rolled back."""
        with self.uow(write=False) as uow:
            yield uow.session

    def listen(self, hooks: list[tuple[str, Callable[..., Any]]]) -> Callable[[], None]:
        """Session events (`after_commit`, …) on every session of this database; returns what removes them."""
        targets = (self._read, self._write)
        for target in targets:
            for name, hook in hooks:
                event.listen(target, name, hook)

        def remove() -> None:
            for target in targets:
                for name, hook in hooks:
                    event.remove(target, name, hook)

        return remove

    def ping(self) -> bool:
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
                connection.commit()  # not a rollback: it would wipe the connection's prepared statements
        except Exception:  # noqa: BLE001 - readiness only reports up or down
            return False
        return True

    def dispose(self) -> None:
        self.engine.dispose()
