"""The read side: keyset-paginated lists of what a principal may see, their cursors, and the batched lookups
the per-request loaders (schema/loaders.py) run.

Lists and loaders read plain rows (SQLAlchemy Core), not ORM objects: they are only read, and building ORM
instances for every row of a page cost more than the queries themselves.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from sqlalchemy import Connection, Integer, Select, Table, bindparam, func, or_, select, union_all
from sqlalchemy.orm import Session

from payql.auth import Principal
from payql.models import CreditTransaction, Dispute, Enroll, Payment, PayoutAccount, Refund, Withdrawal
from payql.models.counts import count_for
from payql.models.enums import DisputeStatus, EnrollStatus, PaymentPurpose, PaymentStatus, WithdrawalStatus
from payql.models.payment import OPEN_STATUSES
from payql.money import EXPONENTS
from payql.services.errors import InvalidInput

_CURSOR = re.compile(r"[a-z]{2,8}_[0-9a-f]{14,40}")
# A row read by attribute only: a Core row from a list or loader, or an ORM object a mutation returned.
Record = Any
T = TypeVar("T")
K = TypeVar("K")
DEFAULT_PAGE = 20
MAX_PAGE = 100
# The plain lists (no pages) are capped: at most this many items, and the query cost counts each at its cap.
REFUNDS_CAP = 20  # a payment's refunds: a page of 20 payments with their refunds stays under the default cost
DISPUTES_CAP = 5  # a payment's disputes: Stripe allows one per charge, and a payment captures one charge
LIST_CAP = 100  # credit lots, payout accounts, the catalogue
CURRENCIES_CAP = len(EXPONENTS)  # one item per currency payql knows: never cuts anything off


def list_size(first: int | None, cap: int, default: int | None = None) -> int:
    """How many items to return: `first`, else `default` (the cap when none), refused outside 0..cap."""
    size = first if first is not None else cap if default is None else default
    if not 0 <= size <= cap:
        raise InvalidInput(f"first must be between 0 and {cap}", field="first")
    return size


_URL_SAFE = bytes.maketrans(b"+/", b"-_")


def encode_cursor(object_id: str) -> str:
    # base64.urlsafe_b64encode's own steps, without its two Python calls: a page encodes a cursor per item
    return binascii.b2a_base64(object_id.encode(), newline=False).translate(_URL_SAFE).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        decoded = base64.b64decode(padded.encode(), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput("after is not a valid cursor", field="after") from exc
    if not _CURSOR.fullmatch(decoded):
        raise InvalidInput("after is not a valid cursor", field="after")
    return decoded


@dataclass(slots=True)
class Page(Generic[T]):
    items: list[T]
    has_next: bool
    count: Callable[[], int]


# The columns a "lean" read selects, by table: what the GraphQL fields of `schema.limits.LEAN_FIELDS` read. A page
# or a loader reads lean when no field of the operation needs more (the operation's guards decide, once per
# document): every other column (timestamps, most enums) costs a result processor per row for nothing.
LEAN_COLUMNS: dict[str, tuple[str, ...]] = {
    "payments": (
        "id",
        "status",
        "currency",
        "amount_minor",
        "captured_minor",
        "refunded_minor",
        "payer_id",
        "payee_id",
        "enroll_id",
        "package_code",
        "failure_code",
    ),
    "enrolls": ("id", "status", "client_id", "provider_id", "title", "price_minor", "currency"),
    "refunds": ("id", "payment_id", "status", "amount_minor", "currency"),
}


def _columns(table: Table, lean: bool) -> list[Any]:
    return [table.c[name] for name in LEAN_COLUMNS[table.name]] if lean else list(table.c)


PAYMENTS = cast("Table", Payment.__table__)
ENROLLS = cast("Table", Enroll.__table__)
CREDIT_TRANSACTIONS = cast("Table", CreditTransaction.__table__)
WITHDRAWALS = cast("Table", Withdrawal.__table__)
DISPUTES = cast("Table", Dispute.__table__)


@functools.cache
def _list_statements(
    table: Table, owners: tuple[str, str] | None, filters: tuple[str, ...], after: bool, lean: bool = False
) -> tuple[Select[Any], Select[Any]]:
    """The page and count statements of one list shape, built once: building and hashing a statement on every
    request cost more than running it. `owners` are the two columns that make a row the caller's (None: admin);
    `lean`: only the table's LEAN_COLUMNS.

    With two owner columns the page is the newest of two keyset scans, one per owner's `(owner, id)` index (the
    second skips the rows the first has): `owner1 = :user OR owner2 = :user ORDER BY id DESC` would walk the primary
    key back through everyone's rows until it found the caller's, which for a user whose rows are all old is the
    whole table."""
    filtered = [table.c[name] == bindparam(name) for name in filters]
    columns = _columns(table, lean)
    conditions = [*filtered, table.c.id < bindparam("after")] if after else filtered
    limit = bindparam("limit", type_=Integer)
    if owners is None:
        page = select(*columns).where(*conditions).order_by(table.c.id.desc()).limit(limit)
        return page, select(func.count()).select_from(table).where(*filtered)
    first, second = (table.c[name] for name in owners)
    user: Any = bindparam("user")
    count = select(func.count()).select_from(table).where(or_(first == user, second == user), *filtered)
    if owners[0] == owners[1]:
        page = select(*columns).where(first == user, *conditions).order_by(table.c.id.desc()).limit(limit)
        return page, count
    scans = [
        select(*columns).where(first == user, *conditions).order_by(table.c.id.desc()).limit(limit).subquery(),
        select(*columns)
        .where(second == user, or_(first != user, first.is_(None)), *conditions)
        .order_by(table.c.id.desc())
        .limit(limit)
        .subquery(),
    ]
    both = union_all(*(select(*scan.c) for scan in scans)).subquery()
    page = select(*both.c).order_by(both.c.id.desc()).limit(limit)
    return page, count


def _page(
    connection: Connection,
    table: Table,
    owners: tuple[str, str],
    principal: Principal,
    first: int | None,
    after: str | None,
    filters: dict[str, Any],
    count: Callable[[Connection, dict[str, Any]], int] | None = None,
    lean: bool = False,
) -> Page[Record]:
    size = list_size(first, MAX_PAGE, DEFAULT_PAGE)
    params: dict[str, Any] = {name: value for name, value in filters.items() if value is not None}
    if not principal.is_admin:
        params["user"] = principal.user_id
    if after is not None:
        params["after"] = decode_cursor(after)
    page, counted = _list_statements(
        table,
        None if principal.is_admin else owners,
        tuple(sorted(name for name in params if name in filters)),
        after is not None,
        lean,
    )
    rows = cast("list[Any]", connection.execute(page, {**params, "limit": size + 1}).all())  # a list, by fetchall

    def total() -> int:
        if count is not None and not principal.is_admin:
            return count(connection, params)
        return int(connection.scalar(counted, params) or 0)

    return Page(items=rows[:size], has_next=len(rows) > size, count=total)


def _payment_count(connection: Connection, params: dict[str, Any]) -> int:
    """A user's payments counted from the counters kept with them (models/counts.py), not from their history."""
    return count_for(connection, params["user"], params.get("status"), params.get("purpose"))


