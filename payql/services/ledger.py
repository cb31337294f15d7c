"""The double-entry ledger (DESIGN.md §4): `post` writes one balanced transaction and moves the materialised
balances with it; the rest reads. What is posted for which event is `services/postings.py` (pure functions), and
when is the lifecycle's (`services/lifecycle.py`) or the use case's (credits, payouts).

Each transaction names its cause (payment, refund, withdrawal…, and the kind of posting) under a unique
constraint: the same cause never posts twice, so applying the same provider state again changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from payql.db import dry_running, note_change
from payql.models import (
    AccountKind,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    new_id,
    utcnow,
)
from payql.services.postings import Line, UnbalancedPosting, imbalance

__all__ = ["Line", "UnbalancedPosting", "balance_of", "balances", "post", "posted_lines", "totals_by_kind"]


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
_LOCK_ACCOUNTS = (
    select(_ACCOUNTS.c.id, _ACCOUNTS.c.owner_id, _ACCOUNTS.c.kind, _ACCOUNTS.c.currency)
    .where(
        _ACCOUNTS.c.owner_id.in_(bindparam("owners", expanding=True)),
        _ACCOUNTS.c.currency.in_(bindparam("currencies", expanding=True)),
    )
    .order_by(_ACCOUNTS.c.id)
    .with_for_update(key_share=True)
)
_INSERT_TRANSACTION = insert(_TRANSACTIONS)
_INSERT_ENTRY = insert(_ENTRIES)
_MOVE_BALANCE = (
    update(_ACCOUNTS)
    .where(_ACCOUNTS.c.id == bindparam("account"))
    .values(balance_minor=_ACCOUNTS.c.balance_minor + bindparam("delta"))
)
_NEW_ACCOUNT = {
    "postgresql": pg_insert(_ACCOUNTS).on_conflict_do_nothing(),
    "sqlite": sqlite_insert(_ACCOUNTS).on_conflict_do_nothing(),
}


def post(session: Session, kind: str, cause_type: str, cause_id: str, lines: Iterable[Line]) -> bool:
    """Write one balanced transaction and move the materialised balances with it.

    Returns False (and writes nothing) when this cause already posted this kind. Zero lines are dropped.
    """
    lines = [line for line in lines if line.amount_minor != 0]
    if totals := imbalance(lines):
        raise UnbalancedPosting(f"{kind} for {cause_type} {cause_id} does not balance: {totals}")
    connection = session.connection()
    cause = {"cause_type": cause_type, "cause_id": cause_id, "kind": kind}
    if not lines or connection.execute(_POSTED, cause).first() is not None:
        return False
    keys = sorted({(line.owner_id, line.kind, line.currency) for line in lines})
    connection.execute(
        _NEW_ACCOUNT[connection.dialect.name],
        [
            {"owner_id": owner, "kind": kind_, "currency": currency, "balance_minor": 0}
            for owner, kind_, currency in keys
        ],
    )
    accounts = {
        (row.owner_id, row.kind, row.currency): row.id
        for row in connection.execute(
            _LOCK_ACCOUNTS,
            {"owners": sorted({key[0] for key in keys}), "currencies": sorted({key[2] for key in keys})},
        )
    }
    transaction_id = new_id("ltx")
    if dry_running():  # `payql reconcile --report`: say what would be posted
        note_change(
            f"ledger_transactions (new): kind={kind} cause={cause_type} {cause_id} "
            + " ".join(f"{line.kind.value}:{line.owner_id}{line.amount_minor:+d}" for line in lines)
        )
    connection.execute(_INSERT_TRANSACTION, {"id": transaction_id, "created_at": utcnow(), **cause})
    moves = [(accounts[(line.owner_id, line.kind, line.currency)], line) for line in lines]
    connection.execute(
        _INSERT_ENTRY,
        [
            {
                "transaction_id": transaction_id,
                "account_id": account,
                "amount_minor": line.amount_minor,
                "currency": line.currency,
            }
            for account, line in moves
        ],
    )
    connection.execute(_MOVE_BALANCE, [{"account": account, "delta": line.amount_minor} for account, line in moves])
    return True


def posted_lines(session: Session, cause_type: str, cause_ids: Iterable[str], kinds: Iterable[str]) -> list[Line]:
    """The lines posted for these causes and kinds (empty when none posted): what a reversal undoes."""
    ids, kinds = list(cause_ids), list(kinds)
    if not ids:
        return []
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
    """One account's materialised balance (0 when it has never moved); `lock` holds its row until commit."""
    query = select(_ACCOUNTS.c.balance_minor).where(
        _ACCOUNTS.c.owner_id == owner_id, _ACCOUNTS.c.kind == kind, _ACCOUNTS.c.currency == currency
    )
    value = session.connection().execute(query.with_for_update(key_share=True) if lock else query).scalar()
    return int(value or 0)


def balances(session: Session, owner_id: str) -> dict[tuple[AccountKind, str], int]:
    rows = session.execute(
        select(LedgerAccount.kind, LedgerAccount.currency, LedgerAccount.balance_minor).where(
            LedgerAccount.owner_id == owner_id
        )
    )
    return {(kind, currency): balance for kind, currency, balance in rows}


def totals_by_kind(session: Session) -> dict[tuple[AccountKind, str], int]:
    rows = session.execute(
        select(LedgerAccount.kind, LedgerAccount.currency, func.sum(LedgerAccount.balance_minor)).group_by(
            LedgerAccount.kind, LedgerAccount.currency
        )
    )
    return {(kind, currency): int(total) for kind, currency, total in rows}
