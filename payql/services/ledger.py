"""The double-entry ledger (DESIGN.md §4): `post` writes one balanced transaction and moves the materialised
balances with it; the rest reads. What is posted for which event is `services/postings.py` (pure functions), and
when is the lifecycle's (`services/lifecycle.py`) or the use case's (credits, payouts).

Each transaction names its cause (payment, refund, withdrawal…, and the kind of posting) under a unique
constraint: the same cause never posts twice, so applying the same provider state again changes nothing.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import cast
from weakref import WeakKeyDictionary

from sqlalchemy import Connection, Engine, Table, bindparam, event, func, insert, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, SessionTransaction

from payql.db import ManyRows, dry_running, note_change
from payql.models import (
    LEDGER_SHARDS,
    SHARDED_KINDS,
    AccountKind,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    new_id,
    utcnow,
)
from payql.services.postings import Line, UnbalancedPosting, imbalance

__all__ = [
    "Line",
    "Posting",
    "UnbalancedPosting",
    "balance_of",
    "balances",
    "defer_postings",
    "post",
    "post_many",
    "posted_lines",
    "shard_of",
    "totals_by_kind",
]


_TRANSACTIONS = cast("Table", LedgerTransaction.__table__)
_ENTRIES = cast("Table", LedgerEntry.__table__)
_ACCOUNTS = cast("Table", LedgerAccount.__table__)
# Statements built once: a posting runs on every capture, refund and webhook, and building and compiling its
# statements each time cost more than executing them.
_POSTED = select(_TRANSACTIONS.c.id).where(
    _TRANSACTIONS.c.cause_type == bindparam("cause_type"),
    _TRANSACTIONS.c.cause_id == bindparam("cause_id"),
    _TRANSACTIONS.c.kind == bindparam("kind"),
)
_POSTED_MANY = select(_TRANSACTIONS.c.cause_type, _TRANSACTIONS.c.cause_id, _TRANSACTIONS.c.kind).where(
    tuple_(_TRANSACTIONS.c.cause_type, _TRANSACTIONS.c.cause_id, _TRANSACTIONS.c.kind).in_(
        bindparam("causes", expanding=True)
    )
)
_ACCOUNT_IDS = select(
    _ACCOUNTS.c.id, _ACCOUNTS.c.owner_id, _ACCOUNTS.c.kind, _ACCOUNTS.c.currency, _ACCOUNTS.c.shard
).where(
    tuple_(_ACCOUNTS.c.owner_id, _ACCOUNTS.c.kind, _ACCOUNTS.c.currency, _ACCOUNTS.c.shard).in_(
        bindparam("keys", expanding=True)
    )
)
# Many rows in one statement, not the driver's executemany (one statement per row): for a group of webhook
# deliveries' postings, less CPU in the app and far fewer statements for the database. On PostgreSQL, one array per
# column (`ManyRows`); elsewhere RETURNING (of the key, not used) makes SQLAlchemy send one multi-row INSERT
# ("insertmanyvalues").
_INSERT_TRANSACTION = ManyRows(
    insert(_TRANSACTIONS).returning(_TRANSACTIONS.c.id), ["id", "created_at", "cause_type", "cause_id", "kind"]
)
_INSERT_ENTRY = ManyRows(
    insert(_ENTRIES).returning(_ENTRIES.c.id), ["transaction_id", "account_id", "amount_minor", "currency"]
)
_MOVE_BALANCE = (
    update(_ACCOUNTS)
    .where(_ACCOUNTS.c.id == bindparam("account"))
    .values(balance_minor=_ACCOUNTS.c.balance_minor + bindparam("delta"))
)
# On PostgreSQL, the moves of many accounts in two statements, whatever their number (`_move`): their rows locked in
# account-id order (ORDER BY comes before the lock: one order for every writer, so two transactions that meet wait
# for each other and never deadlock), then updated from one array of ids and one of amounts, sent in binary.
_PG_LOCK_ACCOUNTS = (
    "SELECT id FROM ledger_accounts WHERE id = ANY(%(accounts)b::integer[]) ORDER BY id FOR NO KEY UPDATE"
)
_PG_MOVE_BALANCES = (
    "UPDATE ledger_accounts SET balance_minor = ledger_accounts.balance_minor + moves.delta"
    " FROM unnest(%(accounts)b::integer[], %(deltas)b::bigint[]) AS moves(account, delta)"
    " WHERE ledger_accounts.id = moves.account"
)
_NEW_ACCOUNT = {
    "postgresql": pg_insert(_ACCOUNTS).on_conflict_do_nothing(),
    "sqlite": sqlite_insert(_ACCOUNTS).on_conflict_do_nothing(),
}


def shard_of(kind: AccountKind, cause_id: str) -> int:
    """The row of an account a posting moves: for a platform-wide account (SHARDED_KINDS) one of its LEDGER_SHARDS
    shards, picked by a stable hash of the posting's cause (the same cause, the same shard); 0 for the others."""
    if kind not in SHARDED_KINDS:
        return 0
    return zlib.crc32(cause_id.encode()) % LEDGER_SHARDS


