"""The read side: keyset-paginated lists of what a principal may see, and per-request batch loaders."""

from __future__ import annotations

import base64
import binascii
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from payql.auth import Principal
from payql.models import Enroll, Payment, Refund
from payql.models.enums import EnrollStatus, PaymentPurpose, PaymentStatus
from payql.models.payment import OPEN_STATUSES
from payql.services.errors import InvalidInput

_CURSOR = re.compile(r"[a-z]{2,8}_[0-9a-f]{14,40}")
T = TypeVar("T")
K = TypeVar("K")
DEFAULT_PAGE = 20
MAX_PAGE = 100


def encode_cursor(object_id: str) -> str:
    return base64.urlsafe_b64encode(object_id.encode()).decode().rstrip("=")


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


def _page(session: Session, query: Select[Any], id_column: Any, first: int | None, after: str | None) -> Page[Any]:
    size = DEFAULT_PAGE if first is None else first
    if not 0 <= size <= MAX_PAGE:
        raise InvalidInput(f"first must be between 0 and {MAX_PAGE}", field="first")
    counted = query
    if after is not None:
        query = query.where(id_column < decode_cursor(after))
    rows = list(session.scalars(query.order_by(id_column.desc()).limit(size + 1)))

    def count() -> int:
        return int(session.scalar(select(func.count()).select_from(counted.order_by(None).subquery())) or 0)

    return Page(items=rows[:size], has_next=len(rows) > size, count=count)


def list_payments(
    session: Session,
    principal: Principal,
    first: int | None,
    after: str | None,
    status: PaymentStatus | None,
    purpose: PaymentPurpose | None,
) -> Page[Payment]:
    query = select(Payment)
    if not principal.is_admin:
        query = query.where(or_(Payment.payer_id == principal.user_id, Payment.payee_id == principal.user_id))
    if status is not None:
        query = query.where(Payment.status == status)
    if purpose is not None:
        query = query.where(Payment.purpose == purpose)
    return _page(session, query, Payment.id, first, after)


def list_enrolls(
    session: Session, principal: Principal, first: int | None, after: str | None, status: EnrollStatus | None
) -> Page[Enroll]:
    query = select(Enroll)
    if not principal.is_admin:
        query = query.where(or_(Enroll.client_id == principal.user_id, Enroll.provider_id == principal.user_id))
    if status is not None:
        query = query.where(Enroll.status == status)
    return _page(session, query, Enroll.id, first, after)


class BatchLoader(Generic[K, T]):
    """A synchronous DataLoader for one request: keys are registered as a list resolves, then the first `load`
    fetches every registered key in one query. GraphQL's synchronous execution completes list items one by one,
    so registering the page's keys up front is what turns N lookups into one."""

    def __init__(self, fetch: Callable[[list[K]], dict[K, T]], default: Callable[[], T]) -> None:
        self._fetch = fetch
        self._default = default
        self._cache: dict[K, T] = {}
        self._wanted: set[K] = set()

    def want(self, keys: Iterable[K | None]) -> None:
        self._wanted.update(key for key in keys if key is not None and key not in self._cache)

    def load(self, key: K) -> T:
        if key not in self._cache:
            self._wanted.add(key)
            batch = sorted(self._wanted, key=str)
            found = self._fetch(batch)
            for wanted in batch:
                self._cache[wanted] = found.get(wanted, self._default())
            self._wanted.clear()
        return self._cache[key]


class Loaders:
    """Per-request loaders (never module-level: they cache for the life of the request only)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.enroll: BatchLoader[str, Enroll | None] = BatchLoader(self._enrolls, lambda: None)
        self.refunds: BatchLoader[str, list[Refund]] = BatchLoader(self._refunds, list)
        self.enroll_payment: BatchLoader[str, Payment | None] = BatchLoader(self._enroll_payments, lambda: None)

    def want_payments(self, payments: Sequence[Payment]) -> None:
        self.enroll.want(payment.enroll_id for payment in payments)
        self.refunds.want(payment.id for payment in payments)

    def _enrolls(self, ids: list[str]) -> dict[str, Enroll | None]:
        return {row.id: row for row in self.session.scalars(select(Enroll).where(Enroll.id.in_(ids)))}

    def _refunds(self, ids: list[str]) -> dict[str, list[Refund]]:
        grouped: dict[str, list[Refund]] = defaultdict(list)
        for row in self.session.scalars(select(Refund).where(Refund.payment_id.in_(ids)).order_by(Refund.id)):
            grouped[row.payment_id].append(row)
        return dict(grouped)

    def _enroll_payments(self, ids: list[str]) -> dict[str, Payment | None]:
        """An enroll's payment: the open one if there is one, else the latest attempt."""
        chosen: dict[str, Payment | None] = {}
        for row in self.session.scalars(select(Payment).where(Payment.enroll_id.in_(ids)).order_by(Payment.id)):
            key = row.enroll_id or ""
            current = chosen.get(key)
            if current is None or current.status not in OPEN_STATUSES or row.status in OPEN_STATUSES:
                chosen[key] = row
        return chosen
