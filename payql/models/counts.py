"""`payment_counts`: how many payments each user sees, by status and purpose, kept in step with `payments`.

A user's `payments { totalCount }` is a sum over at most SHARDS × statuses × purposes rows of this table instead of
a count over their whole history. A payment counts once for each distinct user among its payer and payee (the two
owners the list shows it to), under its current status and purpose.

The counters follow the ORM: before each flush the session notes what its new, changed and deleted payments move
(`status` loads its old value on change, so the move is known even for an expired row), and the notes are written
as the last statements before the commit, sorted by key (after the ledger's platform-wide moves, which are
written just before them: `services/ledger.py`). Written last, a counter row's lock is held only for the commit
and is never held while waiting on another lock, so counters add no deadlock to the ledger's locks; spread over
SHARDS rows per user (a payment keeps its shard, picked by the last two characters of its id, which are random), a
busy payee's concurrent payments rarely meet on one row. A flush that is rolled back drops its notes. `rebuild()`
recounts from `payments` (the migration, data written in SQL).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Connection,
    Integer,
    Select,
    String,
    Table,
    bindparam,
    event,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, Session, mapped_column
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.orm.base import NO_VALUE, PASSIVE_NO_RESULT

from payql.db import ManyRows
from payql.models.base import Base
from payql.models.enums import PaymentStatus
from payql.models.payment import Payment

# With 8 shards (by the id's last hex digit) half the webhook bench's lock waits, a sixth of its active backends, were
# on one payee's counters (bench/README.md, "Webhooks on PostgreSQL"); 64, by the last two digits, spread them.
SHARDS = 64
_HEX = "0123456789abcdef"
_NOTES = "payql_payment_counts"
Key = tuple[str, str, str, int]  # user_id, status, purpose, shard


class PaymentCount(Base):
    __tablename__ = "payment_counts"

    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    status: Mapped[str] = mapped_column(String(24), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(24), primary_key=True)
    shard: Mapped[int] = mapped_column(Integer, primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)


def shard_of(payment_id: str) -> int:
    """A payment's counter shard, from its id's last two (random) hex digits; `_shard_sql` is the same in SQL.

    Each character counts by its place among the hex digits, 1 to 16 (0 for any other character, as SQL's
    `strpos` says), so that every id has a shard and random hex ids spread evenly over all of them."""
    high = _HEX.find(payment_id[-2:-1]) + 1 if len(payment_id) > 1 else 0
    low = _HEX.find(payment_id[-1:]) + 1 if payment_id else 0
    return (16 * high + low) % SHARDS


def _keys(payment_id: str, payer: str | None, payee: str | None, status: Any, purpose: Any) -> list[Key]:
    users = {user for user in (payer, payee) if user is not None}
    return [(user, str(status), str(purpose), shard_of(payment_id)) for user in sorted(users)]


_NAMES = ("payer_id", "payee_id", "status", "purpose")  # what a payment's counter keys are made of
_UNSEEN = object()
_NOT_LOADED = (NO_VALUE, PASSIVE_NO_RESULT)  # what SQLAlchemy's history reads as "no previous value"


def _old(committed: dict[str, Any], payment: Payment, name: str) -> Any:
    """An attribute's value when the payment was loaded: the one its change recorded (`status` loads it before it
    changes), else the current value (unchanged, or changed while expired without loading it)."""
    value = committed.get(name, _UNSEEN)
    return getattr(payment, name) if value is _UNSEEN or value in _NOT_LOADED else value


def _note(session: Session, *_args: object) -> None:
    """before_flush: what this flush moves, added to the session's notes."""
    moves: Counter[Key] = Counter()
    for payment in session.new:
        if isinstance(payment, Payment):
            status = payment.status or PaymentStatus.PENDING  # the column's default, applied by the insert
            moves.update(_keys(payment.id, payment.payer_id, payment.payee_id, status, payment.purpose))
    for payment in session.dirty:
        if not isinstance(payment, Payment):
            continue
        # A changed attribute's old value is in the state's committed_state: a payment none of whose keys changed
        # (the most of a flush's) is passed over without building their histories.
        committed = instance_state(payment).committed_state
        if not any(name in committed for name in _NAMES):
            continue
        before = _keys(payment.id, *(_old(committed, payment, name) for name in _NAMES))
        after = _keys(payment.id, *(getattr(payment, name) for name in _NAMES))
        if before != after:
            moves.subtract(before)
            moves.update(after)
    for payment in session.deleted:
        if isinstance(payment, Payment):
            committed = instance_state(payment).committed_state
            moves.subtract(_keys(payment.id, *(_old(committed, payment, name) for name in _NAMES)))
    if moves:
        notes: Counter[Key] = session.info.setdefault(_NOTES, Counter())
        notes.update(moves)  # update() adds negative counts too, unlike the + operator


def _write(session: Session) -> None:
    """before_commit: flush what is left, then write the notes, sorted by key (one lock order for every writer)."""
    session.flush()
    notes: Counter[Key] | None = session.info.pop(_NOTES, None)
    rows = [
        {"user_id": user, "status": status, "purpose": purpose, "shard": shard, "count": delta}
        for (user, status, purpose, shard), delta in sorted((notes or {}).items())
        if delta
    ]
    if rows:
        connection = session.connection()
        if connection.dialect.name == "postgresql":
            _PG_UPSERT.execute(connection, rows)
        else:
            connection.execute(_UPSERT[connection.dialect.name], rows)