AccountKey = tuple[str, AccountKind, str, int]  # owner, kind, currency, shard


def post(
    session: Session, kind: str, cause_type: str, cause_id: str, lines: Iterable[Line], *, unposted: bool = False
) -> bool:
    """Write one balanced transaction and move the materialised balances with it.

    Returns False (and writes nothing) when this cause already posted this kind. Zero lines are dropped.
    `unposted`: the caller has just read, in this transaction and under its cause's lock, that this cause has not
    posted this kind: the same read is not made again (the unique constraint still refuses a second one).

    Locks: a balance that is checked against a limit (a payee's payable before a withdrawal, a user's credits) is
    one row, which the caller that checks it locks first (`balance_of(..., lock=True)`); those rows are updated
    here, in one order, by account id. The platform-wide accounts are sharded (concurrent postings with different
    causes move different rows) and their rows are moved last of all, just before the commit (`_move_later`), so
    that two postings meeting on a shard wait on each other only for the other's commit.
    """
    lines = [line for line in lines if line.amount_minor != 0]
    if totals := imbalance(lines):
        raise UnbalancedPosting(f"{kind} for {cause_type} {cause_id} does not balance: {totals}")
    if not lines:
        return False
    deferred: list[Posting] | None = session.info.get(_DEFERRED)
    if unposted and deferred is not None:  # `defer_postings`: written with the others before the commit
        deferred.append(Posting(kind, cause_type, cause_id, lines))
        return True
    _write_deferred(session)
    connection = session.connection()
    cause = {"cause_type": cause_type, "cause_id": cause_id, "kind": kind}
    if not unposted and connection.execute(_POSTED, cause).first() is not None:
        return False
    _write(session, connection, [Posting(kind, cause_type, cause_id, lines)])
    return True


# The postings a session has deferred (`defer_postings`) and not yet written.
_DEFERRED = "payql_ledger_deferred"


def defer_postings(session: Session) -> None:
    """From now until its commit, this session's postings made with `unposted` are written together, just before
    the commit (one insert of transactions, one of entries, the balances moved in account-id order), instead of two
    inserts each: for a caller that applies many payments in one transaction (a group of webhook deliveries).

    A deferred posting is written before any read of the ledger in the same transaction (`balance_of`,
    `balances`, `posted_lines`, a `post` without `unposted`…). The unique constraint on the cause is then checked
    at the commit, not at the `post`: a caller that defers must treat a failed commit as the whole transaction's,
    not as a duplicate of anything in particular (the webhook service runs a failed group again one by one,
    without deferring). In a dry run (`payql reconcile --report`) nothing is deferred: each posting is recorded
    where it is made."""
    if not dry_running():
        session.info.setdefault(_DEFERRED, [])


def _write_deferred(session: Session) -> None:
    deferred: list[Posting] | None = session.info.get(_DEFERRED)
    if deferred:
        session.info[_DEFERRED] = []
        _write(session, session.connection(), deferred)


@dataclass(frozen=True, slots=True)
class Posting:
    """One transaction for `post_many`: what `post` takes."""

    kind: str
    cause_type: str
    cause_id: str
    lines: Sequence[Line]


def post_many(session: Session, postings: Sequence[Posting], *, unposted: bool = False) -> list[bool]:
    """`post` for each of several postings, in a fixed number of statements whatever their number (the payout run
    writes 32 withdrawals per transaction): one read of the causes that posted already (none with `unposted`), one
    of the accounts' ids (two more when some accounts are new), one insert of the transactions, one of the entries
    and one update of the balances (each an executemany), all the postings' moves of an account summed into one
    and the accounts updated in id order, last, as `post` does.

    Returns, for each posting, whether it was written: False when its cause already posted its kind (before, or
    earlier in `postings`). An unbalanced posting is refused (`UnbalancedPosting`) before anything is written.
    """
    kept: list[Posting] = []
    for posting in postings:
        lines = [line for line in posting.lines if line.amount_minor != 0]
        if totals := imbalance(lines):
            raise UnbalancedPosting(
                f"{posting.kind} for {posting.cause_type} {posting.cause_id} does not balance: {totals}"
            )
        kept.append(Posting(posting.kind, posting.cause_type, posting.cause_id, lines))
    _write_deferred(session)
    connection = session.connection()
    causes = [(posting.cause_type, posting.cause_id, posting.kind) for posting in kept if posting.lines]
    seen: set[tuple[str, str, str]] = set()
    if causes and not unposted:
        seen.update(tuple(row) for row in connection.execute(_POSTED_MANY, {"causes": causes}))
    written: list[bool] = []
    chosen: list[Posting] = []
    for posting in kept:
        cause = (posting.cause_type, posting.cause_id, posting.kind)
        fresh = bool(posting.lines) and cause not in seen
        written.append(fresh)
        if fresh:
            seen.add(cause)
            chosen.append(posting)
    if chosen:
        _write(session, connection, chosen)
    return written


