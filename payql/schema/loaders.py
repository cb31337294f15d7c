"""Per-request DataLoaders: a page's nested lookups (enrolls, refunds, an enroll's payment) batched into one
statement each. They live beside the schema (built per request by the context, never module-level); the statements
they run are the read side's (services/queries.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, TypeVar

from sqlalchemy.orm import Session

from payql.services import queries
from payql.services.catalogue import Catalogue
from payql.services.queries import Record

T = TypeVar("T")
K = TypeVar("K")


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
        cache = self._cache
        self._wanted.update({key for key in keys if key is not None and key not in cache})

    def load(self, key: K) -> T:
        if key not in self._cache:
            self._wanted.add(key)
            batch = sorted(self._wanted, key=str)
            found = self._fetch(batch)
            for wanted in batch:
                self._cache[wanted] = found[wanted] if wanted in found else self._default()
            self._wanted.clear()
        return self._cache[key]


class Loaders:
    """Per-request loaders (never module-level: they cache for the life of the request only)."""

    def __init__(self, session: Session, catalogue: Catalogue, lean: frozenset[str] = frozenset()) -> None:
        self.session = session
        self.catalogue = catalogue
        # the operation reads no more of these types' rows than their lean columns (schema/limits.py's `lean_types`)
        self._lean_enrolls = "Enroll" in lean
        self._lean_refunds = "Refund" in lean
        self.enroll: BatchLoader[str, Record | None] = BatchLoader(self._enrolls, lambda: None)
        self.refunds: BatchLoader[str, list[Record]] = BatchLoader(self._refunds, list)
        self.enroll_payment: BatchLoader[str, Record | None] = BatchLoader(self._enroll_payments, lambda: None)
        self.disputes: BatchLoader[str, list[Record]] = BatchLoader(self._disputes, list)

    def want_payments(self, payments: Sequence[Any]) -> None:
        ids = [payment.id for payment in payments]  # lists, not generators: a page is read once per loader
        self.enroll.want([payment.enroll_id for payment in payments])
        self.refunds.want(ids)
        self.disputes.want(ids)

    def _enrolls(self, ids: list[str]) -> dict[str, Record | None]:
        return dict(queries.enrolls_by_id(self.session, ids, lean=self._lean_enrolls))

    def _refunds(self, ids: list[str]) -> dict[str, list[Record]]:
        return queries.refunds_by_payment(self.session, ids, lean=self._lean_refunds)

    def _disputes(self, ids: list[str]) -> dict[str, list[Record]]:
        return queries.disputes_by_payment(self.session, ids)

    def _enroll_payments(self, ids: list[str]) -> dict[str, Record | None]:
        return dict(queries.payments_by_enroll(self.session, ids))