def list_payments(
    connection: Connection,
    principal: Principal,
    first: int | None,
    after: str | None,
    status: PaymentStatus | None,
    purpose: PaymentPurpose | None,
    *,
    lean: bool = False,
) -> Page[Record]:
    """`lean`: the rows hold only LEAN_COLUMNS["payments"]."""
    filters = {"status": status, "purpose": purpose}
    owners = ("payer_id", "payee_id")
    return _page(connection, PAYMENTS, owners, principal, first, after, filters, _payment_count, lean)


def list_enrolls(
    connection: Connection, principal: Principal, first: int | None, after: str | None, status: EnrollStatus | None
) -> Page[Record]:
    return _page(connection, ENROLLS, ("client_id", "provider_id"), principal, first, after, {"status": status})


def list_credit_transactions(
    connection: Connection, principal: Principal, first: int | None, after: str | None
) -> Page[Record]:
    """The caller's own credit history, newest first (an admin sees their own too: credits are personal)."""
    me = Principal(principal.user_id, frozenset())
    return _page(connection, CREDIT_TRANSACTIONS, ("user_id", "user_id"), me, first, after, {})


def list_withdrawals(
    connection: Connection, principal: Principal, first: int | None, after: str | None, status: WithdrawalStatus | None
) -> Page[Record]:
    return _page(connection, WITHDRAWALS, ("user_id", "user_id"), principal, first, after, {"status": status})