def _write(session: Session, connection: Connection, postings: list[Posting]) -> None:
    """Insert these (balanced, unposted, non-empty) postings and move their accounts' balances."""
    keyed = [
        [
            ((line.owner_id, line.kind, line.currency, shard_of(line.kind, posting.cause_id)), line)
            for line in posting.lines
        ]
        for posting in postings
    ]
    accounts = _account_ids(session, connection, {key for lines in keyed for key, _ in lines})
    now = utcnow()
    transactions: list[dict[str, object]] = []
    entries: list[dict[str, object]] = []
    deltas: dict[int, int] = defaultdict(int)
    later: dict[int, int] = defaultdict(int)
    # Inside a savepoint the moves are made at once: a savepoint rolled back must take its moves with it.
    defer = not session.in_nested_transaction()
    for posting, lines in zip(postings, keyed, strict=True):
        transaction_id = new_id("ltx")
        if dry_running():  # `payql reconcile --report`: say what would be posted
            note_change(
                f"ledger_transactions (new): kind={posting.kind} cause={posting.cause_type} {posting.cause_id} "
                + " ".join(f"{line.kind.value}:{line.owner_id}{line.amount_minor:+d}" for _, line in lines)
            )
        transactions.append(
            {
                "id": transaction_id,
                "created_at": now,
                "cause_type": posting.cause_type,
                "cause_id": posting.cause_id,
                "kind": posting.kind,
            }
        )
        for key, line in lines:
            entries.append(
                {
                    "transaction_id": transaction_id,
                    "account_id": accounts[key],
                    "amount_minor": line.amount_minor,
                    "currency": line.currency,
                }
            )
            (later if defer and line.kind in SHARDED_KINDS else deltas)[accounts[key]] += line.amount_minor
    _INSERT_TRANSACTION.execute(connection, transactions)
    _INSERT_ENTRY.execute(connection, entries)
    _move(connection, deltas)
    if later:
        _move_later(session, later)


# The moves of platform-wide (sharded) balances a session has posted and not yet written: written before the commit,
# after the session's last flush (so that no row the flush updates is waited for while a shard is held), in
# account-id order, and before the payment counters (models/counts.py, whose listener runs next): one order for
# every writer, and a shard is locked only for the last statements and the commit.
_PENDING = "payql_ledger_moves"


def _move_later(session: Session, deltas: dict[int, int]) -> None:
    pending: defaultdict[int, int] = session.info.setdefault(_PENDING, defaultdict(int))
    for account, delta in deltas.items():
        pending[account] += delta


def _write_moves(session: Session) -> None:
    """before_commit (and before any read of balances in the same transaction): write the pending moves."""
    pending: dict[int, int] | None = session.info.pop(_PENDING, None)
    if pending:
        _move(session.connection(), pending)


def _move(connection: Connection, deltas: dict[int, int]) -> None:
    """Add each amount to its account's balance, the rows taken in account-id order. One statement per account
    (executemany), or on PostgreSQL, for more than one, two statements in all (`_PG_MOVE_BALANCES`)."""
    moves = sorted((account, delta) for account, delta in deltas.items() if delta)
    if len(moves) > 1 and connection.dialect.name == "postgresql":
        accounts = [account for account, _ in moves]
        connection.exec_driver_sql(_PG_LOCK_ACCOUNTS, {"accounts": accounts})
        connection.exec_driver_sql(_PG_MOVE_BALANCES, {"accounts": accounts, "deltas": [delta for _, delta in moves]})
    elif moves:
        connection.execute(_MOVE_BALANCE, [{"account": account, "delta": delta} for account, delta in moves])


def _end_transaction(session: Session, transaction: SessionTransaction) -> None:
    """The session's transaction ended (committed, rolled back or closed): what it had pending goes with it, and
    the accounts it created are committed or gone (their ids are remembered when next read, if they exist)."""
    if transaction.parent is None:
        session.info.pop(_PENDING, None)
        session.info.pop(_CREATED, None)
        session.info.pop(_DEFERRED, None)


def _before_commit(session: Session) -> None:
    session.flush()
    _write_deferred(session)
    _write_moves(session)


event.listen(Session, "before_commit", _before_commit, insert=True)  # before the counters' listener
event.listen(Session, "after_transaction_end", _end_transaction)