def _forget(session: Session, *_args: object) -> None:
    session.info.pop(_NOTES, None)


_TABLE = cast("Table", PaymentCount.__table__)
_KEY = ["user_id", "status", "purpose", "shard"]
_PG_INSERT = pg_insert(_TABLE)
_SQLITE_INSERT = sqlite_insert(_TABLE)
_UPSERT = {
    # RETURNING: many rows in one statement, not one per row (services/ledger.py, above _INSERT_TRANSACTION); the
    # rows' keys are distinct (summed per key), as one statement's ON CONFLICT needs
    "postgresql": _PG_INSERT.on_conflict_do_update(
        index_elements=_KEY, set_={"count": _TABLE.c.count + _PG_INSERT.excluded.count}
    ).returning(_TABLE.c.count),
    "sqlite": _SQLITE_INSERT.on_conflict_do_update(
        index_elements=_KEY, set_={"count": _TABLE.c.count + _SQLITE_INSERT.excluded.count}
    ).returning(_TABLE.c.count),
}

# On PostgreSQL one array per column (`ManyRows`): a statement whose text is the same for any number of rows.
_PG_UPSERT = ManyRows(
    _UPSERT["postgresql"],
    [*_KEY, "count"],
    suffix=f"ON CONFLICT ({', '.join(_KEY)}) DO UPDATE SET count = payment_counts.count + excluded.count",
)

event.listen(Session, "before_flush", _note)
event.listen(Session, "before_commit", _write)
event.listen(Session, "after_rollback", _forget)


def count_for(connection: Connection, user_id: str, status: str | None, purpose: str | None) -> int:
    """How many payments `user_id` is payer or payee of, with that status and purpose when given."""
    params = {"user": user_id, "status": status, "purpose": purpose}
    statement = _COUNTS[status is not None, purpose is not None]
    return int(connection.scalar(statement, {name: value for name, value in params.items() if value is not None}))


def _count_statement(status: bool, purpose: bool) -> Select[Any]:
    statement = select(func.coalesce(func.sum(_TABLE.c.count), 0)).where(_TABLE.c.user_id == bindparam("user"))
    if status:
        statement = statement.where(_TABLE.c.status == bindparam("status"))
    if purpose:
        statement = statement.where(_TABLE.c.purpose == bindparam("purpose"))
    return statement


# Statements built once, like the lists' (building one per request cost more than running it).
_COUNTS = {(s, p): _count_statement(s, p) for s in (False, True) for p in (False, True)}


def _shard_sql(dialect: str) -> str:
    """`shard_of` in SQL: the positions of the id's last two characters among the hex digits (ids are longer
    than one character; an empty string is found at 1, so a missing character counts 0 through the CASE)."""
    position = "strpos" if dialect == "postgresql" else "instr"
    high = f"CASE WHEN length(id) > 1 THEN {position}('{_HEX}', substr(id, length(id) - 1, 1)) ELSE 0 END"
    low = f"CASE WHEN length(id) > 0 THEN {position}('{_HEX}', substr(id, length(id), 1)) ELSE 0 END"
    return f"((16 * ({high}) + ({low})) % {SHARDS})"


def rebuild(connection: Connection) -> None:
    """Recount every user's payments from `payments` (the migration; rows written in SQL, as the bench does)."""
    shard = _shard_sql(connection.dialect.name)
    connection.execute(text("DELETE FROM payment_counts"))
    connection.execute(
        text(
            f"""
            INSERT INTO payment_counts (user_id, status, purpose, shard, count)
            SELECT user_id, status, purpose, shard, COUNT(*) FROM (
                SELECT payer_id AS user_id, status, purpose, {shard} AS shard FROM payments
                UNION ALL
                SELECT payee_id, status, purpose, {shard} FROM payments
                WHERE payee_id IS NOT NULL AND payee_id <> payer_id
            ) AS owners
            GROUP BY user_id, status, purpose, shard
            """  # noqa: S608 - no input: the shard expression is built from constants
        )
    )


def differences(connection: Connection) -> list[str]:
    """Where the counters and a recount from `payments` disagree (empty when exact), and any negative shard."""
    recount = {
        (user, status, purpose): count
        for user, status, purpose, count in connection.execute(
            text(
                """
                SELECT user_id, status, purpose, COUNT(*) FROM (
                    SELECT payer_id AS user_id, status, purpose FROM payments
                    UNION ALL
                    SELECT payee_id, status, purpose FROM payments WHERE payee_id IS NOT NULL AND payee_id <> payer_id
                ) AS owners
                GROUP BY user_id, status, purpose
                """
            )
        )
    }
    counted: Counter[tuple[str, str, str]] = Counter()
    problems: list[str] = []
    for user, status, purpose, shard, count in connection.execute(select(_TABLE)):
        counted[user, status, purpose] += count
        if count < 0:
            problems.append(f"payment_counts {user} {status} {purpose} shard {shard} is negative: {count}")
    problems.extend(
        f"payment_counts {' '.join(key)}: {counted.get(key, 0)}, the payments {recount.get(key, 0)}"
        for key in sorted(set(recount) | set(counted))
        if recount.get(key, 0) != counted.get(key, 0)
    )
    return problems