def list_disputes(
    connection: Connection, principal: Principal, first: int | None, after: str | None, status: DisputeStatus | None
) -> Page[Record]:
    """The disputes on the caller's earnings (as the payee), newest first; an admin sees all."""
    return _page(connection, DISPUTES, ("payee_id", "payee_id"), principal, first, after, {"status": status})


def _enroll_statement(lean: bool) -> Select[Any]:
    return select(*_columns(ENROLLS, lean)).where(ENROLLS.c.id.in_(bindparam("ids", expanding=True)))


def _refund_statement(lean: bool) -> Select[Any]:
    """Each payment's first REFUNDS_CAP refunds (the oldest), in one statement for the whole page."""
    refunds = cast("Table", Refund.__table__)
    ranked = (
        select(
            *_columns(refunds, lean),
            func.row_number().over(partition_by=refunds.c.payment_id, order_by=refunds.c.id).label("n"),
        )
        .where(refunds.c.payment_id.in_(bindparam("ids", expanding=True)))
        .subquery()
    )
    return (
        select(*(ranked.c[column.name] for column in _columns(refunds, lean)))
        .where(ranked.c.n <= REFUNDS_CAP)
        .order_by(ranked.c.id)
    )


_ENROLLS = {lean: _enroll_statement(lean) for lean in (False, True)}
_REFUNDS = {lean: _refund_statement(lean) for lean in (False, True)}
_DISPUTES = (
    select(*Dispute.__table__.c).where(Dispute.payment_id.in_(bindparam("ids", expanding=True))).order_by(Dispute.id)
)
_ENROLL_PAYMENTS = (
    select(*Payment.__table__.c).where(Payment.enroll_id.in_(bindparam("ids", expanding=True))).order_by(Payment.id)
)


def enrolls_by_id(connection: Connection, ids: list[str], *, lean: bool = False) -> dict[str, Record]:
    """`lean`: the rows hold only LEAN_COLUMNS["enrolls"]."""
    return {row.id: row for row in connection.execute(_ENROLLS[lean], {"ids": ids})}


def refunds_by_payment(connection: Connection, ids: list[str], *, lean: bool = False) -> dict[str, list[Record]]:
    """At most REFUNDS_CAP refunds of each payment, oldest first. `lean`: the rows hold only
    LEAN_COLUMNS["refunds"]."""
    grouped: dict[str, list[Record]] = defaultdict(list)
    for row in connection.execute(_REFUNDS[lean], {"ids": ids}):
        grouped[row.payment_id].append(row)
    return dict(grouped)


def disputes_by_payment(connection: Connection, ids: list[str]) -> dict[str, list[Record]]:
    """At most DISPUTES_CAP disputes of each payment, oldest first."""
    grouped: dict[str, list[Record]] = defaultdict(list)
    for row in connection.execute(_DISPUTES, {"ids": ids}):
        if len(grouped[row.payment_id]) < DISPUTES_CAP:
            grouped[row.payment_id].append(row)
    return dict(grouped)


def payments_by_enroll(connection: Connection, ids: list[str]) -> dict[str, Record]:
    """An enroll's payment: the open one if there is one, else the latest attempt."""
    chosen: dict[str, Record] = {}
    for row in connection.execute(_ENROLL_PAYMENTS, {"ids": ids}):
        key = row.enroll_id or ""
        current = chosen.get(key)
        if current is None or current.status not in OPEN_STATUSES or row.status in OPEN_STATUSES:
            chosen[key] = row
    return chosen


def list_payout_accounts(session: Session, principal: Principal, size: int) -> list[PayoutAccount]:
    """The caller's payout accounts, oldest first; an admin sees all."""
    query = select(PayoutAccount).order_by(PayoutAccount.id).limit(size)
    if not principal.is_admin:
        query = query.where(PayoutAccount.user_id == principal.user_id)
    return list(session.scalars(query))