# The ids of accounts known to be committed, per engine (per database): an account row is never deleted and its id
# never changes, so a posting need not read again the ids of the accounts it moved before. An id is remembered only
# when it was read from a committed row: never from a row this session inserted in a transaction not yet committed
# (`_CREATED`), which a rollback would take away.
_KNOWN: WeakKeyDictionary[Engine, dict[AccountKey, int]] = WeakKeyDictionary()
_CREATED = "payql_ledger_created_accounts"


def _account_ids(session: Session, connection: Connection, keys: set[AccountKey]) -> dict[AccountKey, int]:
    """The ids of these accounts, creating the ones that never moved (no lock: ids never change)."""
    known = _KNOWN.setdefault(connection.engine, {})
    found = {key: known[key] for key in keys if key in known}
    if len(found) == len(keys):
        return found
    ordered = sorted(key for key in keys if key not in found)
    read = _read_ids(connection, ordered)
    created: set[AccountKey] = session.info.get(_CREATED, set())
    known.update((key, account) for key, account in read.items() if key not in created)
    found.update(read)
    if missing := [key for key in ordered if key not in read]:
        session.info.setdefault(_CREATED, set()).update(missing)
        connection.execute(
            _NEW_ACCOUNT[connection.dialect.name],
            [
                {"owner_id": owner, "kind": kind, "currency": currency, "shard": shard, "balance_minor": 0}
                for owner, kind, currency, shard in missing
            ],
        )
        found.update(_read_ids(connection, missing))
    return found


# Keys per read of account ids. PostgreSQL expands a row IN list into one comparison per row, and refused one of
# 10,001 keys ("stack depth limit exceeded", a posting to 10,000 new payees: bench/payouts.py's seed).
_KEYS_PER_READ = 1000


def _read_ids(connection: Connection, keys: list[AccountKey]) -> dict[AccountKey, int]:
    found: dict[AccountKey, int] = {}
    for start in range(0, len(keys), _KEYS_PER_READ):
        for row in connection.execute(_ACCOUNT_IDS, {"keys": keys[start : start + _KEYS_PER_READ]}):
            found[(row.owner_id, AccountKind(row.kind), row.currency, row.shard)] = row.id
    return found


def posted_lines(session: Session, cause_type: str, cause_ids: Iterable[str], kinds: Iterable[str]) -> list[Line]:
    """The lines posted for these causes and kinds (empty when none posted): what a reversal undoes."""
    ids, kinds = list(cause_ids), list(kinds)
    if not ids:
        return []
    _write_deferred(session)
    rows = session.execute(
        select(LedgerAccount.owner_id, LedgerAccount.kind, LedgerEntry.currency, LedgerEntry.amount_minor)
        .join(LedgerEntry, LedgerEntry.account_id == LedgerAccount.id)
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .where(
            LedgerTransaction.cause_type == cause_type,
            LedgerTransaction.cause_id.in_(ids),
            LedgerTransaction.kind.in_(kinds),
        )
        .order_by(LedgerEntry.id)
    )
    return [Line(owner, AccountKind(kind), currency, int(amount)) for owner, kind, currency, amount in rows]


def balance_of(session: Session, owner_id: str, kind: AccountKind, currency: str, *, lock: bool = False) -> int:
    """One account's materialised balance (0 when it has never moved; the sum of its shards for a platform-wide
    account); `lock` holds its row until commit, for a balance that is checked (never a sharded one)."""
    if lock and kind in SHARDED_KINDS:
        raise ValueError(f"{kind.value} is sharded and never checked against a limit: it is not locked")
    _write_deferred(session)
    _write_moves(session)
    query = select(_ACCOUNTS.c.balance_minor).where(
        _ACCOUNTS.c.owner_id == owner_id, _ACCOUNTS.c.kind == kind, _ACCOUNTS.c.currency == currency
    )
    rows = session.connection().execute(query.with_for_update(key_share=True) if lock else query)
    return sum(int(balance) for (balance,) in rows)


def balances(session: Session, owner_id: str) -> dict[tuple[AccountKind, str], int]:
    """Every account of this owner (the shards of a platform-wide account summed), including those at zero."""
    _write_deferred(session)
    _write_moves(session)
    rows = session.execute(
        select(LedgerAccount.kind, LedgerAccount.currency, func.sum(LedgerAccount.balance_minor))
        .where(LedgerAccount.owner_id == owner_id)
        .group_by(LedgerAccount.kind, LedgerAccount.currency)
    )
    return {(kind, currency): int(balance) for kind, currency, balance in rows}


def totals_by_kind(session: Session) -> dict[tuple[AccountKind, str], int]:
    _write_deferred(session)
    _write_moves(session)
    rows = session.execute(
        select(LedgerAccount.kind, LedgerAccount.currency, func.sum(LedgerAccount.balance_minor)).group_by(
            LedgerAccount.kind, LedgerAccount.currency
        )
    )
    return {(kind, currency): int(total) for kind, currency, total in rows}
